//! The offline buffer (commands parked while Redis is away, in call order) and the byte
//! budget that bounds it and the ordered queue.

use std::collections::VecDeque;

use super::reply::ReplyTo;

/// Bytes of arguments the queue may hold, and the offline buffer may hold, each: what is
/// published beyond it resolves `null` at once instead of growing the process without
/// bound. At least a few of the largest payloads allowed always fit.
pub(super) const BYTE_BUDGET: usize = 256 * 1024 * 1024;
/// Largest payloads that always fit in the budget.
pub(super) const PAYLOADS_IN_BUDGET: usize = 4;

/// The bytes of a command's arguments (what holding it costs, near enough).
pub(super) fn size_of(cmd: &redis::Cmd) -> usize {
    cmd.args_iter()
        .map(|a| match a {
            redis::Arg::Simple(b) => b.len(),
            _ => 0,
        })
        .sum()
}

/// A command waiting for the connection to come back.
pub(super) struct Parked {
    pub(super) cmd: redis::Cmd,
    pub(super) reply: ReplyTo,
    /// The hash slot of its key in a cluster (a pipeline holds one slot's keys only).
    pub(super) slot: Option<u16>,
}

/// The offline buffer: parked commands in call order, and the bytes they hold.
#[derive(Default)]
pub(super) struct Buffer {
    pub(super) items: VecDeque<Parked>,
    pub(super) bytes: usize,
}

impl Buffer {
    pub(super) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub(super) fn push_back(&mut self, p: Parked) {
        self.bytes += size_of(&p.cmd);
        self.items.push_back(p);
    }

    /// Puts `chunk` back at the front, in its order.
    pub(super) fn put_back(&mut self, chunk: Vec<Parked>) {
        for p in chunk.into_iter().rev() {
            self.bytes += size_of(&p.cmd);
            self.items.push_front(p);
        }
    }

    /// Takes every parked command (the client is closing).
    pub(super) fn take_all(&mut self) -> Vec<Parked> {
        self.bytes = 0;
        self.items.drain(..).collect()
    }

    /// Takes, of the first `n`, those of the first one's hash slot: one pipeline's worth (a
    /// cluster refuses a pipeline across slots; on one server every slot is `None`). The
    /// others keep their place, so each stream stays in call order.
    pub(super) fn take_one_slot(&mut self, n: usize) -> Vec<Parked> {
        let Some(slot) = self.items.front().map(|p| p.slot) else {
            return Vec::new();
        };
        let n = n.min(self.items.len());
        let (chunk, others): (Vec<Parked>, Vec<Parked>) =
            self.items.drain(..n).partition(|p| p.slot == slot);
        self.bytes -= chunk.iter().map(|p| size_of(&p.cmd)).sum::<usize>();
        for p in others.into_iter().rev() {
            self.items.push_front(p);
        }
        chunk
    }
}
