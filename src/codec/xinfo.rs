//! Decoding `XINFO STREAM` and `XINFO GROUPS`: where a stream is, and its groups.

use redis::{FromRedisValue, Value};

use super::{parse_entry, text, StreamId};
use crate::error::{Error, Result};

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
    use crate::codec::test_support::{bulk, entry};

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
