//! Trimming: `trimStream`.

use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::client::{promise, with_args, StreamsClient};
use super::types::{opt_object_arg, string_arg, TrimOptions};
use crate::error::{Error as CoreError, Result as CoreResult};
use crate::trim::Trim;

#[napi]
impl StreamsClient {
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
        with_args(
            env,
            || -> CoreResult<(String, Trim)> {
                let stream = string_arg(stream, "stream")?;
                let o: TrimOptions = opt_object_arg(options, "options")?;
                let trim = Trim::from_input(o.into())?
                    .ok_or_else(|| CoreError::invalid("options", "give maxLen or minId"))?;
                Ok((stream, trim))
            },
            |(stream, trim)| {
                let c = self.b.inner.clone();
                promise(env, async move {
                    Ok(c.trim(&stream, trim).await?.min(u32::MAX as u64) as u32)
                })
            },
        )
    }
}
