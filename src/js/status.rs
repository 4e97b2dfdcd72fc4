//! The status methods: `getStatus` and `refreshStatus`.

use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::client::{in_runtime, promise, StreamsClient};

#[napi]
impl StreamsClient {
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
