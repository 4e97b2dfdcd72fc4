//! Fan-out and delivery: a read's entries handed to each subscription from its position
//! (one shared decode), and the task that hands them to the handler in order.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};
use tracing::{debug, error, warn};

use super::plan::Plan;
use super::registry::{by_stream, Registered};
use super::Subscriptions;
use crate::handler::{Batch, HandleResult, Handler, HandlerGone, Read, Report};
use crate::status::Counters;

/// Hands batches to the handler, in order, until the subscription ends: up to
/// [`Handler::max_in_flight`] at a time, so a handler that queues them on its side gets
/// the next batch without waiting for the previous one's result to come back.
///
/// Results come back through [`Handler::handle_then`] and are counted where they arrive
/// ([`InFlight::finish`]); this task is woken by one only when it waits for room, or to
/// finish, or when the handler is gone.
pub(super) async fn deliver(
    subs: Arc<Subscriptions>,
    sub: Arc<Registered>,
    mut rx: mpsc::Receiver<Batch>,
    handler: Arc<dyn Handler>,
) {
    // However this task ends (a handler that panics included), the subscription ends with
    // it, instead of staying registered with nobody to deliver to.
    let _gone = RemoveOnDrop {
        subs: subs.clone(),
        sub: sub.clone(),
        handler: handler.clone(),
    };
    let limit = handler.max_in_flight().max(1);
    let inflight = Arc::new(InFlight {
        subs: subs.clone(),
        sub: sub.clone(),
        running: AtomicUsize::new(0),
        finished: Notify::new(),
        gone: AtomicBool::new(false),
        gone_notify: Notify::new(),
    });
    let mut open = true;
    loop {
        if inflight.gone.load(Ordering::SeqCst) {
            break;
        }
        let running = inflight.running.load(Ordering::SeqCst);
        if !open && running == 0 {
            break;
        }
        tokio::select! {
            biased;
            _ = inflight.gone_notify.notified() => {}
            // Stopping takes no new batch; the running ones finish (the JavaScript side
            // skips what it had not started).
            _ = sub.token.cancelled(), if open => open = false,
            // Waits for a result only when it needs one: room for a batch, or the end.
            _ = inflight.finished.notified(), if !open || running >= limit => {}
            b = rx.recv(), if open && running < limit => match b {
                Some(b) => {
                    if sub.excluded.swap(false, Ordering::SeqCst) {
                        subs.wake();
                    }
                    inflight.running.fetch_add(1, Ordering::SeqCst);
                    let done = Done {
                        inflight: inflight.clone(),
                        n: b.len(),
                        reported: false,
                    };
                    handler.handle_then(b, Box::new(done));
                }
                None => open = false,
            },
        }
    }
}

/// The batches of one subscription handed over and not yet reported.
struct InFlight {
    subs: Arc<Subscriptions>,
    sub: Arc<Registered>,
    running: AtomicUsize,
    /// A batch was reported (wakes the delivery task only while it waits for one).
    finished: Notify,
    /// The handler is gone: the subscription ends.
    gone: AtomicBool,
    gone_notify: Notify,
}

impl InFlight {
    /// Counts a batch of `n` entries as reported, on whatever thread reports it.
    fn finish(&self, n: usize, result: HandleResult) {
        let was = self.sub.queued.fetch_sub(n as u64, Ordering::Relaxed);
        debug_assert!(
            was >= n as u64,
            "a batch reported before it was counted as queued"
        );
        match result.map(|o| o.clamped(n)) {
            Ok(outcome) => {
                self.subs
                    .counters
                    .delivered_to(&self.sub.stream, outcome.handled as u64);
                for f in &outcome.failures {
                    warn!(stream = %self.sub.stream, id = %f.id, error = %f.error, "subscription callback failed; delivery goes on");
                }
                Counters::add(
                    &self.subs.counters.callback_errors,
                    outcome.failures.len() as u64,
                );
            }
            Err(gone) => {
                if self.sub.token.is_cancelled() {
                    // Unsubscribed or disconnecting: there is nothing left to remove.
                    debug!(stream = %self.sub.stream, error = %gone, "a batch of an ended subscription was not reported");
                } else {
                    warn!(stream = %self.sub.stream, error = %gone, "subscription callback is gone; removing the subscription");
                }
                self.gone.store(true, Ordering::SeqCst);
                self.gone_notify.notify_one();
            }
        }
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.finished.notify_one();
    }
}

/// The report of one batch; dropped unreported (its handler panicked, or the JavaScript
/// environment went away with it queued), it reports the handler gone.
struct Done {
    inflight: Arc<InFlight>,
    n: usize,
    reported: bool,
}

impl Report for Done {
    fn report(mut self: Box<Self>, result: HandleResult) {
        self.reported = true;
        self.inflight.finish(self.n, result);
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        if !self.reported {
            self.inflight.finish(
                self.n,
                Err(HandlerGone(
                    "the batch was dropped before its result was reported".into(),
                )),
            );
        }
    }
}

/// Removes a subscription when its delivery task ends, and tells its handler when the core
/// ended it on its own.
pub(super) struct RemoveOnDrop {
    pub(super) subs: Arc<Subscriptions>,
    pub(super) sub: Arc<Registered>,
    pub(super) handler: Arc<dyn Handler>,
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let s = &self.sub;
        let removed = self.subs.subs().remove(&s.id).is_some();
        // Not ended by unsubscribe or disconnect (those remove it first or cancel it).
        let unexpected = removed && !s.token.is_cancelled();
        if unexpected {
            error!(stream = %s.stream, subscription = s.id, "a subscription's delivery stopped unexpectedly; it has ended (subscribe again)");
        }
        if removed {
            self.subs.forget_if_unsubscribed(&s.stream);
            self.subs.wake();
        }
        if unexpected || s.ended_by_core.load(Ordering::SeqCst) {
            self.handler.ended();
        }
    }
}

impl Subscriptions {
    /// Hands each subscription the entries of `reply` after its position. Each stream's
    /// entries are wrapped once in a shared [`Read`]: every subscription gets a view of it,
    /// not a copy.
    pub(super) fn dispatch(&self, plan: &Plan, reply: Vec<(String, Vec<crate::codec::Entry>)>) {
        let subs = self.subs();
        let of = by_stream(&subs, reply.iter().map(|(s, _)| s.as_str()));
        let mut active = Vec::with_capacity(reply.len());
        for (stream, entries) in reply {
            let Some(last) = entries.last().map(|e| e.id) else {
                continue;
            };
            debug!(stream = %stream, count = entries.len(), last = %last, "read");
            let stream_subs = of.get(stream.as_str()).map_or(&[][..], |v| &v[..]);
            let read = Read::new(Arc::from(stream.as_str()), entries);
            active.push(read.stream.clone());
            // A subscription whose entry number is known tells how many entries the stream
            // had up to `last`, at least.
            let mut end_count: Option<u64> = None;
            let subscribed = !stream_subs.is_empty();
            for sub in stream_subs {
                if !plan.members.contains(&sub.id) {
                    continue;
                }
                let mut position = sub.position();
                let Some(from) = position.cursor else {
                    continue;
                };
                let start = read.entries.partition_point(|e| e.id <= from);
                if start == read.entries.len() {
                    continue;
                }
                let batch = Batch::shared(read.clone(), start);
                let n = batch.len();
                // Counted before it is sent: once sent it can be handed over and reported
                // (subtracted) on another thread before this one would add it.
                sub.queued.fetch_add(n as u64, Ordering::Relaxed);
                let sent = sub.tx.try_send(batch);
                if sent.is_err() {
                    sub.queued.fetch_sub(n as u64, Ordering::Relaxed);
                }
                match sent {
                    Ok(()) => {
                        position.cursor = Some(last);
                        position.caller_given = false;
                        if let Some(seen) = position.seen.as_mut() {
                            *seen += n as u64;
                            end_count = end_count.max(Some(*seen));
                        }
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        // The reader planned with room, but in a cluster two node readers
                        // can both plan a subscription while its slot moves between them:
                        // the second finds the queue full. The cursor stays, and the
                        // entries are read again.
                        warn!(stream = %stream, count = n, "subscription queue full; will re-read");
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
            // An unsubscribe during the read forgot the stream's end: not recorded again.
            if subscribed {
                self.saw_end(&read.stream, last, end_count);
            }
        }
        drop(subs);
        let mut suspects = self.suspects();
        for stream in &active {
            suspects.push(stream);
        }
    }
}
