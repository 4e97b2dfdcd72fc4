//! XTRIM, the set of streams a client touched, and the auto-trim task.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::codec::{check_stream_name, StreamId};
use crate::connection::CommandConn;
use crate::error::{Error, Result};

/// What a trim keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrimTo {
    /// At most this many entries (`MAXLEN`).
    MaxLen(u64),
    /// Only entries with an id at or above this one (`MINID`).
    MinId(StreamId),
}

/// A trim request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trim {
    /// What to keep.
    pub to: TrimTo,
    /// `~`: let Redis remove whole macro-nodes only, which is much cheaper; the stream may
    /// keep a few more entries than asked.
    pub approximate: bool,
}

impl Trim {
    /// Appends `MAXLEN|MINID [~|=] threshold` to a command (XTRIM or XADD).
    pub fn write_args(&self, cmd: &mut redis::Cmd) {
        let op = if self.approximate { "~" } else { "=" };
        match self.to {
            TrimTo::MaxLen(n) => cmd.arg("MAXLEN").arg(op).arg(n),
            TrimTo::MinId(id) => cmd.arg("MINID").arg(op).arg(id.to_string()),
        };
    }
}

/// Trims `stream`; returns the number of entries removed, `0` when Redis is unavailable.
///
/// # Errors
/// [`Error::InvalidArg`] for a bad stream name or a key that is not a stream.
pub async fn trim(cmd: &CommandConn, stream: &str, t: Trim) -> Result<u64> {
    check_stream_name(stream)?;
    let mut c = redis::cmd("XTRIM");
    c.arg(stream);
    t.write_args(&mut c);
    match cmd.query::<u64, _>(&c).await {
        Ok(Some(n)) => {
            debug!(stream, removed = n, "trimmed");
            Ok(n)
        }
        Ok(None) => {
            warn!(stream, "Redis unavailable; stream not trimmed");
            Ok(0)
        }
        Err(e) if e.code() == Some("WRONGTYPE") => Err(Error::invalid(
            "stream",
            format!("key {stream:?} holds a value that is not a stream"),
        )),
        Err(e) => Err(Error::Protocol(e.to_string())),
    }
}

/// The streams a client published to or read from, for automatic trimming.
#[derive(Debug, Default)]
pub struct Touched(Mutex<BTreeSet<String>>);

impl Touched {
    /// Records `stream`.
    pub fn add(&self, stream: &str) {
        let mut set = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !set.contains(stream) {
            set.insert(stream.to_owned());
        }
    }

    fn list(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

/// Every `every`, trims each touched stream to `max_len` (approximately) until cancelled.
pub async fn run_auto_trim(
    cmd: Arc<CommandConn>,
    touched: Arc<Touched>,
    every: Duration,
    max_len: u64,
    token: CancellationToken,
) {
    let t = Trim {
        to: TrimTo::MaxLen(max_len),
        approximate: true,
    };
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let streams = touched.list();
        let mut removed = 0;
        for s in &streams {
            match trim(&cmd, s, t).await {
                Ok(n) => removed += n,
                Err(e) => warn!(stream = %s, error = %e, "auto-trim failed for one stream"),
            }
        }
        info!(
            streams = streams.len(),
            removed, max_len, "auto-trim pass done"
        );
    }
}
