//! What one step of a consumer's loop can fail with, and so what the loop does next.

use crate::connection::ReadError;
use crate::error::{classify, Failure};

/// Why a step failed, and so what to do next.
#[derive(Debug)]
pub(super) enum StepError {
    /// The connection is gone: reconnect.
    Connection(String),
    /// The group (or stream) is missing.
    NoGroup,
    /// The server cannot serve it now (failover, loading, memory): wait, maybe reconnect.
    ServerState { reconnect: bool, why: String },
    /// The server refused something else.
    Refused(String),
}

impl From<ReadError> for StepError {
    fn from(e: ReadError) -> Self {
        let ReadError::Redis(re) = &e else {
            return StepError::Connection(e.to_string());
        };
        match classify(re) {
            Failure::Connection => StepError::Connection(e.to_string()),
            // The stream's slot lives on another node now: find it and reconnect there.
            Failure::Redirect => StepError::Connection(e.to_string()),
            Failure::NoGroup => StepError::NoGroup,
            Failure::ServerState { reconnect } => StepError::ServerState {
                reconnect,
                why: e.to_string(),
            },
            _ => StepError::Refused(e.to_string()),
        }
    }
}

impl From<crate::error::Error> for StepError {
    fn from(e: crate::error::Error) -> Self {
        StepError::Refused(e.to_string())
    }
}
