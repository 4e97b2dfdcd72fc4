//! The one task that opens command connections: connects, writes the offline buffer, hands
//! the connection out, pings it every second (at once when another connection of this
//! client just failed), and reconnects with back-off when it fails.

use std::sync::Arc;
use std::time::Duration;

use redis::{RedisError, Value};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::backoff::Backoff;
use super::command::CommandConn;
use super::dial::connect_error;
use crate::status::{ConnState, Counters};

/// How often the command connection is checked with a PING, whatever the traffic: a
/// connection whose server went away is only noticed when used.
const HEALTH_CHECK_EVERY: Duration = Duration::from_secs(1);

impl CommandConn {
    /// Keeps the connection up until `token` is cancelled: connects, waits for a failure,
    /// reconnects with back-off. The only task that opens command connections.
    pub async fn run(self: Arc<Self>, token: CancellationToken) {
        let mut backoff = Backoff::new(self.cfg.reconnect);
        let mut ever_connected = false;
        // The last connection was dropped for the server's state: keep backing off.
        let mut back_off_first = false;
        // The connection reached another server than before (a failover, a restart).
        let mut server_changed = false;
        self.link.state.send_replace(ConnState::Connecting);
        loop {
            let attempt = tokio::select! {
                biased;
                _ = token.cancelled() => break,
                r = self.target().open_command(&self.cfg) => r,
            };
            let failed = match attempt {
                Ok(mut conn) => {
                    // Sticky until checked: a failed attempt must not hide the move.
                    server_changed |= self.learn_server(&mut conn).await;
                    let epoch = self.link.next_epoch();
                    match self.ordered.flush_parked(&mut conn, epoch, &token).await {
                        Ok(()) => None,
                        Err(_) if token.is_cancelled() => break,
                        Err(e) => {
                            warn!(error = %e, "connection failed while writing parked publishes");
                            Some(e)
                        }
                    }
                }
                Err(e) => Some(e),
            };
            if let Some(e) = failed {
                if !self.retry_later(&mut backoff, &e, &token).await {
                    break;
                }
                continue;
            }
            self.connected(&mut backoff, ever_connected, back_off_first)
                .await;
            ever_connected = true;
            if server_changed {
                info!(url = %self.cfg.redis_url, "the command connection reached another server (a failover or a restart); checking the newest publishes");
                self.audit_soon();
                server_changed = false;
            }
            self.watch(&token).await;
            if token.is_cancelled() {
                break;
            }
            back_off_first = self.link.take_refused_for_state();
            if back_off_first && !self.wait_out_refusal(&mut backoff, &token).await {
                break;
            }
        }
        self.link.clear();
        self.ordered.fail_parked();
    }

    /// After a failed attempt: shows the state and waits the back-off. `false` when
    /// `token` was cancelled meanwhile.
    async fn retry_later(
        &self,
        backoff: &mut Backoff,
        e: &RedisError,
        token: &CancellationToken,
    ) -> bool {
        let delay = backoff.next_delay();
        let err = connect_error(e, &self.cfg);
        warn!(
            attempt = backoff.attempt(),
            retry_in_ms = delay.as_millis() as u64,
            url = %self.cfg.redis_url,
            error = %e,
            "cannot connect to Redis"
        );
        self.link
            .state
            .send_replace(backoff.reconnecting(delay, e.to_string(), err.code()));
        tokio::select! {
            _ = token.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }

    /// A connection is installed: counts and logs it, shows it, and in a cluster reads the
    /// slot map again.
    async fn connected(&self, backoff: &mut Backoff, ever_connected: bool, back_off_first: bool) {
        self.link.reset_timeouts();
        if ever_connected {
            Counters::add(&self.counters().reconnects, 1);
            info!(
                attempt = backoff.attempt(),
                url = %self.cfg.redis_url,
                "command connection re-established"
            );
        } else {
            info!(url = %self.cfg.redis_url, "connected to Redis");
        }
        if !back_off_first {
            backoff.reset();
        }
        self.link.state.send_replace(ConnState::Connected);
        if self.target().is_cluster() {
            self.refresh_slots().await;
        }
    }

    /// Watches the installed connection until it is dropped or `token` is cancelled: pings
    /// it now and then, and at once when another connection of this client just failed, so
    /// status and the next publish see the truth. In a cluster, asks for an audit when a
    /// master left the slot map.
    async fn watch(&self, token: &CancellationToken) {
        let mut topology = self.topology();
        let mut masters = self.masters();
        let cluster = self.target().is_cluster();
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = self.link.reconnect_now.notified() => return,
                _ = self.ping_soon.notified() => {}
                _ = tokio::time::sleep(HEALTH_CHECK_EVERY) => {}
                r = topology.changed(), if cluster => {
                    if r.is_ok() {
                        // A master that left the slot map failed (or was removed): the
                        // replica promoted in its place may lack its newest entries.
                        let now = self.masters();
                        if masters.iter().any(|m| !now.contains(m)) {
                            info!("a cluster master left the slot map; checking the newest publishes");
                            self.audit_soon();
                        }
                        masters = now;
                    }
                    continue;
                }
            }
            let _ = self.query::<Value, _>(&redis::cmd("PING")).await;
            if self.link.get().is_none() {
                return;
            }
        }
    }

    /// The connection was dropped because the server refused writes for its state: waits
    /// out the back-off before the next attempt, so that a server stuck in that state is
    /// not reconnected to once per command. `false` when `token` was cancelled meanwhile.
    async fn wait_out_refusal(&self, backoff: &mut Backoff, token: &CancellationToken) -> bool {
        let delay = backoff.next_delay();
        self.link.state.send_replace(backoff.reconnecting(
            delay,
            "Redis refused writes for its state (a failover?)".into(),
            "ERR_UNAVAILABLE",
        ));
        tokio::select! {
            _ = token.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }
}
