//! Logs: the process-wide `tracing` subscriber (JSON lines on stderr) and the optional
//! JavaScript sink that `setLogger` installs.
//!
//! Neither destination ever blocks the thread that logs (a tokio worker, usually):
//! - stderr is written by a thread of its own (`tracing-appender`'s non-blocking writer)
//!   from a bounded queue; when stderr does not keep up (a pipe nobody reads, a slow
//!   terminal), new lines are dropped and counted. The queue is written out when the
//!   process exits (normally or through `process.exit()`), so the last lines of a process
//!   reach stderr.
//! - the sink is a weak, bounded ThreadsafeFunction called without blocking: when the
//!   JavaScript thread falls behind, lines are dropped and counted, and no tokio worker
//!   ever waits on JavaScript.
//!
//! `getStatus().counters.logDropped` adds both counts.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, RwLock};

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// Records the JavaScript sink may hold before new ones are dropped.
const SINK_QUEUE: usize = 4096;

/// Lines the stderr queue may hold before new ones are dropped (a few MiB at most).
const STDERR_QUEUE: usize = 16_384;

type Sink = ThreadsafeFunction<String, (), String, Status, false, true, SINK_QUEUE>;

static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();
static SINK: RwLock<Option<Sink>> = RwLock::new(None);
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// The queue in front of stderr and the thread that writes it.
struct Stderr {
    writer: NonBlocking,
    /// Dropping it writes out what is queued (waiting about a second at most).
    guard: Mutex<Option<WorkerGuard>>,
}

static STDERR: OnceLock<Stderr> = OnceLock::new();
/// Set once the writer thread was stopped at exit; later lines go to stderr directly.
static STDERR_CLOSED: AtomicBool = AtomicBool::new(false);

fn stderr() -> &'static Stderr {
    STDERR.get_or_init(|| {
        let (writer, guard) = NonBlockingBuilder::default()
            .lossy(true)
            .buffered_lines_limit(STDERR_QUEUE)
            .thread_name("streamcast-log")
            .finish(WaitingStderr);
        // SAFETY: registers a plain function without arguments; the addon is never unloaded.
        #[cfg(unix)]
        unsafe {
            libc::atexit(close_stderr_at_exit);
        }
        Stderr {
            writer,
            guard: Mutex::new(Some(guard)),
        }
    })
}

/// stderr for the writer thread, which may wait: Node makes a piped stderr non-blocking as
/// soon as JavaScript touches `process.stderr` or `console`, and a plain write then fails
/// with `WouldBlock` whenever the pipe is full, losing the line without counting it. This
/// writer waits until stderr takes bytes again, so a full pipe holds the thread up, the
/// queue fills, and the lines dropped there are counted.
struct WaitingStderr;

impl Write for WaitingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        loop {
            match std::io::stderr().write(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => wait_writable(),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Waits until stderr can take bytes (bounded, so a closed reader is noticed on the next write).
#[cfg(unix)]
fn wait_writable() {
    let mut fd = libc::pollfd {
        fd: libc::STDERR_FILENO,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe { libc::poll(&mut fd, 1, 100) };
}

#[cfg(not(unix))]
fn wait_writable() {
    std::thread::sleep(std::time::Duration::from_millis(1));
}

/// Log lines dropped because stderr or the JavaScript logger did not keep up.
pub fn dropped() -> u64 {
    let stderr = STDERR
        .get()
        .map_or(0, |s| s.writer.error_counter().dropped_lines() as u64);
    DROPPED.load(Ordering::Relaxed) + stderr
}

/// Runs at process exit (C `atexit`), after Node's own exit steps: a normal exit and
/// `process.exit()` both end in `exit()`, while Node runs addon cleanup hooks only on the
/// former. Rust statics are never dropped, so without this the queued lines would be lost.
#[cfg(unix)]
extern "C" fn close_stderr_at_exit() {
    // Nothing may unwind out of an `extern "C"` function.
    let _ = std::panic::catch_unwind(close_stderr);
}

/// Stops the writer thread after it wrote what is queued.
fn close_stderr() {
    let Some(stderr) = STDERR.get() else { return };
    STDERR_CLOSED.store(true, Ordering::SeqCst);
    let guard = stderr
        .guard
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    drop(guard);
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
    if STDERR_CLOSED.load(Ordering::SeqCst) {
        // Exiting: nothing else will write the queue, and waiting is fine now.
        let _ = std::io::stderr().lock().write_all(line);
        return;
    }
    // Never blocks: a full queue drops the line and counts it.
    let _ = stderr().writer.clone().write_all(line);
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
