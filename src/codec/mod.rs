//! The wire format: what an entry written by `publish` looks like, and how any entry, ours
//! or a foreign program's, becomes a message without ever failing.
//!
//! An entry we write has exactly two fields, in order: `data` (JSON text) and `timestamp`
//! (milliseconds since the epoch, decimal). This is the format of the original ioredis
//! implementation, so a mixed fleet interoperates in both directions.

use std::borrow::Cow;
use std::fmt;
use std::fmt::Write as _;
use std::str::FromStr;

use redis::{FromRedisValue, Value};

use crate::error::{Error, Result};

/// Name of the field that holds the JSON payload.
pub const DATA_FIELD: &str = "data";
/// Name of the field that holds the publish time.
pub const TIMESTAMP_FIELD: &str = "timestamp";
/// Longest stream name accepted, in bytes.
pub const MAX_STREAM_NAME_BYTES: usize = 16 * 1024;

/// A concrete stream entry id, `<ms>-<seq>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence part.
    pub seq: u64,
}

impl StreamId {
    /// The smallest id; reading after it reads the whole stream.
    pub const ZERO: StreamId = StreamId { ms: 0, seq: 0 };

    /// Creates an id from its two parts.
    pub const fn new(ms: u64, seq: u64) -> Self {
        StreamId { ms, seq }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl FromStr for StreamId {
    type Err = Error;

    /// Parses `<ms>-<seq>` or a bare `<ms>` (sequence 0), as Redis does.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::invalid(
                "id",
                format!("{s:?} is not a stream id; expected <ms>-<seq>, e.g. 1700000000000-0"),
            )
        };
        let (ms, seq) = match s.split_once('-') {
            Some((ms, seq)) => (ms, Some(seq)),
            None => (s, None),
        };
        let num = |t: &str| {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            t.parse::<u64>().map_err(|_| bad())
        };
        Ok(StreamId {
            ms: num(ms)?,
            seq: match seq {
                Some(seq) => num(seq)?,
                None => 0,
            },
        })
    }
}

impl redis::FromRedisValue for StreamId {
    fn from_redis_value_ref(v: &Value) -> std::result::Result<Self, redis::ParsingError> {
        let t = text(v).ok_or_else(|| format!("expected a stream id, got {v:?}"))?;
        t.parse()
            .map_err(|_| redis::ParsingError::from(format!("{t:?} is not a stream id")))
    }

    fn from_redis_value(v: Value) -> std::result::Result<Self, redis::ParsingError> {
        Self::from_redis_value_ref(&v)
    }
}

impl redis::ToRedisArgs for StreamId {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + redis::RedisWrite,
    {
        out.write_arg_fmt(self);
    }
}

/// Where a subscription starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartId {
    /// Only entries added after the subscription was made (`"$"`).
    Latest,
    /// Entries after this id (`"0"` replays the whole stream).
    After(StreamId),
}

impl FromStr for StartId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        if s == "$" {
            return Ok(StartId::Latest);
        }
        s.parse::<StreamId>().map(StartId::After).map_err(|_| {
            Error::invalid(
                "startId",
                format!("{s:?} is not \"$\", \"0\" or a stream id like 1700000000000-0"),
            )
        })
    }
}

/// The id a publish asks Redis to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishId {
    /// `*`: Redis picks the next id.
    Auto,
    /// `<ms>-*`: Redis picks the sequence within this millisecond.
    AutoSeq(u64),
    /// `<ms>-<seq>`: exactly this id.
    Exact(StreamId),
}

impl PublishId {
    /// Parses `*`, `<ms>-*` or `<ms>-<seq>`.
    ///
    /// # Errors
    /// [`Error::InvalidArg`] for `id` on any other shape, and for `0-0`, which Redis never accepts.
    pub fn parse(s: &str) -> Result<PublishId> {
        let bad = || {
            Error::invalid(
                "id",
                format!("{s:?} is not a valid id; expected \"*\", \"<ms>-*\" or \"<ms>-<seq>\""),
            )
        };
        if s == "*" {
            return Ok(PublishId::Auto);
        }
        let (ms, seq) = s.split_once('-').ok_or_else(bad)?;
        if seq == "*" {
            // `ms` holds no '-', so this parses the milliseconds alone.
            let ms: StreamId = ms.parse().map_err(|_| bad())?;
            return Ok(PublishId::AutoSeq(ms.ms));
        }
        let id: StreamId = s.parse().map_err(|_| bad())?;
        if id == StreamId::ZERO {
            return Err(Error::invalid(
                "id",
                "0-0 is not accepted by Redis; use an id greater than 0-0",
            ));
        }
        Ok(PublishId::Exact(id))
    }

    /// The id argument of XADD.
    pub fn to_arg(self) -> String {
        match self {
            PublishId::Auto => "*".to_owned(),
            PublishId::AutoSeq(ms) => format!("{ms}-*"),
            PublishId::Exact(id) => id.to_string(),
        }
    }
}

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

/// Milliseconds since the Unix epoch, as written into the `timestamp` field.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

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
/// `{"id","stream","data","timestamp"}` objects, for one `JSON.parse` on the JavaScript side.
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
        let _ = write!(out, ",\"timestamp\":{}}}", e.timestamp());
    }
    out.push(']');
    out
}

fn bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        Value::VerbatimString { text, .. } => Some(text.clone().into_bytes()),
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    bytes(v).and_then(|b| String::from_utf8(b).ok())
}

/// Parses one `[id, [field, value, ...]]` entry.
///
/// # Errors
/// [`Error::Protocol`] when the reply does not have that shape.
pub fn parse_entry(v: &Value) -> Result<Entry> {
    let bad = || Error::Protocol(format!("expected a stream entry, got {v:?}"));
    let Value::Array(parts) = v else {
        return Err(bad());
    };
    let [id, fields] = parts.as_slice() else {
        return Err(bad());
    };
    let id = StreamId::from_redis_value_ref(id).map_err(|_| bad())?;
    let fields = match fields {
        Value::Nil => None,
        Value::Array(flat) => {
            let mut pairs = Vec::with_capacity(flat.len() / 2);
            for kv in flat.chunks(2) {
                match kv {
                    [k, v] => pairs.push((bytes(k).ok_or_else(bad)?, bytes(v).ok_or_else(bad)?)),
                    _ => return Err(bad()),
                }
            }
            Some(pairs)
        }
        Value::Map(map) => {
            let mut pairs = Vec::with_capacity(map.len());
            for (k, v) in map {
                pairs.push((bytes(k).ok_or_else(bad)?, bytes(v).ok_or_else(bad)?));
            }
            Some(pairs)
        }
        _ => return Err(bad()),
    };
    Ok(Entry { id, fields })
}

/// Parses a list of entries (the reply of XRANGE, or one stream of an XREAD reply).
///
/// # Errors
/// [`Error::Protocol`] when the reply does not have that shape.
pub fn parse_entries(v: &Value) -> Result<Vec<Entry>> {
    match v {
        Value::Array(items) => items.iter().map(parse_entry).collect(),
        Value::Nil => Ok(Vec::new()),
        other => Err(Error::Protocol(format!(
            "expected a list of entries, got {other:?}"
        ))),
    }
}

/// Parses an XREAD/XREADGROUP reply into `(stream, entries)` pairs; a BLOCK timeout is empty.
///
/// # Errors
/// [`Error::Protocol`] when the reply does not have that shape.
pub fn parse_read_reply(v: &Value) -> Result<Vec<(String, Vec<Entry>)>> {
    let pair = |key: &Value, entries: &Value| -> Result<(String, Vec<Entry>)> {
        let key = bytes(key)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .ok_or_else(|| Error::Protocol(format!("expected a stream name, got {key:?}")))?;
        Ok((key, parse_entries(entries)?))
    };
    match v {
        Value::Nil => Ok(Vec::new()),
        Value::Array(streams) => streams
            .iter()
            .map(|s| match s {
                Value::Array(kv) if kv.len() == 2 => pair(&kv[0], &kv[1]),
                other => Err(Error::Protocol(format!(
                    "expected [stream, entries], got {other:?}"
                ))),
            })
            .collect(),
        Value::Map(map) => map.iter().map(|(k, e)| pair(k, e)).collect(),
        other => Err(Error::Protocol(format!(
            "expected an XREAD reply, got {other:?}"
        ))),
    }
}

/// What `XINFO STREAM` says about where a stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamInfo {
    /// The id of the last entry ever added (survives trimming and deletion).
    pub last_generated: StreamId,
    /// The largest id ever deleted or trimmed away (`0-0` when none).
    pub max_deleted: StreamId,
    /// The oldest entry still in the stream.
    pub first_entry: Option<StreamId>,
    /// Entries ever added (`entries-added`).
    pub entries_added: u64,
    /// Entries in the stream now.
    pub length: u64,
}

impl StreamInfo {
    /// Entries removed so far, by trimming or deletion: always the oldest ones for trims.
    pub fn removed(&self) -> u64 {
        self.entries_added.saturating_sub(self.length)
    }
}

/// The field/value pairs of an `XINFO` reply (a flat array in RESP2, a map in RESP3).
struct Fields<'a>(Vec<(&'a Value, &'a Value)>);

impl<'a> Fields<'a> {
    /// Reads `v` as field/value pairs; `what` names the reply in the error.
    fn of(v: &'a Value, what: &str) -> Result<Fields<'a>> {
        match v {
            Value::Array(flat) => Ok(Fields(
                flat.chunks(2)
                    .filter_map(|kv| match kv {
                        [k, v] => Some((k, v)),
                        _ => None,
                    })
                    .collect(),
            )),
            Value::Map(map) => Ok(Fields(map.iter().map(|(k, v)| (k, v)).collect())),
            other => Err(Error::Protocol(format!("{what} replied {other:?}"))),
        }
    }

    /// The value of field `name`.
    fn get(&self, name: &str) -> Option<&'a Value> {
        self.0
            .iter()
            .find(|(k, _)| text(k).as_deref() == Some(name))
            .map(|(_, v)| *v)
    }

    /// Field `name` as a number (an integer or a numeric string).
    fn num(&self, name: &str) -> Option<u64> {
        match self.get(name) {
            Some(Value::Int(n)) => u64::try_from(*n).ok(),
            Some(v) => text(v).and_then(|t| t.parse().ok()),
            None => None,
        }
    }

    /// Field `name` as a stream id.
    fn id(&self, name: &str) -> Option<StreamId> {
        self.get(name)
            .and_then(|v| StreamId::from_redis_value_ref(v).ok())
    }
}

/// Parses an `XINFO STREAM` reply (Redis 7).
///
/// # Errors
/// [`Error::Protocol`] when it lacks `last-generated-id`.
pub fn parse_stream_info(v: &Value) -> Result<StreamInfo> {
    let f = Fields::of(v, "XINFO STREAM")?;
    let last_generated = f
        .id("last-generated-id")
        .ok_or_else(|| Error::Protocol("XINFO STREAM has no last-generated-id".into()))?;
    let first_entry = match f.get("first-entry") {
        Some(e @ Value::Array(_)) => parse_entry(e).ok().map(|e| e.id),
        _ => None,
    };
    Ok(StreamInfo {
        last_generated,
        max_deleted: f.id("max-deleted-entry-id").unwrap_or(StreamId::ZERO),
        first_entry,
        entries_added: f.num("entries-added").unwrap_or(0),
        length: f.num("length").unwrap_or(0),
    })
}

/// One group of an `XINFO GROUPS` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupFacts {
    /// The group's name.
    pub name: String,
    /// Consumers it has.
    pub consumers: u64,
    /// Entries delivered and not acknowledged.
    pub pending: u64,
    /// The last id delivered to it.
    pub last_delivered: StreamId,
    /// Entries not delivered to it yet; `None` when Redis cannot tell (`nil`).
    pub lag: Option<u64>,
}

/// Parses an `XINFO GROUPS` reply (Redis 7: `lag` and `entries-read`; older servers have
/// no `lag`, reported as unknown).
///
/// # Errors
/// [`Error::Protocol`] when the reply is not a list of groups.
pub fn parse_groups_info(v: &Value) -> Result<Vec<GroupFacts>> {
    let Value::Array(groups) = v else {
        return Err(Error::Protocol(format!("XINFO GROUPS replied {v:?}")));
    };
    groups
        .iter()
        .map(|g| {
            let f = Fields::of(g, "XINFO GROUPS (a group)")?;
            Ok(GroupFacts {
                name: f
                    .get("name")
                    .and_then(text)
                    .ok_or_else(|| Error::Protocol("XINFO GROUPS: a group has no name".into()))?,
                consumers: f.num("consumers").unwrap_or(0),
                pending: f.num("pending").unwrap_or(0),
                last_delivered: f.id("last-delivered-id").unwrap_or(StreamId::ZERO),
                lag: f.num("lag"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &[u8]) -> Value {
        Value::BulkString(s.to_vec())
    }

    fn entry(id: &str, fields: &[(&[u8], &[u8])]) -> Value {
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

    fn decoded(v: Value) -> serde_json::Value {
        let json = batch_json("s", &[parse_entry(&v).unwrap()]);
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        parsed[0].clone()
    }

    #[test]
    fn ids_parse_and_order() {
        assert_eq!("5-3".parse::<StreamId>().unwrap(), StreamId::new(5, 3));
        assert_eq!("5".parse::<StreamId>().unwrap(), StreamId::new(5, 0));
        for bad in [
            "",
            "-",
            "a-1",
            "1-",
            "-1",
            "1-2-3",
            "1.5-0",
            " 1-0",
            "99999999999999999999-0",
        ] {
            assert!(bad.parse::<StreamId>().is_err(), "{bad}");
        }
        assert!(StreamId::new(2, 0) > StreamId::new(1, 99));
        assert!(StreamId::new(1, 1) > StreamId::new(1, 0));
    }

    #[test]
    fn stream_ids_cross_the_wire_as_redis_values() {
        use redis::ToRedisArgs;
        assert_eq!(
            StreamId::from_redis_value(bulk(b"1700000000000-3")).unwrap(),
            StreamId::new(1_700_000_000_000, 3)
        );
        assert_eq!(
            StreamId::from_redis_value(Value::SimpleString("5-0".into())).unwrap(),
            StreamId::new(5, 0)
        );
        assert!(StreamId::from_redis_value(bulk(b"x-1")).is_err());
        assert!(StreamId::from_redis_value(Value::Nil).is_err());
        assert_eq!(StreamId::new(12, 4).to_redis_args(), vec![b"12-4".to_vec()]);
    }

    #[test]
    fn publish_ids() {
        assert_eq!(PublishId::parse("*").unwrap(), PublishId::Auto);
        assert_eq!(PublishId::parse("7-*").unwrap(), PublishId::AutoSeq(7));
        assert_eq!(
            PublishId::parse("7-2").unwrap(),
            PublishId::Exact(StreamId::new(7, 2))
        );
        for bad in ["", "7", "abc", "-1", "1-2-3", "*-1", "0-0", "1-*-*", "1 -0"] {
            let err = PublishId::parse(bad).unwrap_err();
            assert_eq!(err.code(), "ERR_INVALID_ARG", "{bad}");
        }
    }

    #[test]
    fn start_ids() {
        assert_eq!("$".parse::<StartId>().unwrap(), StartId::Latest);
        assert_eq!(
            "0".parse::<StartId>().unwrap(),
            StartId::After(StreamId::ZERO)
        );
        assert!("x".parse::<StartId>().is_err());
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
    fn read_replies_parse_and_malformed_ones_fail() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk(b"s1"),
            Value::Array(vec![entry("1-0", &[(b"data", b"1")])]),
        ])]);
        let parsed = parse_read_reply(&reply).unwrap();
        assert_eq!(parsed[0].0, "s1");
        assert_eq!(parsed[0].1[0].id, StreamId::new(1, 0));
        assert!(parse_read_reply(&Value::Nil).unwrap().is_empty());
        assert!(parse_read_reply(&Value::Int(3)).is_err());
        assert!(parse_entry(&Value::Array(vec![bulk(b"x-y"), Value::Nil])).is_err());
    }

    #[test]
    fn stream_info() {
        let v = Value::Array(vec![
            bulk(b"length"),
            Value::Int(1),
            bulk(b"last-generated-id"),
            bulk(b"6-1"),
            bulk(b"max-deleted-entry-id"),
            bulk(b"5-1"),
            bulk(b"first-entry"),
            entry("6-1", &[(b"a", b"1")]),
        ]);
        let info = parse_stream_info(&v).unwrap();
        assert_eq!(info.last_generated, StreamId::new(6, 1));
        assert_eq!(info.max_deleted, StreamId::new(5, 1));
        assert_eq!(info.first_entry, Some(StreamId::new(6, 1)));
        assert_eq!((info.length, info.entries_added), (1, 0));
        assert!(parse_stream_info(&Value::Array(vec![])).is_err());
    }

    #[test]
    fn stream_names() {
        assert!(check_stream_name("").is_err());
        assert!(check_stream_name(&"x".repeat(MAX_STREAM_NAME_BYTES + 1)).is_err());
        assert!(check_stream_name("ok").is_ok());
    }

    #[test]
    fn xinfo_groups_parses_lag_and_leaves_nil_lag_unknown() {
        let group = |name: &[u8], lag: Value| {
            Value::Array(vec![
                bulk(b"name"),
                bulk(name),
                bulk(b"consumers"),
                Value::Int(2),
                bulk(b"pending"),
                Value::Int(3),
                bulk(b"last-delivered-id"),
                bulk(b"7-1"),
                bulk(b"entries-read"),
                Value::Int(9),
                bulk(b"lag"),
                lag,
            ])
        };
        let reply = Value::Array(vec![group(b"a", Value::Int(4)), group(b"b", Value::Nil)]);
        let groups = parse_groups_info(&reply).unwrap();
        assert_eq!(
            groups[0],
            GroupFacts {
                name: "a".into(),
                consumers: 2,
                pending: 3,
                last_delivered: StreamId::new(7, 1),
                lag: Some(4),
            }
        );
        assert_eq!(groups[1].lag, None);
        assert!(parse_groups_info(&Value::Int(1)).is_err());
    }
}
