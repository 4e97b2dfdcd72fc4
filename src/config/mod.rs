//! Client configuration: defaults, validation that names the bad field, and a Redis URL
//! type that never prints its password.

use std::fmt;
use std::time::Duration;

use crate::error::{Error, Result};

mod log_filter;
mod numbers;
mod url;
mod userinfo;

use log_filter::is_log_filter;
pub use log_filter::LOG_LEVELS;
use numbers::{float, int};
pub use numbers::{opt_count, opt_ms, whole_number};
pub use url::{RedisUrl, Topology};
pub use userinfo::encode;

/// Redis URL used when neither the config nor `REDIS_URL` gives one.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// XREAD/XREADGROUP BLOCK time.
pub const DEFAULT_BLOCK_MS: u64 = 5_000;
/// Entries per read.
pub const DEFAULT_COUNT: usize = 10;
/// Milliseconds between automatic trims.
pub const DEFAULT_AUTO_TRIM_INTERVAL_MS: u64 = 3_600_000;
/// Length automatic trimming keeps.
pub const DEFAULT_MAX_LEN: u64 = 10_000;
/// Time allowed for one connection attempt (TCP, TLS, AUTH, PING).
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 2_000;
/// Time allowed for one command before it counts as unavailable.
pub const DEFAULT_COMMAND_TIMEOUT_MS: u64 = 1_000;
/// First reconnect delay.
pub const DEFAULT_RECONNECT_INITIAL_DELAY_MS: u64 = 50;
/// Longest reconnect delay.
pub const DEFAULT_RECONNECT_MAX_DELAY_MS: u64 = 2_000;
/// Growth of the reconnect delay per failed attempt.
pub const DEFAULT_RECONNECT_FACTOR: f64 = 2.0;
/// Random share of each reconnect delay (0 = none, 1 = up to the whole delay).
pub const DEFAULT_RECONNECT_JITTER: f64 = 0.3;
/// Longest BLOCK time accepted; longer blocks would hide dead connections for too long.
pub const MAX_BLOCK_MS: u64 = 3_600_000;
/// Largest COUNT accepted per read.
pub const MAX_COUNT: usize = 100_000;
/// Largest JSON payload a publish accepts by default (1 MiB).
pub const DEFAULT_MAX_PAYLOAD_BYTES: u64 = 1024 * 1024;
/// Publishes kept while disconnected, by default none (fail open at once).
pub const DEFAULT_OFFLINE_BUFFER: u64 = 0;

/// The configuration as it arrives from a caller: every field optional and unvalidated.
/// Its `Debug` shows `redis_url` without the password.
#[derive(Clone, Default)]
pub struct ConfigInput {
    /// `redis://` or `rediss://` URL; falls back to `REDIS_URL`, then [`DEFAULT_REDIS_URL`].
    pub redis_url: Option<String>,
    /// XREAD BLOCK in milliseconds.
    pub default_block_ms: Option<f64>,
    /// Entries per read.
    pub default_count: Option<f64>,
    /// Milliseconds between automatic trims.
    pub auto_trim_interval: Option<f64>,
    /// Length automatic trimming keeps.
    pub default_max_len: Option<f64>,
    /// Whether streams are trimmed automatically.
    pub enable_auto_trim: Option<bool>,
    /// Which streams auto-trim covers: `published` (default) or `touched`.
    pub auto_trim_streams: Option<String>,
    /// Time allowed for one connection attempt, in milliseconds.
    pub connect_timeout_ms: Option<f64>,
    /// Time allowed for one command, in milliseconds.
    pub command_timeout_ms: Option<f64>,
    /// First reconnect delay in milliseconds.
    pub reconnect_initial_delay_ms: Option<f64>,
    /// Longest reconnect delay in milliseconds.
    pub reconnect_max_delay_ms: Option<f64>,
    /// Growth factor of the reconnect delay.
    pub reconnect_factor: Option<f64>,
    /// Random share of each reconnect delay, 0..=1.
    pub reconnect_jitter: Option<f64>,
    /// Log filter (`error`, `warn`, `info`, `debug`, `trace` or an EnvFilter directive).
    pub log_level: Option<String>,
    /// Publishes kept in order while disconnected and written once Redis is back.
    pub offline_buffer: Option<f64>,
    /// Largest JSON payload of one publish, in bytes.
    pub max_payload_bytes: Option<f64>,
    /// PEM file with the CA certificate(s) that sign the server's TLS certificate.
    pub tls_ca_file: Option<String>,
}

/// Which streams automatic trimming covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoTrimStreams {
    /// Only streams this client publishes to (the default): a process that only reads never
    /// trims streams other services write.
    Published,
    /// Also the streams it subscribes to or consumes from.
    Touched,
}

impl AutoTrimStreams {
    /// Parses the `autoTrimStreams` setting; `published` when not given.
    fn parse(v: Option<&str>) -> Result<Self> {
        match v {
            None | Some("published") => Ok(AutoTrimStreams::Published),
            Some("touched") => Ok(AutoTrimStreams::Touched),
            Some(other) => Err(Error::invalid(
                "autoTrimStreams",
                format!("{other:?} is not \"published\" or \"touched\""),
            )),
        }
    }

    /// The name the config uses.
    pub fn name(self) -> &'static str {
        match self {
            AutoTrimStreams::Published => "published",
            AutoTrimStreams::Touched => "touched",
        }
    }
}

/// Reconnect back-off bounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffConfig {
    /// Delay before the first retry.
    pub initial: Duration,
    /// Upper bound of any delay, jitter included.
    pub max: Duration,
    /// Growth per failed attempt.
    pub factor: f64,
    /// Random share of each delay, 0..=1.
    pub jitter: f64,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where Redis is; prints without its password.
    pub redis_url: RedisUrl,
    /// XREAD BLOCK time when a subscription gives none.
    pub default_block: Duration,
    /// COUNT when a subscription gives none.
    pub default_count: usize,
    /// Time between automatic trims.
    pub auto_trim_interval: Duration,
    /// Length automatic trimming keeps.
    pub default_max_len: u64,
    /// Whether streams are trimmed automatically.
    pub enable_auto_trim: bool,
    /// Which streams auto-trim covers.
    pub auto_trim_streams: AutoTrimStreams,
    /// Time allowed for one connection attempt.
    pub connect_timeout: Duration,
    /// Time allowed for one command.
    pub command_timeout: Duration,
    /// Reconnect schedule.
    pub reconnect: BackoffConfig,
    /// Log filter, when the caller chose one.
    pub log_level: Option<String>,
    /// Publishes kept while disconnected (0: none).
    pub offline_buffer: usize,
    /// Largest JSON payload of one publish, in bytes.
    pub max_payload_bytes: usize,
    /// PEM CA certificates for `rediss://`, read when the config was validated.
    pub tls_ca: Option<Vec<u8>>,
    /// Where [`Config::tls_ca`] came from, for status and logs.
    pub tls_ca_file: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config::from_input(ConfigInput::default()).expect("the defaults are valid")
    }
}

impl Config {
    /// Validates a caller's configuration and fills in the defaults.
    ///
    /// # Errors
    /// [`Error::InvalidArg`] naming the first field that is negative, not finite, out of
    /// range, or (for `redisUrl`) not a `redis://`/`rediss://` URL.
    pub fn from_input(input: ConfigInput) -> Result<Config> {
        let redis_url = redis_url(input.redis_url.as_deref())?;
        let default_block = Duration::from_millis(int(
            "defaultBlockMs",
            input.default_block_ms,
            DEFAULT_BLOCK_MS,
            1,
            MAX_BLOCK_MS,
        )?);
        let default_count = int(
            "defaultCount",
            input.default_count,
            DEFAULT_COUNT as u64,
            1,
            MAX_COUNT as u64,
        )? as usize;
        let auto_trim_interval = Duration::from_millis(int(
            "autoTrimInterval",
            input.auto_trim_interval,
            DEFAULT_AUTO_TRIM_INTERVAL_MS,
            1,
            u32::MAX as u64,
        )?);
        let default_max_len = int(
            "defaultMaxLen",
            input.default_max_len,
            DEFAULT_MAX_LEN,
            0,
            i64::MAX as u64,
        )?;
        let connect_timeout = Duration::from_millis(int(
            "connectTimeoutMs",
            input.connect_timeout_ms,
            DEFAULT_CONNECT_TIMEOUT_MS,
            1,
            600_000,
        )?);
        let command_timeout = Duration::from_millis(int(
            "commandTimeoutMs",
            input.command_timeout_ms,
            DEFAULT_COMMAND_TIMEOUT_MS,
            1,
            600_000,
        )?);
        let reconnect = backoff(&input)?;
        if let Some(level) = &input.log_level {
            check_log_level(level)?;
        }
        let offline_buffer = int(
            "offlineBuffer",
            input.offline_buffer,
            DEFAULT_OFFLINE_BUFFER,
            0,
            1_000_000,
        )? as usize;
        let max_payload_bytes = int(
            "maxPayloadBytes",
            input.max_payload_bytes,
            DEFAULT_MAX_PAYLOAD_BYTES,
            1,
            512 * 1024 * 1024,
        )? as usize;
        let tls_ca = match &input.tls_ca_file {
            None => None,
            Some(path) => Some(read_tls_ca(path, &redis_url)?),
        };
        Ok(Config {
            redis_url,
            default_block,
            default_count,
            auto_trim_interval,
            default_max_len,
            enable_auto_trim: input.enable_auto_trim.unwrap_or(true),
            auto_trim_streams: AutoTrimStreams::parse(input.auto_trim_streams.as_deref())?,
            connect_timeout,
            command_timeout,
            reconnect,
            log_level: input.log_level,
            offline_buffer,
            max_payload_bytes,
            tls_ca,
            tls_ca_file: input.tls_ca_file,
        })
    }
}

/// The URL given, else `REDIS_URL`, else [`DEFAULT_REDIS_URL`], parsed.
fn redis_url(given: Option<&str>) -> Result<RedisUrl> {
    match given {
        Some(u) => RedisUrl::parse(u),
        None => RedisUrl::parse(
            &std::env::var("REDIS_URL")
                .ok()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| DEFAULT_REDIS_URL.to_owned()),
        ),
    }
}

/// The reconnect schedule of a caller's configuration.
fn backoff(input: &ConfigInput) -> Result<BackoffConfig> {
    let initial = int(
        "reconnectInitialDelayMs",
        input.reconnect_initial_delay_ms,
        DEFAULT_RECONNECT_INITIAL_DELAY_MS,
        1,
        600_000,
    )?;
    let max = int(
        "reconnectMaxDelayMs",
        input.reconnect_max_delay_ms,
        DEFAULT_RECONNECT_MAX_DELAY_MS.max(initial),
        1,
        3_600_000,
    )?;
    if max < initial {
        return Err(Error::invalid(
            "reconnectMaxDelayMs",
            format!("{max} is smaller than reconnectInitialDelayMs ({initial})"),
        ));
    }
    let factor = float(
        "reconnectFactor",
        input.reconnect_factor,
        DEFAULT_RECONNECT_FACTOR,
        1.0,
        100.0,
    )?;
    let jitter = float(
        "reconnectJitter",
        input.reconnect_jitter,
        DEFAULT_RECONNECT_JITTER,
        0.0,
        1.0,
    )?;
    Ok(BackoffConfig {
        initial: Duration::from_millis(initial),
        max: Duration::from_millis(max),
        factor,
        jitter,
    })
}

fn check_log_level(level: &str) -> Result<()> {
    if is_log_filter(level) {
        return Ok(());
    }
    Err(Error::invalid(
        "logLevel",
        format!("{level:?} is not error, warn, info, debug, trace or a filter directive"),
    ))
}

/// Reads the PEM CA bundle of `tlsCaFile` (only with a TLS URL).
fn read_tls_ca(path: &str, redis_url: &RedisUrl) -> Result<Vec<u8>> {
    if !redis_url.is_tls() {
        return Err(Error::invalid(
            "tlsCaFile",
            "is only used with a rediss:// redisUrl",
        ));
    }
    let pem = std::fs::read(path)
        .map_err(|e| Error::invalid("tlsCaFile", format!("cannot read {path:?}: {e}")))?;
    if !pem.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(Error::invalid(
            "tlsCaFile",
            format!("{path:?} holds no PEM certificate"),
        ));
    }
    Ok(pem)
}

impl fmt::Debug for ConfigInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redis_url = self
            .redis_url
            .as_deref()
            .map(|raw| match RedisUrl::parse(raw) {
                Ok(u) => u.to_string(),
                // A URL that does not parse may still hold a password somewhere.
                Err(_) => "(a URL that does not parse, not shown)".to_owned(),
            });
        f.debug_struct("ConfigInput")
            .field("redis_url", &redis_url)
            .field("default_block_ms", &self.default_block_ms)
            .field("default_count", &self.default_count)
            .field("auto_trim_interval", &self.auto_trim_interval)
            .field("default_max_len", &self.default_max_len)
            .field("enable_auto_trim", &self.enable_auto_trim)
            .field("auto_trim_streams", &self.auto_trim_streams)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("command_timeout_ms", &self.command_timeout_ms)
            .field(
                "reconnect_initial_delay_ms",
                &self.reconnect_initial_delay_ms,
            )
            .field("reconnect_max_delay_ms", &self.reconnect_max_delay_ms)
            .field("reconnect_factor", &self.reconnect_factor)
            .field("reconnect_jitter", &self.reconnect_jitter)
            .field("log_level", &self.log_level)
            .field("offline_buffer", &self.offline_buffer)
            .field("max_payload_bytes", &self.max_payload_bytes)
            .field("tls_ca_file", &self.tls_ca_file)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(err: Error) -> String {
        match err {
            Error::InvalidArg { field, .. } => field,
            other => panic!("expected InvalidArg, got {other:?}"),
        }
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = Config::from_input(ConfigInput {
            redis_url: Some("redis://127.0.0.1:6379".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.default_block, Duration::from_millis(5000));
        assert_eq!(c.default_count, 10);
        assert_eq!(c.auto_trim_interval, Duration::from_millis(3_600_000));
        assert_eq!(c.default_max_len, 10_000);
        assert!(c.enable_auto_trim);
        assert_eq!(c.command_timeout, Duration::from_millis(1000));
    }

    #[test]
    fn bad_numbers_name_their_field() {
        let cases: Vec<(ConfigInput, &str)> = vec![
            (
                ConfigInput {
                    default_block_ms: Some(-1.0),
                    ..Default::default()
                },
                "defaultBlockMs",
            ),
            (
                ConfigInput {
                    default_count: Some(0.0),
                    ..Default::default()
                },
                "defaultCount",
            ),
            (
                ConfigInput {
                    command_timeout_ms: Some(f64::NAN),
                    ..Default::default()
                },
                "commandTimeoutMs",
            ),
            (
                ConfigInput {
                    default_max_len: Some(1.5),
                    ..Default::default()
                },
                "defaultMaxLen",
            ),
            (
                ConfigInput {
                    reconnect_jitter: Some(2.0),
                    ..Default::default()
                },
                "reconnectJitter",
            ),
            (
                ConfigInput {
                    reconnect_initial_delay_ms: Some(500.0),
                    reconnect_max_delay_ms: Some(100.0),
                    ..Default::default()
                },
                "reconnectMaxDelayMs",
            ),
        ];
        for (input, field) in cases {
            assert_eq!(field_of(Config::from_input(input).unwrap_err()), field);
        }
    }

    #[test]
    fn debug_never_prints_credentials() {
        let input = ConfigInput {
            redis_url: Some("redis://alice:s3cret@h:6379".into()),
            ..Default::default()
        };
        let shown = format!("{input:?} {input:#?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("alice:***@h"), "{shown}");
        let unparsable = ConfigInput {
            redis_url: Some("redis://alice:s3cret@h:notaport".into()),
            ..Default::default()
        };
        assert!(!format!("{unparsable:?}").contains("s3cret"));
        for raw in [
            "redis+cluster://app:s3cret@h1:7000,h2:7001",
            "rediss+sentinel://app:s3cret@s1:26379/m?sentinelPassword=s3cret",
        ] {
            let t = RedisUrl::parse(raw).unwrap().topology().clone();
            let shown = format!("{t:?} {t:#?}");
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(shown.contains("***"), "{shown}");
        }
    }
}
