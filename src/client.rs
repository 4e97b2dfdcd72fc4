//! The client: `connect` … `disconnect` sessions, and the calls that need one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::oneshot;
use tracing::{info, warn};

use crate::codec::{check_stream_name, PublishId, StartId, StreamId};
use crate::config::Config;
use crate::connection::CommandConn;
use crate::error::{Error, Result};
use crate::group::{ConsumeOptions, Groups};
use crate::handler::Handler;
use crate::lifecycle::Lifecycle;
use crate::publish;
use crate::status::{ConnState, Counters, Status};
use crate::subscribe::{Hub, SubscribeOptions, SubscriptionId};
use crate::trim::{self, run_auto_trim, Touched, Trim};

/// How long `disconnect()` waits for running callbacks before it stops waiting.
pub const DISCONNECT_DEADLINE: Duration = Duration::from_secs(10);

/// Everything that exists between `connect()` and `disconnect()`.
struct Session {
    life: Lifecycle,
    cmd: Arc<CommandConn>,
    hub: Arc<Hub>,
    groups: Arc<Groups>,
    touched: Arc<Touched>,
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
                let groups = Arc::new(Groups::new(
                    self.config.clone(),
                    self.counters.clone(),
                    cmd.clone(),
                ));
                let session = Arc::new(Session {
                    life: Lifecycle::default(),
                    cmd,
                    hub,
                    groups,
                    touched: Arc::new(Touched::default()),
                });
                let life = &session.life;
                life.spawn_connection(
                    "command-connection",
                    session.cmd.clone().run(life.conn_token.clone()),
                );
                life.spawn_connection(
                    "ordered-commands",
                    session.cmd.clone().run_ordered(life.conn_token.clone()),
                );
                if self.config.enable_auto_trim {
                    life.spawn(
                        "auto-trim",
                        run_auto_trim(
                            session.cmd.clone(),
                            session.touched.clone(),
                            self.config.auto_trim_interval,
                            self.config.default_max_len,
                            life.token.clone(),
                        ),
                    );
                }
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
        // Cancel first, then wake the blocked reads, so that no loop starts another read.
        session.life.token.cancel();
        session.groups.interrupt_all().await;
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

    /// Queues one entry whose `data` is the JSON text `json` (trimming the stream in the
    /// same command when `trim` is given); `done` receives the result, exactly once, from a
    /// runtime thread (see [`publish::enqueue`]). Never blocks: the order of calls is the
    /// order of the entries.
    ///
    /// # Errors
    /// [`Error::InvalidArg`] for a bad stream name or an oversized payload;
    /// [`Error::Closed`] when not connected. `done` is then dropped uncalled.
    pub fn start_publish(
        &self,
        stream: &str,
        json: &str,
        id: PublishId,
        trim: Option<Trim>,
        done: impl FnOnce(Result<Option<StreamId>>) + Send + 'static,
    ) -> Result<()> {
        check_stream_name(stream)?;
        publish::check_payload("data", json, self.config.max_payload_bytes)?;
        let s = self.session()?;
        s.touched.add(stream);
        publish::enqueue(&s.cmd, self.counters.clone(), stream, json, id, trim, done);
        Ok(())
    }

    /// Publishes one entry; `Ok(None)` when Redis is unavailable (fail open).
    ///
    /// # Errors
    /// As [`Client::start_publish`], and [`Error::InvalidArg`] when Redis refuses the id.
    pub async fn publish(
        &self,
        stream: &str,
        json: &str,
        id: PublishId,
        trim: Option<Trim>,
    ) -> Result<Option<StreamId>> {
        let (tx, rx) = oneshot::channel();
        self.start_publish(stream, json, id, trim, move |r| {
            let _ = tx.send(r);
        })?;
        rx.await.unwrap_or(Ok(None))
    }

    /// Queues many entries back to back, order kept; `done` receives one id (or `None`)
    /// per item, exactly once, from a runtime thread (see [`publish::enqueue_batch`]).
    ///
    /// # Errors
    /// As [`Client::start_publish`].
    pub fn start_publish_batch(
        &self,
        stream: &str,
        items: &[String],
        done: impl FnOnce(Result<Vec<Option<StreamId>>>) + Send + 'static,
    ) -> Result<()> {
        check_stream_name(stream)?;
        for (i, json) in items.iter().enumerate() {
            publish::check_payload(&format!("items[{i}]"), json, self.config.max_payload_bytes)?;
        }
        let s = self.session()?;
        s.touched.add(stream);
        publish::enqueue_batch(&s.cmd, self.counters.clone(), stream, items, done);
        Ok(())
    }

    /// Publishes many entries, order kept; one id (or `None`) per item.
    ///
    /// # Errors
    /// As [`Client::start_publish`].
    pub async fn publish_batch(
        &self,
        stream: &str,
        items: &[String],
    ) -> Result<Vec<Option<StreamId>>> {
        let (tx, rx) = oneshot::channel();
        self.start_publish_batch(stream, items, move |r| {
            let _ = tx.send(r);
        })?;
        rx.await.unwrap_or_else(|_| Ok(vec![None; items.len()]))
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
        let id = s.hub.subscribe(&s.life, stream, handler, opts).await?;
        s.touched.add(stream);
        Ok(id)
    }

    /// Removes every subscription of `stream`; returns how many there were.
    pub fn unsubscribe(&self, stream: &str) -> usize {
        self.session()
            .map(|s| s.hub.unsubscribe(stream))
            .unwrap_or(0)
    }

    /// Creates a consumer group (and the stream when missing); `Ok(true)` also when it
    /// existed, `Ok(false)` when Redis is unavailable.
    ///
    /// # Errors
    /// [`Error::InvalidArg`] for bad names or a key that is not a stream; [`Error::Closed`].
    pub async fn create_consumer_group(
        &self,
        stream: &str,
        group: &str,
        start: StartId,
    ) -> Result<bool> {
        let s = self.session()?;
        s.groups.create_group(stream, group, start).await
    }

    /// Starts a consumer of `group` on `stream` named `consumer`.
    ///
    /// # Errors
    /// [`Error::NoGroup`] when the group does not exist; [`Error::InvalidArg`] for bad
    /// names or a consumer already running on this client; [`Error::Closed`].
    pub async fn consume(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        handler: Arc<dyn Handler>,
        opts: ConsumeOptions,
    ) -> Result<()> {
        let s = self.session()?;
        s.groups
            .consume(&s.life, stream, group, consumer, handler, opts)
            .await?;
        s.touched.add(stream);
        Ok(())
    }

    /// Stops a consumer; waits (bounded) for its running callback and its ack. Returns
    /// whether it was running.
    pub async fn stop_consumer(&self, stream: &str, group: &str, consumer: &str) -> bool {
        match self.session() {
            Ok(s) => {
                s.groups
                    .stop(stream, group, consumer, DISCONNECT_DEADLINE)
                    .await
            }
            Err(_) => false,
        }
    }

    /// Acknowledges `ids` in one XACK; the number acknowledged, `0` when unavailable.
    ///
    /// # Errors
    /// [`Error::InvalidArg`], [`Error::NoGroup`], [`Error::Closed`].
    pub async fn acknowledge(&self, stream: &str, group: &str, ids: &[StreamId]) -> Result<u64> {
        let s = self.session()?;
        let n = s.groups.ack(stream, group, ids).await?;
        Counters::add(&self.counters.acked, n);
        Ok(n)
    }

    /// Trims a stream; the number of entries removed, `0` when unavailable.
    ///
    /// # Errors
    /// [`Error::InvalidArg`] for a bad name or a key that is not a stream; [`Error::Closed`].
    pub async fn trim(&self, stream: &str, t: Trim) -> Result<u64> {
        let s = self.session()?;
        trim::trim(&s.cmd, stream, t).await
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
            consumer_groups: session
                .as_ref()
                .map(|s| s.groups.names())
                .unwrap_or_default(),
            consumers: session
                .as_ref()
                .map(|s| s.groups.states())
                .unwrap_or_default(),
            counters: self.counters.snapshot(),
        }
    }
}
