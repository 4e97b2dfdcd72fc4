//! Writing the offline buffer back: once a connection is installed, the parked commands go
//! first, in order, and the connection is handed out only when the buffer is empty; a reply
//! the server refused for its state puts the rest back. Also what closing does to them.

use redis::{RedisError, Value};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Ordered, MAX_PIPELINE};
use crate::connection::buffer::Parked;
use crate::connection::node::AnyConn;
use crate::connection::slot::{ConnEpoch, Installed};
use crate::error::{classify, Failure};

/// Why a flush stopped when the client is closing.
fn closing() -> RedisError {
    RedisError::from(std::io::Error::other("the client is closing"))
}

impl Ordered {
    /// Writes the parked commands in order, in pipelines of at most [`MAX_PIPELINE`], then
    /// hands out `conn` (under the buffer's lock, once it is empty).
    ///
    /// # Errors
    /// The failure of a pipeline; its commands go back to the front of the buffer (they may
    /// have been stored: at least once), the ones already answered are settled.
    pub(in crate::connection) async fn flush_parked(
        &self,
        conn: &mut AnyConn,
        epoch: ConnEpoch,
        token: &CancellationToken,
    ) -> std::result::Result<(), RedisError> {
        let mut announced = false;
        loop {
            // `disconnect()` resolves what is still parked `null` (see `fail_parked`): nothing
            // is written after it returned.
            if token.is_cancelled() {
                return Err(closing());
            }
            let chunk: Vec<Parked> = {
                let mut parked = self.parked();
                if parked.is_empty() {
                    self.link.install(Installed {
                        epoch,
                        conn: conn.clone(),
                    });
                    return Ok(());
                }
                parked.take_one_slot(MAX_PIPELINE)
            };
            if !announced {
                announced = true;
                info!(
                    count = chunk.len(),
                    "writing publishes parked while disconnected"
                );
            }
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for p in &chunk {
                pipe.add_command(p.cmd.clone());
            }
            // Parked commands have no deadline of their own (they wait for Redis); this
            // only tells a dead connection from a slow one.
            let sent = tokio::select! {
                biased;
                _ = token.cancelled() => Ok(Err(closing())),
                sent = tokio::time::timeout(
                    self.cfg.command_timeout,
                    pipe.query_async::<Vec<Value>>(conn),
                ) => sent,
            };
            match sent {
                Ok(Ok(values)) if values.len() == chunk.len() => {
                    self.settle_flushed(epoch, chunk, values)?;
                }
                other => {
                    self.parked().put_back(chunk);
                    return Err(match other {
                        Ok(Err(e)) => e,
                        Ok(Ok(_)) => RedisError::from(std::io::Error::other(
                            "the reply count of parked publishes did not match",
                        )),
                        Err(_) => RedisError::from(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "writing parked publishes timed out",
                        )),
                    });
                }
            }
        }
    }

    /// Resolves every parked command `None` (the client is closing).
    pub(in crate::connection) fn fail_parked(&self) {
        let left: Vec<Parked> = self.parked().take_all();
        if !left.is_empty() {
            warn!(count = left.len(), "closing: parked publishes resolve null");
        }
        for p in left {
            p.reply.send(Ok(None));
        }
    }

    /// Settles the replies to a chunk of parked commands, up to the first one the server
    /// refused for its state (`READONLY` from a replica, `OOM`) or the connection failed:
    /// that one and every later one go back to the front of the buffer (a later one may
    /// have been stored: at least once), because the buffer exists to wait out exactly
    /// such a server; a `null` would drop what the caller was promised to get written.
    ///
    /// # Errors
    /// The reply that stopped the flush.
    fn settle_flushed(
        &self,
        epoch: ConnEpoch,
        chunk: Vec<Parked>,
        values: Vec<Value>,
    ) -> std::result::Result<(), RedisError> {
        let stop = values.iter().enumerate().find_map(|(i, v)| match v {
            Value::ServerError(e) => {
                let e = RedisError::from(e.clone());
                match classify(&e) {
                    Failure::Connection => Some((i, e)),
                    Failure::ServerState { reconnect } => {
                        self.link.server_state(&e, reconnect);
                        Some((i, e))
                    }
                    _ => None,
                }
            }
            _ => None,
        });
        let Some((at, e)) = stop else {
            let replies = chunk.into_iter().map(|p| p.reply).collect();
            self.settle(epoch, replies, values);
            return Ok(());
        };
        let mut chunk = chunk;
        let back = chunk.split_off(at);
        let mut values = values;
        values.truncate(at);
        let replies = chunk.into_iter().map(|p| p.reply).collect();
        self.settle(epoch, replies, values);
        self.parked().put_back(back);
        Err(e)
    }
}
