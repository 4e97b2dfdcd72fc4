//! The napi binding: the only code that names napi. Each export converts its arguments,
//! calls the core, and converts the result; no Redis logic lives here.

mod args;
mod binding;
mod channels;
#[cfg(coverage)]
mod coverage;
mod deliveries;
mod error;
mod logging;
mod option_keys;
mod options;
mod promises;
mod runtime;
mod wake_queue;
mod wire;

// The `StreamsClient` class, one `#[napi] impl` block per job. napi-rs lists the class's
// methods in index.d.ts in the order it expands them: these lines' order (kept apart so that
// rustfmt does not sort them) is that order.
mod client;

mod publish;

mod subscribe;

mod groups;

mod trim;

mod status;

mod metrics;

use napi::bindgen_prelude::*;
use napi_derive::napi;

pub use client::StreamsClient;

/// The addon's Rust allocations (reply buffers, JSON texts, commands) go to mimalloc: glibc
/// malloc showed up at 5–9% of the runtime thread's samples in `perf` during the publish and
/// subscribe benchmarks. Node's own heap is not affected. On musl it is built with local-dynamic
/// TLS (Cargo.toml), without which musl's dlopen refuses the addon; bench/musl-alloc measures it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use args::opt_object_arg;
use options::StreamsClientConfig;
use runtime::Runtime;

/// Everything kept per JavaScript environment (main thread or worker).
struct EnvData {
    runtime: Runtime,
}

/// The data of `env`, made on first use. Shared and borrowed for no longer than `env`: napi
/// hands out `&'static mut`, but two calls alias it, and a worker's data is freed when the
/// worker's environment is torn down.
fn env_data(env: &Env) -> Result<&EnvData> {
    if env.get_instance_data::<EnvData>()?.is_none() {
        let data = EnvData {
            runtime: Runtime::compile(env)?,
        };
        env.set_instance_data(data, (), |_| {})?;
    }
    match env.get_instance_data::<EnvData>()? {
        Some(data) => Ok(&*data),
        None => Err(Error::from_reason(
            "streamcast: per-environment data is missing",
        )),
    }
}

/// Tokio worker threads unless `STREAMCAST_WORKER_THREADS` says otherwise.
///
/// One: Node has one JavaScript thread per env, and the Rust side only parses and forwards,
/// so a second worker mostly adds cross-thread wake-ups (measured in bench/, see README).
const DEFAULT_WORKER_THREADS: usize = 1;

#[napi_derive::module_init]
fn init() {
    logging::init();
    let workers = std::env::var("STREAMCAST_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| (1..=64).contains(n))
        .unwrap_or(DEFAULT_WORKER_THREADS);
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("streamcast-rt")
        .enable_all()
        .build()
    {
        Ok(rt) => create_custom_tokio_runtime(rt),
        // napi then builds its default runtime on first use.
        Err(e) => {
            tracing::warn!(error = %e, "cannot build the tokio runtime; using napi's default")
        }
    }
}

/// Adjusts the exports once they exist (see `patchExports` in `runtime/process.js`).
#[napi(module_exports)]
pub fn exports(exports: Object, env: Env) -> Result<()> {
    env_data(&env)?.runtime.patch_exports(&env, exports)
}

/// The process-wide client: every call returns the same object, also after a module that
/// calls it is evaluated again (`next dev` hot reload): it is kept on `globalThis` under
/// `Symbol.for("streamcast.client")`. A config given once the client exists is ignored
/// with a logged warning. Nothing connects until the first call (or `connect()`).
#[napi(
    catch_unwind,
    ts_args_type = "config?: StreamsClientConfig | null",
    ts_return_type = "StreamsClient"
)]
pub fn get_streams_client<'e>(env: &'e Env, config: Option<Unknown>) -> Result<Unknown<'e>> {
    let runtime = &env_data(env)?.runtime;
    let existing = runtime.get_singleton(env)?;
    if !matches!(existing.get_type()?, ValueType::Undefined | ValueType::Null) {
        if config
            .is_some_and(|c| !matches!(c.get_type(), Ok(ValueType::Undefined | ValueType::Null)))
        {
            tracing::warn!(
                "getStreamsClient: the client already exists; the config given is ignored"
            );
        }
        return Ok(existing);
    }
    let input = error::settle(env, opt_object_arg::<StreamsClientConfig>(config, "config"))?;
    let client = StreamsClient::create(env, input)?;
    let value = unsafe {
        let raw = ToNapiValue::to_napi_value(env.raw(), client)?;
        Unknown::from_raw_unchecked(env.raw(), raw)
    };
    runtime.set_singleton(env, value)?;
    Ok(value)
}

/// Routes log records to `logger` (for example pino) instead of stderr; `null` restores
/// stderr. Records are objects with `timestamp`, `level`, `message`, `target` and fields
/// such as `stream` and `id`. Process-wide.
#[napi(
    catch_unwind,
    ts_args_type = "logger?: ((record: Record<string, unknown>) => void) | null"
)]
pub fn set_logger(env: Env, logger: Option<Unknown>) -> Result<()> {
    let logger =
        logger.filter(|l| !matches!(l.get_type(), Ok(ValueType::Undefined | ValueType::Null)));
    match logger {
        None => logging::set_sink(None),
        Some(f) => {
            if f.get_type()? != ValueType::Function {
                return Err(error::to_js(
                    &env,
                    &crate::error::Error::invalid("logger", "expected a function or null"),
                ));
            }
            let wrapped = env_data(&env)?.runtime.logger(&env, f)?;
            logging::set_sink(Some(wrapped))
        }
    }
}
