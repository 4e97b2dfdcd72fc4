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
use std::sync::{Arc, Mutex};

use super::error::error_value;
use crate::codec::StreamId;
use crate::error::{Error as CoreError, Result as CoreResult};
use napi::bindgen_prelude::*;
use napi::sys;
use napi::threadsafe_function::{
    ThreadsafeCallContext, ThreadsafeFunction, ThreadsafeFunctionCallMode,
};

/// What a settled publish promise resolves to.
pub enum Settled {
    /// `publishMessage`: the id, or `null`.
    Id(Option<StreamId>),
    /// `publishBatch`: one id (or `null`) per item.
    Ids(Vec<Option<StreamId>>),
}

type Done = (u64, CoreResult<Settled>);
type Queue = Arc<Mutex<Vec<Done>>>;

/// Wakes the JavaScript thread to settle what is queued.
type Wake = ThreadsafeFunction<(), (), (), Status, false, true>;

/// The part the core's threads share: the queue of results and the wake-up.
struct Shared {
    done: Queue,
    wake: Wake,
}

impl Shared {
    fn push(&self, seq: u64, r: CoreResult<Settled>) {
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        let first = done.is_empty();
        done.push((seq, r));
        drop(done);
        if first {
            // Fails only while the environment is being torn down; the promises go with it.
            let _ = self.wake.call((), ThreadsafeFunctionCallMode::NonBlocking);
        }
    }
}

/// The deferreds waiting for a result; touched only on the JavaScript thread.
struct Waiting {
    next: u64,
    deferreds: HashMap<u64, sys::napi_deferred>,
    /// The wake-up's handle, for (un)referencing it; owned by [`Shared`].
    wake: sys::napi_threadsafe_function,
}

/// The publish promises of one client.
pub struct Promises {
    waiting: Rc<RefCell<Waiting>>,
    shared: Arc<Shared>,
}

/// Hands one result to [`Promises`] from any thread.
pub struct Resolver {
    seq: u64,
    shared: Arc<Shared>,
}

impl Resolver {
    /// Queues the result; the promise settles on the JavaScript thread.
    pub fn resolve(self, r: CoreResult<Settled>) {
        self.shared.push(self.seq, r);
    }
}

impl Promises {
    /// Creates the queue and its ThreadsafeFunction in `env`.
    pub fn new(env: &Env) -> Result<Self> {
        let waiting = Rc::new(RefCell::new(Waiting {
            next: 0,
            deferreds: HashMap::new(),
            wake: std::ptr::null_mut(),
        }));
        let done: Queue = Arc::default();
        let noop: Function<(), ()> = env.run_script("(function () {})")?;
        let (w, q) = (waiting.clone(), done.clone());
        let wake: Wake = noop
            .build_threadsafe_function()
            .callee_handled::<false>()
            .weak::<true>()
            .build_callback(move |ctx: ThreadsafeCallContext<()>| {
                // An Err returned here would be a fatal exception (the process exits), and a
                // panic would abort it: each failure is logged where it happens instead.
                let settled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    settle_all(&ctx.env, &w, &q)
                }));
                if settled.is_err() {
                    tracing::error!("settling publish promises panicked");
                }
                Ok(())
            })?;
        waiting.borrow_mut().wake = wake.raw();
        Ok(Promises {
            waiting,
            shared: Arc::new(Shared { done, wake }),
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
            shared: self.shared.clone(),
        };
        if let Err(e) = queue(resolver) {
            return Ok(Err(e));
        }
        // The result cannot be settled before this returns: settling runs on this thread.
        let mut deferred = std::ptr::null_mut();
        let mut promise = std::ptr::null_mut();
        check_status!(unsafe { sys::napi_create_promise(env.raw(), &mut deferred, &mut promise) })?;
        let mut w = self.waiting.borrow_mut();
        if w.deferreds.is_empty() && !self.shared.wake.aborted() {
            check_status!(unsafe { sys::napi_ref_threadsafe_function(env.raw(), w.wake) })?;
        }
        w.deferreds.insert(seq, deferred);
        Ok(Ok(PromiseRaw::new(env.raw(), promise)))
    }
}

/// Settles every queued result, in arrival order; unreferences the wake-up when nothing
/// waits any more. One failure (say, a string Node refuses to create) is logged and does not
/// strand the others.
fn settle_all(env: &Env, waiting: &RefCell<Waiting>, queue: &Queue) {
    let done = std::mem::take(&mut *queue.lock().unwrap_or_else(|p| p.into_inner()));
    for (seq, r) in done {
        let Some(deferred) = waiting.borrow_mut().deferreds.remove(&seq) else {
            continue;
        };
        if let Err(e) = settle_one(env, deferred, r) {
            tracing::warn!(error = %e.reason, "cannot settle a publish promise");
        }
    }
    let w = waiting.borrow();
    if w.deferreds.is_empty() {
        let status = unsafe { sys::napi_unref_threadsafe_function(env.raw(), w.wake) };
        if status != sys::Status::napi_ok {
            tracing::warn!(status, "cannot unreference the publish wake-up");
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
