//! The userinfo of a Redis URL (`user:password`): encoding credentials into it, decoding
//! them out of it, and printing it without the password.

/// Percent-encodes a user name or password for a URL: the one encoder, so that every
/// URL built from credentials (sentinel nodes here, discovered nodes in `connection`)
/// decodes the same way.
pub fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

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
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
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
