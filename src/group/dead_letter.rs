//! Poison messages: how often an entry was delivered, and moving it to a dead-letter stream.

use std::collections::HashMap;

use redis::streams::StreamPendingCountReply;
use tracing::error;

use super::commands::{xpending_range, AckQuery};
use super::registry::{Consumer, Groups};
use super::step::StepError;
use crate::codec::{Entry, StreamId};
use crate::connection::{BlockingReader, ReadError};

/// Suffix of the default dead-letter stream: `<stream>:dead`.
pub const DEAD_LETTER_SUFFIX: &str = ":dead";

/// Delivery counts of `entries` from this consumer's pending list (`XPENDING` with a range).
pub(super) async fn deliveries(
    reader: &mut BlockingReader,
    c: &Consumer,
    entries: &[Entry],
) -> Result<HashMap<StreamId, u64>, StepError> {
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return Ok(HashMap::new());
    };
    let cmd = xpending_range(c, first.id, last.id, entries.len());
    let reply: StreamPendingCountReply = reader.command(&cmd).await?;
    Ok(reply
        .ids
        .into_iter()
        .filter_map(|p| Some((p.id.parse().ok()?, p.times_delivered as u64)))
        .collect())
}

/// Moves poison entries to the dead-letter stream, then acknowledges them (and with
/// deleteOnAck deletes them from the source stream). The dead-letter
/// stream is then trimmed by auto-trim like the streams the client publishes to.
///
/// The dead letters go out first, in one MULTI on the command connection (routed by the
/// dead-letter stream's own key: in a cluster it usually lives in another slot than the
/// source stream, and one MULTI or one node's connection cannot hold both), then the XACK on
/// the consumer's connection. So an entry is never acknowledged without its dead letter; if
/// the XACK fails, the entry stays pending and is dead-lettered again later (a duplicate dead
/// letter, never a lost entry).
pub(super) async fn dead_letter(
    groups: &Groups,
    reader: &mut BlockingReader,
    c: &Consumer,
    poison: &[(Entry, u64)],
) -> Result<(), StepError> {
    let mut pipe = redis::pipe();
    pipe.atomic();
    for (e, n) in poison {
        let mut add = redis::cmd("XADD");
        add.arg(&c.dead_letter).arg("*");
        for (k, v) in e.fields.iter().flatten() {
            add.arg(k.as_slice()).arg(v.as_slice());
        }
        add.arg("originalStream")
            .arg(&*c.stream)
            .arg("originalId")
            .arg(e.id)
            .arg("group")
            .arg(&c.group)
            .arg("consumer")
            .arg(&c.name)
            .arg("deliveries")
            .arg(*n);
        pipe.add_command(add).ignore();
    }
    match groups.cmd.query::<(), _>(&pipe).await {
        Ok(Some(())) => groups.touched.add(&c.dead_letter),
        Ok(None) => {
            return Err(StepError::Connection(
                "the command connection is unavailable; the dead letters were not written"
                    .to_owned(),
            ))
        }
        Err(e) => return Err(ReadError::Redis(e).into()),
    }
    let ids: Vec<StreamId> = poison.iter().map(|(e, _)| e.id).collect();
    let q = AckQuery::new(&c.stream, &c.group, &ids, c.opts.delete_on_ack, &groups.cmd);
    reader.command::<Vec<redis::Value>>(&q.pipe).await?;
    for (e, n) in poison {
        error!(stream = %c.stream, group = %c.group, consumer = %c.name, id = %e.id, deliveries = n, dead_letter = %c.dead_letter, "entry exceeded maxDeliveries; moved to the dead-letter stream");
    }
    Ok(())
}
