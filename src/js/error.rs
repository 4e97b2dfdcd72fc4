//! The only converter from core errors to JavaScript errors: an `Error` whose `code` is the
//! core's stable code.

use napi::bindgen_prelude::*;
use napi::JsError;

use crate::error::Error as CoreError;

/// An error code string that napi puts on `err.code`.
pub struct Code(pub String);

impl AsRef<str> for Code {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<Status> for Code {
    fn from(s: Status) -> Self {
        Code(s.as_ref().to_owned())
    }
}

/// The JavaScript `Error` object (with `code`) for a core error; a server's refusal also
/// carries the server's own code as `redisCode`.
pub fn error_value(env: &Env, e: &CoreError) -> napi::sys::napi_value {
    let err = napi::Error::new(Code(e.code().to_owned()), e.to_string());
    let value = unsafe { JsError::from(err).into_value(env.raw()) };
    if let Some(redis_code) = e.redis_code() {
        let mut object = Object::from_raw(env.raw(), value);
        // The error still says what happened without the property, so a failure to add it
        // is not worth replacing the error.
        let _ = object.set_named_property("redisCode", redis_code);
    }
    value
}

/// Builds the JavaScript `Error` (with `code`) for a core error, ready to throw or reject.
pub fn to_js(env: &Env, e: &CoreError) -> napi::Error {
    let value = error_value(env, e);
    napi::Error::from(unsafe { Unknown::from_raw_unchecked(env.raw(), value) })
}

/// Turns a core result into a napi result on the JavaScript thread.
pub fn settle<T>(env: &Env, r: crate::error::Result<T>) -> napi::Result<T> {
    r.map_err(|e| to_js(env, &e))
}
