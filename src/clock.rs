//! The wall clock, in the unit the wire format uses.

/// Milliseconds since the Unix epoch, as written into the `timestamp` field.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
