//! XADD: one entry or a batch, queued in call order and sent in automatic pipelines;
//! `None` when Redis is unavailable.

use std::sync::Arc;

use redis::{RedisError, Value};
use tokio::sync::oneshot;
use tracing::{debug, warn};

use crate::codec::{now_ms, PublishId, StreamId, DATA_FIELD, TIMESTAMP_FIELD};
use crate::connection::{CommandConn, Reply};
use crate::error::{Error, Result};
use crate::status::Counters;
use crate::trim::Trim;

fn xadd(stream: &str, id: PublishId, json: &str, timestamp: u64, trim: Option<Trim>) -> redis::Cmd {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(stream);
    if let Some(t) = trim {
        t.write_args(&mut cmd);
    }
    cmd.arg(id.to_arg())
        .arg(DATA_FIELD)
        .arg(json)
        .arg(TIMESTAMP_FIELD)
        .arg(timestamp);
    cmd
}

/// Names a server refusal of XADD: every refusal is the caller's to fix (we checked the
/// shape of everything else), so it becomes `InvalidArg` on the field the server disliked.
fn refusal(stream: &str, id: PublishId, err: &RedisError) -> Error {
    if err.code() == Some("WRONGTYPE") {
        return Error::invalid(
            "stream",
            format!("key {stream:?} holds a value that is not a stream"),
        );
    }
    match id {
        PublishId::Auto => Error::invalid("data", format!("Redis refused the entry: {err}")),
        _ => Error::invalid(
            "id",
            format!(
                "Redis refused id {}: {err}; ids must be greater than the stream's last id",
                id.to_arg()
            ),
        ),
    }
}

/// Checks the size of one JSON payload against `maxPayloadBytes`.
///
/// # Errors
/// [`Error::InvalidArg`] for `field` when it is larger.
pub fn check_payload(field: &str, json: &str, max: usize) -> Result<()> {
    if json.len() > max {
        return Err(Error::invalid(
            field,
            format!(
                "the JSON payload is {} bytes; the limit is {max} (maxPayloadBytes)",
                json.len()
            ),
        ));
    }
    Ok(())
}

fn parse_id(v: &Value) -> Result<StreamId> {
    let text = match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        other => return Err(Error::Protocol(format!("XADD replied {other:?}"))),
    };
    text.parse()
        .map_err(|_| Error::Protocol(format!("XADD replied {text:?}")))
}

/// A publish that has been queued (in call order) and not answered yet.
pub struct Pending {
    stream: String,
    id: PublishId,
    rx: oneshot::Receiver<Reply>,
    counters: Arc<Counters>,
}

/// Queues one XADD of `data` + `timestamp`, trimming in the same command when `trim` is
/// given (the cheapest way to bound a stream). Never blocks; the order of calls is the
/// order in the stream.
pub fn enqueue(
    conn: &CommandConn,
    counters: Arc<Counters>,
    stream: &str,
    json: &str,
    id: PublishId,
    trim: Option<Trim>,
) -> Pending {
    let rx = conn
        .submit(vec![xadd(stream, id, json, now_ms(), trim)])
        .pop()
        .expect("one command queued, one receiver");
    Pending {
        stream: stream.to_owned(),
        id,
        rx,
        counters,
    }
}

impl Pending {
    /// The entry id, or `None` when Redis is unavailable (fail open).
    ///
    /// # Errors
    /// [`Error::InvalidArg`] when Redis refuses the entry (an id not above the stream's top,
    /// a key that is not a stream).
    pub async fn wait(self) -> Result<Option<StreamId>> {
        let reply = self.rx.await.unwrap_or(Ok(None));
        let stream = self.stream.as_str();
        match reply.map_err(|e| refusal(stream, self.id, &e))? {
            Some(v) => {
                let id = parse_id(&v)?;
                Counters::add(&self.counters.published, 1);
                debug!(stream, id = %id, "published");
                Ok(Some(id))
            }
            None => {
                Counters::add(&self.counters.publish_failed, 1);
                if let Some(held_back) = self.counters.unavailable_log.allow() {
                    warn!(
                        stream,
                        similar_since_last = held_back,
                        "Redis unavailable; message not published (publish resolved null)"
                    );
                }
                Ok(None)
            }
        }
    }
}

/// A batch of publishes that has been queued and not answered yet.
pub struct PendingBatch {
    stream: String,
    rxs: Vec<oneshot::Receiver<Reply>>,
    counters: Arc<Counters>,
}

/// Queues one XADD per item, back to back in the order given (they go out in one
/// pipeline unless the batch is larger than a pipeline).
pub fn enqueue_batch(
    conn: &CommandConn,
    counters: Arc<Counters>,
    stream: &str,
    items: &[String],
) -> PendingBatch {
    let ts = now_ms();
    let cmds = items
        .iter()
        .map(|json| xadd(stream, PublishId::Auto, json, ts, None))
        .collect();
    PendingBatch {
        stream: stream.to_owned(),
        rxs: conn.submit(cmds),
        counters,
    }
}

impl PendingBatch {
    /// One id per item: `None` for an item Redis refused (logged) or when Redis was
    /// unavailable.
    ///
    /// # Errors
    /// [`Error::Protocol`] when a reply is not an id.
    pub async fn wait(self) -> Result<Vec<Option<StreamId>>> {
        let stream = self.stream.as_str();
        let mut out = Vec::with_capacity(self.rxs.len());
        let (mut refused, mut unavailable) = (0u64, 0u64);
        for rx in self.rxs {
            match rx.await.unwrap_or(Ok(None)) {
                Ok(Some(v)) => out.push(Some(parse_id(&v)?)),
                Ok(None) => {
                    unavailable += 1;
                    out.push(None);
                }
                Err(e) => {
                    if refused == 0 {
                        warn!(stream, error = %e, "Redis refused an entry of a batch");
                    }
                    refused += 1;
                    out.push(None);
                }
            }
        }
        let ok = out.iter().filter(|i| i.is_some()).count() as u64;
        Counters::add(&self.counters.published, ok);
        Counters::add(&self.counters.publish_failed, refused + unavailable);
        if unavailable > 0 {
            if let Some(held_back) = self.counters.unavailable_log.allow() {
                warn!(
                    stream,
                    count = unavailable,
                    similar_since_last = held_back,
                    "Redis unavailable; batch entries not published"
                );
            }
        }
        debug!(stream, count = ok, "published a batch");
        Ok(out)
    }
}
