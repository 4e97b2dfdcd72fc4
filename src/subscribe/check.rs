//! The reader's position checks: which streams an idle BLOCK checks, one stream-facts
//! script (`XINFO STREAM` without payloads) per stream, and each subscription's
//! [`verdict`] applied, logged and counted.

use std::collections::HashSet;
use std::sync::{Arc, MutexGuard};

use redis::Value;
use tracing::warn;

use super::plan::Plan;
use super::positions::{
    unread_lost, verdict, Position, Reset, Suspects, Verdict, IDLE_CHECKS_PER_BLOCK,
    SUSPECT_CHECKS_PER_BLOCK,
};
use super::reader::ReaderState;
use super::registry::by_stream;
use super::Subscriptions;

/// Streams checked in one pipeline, at most (each pipeline has its own command timeout):
/// a check costs the server about 60 µs per stream (Redis 7.0, this machine), so 256 take
/// about 15 ms. A pipeline that times out halves the chunk for the next try (see
/// [`CheckChunk`]), down to [`MIN_CHECK_CHUNK`].
pub(super) const CHECK_CHUNK: usize = 256;

/// The smallest chunk a slow server or a loaded machine brings the checks down to.
const MIN_CHECK_CHUNK: usize = 8;

/// How many streams one pipeline of position checks takes now: halved after a check timed
/// out (the server too slow for the command timeout, so that the next try fits and the
/// reader gets back to reading instead of timing out on the same chunk for ever), doubled
/// back after a check that passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CheckChunk(usize);

impl Default for CheckChunk {
    fn default() -> Self {
        CheckChunk(CHECK_CHUNK)
    }
}

impl CheckChunk {
    /// The streams per pipeline now.
    pub(super) fn get(self) -> usize {
        self.0
    }

    /// After a check: `timed_out` halves the chunk, a check that passed doubles it back.
    pub(super) fn after(&mut self, timed_out: bool) {
        self.0 = if timed_out {
            (self.0 / 2).max(MIN_CHECK_CHUNK)
        } else {
            (self.0 * 2).min(CHECK_CHUNK)
        };
    }
}
use super::stream_facts::{
    parse_counts_after, parse_stream_facts, stream_facts_after_cmd, COUNTED_CURSORS,
};
use crate::codec::{StreamId, StreamInfo};
use crate::connection::{BlockingReader, ReadError};
use crate::status::Counters;

impl Subscriptions {
    pub(super) fn suspects(&self) -> MutexGuard<'_, Suspects> {
        self.suspects.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Compares the position of every subscription of `streams` with `XINFO STREAM`:
    /// reports gaps (entries after the position were trimmed or deleted before they were
    /// read) and restarts from `0-0` a subscription whose stream was deleted or recreated
    /// (its ids went back below the position, so it would otherwise never see a new entry).
    ///
    /// After the stream's server changed (it is in `switched`: a failover), ids that went
    /// back mean the new server lost the stream's last entries (replication is
    /// asynchronous): those up to the position were delivered, and any the old server took
    /// after them are lost. That is reported as a gap, and the subscription goes on from the
    /// new server's last id: reading from `0-0` would deliver everything again. A stream
    /// leaves `switched` once checked; one that could not be checked stays there and is
    /// queued as a suspect, so an idle check looks at it again soon.
    ///
    /// One pipeline per `chunk` streams, each within its own command timeout (thousands of
    /// streams in one pipeline may never fit in one, and the reader would never read again),
    /// and each applied as it comes: the streams checked go into `done`, so that a check
    /// that failed part way can go on with the others.
    pub(super) async fn check_positions(
        &self,
        reader: &mut BlockingReader,
        streams: &[Arc<str>],
        switched: &mut HashSet<Arc<str>>,
        chunk: CheckChunk,
        done: &mut HashSet<Arc<str>>,
    ) -> std::result::Result<(), ReadError> {
        for part in streams.chunks(chunk.get()) {
            let cursors = self.cursors_of(part);
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for (stream, cursors) in part.iter().zip(&cursors) {
                pipe.add_command(stream_facts_after_cmd(stream, cursors));
            }
            let replies = reader.command::<Vec<Value>>(&pipe).await?;
            self.apply_checks(part, &cursors, replies, switched);
            done.extend(part.iter().cloned());
        }
        Ok(())
    }

    /// Applies the replies of one pipeline of position checks (see [`Self::check_positions`]).
    fn apply_checks(
        &self,
        streams: &[Arc<str>],
        cursors: &[Vec<StreamId>],
        replies: Vec<Value>,
        switched: &mut HashSet<Arc<str>>,
    ) {
        let subs = self.subs();
        let of = by_stream(&subs, streams.iter().map(|s| &**s));
        for ((stream, reply), cursors) in streams.iter().zip(replies).zip(cursors) {
            let stream_subs = of.get(&**stream).map_or(&[][..], |v| &v[..]);
            let info = match &reply {
                // MOVED/ASK (its slot moved or is moving), TRYAGAIN/CLUSTERDOWN (resharding,
                // a failover), anything else: nothing is known about the stream now. Its
                // position stays; the read meets the same answer and finds the node, and the
                // next check looks again.
                Value::ServerError(e) => {
                    warn!(stream = %stream, error = %e, "cannot check the subscription's position now (its slot moves, or the cluster fails over); checking again later");
                    self.suspects().push(stream);
                    continue;
                }
                // `None`: the stream does not exist.
                v => match parse_stream_facts(v) {
                    Ok(i) => i,
                    Err(e) => {
                        warn!(stream = %stream, error = %e, "cannot read where the stream is; position not checked");
                        self.suspects().push(stream);
                        continue;
                    }
                },
            };
            let rolled_back_by_switch = switched.remove(stream);
            // Where the client knew the stream to end before this check: the entries a
            // subscription had not read when the stream went (see `unread_lost`).
            let end_before = self.end_of(stream);
            // Only while the stream is still subscribed: an unsubscribe during the check
            // forgot its end.
            if let Some(i) = info.as_ref().filter(|_| !stream_subs.is_empty()) {
                self.saw_end(stream, i.last_generated, Some(i.entries_added));
            }
            let counts = parse_counts_after(&reply, cursors);
            let mut went = false;
            for sub in stream_subs {
                let mut position = sub.position();
                let mut reported = sub.gap_reported.lock().unwrap_or_else(|p| p.into_inner());
                // A count made for another cursor (a read moved it meanwhile) says nothing.
                let after = counts
                    .iter()
                    .find(|(c, _)| Some(*c) == position.cursor)
                    .map(|(_, n)| *n);
                let v = verdict(
                    *position,
                    info.as_ref(),
                    rolled_back_by_switch,
                    *reported,
                    after,
                );
                let lost = unread_lost(*position, v, end_before);
                self.report(stream, *position, info.as_ref(), v, lost);
                went |= matches!(v, Verdict::ResetToZero(_) | Verdict::ResumeAt { .. });
                *position = v.apply(*position);
                if let Verdict::Gap { reported: r, .. } = v {
                    *reported = r;
                }
            }
            if went {
                // The end the client knew was the old stream's (or the old server's): the
                // stream now ends where this check found it.
                self.forget_end(stream);
                if let Some(i) = &info {
                    self.saw_end(stream, i.last_generated, Some(i.entries_added));
                }
            }
        }
    }

    /// For each of `streams`, the cursors of its subscriptions whose following entries a
    /// check counts: distinct, the nearest the stream's end first (the script counts from
    /// the end, and stops at the first cursor too far behind), at most [`COUNTED_CURSORS`].
    fn cursors_of(&self, streams: &[Arc<str>]) -> Vec<Vec<StreamId>> {
        let subs = self.subs();
        let of = by_stream(&subs, streams.iter().map(|s| &**s));
        streams
            .iter()
            .map(|stream| {
                let mut cursors: Vec<StreamId> = of
                    .get(&**stream)
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.position().cursor)
                    .collect();
                cursors.sort_unstable_by(|a, b| b.cmp(a));
                cursors.dedup();
                cursors.truncate(COUNTED_CURSORS);
                cursors
            })
            .collect()
    }

    /// Logs and counts what a position check found.
    pub(super) fn report(
        &self,
        stream: &str,
        was: Position,
        info: Option<&StreamInfo>,
        v: Verdict,
        unread_lost: Option<u64>,
    ) {
        let at = was.cursor.unwrap_or_default();
        let last_generated = info.map(|i| i.last_generated).unwrap_or_default();
        match v {
            Verdict::Keep | Verdict::Recount(_) => return,
            Verdict::Gap { missed, .. } => {
                let first_entry = info.and_then(|i| i.first_entry);
                warn!(
                    stream,
                    cursor = %at,
                    missed = %missed.map_or_else(|| "unknown".to_owned(), |n| n.to_string()),
                    first_entry = %first_entry.map_or_else(|| "none".to_owned(), |f| f.to_string()),
                    max_deleted = %info.map(|i| i.max_deleted).unwrap_or_default(),
                    "gap: entries after the last delivered id were trimmed or deleted before they could be read"
                );
                Counters::add(&self.counters.gaps, 1);
                return;
            }
            Verdict::ResetToZero(Reset::Deleted) => {
                warn!(stream, cursor = %at, "subscribed stream no longer exists; reading it from the start once it is created again");
            }
            Verdict::ResetToZero(Reset::Recreated) => {
                warn!(stream, cursor = %at, %last_generated, "subscribed stream was recreated (its ids went back); reading it from the start");
            }
            Verdict::ResumeAt { lost: true, .. } => {
                warn!(
                    stream,
                    cursor = %last_generated,
                    delivered_up_to = %at,
                    "gap: the stream went back in a failover; entries after the cursor that the old server took are lost (those up to delivered_up_to were delivered); reading on from the cursor"
                );
                Counters::add(&self.counters.gaps, 1);
            }
            Verdict::ResumeAt { lost: false, .. } => {
                warn!(stream, cursor = %at, %last_generated, "subscribed stream lost its newest entries (a failover to a replica that had not received them); they were delivered, resuming after its new last id");
            }
        }
        if let Some(missed) = unread_lost {
            warn!(
                stream,
                cursor = %at,
                missed,
                "gap: entries the subscription had not read went with the stream (deleted, recreated, or lost by its server)"
            );
            Counters::add(&self.counters.gaps, 1);
        }
        Counters::add(&self.counters.stream_resets, 1);
    }

    /// The streams an idle BLOCK checks: suspects first (up to
    /// [`SUSPECT_CHECKS_PER_BLOCK`]), then the round-robin over all planned streams, up to
    /// [`IDLE_CHECKS_PER_BLOCK`] in all, each once.
    pub(super) fn some_checks(&self, plan: &Plan, state: &mut ReaderState) -> Vec<Arc<str>> {
        let planned: HashSet<&str> = plan.keys.iter().map(|(s, _)| &**s).collect();
        let mut streams = self
            .suspects()
            .take(SUSPECT_CHECKS_PER_BLOCK, |s| planned.contains(s));
        let n = plan.keys.len();
        let room = IDLE_CHECKS_PER_BLOCK.saturating_sub(streams.len()).min(n);
        let from = state.idle_from % n;
        state.idle_from = (from + room) % n;
        for k in 0..room {
            let s = &plan.keys[(from + k) % n].0;
            if !streams.contains(s) {
                streams.push(s.clone());
            }
        }
        streams
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timed_out_check_halves_the_chunk_and_a_passed_one_doubles_it_back() {
        let mut c = CheckChunk::default();
        assert_eq!(c.get(), CHECK_CHUNK);
        for _ in 0..10 {
            c.after(true);
        }
        assert_eq!(c.get(), MIN_CHECK_CHUNK);
        c.after(false);
        assert_eq!(c.get(), 2 * MIN_CHECK_CHUNK);
        for _ in 0..10 {
            c.after(false);
        }
        assert_eq!(c.get(), CHECK_CHUNK);
    }
}
