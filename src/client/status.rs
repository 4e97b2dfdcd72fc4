//! The status snapshot, and the background refresh of the numbers only Redis knows.

use super::session::Session;
use super::Client;
use crate::status::{ConnState, Counters, Insight, Status};

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

impl Client {
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
