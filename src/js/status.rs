//! The status: `getStatus` and `refreshStatus`, and the objects they return, converted from
//! the core's status.

use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::client::{in_runtime, promise, StreamsClient};
use crate::status::{ConnState, Status as CoreStatus};

#[napi]
impl StreamsClient {
    /// The connection state, subscriptions (with how far each trails its stream),
    /// consumers, consumer groups (lag and pending), effective config (password redacted)
    /// and counters. Never waits for Redis: the group numbers are those of the last
    /// background refresh (started here when older than a second).
    #[napi(catch_unwind)]
    pub fn get_status(&self) -> Status {
        let status = in_runtime(|| self.binding.inner.status());
        Status::from_core(status, self.binding.inner.config())
    }

    /// `getStatus()` with the numbers only Redis knows asked for now: one `XINFO GROUPS`
    /// per consumed stream and one `XINFO STREAM` per busy subscribed stream, within
    /// `commandTimeoutMs`. For a health endpoint.
    #[napi(catch_unwind, ts_return_type = "Promise<Status>")]
    pub fn refresh_status<'e>(&self, env: &'e Env) -> Result<PromiseRaw<'e, Status>> {
        let c = self.binding.inner.clone();
        promise(env, async move {
            let status = c.refresh_status().await;
            Ok(Status::from_core(status, c.config()))
        })
    }
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
    /// Entries not written: Redis was unavailable or the client disconnected (resolved
    /// `null`), or Redis refused them (rejected with its code). `metrics()` splits it by reason.
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
    /// `null` when unknown (started after an explicit id and trailing its stream by more than
    /// 64 entries, or 64 KiB of entries, at the last position check).
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
