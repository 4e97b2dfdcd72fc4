//! XADD: one entry or a batch, queued in call order and sent in automatic pipelines;
//! `None` when Redis is unavailable.

use std::sync::{Arc, Mutex};

use redis::{FromRedisValue, RedisError, Value};
use tracing::{debug, warn};

use crate::codec::{now_ms, PublishId, StreamId, DATA_FIELD, TIMESTAMP_FIELD};
use crate::connection::ledger::Ledger;
use crate::connection::{CommandConn, Reply, ReplyTo};
use crate::error::{classify, not_a_stream, Error, Failure, Result};
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

/// Names a server refusal of XADD. Only refusals reach here (the server's state and lost
/// connections fail open before, in the connection), and every one is the caller's to fix
/// (we checked the shape of everything else), so it becomes `InvalidArg` on the field the
/// server disliked.
fn refusal(stream: &str, id: PublishId, err: &RedisError) -> Error {
    if classify(err) == Failure::WrongType {
        return not_a_stream(stream);
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
    match reply.map_err(|e| refusal(stream, id, &e))? {
        Some(v) => {
            let id = parse_id(&v)?;
            ledger.record(stream, id);
            Counters::add(&counters.published, 1);
            debug!(stream, id = %id, "published");
            Ok(Some(id))
        }
        None => {
            Counters::add(&counters.publish_failed, 1);
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

/// Queues one XADD of `data` + `timestamp`, trimming in the same command when `trim` is
/// given (the cheapest way to bound a stream). Never blocks; the order of calls is the
/// order in the stream.
///
/// `done` receives the entry id, `None` when Redis is unavailable (fail open), or
/// [`Error::InvalidArg`] when Redis refuses the entry (an id not above the stream's top,
/// a key that is not a stream). It is called exactly once, from a runtime thread.
pub fn enqueue(
    conn: &CommandConn,
    counters: Arc<Counters>,
    stream: &str,
    json: &str,
    id: PublishId,
    trim: Option<Trim>,
    done: impl FnOnce(Result<Option<StreamId>>) + Send + 'static,
) {
    let cmd = xadd(stream, id, json, now_ms(), trim);
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
/// pipeline unless the batch is larger than a pipeline).
///
/// `done` receives one id per item (`None` for an item Redis refused, logged, or when
/// Redis was unavailable), or [`Error::Protocol`] when a reply is not an id. It is called
/// exactly once, from a runtime thread (at once for an empty batch).
pub fn enqueue_batch<F>(
    conn: &CommandConn,
    counters: Arc<Counters>,
    stream: &str,
    items: &[String],
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
        conn.submit(xadd(stream, PublishId::Auto, json, ts, None), reply_to);
    }
}

/// Turns the replies of a batch into one id (or `None`) per item, counting and logging.
fn finish_batch(
    stream: &str,
    counters: &Counters,
    ledger: &Ledger,
    replies: Vec<Option<Reply>>,
) -> Result<Vec<Option<StreamId>>> {
    let mut out = Vec::with_capacity(replies.len());
    let (mut refused, mut unavailable) = (0u64, 0u64);
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
                if refused == 0 {
                    warn!(stream, error = %e, "Redis refused an entry of a batch");
                }
                refused += 1;
                out.push(None);
            }
        }
    }
    let ok = out.iter().filter(|i| i.is_some()).count() as u64;
    Counters::add(&counters.published, ok);
    Counters::add(&counters.publish_failed, refused + unavailable);
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
    debug!(stream, count = ok, "published a batch");
    Ok(out)
}
