//! Broadcast subscriptions: `subscribe`, `unsubscribe`, the `stream()` iterator, and the
//! `Subscription` handle.

use std::rc::Rc;
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::binding::{Binding, Owner};
use super::client::{in_runtime, is_callback, rejected, with_args, StreamsClient};
use super::env_data;
use super::error::{settle, to_js};
use super::types::{opt_object_arg, string_arg, SubscribeOptions as JsSubscribeOptions};
use crate::codec::check_stream_name;
use crate::error::Result as CoreResult;
use crate::subscribe::{SubscribeOptions, SubscriptionId};

#[napi]
impl StreamsClient {
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
        with_args(
            env,
            || -> CoreResult<(String, SubscribeOptions)> {
                let stream = string_arg(stream, "stream")?;
                check_stream_name(&stream)?;
                is_callback(&callback)?;
                let o: JsSubscribeOptions = opt_object_arg(options, "options")?;
                Ok((stream, SubscribeOptions::from_input(o.into())?))
            },
            |(stream, opts)| {
                let b = &self.b;
                let key = b.new_key();
                let handler = b.deliveries(env)?.add(env, this.raw(), key, callback, 1)?;
                let started =
                    in_runtime(|| b.inner.start_subscribe(&stream, Arc::new(handler), opts));
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
                env.spawn_future_with_callback(async move { Ok(resolved.await) }, move |env, r| {
                    match r {
                        Ok(()) => Ok(Subscription { id, stream, key, b }),
                        Err(e) => {
                            b.stop_key(env, key)?;
                            Err(to_js(env, &e))
                        }
                    }
                })
            },
        )
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
