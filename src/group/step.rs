//! The decisions of a consumer's loop, without I/O: which step comes next (own pending
//! entries first, then claims when due, then new entries), which entries of a batch go to the
//! dead-letter stream, and what a failed step means. Table-tested below; the loop in
//! `consumer.rs` only carries them out.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::codec::{Entry, StreamId};
use crate::connection::ReadError;
use crate::error::{classify, Failure};

/// What the loop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// No connection: dial one.
    Connect,
    /// Read this consumer's own pending entries after this id.
    OwnPending(StreamId),
    /// Take over entries other consumers left pending too long, scanning from this id.
    Claim(StreamId),
    /// Read new entries, blocking at most this long, with the outstanding XACK ahead.
    New(Duration),
}

/// Where a batch came from; entries from a pending list may be redeliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    OwnPending,
    Claimed,
    New,
}

/// Where the loop is.
pub(super) struct Progress {
    /// `Some(id)`: reading this consumer's own pending entries after `id`.
    pub(super) pending_from: Option<StreamId>,
    pub(super) claim_from: StreamId,
    pub(super) claim_due: Instant,
    /// When failed entries are delivered again (with `maxDeliveries` and auto-ack).
    pub(super) retry_due: Option<Instant>,
    /// The group was found missing and has not been seen since.
    pub(super) missing_group: bool,
}

/// Shortest pause between two XAUTOCLAIM scans.
pub(super) const MIN_CLAIM_PERIOD: Duration = Duration::from_millis(50);

impl Progress {
    /// After a read of the own pending list that ended with `last` (`None`: it was empty):
    /// the pass goes on after `last`, or is over and new entries come next.
    pub(super) fn own_pending_read(&mut self, last: Option<StreamId>) {
        self.pending_from = last;
    }

    /// After a claim scan whose cursor came back as `next`: the scan goes on from there at
    /// once; a cursor of 0 ends it, and the next one is due after half of `idle` (at least
    /// [`MIN_CLAIM_PERIOD`]), so an entry is claimed at most `idle / 2` after it became idle
    /// long enough.
    pub(super) fn claim_scanned(&mut self, next: StreamId, now: Instant, idle: Duration) {
        self.claim_from = next;
        if next == StreamId::ZERO {
            self.claim_due = now + (idle / 2).max(MIN_CLAIM_PERIOD);
        }
    }
}

impl Source {
    /// Whether entries from here may have been delivered before (so `maxDeliveries` applies).
    pub(super) fn may_redeliver(self) -> bool {
        self != Source::New
    }
}

/// The next step, from where the loop is: no connection → connect; a due retry restarts the
/// own-pending pass from 0; an own-pending pass runs to its end before anything else; then a
/// due claim scan (only with `claim_idle`); else new entries, blocking no longer than the
/// next claim or retry is due (at least 1 ms: `BLOCK 0` would block forever).
pub(super) fn next_step(
    p: &mut Progress,
    connected: bool,
    now: Instant,
    claim_idle: Option<Duration>,
    block: Duration,
) -> Step {
    if !connected {
        return Step::Connect;
    }
    if p.retry_due.is_some_and(|t| now >= t) {
        p.retry_due = None;
        p.pending_from = Some(StreamId::ZERO);
    }
    if let Some(from) = p.pending_from {
        return Step::OwnPending(from);
    }
    if claim_idle.is_some() && now >= p.claim_due {
        return Step::Claim(p.claim_from);
    }
    let mut block = block;
    if claim_idle.is_some() {
        block = block.min(p.claim_due.saturating_duration_since(now));
    }
    if let Some(t) = p.retry_due {
        block = block.min(t.saturating_duration_since(now));
    }
    Step::New(block.max(Duration::from_millis(1)))
}

/// Splits a batch read from a pending list into the entries to deliver and the poison ones
/// (delivered more than `max` times) with their delivery counts. An entry XPENDING did not
/// report is delivered.
pub(super) fn split_poison(
    entries: Vec<Entry>,
    counts: &HashMap<StreamId, u64>,
    max: u64,
) -> (Vec<Entry>, Vec<(Entry, u64)>) {
    let (poison, ok): (Vec<Entry>, Vec<Entry>) = entries
        .into_iter()
        .partition(|e| counts.get(&e.id).is_some_and(|n| *n > max));
    let poison = poison
        .into_iter()
        .map(|e| {
            let n = counts.get(&e.id).copied().unwrap_or_default();
            (e, n)
        })
        .collect();
    (ok, poison)
}

/// Why a step failed, and so what to do next.
#[derive(Debug)]
pub(super) enum StepError {
    /// The connection is gone: reconnect.
    Connection(String),
    /// The group (or stream) is missing.
    NoGroup,
    /// The server cannot serve it now (failover, loading, memory): wait, maybe reconnect.
    ServerState { reconnect: bool, why: String },
    /// The server refused something else.
    Refused(String),
}

impl From<ReadError> for StepError {
    fn from(e: ReadError) -> Self {
        let ReadError::Redis(re) = &e else {
            return StepError::Connection(e.to_string());
        };
        match classify(re) {
            Failure::Connection => StepError::Connection(e.to_string()),
            // The stream's slot lives on another node now: find it and reconnect there.
            Failure::Redirect => StepError::Connection(e.to_string()),
            Failure::NoGroup => StepError::NoGroup,
            Failure::ServerState { reconnect } => StepError::ServerState {
                reconnect,
                why: e.to_string(),
            },
            _ => StepError::Refused(e.to_string()),
        }
    }
}

impl From<crate::error::Error> for StepError {
    fn from(e: crate::error::Error) -> Self {
        StepError::Refused(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: Duration = Duration::from_millis(5_000);
    const IDLE: Option<Duration> = Some(Duration::from_millis(1_000));

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn id(n: u64) -> StreamId {
        StreamId::new(n, 0)
    }

    /// Where the loop is after its own pending list was read to the end, nothing due.
    fn idle_progress(now: Instant) -> Progress {
        Progress {
            pending_from: None,
            claim_from: StreamId::ZERO,
            claim_due: now + ms(10_000),
            retry_due: None,
            missing_group: false,
        }
    }

    #[test]
    fn next_step_covers_every_branch() {
        let now = Instant::now();
        struct Row {
            name: &'static str,
            connected: bool,
            claim_idle: Option<Duration>,
            set: fn(&mut Progress, Instant),
            step: Step,
            pending_after: Option<StreamId>,
            retry_cleared: bool,
        }
        let rows = [
            Row {
                name: "no connection: connect, whatever else is due",
                connected: false,
                claim_idle: IDLE,
                set: |p, now| {
                    p.pending_from = Some(id(3));
                    p.claim_due = now;
                    p.retry_due = Some(now);
                },
                step: Step::Connect,
                pending_after: Some(id(3)),
                retry_cleared: false,
            },
            Row {
                name: "own pending entries come first, before a due claim",
                connected: true,
                claim_idle: IDLE,
                set: |p, now| {
                    p.pending_from = Some(id(7));
                    p.claim_due = now;
                },
                step: Step::OwnPending(id(7)),
                pending_after: Some(id(7)),
                retry_cleared: true,
            },
            Row {
                name: "a due retry restarts the own-pending pass from 0",
                connected: true,
                claim_idle: None,
                set: |p, now| p.retry_due = Some(now),
                step: Step::OwnPending(StreamId::ZERO),
                pending_after: Some(StreamId::ZERO),
                retry_cleared: true,
            },
            Row {
                name: "a due retry overrides an own-pending pass in progress",
                connected: true,
                claim_idle: None,
                set: |p, now| {
                    p.pending_from = Some(id(9));
                    p.retry_due = Some(now - ms(1));
                },
                step: Step::OwnPending(StreamId::ZERO),
                pending_after: Some(StreamId::ZERO),
                retry_cleared: true,
            },
            Row {
                name: "a due claim scan resumes at its cursor",
                connected: true,
                claim_idle: IDLE,
                set: |p, now| {
                    p.claim_due = now;
                    p.claim_from = id(4);
                },
                step: Step::Claim(id(4)),
                pending_after: None,
                retry_cleared: true,
            },
            Row {
                name: "without claimIdleMs there is no claim, however late",
                connected: true,
                claim_idle: None,
                set: |p, now| p.claim_due = now - ms(60_000),
                step: Step::New(BLOCK),
                pending_after: None,
                retry_cleared: true,
            },
            Row {
                name: "nothing due: new entries, blocking the configured time",
                connected: true,
                claim_idle: IDLE,
                set: |p, now| p.claim_due = now + ms(60_000),
                step: Step::New(BLOCK),
                pending_after: None,
                retry_cleared: true,
            },
            Row {
                name: "the read blocks no longer than the next claim is due",
                connected: true,
                claim_idle: IDLE,
                set: |p, now| p.claim_due = now + ms(300),
                step: Step::New(ms(300)),
                pending_after: None,
                retry_cleared: true,
            },
            Row {
                name: "the read blocks no longer than the next retry is due",
                connected: true,
                claim_idle: None,
                set: |p, now| p.retry_due = Some(now + ms(200)),
                step: Step::New(ms(200)),
                pending_after: None,
                retry_cleared: false,
            },
        ];
        for r in rows {
            let mut p = idle_progress(now);
            (r.set)(&mut p, now);
            let step = next_step(&mut p, r.connected, now, r.claim_idle, BLOCK);
            assert_eq!(step, r.step, "{}", r.name);
            assert_eq!(p.pending_from, r.pending_after, "{}: pending_from", r.name);
            assert_eq!(
                p.retry_due.is_none(),
                r.retry_cleared,
                "{}: retry_due",
                r.name
            );
        }
    }

    #[test]
    fn the_read_never_blocks_for_zero() {
        // `BLOCK 0` would block forever: a claim due right now still gives 1 ms.
        let now = Instant::now();
        let mut p = idle_progress(now);
        p.retry_due = Some(now + ms(10));
        let later = now + ms(10) - Duration::from_nanos(1);
        assert_eq!(
            next_step(&mut p, true, later, None, BLOCK),
            Step::New(ms(1))
        );
    }

    #[test]
    fn own_pending_first_then_new() {
        let now = Instant::now();
        let mut p = idle_progress(now);
        p.pending_from = Some(StreamId::ZERO);
        assert_eq!(
            next_step(&mut p, true, now, None, BLOCK),
            Step::OwnPending(StreamId::ZERO)
        );
        p.own_pending_read(Some(id(5)));
        assert_eq!(
            next_step(&mut p, true, now, None, BLOCK),
            Step::OwnPending(id(5)),
            "a full page: the pass goes on after its last id"
        );
        p.own_pending_read(None);
        assert_eq!(
            next_step(&mut p, true, now, None, BLOCK),
            Step::New(BLOCK),
            "an empty page ends the pass"
        );
    }

    #[test]
    fn a_claim_scan_runs_to_its_end_then_waits_half_the_idle_time() {
        let now = Instant::now();
        let idle = ms(1_000);
        let mut p = idle_progress(now);
        p.claim_due = now;
        p.claim_scanned(id(8), now, idle);
        assert_eq!(
            next_step(&mut p, true, now, Some(idle), BLOCK),
            Step::Claim(id(8)),
            "a cursor other than 0: the scan goes on at once"
        );
        p.claim_scanned(StreamId::ZERO, now, idle);
        assert_eq!(p.claim_due, now + ms(500));
        assert_eq!(
            next_step(&mut p, true, now, Some(idle), BLOCK),
            Step::New(ms(500)),
            "cursor 0 ends the scan; the read blocks until the next one is due"
        );
        assert_eq!(
            next_step(&mut p, true, now + ms(500), Some(idle), BLOCK),
            Step::Claim(StreamId::ZERO)
        );
        // A tiny idle time still leaves MIN_CLAIM_PERIOD between scans.
        p.claim_scanned(StreamId::ZERO, now, ms(2));
        assert_eq!(p.claim_due, now + MIN_CLAIM_PERIOD);
    }

    fn entry(n: u64) -> Entry {
        Entry {
            id: id(n),
            fields: Some(vec![(b"k".to_vec(), b"v".to_vec())]),
        }
    }

    #[test]
    fn split_poison_takes_only_entries_delivered_more_than_max() {
        // (entry, delivery count XPENDING reported, poison?)
        let rows: [(u64, Option<u64>, bool); 4] = [
            (1, Some(2), false), // below max
            (2, Some(3), false), // at max: one more delivery allowed
            (3, Some(4), true),  // above max
            (4, None, false),    // not reported (acknowledged meanwhile): delivered
        ];
        let counts: HashMap<StreamId, u64> = rows
            .iter()
            .filter_map(|(n, c, _)| Some((id(*n), (*c)?)))
            .collect();
        let entries = rows.iter().map(|(n, _, _)| entry(*n)).collect();
        let (ok, poison) = split_poison(entries, &counts, 3);
        let ok: Vec<StreamId> = ok.iter().map(|e| e.id).collect();
        let poison: Vec<(StreamId, u64)> = poison.iter().map(|(e, n)| (e.id, *n)).collect();
        assert_eq!(ok, vec![id(1), id(2), id(4)]);
        assert_eq!(poison, vec![(id(3), 4)]);
    }

    #[test]
    fn only_entries_from_a_pending_list_can_be_redeliveries() {
        assert!(Source::OwnPending.may_redeliver());
        assert!(Source::Claimed.may_redeliver());
        assert!(!Source::New.may_redeliver());
    }
}
