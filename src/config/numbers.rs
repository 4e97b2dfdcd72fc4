//! Number checks for values from JavaScript (always `f64`): whole, finite, in range, each
//! error naming its field. Used by the config, and by subscribe, group and trim options.

use std::time::Duration;

use super::MAX_COUNT;
use crate::error::{Error, Result};

/// Checks an optional whole number from JavaScript against `[min, max]`.
pub(super) fn int(
    field: &str,
    value: Option<f64>,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64> {
    value.map_or(Ok(default), |v| whole_number(field, v, min, max))
}

/// Checks that a number from JavaScript is whole and within `[min, max]`.
///
/// # Errors
/// [`Error::InvalidArg`] naming `field` otherwise.
pub fn whole_number(field: &str, v: f64, min: u64, max: u64) -> Result<u64> {
    if !v.is_finite() || v.fract() != 0.0 {
        return Err(Error::invalid(
            field,
            format!("{v} is not a whole number between {min} and {max}"),
        ));
    }
    if v < min as f64 || v > max as f64 {
        return Err(Error::invalid(
            field,
            format!("{v} is not between {min} and {max}"),
        ));
    }
    Ok(v as u64)
}

/// Checks an optional duration in milliseconds from JavaScript against `[min, max]`.
///
/// # Errors
/// [`Error::InvalidArg`] naming `field`.
pub fn opt_ms(field: &str, v: Option<f64>, min: u64, max: u64) -> Result<Option<Duration>> {
    v.map(|n| whole_number(field, n, min, max).map(Duration::from_millis))
        .transpose()
}

/// Checks an optional entry count (`COUNT` of a read) from JavaScript.
///
/// # Errors
/// [`Error::InvalidArg`] naming `field`.
pub fn opt_count(field: &str, v: Option<f64>) -> Result<Option<usize>> {
    v.map(|n| whole_number(field, n, 1, MAX_COUNT as u64).map(|n| n as usize))
        .transpose()
}

/// Checks an optional number from JavaScript against `[min, max]`.
pub(super) fn float(
    field: &str,
    value: Option<f64>,
    default: f64,
    min: f64,
    max: f64,
) -> Result<f64> {
    let Some(v) = value else { return Ok(default) };
    if !v.is_finite() || v < min || v > max {
        return Err(Error::invalid(
            field,
            format!("{v} is not between {min} and {max}"),
        ));
    }
    Ok(v)
}
