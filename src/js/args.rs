//! Reading the arguments of a method: strings, optional strings, option objects.

use napi::bindgen_prelude::*;

use crate::error::{Error as CoreError, Result as CoreResult};

/// Reads a required string argument.
pub fn string_arg(v: Unknown<'_>, field: &str) -> CoreResult<String> {
    match v.get_type() {
        Ok(ValueType::String) => {
            unsafe { v.cast::<String>() }.map_err(|e| CoreError::invalid(field, e.reason.clone()))
        }
        Ok(t) => Err(CoreError::invalid(
            field,
            format!("expected a string, got {t}"),
        )),
        Err(e) => Err(CoreError::invalid(field, e.reason.clone())),
    }
}

/// Reads an optional string argument (`undefined` and `null` are absent).
pub fn opt_string_arg(v: Option<Unknown<'_>>, field: &str) -> CoreResult<Option<String>> {
    match v {
        None => Ok(None),
        Some(v) => match v.get_type() {
            Ok(ValueType::Undefined | ValueType::Null) => Ok(None),
            _ => string_arg(v, field).map(Some),
        },
    }
}

/// Reads an optional options object (`undefined` and `null` are absent).
///
/// A key that `T` does not know is rejected with `ERR_INVALID_ARG` naming it and the
/// closest known key (see `super::option_keys`).
pub fn opt_object_arg<T: FromNapiValue + Default + 'static>(
    v: Option<Unknown<'_>>,
    field: &str,
) -> CoreResult<T> {
    let Some(v) = v else { return Ok(T::default()) };
    match v.get_type() {
        Ok(ValueType::Undefined | ValueType::Null) => Ok(T::default()),
        Ok(ValueType::Object) => {
            let env = Env::from_raw(v.value().env);
            let object = unsafe { v.cast::<Object>() }
                .map_err(|e| CoreError::invalid(field, e.reason.clone()))?;
            super::option_keys::check::<T>(&env, &object, field)?;
            unsafe { v.cast::<T>() }.map_err(|e| CoreError::invalid(field, e.reason.clone()))
        }
        Ok(t) => Err(CoreError::invalid(
            field,
            format!("expected an object, got {t}"),
        )),
        Err(e) => Err(CoreError::invalid(field, e.reason.clone())),
    }
}
