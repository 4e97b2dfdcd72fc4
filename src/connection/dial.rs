//! Opening one connection, and naming why it could not be opened.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisError};

use crate::config::Config;
use crate::error::{Error, Result};

/// Opens one connection: TCP (or TLS), AUTH, SELECT, within the connect timeout.
///
/// # Errors
/// The `RedisError` of the failed step; a timeout is reported as an I/O timeout.
pub async fn open(
    client: &redis::Client,
    cfg: &Config,
) -> std::result::Result<MultiplexedConnection, RedisError> {
    let conn_cfg = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(cfg.connect_timeout))
        .set_response_timeout(None);
    // A PING proves the connection can run commands: a server that wants a password
    // and got none only says so (NOAUTH) when asked something.
    let fut = async {
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&conn_cfg)
            .await?;
        redis::cmd("PING").query_async::<()>(&mut conn).await?;
        Ok(conn)
    };
    match tokio::time::timeout(cfg.connect_timeout + Duration::from_millis(100), fut).await {
        Ok(r) => r,
        Err(_) => Err(RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connect timed out",
        ))),
    }
}

/// Builds the redis client for a config: plain, TLS with the system roots, or TLS with the
/// configured CA.
///
/// # Errors
/// [`Error::InvalidArg`] when the URL or CA cannot be used.
pub fn redis_client(cfg: &Config) -> Result<redis::Client> {
    static CRYPTO: std::sync::Once = std::sync::Once::new();
    CRYPTO.call_once(|| {
        // One process-wide rustls provider; another library may have installed one already.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    let url = cfg.redis_url.expose();
    let built = match &cfg.tls_ca {
        None => redis::Client::open(url),
        Some(pem) => redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone()),
            },
        ),
    };
    built.map_err(|e| {
        let field = if cfg.tls_ca.is_some() {
            "tlsCaFile"
        } else {
            "redisUrl"
        };
        Error::invalid(field, format!("cannot be used: {e}"))
    })
}

/// Turns a connection failure into the error `connect()` reports.
pub fn connect_error(err: &RedisError, cfg: &Config) -> Error {
    let url = cfg.redis_url.to_string();
    let reason = err.to_string();
    if err.is_timeout() {
        Error::Timeout(cfg.connect_timeout.as_millis() as u64)
    } else if is_auth_failure(err) {
        Error::Auth { url, reason }
    } else {
        Error::Unreachable { url, reason }
    }
}

/// Wrong password, unknown ACL user, or a user without the permission to connect.
fn is_auth_failure(err: &RedisError) -> bool {
    err.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(err.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
}

/// Rebuilds the error a failed attempt left in a `ConnState::Reconnecting`.
pub(super) fn state_error(code: &str, reason: &str, cfg: &Config) -> Error {
    let url = cfg.redis_url.to_string();
    let reason = reason.to_owned();
    match code {
        "ERR_TIMEOUT" => Error::Timeout(cfg.connect_timeout.as_millis() as u64),
        "ERR_AUTH" => Error::Auth { url, reason },
        _ => Error::Unreachable { url, reason },
    }
}
