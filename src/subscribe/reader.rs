//! The reader's state machine: plan, connect, check positions, resolve `"$"`, read and
//! dispatch; and what it does after a failed step (reconnect, back off).

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use futures_util::FutureExt;
use redis::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::check::CheckChunk;
use super::plan::{slot_groups, xread_cmd, Plan};
use super::positions::BUSY_CHECK_EVERY;
use super::Subscriptions;
use crate::codec::parse_read_reply;
use crate::connection::{BlockingReader, NodeAddr, ReadError};
use crate::error::{classify, Failure};
use crate::status::Counters;

/// In a cluster, the blocking part of a read in turn lasts this long per ten slots that one
/// node reader reads (capped by BLOCK): a message on another slot of the node waits about
/// that long, and an idle node reader sends a bounded number of commands per second however
/// many slots it reads.
pub(super) const IN_TURN_SLICE: Duration = Duration::from_millis(100);

/// The `run_id` in an `INFO server` reply: it differs on another server, and after a restart.
pub(super) fn run_id(info: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix("run_id:"))
        .map(|v| v.trim().to_owned())
}

/// What the reader has to check before its next read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PositionCheck {
    /// Nothing.
    Skip,
    /// Every stream: the reader just reconnected, anything may have happened meanwhile.
    Everything,
    /// A few streams, round-robin: a BLOCK passed without news.
    RoundRobin,
}

/// The reader's memory between steps.
pub(super) struct ReaderState {
    pub(super) check: PositionCheck,
    pub(super) connected_before: bool,
    /// Where the round-robin of idle checks goes on.
    pub(super) idle_from: usize,
    /// Whose turn it is among the slots a cluster node reader reads.
    pub(super) turn: usize,
    /// Subscriptions changed.
    pub(super) changed: watch::Receiver<u64>,
    /// The cluster master this reader reads (`None`: the one reader).
    pub(super) node: Option<NodeAddr>,
    /// `run_id` of the server this reader last read from.
    pub(super) server: Option<String>,
    /// Streams whose server changed (a failover, a restart) since their positions were last
    /// checked: one whose ids went back was rolled back by it, not recreated. A stream stays
    /// here until a check could read it (the first one after a failover may meet
    /// CLUSTERDOWN or TRYAGAIN), so a rollback found later is still reported as a gap.
    pub(super) switched: HashSet<Arc<str>>,
    /// When positions were last checked (after a connect, an idle BLOCK or a busy second).
    pub(super) last_check: Instant,
    /// Streams per pipeline of position checks.
    pub(super) check_chunk: CheckChunk,
    /// Streams the check of every stream (after a connect) has checked so far: one that timed
    /// out part way goes on with the others after the reconnect, on the same server.
    pub(super) checked: HashSet<Arc<str>>,
    /// The check of every stream timed out part way: `checked` holds across the reconnect.
    pub(super) check_timed_out: bool,
}

/// What the reader does after a step.
pub(super) enum StepOutcome {
    /// Plan and go on.
    Next,
    /// The client is closing.
    Stop,
    /// The step failed: react (reconnect, wait) and go on.
    Failed(Plan, ReadError),
}

impl Subscriptions {
    /// The reader loop: plan, read, dispatch; reconnects with back-off and resumes every
    /// subscription from its last id. A step that panics is logged and the reader goes on
    /// with a fresh connection: the subscriptions must not go quiet with it. In a cluster
    /// there is one per master (`node`), reading the streams whose slots it owns.
    pub(super) async fn run_reader(
        self: Arc<Self>,
        mut reader: BlockingReader,
        node: Option<NodeAddr>,
        token: CancellationToken,
    ) {
        let mut state = ReaderState {
            check: PositionCheck::Skip,
            connected_before: false,
            idle_from: 0,
            turn: 0,
            changed: self.changed.subscribe(),
            node,
            server: None,
            switched: HashSet::new(),
            last_check: Instant::now(),
            check_chunk: CheckChunk::default(),
            checked: HashSet::new(),
            check_timed_out: false,
        };
        while !token.is_cancelled() {
            let outcome = AssertUnwindSafe(self.step(&mut reader, &mut state, &token))
                .catch_unwind()
                .await;
            let stop = match outcome {
                Ok(StepOutcome::Next) => false,
                Ok(StepOutcome::Stop) => true,
                Ok(StepOutcome::Failed(plan, e)) => {
                    self.after_failure(&mut reader, &plan, e, &token).await
                }
                Err(panic) => {
                    error!(error = %crate::lifecycle::panic_message(&*panic), "the subscription reader panicked; reconnecting and going on");
                    reader.disconnect();
                    let delay = reader.next_delay();
                    tokio::select! {
                        _ = token.cancelled() => true,
                        _ = tokio::time::sleep(delay) => false,
                    }
                }
            };
            if stop {
                break;
            }
        }
        reader.close();
        if let Some(addr) = &state.node {
            let mut readers = self.readers();
            if readers
                .get(&state.node)
                .is_some_and(|r| r.token.is_cancelled())
            {
                readers.remove(&state.node);
            }
            info!(node = %addr, "subscription reader stopped (its node owns no slots any more)");
        }
    }

    /// After a connect: learns the server (`run_id`), and schedules the position checks
    /// that whatever happened while the reader was away needs.
    async fn connected(
        &self,
        reader: &mut BlockingReader,
        state: &mut ReaderState,
    ) -> std::result::Result<(), ReadError> {
        let mut info = redis::cmd("INFO");
        info.arg("server");
        let server = run_id(&reader.command::<String>(&info).await?);
        // Whatever happened while we were away (trims, a deleted stream, a
        // failover) shows in the positions: check them all before reading. A new
        // cluster node reader takes over streams another node served (its master
        // failed, or their slots moved): check those too.
        if state.connected_before || state.node.is_some() {
            state.check = PositionCheck::Everything;
        }
        let same_server = state.server.is_some() && state.server == server;
        if !(state.check_timed_out && same_server) {
            state.checked.clear();
        }
        if (state.server.is_some() && state.server != server)
            || (!state.connected_before && state.node.is_some())
        {
            state.switched = self
                .owned_streams(state.node.as_ref())
                .into_iter()
                .collect();
        }
        state.server = server;
        state.connected_before = true;
        Ok(())
    }

    /// One step of the reader: wait for subscriptions, connect, check positions, resolve
    /// `"$"`, or read.
    pub(super) async fn step(
        &self,
        reader: &mut BlockingReader,
        state: &mut ReaderState,
        token: &CancellationToken,
    ) -> StepOutcome {
        state.changed.borrow_and_update();
        let Some(plan) = self.plan(state.node.as_ref()) else {
            return tokio::select! {
                _ = token.cancelled() => StepOutcome::Stop,
                _ = state.changed.changed() => StepOutcome::Next,
            };
        };
        match reader.connect(token).await {
            None => {
                // In a cluster, a node that refuses connections may have failed over: the
                // slot map names its successor once the cluster promoted one, and the
                // supervisor then replaces this reader.
                if !token.is_cancelled() {
                    self.cmd.refresh_slots().await;
                }
                return StepOutcome::Next;
            }
            Some(true) => {
                if let Err(e) = self.connected(reader, state).await {
                    return StepOutcome::Failed(plan, e);
                }
            }
            Some(false) => {}
        }
        let result = if state.check != PositionCheck::Skip && !plan.keys.is_empty() {
            let streams: Vec<Arc<str>> = match state.check {
                // Also the streams left out of the plan because their subscriptions' queues
                // are full: after a failover they must not be read on unchecked.
                PositionCheck::Everything => self.owned_streams(state.node.as_ref()),
                _ => self.some_checks(&plan, state),
            };
            let check = std::mem::replace(&mut state.check, PositionCheck::Skip);
            let mut some = HashSet::new();
            let (streams, done) = if check == PositionCheck::Everything {
                // Streams no longer subscribed here need no check (`streams` is sorted).
                state.switched.retain(|s| streams.binary_search(s).is_ok());
                let rest: Vec<Arc<str>> = streams
                    .into_iter()
                    .filter(|s| !state.checked.contains(s))
                    .collect();
                (rest, &mut state.checked)
            } else {
                (streams, &mut some)
            };
            let checked = self
                .check_positions(
                    reader,
                    &streams,
                    &mut state.switched,
                    state.check_chunk,
                    done,
                )
                .await;
            match &checked {
                Ok(()) => state.check_chunk.after(false),
                Err(e) if e.is_timeout() => state.check_chunk.after(true),
                Err(_) => {}
            }
            if check == PositionCheck::Everything {
                match &checked {
                    Ok(()) => state.checked.clear(),
                    Err(e) => state.check_timed_out = e.is_timeout(),
                }
            }
            if checked.is_err() {
                // Not checked: check again once the reader can.
                state.check = check;
            } else {
                state.last_check = Instant::now();
            }
            checked
        } else if !plan.unresolved.is_empty() {
            self.resolve_latest_on_reader(reader, &plan.unresolved)
                .await
        } else if plan.keys.is_empty() {
            return tokio::select! {
                _ = token.cancelled() => StepOutcome::Stop,
                _ = state.changed.changed() => StepOutcome::Next,
            };
        } else {
            self.read(reader, state, &plan).await
        };
        match result {
            Ok(()) => StepOutcome::Next,
            Err(e) => StepOutcome::Failed(plan, e),
        }
    }

    /// How long the next read may block, or `None` when streams that delivered entries are
    /// due for a check first ([`BUSY_CHECK_EVERY`]; `state.check` is set): a reader that is
    /// never idle still finds a trim of entries it had not read yet.
    fn block_or_check(&self, state: &mut ReaderState, plan: &Plan) -> Option<Duration> {
        let suspects = self.suspects();
        if suspects.is_empty() {
            return Some(plan.block);
        }
        let planned: HashSet<&str> = plan.keys.iter().map(|(s, _)| &**s).collect();
        if !suspects.any(|s| planned.contains(s)) {
            return Some(plan.block);
        }
        // Under a millisecond left counts as due: XREAD takes whole milliseconds, and
        // `BLOCK 0` would block for ever.
        let left = BUSY_CHECK_EVERY.saturating_sub(state.last_check.elapsed());
        if left < Duration::from_millis(1) {
            state.check = PositionCheck::RoundRobin;
            return None;
        }
        Some(plan.block.min(left))
    }

    /// Reads the planned streams: one blocking XREAD when they share one slot (always
    /// outside a cluster). In a cluster one XREAD can only name keys of one slot, and a node
    /// reader has one connection, so streams of several slots are read in turn: one
    /// pipeline of non-blocking XREADs (one per slot), and when that brings nothing, a
    /// short blocking XREAD on one slot after the other.
    pub(super) async fn read(
        &self,
        reader: &mut BlockingReader,
        state: &mut ReaderState,
        plan: &Plan,
    ) -> std::result::Result<(), ReadError> {
        let Some(block) = self.block_or_check(state, plan) else {
            return Ok(());
        };
        let groups = slot_groups(plan, state.node.is_some());
        let stale = || self.plan_version.load(Ordering::SeqCst) != plan.plan_version;
        if groups.len() > 1 {
            let mut pipe = redis::pipe();
            for keys in &groups {
                pipe.add_command(xread_cmd(keys, plan.count, None));
            }
            let replies: Vec<Value> = reader.command(&pipe).await?;
            let mut any = false;
            for v in replies {
                match parse_read_reply(&v) {
                    Ok(reply) if reply.is_empty() => {}
                    Ok(reply) => {
                        any = true;
                        self.dispatch(plan, reply);
                    }
                    Err(e) => error!(error = %e, "cannot parse an XREAD reply; re-reading"),
                }
            }
            if any {
                return Ok(());
            }
        }
        // One slot's streams, blocking: all of them, or (in turn) the next slot's with a
        // block short enough that the other slots wait at most about that long.
        let (keys, block) = if groups.len() > 1 {
            state.turn = (state.turn + 1) % groups.len();
            let slice = IN_TURN_SLICE.saturating_mul(groups.len().div_ceil(10) as u32);
            (&groups[state.turn], block.min(slice))
        } else {
            (&groups[0], block)
        };
        match reader
            .read::<Value>(
                &xread_cmd(keys, plan.count, Some(block)),
                block,
                plan.plan_version,
                stale,
            )
            .await?
        {
            // The plan changed before the read went out: plan again.
            None => {}
            Some(v) => match parse_read_reply(&v) {
                // A whole BLOCK without news (on every slot): a cheap moment to check that
                // no stream was deleted or recreated under us (ids lower than our position
                // would otherwise never be read).
                Ok(reply) if reply.is_empty() => state.check = PositionCheck::RoundRobin,
                Ok(reply) => self.dispatch(plan, reply),
                Err(e) => error!(error = %e, "cannot parse an XREAD reply; re-reading"),
            },
        }
        Ok(())
    }

    /// Reacts to a failed step of the reader; returns whether the reader must stop.
    pub(super) async fn after_failure(
        &self,
        reader: &mut BlockingReader,
        plan: &Plan,
        e: ReadError,
        token: &CancellationToken,
    ) -> bool {
        let failure = match &e {
            ReadError::Redis(re) => classify(re),
            ReadError::Watchdog(_) | ReadError::Timeout(_) => {
                // The link may be fine and the step too big or the server too slow for the
                // timeout: reconnecting at once would repeat it in a loop. The late reply
                // would still come on this connection, so it goes, and the reader backs off.
                warn!(error = %e, "the reader's step timed out; reconnecting after a back-off");
                self.cmd.probe_soon();
                reader.disconnect();
                let delay = reader.next_delay();
                return tokio::select! {
                    _ = token.cancelled() => true,
                    _ = tokio::time::sleep(delay) => false,
                };
            }
        };
        let wait = match failure {
            Failure::Connection | Failure::Redirect => {
                warn!(error = %e, "reader connection lost (or its slots moved); reconnecting");
                self.cmd.probe_soon();
                reader.disconnect();
                // In a cluster, a dead node or a moved slot changes who reads what.
                if self.cmd.refresh_slots().await || failure == Failure::Connection {
                    return false;
                }
                // A redirection without a new slot map: ASK while the slot migrates (the
                // node keeps it until the move ends). Back off instead of asking in a loop.
                reader.next_delay()
            }
            Failure::ServerState { reconnect } => {
                warn!(error = %e, reconnect, "Redis cannot serve the subscription read now (failover, loading); retrying");
                Counters::add(&self.counters.server_state_errors, 1);
                if reconnect {
                    reader.disconnect();
                }
                reader.next_delay()
            }
            _ => {
                let delay = reader.next_delay();
                error!(
                    error = %e,
                    streams = ?plan.keys.iter().map(|k| k.0.to_string()).collect::<Vec<_>>(),
                    retry_in_ms = delay.as_millis() as u64,
                    "Redis refused the subscription read; retrying"
                );
                delay
            }
        };
        tokio::select! {
            _ = token.cancelled() => true,
            _ = tokio::time::sleep(wait) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_id_is_read_from_info_server() {
        let info = "# Server\r\nredis_version:7.0.15\r\nrun_id:4f1c0a\r\ntcp_port:6379\r\n";
        assert_eq!(run_id(info).as_deref(), Some("4f1c0a"));
        assert_eq!(run_id("# Server\r\nredis_version:7.0.15\r\n"), None);
    }
}
