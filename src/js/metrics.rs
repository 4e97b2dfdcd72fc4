//! `metrics()`: the Prometheus text of `crate::metrics`.

use napi_derive::napi;

use super::client::{in_runtime, StreamsClient};
use super::logging;
use crate::metrics::{render, Extra};

#[napi]
impl StreamsClient {
    /// The client's counters and gauges in the Prometheus text exposition format (0.0.4),
    /// for a `/metrics` route to return with `Content-Type: text/plain; version=0.0.4`.
    ///
    /// Never waits for Redis: the group numbers are those of the last background refresh,
    /// as in `getStatus()`. Each labelled metric shows at most 256 streams (or groups); the
    /// rest are summed under `_other`. The list is in docs/observability.md.
    #[napi(catch_unwind)]
    pub fn metrics(&self) -> String {
        let inner = &self.binding.inner;
        let status = in_runtime(|| inner.status());
        render(
            &status,
            inner.counters(),
            Extra {
                log_dropped: logging::dropped(),
            },
        )
    }
}
