//! Publishing: `publishMessage` and `publishBatch`.

use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::args::{opt_object_arg, opt_string_arg, string_arg};
use super::client::{in_runtime, rejected, with_args, StreamsClient};
use super::env_data;
use super::options::{PublishBatchOptions, PublishOptions};
use super::promises::Settled;
use crate::codec::{check_stream_name, PublishId, TraceContext};
use crate::error::{Error as CoreError, Result as CoreResult};
use crate::trim::Trim;

#[napi]
impl StreamsClient {
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
        with_args(
            env,
            || -> CoreResult<(String, PublishId, Option<Trim>, Option<TraceContext>)> {
                let stream = string_arg(stream, "stream")?;
                check_stream_name(&stream)?;
                let id = match opt_string_arg(id, "id")? {
                    Some(id) => PublishId::parse(&id)?,
                    None => PublishId::Auto,
                };
                let mut o: PublishOptions = opt_object_arg(options, "options")?;
                let trace = o.trace_context.take().map(|t| t.validate()).transpose()?;
                let trim = Trim::from_input(o.into())?;
                Ok((stream, id, trim, trace))
            },
            |(stream, id, trim, trace)| {
                let json = match env_data(env)?.runtime.stringify(env, data)? {
                    Ok(j) => j,
                    Err(e) => return rejected(env, e),
                };
                // Queued here, on the JavaScript thread, so that the order of calls is the order
                // of the entries.
                let queued = self.promises.start(env, |resolver| {
                    in_runtime(|| {
                        self.binding.inner.start_publish(
                            &stream,
                            &json,
                            id,
                            trim,
                            trace.as_ref().map(TraceContext::field_value),
                            move |r| resolver.resolve(r.map(Settled::Id)),
                        )
                    })
                })?;
                queued.or_else(|e| rejected(env, e))
            },
        )
    }

    /// Appends every item to `stream` in one pipeline, order kept.
    ///
    /// Resolves to one id per item (`null` for an item Redis refused, every item `null`
    /// when Redis is unavailable). Every entry carries the trace context of the call (see
    /// `PublishOptions.traceContext`).
    #[napi(
        catch_unwind,
        ts_args_type = "stream: string, items: unknown[], options?: PublishBatchOptions | null",
        ts_return_type = "Promise<Array<string | null>>"
    )]
    pub fn publish_batch<'e>(
        &self,
        env: &'e Env,
        stream: Unknown,
        items: Unknown,
        options: Option<Unknown>,
    ) -> Result<PromiseRaw<'e, Vec<Option<String>>>> {
        with_args(
            env,
            || -> CoreResult<(String, Option<TraceContext>)> {
                let stream = string_arg(stream, "stream")?;
                check_stream_name(&stream)?;
                if !items.is_array().unwrap_or(false) {
                    return Err(CoreError::invalid("items", "expected an array"));
                }
                let o: PublishBatchOptions = opt_object_arg(options, "options")?;
                let trace = o.trace_context.map(|t| t.validate()).transpose()?;
                Ok((stream, trace))
            },
            |(stream, trace)| {
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
                        self.binding.inner.start_publish_batch(
                            &stream,
                            &jsons,
                            trace.as_ref().map(TraceContext::field_value),
                            move |r| resolver.resolve(r.map(Settled::Ids)),
                        )
                    })
                })?;
                queued.or_else(|e| rejected(env, e))
            },
        )
    }
}
