//! `metrics()`: the counters and gauges of a client in the Prometheus text exposition
//! format (version 0.0.4), for a `/metrics` route to return as is.
//!
//! Names follow Prometheus's conventions (`streamcast_` prefix, `_total` counters, base
//! units such as seconds). Labels are bounded: a metric keeps at most
//! [`MAX_SERIES`] label values apart and sums (gauges: the worst) the rest under the value
//! `_other`, so a client that touches many streams cannot grow a scrape without bound.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::status::{Counters, Status, MAX_LABELLED_STREAMS, OTHER_STREAMS};

/// Series (label sets) one labelled metric shows at most; the rest go under `_other`.
pub const MAX_SERIES: usize = MAX_LABELLED_STREAMS;

/// What `metrics()` reports besides the status and counters of the client.
#[derive(Debug, Clone, Copy, Default)]
pub struct Extra {
    /// Log lines dropped because the sink did not keep up (process-wide).
    pub log_dropped: u64,
}

/// Escapes a label value (`\`, `"` and newlines, as the format asks).
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// One metric family being written.
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &'static str, kind: &str, help: &str) -> Self {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out, name }
    }

    fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

fn counter(out: &mut String, name: &'static str, help: &str, value: u64) {
    Family::new(out, name, "counter", help).sample(&[], value as f64);
}

fn gauge(out: &mut String, name: &'static str, help: &str, value: f64) {
    Family::new(out, name, "gauge", help).sample(&[], value);
}

/// How the values of label sets past [`MAX_SERIES`] combine under `_other`.
#[derive(Clone, Copy)]
enum Fold {
    Sum,
    Max,
}

/// Keeps the first [`MAX_SERIES`] keys (in the order given) and folds the rest into one
/// `_other` entry.
fn bounded<K: Ord + Clone>(
    items: impl IntoIterator<Item = (K, f64)>,
    other: K,
    fold: Fold,
) -> BTreeMap<K, f64> {
    let mut kept: BTreeMap<K, f64> = BTreeMap::new();
    let mut rest: Option<f64> = None;
    for (k, v) in items {
        let combine = |a: f64| match fold {
            Fold::Sum => a + v,
            Fold::Max => a.max(v),
        };
        if let Some(x) = kept.get_mut(&k) {
            *x = combine(*x);
        } else if kept.len() < MAX_SERIES {
            kept.insert(k, v);
        } else {
            rest = Some(rest.map_or(v, combine));
        }
    }
    if let Some(r) = rest {
        let x = kept.entry(other).or_insert(0.0);
        *x = match fold {
            Fold::Sum => *x + r,
            Fold::Max => x.max(r),
        };
    }
    kept
}

/// Renders the metrics of a client from its status, its counters and `extra`.
pub fn render(status: &Status, counters: &Counters, extra: Extra) -> String {
    let c = &status.counters;
    let mut out = String::with_capacity(4096);
    gauge(
        &mut out,
        "streamcast_connected",
        "Whether the command connection to Redis works (1) or not (0).",
        f64::from(u8::from(status.connected)),
    );
    counter(
        &mut out,
        "streamcast_published_total",
        "Entries written by publishMessage and publishBatch.",
        c.published,
    );
    {
        let snap = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        let mut f = Family::new(
            &mut out,
            "streamcast_publish_failed_total",
            "counter",
            "Entries a publish call did not write, by reason: unavailable (resolved null), refused (Redis refused it), closed (after disconnect()).",
        );
        f.sample(
            &[("reason", "unavailable")],
            snap(&counters.publish_unavailable) as f64,
        );
        f.sample(
            &[("reason", "refused")],
            snap(&counters.publish_refused) as f64,
        );
        f.sample(
            &[("reason", "closed")],
            snap(&counters.publish_closed) as f64,
        );
    }
    counter(
        &mut out,
        "streamcast_publish_lost_total",
        "Entries a publish resolved with an id that a failover then lost.",
        c.publish_lost,
    );
    {
        let by = bounded(
            counters
                .delivered_by_stream()
                .into_iter()
                .map(|(s, n)| (s, n as f64)),
            OTHER_STREAMS.to_owned(),
            Fold::Sum,
        );
        let mut f = Family::new(
            &mut out,
            "streamcast_delivered_total",
            "counter",
            "Messages handed to callbacks (subscriptions and consumers), by stream.",
        );
        for (stream, n) in &by {
            f.sample(&[("stream", stream)], *n);
        }
    }
    for (name, help, value) in [
        (
            "streamcast_callback_errors_total",
            "Callbacks that threw or rejected.",
            c.callback_errors,
        ),
        (
            "streamcast_acked_total",
            "Group entries acknowledged (XACK).",
            c.acked,
        ),
        (
            "streamcast_claimed_total",
            "Entries taken over from idle consumers (XAUTOCLAIM).",
            c.claimed,
        ),
        (
            "streamcast_dead_lettered_total",
            "Entries moved to a dead-letter stream.",
            c.dead_lettered,
        ),
        (
            "streamcast_gaps_total",
            "Times a subscription found entries trimmed or deleted before it read them.",
            c.gaps,
        ),
        (
            "streamcast_stream_resets_total",
            "Times a subscribed stream was found deleted or recreated.",
            c.stream_resets,
        ),
        (
            "streamcast_server_state_errors_total",
            "Commands Redis refused for its own state (READONLY, LOADING, OOM, ...).",
            c.server_state_errors,
        ),
        (
            "streamcast_reconnects_total",
            "Successful reconnects of any connection of the client.",
            c.reconnects,
        ),
        (
            "streamcast_log_dropped_total",
            "Log lines dropped because the log sink did not keep up (process-wide).",
            extra.log_dropped,
        ),
    ] {
        counter(&mut out, name, help, value);
    }
    gauge(
        &mut out,
        "streamcast_subscriptions",
        "Subscriptions of the client.",
        status.subscription_details.len() as f64,
    );
    gauge(
        &mut out,
        "streamcast_consumers",
        "Consumer loops (consumeFromGroup, consume()) of the client.",
        status.consumers.len() as f64,
    );
    {
        let behind = bounded(
            status
                .subscription_details
                .iter()
                .filter_map(|s| Some((s.stream.clone(), s.behind? as f64))),
            OTHER_STREAMS.to_owned(),
            Fold::Max,
        );
        let mut f = Family::new(
            &mut out,
            "streamcast_subscription_behind",
            "gauge",
            "Entries of the stream its subscriptions have not handled yet (the most behind subscription of the stream).",
        );
        for (stream, n) in &behind {
            f.sample(&[("stream", stream)], *n);
        }
    }
    let other = (OTHER_STREAMS.to_owned(), OTHER_STREAMS.to_owned());
    let key = |g: &crate::status::GroupInfo| (g.stream.clone(), g.group.clone());
    let groups = &status.groups;
    type Pick = fn(&crate::status::GroupInfo) -> Option<f64>;
    let group_gauges: [(&'static str, &str, Pick, Fold); 4] = [
        (
            "streamcast_group_lag",
            "Entries of the stream not yet delivered to the group (XINFO GROUPS lag; absent when Redis cannot tell).",
            |g| g.lag.map(|l| l as f64),
            Fold::Sum,
        ),
        (
            "streamcast_group_pending",
            "Entries delivered to the group's consumers and not acknowledged yet.",
            |g| Some(g.pending as f64),
            Fold::Sum,
        ),
        (
            "streamcast_group_oldest_pending_age_seconds",
            "Age of the group's oldest pending entry, from its id, when Redis was last asked (0 when nothing is pending).",
            |g| {
                Some(g.oldest_pending_ms.map_or(0.0, |ms| {
                    g.checked_at_ms.saturating_sub(ms) as f64 / 1000.0
                }))
            },
            Fold::Max,
        ),
        (
            "streamcast_group_consumers",
            "Consumers the group has (all processes).",
            |g| Some(g.consumers as f64),
            Fold::Sum,
        ),
    ];
    for (name, help, pick, fold) in group_gauges {
        let values = bounded(
            groups.iter().filter_map(|g| Some((key(g), pick(g)?))),
            other.clone(),
            fold,
        );
        let mut f = Family::new(&mut out, name, "gauge", help);
        for ((stream, group), v) in &values {
            f.sample(&[("stream", stream), ("group", group)], *v);
        }
    }
    {
        let mut f = Family::new(
            &mut out,
            "streamcast_server_info",
            "gauge",
            "The server the command connection last reached (always 1).",
        );
        if let Some(s) = &status.server {
            f.sample(
                &[("family", s.family.as_str()), ("version", &s.version)],
                1.0,
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_label_values() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn bounded_folds_the_rest_under_other() {
        let items = (0..MAX_SERIES + 3).map(|i| (format!("k{i:04}"), 1.0));
        let m = bounded(items, "_other".to_owned(), Fold::Sum);
        assert_eq!(m.len(), MAX_SERIES + 1);
        assert_eq!(m["_other"], 3.0);
        let items = (0..MAX_SERIES + 3).map(|i| (format!("k{i:04}"), i as f64));
        let m = bounded(items, "_other".to_owned(), Fold::Max);
        assert_eq!(m["_other"], (MAX_SERIES + 2) as f64);
    }
}
