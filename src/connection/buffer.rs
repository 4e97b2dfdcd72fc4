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

    /// Takes up to `n` from the front.
    pub(super) fn take(&mut self, n: usize) -> Vec<Parked> {
        let n = n.min(self.items.len());
        let chunk: Vec<Parked> = self.items.drain(..n).collect();
        self.bytes -= chunk.iter().map(|p| size_of(&p.cmd)).sum::<usize>();
        chunk
    }
}
