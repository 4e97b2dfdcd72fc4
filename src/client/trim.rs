//! Trimming a stream on demand (automatic trimming is the session's `auto-trim` task).

use super::session::Found;
use super::Client;
use crate::codec::check_stream_name;
use crate::error::Result;
use crate::trim::{self, Trim};

impl Client {
    /// Trims a stream; the number of entries removed, `0` when unavailable or the client
    /// is closed.
    ///
    /// # Errors
    /// [`Error::InvalidArg`] for a bad name; [`Error::Refused`] when Redis refuses it (a key
    /// that is not a stream, a missing permission).
    pub async fn trim(&self, stream: &str, t: Trim) -> Result<u64> {
        match self.session()? {
            Found::Open(s) => trim::trim(&s.cmd, stream, t).await,
            Found::Closed => {
                check_stream_name(stream)?;
                self.closed("trimStream");
                Ok(0)
            }
        }
    }
}
