//! The keys of an options object as JavaScript sees them, for the unknown-key check of
//! `crate::option_keys`.
//!
//! The known keys of a `#[napi(object)]` type are learnt from napi's own conversion:
//! converting a recording `Proxy` reads every field by its JavaScript name (camelCase, or
//! its `js_name`), so a new options type or field is checked without a list to keep. That
//! needs every field to be optional, as options are; a required field would end the
//! conversion early and hide the fields after it (the vitest suite passes every documented
//! key of each options type, which would catch it).

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::*;

use crate::error::{Error as CoreError, Result as CoreResult};

/// Known keys per options type, learnt once per process (they do not depend on the env).
static KNOWN: Mutex<Option<HashMap<TypeId, Arc<[String]>>>> = Mutex::new(None);

/// Makes `[proxy, seen]`: a Proxy that pushes onto `seen` every string key read from it.
const RECORDER: &str = r#"(function streamcastOptionKeysRecorder() {
  const seen = [];
  const proxy = new Proxy({}, {
    get(_target, key) {
      if (typeof key === "string") seen.push(key);
      return undefined;
    },
  });
  return [proxy, seen];
})()"#;

/// The JavaScript keys the conversion of `T` reads.
fn known_keys<T: FromNapiValue + 'static>(env: &Env) -> Result<Arc<[String]>> {
    let id = TypeId::of::<T>();
    if let Some(keys) = KNOWN
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .and_then(|m| m.get(&id))
    {
        return Ok(keys.clone());
    }
    let pair: Array = env.run_script(RECORDER)?;
    let proxy: Unknown = pair
        .get(0)?
        .ok_or_else(|| Error::from_reason("streamcast: the key recorder made no proxy"))?;
    // Every field reads `undefined`, which an optional field takes as absent.
    unsafe { T::from_napi_value(env.raw(), proxy.raw()) }?;
    let seen: Vec<String> = pair.get(1)?.unwrap_or_default();
    let keys: Arc<[String]> = seen.into();
    KNOWN
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(id, keys.clone());
    Ok(keys)
}

/// Rejects keys of `value` (an object) that `T` does not know, naming `argument`.
///
/// The keys checked are the enumerable string keys, own and inherited, the same ones
/// napi's conversion would read. A key whose value is `undefined` is checked too: a
/// misspelling is one whatever its value.
pub fn check<T: FromNapiValue + 'static>(
    env: &Env,
    value: &Object,
    argument: &str,
) -> CoreResult<()> {
    let unexpected = |e: Error| CoreError::invalid(argument, e.reason.clone());
    let given = Object::keys(value).map_err(unexpected)?;
    if given.is_empty() {
        return Ok(());
    }
    let known = known_keys::<T>(env).map_err(unexpected)?;
    crate::option_keys::reject_unknown(argument, &given, &known)
}
