//! Logs: the process-wide `tracing` subscriber (JSON lines on stderr) and the optional
//! JavaScript sink that `setLogger` installs.
//!
//! The sink is a weak, bounded ThreadsafeFunction called without blocking: when the
//! JavaScript thread falls behind, lines are dropped and counted, and no tokio worker ever
//! waits on JavaScript.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{OnceLock, RwLock};

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// Records the JavaScript sink may hold before new ones are dropped.
const SINK_QUEUE: usize = 4096;

type Sink = ThreadsafeFunction<String, (), String, Status, false, true, SINK_QUEUE>;

static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();
static SINK: RwLock<Option<Sink>> = RwLock::new(None);
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Log lines dropped because the JavaScript logger was full.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

fn default_filter() -> EnvFilter {
    std::env::var("STREAMCAST_LOG")
        .ok()
        .and_then(|l| EnvFilter::try_new(l).ok())
        .unwrap_or_else(|| EnvFilter::new("info"))
}

/// Installs the subscriber once per process.
pub fn init() {
    FILTER.get_or_init(|| {
        let (filter, handle) = reload::Layer::new(default_filter());
        let fmt = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(LineWriter);
        // Another subscriber may already be installed by the host; then ours stays idle.
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(fmt)
            .try_init();
        handle
    });
}

/// Sets the process-wide log filter (from a client's `logLevel`).
pub fn set_level(level: &str) {
    init();
    if let (Some(handle), Ok(filter)) = (FILTER.get(), EnvFilter::try_new(level)) {
        let _ = handle.reload(filter);
    }
}

/// Routes records to `f` (already wrapped to parse and never throw), or back to stderr.
pub fn set_sink(f: Option<Function<'_, String, ()>>) -> Result<()> {
    init();
    let sink = match f {
        Some(f) => Some(
            f.build_threadsafe_function()
                .callee_handled::<false>()
                .weak::<true>()
                .max_queue_size::<SINK_QUEUE>()
                .build()?,
        ),
        None => None,
    };
    // Replacing drops the previous ThreadsafeFunction, which releases it.
    *SINK.write().unwrap_or_else(|p| p.into_inner()) = sink;
    Ok(())
}

fn emit(line: &[u8]) {
    let sink = SINK.read().unwrap_or_else(|p| p.into_inner());
    if let Some(tsfn) = sink.as_ref() {
        let text = String::from_utf8_lossy(line).trim_end().to_owned();
        if tsfn.call(text, ThreadsafeFunctionCallMode::NonBlocking) != Status::Ok {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        return;
    }
    drop(sink);
    let _ = std::io::stderr().lock().write_all(line);
}

/// Makes one [`LineBuf`] per record.
struct LineWriter;

/// Collects one formatted record and emits it when dropped.
struct LineBuf(Vec<u8>);

impl Write for LineBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineBuf {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            emit(&self.0);
        }
    }
}

impl<'a> MakeWriter<'a> for LineWriter {
    type Writer = LineBuf;
    fn make_writer(&'a self) -> Self::Writer {
        LineBuf(Vec::with_capacity(256))
    }
}
