//! Whether a subscription's position still fits its stream: the decision, as a pure function
//! of what `XINFO STREAM` says and where the subscription is ([`verdict`]), and the choice of
//! which streams an idle reader checks ([`Suspects`]).
//!
//! A position can stop fitting in four ways: entries after it were trimmed or deleted before
//! they were read (a gap), the stream was deleted (read it from the start once it exists
//! again), it was recreated with smaller ids (from the start), or a failover lost its newest
//! entries (go on after the new last id: the ones up to the position were delivered).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use super::ends::StreamEnd;
use crate::codec::{StreamId, StreamInfo};

/// Streams whose position an idle BLOCK checks, at most: with thousands of idle
/// subscriptions, the checks go round over the streams instead of costing a command per
/// stream per BLOCK period.
pub(super) const IDLE_CHECKS_PER_BLOCK: usize = 16;

/// Of those, how many go to suspects first (see [`Suspects`]); the rest keep the
/// round-robin over every stream going, so a stream deleted or recreated while nobody read
/// it is still found.
pub(super) const SUSPECT_CHECKS_PER_BLOCK: usize = 12;

/// How often, at most, a reader checks the streams that delivered entries since their last
/// check while it is busy: a BLOCK that never ends empty (the next entries are always there)
/// must not postpone a gap report (a trim of entries not read yet, found once the reader is
/// at the stream's end) until the stream goes quiet, or for ever if the stream is lost
/// first. A reader with such suspects also blocks no longer than this.
pub(super) const BUSY_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// A stream whose last id went back below a subscription's position by at most this much
/// (in the ids' milliseconds) lost its newest entries in a failover: asynchronous replication
/// let the old primary acknowledge entries the promoted replica never got. The subscription
/// delivered them, so it resumes after the stream's new last id (reading from the start would
/// deliver the whole stream again). Further back, the stream was deleted and recreated with
/// smaller ids, and is read from the start. Used only when the reader could not tell that
/// its server changed (a change it sees is a failover whatever the distance).
pub(super) const LOST_TAIL_WINDOW_MS: u64 = 10_000;

/// Where a subscription is in its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Position {
    /// Last id handed to the subscription, or the id the caller asked to start after;
    /// `None` until `"$"` is resolved.
    pub cursor: Option<StreamId>,
    /// How many entries were ever added to the stream up to the cursor (its entry number),
    /// when known: with it, a trim that removed unread entries shows as `removed > seen`.
    /// Unknown after an explicit start id until a check finds the cursor at the stream's
    /// last id, or counts the entries after it (see [`verdict`]'s `after`).
    pub seen: Option<u64>,
    /// The cursor is the caller's start id and nothing was delivered yet. Such a cursor says
    /// "entries after this id", not "the stream reached this id": one beyond the stream's
    /// last id is a checkpoint or "from now on", never a sign that the stream went back.
    pub caller_given: bool,
}

/// What has been reported as a gap already, so that each gap is reported once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct GapReported {
    /// The largest deleted id when last reported.
    pub max_deleted: StreamId,
}

/// Why a subscription reads its stream from the start again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reset {
    /// The stream no longer exists; it is read from `0-0` once it is created again.
    Deleted,
    /// Its ids went back far below the position: it was deleted and created again.
    Recreated,
}

/// What a position check decided for one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The position fits the stream.
    Keep,
    /// The position fits; its entry number is now `Some` known count, or no longer known.
    Recount(Option<u64>),
    /// Entries after the position were trimmed or deleted before they were read: report it
    /// (how many when the count is known). The cursor stays: the next read goes on with
    /// the oldest entry left.
    Gap {
        /// Entries lost, when the entry number tells (after an XDEL, at best an estimate).
        missed: Option<u64>,
        /// The position's entry number from now on.
        seen: Option<u64>,
        /// What is reported from now on.
        reported: GapReported,
    },
    /// Read the stream from `0-0`.
    ResetToZero(Reset),
    /// The stream lost its newest entries in a failover: go on after its new last id.
    /// `lost`: the reader saw its server change, so entries the old server took after the
    /// position may be lost too (reported as a gap).
    ResumeAt {
        /// The stream's last id now.
        at: StreamId,
        /// Its entry number.
        seen: u64,
        /// Whether this is reported as a gap.
        lost: bool,
    },
}

impl Verdict {
    /// The position this verdict leaves.
    pub(super) fn apply(self, p: Position) -> Position {
        match self {
            Verdict::Keep => p,
            Verdict::Recount(seen) | Verdict::Gap { seen, .. } => Position { seen, ..p },
            Verdict::ResetToZero(_) => Position {
                cursor: Some(StreamId::ZERO),
                seen: Some(0),
                caller_given: false,
            },
            Verdict::ResumeAt { at, seen, .. } => Position {
                cursor: Some(at),
                seen: Some(seen),
                caller_given: false,
            },
        }
    }
}

/// Decides whether `position` still fits its stream.
///
/// `stream`: what `XINFO STREAM` said (`None`: no such key). `switched`: the stream's server
/// changed since it was last checked (a failover, a restart), so ids that went back were
/// rolled back, not recreated. `reported`: what was reported as a gap already. `after`: how
/// many entries follow the cursor, counted with `stream` when the check could.
pub(super) fn verdict(
    position: Position,
    stream: Option<&StreamInfo>,
    switched: bool,
    reported: GapReported,
    after: Option<u64>,
) -> Verdict {
    let Some(at) = position.cursor else {
        return Verdict::Keep;
    };
    let Some(info) = stream else {
        return missing(position, at);
    };
    let reported = own_report(info, reported);
    let last = info.last_generated;
    let exact = after.and_then(|n| entry_number(at, info, n));
    if last >= at && went_back_unseen(position, at, info) {
        return Verdict::Gap {
            missed: None,
            seen: exact,
            reported: reported_now(info, reported),
        };
    }
    if last <= at {
        return at_or_past_end(position, at, info, switched, reported);
    }
    match exact {
        Some(n) => counted(position, n, info, reported),
        None => gap(position, at, info, reported),
    }
}

/// The entry number of a cursor behind the stream's last id, from the entries that follow
/// it (`after`): exact when none after it was removed, that is when the oldest entry left is
/// at or before it and no XDEL went past it. Trims remove the oldest entries first, except
/// Redis 8.2's `XTRIM … ACKED`, which keeps a group's pending entries and removes acknowledged
/// ones after them, without moving `max-deleted-entry-id` (8.2.3: entries 1-50, 11-15
/// pending, `MAXLEN = 5 ACKED` left 11-15 and 31-50). Past such a cursor the number is too
/// large by exactly the entries removed after it, unread: [`counted`] reports them as a gap.
fn entry_number(at: StreamId, info: &StreamInfo, after: u64) -> Option<u64> {
    let kept = info.first_entry.is_some_and(|f| f <= at) && info.max_deleted <= at;
    (kept && info.last_generated > at).then(|| info.entries_added.saturating_sub(after))
}

/// The verdict for a cursor behind the stream's last id whose entry number the stream told
/// exactly (`n`; nothing after the cursor was removed, so no trim or XDEL took an unread
/// entry). More entries up to the cursor than the subscription counted: the stream went
/// back unseen (recreated, or rolled back in a failover behind one address) and got entries
/// at or below the cursor that were never read: a gap. Fewer: delivered entries went with a
/// rollback, and a count that kept them would hide the next trim of unread ones.
fn counted(position: Position, n: u64, info: &StreamInfo, reported: GapReported) -> Verdict {
    match position.seen {
        // Below a caller's start id, entries are not owed.
        Some(s) if n > s && !position.caller_given => Verdict::Gap {
            missed: Some(n - s),
            seen: Some(n),
            reported: reported_now(info, reported),
        },
        _ => recount(position, Some(n)),
    }
}

/// [`Verdict::Keep`] when the position's entry number is `seen` already, else
/// [`Verdict::Recount`].
fn recount(position: Position, seen: Option<u64>) -> Verdict {
    if position.seen == seen {
        Verdict::Keep
    } else {
        Verdict::Recount(seen)
    }
}

/// The verdict for a position in a stream that does not exist.
fn missing(position: Position, at: StreamId) -> Verdict {
    if at == StreamId::ZERO {
        recount(position, Some(0))
    } else if position.caller_given {
        // The caller's id stays the limit: entries a stream created again gets below it
        // are not read. An entry number learnt counted the old stream's entries.
        recount(position, None)
    } else {
        Verdict::ResetToZero(Reset::Deleted)
    }
}

/// What was reported as a gap of this stream: a stream's largest deleted id never goes
/// down, so below what was reported, this is another stream (created again, or another
/// server's), and that report is not its own.
fn own_report(info: &StreamInfo, reported: GapReported) -> GapReported {
    if info.max_deleted < reported.max_deleted {
        GapReported::default()
    } else {
        reported
    }
}

/// What is reported from now on, once a gap of `info` is reported.
fn reported_now(info: &StreamInfo, reported: GapReported) -> GapReported {
    GapReported {
        max_deleted: reported.max_deleted.max(info.max_deleted),
    }
}

/// Every entry up to the cursor counted, plus one per entry after it: a stream with fewer
/// went back (recreated, or rolled back in a failover) and new entries reached or passed
/// the cursor before a check saw it. Those of them at or below the cursor were never
/// read, and which they were only a full read could tell. A count of the entries after the
/// cursor does not tell either: the entries up to the cursor are then fewer than counted,
/// by the delivered ones the stream lost less the new ones it got at or below the cursor,
/// and the report (of unknown size) may be a false alarm after a rollback whose new entries
/// all came after the cursor, rather than a silent skip after a recreation.
fn went_back_unseen(position: Position, at: StreamId, info: &StreamInfo) -> bool {
    let last = info.last_generated;
    position
        .seen
        .is_some_and(|s| info.entries_added < s || (last > at && info.entries_added == s))
}

/// The verdict for a cursor at or beyond the stream's last id.
fn at_or_past_end(
    position: Position,
    at: StreamId,
    info: &StreamInfo,
    switched: bool,
    reported: GapReported,
) -> Verdict {
    let last = info.last_generated;
    let unread_went = position
        .seen
        .filter(|&s| last == at && !position.caller_given && info.entries_added > s);
    if let Some(seen) = unread_went {
        // At the stream's end, yet fewer entries seen than it ever had: some were
        // trimmed away before they were read, and the reads went on after them.
        return Verdict::Gap {
            missed: Some(info.entries_added - seen),
            seen: Some(info.entries_added),
            reported: reported_now(info, reported),
        };
    }
    if last == at {
        // Every entry the stream ever had is at or before the cursor.
        return recount(position, Some(info.entries_added));
    }
    if position.caller_given {
        // "Entries after this id": nothing went back. Its entry number is not learnt
        // here: entries the stream gets below the id are never read, and would make it
        // fall behind (a false gap at the stream's end). One learnt when the stream was
        // at the id counted a stream that has since gone back (recreated, rolled back):
        // kept, it would hide the next entries lost unread.
        return recount(position, None);
    }
    went_back(at, info, switched)
}

/// The verdict for a stream whose last id went back below a cursor the subscription
/// reached: its newest entries were lost in a failover (go on after its new last id), or
/// it was deleted and created again (read it from the start).
fn went_back(at: StreamId, info: &StreamInfo, switched: bool) -> Verdict {
    let last = info.last_generated;
    let resume = |lost| Verdict::ResumeAt {
        at: last,
        seen: info.entries_added,
        lost,
    };
    if switched {
        resume(true)
    } else if at.ms - last.ms <= LOST_TAIL_WINDOW_MS {
        resume(false)
    } else {
        Verdict::ResetToZero(Reset::Recreated)
    }
}

/// The verdict for a cursor behind the stream's last id: a gap when entries after it went
/// before they were read, else [`Verdict::Keep`].
fn gap(position: Position, at: StreamId, info: &StreamInfo, reported: GapReported) -> Verdict {
    // Trims leave `max-deleted-entry-id` alone: with a known entry number, more entries
    // removed than existed up to the cursor means unread ones went. (Redis 8.2's `ACKED`
    // trims may keep older pending entries while removing unread ones after the cursor:
    // the count shows those only once they outnumber the kept ones, or at the stream's end.) XDEL moves `max-deleted-entry-id`: past the cursor, an unread entry went. The
    // entry number stays: it falls behind by the entries deleted unread, which the check at
    // the stream's end then reports with their count (an XDEL found first by its id is
    // reported twice, rather than one the reads passed before a check not at all).
    let removed = info.removed();
    let by_count = position.seen.filter(|&s| removed > s).map(|s| removed - s);
    let by_id = info.max_deleted > at && info.max_deleted > reported.max_deleted;
    if by_count.is_none() && !by_id {
        return Verdict::Keep;
    }
    Verdict::Gap {
        missed: by_count,
        seen: if by_count.is_some() {
            Some(removed)
        } else {
            position.seen
        },
        reported: GapReported {
            max_deleted: reported.max_deleted.max(info.max_deleted),
        },
    }
}

/// Entries a subscription had not read when its stream went (a reset: deleted, recreated,
/// or a failover's lost tail), by the end the client knew before the check (`end`): they
/// are lost with the old stream, a gap as much as a trim of them is. `None` when there were
/// none, or the entry numbers do not tell. (A lost tail with `lost` set is a gap already.)
pub(super) fn unread_lost(position: Position, v: Verdict, end: Option<StreamEnd>) -> Option<u64> {
    if !matches!(
        v,
        Verdict::ResetToZero(_) | Verdict::ResumeAt { lost: false, .. }
    ) {
        return None;
    }
    let (at, seen, end) = (position.cursor?, position.seen?, end?);
    let added = end.entries_added?;
    (end.last_id > at && added > seen).then(|| added - seen)
}

/// Streams whose position should be checked before the others: those that delivered
/// entries since their last check, and those read again after their subscription was too
/// busy to be read (while it was left out, a trim may have removed entries it never saw).
/// An idle stream that never changed needs a check only for deletion or recreation, which
/// the round-robin finds; with thousands of idle streams, a gap on an active one is
/// reported within a few BLOCK periods instead of after a round over all of them.
#[derive(Default)]
pub(super) struct Suspects {
    order: VecDeque<Arc<str>>,
    queued: HashSet<Arc<str>>,
}

impl Suspects {
    /// Queues `stream` unless it is queued already.
    pub(super) fn push(&mut self, stream: &Arc<str>) {
        if self.queued.insert(stream.clone()) {
            self.order.push_back(stream.clone());
        }
    }

    /// Takes up to `n` suspects that `wanted` accepts, oldest first; the others keep their
    /// place (in a cluster, each node reader takes its own streams).
    pub(super) fn take(&mut self, n: usize, wanted: impl Fn(&str) -> bool) -> Vec<Arc<str>> {
        let mut taken = Vec::new();
        let mut kept = VecDeque::with_capacity(self.order.len());
        while let Some(s) = self.order.pop_front() {
            if taken.len() < n && wanted(&s) {
                self.queued.remove(&s);
                taken.push(s);
            } else {
                kept.push_back(s);
            }
        }
        self.order = kept;
        taken
    }

    /// Whether no stream is queued.
    pub(super) fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Whether a suspect is waiting that `wanted` accepts.
    pub(super) fn any(&self, wanted: impl Fn(&str) -> bool) -> bool {
        self.order.iter().any(|s| wanted(s))
    }

    /// Forgets `stream` (nobody subscribes to it any more): a look-up when it is not
    /// queued, not a scan of every suspect.
    pub(super) fn forget(&mut self, stream: &str) {
        if self.queued.remove(stream) {
            self.order.retain(|s| &**s != stream);
        }
    }
}

#[cfg(test)]
mod model;

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64, seq: u64) -> StreamId {
        StreamId { ms, seq }
    }

    /// A stream whose ids are `ms-0`: `last` the last id ever generated, `added` entries
    /// ever added, `length` still there, `max_deleted` the largest XDEL'd id.
    fn info(last: u64, added: u64, length: u64, max_deleted: u64) -> StreamInfo {
        StreamInfo {
            last_generated: id(last, 0),
            max_deleted: id(max_deleted, 0),
            first_entry: (length > 0).then(|| id(last + 1 - length, 0)),
            entries_added: added,
            length,
        }
    }

    fn ours(at: u64, seen: Option<u64>) -> Position {
        Position {
            cursor: Some(id(at, 0)),
            seen,
            caller_given: false,
        }
    }

    fn given(at: u64) -> Position {
        Position {
            cursor: Some(id(at, 0)),
            seen: None,
            caller_given: true,
        }
    }

    /// What the row shows; the position; the stream (`None`: missing); whether its server
    /// changed; what was reported; the expected verdict.
    type Row = (
        &'static str,
        Position,
        Option<StreamInfo>,
        bool,
        GapReported,
        Verdict,
    );

    const NONE: GapReported = GapReported {
        max_deleted: StreamId::ZERO,
    };
    const FAR: u64 = 100_000;

    #[test]
    fn every_branch_of_the_position_decision() {
        let unresolved = Position::default();
        let reported_at_50 = GapReported {
            max_deleted: id(50, 0),
        };
        #[rustfmt::skip]
        let table: Vec<Row> = vec![
            ("\"$\" not resolved yet: nothing to compare",
             unresolved, Some(info(100, 100, 100, 0)), false, NONE, Verdict::Keep),
            ("at the stream's end, count known",
             ours(100, Some(100)), Some(info(100, 100, 100, 0)), false, NONE, Verdict::Keep),
            ("at the stream's end, unread entries were trimmed and the reads went on after them",
             ours(100, Some(97)), Some(info(100, 100, 1, 0)), false, NONE,
             Verdict::Gap { missed: Some(3), seen: Some(100), reported: NONE }),
            ("at the stream's end, count learnt",
             ours(100, None), Some(info(100, 100, 100, 0)), false, NONE, Verdict::Recount(Some(100))),
            ("behind, nothing removed",
             ours(90, Some(90)), Some(info(100, 100, 100, 0)), false, NONE, Verdict::Keep),
            ("behind, read entries trimmed",
             ours(90, Some(90)), Some(info(100, 100, 20, 0)), false, NONE, Verdict::Keep),
            ("behind, unread entries trimmed: gap of 5, counted on from the trim",
             ours(90, Some(90)), Some(info(100, 100, 5, 0)), false, NONE,
             Verdict::Gap { missed: Some(5), seen: Some(95), reported: NONE }),
            ("behind, unread entry deleted (XDEL): gap, the count stays",
             ours(90, Some(90)), Some(info(100, 100, 99, 95)), false, NONE,
             Verdict::Gap { missed: None, seen: Some(90), reported: GapReported { max_deleted: id(95, 0) } }),
            ("behind, read entry deleted: no gap",
             ours(90, Some(90)), Some(info(100, 100, 99, 80)), false, NONE, Verdict::Keep),
            ("behind, count unknown, unread entry deleted: gap",
             ours(40, None), Some(info(100, 100, 99, 50)), false, NONE,
             Verdict::Gap { missed: None, seen: None, reported: reported_at_50 }),
            ("behind, count unknown, the same deletion reported already",
             ours(40, None), Some(info(100, 100, 99, 50)), false, reported_at_50, Verdict::Keep),
            ("behind, count unknown, a later deletion",
             ours(40, None), Some(info(100, 100, 98, 60)), false, reported_at_50,
             Verdict::Gap { missed: None, seen: None, reported: GapReported { max_deleted: id(60, 0) } }),
            ("count unknown, a deletion below the reported one: another stream, its own gap",
             ours(40, None), Some(info(100, 100, 99, 45)), false, reported_at_50,
             Verdict::Gap { missed: None, seen: None, reported: GapReported { max_deleted: id(45, 0) } }),
            ("stream deleted",
             ours(100, Some(100)), None, false, NONE, Verdict::ResetToZero(Reset::Deleted)),
            ("stream missing, reading from 0-0 already",
             ours(0, Some(0)), None, false, NONE, Verdict::Keep),
            ("ids went back far: recreated",
             ours(FAR + 100, Some(100)), Some(info(3, 3, 3, 0)), false, NONE,
             Verdict::ResetToZero(Reset::Recreated)),
            ("ids went back a little: a lost tail, resume after the new last id",
             ours(100, Some(100)), Some(info(97, 97, 97, 0)), false, NONE,
             Verdict::ResumeAt { at: id(97, 0), seen: 97, lost: false }),
            ("ids went back after the server changed: a failover lost entries, however far",
             ours(FAR + 100, Some(100)), Some(info(3, 3, 3, 0)), true, NONE,
             Verdict::ResumeAt { at: id(3, 0), seen: 3, lost: true }),
            ("ids went back and new ones overtook the cursor: fewer entries than seen",
             ours(100, Some(100)), Some(info(120, 30, 30, 0)), false, NONE,
             Verdict::Gap { missed: None, seen: None, reported: NONE }),
            ("deleted, and a new entry passed the cursor: no more entries than seen",
             ours(100, Some(100)), Some(info(120, 100, 1, 0)), false, NONE,
             Verdict::Gap { missed: None, seen: None, reported: NONE }),
            ("deleted, and new entries reached the cursor: fewer entries than seen",
             ours(100, Some(100)), Some(info(100, 2, 2, 0)), false, NONE,
             Verdict::Gap { missed: None, seen: None, reported: NONE }),
            ("server changed, nothing went back",
             ours(100, Some(100)), Some(info(120, 120, 120, 0)), true, NONE, Verdict::Keep),
            // A2: the caller's start id is beyond the stream's end ("from now on", a checkpoint).
            ("caller's id far beyond the end: not recreated",
             given(FAR + 100), Some(info(100, 100, 100, 0)), false, NONE, Verdict::Keep),
            ("caller's id a little beyond the end: not a lost tail",
             given(105), Some(info(100, 100, 100, 0)), false, NONE, Verdict::Keep),
            ("caller's id beyond the end after a failover: no gap",
             given(FAR + 100), Some(info(100, 100, 100, 0)), true, NONE, Verdict::Keep),
            ("caller's id at the end: count learnt",
             given(100), Some(info(100, 100, 100, 0)), false, NONE, Verdict::Recount(Some(100))),
            ("caller's id beyond the end of a stream that went back: the count learnt is forgotten",
             Position { seen: Some(100), ..given(100) }, Some(info(3, 3, 3, 0)), false, NONE,
             Verdict::Recount(None)),
            ("caller's id beyond the end, count never learnt: nothing to forget",
             given(100), Some(info(3, 3, 3, 0)), false, NONE, Verdict::Keep),
            ("caller's id beyond a missing stream: stays the limit",
             given(105), None, false, NONE, Verdict::Keep),
            ("caller's id at the end of a stream then deleted: the count learnt is forgotten",
             Position { seen: Some(100), ..given(100) }, None, false, NONE, Verdict::Recount(None)),
            ("caller's id behind the stream, unread entry deleted: gap",
             given(40), Some(info(100, 100, 99, 50)), false, NONE,
             Verdict::Gap { missed: None, seen: None, reported: reported_at_50 }),
            ("caller's 0-0 on a missing stream",
             Position { seen: Some(0), ..given(0) }, None, false, NONE, Verdict::Keep),
        ];
        for (what, position, stream, switched, reported, expected) in table {
            assert_eq!(
                verdict(position, stream.as_ref(), switched, reported, None),
                expected,
                "{what}"
            );
        }
    }

    #[test]
    fn a_count_of_the_entries_after_the_cursor_gives_the_exact_entry_number() {
        // (what, position, stream, entries after the cursor, expected)
        #[rustfmt::skip]
        let table: Vec<(&str, Position, StreamInfo, u64, Verdict)> = vec![
            ("behind, count right: kept",
             ours(90, Some(90)), info(100, 100, 100, 0), 10, Verdict::Keep),
            ("behind, count unknown: learnt",
             ours(90, None), info(100, 100, 100, 0), 10, Verdict::Recount(Some(90))),
            ("caller's id behind the stream: learnt",
             given(90), info(100, 100, 100, 0), 10, Verdict::Recount(Some(90))),
            ("behind after an unseen rollback: delivered entries went, the count follows",
             ours(90, Some(93)), info(100, 100, 100, 0), 10, Verdict::Recount(Some(90))),
            ("behind, entries appeared at or below the cursor unread: a gap of them",
             ours(90, Some(85)), info(100, 100, 100, 0), 10,
             Verdict::Gap { missed: Some(5), seen: Some(90), reported: NONE }),
            ("caller's id, entries below it are not owed",
             Position { seen: Some(85), ..given(90) }, info(100, 100, 100, 0), 10,
             Verdict::Recount(Some(90))),
            ("a trim took entries after the cursor: the count is not exact, the old rule decides",
             ours(90, Some(90)), info(100, 100, 5, 0), 5,
             Verdict::Gap { missed: Some(5), seen: Some(95), reported: NONE }),
            ("an XDEL after the cursor: not exact, reported by its id",
             ours(90, Some(90)), info(100, 100, 99, 95), 9,
             Verdict::Gap { missed: None, seen: Some(90), reported: GapReported { max_deleted: id(95, 0) } }),
            ("ids went back and new ones overtook the cursor: the gap, with the entry number",
             ours(100, Some(100)), info(120, 30, 30, 0), 20,
             Verdict::Gap { missed: None, seen: Some(10), reported: NONE }),
            ("at the stream's end: the count adds nothing",
             ours(100, Some(97)), info(100, 100, 1, 0), 0,
             Verdict::Gap { missed: Some(3), seen: Some(100), reported: NONE }),
        ];
        for (what, position, stream, after, expected) in table {
            assert_eq!(
                verdict(position, Some(&stream), false, NONE, Some(after)),
                expected,
                "{what}"
            );
        }
    }

    #[test]
    fn a_verdict_leaves_the_position_it_names() {
        let p = given(105);
        assert_eq!(Verdict::Keep.apply(p), p);
        assert_eq!(
            Verdict::Recount(Some(7)).apply(p),
            Position { seen: Some(7), ..p }
        );
        let from_zero = Position {
            cursor: Some(StreamId::ZERO),
            seen: Some(0),
            caller_given: false,
        };
        assert_eq!(Verdict::ResetToZero(Reset::Recreated).apply(p), from_zero);
        assert_eq!(
            Verdict::ResumeAt {
                at: id(3, 0),
                seen: 3,
                lost: true
            }
            .apply(p),
            ours(3, Some(3))
        );
    }

    fn s(name: &str) -> Arc<str> {
        Arc::from(name)
    }

    #[test]
    fn suspects_come_out_once_each_oldest_first_and_only_where_wanted() {
        let mut q = Suspects::default();
        for name in ["a", "b", "a", "c", "d"] {
            q.push(&s(name));
        }
        // "b" belongs to another node reader: it keeps its place.
        assert!(q.any(|x| x == "d") && !q.any(|x| x == "e"));
        assert_eq!(q.take(2, |x| x != "b"), vec![s("a"), s("c")]);
        assert_eq!(q.take(10, |_| true), vec![s("b"), s("d")]);
        assert!(q.take(10, |_| true).is_empty());
        q.push(&s("a"));
        q.push(&s("e"));
        q.forget("a");
        q.forget("never queued");
        assert_eq!(q.take(10, |_| true), vec![s("e")]);
        // Forgotten, it can be queued again.
        q.push(&s("a"));
        assert_eq!(q.take(10, |_| true), vec![s("a")]);
    }
}
