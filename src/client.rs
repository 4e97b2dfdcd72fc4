//! The client: `connect` … `disconnect` sessions, and the calls that need one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tracing::{info, warn};

use crate::codec::{check_stream_name, PublishId, StreamId};
use crate::config::Config;
use crate::connection::CommandConn;
use crate::error::{Error, Result};
use crate::handler::Handler;
use crate::lifecycle::Lifecycle;
use crate::publish;
use crate::status::{ConnState, Counters, Status};
use crate::subscribe::{Hub, SubscribeOptions, SubscriptionId};

/// How long `disconnect()` waits for running callbacks before it stops waiting.
pub const DISCONNECT_DEADLINE: Duration = Duration::from_secs(10);

/// Everything that exists between `connect()` and `disconnect()`.
struct Session {
    life: Lifecycle,
    cmd: Arc<CommandConn>,
    hub: Arc<Hub>,
}

/// A Redis Streams client: publishing, broadcast subscriptions, status.
///
/// Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Client {
    config: Arc<Config>,
    counters: Arc<Counters>,
    session: RwLock<Option<Arc<Session>>>,
    /// Serializes `connect` and `disconnect`.
    transition: tokio::sync::Mutex<()>,
    /// Set by `disconnect()`, cleared by `connect()`: tells "closed" from "never connected".
    closed: AtomicBool,
}

impl Client {
    /// A client that is not connected yet.
    pub fn new(config: Config) -> Self {
        Client {
            config: Arc::new(config),
            counters: Arc::new(Counters::default()),
            session: RwLock::new(None),
            transition: tokio::sync::Mutex::new(()),
            closed: AtomicBool::new(false),
        }
    }

    /// The validated configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn session(&self) -> Result<Arc<Session>> {
        self.session
            .read()
            .map_err(|_| Error::Closed)?
            .clone()
            .ok_or(Error::Closed)
    }

    /// Connects, or waits for the running connection attempt.
    ///
    /// On failure the client keeps retrying in the background (fail open), so later calls
    /// recover by themselves once Redis is back.
    ///
    /// # Errors
    /// [`Error::Unreachable`] or [`Error::Timeout`] when no connection works within the
    /// connect timeout.
    pub async fn connect(&self) -> Result<()> {
        let _t = self.transition.lock().await;
        self.closed.store(false, Ordering::Relaxed);
        let session = match self.session() {
            Ok(s) => s,
            Err(_) => {
                let cmd = Arc::new(CommandConn::new(
                    self.config.clone(),
                    self.counters.clone(),
                )?);
                let hub = Arc::new(Hub::new(
                    self.config.clone(),
                    self.counters.clone(),
                    cmd.clone(),
                ));
                let session = Arc::new(Session {
                    life: Lifecycle::default(),
                    cmd,
                    hub,
                });
                session.life.spawn(
                    "command-connection",
                    session.cmd.clone().run(session.life.token.clone()),
                );
                if let Ok(mut slot) = self.session.write() {
                    *slot = Some(session.clone());
                }
                session
            }
        };
        session
            .cmd
            .wait_connected(self.config.connect_timeout + Duration::from_millis(200))
            .await
    }

    /// Stops every loop, lets running callbacks finish (bounded), closes every connection.
    ///
    /// New calls fail with [`Error::Closed`] from the moment this starts; `connect()` may be
    /// called again afterwards. Subscriptions end with the session.
    pub async fn disconnect(&self) {
        let _t = self.transition.lock().await;
        let session = match self.session.write() {
            Ok(mut slot) => slot.take(),
            Err(_) => None,
        };
        let Some(session) = session else { return };
        session.cmd.set_state(ConnState::Closing);
        session.hub.interrupt().await;
        if !session.life.shutdown(DISCONNECT_DEADLINE).await {
            warn!(
                deadline_ms = DISCONNECT_DEADLINE.as_millis() as u64,
                "disconnect: some callbacks were still running at the deadline; stopped waiting"
            );
        }
        session.cmd.set_state(ConnState::Closed);
        self.closed.store(true, Ordering::Relaxed);
        info!("disconnected");
    }

    /// Publishes one entry whose `data` is the JSON text `json`.
    ///
    /// `Ok(None)` when Redis is unavailable (fail open).
    ///
    /// # Errors
    /// [`Error::InvalidArg`] for a bad stream name or an id Redis refuses; [`Error::Closed`]
    /// when not connected.
    pub async fn publish(
        &self,
        stream: &str,
        json: &str,
        id: PublishId,
    ) -> Result<Option<StreamId>> {
        check_stream_name(stream)?;
        let s = self.session()?;
        publish::publish(&s.cmd, &self.counters, stream, json, id).await
    }

    /// Publishes many entries in one pipeline, order kept.
    ///
    /// # Errors
    /// As [`Client::publish`].
    pub async fn publish_batch(
        &self,
        stream: &str,
        items: &[String],
    ) -> Result<Vec<Option<StreamId>>> {
        check_stream_name(stream)?;
        let s = self.session()?;
        publish::publish_batch(&s.cmd, &self.counters, stream, items).await
    }

    /// Subscribes `handler` to `stream`.
    ///
    /// # Errors
    /// [`Error::InvalidArg`] for a bad stream name or a key that is not a stream;
    /// [`Error::Closed`] when not connected.
    pub async fn subscribe(
        &self,
        stream: &str,
        handler: Arc<dyn Handler>,
        opts: SubscribeOptions,
    ) -> Result<SubscriptionId> {
        let s = self.session()?;
        s.hub.subscribe(&s.life, stream, handler, opts).await
    }

    /// Removes every subscription of `stream`; returns how many there were.
    pub fn unsubscribe(&self, stream: &str) -> usize {
        self.session()
            .map(|s| s.hub.unsubscribe(stream))
            .unwrap_or(0)
    }

    /// The current status.
    pub fn status(&self) -> Status {
        let session = self.session().ok();
        let state = match &session {
            Some(s) => s.cmd.current_state(),
            None if self.closed.load(Ordering::Relaxed) => ConnState::Closed,
            None => ConnState::Idle,
        };
        Status {
            connected: state == ConnState::Connected,
            state,
            reader_state: session
                .as_ref()
                .map(|s| s.hub.reader_state())
                .unwrap_or(ConnState::Idle),
            subscriptions: session
                .as_ref()
                .map(|s| s.hub.streams())
                .unwrap_or_default(),
            consumer_groups: Vec::new(),
            counters: self.counters.snapshot(),
        }
    }
}
