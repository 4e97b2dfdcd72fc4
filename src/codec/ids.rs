//! Stream entry ids: the concrete id (`StreamId`), where a read starts (`StartId`) and
//! the id a publish asks for (`PublishId`).

use std::fmt;
use std::str::FromStr;

use redis::Value;

use super::text;

use crate::error::{Error, Result};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::test_support::bulk;
    use redis::FromRedisValue;

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
}
