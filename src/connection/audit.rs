//! The failover audit: after the command connection reached another server, the newest ids
//! of this client's publishes (the [`super::ledger`]) are looked up there, and those it lacks
//! are reported lost.

use redis::{RedisError, Value};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::command::CommandConn;
use super::ledger;
use crate::codec::{parse_stream_info, StreamId};
use crate::error::{classify, Failure};
use crate::status::Counters;

/// Tries at looking up the newest publishes after a failover while Redis is unavailable.
const LOST_CHECK_ATTEMPTS: u32 = 5;

impl CommandConn {
    /// After the connection moved to another server: looks the newest publish ids up there
    /// and reports those it does not have (a failover lost them: `warn` per stream and
    /// `counters.publishLost`). Waits `commandTimeoutMs` first, so that every publish still
    /// on the old connection has resolved (or failed open) and is in the record. Retries a
    /// few times while Redis is unavailable.
    pub(super) async fn report_lost_publishes(&self, token: &CancellationToken) {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(self.cfg.command_timeout) => {}
        }
        let mut pending = self.ledger().snapshot();
        for attempt in 1..=LOST_CHECK_ATTEMPTS {
            let checks = pending.iter().map(|(stream, ids)| async move {
                (self.lost_in(stream, ids).await, stream.clone(), ids.clone())
            });
            let mut retry = Vec::new();
            for (result, stream, ids) in futures_util::future::join_all(checks).await {
                match result {
                    Some(lost) if lost.is_empty() => {}
                    Some(lost) => {
                        warn!(
                            stream = %stream,
                            lost = lost.len(),
                            first = %lost[0],
                            last = %lost[lost.len() - 1],
                            "a failover lost publishes that Redis had acknowledged (replication is asynchronous): the new primary does not have them"
                        );
                        Counters::add(&self.counters().publish_lost, lost.len() as u64);
                        self.ledger().forget(&stream, &lost);
                    }
                    None => retry.push((stream, ids)),
                }
            }
            if retry.is_empty() {
                return;
            }
            pending = retry;
            if attempt < LOST_CHECK_ATTEMPTS {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(self.cfg.reconnect.max) => {}
                }
            }
        }
        warn!(
            streams = pending.len(),
            "cannot check whether the failover lost publishes: Redis stayed unavailable"
        );
    }

    /// Which of `ids` the server's `stream` lacks (see [`ledger::lost`]); `None` when it
    /// cannot tell now.
    async fn lost_in(&self, stream: &str, ids: &[StreamId]) -> Option<Vec<StreamId>> {
        if ids.is_empty() {
            return Some(Vec::new());
        }
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        pipe.cmd("XINFO").arg("STREAM").arg(stream);
        for id in ids {
            pipe.cmd("XRANGE")
                .arg(stream)
                .arg(id)
                .arg(id)
                .arg("COUNT")
                .arg(1);
        }
        let replies: Vec<Value> = self.query(&pipe).await.ok()??;
        let (info, ranges) = replies.split_first()?;
        let (exists, max_deleted, first) = match info {
            Value::ServerError(e)
                if classify(&RedisError::from(e.clone())) == Failure::NoSuchKey =>
            {
                (false, StreamId::ZERO, None)
            }
            Value::ServerError(_) => return None,
            v => {
                let i = parse_stream_info(v).ok()?;
                (true, i.max_deleted, i.first_entry)
            }
        };
        let mut present = Vec::with_capacity(ranges.len());
        for r in ranges {
            match r {
                Value::Array(a) => present.push(!a.is_empty()),
                _ => return None,
            }
        }
        Some(ledger::lost(ids, &present, exists, max_deleted, first))
    }
}
