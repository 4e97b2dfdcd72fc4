//! XADD: one entry, or a batch in one pipeline; `None` when Redis is unavailable.

use redis::{RedisError, Value};
use tracing::{debug, warn};

use crate::codec::{now_ms, PublishId, StreamId, DATA_FIELD, TIMESTAMP_FIELD};
use crate::connection::CommandConn;
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

/// Appends one entry (`data`, `timestamp`) to `stream`, trimming it in the same command
/// when `trim` is given (the cheapest way to bound a stream).
///
/// # Errors
/// [`Error::InvalidArg`] when Redis refuses the entry (an id not above the stream's top, a
/// key that is not a stream). Unavailability is `Ok(None)`, never an error.
pub async fn publish(
    conn: &CommandConn,
    counters: &Counters,
    stream: &str,
    json: &str,
    id: PublishId,
    trim: Option<Trim>,
) -> Result<Option<StreamId>> {
    let reply: Option<Value> = conn
        .query_or_park(xadd(stream, id, json, now_ms(), trim))
        .await
        .map_err(|e| refusal(stream, id, &e))?;
    match reply {
        Some(v) => {
            let id = parse_id(&v)?;
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

/// Appends many entries to `stream` in one pipeline, in order.
///
/// Each item resolves to its id, or `None` when that XADD failed on the server (logged);
/// every item is `None` when Redis is unavailable.
///
/// # Errors
/// [`Error::Protocol`] when the reply does not match the pipeline.
pub async fn publish_batch(
    conn: &CommandConn,
    counters: &Counters,
    stream: &str,
    items: &[String],
) -> Result<Vec<Option<StreamId>>> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    let ts = now_ms();
    for json in items {
        pipe.add_command(xadd(stream, PublishId::Auto, json, ts, None));
    }
    let replies: Option<Vec<Value>> = conn
        .query(&pipe)
        .await
        .map_err(|e| refusal(stream, PublishId::Auto, &e))?;
    let Some(replies) = replies else {
        Counters::add(&counters.publish_failed, items.len() as u64);
        warn!(
            stream,
            count = items.len(),
            "Redis unavailable; batch not published"
        );
        return Ok(vec![None; items.len()]);
    };
    if replies.len() != items.len() {
        return Err(Error::Protocol(format!(
            "pipeline of {} XADDs got {} replies",
            items.len(),
            replies.len()
        )));
    }
    let mut out = Vec::with_capacity(items.len());
    for v in &replies {
        match v {
            Value::ServerError(e) => {
                warn!(stream, error = ?e, "Redis refused one entry of a batch");
                Counters::add(&counters.publish_failed, 1);
                out.push(None);
            }
            v => out.push(Some(parse_id(v)?)),
        }
    }
    let ok = out.iter().filter(|i| i.is_some()).count();
    Counters::add(&counters.published, ok as u64);
    debug!(stream, count = ok, "published a batch");
    Ok(out)
}
