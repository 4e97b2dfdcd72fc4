//! A session: everything that exists between `connect()` and `disconnect()`, how a call finds
//! (or opens) it, and what a call does once the client is closed.

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use super::{Client, DISCONNECT_DEADLINE};
use crate::config::AutoTrimStreams;
use crate::connection::CommandConn;
use crate::error::{Error, Result};
use crate::group::Groups;
use crate::lifecycle::Lifecycle;
use crate::status::{ConnState, Insight};
use crate::subscribe::Subscriptions;
use crate::trim::{run_auto_trim, Touched};

/// Everything that exists between `connect()` and `disconnect()`.
pub(super) struct Session {
    pub(super) life: Lifecycle,
    pub(super) cmd: Arc<CommandConn>,
    pub(super) hub: Arc<Subscriptions>,
    pub(super) groups: Arc<Groups>,
    pub(super) touched: Arc<Touched>,
    pub(super) insight: Arc<Insight>,
}

/// Where a client is in its life.
pub(super) enum Phase {
    /// Never connected: the first call connects.
    Idle,
    /// Between `connect()` (or a first call) and `disconnect()`.
    Open(Arc<Session>),
    /// After `disconnect()`: publishing and trimming fail open, reading is refused, until
    /// `connect()` opens it again.
    Closed,
}

/// What a call finds when it asks for the session.
pub(super) enum Found {
    Open(Arc<Session>),
    /// `disconnect()` was called: fail open or refuse.
    Closed,
}

impl Client {
    fn phase(&self) -> std::sync::RwLockReadGuard<'_, Phase> {
        self.phase.read().unwrap_or_else(|p| p.into_inner())
    }

    fn phase_mut(&self) -> std::sync::RwLockWriteGuard<'_, Phase> {
        self.phase.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The open session, if any (never opens one).
    pub(super) fn current(&self) -> Option<Arc<Session>> {
        match &*self.phase() {
            Phase::Open(s) => Some(s.clone()),
            _ => None,
        }
    }

    /// The session for a call: opens one when the client was never connected (the call
    /// connects it), reports [`Found::Closed`] after `disconnect()`.
    pub(super) fn session(&self) -> Result<Found> {
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
    pub(super) fn session_for_reading(&self) -> Result<Arc<Session>> {
        match self.session()? {
            Found::Open(s) => Ok(s),
            Found::Closed => Err(Error::Closed),
        }
    }

    /// Notes that `stream` is read, for automatic trimming when configured to cover it.
    pub(super) fn read_from(&self, s: &Session, stream: &str) {
        if self.config.auto_trim_streams == AutoTrimStreams::Touched {
            s.touched.add(stream);
        }
    }

    /// Logs (throttled) that `what` failed open because the client is closed.
    pub(super) fn closed(&self, what: &str) {
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
}
