//! W3C trace context carried in an entry: the optional `trace` field.
//!
//! A publish made inside an active trace adds one field, `trace`, holding the W3C
//! `traceparent` and, when there is one, `;` and the `tracestate` (a `traceparent` never
//! contains `;`, so the first one splits them). Readers of the original design read `data`
//! and `timestamp` only and never see it; an entry published outside a trace is byte for
//! byte what it was before.

use crate::error::{Error, Result};

/// Name of the optional field that carries the publisher's trace context.
pub const TRACE_FIELD: &str = "trace";

/// Longest `tracestate` accepted, in bytes (the W3C limit is 512 characters).
pub const MAX_TRACESTATE_BYTES: usize = 512;

/// A validated W3C trace context, ready to be written as the `trace` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    field: String,
}

fn lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether `s` is a W3C `traceparent` this library can carry: version `00` (exactly 55
/// characters) or a later version (longer, `-`-separated), non-zero trace and parent ids.
pub fn is_traceparent(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 55 || (b.len() > 55 && b[55] != b'-') {
        return false;
    }
    let (version, trace_id, parent_id, flags) = (&s[0..2], &s[3..35], &s[36..52], &s[53..55]);
    b[2] == b'-'
        && b[35] == b'-'
        && b[52] == b'-'
        && lower_hex(version)
        && version != "ff"
        && (version != "00" || b.len() == 55)
        && lower_hex(trace_id)
        && trace_id.bytes().any(|c| c != b'0')
        && lower_hex(parent_id)
        && parent_id.bytes().any(|c| c != b'0')
        && lower_hex(flags)
}

fn is_tracestate(s: &str) -> bool {
    s.len() <= MAX_TRACESTATE_BYTES && s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

impl TraceContext {
    /// Validates a context given by a caller (`traceContext` of the publish options).
    ///
    /// # Errors
    /// [`Error::InvalidArg`] on `traceContext.traceparent` when it is not a W3C
    /// `traceparent`, on `traceContext.tracestate` when it is longer than
    /// [`MAX_TRACESTATE_BYTES`] or holds characters other than printable ASCII.
    pub fn new(traceparent: &str, tracestate: Option<&str>) -> Result<Self> {
        if !is_traceparent(traceparent) {
            return Err(Error::invalid(
                "traceContext.traceparent",
                "expected a W3C traceparent (00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>, lower case, ids not all zero)",
            ));
        }
        let mut field = traceparent.to_owned();
        match tracestate.map(str::trim) {
            Some(state) if !is_tracestate(state) => {
                return Err(Error::invalid(
                    "traceContext.tracestate",
                    format!("expected at most {MAX_TRACESTATE_BYTES} printable ASCII characters"),
                ))
            }
            Some("") | None => {}
            Some(state) => {
                field.push(';');
                field.push_str(state);
            }
        }
        Ok(TraceContext { field })
    }

    /// The value of the `trace` field.
    pub fn field_value(&self) -> &str {
        &self.field
    }
}

/// Splits a `trace` field read from an entry into its `traceparent` and `tracestate`;
/// `None` when it holds no valid `traceparent` (a foreign program's field of that name).
pub fn split_field(value: &str) -> Option<(&str, Option<&str>)> {
    let (parent, state) = match value.split_once(';') {
        Some((p, s)) => (p, Some(s).filter(|s| !s.is_empty() && is_tracestate(s))),
        None => (value, None),
    };
    is_traceparent(parent).then_some((parent, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn accepts_w3c_traceparents() {
        assert!(is_traceparent(TP));
        assert!(is_traceparent(
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra"
        ));
    }

    #[test]
    fn rejects_malformed_traceparents() {
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",
            "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ] {
            assert!(!is_traceparent(bad), "{bad}");
        }
    }

    #[test]
    fn field_round_trips_with_and_without_tracestate() {
        let plain = TraceContext::new(TP, None).unwrap();
        assert_eq!(plain.field_value(), TP);
        assert_eq!(split_field(plain.field_value()), Some((TP, None)));
        let empty = TraceContext::new(TP, Some("")).unwrap();
        assert_eq!(empty.field_value(), TP);
        let state = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE;x";
        let with = TraceContext::new(TP, Some(state)).unwrap();
        assert_eq!(split_field(with.field_value()), Some((TP, Some(state))));
    }

    #[test]
    fn bad_input_names_the_field() {
        let e = TraceContext::new("nope", None).unwrap_err();
        assert_eq!(e.code(), "ERR_INVALID_ARG");
        assert!(e.to_string().contains("traceContext.traceparent"));
        let e = TraceContext::new(TP, Some("a\nb")).unwrap_err();
        assert!(e.to_string().contains("traceContext.tracestate"));
        assert!(split_field("garbage").is_none());
    }
}
