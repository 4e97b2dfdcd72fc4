//! The `StreamsClient` class: its shell (creation, finalizer, the helpers every method uses)
//! and its connection methods. Publishing, subscriptions and groups are `#[napi] impl` blocks
//! of their own (`publish.rs`, `subscribe.rs`, `groups.rs`); napi-rs merges them into one class.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::binding::Binding;
use super::error::{settle, to_js};
use super::logging;
use super::promises::Promises;
use super::types::{opt_object_arg, StreamsClientConfig};
use crate::client::Client;
use crate::config::Config;
use crate::error::{Error as CoreError, Result as CoreResult};

/// A Redis Streams client: publish, broadcast subscriptions, consumer groups, status.
///
/// Use `getStreamsClient()` for the process-wide instance, or `new StreamsClient()` for an
/// independent one (tests, several Redis servers). It connects on its first call; a client
/// that becomes garbage without `disconnect()` closes its connections.
#[napi(custom_finalize)]
pub struct StreamsClient {
    pub(super) b: Rc<Binding>,
    /// The publish promises, settled in batches.
    pub(super) promises: Promises,
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
pub(super) fn promise<'e, T, F>(env: &'e Env, fut: F) -> Result<PromiseRaw<'e, T>>
where
    T: ToNapiValue + Send + 'static,
    F: Future<Output = CoreResult<T>> + Send + 'static,
{
    env.spawn_future_with_callback(async move { Ok(fut.await) }, |env, r| settle(env, r))
}

pub(super) fn rejected<'e, T: ToNapiValue>(
    env: &'e Env,
    e: CoreError,
) -> Result<PromiseRaw<'e, T>> {
    env.spawn_future_with_callback(async { Ok(()) }, move |env, ()| Err(to_js(env, &e)))
}

/// Reads a method's arguments with `read`, then makes its Promise with `run`. A bad argument
/// rejects the Promise (with `ERR_INVALID_ARG`) instead of throwing, as every async method
/// promises.
pub(super) fn with_args<'e, A, T: ToNapiValue>(
    env: &'e Env,
    read: impl FnOnce() -> CoreResult<A>,
    run: impl FnOnce(A) -> Result<PromiseRaw<'e, T>>,
) -> Result<PromiseRaw<'e, T>> {
    match read() {
        Ok(args) => run(args),
        Err(e) => rejected(env, e),
    }
}

/// Runs a core call that may start tasks (a client connects on its first call).
pub(super) fn in_runtime<T>(f: impl FnOnce() -> T) -> T {
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

pub(super) fn is_callback(v: &Unknown) -> CoreResult<()> {
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
}
