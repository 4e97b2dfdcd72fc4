//! Connections to Redis.
//!
//! - [`backoff`]: the reconnect schedule (exponential, capped, with jitter).
//! - [`dial`]: opening one connection (TCP or TLS, AUTH, SELECT, a PING) and naming why it
//!   failed.
//! - [`command`]: the command connection every non-blocking command of a client shares,
//!   multiplexed (concurrent commands pipeline on one socket), kept up by its own task.
//! - [`ordered`]: commands whose order matters (publishes), sent in call order as automatic
//!   pipelines, and the offline buffer that keeps them while Redis is away.
//! - [`blocking`]: a connection of its own for blocking reads (`XREAD`/`XREADGROUP BLOCK`),
//!   woken with `CLIENT UNBLOCK` and never dropped mid-read; the subscription reader and every
//!   group consumer use one; a cluster has one per master node.
//! - [`topology`]: where the data lives (one server, a cluster, a Sentinel-named primary) and
//!   how each kind of connection reaches it.

mod audit;
mod backoff;
mod blocking;
mod command;
mod dial;
pub mod ledger;
mod ordered;
mod slot;
mod supervisor;
mod topology;

pub use backoff::Backoff;
pub use blocking::{BlockingReader, ReadError, UnblockHandle, Unblocker};
pub use command::{CommandConn, Queryable};
pub use dial::{connect_error, open};
pub use ordered::{Reply, ReplyTo};
pub use topology::{key_slot, AnyConn, NodeAddr, Placement, Target};
