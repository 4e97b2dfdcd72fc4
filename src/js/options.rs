//! The option objects the methods take (`StreamsClientConfig`, `SubscribeOptions`, …), each
//! a mirror of its core input with the conversion into it.

use napi::bindgen_prelude::Unknown;
use napi_derive::napi;

use crate::config::ConfigInput;
use crate::group::ConsumeInput;
use crate::subscribe::SubscribeInput;
use crate::trim::TrimInput;

/// Options of a `StreamsClient`; every field is optional and validated on creation.
#[napi(object)]
#[derive(Default)]
pub struct StreamsClientConfig {
    /// `redis://[user:password@]host:port[/db]` or `rediss://` for TLS. Defaults to the env var `REDIS_URL`, else `redis://127.0.0.1:6379`.
    pub redis_url: Option<String>,
    /// XREAD/XREADGROUP BLOCK time in ms. Defaults to 5000.
    pub default_block_ms: Option<f64>,
    /// Entries per read. Defaults to 10.
    pub default_count: Option<f64>,
    /// Milliseconds between automatic trims. Defaults to 3600000.
    pub auto_trim_interval: Option<f64>,
    /// Length automatic trimming keeps. Defaults to 10000.
    pub default_max_len: Option<f64>,
    /// Trim streams automatically every `autoTrimInterval` to about `defaultMaxLen` entries, never removing an entry a consumer group has not had delivered and acknowledged. Defaults to true.
    pub enable_auto_trim: Option<bool>,
    /// Which streams automatic trimming covers: `"published"` (default) only those this client publishes to, `"touched"` also those it subscribes to or consumes from.
    #[napi(ts_type = "'published' | 'touched'")]
    pub auto_trim_streams: Option<String>,
    /// Time allowed for one connection attempt, in ms. Defaults to 2000.
    pub connect_timeout_ms: Option<f64>,
    /// Time allowed for one command before a publish resolves `null`, in ms. Defaults to 1000.
    pub command_timeout_ms: Option<f64>,
    /// First reconnect delay in ms. Defaults to 50.
    pub reconnect_initial_delay_ms: Option<f64>,
    /// Longest reconnect delay in ms. Defaults to 2000.
    pub reconnect_max_delay_ms: Option<f64>,
    /// Growth of the reconnect delay per failed attempt. Defaults to 2.
    pub reconnect_factor: Option<f64>,
    /// Random share taken off each reconnect delay, 0..1. Defaults to 0.3.
    pub reconnect_jitter: Option<f64>,
    /// Log filter: `error`, `warn`, `info`, `debug`, `trace` (or an EnvFilter directive). Defaults to the env var `STREAMCAST_LOG`, else `info`. Process-wide.
    pub log_level: Option<String>,
    /// Publishes kept, in order, while Redis is unreachable and written once it is back (each promise then resolves to its id); beyond this many, `publishMessage` resolves `null` at once. Defaults to 0 (fail open at once).
    pub offline_buffer: Option<f64>,
    /// Largest JSON payload of one message in bytes; larger ones are rejected with `ERR_INVALID_ARG`. Defaults to 1048576 (1 MiB).
    pub max_payload_bytes: Option<f64>,
    /// PEM file of the CA that signed the server's certificate, for `rediss://` with a private CA. Defaults to the system's trusted roots.
    pub tls_ca_file: Option<String>,
}

impl From<StreamsClientConfig> for ConfigInput {
    fn from(c: StreamsClientConfig) -> Self {
        ConfigInput {
            redis_url: c.redis_url,
            default_block_ms: c.default_block_ms,
            default_count: c.default_count,
            auto_trim_interval: c.auto_trim_interval,
            default_max_len: c.default_max_len,
            enable_auto_trim: c.enable_auto_trim,
            auto_trim_streams: c.auto_trim_streams,
            connect_timeout_ms: c.connect_timeout_ms,
            command_timeout_ms: c.command_timeout_ms,
            reconnect_initial_delay_ms: c.reconnect_initial_delay_ms,
            reconnect_max_delay_ms: c.reconnect_max_delay_ms,
            reconnect_factor: c.reconnect_factor,
            reconnect_jitter: c.reconnect_jitter,
            log_level: c.log_level,
            offline_buffer: c.offline_buffer,
            max_payload_bytes: c.max_payload_bytes,
            tls_ca_file: c.tls_ca_file,
        }
    }
}

/// Options of `subscribe`.
#[napi(object)]
#[derive(Default)]
pub struct SubscribeOptions {
    /// `"$"` (default): only messages published after `subscribe` resolves; `"0"`: the whole history; or an id to read after.
    pub start_id: Option<String>,
    /// XREAD BLOCK time in ms. Defaults to the client's `defaultBlockMs`.
    pub block_ms: Option<f64>,
    /// Entries per read. Defaults to the client's `defaultCount`.
    pub count: Option<f64>,
}

/// Options of `stream()`: those of `subscribe`, plus an `AbortSignal` and the buffer size.
#[napi(object)]
#[derive(Default)]
// Declared for index.d.ts: runtime/iterators.js reads the object and passes the rest to `subscribe`.
#[allow(dead_code)]
pub struct StreamOptions {
    /// `"$"` (default): only messages published after the iterator was created; `"0"`: the whole history; or an id to read after.
    pub start_id: Option<String>,
    /// XREAD BLOCK time in ms. Defaults to the client's `defaultBlockMs`.
    pub block_ms: Option<f64>,
    /// Entries per read. Defaults to the client's `defaultCount`.
    pub count: Option<f64>,
    /// Aborting it ends the subscription and the loop (normally, without an error): pass `request.signal` in a route handler.
    #[napi(ts_type = "AbortSignal")]
    pub signal: Option<Unknown<'static>>,
    /// Messages that may wait unread before reading pauses. Defaults to 64.
    pub high_water_mark: Option<f64>,
}

/// Options of `consume()`: those of `consumeFromGroup` except `autoAck` and `concurrency`, plus an `AbortSignal` and the buffer size.
#[napi(object)]
#[derive(Default)]
// Declared for index.d.ts: runtime/iterators.js reads the object and passes the rest to `consumeFromGroup`.
#[allow(dead_code)]
pub struct ConsumeIteratorOptions {
    /// Entries per read. Defaults to the client's `defaultCount`.
    pub count: Option<f64>,
    /// XREADGROUP BLOCK time in ms. Defaults to the client's `defaultBlockMs`.
    pub block_ms: Option<f64>,
    /// Take over entries of any consumer of the group that stayed pending longer than this (XAUTOCLAIM). Off by default.
    pub claim_idle_ms: Option<f64>,
    /// An entry delivered more often than this goes to the dead-letter stream and is acknowledged. Off by default.
    pub max_deliveries: Option<f64>,
    /// Where poison entries go. Defaults to `<stream>:dead`.
    pub dead_letter_stream: Option<String>,
    /// Create the group (from id `0`) when it is missing. Defaults to false.
    pub create_if_missing: Option<bool>,
    /// `ack()` also deletes the entry from the stream (as `consumeFromGroup`'s `deleteOnAck`). Defaults to false.
    pub delete_on_ack: Option<bool>,
    /// Aborting it stops the consumer and ends the loop (normally, without an error); messages not acknowledged stay pending.
    #[napi(ts_type = "AbortSignal")]
    pub signal: Option<Unknown<'static>>,
    /// Messages that may wait unread before reading pauses. Defaults to 64.
    pub high_water_mark: Option<f64>,
}

/// Options of `publishMessage`.
#[napi(object)]
#[derive(Default)]
pub struct PublishOptions {
    /// Trim the stream to about this many entries in the same XADD (`MAXLEN ~ n`).
    pub max_len: Option<f64>,
    /// `~` trimming (whole nodes only, far cheaper). Defaults to true.
    pub approximate: Option<bool>,
    /// The trace context to carry in the entry's `trace` field. Defaults to the active
    /// OpenTelemetry context, when the app has registered an OpenTelemetry SDK; without
    /// either, the entry carries none.
    pub trace_context: Option<TraceContextOptions>,
}

/// Options of `publishBatch`.
#[napi(object)]
#[derive(Default)]
pub struct PublishBatchOptions {
    /// The trace context every entry of the batch carries, as `publishMessage`'s option.
    pub trace_context: Option<TraceContextOptions>,
}

/// A W3C trace context given explicitly (for apps without OpenTelemetry).
#[napi(object)]
pub struct TraceContextOptions {
    /// The W3C `traceparent`, e.g. `00-<trace id>-<parent id>-01`.
    pub traceparent: String,
    /// The W3C `tracestate`, if any.
    pub tracestate: Option<String>,
}

impl TraceContextOptions {
    /// The validated context.
    ///
    /// # Errors
    /// `ERR_INVALID_ARG` naming `traceContext.traceparent` or `traceContext.tracestate`.
    pub fn validate(&self) -> crate::error::Result<crate::codec::TraceContext> {
        crate::codec::TraceContext::new(&self.traceparent, self.tracestate.as_deref())
    }
}

/// Options of `trimStream`: give `maxLen` or `minId`.
#[napi(object)]
#[derive(Default)]
pub struct TrimOptions {
    /// Keep at most this many entries (`XTRIM MAXLEN`).
    pub max_len: Option<f64>,
    /// Remove entries with ids below this one (`XTRIM MINID`).
    pub min_id: Option<String>,
    /// `~` trimming (whole nodes only, far cheaper). Defaults to true.
    pub approximate: Option<bool>,
    /// Never remove an entry a consumer group of the stream has not had delivered and acknowledged: the trim stops at the oldest such entry. Defaults to true (it changes nothing on a stream without groups).
    pub keep_unacknowledged: Option<bool>,
}

impl From<TrimOptions> for TrimInput {
    fn from(o: TrimOptions) -> Self {
        TrimInput {
            max_len: o.max_len,
            min_id: o.min_id,
            approximate: o.approximate,
            keep_unacknowledged: o.keep_unacknowledged,
        }
    }
}

impl From<PublishOptions> for TrimInput {
    fn from(o: PublishOptions) -> Self {
        // XADD's inline trimming is plain MAXLEN: it cannot look at the groups.
        TrimInput {
            max_len: o.max_len,
            min_id: None,
            approximate: o.approximate,
            keep_unacknowledged: Some(false),
        }
    }
}

impl From<SubscribeOptions> for SubscribeInput {
    fn from(o: SubscribeOptions) -> Self {
        SubscribeInput {
            start_id: o.start_id,
            block_ms: o.block_ms,
            count: o.count,
        }
    }
}

impl From<ConsumeOptions> for ConsumeInput {
    fn from(o: ConsumeOptions) -> Self {
        ConsumeInput {
            auto_ack: o.auto_ack,
            count: o.count,
            block_ms: o.block_ms,
            claim_idle_ms: o.claim_idle_ms,
            max_deliveries: o.max_deliveries,
            dead_letter_stream: o.dead_letter_stream,
            retry_delay_ms: o.retry_delay_ms,
            create_if_missing: o.create_if_missing,
            delete_on_ack: o.delete_on_ack,
        }
    }
}

/// Options of `consumeFromGroup`.
#[napi(object)]
#[derive(Default)]
pub struct ConsumeOptions {
    /// XACK an entry once its callback resolved (one XACK per batch). Defaults to true.
    pub auto_ack: Option<bool>,
    /// Entries per read. Defaults to the client's `defaultCount`.
    pub count: Option<f64>,
    /// XREADGROUP BLOCK time in ms. Defaults to the client's `defaultBlockMs`.
    pub block_ms: Option<f64>,
    /// Take over entries of any consumer of the group that stayed pending (unacknowledged) longer than this (XAUTOCLAIM), e.g. those of a crashed process. Off by default.
    pub claim_idle_ms: Option<f64>,
    /// An entry delivered more often than this goes to the dead-letter stream (with its original id, group and delivery count) and is acknowledged. With `autoAck`, a failed entry is then retried after `retryDelayMs`. Off by default.
    pub max_deliveries: Option<f64>,
    /// Where poison entries go. Defaults to `<stream>:dead`.
    pub dead_letter_stream: Option<String>,
    /// Delay before a failed entry is delivered again (with `maxDeliveries` and `autoAck`). Defaults to 1000.
    pub retry_delay_ms: Option<f64>,
    /// How many callbacks of this consumer may run at once. Defaults to 1.
    pub concurrency: Option<f64>,
    /// Create the group (from id `0`, creating the stream too) when it is missing at start or is deleted while consuming, instead of rejecting with `ERR_NOGROUP` or waiting for it. Defaults to false.
    pub create_if_missing: Option<bool>,
    /// Delete each entry from the stream once it is acknowledged: handled (with `autoAck`), acknowledged with `acknowledgeMessages` for this group by this client (the consumer running), or dead-lettered. A pure work queue then does not grow and needs no trimming (like BullMQ's `removeOnComplete`). `XACKDEL` on Redis 8.2+, `XACK` + `XDEL` in one MULTI on older Redis and Valkey. The entry leaves the stream even if other groups have not read it: use it on a stream that one group consumes. Defaults to false.
    pub delete_on_ack: Option<bool>,
}
