//! Resolving `"$"`: the stream's last generated id and its entry number, asked on the
//! command connection when subscribing, or by the reader when that could not answer.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use redis::Value;
use tracing::{info, warn};

use super::registry::Registered;
use super::stream_facts::{parse_stream_facts, stream_facts_cmd};
use super::Subscriptions;
use crate::codec::StreamId;
use crate::connection::{BlockingReader, ReadError};
use crate::error::{classify, Error, Failure, Result};

/// Where a stream is, as a pipeline of one command (a refusal comes back as a value).
pub(super) fn latest_pipe(stream: &str) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    pipe.add_command(stream_facts_cmd(stream));
    pipe
}

/// The position `"$"` stands for: the last generated id (reading after it sees every
/// later entry) and the number of entries ever added up to it; `0-0`/0 for a missing key.
///
/// # Errors
/// [`Error::Refused`] when the server refuses the lookup (`NOPERM`, `WRONGTYPE`): the
/// caller's to fix, retrying changes nothing. [`Error::Unavailable`] when a node could not
/// answer for the stream (its slot moved or is moving, the cluster fails over): try again
/// later; nothing is known about the stream.
pub(super) fn latest_of(replies: &[Value]) -> Result<(StreamId, u64)> {
    match replies {
        [Value::ServerError(e)] => {
            let err = redis::RedisError::from(e.clone());
            Err(match classify(&err) {
                Failure::Refused | Failure::WrongType => Error::refused(&err),
                _ => Error::Unavailable(err),
            })
        }
        [v] => Ok(parse_stream_facts(v)?
            .map_or((StreamId::ZERO, 0), |i| (i.last_generated, i.entries_added))),
        other => Err(Error::Protocol(format!(
            "the stream facts script replied {other:?}"
        ))),
    }
}

impl Subscriptions {
    /// Resolves `"$"`: the stream's last generated id and its entry number, or `None`
    /// when Redis is unavailable.
    pub(super) async fn resolve_latest_on_command(
        &self,
        stream: &str,
    ) -> Result<Option<(StreamId, u64)>> {
        let reply: Option<Vec<Value>> =
            self.cmd
                .query(&latest_pipe(stream))
                .await
                .map_err(|e| match classify(&e) {
                    Failure::WrongType | Failure::Refused => Error::refused(&e),
                    _ => Error::Protocol(e.to_string()),
                })?;
        match reply.map(|v| latest_of(&v)) {
            // No node could answer for the stream now: as unavailable.
            None | Some(Err(Error::Unavailable(_))) => Ok(None),
            Some(r) => r.map(Some),
        }
    }

    pub(super) async fn resolve_latest_on_reader(
        &self,
        reader: &mut BlockingReader,
        unresolved: &[Arc<Registered>],
    ) -> std::result::Result<(), ReadError> {
        for sub in unresolved {
            let v: Vec<Value> = reader.command(&latest_pipe(&sub.stream)).await?;
            match latest_of(&v) {
                Ok((at, seen)) => {
                    // As in `resolve_latest`: an unsubscribe during the lookup forgot the
                    // stream's end, and recording it now would leave it stale.
                    let registered = self.subs();
                    if registered.contains_key(&sub.id) {
                        self.saw_end(&sub.stream, at, Some(seen));
                        if sub.resolve_latest(at, seen) {
                            info!(stream = %sub.stream, cursor = %at, "resolved \"$\"");
                        }
                    }
                }
                // The node cannot answer for the stream now (MOVED, ASK, a failover): the
                // reader reacts as to a failed read, and "$" is resolved again after.
                Err(Error::Unavailable(e)) => return Err(ReadError::Redis(e)),
                Err(e) => {
                    warn!(stream = %sub.stream, error = %e, "cannot resolve \"$\"; ending the subscription");
                    sub.ended_by_core.store(true, Ordering::SeqCst);
                    self.unsubscribe_one(sub.id);
                }
            }
        }
        Ok(())
    }
}
