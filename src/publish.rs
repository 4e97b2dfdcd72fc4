//! XADD: one entry or a batch, queued in call order and sent in automatic pipelines;
//! `None` when Redis is unavailable.

use std::sync::{Arc, Mutex};

use redis::{FromRedisValue, RedisError, Value};
use tracing::{debug, warn};

use crate::codec::{now_ms, PublishId, StreamId, DATA_FIELD, TIMESTAMP_FIELD, TRACE_FIELD};
use crate::connection::ledger::Ledger;
use crate::connection::{CommandConn, Reply, ReplyTo};
use crate::error::{self, Error, Result};
use crate::status::Counters;
use crate::trim::Trim;

fn xadd(
    stream: &str,
    id: PublishId,
    json: &str,
    timestamp: u64,
    trim: Option<Trim>,
    trace: Option<&str>,
) -> redis::Cmd {
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
    if let Some(trace) = trace {
        cmd.arg(TRACE_FIELD).arg(trace);
    }
    cmd
}

/// Names a server refusal of XADD. Only refusals reach here (the server's state and lost
/// connections fail open before, in the connection). A plain `ERR` for an id the caller
/// chose can only be about that id (its shape was checked before, so it is not above the
/// stream's top): the caller's mistake, on `id`. Anything else (`NOPERM`, `WRONGTYPE`) is
/// the server's refusal, whatever the id: never a complaint about the payload.
fn refusal(stream: &str, id: PublishId, err: &RedisError) -> Error {
    let refused = error::refusal(stream, err);
    match id {
        PublishId::Exact(_) | PublishId::AutoSeq(_) if refused.redis_code() == Some("ERR") => {
            Error::invalid(
                "id",
                format!(
                    "Redis refused id {}: {err}; ids must be greater than the stream's last id",
                    id.to_arg()
                ),
            )
        }
        _ => refused,
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
    StreamId::from_redis_value_ref(v)
        .map_err(|e| Error::Protocol(format!("XADD replied {v:?}: {e}")))
}

/// Turns the reply of one XADD into the publish result, counting and logging it.
fn finish_one(
    stream: &str,
    id: PublishId,
    counters: &Counters,
    ledger: &Ledger,
    reply: Reply,
) -> Result<Option<StreamId>> {
    let reply = reply.map_err(|e| {
        Counters::add(&counters.publish_failed, 1);
        Counters::add(&counters.publish_refused, 1);
        refusal(stream, id, &e)
    })?;
    match reply {
        Some(v) => {
            let id = parse_id(&v)?;
            ledger.record(stream, id);
            Counters::add(&counters.published, 1);
            debug!(stream, id = %id, "published");
            Ok(Some(id))
        }
        None => {
            Counters::add(&counters.publish_failed, 1);
            Counters::add(&counters.publish_unavailable, 1);
            if let Some(held_back) = counters.unavailable_log.allow() {
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

/// What an entry holds besides its timestamp.
#[derive(Debug, Clone, Copy)]
pub struct Payload<'a> {
    /// The JSON text of `data`.
    pub json: &'a str,
    /// The `trace` field (see [`crate::codec::TraceContext`]), when published in a trace.
    pub trace: Option<&'a str>,
}

/// Queues one XADD of `data` + `timestamp` (+ `trace`, the publisher's trace context, when
/// given), trimming in the same command when `trim` is given (the cheapest way to bound a
/// stream). Never blocks; the order of calls is the
/// order in the stream.
///
/// `done` receives the entry id, `None` when Redis is unavailable (fail open),
/// [`Error::InvalidArg`] for an id not above the stream's top, or [`Error::Refused`] when
/// Redis refuses the entry otherwise (a missing permission, a key that is not a stream).
/// It is called exactly once, from a runtime thread.
pub fn enqueue(
    conn: &CommandConn,
    counters: Arc<Counters>,
    stream: &str,
    payload: Payload<'_>,
    id: PublishId,
    trim: Option<Trim>,
    done: impl FnOnce(Result<Option<StreamId>>) + Send + 'static,
) {
    let cmd = xadd(stream, id, payload.json, now_ms(), trim, payload.trace);
    let stream = stream.to_owned();
    let ledger = conn.ledger().clone();
    conn.submit(
        cmd,
        ReplyTo::new(move |reply| done(finish_one(&stream, id, &counters, &ledger, reply))),
    );
}

/// The replies of a batch, filled in as they arrive; the last one finishes it.
struct BatchReplies<F> {
    replies: Vec<Option<Reply>>,
    left: usize,
    done: Option<F>,
}

/// Queues one XADD per item, back to back in the order given (they go out in one
/// pipeline unless the batch is larger than a pipeline); each carries `trace` when given.
///
/// `done` receives one id per item (`None` for an item written while Redis was
/// unavailable), [`Error::Refused`] when Redis refused an item (see [`finish_batch`]), or
/// [`Error::Protocol`] when a reply is not an id. It is called exactly once, from a
/// runtime thread (at once for an empty batch).
pub fn enqueue_batch<F>(
    conn: &CommandConn,
    counters: Arc<Counters>,
    stream: &str,
    items: &[String],
    trace: Option<&str>,
    done: F,
) where
    F: FnOnce(Result<Vec<Option<StreamId>>>) + Send + 'static,
{
    if items.is_empty() {
        done(Ok(Vec::new()));
        return;
    }
    let ts = now_ms();
    let state = Arc::new(Mutex::new(BatchReplies {
        replies: (0..items.len()).map(|_| None).collect(),
        left: items.len(),
        done: Some(done),
    }));
    let stream_name: Arc<str> = Arc::from(stream);
    let ledger = conn.ledger().clone();
    for (i, json) in items.iter().enumerate() {
        let state = state.clone();
        let counters = counters.clone();
        let ledger = ledger.clone();
        let stream_name = stream_name.clone();
        let reply_to = ReplyTo::new(move |reply| {
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            s.replies[i] = Some(reply);
            s.left -= 1;
            if s.left == 0 {
                let replies = std::mem::take(&mut s.replies);
                let done = s.done.take();
                drop(s);
                if let Some(done) = done {
                    done(finish_batch(&stream_name, &counters, &ledger, replies));
                }
            }
        });
        conn.submit(
            xadd(stream, PublishId::Auto, json, ts, None, trace),
            reply_to,
        );
    }
}

/// Turns the replies of a batch into one id (or `None`) per item, counting and logging.
///
/// A refused item fails the whole batch with the first refusal: `null` would say
/// "unavailable", and the server refuses for the key or the user (`NOPERM`, `WRONGTYPE`),
/// so in practice every item of the batch is refused alike. Items written anyway are
/// logged with their count.
fn finish_batch(
    stream: &str,
    counters: &Counters,
    ledger: &Ledger,
    replies: Vec<Option<Reply>>,
) -> Result<Vec<Option<StreamId>>> {
    let mut out = Vec::with_capacity(replies.len());
    let (mut refused, mut unavailable) = (0u64, 0u64);
    let mut first_refusal = None;
    for reply in replies {
        match reply.unwrap_or(Ok(None)) {
            Ok(Some(v)) => {
                let id = parse_id(&v)?;
                ledger.record(stream, id);
                out.push(Some(id));
            }
            Ok(None) => {
                unavailable += 1;
                out.push(None);
            }
            Err(e) => {
                first_refusal.get_or_insert_with(|| error::refusal(stream, &e));
                refused += 1;
                out.push(None);
            }
        }
    }
    let ok = out.iter().filter(|i| i.is_some()).count() as u64;
    Counters::add(&counters.published, ok);
    Counters::add(&counters.publish_failed, refused + unavailable);
    Counters::add(&counters.publish_unavailable, unavailable);
    Counters::add(&counters.publish_refused, refused);
    if unavailable > 0 {
        if let Some(held_back) = counters.unavailable_log.allow() {
            warn!(
                stream,
                count = unavailable,
                similar_since_last = held_back,
                "Redis unavailable; batch entries not published"
            );
        }
    }
    if let Some(err) = first_refusal {
        warn!(stream, refused, written = ok, error = %err, "Redis refused entries of a batch; the batch rejects");
        return Err(err);
    }
    debug!(stream, count = ok, "published a batch");
    Ok(out)
}
