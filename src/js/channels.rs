//! The names of the diagnostics_channel TracingChannels streamcast publishes on
//! (`runtime/tracing.js`), exported so that an APM can subscribe without spelling them.

use napi_derive::napi;

/// TracingChannel of `publishMessage`: `{ stream, data, id, options, serverAddress, serverPort, traceContext }`, result the id.
#[napi]
pub const CHANNEL_PUBLISH: &str = "streamcast:publish";
/// TracingChannel of `publishBatch`: `{ stream, items, batchSize, serverAddress, serverPort, traceContext }`, result the ids.
#[napi]
pub const CHANNEL_PUBLISH_BATCH: &str = "streamcast:publishBatch";
/// TracingChannel of each subscription callback: `{ stream, id, message, traceparent, tracestate, serverAddress, serverPort }`.
#[napi]
pub const CHANNEL_DELIVER: &str = "streamcast:deliver";
/// TracingChannel of each consumer-group callback: as `CHANNEL_DELIVER`, plus `group` and `consumer`.
#[napi]
pub const CHANNEL_CONSUME: &str = "streamcast:consume";
/// TracingChannel of `acknowledgeMessages`: `{ stream, group, ids, batchSize }`, result the count.
#[napi]
pub const CHANNEL_ACK: &str = "streamcast:ack";
/// TracingChannel of `trimStream`: `{ stream, options }`, result the entries removed.
#[napi]
pub const CHANNEL_TRIM: &str = "streamcast:trim";
/// TracingChannel of `connect()`: `{ serverAddress, serverPort }`.
#[napi]
pub const CHANNEL_CONNECT: &str = "streamcast:connect";
