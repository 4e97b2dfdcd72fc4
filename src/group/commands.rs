//! The Redis commands a consumer sends, built in one place.

use std::time::Duration;

use redis::Value;

use super::registry::Consumer;
use crate::codec::StreamId;
use crate::connection::CommandConn;

pub(super) fn xack(stream: &str, group: &str, ids: &[StreamId]) -> redis::Cmd {
    let mut cmd = redis::cmd("XACK");
    cmd.arg(stream).arg(group).arg(ids);
    cmd
}

/// The acknowledgement of some entries: `XACK`, or with deleteOnAck `XACKDEL … KEEPREF` on
/// Redis 8.2+ and `XACK` + `XDEL` in one MULTI elsewhere (the same effect: the entries leave
/// the stream whatever other groups have read; their pending lists keep the ids).
pub(super) struct AckQuery {
    pub(super) pipe: redis::Pipeline,
    xackdel: bool,
}

impl AckQuery {
    pub(super) fn new(
        stream: &str,
        group: &str,
        ids: &[StreamId],
        delete: bool,
        cmd: &CommandConn,
    ) -> AckQuery {
        let mut pipe = redis::pipe();
        let xackdel = delete && cmd.server_has_xtrim_acked();
        if xackdel {
            pipe.cmd("XACKDEL")
                .arg(stream)
                .arg(group)
                .arg("KEEPREF")
                .arg("IDS")
                .arg(ids.len())
                .arg(ids);
        } else if delete {
            pipe.atomic()
                .add_command(xack(stream, group, ids))
                .cmd("XDEL")
                .arg(stream)
                .arg(ids)
                .ignore();
        } else {
            pipe.add_command(xack(stream, group, ids));
        }
        AckQuery { pipe, xackdel }
    }

    /// How many entries the reply says were acknowledged.
    pub(super) fn acked(&self, reply: &[Value]) -> u64 {
        match reply.first() {
            // XACKDEL: one code per id; -1 for an id the group did not have pending.
            Some(Value::Array(codes)) if self.xackdel => codes
                .iter()
                .filter(|c| !matches!(c, Value::Int(-1)))
                .count() as u64,
            Some(Value::Int(n)) => (*n).max(0) as u64,
            _ => 0,
        }
    }
}

/// `XREADGROUP` of the consumer: its own pending entries after `id` (no `block`), or new
/// ones (`>`, blocking at most `block`).
pub(super) fn xreadgroup(c: &Consumer, block: Option<Duration>, id: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP")
        .arg(&c.group)
        .arg(&c.name)
        .arg("COUNT")
        .arg(c.count);
    if let Some(b) = block {
        cmd.arg("BLOCK").arg(b.as_millis() as u64);
    }
    cmd.arg("STREAMS").arg(&*c.stream).arg(id);
    cmd
}

/// `XAUTOCLAIM` of entries pending longer than `idle` in the consumer's group, from `from`.
pub(super) fn xautoclaim(c: &Consumer, idle: Duration, from: StreamId) -> redis::Cmd {
    let mut cmd = redis::cmd("XAUTOCLAIM");
    cmd.arg(&*c.stream)
        .arg(&c.group)
        .arg(&c.name)
        .arg(idle.as_millis() as u64)
        .arg(from)
        .arg("COUNT")
        .arg(c.count);
    cmd
}

/// `XPENDING stream group`: the summary form, which fails with NOGROUP when the group is
/// missing (how a start checks for it).
pub(super) fn xpending_summary(stream: &str, group: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("XPENDING");
    cmd.arg(stream).arg(group);
    cmd
}

/// `XPENDING` of the consumer's own pending entries from `first` to `last`, at most `count`
/// (their delivery counts).
pub(super) fn xpending_range(
    c: &Consumer,
    first: StreamId,
    last: StreamId,
    count: usize,
) -> redis::Cmd {
    let mut cmd = redis::cmd("XPENDING");
    cmd.arg(&*c.stream)
        .arg(&c.group)
        .arg(first)
        .arg(last)
        .arg(count)
        .arg(&c.name);
    cmd
}
