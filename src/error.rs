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

/// How the client should react to a failed Redis command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The connection is gone or unusable: drop it and reconnect.
    Connection,
    /// The server refused this command (bad id, wrong type, ...): the caller's problem.
    Command,
    /// A missing consumer group (`NOGROUP`).
    NoGroup,
}

/// Classifies a `RedisError`: the only place that looks inside one.
pub fn classify(err: &RedisError) -> Failure {
    if err.code() == Some("NOGROUP") {
        return Failure::NoGroup;
    }
    // Credentials that stopped working (a server restarted with a new password): only a
    // new connection can tell, and its attempt reports ERR_AUTH.
    if matches!(err.code(), Some("NOAUTH" | "WRONGPASS")) {
        return Failure::Connection;
    }
    if err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_unrecoverable_error()
    {
        return Failure::Connection;
    }
    Failure::Command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        assert_eq!(Error::invalid("id", "x").code(), "ERR_INVALID_ARG");
        assert_eq!(Error::Closed.code(), "ERR_CLOSED");
        assert_eq!(Error::Timeout(5).code(), "ERR_TIMEOUT");
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
    }
}
