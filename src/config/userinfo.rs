//! The userinfo of a Redis URL (`user:password`): encoding credentials into it, decoding
//! them out of it, and printing it without the password.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Percent-encodes a user name or password for a URL (RFC 3986: a `+` stays a plus sign,
/// a space is `%20`): the one encoder, so that every URL built from credentials (sentinel
/// nodes here, discovered nodes in `connection`) decodes the same way.
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, USERINFO).to_string()
}

/// What a user name or password keeps unencoded: RFC 3986's unreserved characters.
const USERINFO: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The userinfo of the sentinels' URLs, from the `sentinelUsername` / `sentinelPassword`
/// query parameters (`None` when neither is given).
pub(super) fn from_credentials(user: Option<&str>, password: Option<&str>) -> Option<String> {
    match (user, password) {
        (None, None) => None,
        (u, p) => Some(format!(
            "{}:{}",
            encode(u.unwrap_or("")),
            encode(p.unwrap_or(""))
        )),
    }
}

/// The user name and password of a userinfo, decoded.
pub(super) fn credentials(userinfo: Option<&str>) -> (Option<String>, Option<String>) {
    let Some(ui) = userinfo else {
        return (None, None);
    };
    let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    match ui.split_once(':') {
        Some((u, p)) => (Some(decode(u)).filter(|u| !u.is_empty()), Some(decode(p))),
        None => (Some(decode(ui)).filter(|u| !u.is_empty()), None),
    }
}

/// A userinfo with `***` for the password, with its `@` (empty without a userinfo).
pub(super) fn redacted(userinfo: Option<&str>) -> String {
    match userinfo {
        Some(ui) => match ui.split_once(':') {
            Some((u, _)) => format!("{u}:***@"),
            None => format!("{ui}@"),
        },
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use redis::IntoConnectionInfo;

    use super::*;

    /// A userinfo is percent-encoded (RFC 3986), not form-encoded: a `+` is a plus sign (base64
    /// passwords have them) and a space is `%20`, as the `redis` crate and Node's `URL` read it.
    #[test]
    fn a_userinfo_is_percent_encoded_as_the_redis_crate_reads_it() {
        let password = "a+b c/d:e@f%g";
        let url = format!("redis://user:{}@127.0.0.1:6379", encode(password));
        let info = url.as_str().into_connection_info().unwrap();
        assert_eq!(info.redis_settings().password(), Some(password), "{url}");
        assert_eq!(
            credentials(Some("u:a+b%20c")),
            (Some("u".to_owned()), Some("a+b c".to_owned()))
        );
        assert_eq!(
            credentials(Some(&format!("u:{}", encode(password))))
                .1
                .as_deref(),
            Some(password)
        );
    }
}
