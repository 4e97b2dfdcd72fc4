//! Connections to Redis.
//!
//! - [`backoff`]: the reconnect schedule (exponential, capped, with jitter) and the state
//!   shown while waiting it out.
//! - [`dial`]: opening one connection (TCP or TLS, AUTH, SELECT, a PING) and naming why it
//!   failed.
//! - [`command`]: the command connection every non-blocking command of a client shares,
//!   multiplexed (concurrent commands pipeline on one socket); [`queryable`]: what can be
//!   sent on it.
//! - [`slot`]: the connection installed now, which epoch a result came from, and when the
//!   connection is presumed broken.
//! - [`supervisor`]: the task that opens the command connection, pings it, and reconnects.
//! - [`ordered`]: commands whose order matters (publishes), sent in call order as automatic
//!   pipelines; [`buffer`]: the offline buffer that keeps them while Redis is away, and the
//!   byte budget of both; [`reply`]: where a queued command's reply goes.
//! - [`ledger`] and [`audit`]: the newest ids of this client's publishes, and the check after
//!   a failover of which of them the new server lacks.
//! - [`blocking`]: a connection of its own for blocking reads (`XREAD`/`XREADGROUP BLOCK`),
//!   woken with `CLIENT UNBLOCK`; the subscription reader and every group consumer use one;
//!   a cluster has one per master node.
//! - Which server the connection reached (family, version, the stream features it has,
//!   `run_id`) is `crate::server_info`'s: status reads it too, and status sits below
//!   connection.
//! - [`target`]: where the data lives (one server, a cluster, a Sentinel-named primary) and
//!   how each kind of connection reaches it; [`node`]: one node's address and a connection
//!   to it; [`cluster`]: hash slots and the slot map; [`sentinel`]: the primary Sentinel
//!   names; [`sentinel_events`]: following a failover as the sentinels announce it.

mod audit;
mod backoff;
mod blocking;
mod buffer;
mod cluster;
mod command;
mod dial;
pub mod ledger;
mod node;
mod ordered;
mod queryable;
mod reply;
mod sentinel;
mod sentinel_events;
mod slot;
mod supervisor;
mod target;

pub use crate::server_info::{ServerFamily, ServerInfo};
pub use backoff::Backoff;
pub use blocking::{BlockingReader, ReadError, UnblockHandle, Unblocker};
pub use cluster::key_slot;
pub use command::CommandConn;
pub use dial::{connect_error, open};
pub use node::{AnyConn, NodeAddr};
pub use queryable::Queryable;
pub use reply::{Reply, ReplyTo};
pub use target::{Placement, Target};
