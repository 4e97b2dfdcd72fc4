//! Decoding the replies of XRANGE, XREAD and XREADGROUP into entries.

use redis::{FromRedisValue, Value};

use super::{bytes, Entry, StreamId};
use crate::error::{Error, Result};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::test_support::{bulk, entry};

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
}
