//! A queue filled from any thread and drained on the JavaScript thread, the pattern of both
//! the delivery hub and the publish promises.
//!
//! A ThreadsafeFunction call per item would cost a wake-up of the JavaScript thread per item.
//! Instead the first item pushed into an empty queue wakes it (one call of a weak
//! ThreadsafeFunction), and the drain then takes everything queued by then: a whole reply's
//! worth per wake-up.

use std::sync::{Arc, Mutex, MutexGuard};

use napi::bindgen_prelude::*;
use napi::sys;
use napi::threadsafe_function::{
    ThreadsafeCallContext, ThreadsafeFunction, ThreadsafeFunctionCallMode,
};

type Wake = ThreadsafeFunction<(), (), (), Status, false, true>;

/// The sending side: `Send` and `Sync`, shared by the threads that push.
pub struct WakeQueue<T> {
    items: Arc<Mutex<Vec<T>>>,
    wake: Wake,
}

/// The wake-up's handle, for (un)referencing it on the JavaScript thread: while referenced it
/// keeps Node alive. Owned by its [`WakeQueue`]; valid while that lives.
#[derive(Clone, Copy)]
pub struct WakeHandle(sys::napi_threadsafe_function);

fn lock<T>(items: &Mutex<Vec<T>>) -> MutexGuard<'_, Vec<T>> {
    items.lock().unwrap_or_else(|p| p.into_inner())
}

impl<T: Send + 'static> WakeQueue<T> {
    /// Creates the queue in `env`; `drain` runs on the JavaScript thread with the items
    /// queued, in push order. It cannot fail: an `Err` from a ThreadsafeFunction callback is a
    /// fatal exception (the process exits), so each item's failure is `drain`'s to answer; a
    /// panic in it is caught and logged (the items are dropped, which their senders see).
    pub fn new(
        env: &Env,
        name: &str,
        mut drain: impl FnMut(&Env, Vec<T>) + 'static,
    ) -> Result<(Self, WakeHandle)> {
        let items: Arc<Mutex<Vec<T>>> = Arc::default();
        // A named no-op: the name shows in profiles.
        let noop: Function<(), ()> = env.run_script(format!("(function {name}() {{}})"))?;
        let queued = items.clone();
        let label = name.to_owned();
        let wake: Wake = noop
            .build_threadsafe_function()
            .callee_handled::<false>()
            .weak::<true>()
            .build_callback(move |ctx: ThreadsafeCallContext<()>| {
                let taken = std::mem::take(&mut *lock(&queued));
                if taken.is_empty() {
                    return Ok(());
                }
                let drained = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    drain(&ctx.env, taken)
                }));
                if drained.is_err() {
                    tracing::error!(queue = %label, "draining into JavaScript panicked; the items are dropped");
                }
                Ok(())
            })?;
        let handle = WakeHandle(wake.raw());
        Ok((WakeQueue { items, wake }, handle))
    }

    /// Queues `item`, waking the JavaScript thread if the queue was empty. When the
    /// environment is going away, everything queued is dropped (which the items' receivers
    /// see as a closed channel), also the items behind an accepted wake-up that will never
    /// run, once anything is pushed after the environment went. (Items pushed before that,
    /// with no push after, stay until the queue is dropped.)
    pub fn push(&self, item: T) {
        let first = {
            let mut q = lock(&self.items);
            q.push(item);
            q.len() == 1
        };
        let closed = if first {
            self.wake.call((), ThreadsafeFunctionCallMode::NonBlocking) != Status::Ok
        } else {
            self.wake.aborted()
        };
        if closed {
            // Dropped outside the lock: an item's drop runs report code.
            let dropped = std::mem::take(&mut *lock(&self.items));
            drop(dropped);
        }
    }

    /// Whether the environment is gone (the wake-up can no longer be referenced).
    pub fn aborted(&self) -> bool {
        self.wake.aborted()
    }
}

impl WakeHandle {
    /// References (`true`: keeps Node alive) or unreferences the wake-up; JavaScript thread
    /// only.
    pub fn set_referenced(self, env: &Env, referenced: bool) -> Result<()> {
        let status = unsafe {
            if referenced {
                sys::napi_ref_threadsafe_function(env.raw(), self.0)
            } else {
                sys::napi_unref_threadsafe_function(env.raw(), self.0)
            }
        };
        check_status!(status)
    }
}
