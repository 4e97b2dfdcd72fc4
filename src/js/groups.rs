//! Consumer groups: `createConsumerGroup`, `consumeFromGroup`, the `consume()` iterator,
//! `acknowledgeMessages` and `stopConsumer`.

use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::binding::Owner;
use super::client::{in_runtime, is_callback, promise, rejected, with_args, StreamsClient};
use super::env_data;
use super::error::settle;
use super::types::{opt_object_arg, opt_string_arg, string_arg, ConsumeOptions};
use crate::codec::{StartId, StreamId};
use crate::error::{Error as CoreError, Result as CoreResult};
use crate::group::{self, ConsumeOptions as CoreConsumeOptions};

#[napi]
impl StreamsClient {
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
        with_args(
            env,
            || -> CoreResult<(String, String, StartId)> {
                let start = match opt_string_arg(start_id, "startId")? {
                    Some(s) => s.parse()?,
                    None => StartId::Latest,
                };
                Ok((
                    string_arg(stream, "stream")?,
                    string_arg(group, "group")?,
                    start,
                ))
            },
            |(stream, group, start)| {
                let c = self.b.inner.clone();
                promise(env, async move {
                    c.create_consumer_group(&stream, &group, start).await
                })
            },
        )
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
        with_args(
            env,
            || -> CoreResult<(String, String, String, u32, CoreConsumeOptions)> {
                let stream = string_arg(stream, "stream")?;
                let group = string_arg(group, "group")?;
                let consumer = string_arg(consumer, "consumer")?;
                is_callback(&callback)?;
                let o: ConsumeOptions = opt_object_arg(options, "options")?;
                let concurrency = group::concurrency(o.concurrency)?;
                let opts = CoreConsumeOptions::from_input(o.into())?;
                Ok((stream, group, consumer, concurrency, opts))
            },
            |(stream, group, consumer, concurrency, opts)| {
                let b = &self.b;
                let key = b.new_key();
                let handler =
                    b.deliveries(env)?
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
                b.loops.borrow_mut().insert(
                    key,
                    Owner::Consumer(group::ConsumerKey::new(&stream, &group, &consumer)),
                );
                let b = b.clone();
                env.spawn_future_with_callback(async move { Ok(started.await) }, move |env, r| {
                    if r.is_err() {
                        b.stop_key(env, key)?;
                    }
                    settle(env, r)
                })
            },
        )
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
        with_args(
            env,
            || -> CoreResult<(String, String, Vec<StreamId>)> {
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
            },
            |(stream, group, ids)| {
                let c = self.b.inner.clone();
                promise(env, async move {
                    Ok(c.acknowledge(&stream, &group, &ids).await? as u32)
                })
            },
        )
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
        with_args(
            env,
            || -> CoreResult<(String, String, String)> {
                Ok((
                    string_arg(stream, "stream")?,
                    string_arg(group, "group")?,
                    string_arg(consumer, "consumer")?,
                ))
            },
            |(stream, group, consumer)| {
                let key = group::ConsumerKey::new(&stream, &group, &consumer);
                self.b
                    .stop_loops(env, |o| *o == Owner::Consumer(key.clone()))?;
                let c = self.b.inner.clone();
                promise(env, async move {
                    c.stop_consumer(&stream, &group, &consumer).await;
                    Ok(())
                })
            },
        )
    }
}
