//! The wire format: what an entry written by `publish` looks like, and how any entry, ours
//! or a foreign program's, becomes a message without ever failing.
//!
//! An entry we write has exactly two fields, in order: `data` (JSON text) and `timestamp`
//! (milliseconds since the epoch, decimal). This is the format of the original ioredis
//! implementation, so a mixed fleet interoperates in both directions.
//!
//! - [`ids`]: stream ids (`StreamId`, `StartId`, `PublishId`);
//! - [`entry`]: an entry and its payload decision, and the JSON handed to JavaScript;
//! - [`reply`]: XRANGE/XREAD replies into entries;
//! - [`xinfo`]: `XINFO STREAM` and `XINFO GROUPS`;
//! - [`trace`]: the optional `trace` field (W3C trace context) of a publish made in a trace.

mod entry;
mod ids;
mod reply;
mod trace;
mod xinfo;

pub use crate::clock::now_ms;
pub use entry::{batch_json, Entry, DATA_FIELD, TIMESTAMP_FIELD};
pub use ids::{PublishId, StartId, StreamId};
pub use reply::{parse_entries, parse_entry, parse_read_reply};
pub use trace::{is_traceparent, split_field, TraceContext, TRACE_FIELD};
pub use xinfo::{parse_groups_info, parse_stream_info, GroupFacts, StreamInfo};

use redis::Value;

use crate::error::{Error, Result};

/// Longest stream name accepted, in bytes.
pub const MAX_STREAM_NAME_BYTES: usize = 16 * 1024;

/// Checks a stream name given by a caller.
///
/// # Errors
/// [`Error::InvalidArg`] for `stream` when it is empty or longer than [`MAX_STREAM_NAME_BYTES`].
pub fn check_stream_name(stream: &str) -> Result<()> {
    if stream.is_empty() {
        return Err(Error::invalid("stream", "the stream name is empty"));
    }
    if stream.len() > MAX_STREAM_NAME_BYTES {
        return Err(Error::invalid(
            "stream",
            format!(
                "the stream name is {} bytes long; the limit is {MAX_STREAM_NAME_BYTES}",
                stream.len()
            ),
        ));
    }
    Ok(())
}

/// The bytes of a string reply.
fn bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        Value::VerbatimString { text, .. } => Some(text.clone().into_bytes()),
        _ => None,
    }
}

/// The text of a string reply.
fn text(v: &Value) -> Option<String> {
    bytes(v).and_then(|b| String::from_utf8(b).ok())
}

/// Builders of raw replies, for the tests of every part of the codec.
#[cfg(test)]
mod test_support {
    use redis::Value;

    pub(super) fn bulk(s: &[u8]) -> Value {
        Value::BulkString(s.to_vec())
    }

    pub(super) fn entry(id: &str, fields: &[(&[u8], &[u8])]) -> Value {
        Value::Array(vec![
            bulk(id.as_bytes()),
            Value::Array(
                fields
                    .iter()
                    .flat_map(|(k, v)| [bulk(k), bulk(v)])
                    .collect(),
            ),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names() {
        assert!(check_stream_name("").is_err());
        assert!(check_stream_name(&"x".repeat(MAX_STREAM_NAME_BYTES + 1)).is_err());
        assert!(check_stream_name("ok").is_ok());
    }
}
