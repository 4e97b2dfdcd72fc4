//! The failover audit: after the command connection reached another server, the newest ids
//! of this client's publishes (the [`super::ledger`]) are looked up there, and those it lacks
//! are reported lost.
//!
//! It runs as a task of its own ([`CommandConn::run_audits`]): the reconnect loop only asks
//! for an audit, so a connection that drops again while one runs is redialled at once.

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::command::CommandConn;
use super::ledger;
use crate::codec::StreamId;
use crate::status::Counters;

/// Tries at looking up the newest publishes after a failover while Redis is unavailable.
const LOST_CHECK_ATTEMPTS: u32 = 5;

/// Streams looked up at once: the audit shares the command connection with the caller's
/// publishes, right after a failover.
const STREAMS_AT_ONCE: usize = 8;

/// One stream's facts for the audit, computed on the server so that no payload crosses the
/// network: whether it exists, its first id, its largest deleted id, how many entries it
/// ever removed (`entries-added` − `length`), and a `1`/`0` per id in `ARGV` for
/// present/absent.
const LOOKUP: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, '', '', 0, ''} end
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
local first_id = ''
if #first > 0 then first_id = first[1][1] end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local max_deleted, added, length = '0-0', 0, 0
for i = 1, #info, 2 do
  if info[i] == 'max-deleted-entry-id' then max_deleted = info[i + 1] end
  if info[i] == 'entries-added' then added = info[i + 1] end
  if info[i] == 'length' then length = info[i + 1] end
end
local present = {}
for i, id in ipairs(ARGV) do
  if #redis.call('XRANGE', KEYS[1], id, id, 'COUNT', 1) > 0 then present[i] = '1' else present[i] = '0' end
end
return {1, first_id, max_deleted, added - length, table.concat(present)}
";

impl CommandConn {
    /// Asks for an audit (the connection reached another server); requests made while one
    /// runs are served by one more run after it.
    pub(super) fn audit_soon(&self) {
        self.audits.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Runs the audits asked for with [`CommandConn::audit_soon`], one at a time, until
    /// `token` is cancelled.
    pub async fn run_audits(self: std::sync::Arc<Self>, token: CancellationToken) {
        let mut asked = self.audits.subscribe();
        loop {
            tokio::select! {
                biased;
                _ = token.cancelled() => return,
                r = asked.changed() => if r.is_err() { return },
            }
            self.report_lost_publishes(&token).await;
        }
    }

    /// Looks the newest publish ids up on the server the connection reaches now and
    /// reports those it does not have (a failover lost them: `warn` per stream and
    /// `counters.publishLost`). Waits `commandTimeoutMs` first, so that every publish still
    /// on the old connection has resolved (or failed open) and is in the record. Retries a
    /// few times while Redis is unavailable.
    async fn report_lost_publishes(&self, token: &CancellationToken) {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(self.cfg.command_timeout) => {}
        }
        let mut pending = self.ledger().snapshot();
        for attempt in 1..=LOST_CHECK_ATTEMPTS {
            let checks = futures_util::stream::iter(pending)
                .map(
                    |(stream, ids)| async move { (self.lost_in(&stream, &ids).await, stream, ids) },
                )
                .buffer_unordered(STREAMS_AT_ONCE)
                .collect::<Vec<_>>();
            let checked = tokio::select! {
                _ = token.cancelled() => return,
                c = checks => c,
            };
            let mut retry = Vec::new();
            for (result, stream, ids) in checked {
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
        let script = redis::Script::new(LOOKUP);
        let mut call = script.key(stream);
        for id in ids {
            call.arg(id.to_string());
        }
        let (exists, first, max_deleted, removed, present): (i64, String, String, i64, String) =
            self.query(&call).await.ok()??;
        if exists == 0 {
            let absent = vec![false; ids.len()];
            return Some(ledger::lost(ids, &absent, None));
        }
        let present: Vec<bool> = present.bytes().map(|b| b == b'1').collect();
        if present.len() != ids.len() {
            return None;
        }
        let first = if first.is_empty() {
            None
        } else {
            Some(first.parse().ok()?)
        };
        let facts = ledger::StreamFacts {
            first,
            max_deleted: max_deleted.parse().ok()?,
            removed: u64::try_from(removed).unwrap_or(0),
        };
        Some(ledger::lost(ids, &present, Some(facts)))
    }
}
