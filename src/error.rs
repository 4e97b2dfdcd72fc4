//! The one error type of the core, its stable codes, and the one place that classifies
//! `redis::RedisError`.

use redis::RedisError;

/// Everything the core can report to a caller.
///
/// Each variant has a stable code (see [`Error::code`]) that JavaScript sees as `err.code`;
/// callers match on the code, never on the message text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller passed something that can never work (a bad name, id, option or payload).
    #[error("invalid {field}: {reason}")]
    InvalidArg {
        /// The argument or config field that was wrong.
        field: String,
        /// What was wrong with it and what is accepted instead.
        reason: String,
    },
    /// A consumer group (or its stream) does not exist.
    #[error("consumer group {group:?} does not exist on stream {stream:?}: call createConsumerGroup first")]
    NoGroup {
        /// The stream that was read.
        stream: String,
        /// The group that was missing.
        group: String,
    },
    /// The client is not connected: `connect()` was never called or `disconnect()` was.
    #[error("the client is closed: call connect() first")]
    Closed,
    /// Redis could not be reached or the connection failed.
    #[error("Redis is unavailable: {0}")]
    Unavailable(#[source] RedisError),
    /// A connection to Redis could not be opened (refused, unknown host, bad password, ...).
    #[error("cannot reach Redis at {url}: {reason}")]
    Unreachable {
        /// The URL, without its password.
        url: String,
        /// Why the attempt failed.
        reason: String,
    },
    /// Redis refused the credentials (wrong password, unknown ACL user).
    #[error(
        "Redis at {url} refused the credentials: {reason}; check the user and password in redisUrl"
    )]
    Auth {
        /// The URL, without its password.
        url: String,
        /// What the server said.
        reason: String,
    },
    /// Redis did not answer within the configured time.
    #[error("Redis did not answer within {0} ms")]
    Timeout(u64),
    /// Redis answered something the client did not expect, or refused the command.
    #[error("unexpected reply from Redis: {0}")]
    Protocol(String),
    /// A user callback threw or rejected.
    #[error("callback failed: {0}")]
    Handler(String),
    /// The server refused the command for what it asked, not for its own state: a missing
    /// permission (`NOPERM`), a key of another type (`WRONGTYPE`), an id it does not accept.
    /// Retrying cannot help; `redis_code` is the server's own code for the caller to match.
    #[error("Redis refused the command ({redis_code}): {message}")]
    Refused {
        /// The server's error code (`NOPERM`, `WRONGTYPE`, `ERR`, ...).
        redis_code: String,
        /// What the server said, after its code.
        message: String,
    },
}

/// `Result` with the core's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The stable code JavaScript sees as `err.code`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidArg { .. } => "ERR_INVALID_ARG",
            Error::NoGroup { .. } => "ERR_NOGROUP",
            Error::Closed => "ERR_CLOSED",
            Error::Unavailable(_) | Error::Unreachable { .. } => "ERR_UNAVAILABLE",
            Error::Timeout(_) => "ERR_TIMEOUT",
            Error::Auth { .. } => "ERR_AUTH",
            Error::Protocol(_) => "ERR_PROTOCOL",
            Error::Handler(_) => "ERR_CALLBACK",
            Error::Refused { .. } => "ERR_REFUSED",
        }
    }

    /// The server's own error code (`NOPERM`, `WRONGTYPE`, ...) when the server refused the
    /// command; JavaScript sees it as `err.redisCode`.
    pub fn redis_code(&self) -> Option<&str> {
        match self {
            Error::Refused { redis_code, .. } => Some(redis_code),
            _ => None,
        }
    }

    /// [`Error::Refused`] for a server's refusal, keeping its code and text.
    pub fn refused(err: &RedisError) -> Self {
        Error::Refused {
            redis_code: err.code().unwrap_or("ERR").to_owned(),
            message: err.detail().unwrap_or_else(|| err.category()).to_owned(),
        }
    }

    /// Shorthand for [`Error::InvalidArg`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidArg {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// How the client should react to a failed Redis command: the one place that looks inside a
/// `RedisError`, on top of the `redis` crate's own classification (`ErrorKind`,
/// `retry_method()`), so that no other module compares error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The connection is gone or unusable (I/O, a timeout, a reply that does not parse,
    /// credentials that stopped working): drop it and reconnect.
    Connection,
    /// The server cannot serve this now because of its own state, not the caller's: a
    /// failover (`READONLY` on a demoted primary, `MASTERDOWN`), `LOADING`, `OOM`, a busy
    /// script (`BUSY`), a cluster that is down or resharding (`CLUSTERDOWN`, `TRYAGAIN`).
    /// The call fails open and is tried again later.
    ServerState {
        /// Only a new connection can help (`READONLY`, `MASTERDOWN`): after a failover the
        /// old primary keeps the connection and refuses writes forever.
        reconnect: bool,
    },
    /// The key lives elsewhere now: a cluster node answered `MOVED` or `ASK`, or ended a
    /// blocked read with `UNBLOCKED` (its slot moved away, or it was demoted): find the node
    /// again.
    Redirect,
    /// A missing consumer group (`NOGROUP`).
    NoGroup,
    /// The key does not exist (`ERR no such key`: `XINFO STREAM` of a missing stream).
    NoSuchKey,
    /// The key holds something other than a stream (`WRONGTYPE`).
    WrongType,
    /// What was to be created exists already (`BUSYGROUP`): for an idempotent create, done.
    AlreadyExists,
    /// The server refused this command for what it asked (a bad id, a missing permission):
    /// retrying cannot help; the caller is told.
    Refused,
}

/// Classifies a `RedisError`.
pub fn classify(err: &RedisError) -> Failure {
    use redis::{ErrorKind, RetryMethod, ServerErrorKind};
    if err.is_timeout() || err.is_connection_dropped() || err.is_connection_refusal() {
        return Failure::Connection;
    }
    // Codes the crate does not know (it calls them `Extension`).
    match err.code() {
        Some("NOGROUP") => return Failure::NoGroup,
        Some("WRONGTYPE") => return Failure::WrongType,
        Some("BUSYGROUP") => return Failure::AlreadyExists,
        Some("UNBLOCKED") => return Failure::Redirect,
        // Credentials that stopped working (a server restarted with a new password): only a
        // new connection can tell, and its attempt reports ERR_AUTH.
        Some("NOAUTH" | "WRONGPASS") => return Failure::Connection,
        Some("OOM" | "BUSY") => return Failure::ServerState { reconnect: false },
        Some("ERR") if err.detail().is_some_and(|d| d.starts_with("no such key")) => {
            return Failure::NoSuchKey
        }
        _ => {}
    }
    match err.retry_method() {
        RetryMethod::Reconnect
        | RetryMethod::ReconnectFromInitialConnections
        | RetryMethod::RetryImmediately => Failure::Connection,
        RetryMethod::RefreshSlotsAndRetry => Failure::ServerState { reconnect: true },
        RetryMethod::WaitAndRetry => Failure::ServerState {
            reconnect: err.kind() == ErrorKind::Server(ServerErrorKind::MasterDown),
        },
        RetryMethod::MovedRedirect | RetryMethod::AskRedirect => Failure::Redirect,
        RetryMethod::NoRetry => {
            if err.is_io_error() || err.is_unrecoverable_error() {
                Failure::Connection
            } else {
                Failure::Refused
            }
        }
        // `RetryMethod` may grow; an unknown way to retry is not the caller's fault.
        _ => Failure::ServerState { reconnect: false },
    }
}

/// The error for a key that holds something other than a stream: the server's `WRONGTYPE`,
/// naming the key (the server's own text does not).
pub fn not_a_stream(stream: &str) -> Error {
    Error::Refused {
        redis_code: "WRONGTYPE".to_owned(),
        message: format!("key {stream:?} holds a value that is not a stream"),
    }
}

/// The error for a command on `stream` that the server answered with an error the
/// connection did not already turn into "unavailable" (the server's state, a lost
/// connection) and the caller did not expect (`NOGROUP`, `BUSYGROUP`, ...): a refusal
/// ([`Error::Refused`], `WRONGTYPE` naming the key), or [`Error::Protocol`] for a reply
/// this client cannot place.
pub fn refusal(stream: &str, err: &RedisError) -> Error {
    match classify(err) {
        Failure::WrongType => not_a_stream(stream),
        Failure::Refused => Error::refused(err),
        _ => Error::Protocol(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        assert_eq!(Error::invalid("id", "x").code(), "ERR_INVALID_ARG");
        assert_eq!(Error::Closed.code(), "ERR_CLOSED");
        assert_eq!(Error::Timeout(5).code(), "ERR_TIMEOUT");
        let refused = Error::Refused {
            redis_code: "NOPERM".into(),
            message: "no permissions".into(),
        };
        assert_eq!(refused.code(), "ERR_REFUSED");
        assert_eq!(refused.redis_code(), Some("NOPERM"));
        assert_eq!(
            Error::NoGroup {
                stream: "s".into(),
                group: "g".into()
            }
            .code(),
            "ERR_NOGROUP"
        );
    }

    #[test]
    fn io_errors_are_connection_failures() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(classify(&RedisError::from(io)), Failure::Connection);
        let timeout = std::io::Error::new(std::io::ErrorKind::TimedOut, "slow");
        assert_eq!(classify(&RedisError::from(timeout)), Failure::Connection);
    }

    /// The error a server reply `-<text>` becomes, as the crate parses it.
    fn server(text: &str) -> RedisError {
        let reply = format!("-{text}\r\n");
        match redis::parse_redis_value(reply.as_bytes()) {
            Ok(redis::Value::ServerError(e)) => RedisError::from(e),
            other => panic!("{text}: parsed as {other:?}"),
        }
    }

    #[test]
    fn the_servers_state_is_not_the_callers_mistake() {
        let cases = [
            (
                "READONLY You can't write against a read only replica.",
                Failure::ServerState { reconnect: true },
            ),
            (
                "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
                Failure::ServerState { reconnect: true },
            ),
            (
                "LOADING Redis is loading the dataset in memory",
                Failure::ServerState { reconnect: false },
            ),
            (
                "OOM command not allowed when used memory > 'maxmemory'.",
                Failure::ServerState { reconnect: false },
            ),
            (
                "BUSY Redis is busy running a script.",
                Failure::ServerState { reconnect: false },
            ),
            (
                "TRYAGAIN Multiple keys request during rehashing of slot",
                Failure::ServerState { reconnect: false },
            ),
            (
                "CLUSTERDOWN The cluster is down",
                Failure::ServerState { reconnect: false },
            ),
            ("ERR no such key", Failure::NoSuchKey),
            ("MOVED 3999 127.0.0.1:6381", Failure::Redirect),
            (
                "UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)",
                Failure::Redirect,
            ),
            ("ASK 3999 127.0.0.1:6381", Failure::Redirect),
            (
                "NOGROUP No such key 's' or consumer group 'g'",
                Failure::NoGroup,
            ),
            (
                "WRONGTYPE Operation against a key holding the wrong kind of value",
                Failure::WrongType,
            ),
            (
                "BUSYGROUP Consumer Group name already exists",
                Failure::AlreadyExists,
            ),
            ("NOAUTH Authentication required.", Failure::Connection),
            (
                "WRONGPASS invalid username-password pair or user is disabled.",
                Failure::Connection,
            ),
            (
                "ERR The ID specified in XADD is equal or smaller than the target stream top item",
                Failure::Refused,
            ),
            (
                "NOPERM this user has no permissions to run the 'xadd' command",
                Failure::Refused,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(classify(&server(text)), want, "{text}");
        }
    }

    #[test]
    fn refusals_carry_the_servers_code() {
        let noperm = refusal(
            "s",
            &server("NOPERM this user has no permissions to run the 'xadd' command"),
        );
        assert_eq!(noperm.code(), "ERR_REFUSED");
        assert_eq!(noperm.redis_code(), Some("NOPERM"));
        assert!(noperm.to_string().contains("'xadd'"), "{noperm}");
        let wrongtype = refusal(
            "orders",
            &server("WRONGTYPE Operation against a key holding the wrong kind of value"),
        );
        assert_eq!(wrongtype.redis_code(), Some("WRONGTYPE"));
        assert!(wrongtype.to_string().contains("\"orders\""), "{wrongtype}");
        let moved = refusal("s", &server("MOVED 3999 127.0.0.1:6381"));
        assert_eq!(moved.code(), "ERR_PROTOCOL");
    }
}
