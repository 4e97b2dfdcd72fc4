//! The plain objects that cross the boundary, and their conversions to and from core types.

use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::config::ConfigInput;
use crate::error::{Error as CoreError, Result as CoreResult};
use crate::group::ConsumeInput;
use crate::status::{ConnState, Status as CoreStatus};
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
// Declared for index.d.ts: runtime.js reads the object and passes the rest to `subscribe`.
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
// Declared for index.d.ts: runtime.js reads the object and passes the rest to `consumeFromGroup`.
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

/// The effective configuration, as `getStatus()` shows it (the password is `***`).
#[napi(object)]
pub struct StatusConfig {
    /// The Redis URL without its password.
    pub redis_url: String,
    /// XREAD BLOCK time in ms.
    pub default_block_ms: f64,
    /// Entries per read.
    pub default_count: f64,
    /// Milliseconds between automatic trims.
    pub auto_trim_interval: f64,
    /// Length automatic trimming keeps.
    pub default_max_len: f64,
    /// Whether streams are trimmed automatically.
    pub enable_auto_trim: bool,
    /// Which streams automatic trimming covers.
    #[napi(ts_type = "'published' | 'touched'")]
    pub auto_trim_streams: String,
    /// Time allowed for one connection attempt, in ms.
    pub connect_timeout_ms: f64,
    /// Time allowed for one command, in ms.
    pub command_timeout_ms: f64,
    /// First reconnect delay in ms.
    pub reconnect_initial_delay_ms: f64,
    /// Longest reconnect delay in ms.
    pub reconnect_max_delay_ms: f64,
    /// Growth of the reconnect delay.
    pub reconnect_factor: f64,
    /// Random share of each reconnect delay.
    pub reconnect_jitter: f64,
    /// Publishes kept while disconnected.
    pub offline_buffer: f64,
    /// Largest JSON payload of one message, in bytes.
    pub max_payload_bytes: f64,
    /// The CA file used for TLS, if any.
    pub tls_ca_file: Option<String>,
}

/// Counters since the client was created.
#[napi(object)]
pub struct StatusCounters {
    /// Entries written.
    pub published: f64,
    /// Publishes that resolved `null` because Redis was unavailable.
    pub publish_failed: f64,
    /// Publishes that resolved with an id and that a failover then lost: the new primary did
    /// not have them (asynchronous replication). Logged at `warn` with the stream and ids.
    pub publish_lost: f64,
    /// Messages handed to callbacks (subscriptions and consumers).
    pub delivered: f64,
    /// Callbacks that threw or rejected.
    pub callback_errors: f64,
    /// Successful reconnects of any connection.
    pub reconnects: f64,
    /// Group entries acknowledged.
    pub acked: f64,
    /// Entries claimed from idle consumers.
    pub claimed: f64,
    /// Entries moved to a dead-letter stream.
    pub dead_lettered: f64,
    /// Times a subscription found entries trimmed or deleted before it could read them (each also logged at warn with the ids).
    pub gaps: f64,
    /// Times a subscribed stream was found deleted or recreated, so reading restarted from its beginning.
    pub stream_resets: f64,
    /// Commands Redis refused because of its own state (`READONLY` or `MASTERDOWN` after a failover, `LOADING`, `OOM`, `BUSY`, `TRYAGAIN`, `CLUSTERDOWN`): they failed open (publish resolved `null`) and were logged.
    pub server_state_errors: f64,
    /// Log records dropped because stderr or the JavaScript logger fell behind (process-wide).
    pub log_dropped: f64,
}

/// State of one connection.
#[napi(object)]
pub struct ConnectionStatus {
    /// `idle`, `connecting`, `connected`, `reconnecting`, `closing` or `closed`.
    pub state: String,
    /// Failed attempts since the last success (while reconnecting).
    pub attempt: Option<u32>,
    /// When the next attempt starts, ms since the epoch (while reconnecting).
    pub next_retry_at: Option<f64>,
    /// Why the last attempt failed (while reconnecting).
    pub last_error: Option<String>,
}

/// One consumer's connection, in `getStatus().consumers`.
#[napi(object)]
pub struct ConsumerStatus {
    /// `stream:group:consumer`.
    pub name: String,
    /// Its blocking-read connection.
    pub connection: ConnectionStatus,
}

/// One subscription, in `getStatus().subscriptionDetails`.
#[napi(object)]
pub struct SubscriptionStatus {
    /// The subscription's id (`Subscription.id`).
    pub id: i64,
    /// The stream it reads.
    pub stream: String,
    /// The last id handed to it (or the id it starts after); `null` while `"$"` is not resolved yet.
    pub last_id: Option<String>,
    /// Entries read for it that its callback has not finished yet (queued or running).
    pub queued: f64,
    /// The newest id the client knows its stream has; `null` before the stream was read or checked.
    pub stream_last_id: Option<String>,
    /// Entries of its stream it has not handled yet (`queued` plus those after `lastId`);
    /// `null` when unknown (started after an explicit id and trailing its stream).
    pub behind: Option<f64>,
}

/// A consumer group this client consumes, in `getStatus().groups`, as `XINFO GROUPS` last
/// reported it.
#[napi(object)]
pub struct GroupStatus {
    /// The stream.
    pub stream: String,
    /// The group.
    pub group: String,
    /// Entries not delivered to the group yet; `null` when Redis cannot tell (after
    /// deletions or trims past the group's position).
    pub lag: Option<f64>,
    /// Entries delivered to its consumers and not acknowledged yet.
    pub pending: f64,
    /// The last id delivered to the group.
    pub last_delivered_id: String,
    /// Consumers the group has (in every process).
    pub consumers: f64,
    /// When Redis was asked, ms since the epoch.
    pub checked_at: f64,
}

/// The server the client's command connection last reached.
#[napi(object)]
pub struct ServerStatus {
    /// `redis` or `valkey`.
    pub family: String,
    /// The server's own version, e.g. `8.2.3` (Valkey's, not the `redis_version` it reports).
    pub version: String,
    /// The stream features of Redis 8.2+ this server has: `XACKDEL`, `XDELEX`,
    /// `XTRIM/XADD KEEPREF|DELREF|ACKED` (the client uses `XACKDEL` for `deleteOnAck` and
    /// exact `XTRIM … ACKED`); empty on older Redis and on Valkey.
    pub features: Vec<String>,
}

/// What `getStatus()` returns.
#[napi(object)]
pub struct Status {
    /// The command connection works.
    pub connected: bool,
    /// State of the command connection: `idle`, `connecting`, `connected`, `reconnecting`, `closing` or `closed`.
    pub state: String,
    /// The command connection in detail (reconnect schedule, last error).
    pub connection: ConnectionStatus,
    /// The subscription reader connection.
    pub reader: ConnectionStatus,
    /// Streams with an active subscription, each once.
    pub subscriptions: Vec<String>,
    /// Every active subscription (several per stream when it has several).
    pub subscription_details: Vec<SubscriptionStatus>,
    /// `stream:group:consumer` of each running consumer.
    pub consumer_groups: Vec<String>,
    /// The connection of each running consumer (its reconnect schedule, last error).
    pub consumers: Vec<ConsumerStatus>,
    /// Each consumer group this client consumes: lag and pending count from `XINFO GROUPS`,
    /// refreshed in the background when older than a second (`refreshStatus()` waits for
    /// fresh ones); empty until the first refresh.
    pub groups: Vec<GroupStatus>,
    /// The effective configuration, password redacted.
    pub config: StatusConfig,
    /// Counters.
    pub counters: StatusCounters,
    /// The server reached (family, version, features); absent before the first connection.
    pub server: Option<ServerStatus>,
}

fn conn_status(s: &ConnState) -> ConnectionStatus {
    match s {
        ConnState::Reconnecting {
            attempt,
            next_retry_at_ms,
            last_error,
            ..
        } => ConnectionStatus {
            state: s.name().to_owned(),
            attempt: Some(*attempt),
            next_retry_at: Some(*next_retry_at_ms as f64),
            last_error: Some(last_error.clone()),
        },
        _ => ConnectionStatus {
            state: s.name().to_owned(),
            attempt: None,
            next_retry_at: None,
            last_error: None,
        },
    }
}

impl Status {
    /// Converts the core status and configuration.
    pub fn from_core(s: CoreStatus, c: &crate::config::Config) -> Self {
        let ms = |d: std::time::Duration| d.as_millis() as f64;
        Status {
            server: s.server.as_ref().map(|i| ServerStatus {
                family: i.family.as_str().to_owned(),
                version: i.version.clone(),
                features: i.features().iter().map(|f| (*f).to_owned()).collect(),
            }),
            connected: s.connected,
            state: s.state.name().to_owned(),
            connection: conn_status(&s.state),
            reader: conn_status(&s.reader_state),
            subscriptions: s.subscriptions,
            subscription_details: s
                .subscription_details
                .into_iter()
                .map(|d| SubscriptionStatus {
                    id: d.id as i64,
                    stream: d.stream,
                    last_id: d.last_id.map(|i| i.to_string()),
                    queued: d.queued as f64,
                    stream_last_id: d.stream_last_id.map(|i| i.to_string()),
                    behind: d.behind.map(|b| b as f64),
                })
                .collect(),
            groups: s
                .groups
                .into_iter()
                .map(|g| GroupStatus {
                    stream: g.stream,
                    group: g.group,
                    lag: g.lag.map(|l| l as f64),
                    pending: g.pending as f64,
                    last_delivered_id: g.last_delivered_id.to_string(),
                    consumers: g.consumers as f64,
                    checked_at: g.checked_at_ms as f64,
                })
                .collect(),
            consumer_groups: s.consumer_groups,
            consumers: s
                .consumers
                .iter()
                .map(|(name, state)| ConsumerStatus {
                    name: name.clone(),
                    connection: conn_status(state),
                })
                .collect(),
            config: StatusConfig {
                redis_url: c.redis_url.to_string(),
                default_block_ms: ms(c.default_block),
                default_count: c.default_count as f64,
                auto_trim_interval: ms(c.auto_trim_interval),
                default_max_len: c.default_max_len as f64,
                enable_auto_trim: c.enable_auto_trim,
                auto_trim_streams: c.auto_trim_streams.name().to_owned(),
                connect_timeout_ms: ms(c.connect_timeout),
                command_timeout_ms: ms(c.command_timeout),
                reconnect_initial_delay_ms: ms(c.reconnect.initial),
                reconnect_max_delay_ms: ms(c.reconnect.max),
                reconnect_factor: c.reconnect.factor,
                reconnect_jitter: c.reconnect.jitter,
                offline_buffer: c.offline_buffer as f64,
                max_payload_bytes: c.max_payload_bytes as f64,
                tls_ca_file: c.tls_ca_file.clone(),
            },
            counters: StatusCounters {
                published: s.counters.published as f64,
                publish_failed: s.counters.publish_failed as f64,
                publish_lost: s.counters.publish_lost as f64,
                delivered: s.counters.delivered as f64,
                callback_errors: s.counters.callback_errors as f64,
                reconnects: s.counters.reconnects as f64,
                acked: s.counters.acked as f64,
                claimed: s.counters.claimed as f64,
                dead_lettered: s.counters.dead_lettered as f64,
                gaps: s.counters.gaps as f64,
                stream_resets: s.counters.stream_resets as f64,
                server_state_errors: s.counters.server_state_errors as f64,
                log_dropped: super::logging::dropped() as f64,
            },
        }
    }
}

/// Reads a required string argument.
pub fn string_arg(v: Unknown<'_>, field: &str) -> CoreResult<String> {
    match v.get_type() {
        Ok(ValueType::String) => {
            unsafe { v.cast::<String>() }.map_err(|e| CoreError::invalid(field, e.reason.clone()))
        }
        Ok(t) => Err(CoreError::invalid(
            field,
            format!("expected a string, got {t}"),
        )),
        Err(e) => Err(CoreError::invalid(field, e.reason.clone())),
    }
}

/// Reads an optional string argument (`undefined` and `null` are absent).
pub fn opt_string_arg(v: Option<Unknown<'_>>, field: &str) -> CoreResult<Option<String>> {
    match v {
        None => Ok(None),
        Some(v) => match v.get_type() {
            Ok(ValueType::Undefined | ValueType::Null) => Ok(None),
            _ => string_arg(v, field).map(Some),
        },
    }
}

/// Reads an optional options object (`undefined` and `null` are absent).
///
/// A key that `T` does not know is rejected with `ERR_INVALID_ARG` naming it and the
/// closest known key (see `super::option_keys`).
pub fn opt_object_arg<T: FromNapiValue + Default + 'static>(
    v: Option<Unknown<'_>>,
    field: &str,
) -> CoreResult<T> {
    let Some(v) = v else { return Ok(T::default()) };
    match v.get_type() {
        Ok(ValueType::Undefined | ValueType::Null) => Ok(T::default()),
        Ok(ValueType::Object) => {
            let env = Env::from_raw(v.value().env);
            let object = unsafe { v.cast::<Object>() }
                .map_err(|e| CoreError::invalid(field, e.reason.clone()))?;
            super::option_keys::check::<T>(&env, &object, field)?;
            unsafe { v.cast::<T>() }.map_err(|e| CoreError::invalid(field, e.reason.clone()))
        }
        Ok(t) => Err(CoreError::invalid(
            field,
            format!("expected an object, got {t}"),
        )),
        Err(e) => Err(CoreError::invalid(field, e.reason.clone())),
    }
}
