//! How batches reach JavaScript callbacks: one delivery hub per client.
//!
//! Each subscription and consumer is a core [`Handler`] ([`JsHandler`]) that puts its batches
//! into the client's outbox. The first batch in an empty outbox wakes the JavaScript thread
//! (one ThreadsafeFunction per client), which hands everything queued by then to the hub of
//! `runtime/deliveries.js` in one call. A read that several subscriptions receive crosses into
//! JavaScript as JSON once and is parsed once: the hub keeps the parsed messages by the
//! read's sequence number until Rust no longer holds the read. Each subscription's
//! trampoline then calls its callback one message at a time and reports the ids that failed,
//! at once or as a Promise.
//!
//! The ThreadsafeFunction keeps Node alive only while loops are running (it is referenced
//! when the first starts and unreferenced when the last stops), and so does a reference to
//! the client object: a client with a running subscription is not garbage, one without is.
//! A subscription the core ends on its own ([`Handler::ended`]) has its loop stopped the same
//! way, through the outbox after its last batch.

use std::cell::RefCell;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Weak};

use futures_util::future::BoxFuture;
use napi::bindgen_prelude::*;
use napi::sys;
use tokio::sync::oneshot;

use super::runtime::Runtime;
use super::wake_queue::{WakeHandle, WakeQueue};
use super::wire::read_json;
use crate::handler::{
    Batch, CallbackFailure, HandleResult, Handler, HandlerGone, Outcome, Read, Report,
};

/// The failure report of a batch (`None`: every message handled, none failed).
type FailureReport = Option<Vec<String>>;

/// What a trampoline returned for a batch: the report, or a Promise of it.
enum TrampolineAnswer {
    Now(FailureReport),
    Later(Promise<FailureReport>),
}

/// What waits in the outbox, in the order it happened.
enum Outgoing {
    Batch(QueuedBatch),
    /// The core ended the loop `key` on its own ([`Handler::ended`]): stopped like an
    /// unsubscribe, so that a loop nothing will feed no longer keeps Node alive.
    Ended(u32),
}

/// One batch waiting in the outbox.
struct QueuedBatch {
    key: u32,
    batch: Batch,
    reply: Reply,
}

/// Where a batch's answer goes.
enum Reply {
    /// To the future [`Handler::handle`] returned (consumers: they acknowledge what it says).
    Future(oneshot::Sender<Result<TrampolineAnswer>>),
    /// Reported on the JavaScript thread ([`Handler::handle_then`]: subscriptions), or, for
    /// a Promise, by a task on `runtime` once it settles.
    Report {
        report: Box<dyn Report>,
        runtime: tokio::runtime::Handle,
    },
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
    /// The hub object of `runtime/deliveries.js`; `None` once [`Deliveries::release`] let it go.
    hub: Option<ValueRef>,
    /// Reads whose JSON JavaScript has (and keeps parsed), by sequence number; once Rust
    /// drops a read, the next hand-over tells JavaScript to forget it.
    sent: HashMap<u64, Weak<Read>>,
    /// Running loops.
    active: usize,
    /// The client object while loops run, so that it is not garbage meanwhile.
    keep: Option<ValueRef>,
    /// The outbox's wake-up: referenced while loops run.
    wake: Option<WakeHandle>,
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
    outbox: Arc<WakeQueue<Outgoing>>,
}

impl Deliveries {
    /// Creates the hub (`createDeliveries()` of `runtime/deliveries.js`) and its wake-up in `env`.
    pub fn new(env: &Env, runtime: &Runtime) -> Result<Self> {
        let hub = runtime.create_deliveries(env)?;
        let js = Rc::new(RefCell::new(JsSide {
            hub: Some(ValueRef::new(env, hub.raw())?),
            sent: HashMap::new(),
            active: 0,
            keep: None,
            wake: None,
        }));
        let side = js.clone();
        let (outbox, wake) = WakeQueue::new(env, "streamcastWake", move |env, items| {
            hand_over(env, &side, items)
        })?;
        js.borrow_mut().wake = Some(wake);
        Ok(Deliveries {
            js,
            outbox: Arc::new(outbox),
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
            if let Some(wake) = js.wake {
                wake.set_referenced(env, true)?;
            }
        }
        js.active += 1;
        Ok(JsHandler {
            key,
            outbox: self.outbox.clone(),
            runtime: super::client::in_runtime(tokio::runtime::Handle::current),
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
        stop_loop(env, &self.js, key)
    }
}

/// Stops the loop `key` (a second stop of one loop does nothing); when none runs any more,
/// Node no longer waits for this client.
fn stop_loop(env: &Env, side: &Rc<RefCell<JsSide>>, key: u32) -> Result<()> {
    let mut js = side.borrow_mut();
    let stop: Function<u32, bool> = js.hub(env)?.get_named_property("stop")?;
    // Its bookkeeping first: the stop hook of an iterator may start or stop other loops.
    let was_running = {
        drop(js);
        let r = stop.call(key)?;
        js = side.borrow_mut();
        r
    };
    if was_running && js.active > 0 {
        js.active -= 1;
        if js.active == 0 {
            if let Some(keep) = js.keep.take() {
                keep.delete(env)?;
            }
            if let Some(wake) = js.wake {
                wake.set_referenced(env, false)?;
            }
        }
    }
    Ok(())
}

/// Hands the queued batches to the hub, on the JavaScript thread, and routes each
/// trampoline's answer back to its handler. Never fails as a whole: a batch that cannot be
/// handed over is answered with its error, which its handler reports as failed deliveries.
/// Loops the core ended are stopped after the batches queued before their end.
fn hand_over(env: &Env, side: &Rc<RefCell<JsSide>>, queued: Vec<Outgoing>) {
    let mut items = Vec::with_capacity(queued.len());
    let mut ended = Vec::new();
    for q in queued {
        match q {
            Outgoing::Batch(b) => items.push(b),
            Outgoing::Ended(key) => ended.push(key),
        }
    }
    hand_over_batches(env, side, items);
    for key in ended {
        if let Err(e) = stop_loop(env, side, key) {
            tracing::warn!(error = %e.reason, "cannot stop the JavaScript loop of an ended subscription");
        }
    }
}

fn hand_over_batches(env: &Env, side: &Rc<RefCell<JsSide>>, items: Vec<QueuedBatch>) {
    if items.is_empty() {
        return;
    }
    let answers = dispatch(env, side, &items).unwrap_or_else(|e| {
        tracing::warn!(error = %e.reason, batches = items.len(), "cannot hand batches to JavaScript");
        items.iter().map(|_| Err(copy(&e))).collect()
    });
    for (item, answer) in items.into_iter().zip(answers) {
        match item.reply {
            Reply::Future(tx) => {
                let _ = tx.send(answer);
            }
            Reply::Report { report, runtime } => match answer {
                Ok(TrampolineAnswer::Now(failed)) => {
                    report.report(Ok(outcome(Ok(failed), &item.batch)))
                }
                Ok(TrampolineAnswer::Later(promise)) => {
                    let batch = item.batch;
                    runtime.spawn(async move {
                        report.report(Ok(outcome(promise.await, &batch)));
                    });
                }
                Err(e) => report.report(Ok(all_failed(&item.batch, &e.reason))),
            },
        }
    }
}

fn copy(e: &Error) -> Error {
    Error::new(e.status, e.reason.clone())
}

/// Calls the hub's `dispatch` with every item; one answer per item.
fn dispatch(
    env: &Env,
    side: &Rc<RefCell<JsSide>>,
    items: &[QueuedBatch],
) -> Result<Vec<Result<TrampolineAnswer>>> {
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

/// Reads a trampoline's return value on the JavaScript thread.
fn returned(v: Unknown) -> Result<TrampolineAnswer> {
    if v.is_promise()? {
        Ok(TrampolineAnswer::Later(unsafe {
            v.cast::<Promise<FailureReport>>()
        }?))
    } else {
        Ok(TrampolineAnswer::Now(unsafe { v.cast::<FailureReport>() }?))
    }
}

/// A subscription's or consumer's callback as a core [`Handler`].
pub struct JsHandler {
    key: u32,
    outbox: Arc<WakeQueue<Outgoing>>,
    /// Where a Promise's report is awaited.
    runtime: tokio::runtime::Handle,
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
        self.outbox.push(Outgoing::Batch(QueuedBatch {
            key: self.key,
            batch,
            reply: Reply::Future(tx),
        }));
        Box::pin(async move {
            let report = match rx.await {
                Ok(Ok(TrampolineAnswer::Now(report))) => Ok(report),
                Ok(Ok(TrampolineAnswer::Later(promise))) => promise.await,
                Ok(Err(e)) => return Ok(all_failed(&kept, &e.reason)),
                Err(_) => return Err(HandlerGone("the JavaScript environment is gone".into())),
            };
            Ok(outcome(report, &kept))
        })
    }

    fn handle_then(&self, batch: Batch, report: Box<dyn Report>) {
        // A report dropped unanswered (the environment went away with the batch queued)
        // tells the core that the handler is gone.
        self.outbox.push(Outgoing::Batch(QueuedBatch {
            key: self.key,
            batch,
            reply: Reply::Report {
                report,
                runtime: self.runtime.clone(),
            },
        }));
    }

    fn max_in_flight(&self) -> usize {
        JS_IN_FLIGHT
    }

    fn ended(&self) {
        self.outbox.push(Outgoing::Ended(self.key));
    }
}

/// The outcome of `batch` from the trampoline's report (or the error that stands for it).
fn outcome(report: Result<FailureReport>, batch: &Batch) -> Outcome {
    match report {
        Ok(None) => Outcome::all_ok(batch.len()),
        Ok(Some(flat)) => outcome_of(&flat, batch.len()),
        Err(e) => all_failed(batch, &e.reason),
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
