//! The `StreamsClient` and `Subscription` classes: convert arguments, call the core,
//! convert results.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::deliveries::Deliveries;
use super::env_data;
use super::error::{settle, to_js};
use super::logging;
use super::promises::{Promises, Settled};
use super::types::{
    opt_object_arg, opt_string_arg, string_arg, ConsumeOptions, PublishOptions,
    StreamsClientConfig, SubscribeOptions as JsSubscribeOptions, TrimOptions,
};
use crate::client::Client;
use crate::codec::{check_stream_name, PublishId, StartId, StreamId};
use crate::config::Config;
use crate::error::{Error as CoreError, Result as CoreResult};
use crate::group::{self, ConsumeOptions as CoreConsumeOptions};
use crate::subscribe::{SubscribeOptions, SubscriptionId};
use crate::trim::Trim;

/// What a JavaScript delivery loop belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owner {
    /// A subscription: its stream and its id in the core.
    Subscription(String, SubscriptionId),
    /// A consumer, `stream:group:consumer`.
    Consumer(String),
}

/// The binding's state shared by a client and its `Subscription` handles (JavaScript thread
/// only).
struct Binding {
    inner: Arc<Client>,
    /// The running JavaScript delivery loops, by key.
    loops: RefCell<HashMap<u32, Owner>>,
    next_key: RefCell<u32>,
    /// Created with the first loop.
    deliveries: RefCell<Option<Deliveries>>,
}

impl Binding {
    /// The delivery hub, created on first use.
    fn deliveries<'a>(&'a self, env: &Env) -> Result<std::cell::Ref<'a, Deliveries>> {
        if self.deliveries.borrow().is_none() {
            let d = Deliveries::new(env, &env_data(env)?.runtime)?;
            *self.deliveries.borrow_mut() = Some(d);
        }
        Ok(std::cell::Ref::map(self.deliveries.borrow(), |d| {
            d.as_ref().expect("created above")
        }))
    }

    fn new_key(&self) -> u32 {
        let mut k = self.next_key.borrow_mut();
        *k = k.wrapping_add(1);
        *k
    }

    /// Stops the loops `which` selects: no callback starts in them afterwards.
    fn stop_loops(&self, env: &Env, which: impl Fn(&Owner) -> bool) -> Result<()> {
        let keys: Vec<u32> = self
            .loops
            .borrow()
            .iter()
            .filter(|(_, o)| which(o))
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            self.stop_key(env, key)?;
        }
        Ok(())
    }

    fn stop_key(&self, env: &Env, key: u32) -> Result<()> {
        if self.loops.borrow_mut().remove(&key).is_none() {
            return Ok(());
        }
        match self.deliveries.borrow().as_ref() {
            Some(d) => d.stop(env, key),
            None => Ok(()),
        }
    }
}

/// A Redis Streams client: publish, broadcast subscriptions, consumer groups, status.
///
/// Use `getStreamsClient()` for the process-wide instance, or `new StreamsClient()` for an
/// independent one (tests, several Redis servers). It connects on its first call; a client
/// that becomes garbage without `disconnect()` closes its connections.
#[napi(custom_finalize)]
pub struct StreamsClient {
    b: Rc<Binding>,
    /// The publish promises, settled in batches.
    promises: Promises,
    /// Where the finalizer starts the closing `disconnect()`.
    runtime: tokio::runtime::Handle,
}

impl ObjectFinalize for StreamsClient {
    fn finalize(self, env: Env) -> Result<()> {
        if let Some(d) = self.b.deliveries.borrow_mut().take() {
            if let Err(e) = d.release(&env) {
                tracing::warn!(error = %e, "cannot release the delivery hub of a collected client");
            }
        }
        let inner = self.b.inner.clone();
        if !inner.is_closed() {
            // Also runs while Node exits, when the runtime may be shut down already: then
            // the task is dropped, and the process takes the connections with it.
            self.runtime.spawn(async move {
                tracing::debug!(
                    "a StreamsClient became garbage without disconnect(); closing its connections"
                );
                inner.disconnect().await;
            });
        }
        Ok(())
    }
}

/// Runs `fut` on the runtime and settles a Promise with its result; errors carry `code`.
fn promise<'e, T, F>(env: &'e Env, fut: F) -> Result<PromiseRaw<'e, T>>
where
    T: ToNapiValue + Send + 'static,
    F: Future<Output = CoreResult<T>> + Send + 'static,
{
    env.spawn_future_with_callback(async move { Ok(fut.await) }, |env, r| settle(env, r))
}

fn rejected<'e, T: ToNapiValue>(env: &'e Env, e: CoreError) -> Result<PromiseRaw<'e, T>> {
    env.spawn_future_with_callback(async { Ok(()) }, move |env, ()| Err(to_js(env, &e)))
}

/// Runs a core call that may start tasks (a client connects on its first call).
fn in_runtime<T>(f: impl FnOnce() -> T) -> T {
    napi::bindgen_prelude::within_runtime_if_available(f)
}

impl StreamsClient {
    /// Creates a client from an already-read config object.
    pub fn create(env: &Env, input: StreamsClientConfig) -> Result<Self> {
        let config = settle(env, Config::from_input(input.into()))?;
        logging::init();
        if let Some(level) = &config.log_level {
            logging::set_level(level);
        }
        Ok(StreamsClient {
            b: Rc::new(Binding {
                inner: Arc::new(Client::new(config)),
                loops: RefCell::new(HashMap::new()),
                next_key: RefCell::new(0),
                deliveries: RefCell::new(None),
            }),
            promises: Promises::new(env)?,
            runtime: in_runtime(tokio::runtime::Handle::current),
        })
    }
}

fn is_callback(v: &Unknown) -> CoreResult<()> {
    if v.get_type().ok() != Some(ValueType::Function) {
        return Err(CoreError::invalid("callback", "expected a function"));
    }
    Ok(())
}

#[napi]
impl StreamsClient {
    /// Creates an independent client; it connects on its first call (or `connect()`).
    ///
    /// Throws `ERR_INVALID_ARG` naming the field when the config is invalid.
    #[napi(
        constructor,
        catch_unwind,
        ts_args_type = "config?: StreamsClientConfig | null"
    )]
    pub fn new(env: Env, config: Option<Unknown>) -> Result<Self> {
        let input = settle(
            &env,
            opt_object_arg::<StreamsClientConfig>(config, "config"),
        )?;
        Self::create(&env, input)
    }

    /// Connects to Redis; resolves once a connection works. Optional: a client connects on
    /// its first call by itself; call it to wait for Redis at start-up, or to use a client
    /// again after `disconnect()`.
    ///
    /// Rejects with `ERR_UNAVAILABLE`, `ERR_AUTH` or `ERR_TIMEOUT` when Redis cannot be
    /// reached within `connectTimeoutMs`; the client keeps retrying in the background, so
    /// later calls recover by themselves. Calling it again while connected resolves at once.
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn connect<'e>(&self, env: &'e Env) -> Result<PromiseRaw<'e, ()>> {
        let c = self.b.inner.clone();
        promise(env, async move { c.connect().await })
    }

    /// Stops every subscription and consumer, lets running callbacks finish (bounded),
    /// closes every connection. Afterwards nothing keeps the Node.js process alive.
    ///
    /// Calls made afterwards fail open, so that requests still in flight during a shutdown
    /// do not fail: publishing resolves `null`, `trimStream` and `acknowledgeMessages` 0,
    /// `createConsumerGroup` `false`; `subscribe`, `consumeFromGroup`, `stream` and `consume`
    /// reject with `ERR_CLOSED`. `connect()` opens the client again (subscriptions are not
    /// restored).
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn disconnect<'e>(&self, env: &'e Env) -> Result<PromiseRaw<'e, ()>> {
        self.b.stop_loops(env, |_| true)?;
        let c = self.b.inner.clone();
        promise(env, async move {
            c.disconnect().await;
            Ok(())
        })
    }

    /// Appends `data` (as JSON; bigint as decimal strings) to `stream` with XADD.
    ///
    /// Resolves to the entry id, or `null` when Redis is unavailable (within
    /// `commandTimeoutMs`). `id` may be `"*"` (default), `"<ms>-*"` or `"<ms>-<seq>"`.
    /// `options.maxLen` trims the stream in the same command (`XADD … MAXLEN ~ n`), the
    /// cheapest way to keep a stream bounded.
    /// Rejects with `ERR_INVALID_ARG` for an empty stream name, a malformed id, an id not
    /// greater than the stream's last id, or data JSON cannot represent. Connects a client
    /// that was never connected (resolving `null` if that takes longer than
    /// `commandTimeoutMs`); resolves `null` after `disconnect()`.
    #[napi(
        catch_unwind,
        ts_args_type = "stream: string, data: unknown, id?: string | null, options?: PublishOptions | null",
        ts_return_type = "Promise<string | null>"
    )]
    pub fn publish_message<'e>(
        &self,
        env: &'e Env,
        stream: Unknown,
        data: Unknown,
        id: Option<Unknown>,
        options: Option<Unknown>,
    ) -> Result<PromiseRaw<'e, Option<String>>> {
        let prepared = (|| -> CoreResult<(String, PublishId, Option<Trim>)> {
            let stream = string_arg(stream, "stream")?;
            check_stream_name(&stream)?;
            let id = match opt_string_arg(id, "id")? {
                Some(id) => PublishId::parse(&id)?,
                None => PublishId::Auto,
            };
            let o: PublishOptions = opt_object_arg(options, "options")?;
            let trim = Trim::from_input(o.into())?;
            Ok((stream, id, trim))
        })();
        let (stream, id, trim) = match prepared {
            Ok(p) => p,
            Err(e) => return rejected(env, e),
        };
        let json = match env_data(env)?.runtime.stringify(env, data)? {
            Ok(j) => j,
            Err(e) => return rejected(env, e),
        };
        // Queued here, on the JavaScript thread, so that the order of calls is the order
        // of the entries.
        let queued = self.promises.start(env, |resolver| {
            in_runtime(|| {
                self.b
                    .inner
                    .start_publish(&stream, &json, id, trim, move |r| {
                        resolver.resolve(r.map(Settled::Id))
                    })
            })
        })?;
        queued.or_else(|e| rejected(env, e))
    }

    /// Appends every item to `stream` in one pipeline, order kept.
    ///
    /// Resolves to one id per item (`null` for an item Redis refused, every item `null`
    /// when Redis is unavailable).
    #[napi(
        catch_unwind,
        ts_args_type = "stream: string, items: unknown[]",
        ts_return_type = "Promise<Array<string | null>>"
    )]
    pub fn publish_batch<'e>(
        &self,
        env: &'e Env,
        stream: Unknown,
        items: Unknown,
    ) -> Result<PromiseRaw<'e, Vec<Option<String>>>> {
        let stream =
            match string_arg(stream, "stream").and_then(|s| check_stream_name(&s).map(|_| s)) {
                Ok(s) => s,
                Err(e) => return rejected(env, e),
            };
        if !items.is_array()? {
            return rejected(env, CoreError::invalid("items", "expected an array"));
        }
        let len = unsafe { items.cast::<Array>() }?.len();
        let jsons = match env_data(env)?.runtime.stringify_all(env, items, len)? {
            Ok(j) => j,
            Err((i, why)) => {
                return rejected(
                    env,
                    CoreError::invalid(
                        format!("items[{i}]"),
                        format!("cannot be serialized to JSON: {why}"),
                    ),
                )
            }
        };
        let queued = self.promises.start(env, |resolver| {
            in_runtime(|| {
                self.b.inner.start_publish_batch(&stream, &jsons, move |r| {
                    resolver.resolve(r.map(Settled::Ids))
                })
            })
        })?;
        queued.or_else(|e| rejected(env, e))
    }

    /// Calls `callback` for every message added to `stream`, in id order, one at a time
    /// (a returned Promise is awaited before the next message); resolves to a
    /// `Subscription` whose `unsubscribe()` ends it.
    ///
    /// With `startId: "$"` (default) the stream's current end is resolved before this
    /// resolves, so a message published right afterwards is always delivered. Several
    /// subscriptions of one stream are independent and share one reader connection; each
    /// read is parsed once for all of them, and they receive the same message objects (do
    /// not change them). A callback that throws or rejects is logged with the message id
    /// and delivery goes on. Rejects with `ERR_INVALID_ARG` for a bad stream, callback or
    /// option, `ERR_CLOSED` after `disconnect()`.
    #[napi(
        catch_unwind,
        ts_generic_types = "T = unknown",
        ts_args_type = "stream: string, callback: (message: StreamMessage<T>) => void | Promise<void>, options?: SubscribeOptions | null",
        ts_return_type = "Promise<Subscription>"
    )]
    pub fn subscribe<'e>(
        &self,
        env: &'e Env,
        this: This,
        stream: Unknown,
        callback: Unknown,
        options: Option<Unknown>,
    ) -> Result<PromiseRaw<'e, Subscription>> {
        let prepared = (|| -> CoreResult<(String, SubscribeOptions)> {
            let stream = string_arg(stream, "stream")?;
            check_stream_name(&stream)?;
            is_callback(&callback)?;
            let o: JsSubscribeOptions = opt_object_arg(options, "options")?;
            Ok((stream, SubscribeOptions::from_input(o.into())?))
        })();
        let (stream, opts) = match prepared {
            Ok(p) => p,
            Err(e) => return rejected(env, e),
        };
        let b = &self.b;
        let key = b.new_key();
        let handler = b.deliveries(env)?.add(env, this.raw(), key, callback, 1)?;
        let started = in_runtime(|| b.inner.start_subscribe(&stream, Arc::new(handler), opts));
        let (id, resolved) = match started {
            Ok(s) => s,
            Err(e) => {
                b.deliveries(env)?.stop(env, key)?;
                return rejected(env, e);
            }
        };
        b.loops
            .borrow_mut()
            .insert(key, Owner::Subscription(stream.clone(), id));
        let b = b.clone();
        env.spawn_future_with_callback(async move { Ok(resolved.await) }, move |env, r| match r {
            Ok(()) => Ok(Subscription { id, stream, key, b }),
            Err(e) => {
                b.stop_key(env, key)?;
                Err(to_js(env, &e))
            }
        })
    }

    /// Ends every subscription of `stream` on this client: no callback of them starts after
    /// this returns (one already running finishes).
    #[napi(catch_unwind, ts_args_type = "stream: string")]
    pub fn unsubscribe(&self, env: Env, stream: Unknown) -> Result<()> {
        let stream = settle(&env, string_arg(stream, "stream"))?;
        self.b.stop_loops(
            &env,
            |o| matches!(o, Owner::Subscription(s, _) if *s == stream),
        )?;
        self.b.inner.unsubscribe(&stream);
        Ok(())
    }

    /// The messages of `stream` as an async iterator: `for await (const m of
    /// client.stream("events", { signal }))`.
    ///
    /// A subscription with backpressure: when `highWaterMark` messages (default 64) wait
    /// unread, reading pauses until the loop takes one, so a slow loop holds at most that
    /// many plus a few reads' worth (`count` each). Leaving the loop (`break`, `return`,
    /// an exception) or aborting `signal` ends the subscription; aborting ends the loop
    /// normally. Options as `subscribe`. After `disconnect()` the loop ends; starting one
    /// then throws `ERR_CLOSED` from the first `next()`.
    #[napi(
        catch_unwind,
        ts_generic_types = "T = unknown",
        ts_args_type = "stream: string, options?: StreamOptions | null",
        ts_return_type = "AsyncIterableIterator<StreamMessage<T>>"
    )]
    pub fn stream<'e>(
        &self,
        env: &'e Env,
        this: This,
        stream: Unknown,
        options: Option<Unknown>,
    ) -> Result<Unknown<'e>> {
        let this = unsafe { Unknown::from_raw_unchecked(env.raw(), this.raw()) };
        env_data(env)?
            .runtime
            .stream_iterator(env, this, stream, options)
    }

    /// The messages of consumer `consumer` of `group` as an async iterator: each has
    /// `ack()`, and one that is not acknowledged stays pending (delivered again after a
    /// restart, or claimed by another consumer with `claimIdleMs`).
    ///
    /// Backpressure, ending and `signal` as `stream()`; options as `consumeFromGroup`
    /// except `autoAck` (never: you acknowledge) and `concurrency`. Acknowledgements made
    /// in the same tick go out in one XACK.
    #[napi(
        catch_unwind,
        ts_generic_types = "T = unknown",
        ts_args_type = "stream: string, group: string, consumer: string, options?: ConsumeIteratorOptions | null",
        ts_return_type = "AsyncIterableIterator<ConsumedMessage<T>>"
    )]
    pub fn consume<'e>(
        &self,
        env: &'e Env,
        this: This,
        stream: Unknown,
        group: Unknown,
        consumer: Unknown,
        options: Option<Unknown>,
    ) -> Result<Unknown<'e>> {
        let this = unsafe { Unknown::from_raw_unchecked(env.raw(), this.raw()) };
        env_data(env)?
            .runtime
            .consume_iterator(env, (this, stream, group, consumer, options))
    }

    /// Creates consumer group `group` on `stream` (XGROUP CREATE … MKSTREAM), starting at
    /// `startId` (`"$"`: only new entries, the default; `"0"`: the whole stream).
    ///
    /// Resolves `true` when the group exists afterwards (also when it existed before),
    /// `false` when Redis is unavailable. Rejects with `ERR_INVALID_ARG` for bad names.
    #[napi(
        catch_unwind,
        ts_args_type = "stream: string, group: string, startId?: string | null",
        ts_return_type = "Promise<boolean>"
    )]
    pub fn create_consumer_group<'e>(
        &self,
        env: &'e Env,
        stream: Unknown,
        group: Unknown,
        start_id: Option<Unknown>,
    ) -> Result<PromiseRaw<'e, bool>> {
        let prepared = (|| -> CoreResult<(String, String, StartId)> {
            let start = match opt_string_arg(start_id, "startId")? {
                Some(s) => s.parse()?,
                None => StartId::Latest,
            };
            Ok((
                string_arg(stream, "stream")?,
                string_arg(group, "group")?,
                start,
            ))
        })();
        let (stream, group, start) = match prepared {
            Ok(p) => p,
            Err(e) => return rejected(env, e),
        };
        let c = self.b.inner.clone();
        promise(env, async move {
            c.create_consumer_group(&stream, &group, start).await
        })
    }

    /// Consumes `stream` as `consumer` of `group`: each entry goes to one consumer of the
    /// group. First this consumer's own pending entries (left by a crash), then new ones.
    ///
    /// With `autoAck` (default) an entry is acknowledged once its callback resolved, one
    /// XACK per batch; a callback that throws leaves its entry pending. See
    /// `ConsumeOptions` for claiming, dead letters and concurrency. Rejects with
    /// `ERR_NOGROUP` when the group does not exist (call `createConsumerGroup` first).
    #[napi(
        catch_unwind,
        ts_generic_types = "T = unknown",
        ts_args_type = "stream: string, group: string, consumer: string, callback: (message: StreamMessage<T>) => void | Promise<void>, options?: ConsumeOptions | null",
        ts_return_type = "Promise<void>"
    )]
    #[allow(clippy::too_many_arguments)] // the JavaScript signature, plus env and this
    pub fn consume_from_group<'e>(
        &self,
        env: &'e Env,
        this: This,
        stream: Unknown,
        group: Unknown,
        consumer: Unknown,
        callback: Unknown,
        options: Option<Unknown>,
    ) -> Result<PromiseRaw<'e, ()>> {
        let prepared = (|| -> CoreResult<(String, String, String, u32, CoreConsumeOptions)> {
            let stream = string_arg(stream, "stream")?;
            let group = string_arg(group, "group")?;
            let consumer = string_arg(consumer, "consumer")?;
            is_callback(&callback)?;
            let o: ConsumeOptions = opt_object_arg(options, "options")?;
            let concurrency = group::concurrency(o.concurrency)?;
            let opts = CoreConsumeOptions::from_input(o.into())?;
            Ok((stream, group, consumer, concurrency, opts))
        })();
        let (stream, group, consumer, concurrency, opts) = match prepared {
            Ok(p) => p,
            Err(e) => return rejected(env, e),
        };
        let b = &self.b;
        let key = b.new_key();
        let handler = b
            .deliveries(env)?
            .add(env, this.raw(), key, callback, concurrency)?;
        let started = in_runtime(|| {
            b.inner
                .start_consume(&stream, &group, &consumer, Arc::new(handler), opts)
        });
        let started = match started {
            Ok(s) => s,
            Err(e) => {
                b.deliveries(env)?.stop(env, key)?;
                return rejected(env, e);
            }
        };
        b.loops
            .borrow_mut()
            .insert(key, Owner::Consumer(format!("{stream}:{group}:{consumer}")));
        let b = b.clone();
        env.spawn_future_with_callback(async move { Ok(started.await) }, move |env, r| {
            if r.is_err() {
                b.stop_key(env, key)?;
            }
            settle(env, r)
        })
    }

    /// Acknowledges entries of `group` (one XACK); resolves to how many were pending.
    /// Accepts ids as separate arguments or one array. Resolves `0` when Redis is
    /// unavailable.
    #[napi(
        catch_unwind,
        ts_args_type = "stream: string, group: string, ...ids: string[] | [ids: string[]]",
        ts_return_type = "Promise<number>"
    )]
    pub fn acknowledge_messages<'e>(
        &self,
        env: &'e Env,
        stream: Unknown,
        group: Unknown,
        ids: Unknown,
    ) -> Result<PromiseRaw<'e, u32>> {
        let prepared = (|| -> CoreResult<(String, String, Vec<StreamId>)> {
            let stream = string_arg(stream, "stream")?;
            let group = string_arg(group, "group")?;
            let ids: Vec<String> = match ids.get_type() {
                Ok(ValueType::Object) if ids.is_array().unwrap_or(false) => {
                    unsafe { ids.cast() }
                        .map_err(|e| CoreError::invalid("ids", e.reason.clone()))?
                }
                Ok(ValueType::Undefined) => Vec::new(),
                _ => vec![string_arg(ids, "ids")?],
            };
            let ids = ids
                .iter()
                .map(|i| i.parse::<StreamId>())
                .collect::<CoreResult<Vec<_>>>()?;
            Ok((stream, group, ids))
        })();
        let (stream, group, ids) = match prepared {
            Ok(p) => p,
            Err(e) => return rejected(env, e),
        };
        let c = self.b.inner.clone();
        promise(env, async move {
            Ok(c.acknowledge(&stream, &group, &ids).await? as u32)
        })
    }

    /// Stops a consumer: no new reads; a callback already running finishes and is
    /// acknowledged. Resolves once that happened (bounded wait).
    #[napi(
        catch_unwind,
        ts_args_type = "stream: string, group: string, consumer: string",
        ts_return_type = "Promise<void>"
    )]
    pub fn stop_consumer<'e>(
        &self,
        env: &'e Env,
        stream: Unknown,
        group: Unknown,
        consumer: Unknown,
    ) -> Result<PromiseRaw<'e, ()>> {
        let names = (|| -> CoreResult<(String, String, String)> {
            Ok((
                string_arg(stream, "stream")?,
                string_arg(group, "group")?,
                string_arg(consumer, "consumer")?,
            ))
        })();
        let (stream, group, consumer) = match names {
            Ok(n) => n,
            Err(e) => return rejected(env, e),
        };
        let key = format!("{stream}:{group}:{consumer}");
        self.b
            .stop_loops(env, |o| *o == Owner::Consumer(key.clone()))?;
        let c = self.b.inner.clone();
        promise(env, async move {
            c.stop_consumer(&stream, &group, &consumer).await;
            Ok(())
        })
    }

    /// Trims `stream` with XTRIM: to `maxLen` entries, or to ids at or above `minId`;
    /// `approximate` (default true) lets Redis trim whole nodes only, which is far cheaper.
    /// Resolves to the number of entries removed, `0` when Redis is unavailable.
    #[napi(
        catch_unwind,
        ts_args_type = "stream: string, options: TrimOptions",
        ts_return_type = "Promise<number>"
    )]
    pub fn trim_stream<'e>(
        &self,
        env: &'e Env,
        stream: Unknown,
        options: Option<Unknown>,
    ) -> Result<PromiseRaw<'e, u32>> {
        let prepared = (|| -> CoreResult<(String, Trim)> {
            let stream = string_arg(stream, "stream")?;
            let o: TrimOptions = opt_object_arg(options, "options")?;
            let trim = Trim::from_input(o.into())?
                .ok_or_else(|| CoreError::invalid("options", "give maxLen or minId"))?;
            Ok((stream, trim))
        })();
        let (stream, trim) = match prepared {
            Ok(p) => p,
            Err(e) => return rejected(env, e),
        };
        let c = self.b.inner.clone();
        promise(env, async move {
            Ok(c.trim(&stream, trim).await?.min(u32::MAX as u64) as u32)
        })
    }

    /// The connection state, subscriptions (with how far each trails its stream),
    /// consumers, consumer groups (lag and pending), effective config (password redacted)
    /// and counters. Never waits for Redis: the group numbers are those of the last
    /// background refresh (started here when older than a second).
    #[napi(catch_unwind)]
    pub fn get_status(&self) -> crate::js::types::Status {
        let status = in_runtime(|| self.b.inner.status());
        crate::js::types::Status::from_core(status, self.b.inner.config())
    }

    /// `getStatus()` with the numbers only Redis knows asked for now: one `XINFO GROUPS`
    /// per consumed stream and one `XINFO STREAM` per busy subscribed stream, within
    /// `commandTimeoutMs`. For a health endpoint.
    #[napi(catch_unwind, ts_return_type = "Promise<Status>")]
    pub fn refresh_status<'e>(
        &self,
        env: &'e Env,
    ) -> Result<PromiseRaw<'e, crate::js::types::Status>> {
        let c = self.b.inner.clone();
        promise(env, async move {
            let status = c.refresh_status().await;
            Ok(crate::js::types::Status::from_core(status, c.config()))
        })
    }
}

/// One subscription made by `subscribe()`; `unsubscribe()` ends it.
#[napi]
pub struct Subscription {
    id: SubscriptionId,
    stream: String,
    key: u32,
    b: Rc<Binding>,
}

#[napi]
impl Subscription {
    /// Its id, unique within its client (as in `getStatus().subscriptionDetails`).
    #[napi(getter)]
    pub fn id(&self) -> i64 {
        self.id as i64
    }

    /// The stream it reads.
    #[napi(getter)]
    pub fn stream(&self) -> String {
        self.stream.clone()
    }

    /// Whether it still delivers: false after `unsubscribe()`, `client.unsubscribe(stream)`
    /// or `disconnect()`.
    #[napi(getter)]
    pub fn active(&self) -> bool {
        self.b.inner.is_subscribed(self.id)
    }

    /// Ends this subscription only: no callback of it starts after this returns (one
    /// already running finishes). Other subscriptions of the stream go on. Idempotent.
    #[napi(catch_unwind)]
    pub fn unsubscribe(&self, env: Env) -> Result<()> {
        self.b.stop_key(&env, self.key)?;
        self.b.inner.unsubscribe_id(self.id);
        Ok(())
    }
}
