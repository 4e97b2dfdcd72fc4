//! Unknown keys in an options object: rejected, with the closest known key as a hint.
//!
//! A misspelt option (`blockMS`) or one from another library (`cluster: { nodes }`) would
//! otherwise be ignored, and the client would quietly run with its defaults. The binding
//! lists the keys a caller gave and the keys an options type knows; this module decides.

use crate::error::{Error, Result};

/// Lowest Jaro-Winkler similarity (0..=1) at which a known key is offered as a hint.
///
/// 0.8 suggests `blockMs` for `bockMs` or `blokMs`, and nothing for `cluster` among the
/// client's options.
const MIN_SIMILARITY: f64 = 0.8;

/// Rejects every key of `given` that is not in `known`.
///
/// `argument` names the options object in the error (`config`, `options`).
///
/// # Errors
/// [`Error::InvalidArg`] for `argument`, naming each unknown key with the closest known
/// one (`unknown option blockMS; did you mean blockMs?`), or listing the known keys when
/// none is close.
pub fn reject_unknown<G, K>(argument: &str, given: &[G], known: &[K]) -> Result<()>
where
    G: AsRef<str>,
    K: AsRef<str>,
{
    let unknown: Vec<&str> = given
        .iter()
        .map(AsRef::as_ref)
        .filter(|g| !known.iter().any(|k| k.as_ref() == *g))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let mut hints = Vec::with_capacity(unknown.len());
    let mut any_without_hint = false;
    for key in &unknown {
        match closest(key, known) {
            Some(best) => hints.push(format!("unknown option {key}; did you mean {best}?")),
            None => {
                any_without_hint = true;
                hints.push(format!("unknown option {key}"));
            }
        }
    }
    let mut reason = hints.join("; ");
    if any_without_hint {
        let names: Vec<&str> = known.iter().map(AsRef::as_ref).collect();
        reason.push_str(&format!("; the known options are {}", names.join(", ")));
    }
    Err(Error::invalid(argument, reason))
}

/// The known key closest to `key`, if any is close enough to be a likely typo.
///
/// Keys that differ only in case, `_` or `-` (`blockMS`, `block_ms`) match first; otherwise
/// the highest Jaro-Winkler similarity of at least [`MIN_SIMILARITY`] wins, the earlier key
/// on a tie.
pub fn closest<'k, K: AsRef<str>>(key: &str, known: &'k [K]) -> Option<&'k str> {
    let folded = fold(key);
    if let Some(k) = known.iter().find(|k| fold(k.as_ref()) == folded) {
        return Some(k.as_ref());
    }
    let mut best: Option<(&str, f64)> = None;
    for k in known {
        let score = strsim::jaro_winkler(&folded, &fold(k.as_ref()));
        if score >= MIN_SIMILARITY && best.is_none_or(|(_, s)| score > s) {
            best = Some((k.as_ref(), score));
        }
    }
    best.map(|(k, _)| k)
}

/// Lower case without `_` and `-`, so that the spellings of one name compare equal.
fn fold(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBSCRIBE: [&str; 3] = ["startId", "blockMs", "count"];
    const CONFIG: [&str; 6] = [
        "redisUrl",
        "defaultBlockMs",
        "defaultCount",
        "enableAutoTrim",
        "logLevel",
        "offlineBuffer",
    ];

    fn reason(err: Error) -> (String, String) {
        match err {
            Error::InvalidArg { field, reason } => (field, reason),
            other => panic!("expected InvalidArg, got {other:?}"),
        }
    }

    #[test]
    fn case_and_separators_match_first() {
        assert_eq!(closest("blockMS", &SUBSCRIBE), Some("blockMs"));
        assert_eq!(closest("block_ms", &SUBSCRIBE), Some("blockMs"));
        assert_eq!(closest("START-ID", &SUBSCRIBE), Some("startId"));
        assert_eq!(closest("redisURL", &CONFIG), Some("redisUrl"));
    }

    #[test]
    fn typos_suggest_the_nearest_key() {
        assert_eq!(closest("bockMs", &SUBSCRIBE), Some("blockMs"));
        assert_eq!(closest("blokMs", &SUBSCRIBE), Some("blockMs"));
        assert_eq!(closest("cuont", &SUBSCRIBE), Some("count"));
        assert_eq!(closest("startid_", &SUBSCRIBE), Some("startId"));
        assert_eq!(closest("defaultBlock", &CONFIG), Some("defaultBlockMs"));
        assert_eq!(closest("enableAutotrim", &CONFIG), Some("enableAutoTrim"));
        assert_eq!(closest("loglvl", &CONFIG), Some("logLevel"));
    }

    #[test]
    fn unrelated_keys_suggest_nothing() {
        assert_eq!(closest("cluster", &CONFIG), None);
        assert_eq!(closest("nodes", &CONFIG), None);
        assert_eq!(closest("x", &SUBSCRIBE), None);
        assert_eq!(closest("", &SUBSCRIBE), None);
        assert_eq!(closest("blockMs", &[] as &[&str]), None);
    }

    #[test]
    fn known_keys_pass() {
        reject_unknown("options", &["blockMs", "count"], &SUBSCRIBE).unwrap();
        reject_unknown("options", &[] as &[&str], &SUBSCRIBE).unwrap();
    }

    #[test]
    fn a_misspelt_key_names_itself_and_the_closest_known_one() {
        let (field, reason) =
            reason(reject_unknown("options", &["count", "blockMS"], &SUBSCRIBE).unwrap_err());
        assert_eq!(field, "options");
        assert_eq!(reason, "unknown option blockMS; did you mean blockMs?");
    }

    #[test]
    fn a_foreign_key_lists_the_known_ones() {
        let (field, reason) = reason(reject_unknown("config", &["cluster"], &CONFIG).unwrap_err());
        assert_eq!(field, "config");
        assert_eq!(
            reason,
            "unknown option cluster; the known options are redisUrl, defaultBlockMs, \
             defaultCount, enableAutoTrim, logLevel, offlineBuffer"
        );
    }

    #[test]
    fn every_unknown_key_is_named() {
        let (_, reason) = reason(
            reject_unknown("options", &["blockMS", "nodes", "count"], &SUBSCRIBE).unwrap_err(),
        );
        assert_eq!(
            reason,
            "unknown option blockMS; did you mean blockMs?; unknown option nodes; \
             the known options are startId, blockMs, count"
        );
    }

    #[test]
    fn matching_is_exact_for_known_keys() {
        // A known key never counts as unknown, even when another known key is close to it.
        reject_unknown("config", &["defaultCount"], &CONFIG).unwrap();
        let err = reject_unknown("config", &["DefaultCount"], &CONFIG).unwrap_err();
        assert!(reason(err).1.contains("did you mean defaultCount?"));
    }
}
