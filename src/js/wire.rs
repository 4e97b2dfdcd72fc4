//! How a read's entries cross into JavaScript: as JSON text for one `JSON.parse`, split into
//! parts when one string could not hold it.

use std::ops::Range;

use napi::bindgen_prelude::*;
use napi::sys;

use crate::codec::{batch_json, Entry};
use crate::handler::Read;

/// The longest JSON text handed to JavaScript as one string. V8 refuses a string over 2^29 - 24
/// characters (bytes of UTF-8, as Node-API checks it); a read whose JSON is longer than this
/// crosses in parts of about this size.
const MAX_JSON_PART: usize = 64 << 20;

/// A read's entries as the hub takes them: one JSON text, or for a read longer than
/// [`MAX_JSON_PART`] an array of parts in entry order, each a JSON text or, for entries that
/// could not become a string, `[reason, id, id, ...]` (the hub reports those as failed).
pub fn read_json<'e>(env: &'e Env, read: &Read) -> Result<Unknown<'e>> {
    let parts = json_parts(&read.stream, &read.entries, MAX_JSON_PART);
    if parts.len() == 1 {
        if let Ok(text) = env.create_string(&parts[0].1) {
            return Ok(text.to_unknown());
        }
        clear_exception(env);
    }
    let mut out = env.create_array(parts.len() as u32)?;
    for (i, (entries, text)) in parts.iter().enumerate() {
        match env.create_string(text) {
            Ok(s) => out.set(i as u32, s)?,
            Err(e) => {
                clear_exception(env);
                tracing::warn!(
                    stream = %read.stream,
                    entries = entries.len(),
                    bytes = text.len(),
                    status = %e.status,
                    "entries too long for a JavaScript string; reported as failed deliveries"
                );
                let reason = format!("cannot hand {} bytes of JSON to JavaScript", text.len());
                let failed: Vec<String> = std::iter::once(reason)
                    .chain(
                        read.entries[entries.clone()]
                            .iter()
                            .map(|e| e.id.to_string()),
                    )
                    .collect();
                out.set(i as u32, failed)?;
            }
        }
    }
    Ok(out.to_unknown())
}

/// The JSON of `entries` in parts of at most `max` bytes (an entry longer than that is a
/// part of its own), with the range of entries each holds.
fn json_parts(stream: &str, entries: &[Entry], max: usize) -> Vec<(Range<usize>, String)> {
    let whole = batch_json(stream, entries);
    if whole.len() <= max || entries.len() <= 1 {
        return vec![(0..entries.len(), whole)];
    }
    drop(whole);
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut start = 0;
    for i in 0..entries.len() {
        let one = batch_json(stream, &entries[i..=i]);
        // Without its brackets.
        let body = &one[1..one.len() - 1];
        if text.len() > 1 && text.len() + body.len() + 2 > max {
            text.push(']');
            parts.push((start..i, std::mem::take(&mut text)));
            start = i;
        }
        text.push(if text.is_empty() { '[' } else { ',' });
        text.push_str(body);
    }
    text.push(']');
    parts.push((start..entries.len(), text));
    parts
}

/// Clears the exception a failed call may have left pending, so that the next call works.
fn clear_exception(env: &Env) {
    let mut pending = false;
    unsafe {
        if sys::napi_is_exception_pending(env.raw(), &mut pending) == sys::Status::napi_ok
            && pending
        {
            let mut e = std::ptr::null_mut();
            sys::napi_get_and_clear_last_exception(env.raw(), &mut e);
        }
    }
}
