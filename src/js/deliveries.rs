//! How batches reach JavaScript callbacks: one delivery hub per client.
//!
//! Each subscription and consumer is a core [`Handler`] ([`JsHandler`]) that puts its batches
//! into the client's outbox. The first batch in an empty outbox wakes the JavaScript thread
//! (one ThreadsafeFunction per client), which hands everything queued by then to the hub of
//! `runtime.js` in one call. A read that several subscriptions receive crosses into
//! JavaScript as JSON once and is parsed once: the hub keeps the parsed messages by the
//! read's sequence number until Rust no longer holds the read. Each subscription's
//! trampoline then calls its callback one message at a time and reports the ids that failed,
//! at once or as a Promise.
//!
//! The ThreadsafeFunction keeps Node alive only while loops are running (it is referenced
//! when the first starts and unreferenced when the last stops), and so does a reference to
//! the client object: a client with a running subscription is not garbage, one without is.

use std::cell::RefCell;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::ops::Range;
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use futures_util::future::BoxFuture;
use napi::bindgen_prelude::*;
use napi::sys;
use napi::threadsafe_function::{
    ThreadsafeCallContext, ThreadsafeFunction, ThreadsafeFunctionCallMode,
};
use tokio::sync::oneshot;

use super::runtime::Runtime;
use crate::codec::batch_json;
use crate::handler::{Batch, CallbackFailure, HandleResult, Handler, HandlerGone, Outcome, Read};

/// The failure report of a batch (`None`: every message handled, none failed).
type Report = Option<Vec<String>>;

/// What a trampoline returned for a batch: the report, or a Promise of it.
enum Returned {
    Now(Report),
    Later(Promise<Report>),
}

/// One batch waiting in the outbox.
struct Item {
    key: u32,
    batch: Batch,
    reply: oneshot::Sender<Result<Returned>>,
}

type Queue = Arc<Mutex<Vec<Item>>>;

fn lock(q: &Queue) -> MutexGuard<'_, Vec<Item>> {
    q.lock().unwrap_or_else(|p| p.into_inner())
}

/// Wakes the JavaScript thread to hand over what is queued.
type Wake = ThreadsafeFunction<(), (), (), Status, false, true>;

/// The part the runtime threads share: queued batches and the wake-up.
pub struct Outbox {
    queue: Queue,
    wake: Wake,
}

impl Outbox {
    fn push(&self, item: Item) {
        let first = {
            let mut q = lock(&self.queue);
            q.push(item);
            q.len() == 1
        };
        if first && self.wake.call((), ThreadsafeFunctionCallMode::NonBlocking) != Status::Ok {
            // The environment is going away: the dropped replies tell each handler so.
            lock(&self.queue).clear();
        }
    }
}

/// A strong reference to a JavaScript value.
struct ValueRef(sys::napi_ref);

impl ValueRef {
    fn new(env: &Env, value: sys::napi_value) -> Result<Self> {
        let mut r = std::ptr::null_mut();
        check_status!(unsafe { sys::napi_create_reference(env.raw(), value, 1, &mut r) })?;
        Ok(ValueRef(r))
    }

    fn value(&self, env: &Env) -> Result<sys::napi_value> {
        let mut v = std::ptr::null_mut();
        check_status!(unsafe { sys::napi_get_reference_value(env.raw(), self.0, &mut v) })?;
        Ok(v)
    }

    fn delete(self, env: &Env) -> Result<()> {
        check_status!(unsafe { sys::napi_delete_reference(env.raw(), self.0) })
    }
}

/// State touched only on the JavaScript thread.
struct JsSide {
    /// The hub object of `runtime.js`; `None` once [`Deliveries::release`] let it go.
    hub: Option<ValueRef>,
    /// Reads whose JSON JavaScript has (and keeps parsed), by sequence number; once Rust
    /// drops a read, the next hand-over tells JavaScript to forget it.
    sent: HashMap<u64, Weak<Read>>,
    /// Running loops.
    active: usize,
    /// The client object while loops run, so that it is not garbage meanwhile.
    keep: Option<ValueRef>,
    wake: sys::napi_threadsafe_function,
}

impl JsSide {
    fn hub<'e>(&self, env: &'e Env) -> Result<Object<'e>> {
        let hub = self.hub.as_ref().ok_or_else(|| {
            Error::from_reason("streamcast: the client's delivery hub is released")
        })?;
        let v = hub.value(env)?;
        unsafe { Object::from_napi_value(env.raw(), v) }
    }
}

/// The delivery hub of one client.
pub struct Deliveries {
    js: Rc<RefCell<JsSide>>,
    outbox: Arc<Outbox>,
}

impl Deliveries {
    /// Creates the hub (`createDeliveries()` of `runtime.js`) and its wake-up in `env`.
    pub fn new(env: &Env, runtime: &Runtime) -> Result<Self> {
        let hub = runtime.create_deliveries(env)?;
        let js = Rc::new(RefCell::new(JsSide {
            hub: Some(ValueRef::new(env, hub.raw())?),
            sent: HashMap::new(),
            active: 0,
            keep: None,
            wake: std::ptr::null_mut(),
        }));
        let queue: Queue = Arc::default();
        let noop: Function<(), ()> = env.run_script("(function streamcastWake() {})")?;
        let (side, q) = (js.clone(), queue.clone());
        let wake: Wake = noop
            .build_threadsafe_function()
            .callee_handled::<false>()
            .weak::<true>()
            .build_callback(move |ctx: ThreadsafeCallContext<()>| {
                // An Err returned here would be a fatal exception (the process exits), and a
                // panic would abort it: failures are answered per item instead.
                let items = std::mem::take(&mut *lock(&q));
                let handed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    hand_over(&ctx.env, &side, items)
                }));
                if handed.is_err() {
                    tracing::error!("handing batches to JavaScript panicked; they are dropped");
                }
                Ok(())
            })?;
        js.borrow_mut().wake = wake.raw();
        Ok(Deliveries {
            js,
            outbox: Arc::new(Outbox { queue, wake }),
        })
    }

    /// Starts a loop calling `callback` (up to `concurrency` at once) under `key`; while any
    /// loop runs, Node stays alive and `client` (the JavaScript object) is not garbage.
    pub fn add(
        &self,
        env: &Env,
        client: sys::napi_value,
        key: u32,
        callback: Unknown,
        concurrency: u32,
    ) -> Result<JsHandler> {
        let mut js = self.js.borrow_mut();
        let add: Function<FnArgs<(u32, Unknown, u32)>, ()> =
            js.hub(env)?.get_named_property("add")?;
        add.call(FnArgs::from((key, callback, concurrency)))?;
        if js.active == 0 {
            js.keep = Some(ValueRef::new(env, client)?);
            check_status!(unsafe { sys::napi_ref_threadsafe_function(env.raw(), js.wake) })?;
        }
        js.active += 1;
        Ok(JsHandler {
            key,
            outbox: self.outbox.clone(),
        })
    }

    /// Lets go of the hub (and with it the reads it keeps parsed) and of the client object;
    /// for the client's finalizer. A reference left undeleted keeps its value alive for as
    /// long as the environment lives.
    pub fn release(&self, env: &Env) -> Result<()> {
        let mut js = self.js.borrow_mut();
        let refs = [js.hub.take(), js.keep.take()];
        let deleted: Vec<Result<()>> = refs.into_iter().flatten().map(|r| r.delete(env)).collect();
        deleted.into_iter().collect()
    }

    /// Stops the loop `key`: no callback of it starts afterwards (one running finishes).
    pub fn stop(&self, env: &Env, key: u32) -> Result<()> {
        let mut js = self.js.borrow_mut();
        let stop: Function<u32, bool> = js.hub(env)?.get_named_property("stop")?;
        // Its bookkeeping first: the stop hook of an iterator may start or stop other loops.
        let was_running = {
            drop(js);
            let r = stop.call(key)?;
            js = self.js.borrow_mut();
            r
        };
        if was_running && js.active > 0 {
            js.active -= 1;
            if js.active == 0 {
                if let Some(keep) = js.keep.take() {
                    keep.delete(env)?;
                }
                check_status!(unsafe { sys::napi_unref_threadsafe_function(env.raw(), js.wake) })?;
            }
        }
        Ok(())
    }
}

/// The longest JSON text handed to JavaScript as one string. V8 refuses a string over 2^29 - 24
/// characters (bytes of UTF-8, as Node-API checks it); a read whose JSON is longer than this
/// crosses in parts of about this size.
const MAX_JSON_PART: usize = 64 << 20;

/// Hands the queued batches to the hub, on the JavaScript thread, and routes each
/// trampoline's answer back to its handler. Never fails as a whole: a batch that cannot be
/// handed over is answered with its error, which its handler reports as failed deliveries.
fn hand_over(env: &Env, side: &Rc<RefCell<JsSide>>, items: Vec<Item>) {
    if items.is_empty() {
        return;
    }
    let answers = dispatch(env, side, &items).unwrap_or_else(|e| {
        tracing::warn!(error = %e.reason, batches = items.len(), "cannot hand batches to JavaScript");
        items.iter().map(|_| Err(copy(&e))).collect()
    });
    for (item, answer) in items.into_iter().zip(answers) {
        let _ = item.reply.send(answer);
    }
}

fn copy(e: &Error) -> Error {
    Error::new(e.status, e.reason.clone())
}

/// Calls the hub's `dispatch` with every item; one answer per item.
fn dispatch(
    env: &Env,
    side: &Rc<RefCell<JsSide>>,
    items: &[Item],
) -> Result<Vec<Result<Returned>>> {
    let (dispatch, released, flat) = {
        let mut js = side.borrow_mut();
        let mut released = Vec::new();
        js.sent.retain(|seq, read| {
            let alive = read.strong_count() > 0;
            if !alive {
                released.push(*seq as f64);
            }
            alive
        });
        let mut flat = env.create_array((items.len() * 4) as u32)?;
        for (i, item) in items.iter().enumerate() {
            let read = item.batch.read();
            let at = (i * 4) as u32;
            flat.set(at, item.key)?;
            flat.set(at + 1, read.seq as f64)?;
            match js.sent.entry(read.seq) {
                Entry::Occupied(_) => flat.set(at + 2, Null)?,
                Entry::Vacant(slot) => {
                    flat.set(at + 2, read_json(env, read)?)?;
                    slot.insert(Arc::downgrade(read));
                }
            }
            flat.set(at + 3, item.batch.offset() as u32)?;
        }
        let dispatch: Function<FnArgs<(Vec<f64>, Array)>, Array> =
            js.hub(env)?.get_named_property("dispatch")?;
        (dispatch, released, flat)
    };
    let results = match dispatch.call(FnArgs::from((released, flat))) {
        Ok(r) => r,
        Err(e) => return Ok(items.iter().map(|_| Err(copy(&e))).collect()),
    };
    Ok((0..items.len())
        .map(|i| {
            results
                .get::<Unknown>(i as u32)
                .and_then(|v| v.ok_or_else(|| Error::from_reason("the hub returned no report")))
                .and_then(returned)
        })
        .collect())
}

/// A read's entries as the hub takes them: one JSON text, or for a read longer than
/// [`MAX_JSON_PART`] an array of parts in entry order, each a JSON text or, for entries that
/// could not become a string, `[reason, id, id, ...]` (the hub reports those as failed).
fn read_json<'e>(env: &'e Env, read: &Read) -> Result<Unknown<'e>> {
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
fn json_parts(
    stream: &str,
    entries: &[crate::codec::Entry],
    max: usize,
) -> Vec<(Range<usize>, String)> {
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

/// Reads a trampoline's return value on the JavaScript thread.
fn returned(v: Unknown) -> Result<Returned> {
    if v.is_promise()? {
        Ok(Returned::Later(unsafe { v.cast::<Promise<Report>>() }?))
    } else {
        Ok(Returned::Now(unsafe { v.cast::<Report>() }?))
    }
}

/// A subscription's or consumer's callback as a core [`Handler`].
pub struct JsHandler {
    key: u32,
    outbox: Arc<Outbox>,
}

/// Batches of one subscription handed to JavaScript before the first one finished; the
/// trampoline queues them and runs them one after another.
const JS_IN_FLIGHT: usize = 4;

impl Handler for JsHandler {
    fn handle(&self, batch: Batch) -> BoxFuture<'static, HandleResult> {
        // Queued now, not when the future is first polled: the order of calls is the order
        // in which the trampoline runs the batches.
        let (tx, rx) = oneshot::channel();
        // Kept for the rare report that every message failed; holding it also keeps the
        // read cached in JavaScript until this batch is done, which costs nothing extra.
        let kept = batch.clone();
        self.outbox.push(Item {
            key: self.key,
            batch,
            reply: tx,
        });
        Box::pin(async move {
            let report = match rx.await {
                Ok(Ok(Returned::Now(report))) => Ok(report),
                Ok(Ok(Returned::Later(promise))) => promise.await,
                Ok(Err(e)) => return Ok(all_failed(&kept, &e.reason)),
                Err(_) => return Err(HandlerGone("the JavaScript environment is gone".into())),
            };
            match report {
                Ok(None) => Ok(Outcome::all_ok(kept.len())),
                Ok(Some(flat)) => Ok(outcome_of(&flat, kept.len())),
                Err(e) => Ok(all_failed(&kept, &e.reason)),
            }
        })
    }

    fn max_in_flight(&self) -> usize {
        JS_IN_FLIGHT
    }
}

fn all_failed(batch: &Batch, why: &str) -> Outcome {
    Outcome {
        handled: batch.len(),
        failures: batch
            .entries()
            .iter()
            .map(|e| CallbackFailure {
                id: e.id.to_string(),
                error: why.to_owned(),
            })
            .collect(),
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
