//! The client: `connect` … `disconnect` sessions, and the calls that need one.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::oneshot;
use tracing::{info, warn};

use crate::codec::{check_stream_name, PublishId, StartId, StreamId};
use crate::config::{AutoTrimStreams, Config};
use crate::connection::CommandConn;
use crate::error::{Error, Result};
use crate::group::{ConsumeOptions, Groups};
use crate::handler::Handler;
use crate::lifecycle::Lifecycle;
use crate::publish;
use crate::status::{ConnState, Counters, Insight, Status, Throttle};
use crate::subscribe::{SubscribeOptions, SubscriptionId, Subscriptions};
use crate::trim::{self, run_auto_trim, Touched, Trim};

/// How long `disconnect()` waits for running callbacks before it stops waiting.
pub const DISCONNECT_DEADLINE: Duration = Duration::from_secs(10);

/// Everything that exists between `connect()` and `disconnect()`.
struct Session {
    life: Lifecycle,
    cmd: Arc<CommandConn>,
    hub: Arc<Subscriptions>,
    groups: Arc<Groups>,
    touched: Arc<Touched>,
    insight: Arc<Insight>,
}

impl Session {
    /// Asks Redis for the numbers of `getStatus()` only it knows (see [`Insight`]); without
    /// `force`, only when no other background refresh runs.
    async fn refresh_insight(&self, force: bool) {
        let claim = if force { None } else { self.insight.claim() };
        if !force && claim.is_none() {
            return;
        }
        let groups = self.groups.infos();
        let busy = async {
            let streams = self.hub.busy_streams();
            let asks = streams
                .iter()
                .take(Insight::MAX_BUSY_STREAMS)
                .map(|stream| async move {
                    let cmd = crate::subscribe::stream_facts_cmd(stream);
                    if let Ok(Some(v)) = self.cmd.query::<redis::Value, _>(&cmd).await {
                        if let Ok(Some(info)) = crate::subscribe::parse_stream_facts(&v) {
                            self.hub.saw_stream_info(stream, &info);
                        }
                    }
                });
            futures_util::future::join_all(asks).await;
        };
        let (groups, ()) = tokio::join!(groups, busy);
        self.insight.set_groups(groups);
        self.insight.refreshed();
        drop(claim);
    }
}

/// Where a client is in its life.
enum Phase {
    /// Never connected: the first call connects.
    Idle,
    /// Between `connect()` (or a first call) and `disconnect()`.
    Open(Arc<Session>),
    /// After `disconnect()`: publishing and trimming fail open, reading is refused, until
    /// `connect()` opens it again.
    Closed,
}

/// What a call finds when it asks for the session.
enum Found {
    Open(Arc<Session>),
    /// `disconnect()` was called: fail open or refuse.
    Closed,
}

/// A Redis Streams client: publishing, broadcast subscriptions, status.
///
/// Cheap to share behind an `Arc`; every method takes `&self`. A client that was never
/// connected connects on its first call; calls that start tasks must then run inside a
/// tokio runtime.
pub struct Client {
    config: Arc<Config>,
    counters: Arc<Counters>,
    phase: RwLock<Phase>,
    /// Serializes `connect` and `disconnect`.
    transition: tokio::sync::Mutex<()>,
    /// Throttles the warning of calls that fail open because the client is closed.
    closed_log: Throttle,
}

impl Client {
    /// A client that is not connected yet.
    pub fn new(config: Config) -> Self {
        Client {
            config: Arc::new(config),
            counters: Arc::new(Counters::default()),
            phase: RwLock::new(Phase::Idle),
            transition: tokio::sync::Mutex::new(()),
            closed_log: Throttle::default(),
        }
    }

    /// The validated configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn phase(&self) -> std::sync::RwLockReadGuard<'_, Phase> {
        self.phase.read().unwrap_or_else(|p| p.into_inner())
    }

    fn phase_mut(&self) -> std::sync::RwLockWriteGuard<'_, Phase> {
        self.phase.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The open session, if any (never opens one).
    fn current(&self) -> Option<Arc<Session>> {
        match &*self.phase() {
            Phase::Open(s) => Some(s.clone()),
            _ => None,
        }
    }

    /// The session for a call: opens one when the client was never connected (the call
    /// connects it), reports [`Found::Closed`] after `disconnect()`.
    fn session(&self) -> Result<Found> {
        if let Phase::Open(s) = &*self.phase() {
            return Ok(Found::Open(s.clone()));
        }
        let mut phase = self.phase_mut();
        match &*phase {
            Phase::Open(s) => Ok(Found::Open(s.clone())),
            Phase::Closed => Ok(Found::Closed),
            Phase::Idle => {
                info!(url = %self.config.redis_url, "connecting on first use");
                let s = self.open()?;
                *phase = Phase::Open(s.clone());
                Ok(Found::Open(s))
            }
        }
    }

    /// The session for a call that reads (subscribe, consume): [`Error::Closed`] after
    /// `disconnect()`.
    fn session_for_reading(&self) -> Result<Arc<Session>> {
        match self.session()? {
            Found::Open(s) => Ok(s),
            Found::Closed => Err(Error::Closed),
        }
    }

    /// Notes that `stream` is read, for automatic trimming when configured to cover it.
    fn read_from(&self, s: &Session, stream: &str) {
        if self.config.auto_trim_streams == AutoTrimStreams::Touched {
            s.touched.add(stream);
        }
    }

    /// Logs (throttled) that `what` failed open because the client is closed.
    fn closed(&self, what: &str) {
        if let Some(held_back) = self.closed_log.allow() {
            warn!(
                call = what,
                similar_since_last = held_back,
                "the client is disconnected (disconnect() was called); the call fails open. Call connect() to use it again"
            );
        }
    }

    /// Builds a session and starts its connection tasks (needs a tokio runtime).
    fn open(&self) -> Result<Arc<Session>> {
        let cmd = Arc::new(CommandConn::new(
            self.config.clone(),
            self.counters.clone(),
        )?);
        let hub = Arc::new(Subscriptions::new(
            self.config.clone(),
            self.counters.clone(),
            cmd.clone(),
        ));
        let touched = Arc::new(Touched::default());
        let groups = Arc::new(Groups::new(
            self.config.clone(),
            self.counters.clone(),
            cmd.clone(),
            touched.clone(),
        ));
        let session = Arc::new(Session {
            life: Lifecycle::default(),
            cmd,
            hub,
            groups,
            touched,
            insight: Arc::new(Insight::default()),
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
        life.spawn_connection(
            "publish-audit",
            session.cmd.clone().run_audits(life.conn_token.clone()),
        );
        if let crate::connection::Target::Sentinel(t) = &**session.cmd.target() {
            // Follow the failover as the leading sentinel announces it: writes move to the
            // replica being promoted at once, instead of going on to the old primary (which
            // loses them) until the sentinels demote it.
            let cmd = Arc::downgrade(&session.cmd);
            life.spawn_connection(
                "sentinel-switches",
                t.clone().follow_switches(
                    self.config.clone(),
                    life.conn_token.clone(),
                    Arc::new(move || {
                        if let Some(cmd) = cmd.upgrade() {
                            cmd.primary_switched();
                        }
                    }),
                ),
            );
        }
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
        Ok(session)
    }

    /// Connects, or waits for the running connection attempt. Optional: a client that was
    /// never connected connects on its first call; `connect()` is for waiting for Redis at
    /// start-up, and for opening a client again after `disconnect()`.
    ///
    /// On failure the client keeps retrying in the background (fail open), so later calls
    /// recover by themselves once Redis is back.
    ///
    /// # Errors
    /// [`Error::Unreachable`], [`Error::Auth`] or [`Error::Timeout`] when no connection
    /// works within the connect timeout.
    pub async fn connect(&self) -> Result<()> {
        let _t = self.transition.lock().await;
        let session = {
            let mut phase = self.phase_mut();
            match &*phase {
                Phase::Open(s) => s.clone(),
                Phase::Idle | Phase::Closed => {
                    let s = self.open()?;
                    *phase = Phase::Open(s.clone());
                    s
                }
            }
        };
        session
            .cmd
            .wait_connected(self.config.connect_timeout + Duration::from_millis(200))
            .await
    }

    /// Whether `disconnect()` was called and `connect()` was not called since.
    pub fn is_closed(&self) -> bool {
        matches!(&*self.phase(), Phase::Closed)
    }

    /// Stops every loop, lets running callbacks finish (bounded), closes every connection.
    ///
    /// New calls fail with [`Error::Closed`] from the moment this starts; `connect()` may be
    /// called again afterwards. Subscriptions end with the session.
    pub async fn disconnect(&self) {
        let _t = self.transition.lock().await;
        let session = match std::mem::replace(&mut *self.phase_mut(), Phase::Closed) {
            Phase::Open(s) => s,
            Phase::Idle | Phase::Closed => return,
        };
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
        info!("disconnected");
    }

    /// Queues one entry whose `data` is the JSON text `json` (trimming the stream in the
    /// same command when `trim` is given); `done` receives the result, exactly once, from a
    /// runtime thread (see [`publish::enqueue`]). Never blocks: the order of calls is the
    /// order of the entries. Connects a client that was never connected; after
    /// `disconnect()`, `done` receives `Ok(None)` (fail open).
    ///
    /// # Errors
    /// [`Error::InvalidArg`] for a bad stream name or an oversized payload (`done` is then
    /// dropped uncalled).
    pub fn start_publish(
        &self,
        stream: &str,
        json: &str,
        id: PublishId,
        trim: Option<Trim>,
        trace: Option<&str>,
        done: impl FnOnce(Result<Option<StreamId>>) + Send + 'static,
    ) -> Result<()> {
        check_stream_name(stream)?;
        publish::check_payload("data", json, self.config.max_payload_bytes)?;
        match self.session()? {
            Found::Open(s) => {
                s.touched.add(stream);
                let (payload, counters) = (publish::Payload { json, trace }, self.counters.clone());
                publish::enqueue(&s.cmd, counters, stream, payload, id, trim, done);
            }
            Found::Closed => {
                self.closed("publishMessage");
                Counters::add(&self.counters.publish_failed, 1);
                Counters::add(&self.counters.publish_closed, 1);
                done(Ok(None));
            }
        }
        Ok(())
    }

    /// Publishes one entry; `Ok(None)` when Redis is unavailable or the client is closed
    /// (fail open).
    ///
    /// # Errors
    /// As [`Client::start_publish`], [`Error::InvalidArg`] when Redis refuses the id, and
    /// [`Error::Refused`] when Redis refuses the entry otherwise (`NOPERM`, `WRONGTYPE`).
    pub async fn publish(
        &self,
        stream: &str,
        json: &str,
        id: PublishId,
        trim: Option<Trim>,
    ) -> Result<Option<StreamId>> {
        let (tx, rx) = oneshot::channel();
        self.start_publish(stream, json, id, trim, None, move |r| {
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
        trace: Option<&str>,
        done: impl FnOnce(Result<Vec<Option<StreamId>>>) + Send + 'static,
    ) -> Result<()> {
        check_stream_name(stream)?;
        for (i, json) in items.iter().enumerate() {
            publish::check_payload(&format!("items[{i}]"), json, self.config.max_payload_bytes)?;
        }
        match self.session()? {
            Found::Open(s) => {
                s.touched.add(stream);
                publish::enqueue_batch(&s.cmd, self.counters.clone(), stream, items, trace, done);
            }
            Found::Closed => {
                self.closed("publishBatch");
                Counters::add(&self.counters.publish_failed, items.len() as u64);
                Counters::add(&self.counters.publish_closed, items.len() as u64);
                done(Ok(vec![None; items.len()]));
            }
        }
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
        self.start_publish_batch(stream, items, None, move |r| {
            let _ = tx.send(r);
        })?;
        rx.await.unwrap_or_else(|_| Ok(vec![None; items.len()]))
    }

    /// Registers a subscription of `handler` to `stream` at once (so that `unsubscribe`
    /// reaches it from now on) and returns its id with a future that resolves once `"$"`
    /// is resolved (see [`Subscriptions::start_subscribe`]). Needs a tokio runtime.
    ///
    /// # Errors
    /// [`Error::InvalidArg`] for a bad stream name (the future: [`Error::Refused`] for a key
    /// that is not a stream); [`Error::Closed`] after `disconnect()`.
    pub fn start_subscribe(
        &self,
        stream: &str,
        handler: Arc<dyn Handler>,
        opts: SubscribeOptions,
    ) -> Result<(
        SubscriptionId,
        impl Future<Output = Result<()>> + Send + 'static,
    )> {
        let s = self.session_for_reading()?;
        let started = s.hub.start_subscribe(&s.life, stream, handler, opts)?;
        self.read_from(&s, stream);
        Ok(started)
    }

    /// Subscribes `handler` to `stream`; resolves once every entry added afterwards is
    /// sure to be delivered.
    ///
    /// # Errors
    /// As [`Client::start_subscribe`].
    pub async fn subscribe(
        &self,
        stream: &str,
        handler: Arc<dyn Handler>,
        opts: SubscribeOptions,
    ) -> Result<SubscriptionId> {
        let (id, resolved) = self.start_subscribe(stream, handler, opts)?;
        resolved.await?;
        Ok(id)
    }

    /// Removes every subscription of `stream`; returns how many there were.
    pub fn unsubscribe(&self, stream: &str) -> usize {
        self.current().map_or(0, |s| s.hub.unsubscribe(stream))
    }

    /// Removes one subscription; returns whether it was active.
    pub fn unsubscribe_id(&self, id: SubscriptionId) -> bool {
        self.current().is_some_and(|s| s.hub.unsubscribe_one(id))
    }

    /// Whether subscription `id` is active.
    pub fn is_subscribed(&self, id: SubscriptionId) -> bool {
        self.current().is_some_and(|s| s.hub.contains(id))
    }

    /// Creates a consumer group (and the stream when missing); `Ok(true)` also when it
    /// existed, `Ok(false)` when Redis is unavailable or the client is closed.
    ///
    /// # Errors
    /// [`Error::InvalidArg`] for bad names; [`Error::Refused`] when Redis refuses it (a key
    /// that is not a stream, a missing permission).
    pub async fn create_consumer_group(
        &self,
        stream: &str,
        group: &str,
        start: StartId,
    ) -> Result<bool> {
        match self.session()? {
            Found::Open(s) => s.groups.create_group(stream, group, start).await,
            Found::Closed => {
                check_stream_name(stream)?;
                self.closed("createConsumerGroup");
                Ok(false)
            }
        }
    }

    /// Registers a consumer of `group` on `stream` named `consumer` at once (so that
    /// `stop_consumer` reaches it from now on) and returns a future that resolves once the
    /// group is known to exist (see [`Groups::start_consume`]). Needs a tokio runtime.
    ///
    /// # Errors
    /// [`Error::InvalidArg`] for bad names or a consumer already running on this client
    /// (the future: [`Error::NoGroup`]); [`Error::Closed`] after `disconnect()`.
    pub fn start_consume(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        handler: Arc<dyn Handler>,
        opts: ConsumeOptions,
    ) -> Result<impl Future<Output = Result<()>> + Send + 'static> {
        let s = self.session_for_reading()?;
        let started = s
            .groups
            .start_consume(&s.life, stream, group, consumer, handler, opts)?;
        self.read_from(&s, stream);
        Ok(started)
    }

    /// Starts a consumer of `group` on `stream` named `consumer`.
    ///
    /// # Errors
    /// As [`Client::start_consume`].
    pub async fn consume(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        handler: Arc<dyn Handler>,
        opts: ConsumeOptions,
    ) -> Result<()> {
        self.start_consume(stream, group, consumer, handler, opts)?
            .await
    }

    /// Stops a consumer; waits (bounded) for its running callback and its ack. Returns
    /// whether it was running.
    pub async fn stop_consumer(&self, stream: &str, group: &str, consumer: &str) -> bool {
        match self.current() {
            Some(s) => {
                s.groups
                    .stop(stream, group, consumer, DISCONNECT_DEADLINE)
                    .await
            }
            None => false,
        }
    }

    /// Acknowledges `ids` in one XACK; the number acknowledged, `0` when unavailable or
    /// the client is closed.
    ///
    /// # Errors
    /// [`Error::InvalidArg`], [`Error::NoGroup`].
    pub async fn acknowledge(&self, stream: &str, group: &str, ids: &[StreamId]) -> Result<u64> {
        match self.session()? {
            Found::Open(s) => {
                let n = s.groups.ack(stream, group, ids).await?;
                Counters::add(&self.counters.acked, n);
                Ok(n)
            }
            Found::Closed => {
                check_stream_name(stream)?;
                self.closed("acknowledgeMessages");
                Ok(0)
            }
        }
    }

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

    /// The counters, for `metrics()` (their per-stream parts are not in [`Status`]).
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The current status, without waiting for Redis: the numbers only Redis knows (groups'
    /// lag and pending, how far busy subscriptions trail) are those of the last refresh, and
    /// a refresh starts in the background when they are older than [`Insight::MAX_AGE_MS`].
    pub fn status(&self) -> Status {
        if let Some(s) = self.current() {
            // Outside a runtime (a caller's own thread) nothing can be started: the numbers
            // stay those of the last refresh.
            if s.insight.due() && tokio::runtime::Handle::try_current().is_ok() {
                let session = s.clone();
                s.life.spawn("status-refresh", async move {
                    session.refresh_insight(false).await;
                });
            }
        }
        self.snapshot()
    }

    /// The status with the numbers only Redis knows asked for now (within
    /// `commandTimeoutMs`; a group Redis cannot tell about now is left out).
    pub async fn refresh_status(&self) -> Status {
        if let Some(s) = self.current() {
            s.refresh_insight(true).await;
        }
        self.snapshot()
    }

    fn snapshot(&self) -> Status {
        let session = self.current();
        let state = match &session {
            Some(s) => s.cmd.current_state(),
            None if self.is_closed() => ConnState::Closed,
            None => ConnState::Idle,
        };
        let s = session.as_ref();
        Status {
            connected: state == ConnState::Connected,
            state,
            reader_state: s.map_or(ConnState::Idle, |s| s.hub.reader_state()),
            subscriptions: s.map(|s| s.hub.streams()).unwrap_or_default(),
            subscription_details: s.map(|s| s.hub.details()).unwrap_or_default(),
            consumer_groups: s.map(|s| s.groups.names()).unwrap_or_default(),
            consumers: s.map(|s| s.groups.states()).unwrap_or_default(),
            groups: s.map(|s| s.insight.groups()).unwrap_or_default(),
            counters: self.counters.snapshot(),
            server: s.and_then(|s| s.cmd.server()),
        }
    }
}
