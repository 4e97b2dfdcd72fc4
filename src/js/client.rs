//! The `StreamsClient` class: converts arguments, calls the core, converts results.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::callback::{json_text, JsHandler};
use super::env_data;
use super::error::settle;
use super::logging;
use super::types::{
    opt_object_arg, opt_string_arg, string_arg, Status as JsStatus, StreamsClientConfig,
    SubscribeOptions as JsSubscribeOptions,
};
use crate::client::Client;
use crate::codec::{check_stream_name, PublishId, StartId};
use crate::config::{whole_number, Config, MAX_BLOCK_MS, MAX_COUNT};
use crate::error::{Error as CoreError, Result as CoreResult};
use crate::subscribe::SubscribeOptions;

type StopFn = FunctionRef<(), ()>;

/// A Redis Streams client: publish, broadcast subscriptions, consumer groups, status.
///
/// Use `getStreamsClient()` for the process-wide instance, or `new StreamsClient()` for an
/// independent one (tests, several Redis servers).
#[napi]
pub struct StreamsClient {
    inner: Arc<Client>,
    /// Stop functions of the JavaScript delivery loops, by local key, with their stream.
    stops: Rc<RefCell<HashMap<u64, (String, StopFn)>>>,
    next_key: Cell<u64>,
}

/// Runs `fut` on the runtime and settles a Promise with its result; errors carry `code`.
fn promise<'e, T, F>(env: &'e Env, fut: F) -> Result<PromiseRaw<'e, T>>
where
    T: ToNapiValue + Send + 'static,
    F: Future<Output = CoreResult<T>> + Send + 'static,
{
    env.spawn_future_with_callback(async move { Ok(fut.await) }, |env, r| settle(env, r))
}

fn rejected<'e, T: ToNapiValue + Send + 'static>(
    env: &'e Env,
    e: CoreError,
) -> Result<PromiseRaw<'e, T>> {
    promise(env, async move { Err(e) })
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
            inner: Arc::new(Client::new(config)),
            stops: Rc::new(RefCell::new(HashMap::new())),
            next_key: Cell::new(0),
        })
    }

    /// Stops the JavaScript delivery loops whose stream matches `stream` (all when `None`).
    fn stop_loops(&self, env: &Env, stream: Option<&str>) -> Result<()> {
        let stopped: Vec<StopFn> = {
            let mut stops = self.stops.borrow_mut();
            let keys: Vec<u64> = stops
                .iter()
                .filter(|(_, (s, _))| stream.is_none_or(|want| want == s))
                .map(|(k, _)| *k)
                .collect();
            keys.iter()
                .filter_map(|k| stops.remove(k))
                .map(|(_, f)| f)
                .collect()
        };
        for f in stopped {
            f.borrow_back(env)?.call(())?;
        }
        Ok(())
    }
}

#[napi]
impl StreamsClient {
    /// Creates an independent client; nothing connects until `connect()`.
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

    /// Connects to Redis; resolves once a connection works.
    ///
    /// Rejects with `ERR_UNAVAILABLE` or `ERR_TIMEOUT` when Redis cannot be reached within
    /// `connectTimeoutMs`; the client keeps retrying in the background, so later calls
    /// recover by themselves. Calling it again while connected resolves at once.
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn connect<'e>(&self, env: &'e Env) -> Result<PromiseRaw<'e, ()>> {
        let c = self.inner.clone();
        promise(env, async move { c.connect().await })
    }

    /// Stops every subscription, lets running callbacks finish (bounded), closes every
    /// connection. Afterwards nothing keeps the Node.js process alive; `connect()` may be
    /// called again (subscriptions are not restored).
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn disconnect<'e>(&self, env: &'e Env) -> Result<PromiseRaw<'e, ()>> {
        self.stop_loops(env, None)?;
        let c = self.inner.clone();
        promise(env, async move {
            c.disconnect().await;
            Ok(())
        })
    }

    /// Appends `data` (as JSON; bigint as decimal strings) to `stream` with XADD.
    ///
    /// Resolves to the entry id, or `null` when Redis is unavailable (within
    /// `commandTimeoutMs`). `id` may be `"*"` (default), `"<ms>-*"` or `"<ms>-<seq>"`.
    /// Rejects with `ERR_INVALID_ARG` for an empty stream name, a malformed id, an id not
    /// greater than the stream's last id, or data JSON cannot represent; `ERR_CLOSED` when
    /// not connected.
    #[napi(
        catch_unwind,
        ts_args_type = "stream: string, data: unknown, id?: string | null",
        ts_return_type = "Promise<string | null>"
    )]
    pub fn publish_message<'e>(
        &self,
        env: &'e Env,
        stream: Unknown,
        data: Unknown,
        id: Option<Unknown>,
    ) -> Result<PromiseRaw<'e, Option<String>>> {
        let prepared = (|| -> CoreResult<(String, PublishId)> {
            let stream = string_arg(stream, "stream")?;
            check_stream_name(&stream)?;
            let id = match opt_string_arg(id, "id")? {
                Some(id) => PublishId::parse(&id)?,
                None => PublishId::Auto,
            };
            Ok((stream, id))
        })();
        let (stream, id) = match prepared {
            Ok(p) => p,
            Err(e) => return rejected(env, e),
        };
        let json = match env_data(env)?.helpers.stringify(env, data)? {
            Ok(j) => j,
            Err(e) => return rejected(env, e),
        };
        let c = self.inner.clone();
        promise(env, async move {
            let id = c.publish(&stream, json_text(&json), id).await?;
            Ok(id.map(|i| i.to_string()))
        })
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
        let array: Array = unsafe { items.cast() }?;
        let helpers = &env_data(env)?.helpers;
        let mut jsons = Vec::with_capacity(array.len() as usize);
        for i in 0..array.len() {
            let item: Unknown = array.get_element(i)?;
            match helpers.stringify(env, item)? {
                Ok(mut j) => {
                    j.remove(0);
                    jsons.push(j);
                }
                Err(e) => {
                    return rejected(
                        env,
                        CoreError::invalid(format!("items[{i}]"), e.to_string()),
                    )
                }
            }
        }
        let c = self.inner.clone();
        promise(env, async move {
            let ids = c.publish_batch(&stream, &jsons).await?;
            Ok(ids.into_iter().map(|i| i.map(|i| i.to_string())).collect())
        })
    }

    /// Calls `callback` for every message added to `stream`, in id order, one at a time
    /// (a returned Promise is awaited before the next message).
    ///
    /// With `startId: "$"` (default) the stream's current end is resolved before this
    /// resolves, so a message published right afterwards is always delivered. A callback
    /// that throws or rejects is logged with the message id and delivery goes on.
    /// Rejects with `ERR_INVALID_ARG` for a bad stream, callback or option.
    #[napi(
        catch_unwind,
        ts_generic_types = "T = unknown",
        ts_args_type = "stream: string, callback: (message: StreamMessage<T>) => void | Promise<void>, options?: SubscribeOptions | null",
        ts_return_type = "Promise<void>"
    )]
    pub fn subscribe<'e>(
        &self,
        env: &'e Env,
        stream: Unknown,
        callback: Unknown,
        options: Option<Unknown>,
    ) -> Result<PromiseRaw<'e, ()>> {
        let prepared = (|| -> CoreResult<(String, SubscribeOptions)> {
            let stream = string_arg(stream, "stream")?;
            check_stream_name(&stream)?;
            if callback.get_type().ok() != Some(ValueType::Function) {
                return Err(CoreError::invalid("callback", "expected a function"));
            }
            let o: JsSubscribeOptions = opt_object_arg(options, "options")?;
            let start = match o.start_id.as_deref() {
                Some(s) => s.parse::<StartId>()?,
                None => StartId::Latest,
            };
            let block = o
                .block_ms
                .map(|b| whole_number("blockMs", b, 1, MAX_BLOCK_MS))
                .transpose()?
                .map(Duration::from_millis);
            let count = o
                .count
                .map(|c| whole_number("count", c, 1, MAX_COUNT as u64))
                .transpose()?
                .map(|c| c as usize);
            Ok((
                stream,
                SubscribeOptions {
                    start,
                    block,
                    count,
                },
            ))
        })();
        let (stream, opts) = match prepared {
            Ok(p) => p,
            Err(e) => return rejected(env, e),
        };
        let (deliver, stop) = env_data(env)?.helpers.subscriber(env, callback)?;
        let handler = Arc::new(JsHandler::new(deliver)?);
        let key = self.next_key.get();
        self.next_key.set(key + 1);
        self.stops
            .borrow_mut()
            .insert(key, (stream.clone(), stop.create_ref()?));
        let stops = self.stops.clone();
        let c = self.inner.clone();
        env.spawn_future_with_callback(
            async move { Ok(c.subscribe(&stream, handler, opts).await) },
            move |env, r| {
                if r.is_err() {
                    stops.borrow_mut().remove(&key);
                }
                settle(env, r.map(|_| ()))
            },
        )
    }

    /// Ends every subscription of `stream` on this client: no callback of it starts after
    /// this returns (one already running finishes).
    #[napi(catch_unwind, ts_args_type = "stream: string")]
    pub fn unsubscribe(&self, env: Env, stream: Unknown) -> Result<()> {
        let stream = settle(&env, string_arg(stream, "stream"))?;
        self.stop_loops(&env, Some(&stream))?;
        self.inner.unsubscribe(&stream);
        Ok(())
    }

    /// The connection state, subscriptions, consumers, effective config (password
    /// redacted) and counters.
    #[napi(catch_unwind)]
    pub fn get_status(&self) -> JsStatus {
        JsStatus::from_core(self.inner.status(), self.inner.config())
    }
}
