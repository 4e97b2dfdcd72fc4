//! streamcast: a Redis Streams client for Node.js, with a Rust core and a napi-rs binding.
//!
//! # Layout
//! - `config`: options, defaults and validation; `error`: the error type and its codes.
//! - `option_keys`: unknown keys of an options object, with the closest known one as a hint.
//! - `codec`: the wire format (`data` JSON + `timestamp`), ids, decoding foreign entries.
//! - `connection`: the shared command connection, reconnects, back-off.
//! - `server_info`: which server a connection reached (Redis or Valkey, version, `run_id`).
//! - `publish`: XADD and pipelined batches. `subscribe`: one reader per client.
//! - `group`: consumer groups (pending first, batched XACK, claim, dead letters).
//! - `trim`: XTRIM and automatic trimming of touched streams.
//! - `handler`: how messages reach user code. `lifecycle`: tasks and shutdown.
//! - `status`: counters and connection state. `client`: the public entry point.
//! - `metrics`: the counters and gauges in the Prometheus text format (`metrics()`).
//! - `js`: the napi binding, the only module that names napi.
//!
//! The core (everything but `js`) is plain Rust and is tested with `cargo test`.

pub mod client;
pub mod clock;
pub mod codec;
pub mod config;
pub mod connection;
pub mod error;
pub mod group;
pub mod handler;
pub mod lifecycle;
pub mod metrics;
pub mod option_keys;
pub mod publish;
pub mod server_info;
pub mod status;
pub mod subscribe;
pub mod trim;

// The binding only exists in the addon; unit tests of the core never load it.
#[cfg(not(test))]
mod js;

pub use client::Client;
pub use codec::{Entry, PublishId, StartId, StreamId};
pub use config::{Config, ConfigInput};
pub use error::{Error, Result};
pub use group::{ConsumeInput, ConsumeOptions};
pub use handler::{Batch, CallbackFailure, HandleResult, Handler, HandlerGone, Outcome, Report};
pub use server_info::{ServerFamily, ServerInfo};
pub use subscribe::{SubscribeInput, SubscribeOptions};
pub use trim::{Trim, TrimInput, TrimTo};
