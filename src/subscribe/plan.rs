//! What the next XREAD of a reader asks for: the streams its node owns, each from the
//! smallest position of its subscriptions, grouped by hash slot in a cluster.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::registry::Registered;
use super::{SubscriptionId, Subscriptions};
use crate::codec::StreamId;
use crate::connection::{key_slot, NodeAddr, Target};

/// What one XREAD will ask for.
pub(super) struct Plan {
    pub(super) plan_version: u64,
    pub(super) keys: Vec<(Arc<str>, StreamId)>,
    pub(super) members: HashSet<SubscriptionId>,
    pub(super) unresolved: Vec<Arc<Registered>>,
    pub(super) block: Duration,
    pub(super) count: usize,
}

/// The planned streams grouped by hash slot (in a cluster; else one group), each group
/// sorted as the plan is.
pub(super) fn slot_groups(plan: &Plan, cluster: bool) -> Vec<Vec<(Arc<str>, StreamId)>> {
    if !cluster {
        return vec![plan.keys.clone()];
    }
    let mut groups: BTreeMap<u16, Vec<(Arc<str>, StreamId)>> = BTreeMap::new();
    for (k, id) in &plan.keys {
        groups
            .entry(key_slot(k.as_bytes()))
            .or_default()
            .push((k.clone(), *id));
    }
    groups.into_values().collect()
}

pub(super) fn xread_cmd(
    keys: &[(Arc<str>, StreamId)],
    count: usize,
    block: Option<Duration>,
) -> redis::Cmd {
    let mut cmd = redis::cmd("XREAD");
    cmd.arg("COUNT").arg(count);
    if let Some(b) = block {
        // At least 1 ms: `BLOCK 0` blocks for ever.
        cmd.arg("BLOCK").arg((b.as_millis() as u64).max(1));
    }
    cmd.arg("STREAMS");
    for (k, _) in keys {
        cmd.arg(&**k);
    }
    for (_, id) in keys {
        cmd.arg(id);
    }
    cmd
}

impl Subscriptions {
    /// Whether `node`'s reader reads `stream` (outside a cluster, the one reader reads all).
    pub(super) fn owns(&self, node: Option<&NodeAddr>, stream: &str) -> bool {
        match (node, &**self.cmd.target()) {
            (Some(addr), Target::Cluster(c)) => c.owner(stream).as_ref() == Some(addr),
            _ => true,
        }
    }

    /// Every stream with a resolved subscription that the reader of `node` reads, each once.
    pub(super) fn owned_streams(&self, node: Option<&NodeAddr>) -> Vec<Arc<str>> {
        let subs = self.subs();
        let mut streams: Vec<Arc<str>> = subs
            .values()
            .filter(|s| self.owns(node, &s.stream) && s.position().cursor.is_some())
            .map(|s| s.stream.clone())
            .collect();
        streams.sort();
        streams.dedup();
        streams
    }

    pub(super) fn plan(&self, node: Option<&NodeAddr>) -> Option<Plan> {
        let plan_version = self.plan_version.load(Ordering::SeqCst);
        let subs = self.subs();
        let mut min: HashMap<Arc<str>, StreamId> = HashMap::new();
        let mut readmitted = Vec::new();
        let mut plan = Plan {
            plan_version,
            keys: Vec::new(),
            members: HashSet::new(),
            unresolved: Vec::new(),
            block: Duration::MAX,
            count: 1,
        };
        for sub in subs.values() {
            if !self.owns(node, &sub.stream) {
                continue;
            }
            sub.excluded.store(true, Ordering::SeqCst);
            if sub.tx.capacity() == 0 {
                sub.skipped.store(true, Ordering::Relaxed);
                continue;
            }
            sub.excluded.store(false, Ordering::SeqCst);
            if sub.skipped.swap(false, Ordering::Relaxed) {
                readmitted.push(sub.stream.clone());
            }
            let Some(cursor) = sub.position().cursor else {
                plan.unresolved.push(sub.clone());
                continue;
            };
            plan.members.insert(sub.id);
            plan.block = plan.block.min(sub.block);
            plan.count = plan.count.max(sub.count);
            min.entry(sub.stream.clone())
                .and_modify(|c| *c = (*c).min(cursor))
                .or_insert(cursor);
        }
        drop(subs);
        if !readmitted.is_empty() {
            let mut suspects = self.suspects();
            for stream in &readmitted {
                suspects.push(stream);
            }
        }
        if min.is_empty() && plan.unresolved.is_empty() {
            return None;
        }
        plan.keys = min.into_iter().collect();
        plan.keys.sort();
        Some(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block under a millisecond is sent as `BLOCK 1`, never `BLOCK 0` (for ever).
    #[test]
    fn a_block_under_a_millisecond_is_never_block_0() {
        let keys = vec![(Arc::<str>::from("s"), StreamId::ZERO)];
        let cmd = xread_cmd(&keys, 10, Some(Duration::from_micros(500)));
        let args: Vec<String> = cmd
            .args_iter()
            .map(|a| match a {
                redis::Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
                _ => String::new(),
            })
            .collect();
        let at = args.iter().position(|a| a == "BLOCK").unwrap();
        assert_eq!(args[at + 1], "1", "{args:?}");
    }
}
