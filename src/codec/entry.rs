//! An entry as read, and the payload decision: how any entry, ours or a foreign
//! program's, becomes a message (`data`, `timestamp`) without ever failing.

use std::borrow::Cow;
use std::fmt::Write as _;

use super::StreamId;

/// Name of the field that holds the JSON payload.
pub const DATA_FIELD: &str = "data";
/// Name of the field that holds the publish time.
pub const TIMESTAMP_FIELD: &str = "timestamp";

/// One entry as read from Redis: raw field bytes, nothing interpreted yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The entry id.
    pub id: StreamId,
    /// Field/value pairs in stream order; `None` for an entry deleted while pending.
    pub fields: Option<Vec<(Vec<u8>, Vec<u8>)>>,
}

/// What the `data` of a message is, before it is turned into JSON.
enum Payload<'a> {
    /// Valid JSON text, passed through untouched.
    Json(&'a str),
    /// Text that is not JSON: delivered as a string.
    Text(Cow<'a, str>),
    /// No `data` field: an object of every field.
    Fields(&'a [(Vec<u8>, Vec<u8>)]),
    /// Deleted entry: `null`.
    Deleted,
}

impl Entry {
    fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .as_ref()?
            .iter()
            .find(|(k, _)| k == name.as_bytes())
            .map(|(_, v)| v.as_slice())
    }

    fn payload(&self) -> Payload<'_> {
        let Some(fields) = &self.fields else {
            return Payload::Deleted;
        };
        match self.field(DATA_FIELD) {
            Some(raw) => match std::str::from_utf8(raw) {
                Ok(text) if is_json(text) => Payload::Json(text),
                Ok(text) => Payload::Text(Cow::Borrowed(text)),
                Err(_) => Payload::Text(String::from_utf8_lossy(raw)),
            },
            None => Payload::Fields(fields),
        }
    }

    /// The publish time: the `timestamp` field when it is a number, else the id's milliseconds.
    pub fn timestamp(&self) -> u64 {
        self.field(TIMESTAMP_FIELD)
            .and_then(|t| std::str::from_utf8(t).ok())
            .and_then(|t| t.trim().parse::<f64>().ok())
            .filter(|t| t.is_finite() && *t >= 0.0)
            .map(|t| t as u64)
            .unwrap_or(self.id.ms)
    }

    /// The publisher's trace context (`traceparent`, `tracestate`) from the `trace` field;
    /// `None` without one, or when it is not a W3C trace context.
    pub fn trace(&self) -> Option<(&str, Option<&str>)> {
        let raw = self.field(super::TRACE_FIELD)?;
        super::split_field(std::str::from_utf8(raw).ok()?)
    }

    /// The message's `data` as a JSON value (foreign entries follow the fallback rules).
    pub fn data_value(&self) -> serde_json::Value {
        match self.payload() {
            Payload::Json(text) => serde_json::from_str(text).unwrap_or(serde_json::Value::Null),
            Payload::Text(text) => serde_json::Value::String(text.into_owned()),
            Payload::Fields(fields) => serde_json::Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| {
                        (
                            String::from_utf8_lossy(k).into_owned(),
                            serde_json::Value::String(String::from_utf8_lossy(v).into_owned()),
                        )
                    })
                    .collect(),
            ),
            Payload::Deleted => serde_json::Value::Null,
        }
    }
}

fn is_json(text: &str) -> bool {
    serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}

/// Writes `s` as a JSON string literal.
fn push_json_str(out: &mut String, s: &str) {
    // Serializing a &str cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

/// Encodes a batch of entries of one stream as one JSON array of
/// `{"id","stream","data","timestamp"}` objects (plus `traceparent` and `tracestate` when the
/// entry carries a trace context), for one `JSON.parse` on the JavaScript side.
///
/// Valid JSON in `data` is copied as is, so V8 parses each payload exactly once.
pub fn batch_json(stream: &str, entries: &[Entry]) -> String {
    let mut out = String::with_capacity(entries.len() * 128);
    let mut stream_lit = String::with_capacity(stream.len() + 2);
    push_json_str(&mut stream_lit, stream);
    out.push('[');
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"id\":\"{}\",\"stream\":{stream_lit},\"data\":",
            e.id
        );
        match e.payload() {
            Payload::Json(text) => out.push_str(text),
            Payload::Text(text) => push_json_str(&mut out, &text),
            Payload::Fields(fields) => {
                out.push('{');
                for (j, (k, v)) in fields.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    push_json_str(&mut out, &String::from_utf8_lossy(k));
                    out.push(':');
                    push_json_str(&mut out, &String::from_utf8_lossy(v));
                }
                out.push('}');
            }
            Payload::Deleted => out.push_str("null"),
        }
        let _ = write!(out, ",\"timestamp\":{}", e.timestamp());
        if let Some((parent, state)) = e.trace() {
            out.push_str(",\"traceparent\":");
            push_json_str(&mut out, parent);
            if let Some(state) = state {
                out.push_str(",\"tracestate\":");
                push_json_str(&mut out, state);
            }
        }
        out.push('}');
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::parse_entry;
    use crate::codec::test_support::{bulk, entry};
    use redis::Value;

    fn decoded(v: Value) -> serde_json::Value {
        let json = batch_json("s", &[parse_entry(&v).unwrap()]);
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        parsed[0].clone()
    }
    #[test]
    fn our_entries_decode_to_data_and_timestamp() {
        let m = decoded(entry(
            "10-0",
            &[
                (b"data", br#"{"a":[1,2],"n":"123"}"#),
                (b"timestamp", b"1234"),
            ],
        ));
        assert_eq!(m["id"], "10-0");
        assert_eq!(m["stream"], "s");
        assert_eq!(m["data"]["a"][1], 2);
        assert_eq!(m["timestamp"], 1234);
    }

    #[test]
    fn foreign_entries_fall_back() {
        let m = decoded(entry(
            "10-0",
            &[(b"data", b"not json"), (b"timestamp", b"x")],
        ));
        assert_eq!(m["data"], "not json");
        assert_eq!(m["timestamp"], 10);

        let m = decoded(entry("20-1", &[(b"a", b"1"), (b"b", b"x\"y")]));
        assert_eq!(m["data"], serde_json::json!({"a": "1", "b": "x\"y"}));
        assert_eq!(m["timestamp"], 20);

        let m = decoded(entry("30-0", &[(b"data", &[0xff, 0xfe, b'a'])]));
        assert_eq!(m["data"], "\u{fffd}\u{fffd}a");

        let deleted = Value::Array(vec![bulk(b"40-0"), Value::Nil]);
        assert_eq!(decoded(deleted)["data"], serde_json::Value::Null);
    }

    /// `data_value` (the core's view, used by tests and iterators) and `batch_json` (what
    /// JavaScript parses) must agree on every kind of entry.
    #[test]
    fn data_value_matches_batch_json() {
        let replies = [
            entry("1-0", &[(b"data", b"[1,\"x\"]"), (b"timestamp", b"5")]),
            entry("2-0", &[(b"data", b"{\"n\":1.5e3,\"s\":\"\\u00e9\"}")]),
            entry("3-0", &[(b"data", b"not json")]),
            entry("4-0", &[(b"data", &[0xff, b'a', b'"'])]),
            entry("5-0", &[(b"a", b"1"), (b"b", b"x\"y\\")]),
            entry("6-0", &[(b"k", b"1"), (b"k", b"2")]),
            entry("7-0", &[]),
            Value::Array(vec![bulk(b"8-0"), Value::Nil]),
        ];
        let entries: Vec<Entry> = replies.iter().map(|v| parse_entry(v).unwrap()).collect();
        let batch: serde_json::Value =
            serde_json::from_str(&batch_json("s", &entries)).expect("batch_json is JSON");
        assert_eq!(batch.as_array().map(Vec::len), Some(entries.len()));
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(batch[i]["data"], e.data_value(), "entry {}", e.id);
            assert_eq!(batch[i]["id"], e.id.to_string());
        }
        assert_eq!(entries[0].data_value(), serde_json::json!([1, "x"]));
    }

    #[test]
    fn trace_field_becomes_traceparent_and_tracestate() {
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let with_state = format!("{tp};k=v");
        let m = decoded(entry(
            "1-0",
            &[
                (b"data", b"1"),
                (b"timestamp", b"5"),
                (b"trace", with_state.as_bytes()),
            ],
        ));
        assert_eq!(m["data"], 1);
        assert_eq!(m["traceparent"], tp);
        assert_eq!(m["tracestate"], "k=v");
        let m = decoded(entry("2-0", &[(b"data", b"1"), (b"trace", tp.as_bytes())]));
        assert_eq!(m["traceparent"], tp);
        assert!(m.get("tracestate").is_none());
        let m = decoded(entry(
            "3-0",
            &[(b"data", b"1"), (b"trace", b"not a context")],
        ));
        assert!(m.get("traceparent").is_none());
    }
}
