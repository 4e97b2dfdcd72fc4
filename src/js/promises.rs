//! Publish promises, settled in batches.
//!
//! `spawn_future_with_callback` costs a ThreadsafeFunction per promise (created, called
//! once, torn down: an env cleanup hook, a uv handle and a wake-up of the JavaScript thread
//! each time). Publishing is the hot path, so its promises are plain `napi_create_promise`
//! deferreds kept on the JavaScript thread. The core reports results from its own threads
//! into a queue; the first result in an empty queue wakes the JavaScript thread through
//! one ThreadsafeFunction per client, which then settles everything queued by then (a
//! whole pipeline's replies per wake-up, in the order they arrived).
//!
//! The ThreadsafeFunction keeps Node alive only while promises are waiting: it is
//! referenced when the first one is created and unreferenced when the last one settles.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use super::error::error_value;
use super::wake_queue::{WakeHandle, WakeQueue};
use crate::codec::StreamId;
use crate::error::{Error as CoreError, Result as CoreResult};
use napi::bindgen_prelude::*;
use napi::sys;

/// What a settled publish promise resolves to.
pub enum Settled {
    /// `publishMessage`: the id, or `null`.
    Id(Option<StreamId>),
    /// `publishBatch`: one id (or `null`) per item.
    Ids(Vec<Option<StreamId>>),
}

type PublishResult = (u64, CoreResult<Settled>);

/// The deferreds waiting for a result; touched only on the JavaScript thread.
struct PendingPromises {
    next: u64,
    deferreds: HashMap<u64, sys::napi_deferred>,
    /// The wake-up of the results queue: referenced while promises wait.
    wake: Option<WakeHandle>,
}

/// The publish promises of one client.
pub struct Promises {
    waiting: Rc<RefCell<PendingPromises>>,
    results: Arc<WakeQueue<PublishResult>>,
}

/// Hands one result to [`Promises`] from any thread.
pub struct Resolver {
    seq: u64,
    results: Arc<WakeQueue<PublishResult>>,
}

impl Resolver {
    /// Queues the result; the promise settles on the JavaScript thread.
    pub fn resolve(self, r: CoreResult<Settled>) {
        self.results.push((self.seq, r));
    }
}

impl Promises {
    /// Creates the queue and its ThreadsafeFunction in `env`.
    pub fn new(env: &Env) -> Result<Self> {
        let waiting = Rc::new(RefCell::new(PendingPromises {
            next: 0,
            deferreds: HashMap::new(),
            wake: None,
        }));
        let w = waiting.clone();
        let (results, wake) = WakeQueue::new(env, "streamcastSettle", move |env, done| {
            settle_all(env, &w, done)
        })?;
        waiting.borrow_mut().wake = Some(wake);
        Ok(Promises {
            waiting,
            results: Arc::new(results),
        })
    }

    /// Runs `queue` with the resolver of a new promise and returns that promise; when
    /// `queue` fails (it then drops the resolver unused), the error instead.
    pub fn start<'e, T>(
        &self,
        env: &'e Env,
        queue: impl FnOnce(Resolver) -> CoreResult<()>,
    ) -> Result<CoreResult<PromiseRaw<'e, T>>> {
        let seq = {
            let mut w = self.waiting.borrow_mut();
            w.next += 1;
            w.next
        };
        let resolver = Resolver {
            seq,
            results: self.results.clone(),
        };
        if let Err(e) = queue(resolver) {
            return Ok(Err(e));
        }
        // The result cannot be settled before this returns: settling runs on this thread.
        let mut deferred = std::ptr::null_mut();
        let mut promise = std::ptr::null_mut();
        check_status!(unsafe { sys::napi_create_promise(env.raw(), &mut deferred, &mut promise) })?;
        let mut w = self.waiting.borrow_mut();
        if let (true, Some(wake)) = (w.deferreds.is_empty() && !self.results.aborted(), w.wake) {
            wake.set_referenced(env, true)?;
        }
        w.deferreds.insert(seq, deferred);
        Ok(Ok(PromiseRaw::new(env.raw(), promise)))
    }
}

/// Settles every queued result, in arrival order; unreferences the wake-up when nothing
/// waits any more. One failure (say, a string Node refuses to create) is logged and does not
/// strand the others.
fn settle_all(env: &Env, waiting: &RefCell<PendingPromises>, done: Vec<PublishResult>) {
    for (seq, r) in done {
        let Some(deferred) = waiting.borrow_mut().deferreds.remove(&seq) else {
            continue;
        };
        if let Err(e) = settle_one(env, deferred, r) {
            tracing::warn!(error = %e.reason, "cannot settle a publish promise");
        }
    }
    let w = waiting.borrow();
    if let (true, Some(wake)) = (w.deferreds.is_empty(), w.wake) {
        if let Err(e) = wake.set_referenced(env, false) {
            tracing::warn!(error = %e, "cannot unreference the publish wake-up");
        }
    }
}

fn settle_one(env: &Env, deferred: sys::napi_deferred, r: CoreResult<Settled>) -> Result<()> {
    let value = match r {
        Ok(Settled::Id(id)) => unsafe {
            ToNapiValue::to_napi_value(env.raw(), id.map(|i| i.to_string()))
        },
        Ok(Settled::Ids(ids)) => unsafe {
            ToNapiValue::to_napi_value(
                env.raw(),
                ids.into_iter()
                    .map(|i| i.map(|i| i.to_string()))
                    .collect::<Vec<_>>(),
            )
        },
        Err(e) => {
            let reason = error_value(env, &e);
            return check_status!(unsafe {
                sys::napi_reject_deferred(env.raw(), deferred, reason)
            });
        }
    };
    match value {
        Ok(v) => check_status!(unsafe { sys::napi_resolve_deferred(env.raw(), deferred, v) }),
        Err(e) => {
            let reason = error_value(env, &CoreError::Protocol(e.reason.clone()));
            check_status!(unsafe { sys::napi_reject_deferred(env.raw(), deferred, reason) })?;
            Err(e)
        }
    }
}
