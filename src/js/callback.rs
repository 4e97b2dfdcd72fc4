//! JavaScript callbacks: the per-env helper functions (JSON with bigint, the batch
//! trampoline) and the `Handler` a subscription callback becomes.
//!
//! One ThreadsafeFunction call per XREAD batch: Rust sends the batch as one JSON array,
//! V8 parses it once, and a small JavaScript loop calls the user callback per message,
//! awaiting a returned Promise before the next one. The loop reports the ids whose callback
//! threw or rejected, and stops early once the subscription was cancelled.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use napi::bindgen_prelude::*;
use napi::threadsafe_function::ThreadsafeFunction;

use crate::codec::batch_json;
use crate::error::Error as CoreError;
use crate::handler::{Batch, CallbackFailure, HandleResult, Handler, HandlerGone, Outcome};

const HELPERS: &str = r#"(function () {
  const replacer = (k, x) => (typeof x === "bigint" ? x.toString() : x);
  const describe = (e) => {
    try { return e instanceof Error ? String(e.stack || e) : String(e); } catch { return "unprintable error"; }
  };
  return {
    stringify(v) {
      try {
        const s = JSON.stringify(v, replacer);
        return s === undefined ? "E" + typeof v + " cannot be represented as JSON" : "J" + s;
      } catch (e) {
        return "E" + (e && e.message ? e.message : String(e));
      }
    },
    subscriber(cb, concurrency) {
      let stopped = false;
      const deliver = async (json) => {
        const batch = JSON.parse(json);
        const failed = [];
        let i = 0;
        if (concurrency <= 1) {
          for (; i < batch.length && !stopped; i++) {
            const m = batch[i];
            try {
              const r = cb(m);
              if (r !== null && typeof r === "object" && typeof r.then === "function") await r;
            } catch (e) {
              failed.push(m.id, describe(e));
            }
          }
        } else {
          const running = new Set();
          const run = async (m) => {
            try { await cb(m); } catch (e) { failed.push(m.id, describe(e)); }
          };
          for (; i < batch.length && !stopped; i++) {
            const p = run(batch[i]).then(() => running.delete(p));
            running.add(p);
            if (running.size >= concurrency) await Promise.race(running);
          }
          await Promise.all(running);
        }
        return i === batch.length && failed.length === 0 ? null : [String(i), ...failed];
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
    stringify: FunctionRef<Unknown<'static>, String>,
    subscriber: FunctionRef<FnArgs<(Unknown<'static>, u32)>, Array<'static>>,
    logger: FunctionRef<Unknown<'static>, Unknown<'static>>,
}

impl Helpers {
    /// Compiles the helpers in `env`.
    pub fn compile(env: &Env) -> Result<Self> {
        let obj: Object = env.run_script(HELPERS)?;
        Ok(Helpers {
            stringify: obj
                .get_named_property::<Function<Unknown, String>>("stringify")?
                .create_ref()?,
            subscriber: obj
                .get_named_property::<Function<FnArgs<(Unknown, u32)>, Array>>("subscriber")?
                .create_ref()?,
            logger: obj
                .get_named_property::<Function<Unknown, Unknown>>("logger")?
                .create_ref()?,
        })
    }

    /// `JSON.stringify` with bigints as decimal strings.
    ///
    /// Returns the JSON text with a one-byte prefix (`J`) that the caller skips; see
    /// [`json_text`].
    pub fn stringify(
        &self,
        env: &Env,
        v: Unknown,
    ) -> Result<std::result::Result<String, CoreError>> {
        let out = self.stringify.borrow_back(env)?.call(v)?;
        if out.starts_with('J') {
            Ok(Ok(out))
        } else {
            Ok(Err(CoreError::invalid(
                "data",
                format!(
                    "cannot be serialized to JSON: {}",
                    out.get(1..).unwrap_or("")
                ),
            )))
        }
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

/// The JSON text inside a prefixed `stringify` result.
pub fn json_text(prefixed: &str) -> &str {
    prefixed.get(1..).unwrap_or("")
}

type DeliverFn = ThreadsafeFunction<String, Promise<Option<Vec<String>>>, String, Status, false>;

/// The trampoline's `deliver(batchJson)`: resolves to `null` or the failure report.
pub type Deliver<'e> = Function<'e, String, Promise<Option<Vec<String>>>>;
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

impl Handler for JsHandler {
    fn handle(&self, batch: Batch) -> BoxFuture<'static, HandleResult> {
        let tsfn = self.tsfn.clone();
        Box::pin(async move {
            let json = batch_json(&batch.stream, &batch.entries);
            let promise = match tsfn.call_async_catch(json).await {
                Ok(p) => p,
                Err(e) if e.status == Status::Closing || tsfn.aborted() => {
                    return Err(HandlerGone(e.reason.clone()))
                }
                Err(e) => return Ok(all_failed(&batch, &e.reason)),
            };
            match promise.await {
                Ok(None) => Ok(Outcome::all_ok(batch.entries.len())),
                Ok(Some(flat)) => Ok(outcome_of(&flat, batch.entries.len())),
                Err(e) if tsfn.aborted() => Err(HandlerGone(e.reason.clone())),
                Err(e) => Ok(all_failed(&batch, &e.reason)),
            }
        })
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
