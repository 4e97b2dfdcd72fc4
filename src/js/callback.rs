//! JavaScript callbacks: the per-env helper functions (JSON with bigint, the batch
//! trampoline) and the `Handler` a subscription callback becomes.
//!
//! One ThreadsafeFunction call per XREAD batch: Rust sends the batch as one JSON array,
//! V8 parses it once, and a small JavaScript loop calls the user callback per message,
//! awaiting a returned Promise before the next one. The loop reports the ids whose callback
//! threw or rejected, and stops early once the subscription was cancelled. A subscription
//! hands over its next batch without waiting for the previous one's report (the
//! trampoline queues it and runs the batches one after another), which saves a round trip
//! through the JavaScript thread per batch.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use tokio::sync::oneshot;

use crate::codec::batch_json;
use crate::error::Error as CoreError;
use crate::handler::{Batch, CallbackFailure, HandleResult, Handler, HandlerGone, Outcome};

const HELPERS: &str = r#"(function () {
  const replacer = (k, x) => (typeof x === "bigint" ? x.toString() : x);
  const describe = (e) => {
    try { return e instanceof Error ? String(e.stack || e) : String(e); } catch { return "unprintable error"; }
  };
  // The JSON text, or [reason] when v cannot be JSON. Plain JSON.stringify first: a
  // replacer function costs a call per value (about 1.5 µs per 200-byte object); only
  // a value it refuses (a bigint, say) is tried again with the bigint replacer (so a
  // getter or toJSON of such a value runs twice).
  const stringify = (v) => {
    let s;
    try {
      s = JSON.stringify(v);
    } catch {
      try {
        s = JSON.stringify(v, replacer);
      } catch (e) {
        return [e && e.message ? e.message : String(e)];
      }
    }
    return s === undefined ? [typeof v + " cannot be represented as JSON"] : s;
  };
  return {
    stringify,
    // Every item's JSON text joined by newlines (JSON.stringify never writes a raw
    // newline), or [index, reason] for the first item that has no JSON form.
    stringifyLines(items) {
      const out = new Array(items.length);
      for (let i = 0; i < items.length; i++) {
        const s = stringify(items[i]);
        if (typeof s !== "string") return [i, s[0]];
        out[i] = s;
      }
      return out.join("\n");
    },
    subscriber(cb, concurrency) {
      let stopped = false;
      const report = (i, n, failed) => (i === n && failed.length === 0 ? null : [String(i), ...failed]);
      const isThenable = (r) => r !== null && typeof r === "object" && typeof r.then === "function";
      // Calls back batch[i], batch[i + 1], ... while the callbacks return plain values:
      // [where it stopped, the thenable that stopped it or null].
      const callFrom = (batch, i, failed) => {
        for (; i < batch.length && !stopped; i++) {
          const m = batch[i];
          try {
            const r = cb(m);
            if (isThenable(r)) return [i, r];
          } catch (e) {
            failed.push(m.id, describe(e));
          }
        }
        return [i, null];
      };
      // Awaits the thenable of message `i`, then goes on from the next message.
      const finish = async (batch, i, r, failed) => {
        while (r !== null) {
          try { await r; } catch (e) { failed.push(batch[i].id, describe(e)); }
          [i, r] = callFrom(batch, i + 1, failed);
        }
        return report(i, batch.length, failed);
      };
      const concurrent = async (batch, failed) => {
        const running = new Set();
        const one = async (m) => {
          try { await cb(m); } catch (e) { failed.push(m.id, describe(e)); }
        };
        let i = 0;
        for (; i < batch.length && !stopped; i++) {
          const p = one(batch[i]).then(() => running.delete(p));
          running.add(p);
          if (running.size >= concurrency) await Promise.race(running);
        }
        await Promise.all(running);
        return report(i, batch.length, failed);
      };
      // The report of one batch: returned at once while every callback returns a plain
      // value, a Promise from the first one that returns a thenable.
      const run = (json) => {
        const batch = JSON.parse(json);
        const failed = [];
        if (concurrency > 1) return concurrent(batch, failed);
        const [i, r] = callFrom(batch, 0, failed);
        return r === null ? report(i, batch.length, failed) : finish(batch, i, r, failed);
      };
      // Batches may arrive before the previous one finished: they run one after another,
      // in arrival order. `busy` is the promise of the last batch still running, or null.
      let busy = null;
      const deliver = (json) => {
        const go = () => run(json);
        let r;
        if (busy === null) {
          try { r = go(); } catch (e) { r = Promise.reject(e); }
          if (!(r instanceof Promise)) return r;
        } else {
          r = busy.then(go, go);
        }
        busy = r;
        const idle = () => { if (busy === r) busy = null; };
        r.then(idle, idle);
        return r;
      };
      return [deliver, () => { stopped = true; }];
    },
    logger(fn) {
      return (line) => { try { fn(JSON.parse(line)); } catch {} };
    },
  };
})()"#;

/// The helper functions compiled once per env.
pub struct Helpers {
    stringify: FunctionRef<Unknown<'static>, Unknown<'static>>,
    stringify_lines: FunctionRef<Unknown<'static>, Unknown<'static>>,
    subscriber: FunctionRef<FnArgs<(Unknown<'static>, u32)>, Array<'static>>,
    logger: FunctionRef<Unknown<'static>, Unknown<'static>>,
}

impl Helpers {
    /// Compiles the helpers in `env`.
    pub fn compile(env: &Env) -> Result<Self> {
        let obj: Object = env.run_script(HELPERS)?;
        Ok(Helpers {
            stringify: obj
                .get_named_property::<Function<Unknown, Unknown>>("stringify")?
                .create_ref()?,
            stringify_lines: obj
                .get_named_property::<Function<Unknown, Unknown>>("stringifyLines")?
                .create_ref()?,
            subscriber: obj
                .get_named_property::<Function<FnArgs<(Unknown, u32)>, Array>>("subscriber")?
                .create_ref()?,
            logger: obj
                .get_named_property::<Function<Unknown, Unknown>>("logger")?
                .create_ref()?,
        })
    }

    /// `JSON.stringify` with bigints as decimal strings: the JSON text, or why `v` has no
    /// JSON form.
    pub fn stringify(
        &self,
        env: &Env,
        v: Unknown,
    ) -> Result<std::result::Result<String, CoreError>> {
        let out = self.stringify.borrow_back(env)?.call(v)?;
        if out.get_type()? == ValueType::String {
            return Ok(Ok(unsafe { out.cast::<String>() }?));
        }
        let why: String = unsafe { out.cast::<Array>() }?.get(0)?.unwrap_or_default();
        Ok(Err(CoreError::invalid(
            "data",
            format!("cannot be serialized to JSON: {why}"),
        )))
    }

    /// [`Helpers::stringify`] for every item of the array `items`, in one call: the JSON
    /// texts, or the index and reason of the first item that has no JSON form.
    pub fn stringify_all(
        &self,
        env: &Env,
        items: Unknown,
        len: u32,
    ) -> Result<std::result::Result<Vec<String>, (u32, String)>> {
        if len == 0 {
            return Ok(Ok(Vec::new()));
        }
        let out = self.stringify_lines.borrow_back(env)?.call(items)?;
        if out.get_type()? == ValueType::String {
            let lines = unsafe { out.cast::<String>() }?;
            return Ok(Ok(lines.split('\n').map(str::to_owned).collect()));
        }
        let failed: Array = unsafe { out.cast() }?;
        let index: u32 = failed.get(0)?.unwrap_or_default();
        let why: String = failed.get(1)?.unwrap_or_default();
        Ok(Err((index, why)))
    }

    /// Wraps a user callback in the batch trampoline: `(deliver, stop)`; up to
    /// `concurrency` callbacks of one batch run at once.
    pub fn subscriber<'e>(
        &self,
        env: &'e Env,
        cb: Unknown,
        concurrency: u32,
    ) -> Result<(Deliver<'e>, Stop<'e>)> {
        let pair = self
            .subscriber
            .borrow_back(env)?
            .call(FnArgs::from((cb, concurrency)))?;
        let deliver: Deliver = pair.get_element(0)?;
        let stop: Stop = pair.get_element(1)?;
        Ok((deliver, stop))
    }

    /// Wraps a logger function so that it receives parsed records and cannot throw.
    pub fn logger<'e>(&self, env: &'e Env, f: Unknown) -> Result<Function<'e, String, ()>> {
        let wrapped: Unknown = self.logger.borrow_back(env)?.call(f)?;
        unsafe { wrapped.cast() }
    }
}

type DeliverFn = ThreadsafeFunction<String, Unknown<'static>, String, Status, false>;

/// The trampoline's `deliver(batchJson)`: `null` or the failure report, or a Promise of it
/// when a callback returned one.
pub type Deliver<'e> = Function<'e, String, Unknown<'static>>;

/// The failure report of a batch (`None`: every message handled, none failed).
type Report = Option<Vec<String>>;

/// What `deliver` returned: the report, or a Promise of it.
enum Returned {
    Now(Report),
    Later(Promise<Report>),
}

/// Reads `deliver`'s return value on the JavaScript thread.
fn returned(v: Unknown) -> Result<Returned> {
    if v.is_promise()? {
        Ok(Returned::Later(unsafe { v.cast::<Promise<Report>>() }?))
    } else {
        Ok(Returned::Now(unsafe { v.cast::<Report>() }?))
    }
}
/// The trampoline's `stop()`.
pub type Stop<'e> = Function<'e, (), ()>;

/// A subscription callback as a core [`Handler`].
pub struct JsHandler {
    tsfn: Arc<DeliverFn>,
}

impl JsHandler {
    /// Builds the handler from the trampoline's `deliver` function.
    pub fn new(deliver: Deliver<'_>) -> Result<Self> {
        let tsfn = deliver
            .build_threadsafe_function()
            .callee_handled::<false>()
            .build()?;
        Ok(JsHandler {
            tsfn: Arc::new(tsfn),
        })
    }
}

/// Batches of one subscription handed to JavaScript before the first one finished; the
/// trampoline queues them and runs them one after another.
const JS_IN_FLIGHT: usize = 4;

impl Handler for JsHandler {
    fn handle(&self, batch: Batch) -> BoxFuture<'static, HandleResult> {
        let tsfn = self.tsfn.clone();
        // Called now, not when the future is first polled: the order of calls is the
        // order in which the trampoline runs the batches.
        let (tx, rx) = oneshot::channel();
        let json = batch_json(&batch.stream, &batch.entries);
        let status = tsfn.call_with_return_value(
            json,
            ThreadsafeFunctionCallMode::NonBlocking,
            move |r: Result<Unknown<'static>>, _env| {
                let _ = tx.send(r.and_then(returned));
                Ok(())
            },
        );
        Box::pin(async move {
            if status != Status::Ok {
                let why = format!("the callback could not be queued: {status}");
                return if status == Status::Closing || tsfn.aborted() {
                    Err(HandlerGone(why))
                } else {
                    Ok(all_failed(&batch, &why))
                };
            }
            let report = match rx.await {
                Ok(Ok(Returned::Now(report))) => Ok(report),
                Ok(Ok(Returned::Later(promise))) => promise.await,
                Ok(Err(e)) => return Ok(all_failed(&batch, &e.reason)),
                Err(_) => return Err(HandlerGone("the JavaScript environment is gone".into())),
            };
            match report {
                Ok(None) => Ok(Outcome::all_ok(batch.entries.len())),
                Ok(Some(flat)) => Ok(outcome_of(&flat, batch.entries.len())),
                Err(e) if tsfn.aborted() => Err(HandlerGone(e.reason.clone())),
                Err(e) => Ok(all_failed(&batch, &e.reason)),
            }
        })
    }

    fn max_in_flight(&self) -> usize {
        JS_IN_FLIGHT
    }
}

/// Reads the trampoline's report: `[handledCount, id, error, id, error, ...]`.
fn outcome_of(flat: &[String], len: usize) -> Outcome {
    let handled = flat
        .first()
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(len)
        .min(len);
    let failures = flat
        .get(1..)
        .unwrap_or_default()
        .chunks(2)
        .map(|p| CallbackFailure {
            id: p[0].clone(),
            error: p.get(1).cloned().unwrap_or_default(),
        })
        .collect();
    Outcome { handled, failures }
}

fn all_failed(batch: &Batch, why: &str) -> Outcome {
    Outcome {
        handled: batch.entries.len(),
        failures: batch
            .entries
            .iter()
            .map(|e| CallbackFailure {
                id: e.id.to_string(),
                error: why.to_owned(),
            })
            .collect(),
    }
}
