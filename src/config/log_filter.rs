//! The `logLevel` setting: which texts are a log filter.

/// Log levels accepted as a bare word.
pub const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// A level name, or an EnvFilter directive list with a target (`streamcast=debug,info`).
///
/// A bare word that is not a level would parse as a target name and silently switch
/// streamcast's own logs off, so a typo such as `"wran"` is rejected.
pub(super) fn is_log_filter(level: &str) -> bool {
    let level = level.trim();
    if LOG_LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
        return true;
    }
    level.contains('=') && tracing_subscriber::EnvFilter::try_new(level).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_levels() {
        for ok in ["info", "DEBUG", "streamcast=debug,info", "off"] {
            assert!(is_log_filter(ok), "{ok}");
        }
        for bad in ["", "wran", "verbose", "a=b=c"] {
            assert!(!is_log_filter(bad), "{bad}");
        }
    }
}
