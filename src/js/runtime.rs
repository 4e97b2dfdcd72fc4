//! The addon's own JavaScript (`runtime/*.js`), compiled once per environment, and typed
//! handles to its functions.
//!
//! What lives in JavaScript and why: JSON.stringify with bigints (V8 does it faster than
//! anything built from Rust), the batch trampolines that call user callbacks one message at a
//! time, the per-client delivery hub that parses each read once for every subscription, the
//! async iterators (a protocol of JavaScript objects), and the process-wide singleton slot.

use napi::bindgen_prelude::*;

use crate::error::Error as CoreError;

/// The source of the JavaScript half of the addon: one script that evaluates the pieces in
/// order, each a function expression given what the earlier ones returned, and merges what
/// they return. `__test__/runtime.spec.ts` composes the same files the same way.
const RUNTIME_JS: &str = concat!(
    "(function streamcastRuntime() {\n\"use strict\";\nconst runtime = {};\nfor (const piece of [\n",
    include_str!("runtime/json.js"),
    ",\n",
    include_str!("runtime/trampoline.js"),
    ",\n",
    include_str!("runtime/deliveries.js"),
    ",\n",
    include_str!("runtime/iterators.js"),
    ",\n",
    include_str!("runtime/process.js"),
    ",\n",
    include_str!("runtime/tracing.js"),
    "]) Object.assign(runtime, piece(runtime));\nreturn runtime;\n})()\n//# sourceURL=streamcast/runtime.js\n"
);

/// `consumeIterator(client, stream, group, consumer, options)`.
type ConsumeArgs<'a> = (
    Unknown<'a>,
    Unknown<'a>,
    Unknown<'a>,
    Unknown<'a>,
    Option<Unknown<'a>>,
);

/// The functions of the runtime's JavaScript, compiled once per env.
pub struct Runtime {
    stringify: FunctionRef<Unknown<'static>, Unknown<'static>>,
    stringify_lines: FunctionRef<Unknown<'static>, Unknown<'static>>,
    create_deliveries: FunctionRef<(), Object<'static>>,
    stream_iterator: FunctionRef<
        FnArgs<(Unknown<'static>, Unknown<'static>, Option<Unknown<'static>>)>,
        Unknown<'static>,
    >,
    consume_iterator: FunctionRef<FnArgs<ConsumeArgs<'static>>, Unknown<'static>>,
    get_singleton: FunctionRef<(), Unknown<'static>>,
    set_singleton: FunctionRef<Unknown<'static>, ()>,
    patch_exports: FunctionRef<Object<'static>, ()>,
    logger: FunctionRef<Unknown<'static>, Unknown<'static>>,
}

fn function<Args: JsValuesTupleIntoVec, Ret: FromNapiValue>(
    obj: &Object,
    name: &str,
) -> Result<FunctionRef<Args, Ret>> {
    obj.get_named_property::<Function<Args, Ret>>(name)?
        .create_ref()
}

impl Runtime {
    /// Evaluates the runtime's JavaScript in `env`.
    pub fn compile(env: &Env) -> Result<Self> {
        let obj: Object = env.run_script(RUNTIME_JS)?;
        Ok(Runtime {
            stringify: function(&obj, "stringify")?,
            stringify_lines: function(&obj, "stringifyLines")?,
            create_deliveries: function(&obj, "createDeliveries")?,
            stream_iterator: function(&obj, "streamIterator")?,
            consume_iterator: function(&obj, "consumeIterator")?,
            get_singleton: function(&obj, "getSingleton")?,
            set_singleton: function(&obj, "setSingleton")?,
            patch_exports: function(&obj, "patchExports")?,
            logger: function(&obj, "logger")?,
        })
    }

    /// `JSON.stringify` with bigints as decimal strings: the JSON text, or why `v` has no
    /// JSON form.
    pub fn stringify(
        &self,
        env: &Env,
        v: Unknown,
    ) -> Result<std::result::Result<String, CoreError>> {
        let out = self.stringify.borrow_back(env)?.call(v)?;
        if out.get_type()? == ValueType::String {
            return Ok(Ok(unsafe { out.cast::<String>() }?));
        }
        let why: String = unsafe { out.cast::<Array>() }?.get(0)?.unwrap_or_default();
        Ok(Err(CoreError::invalid(
            "data",
            format!("cannot be serialized to JSON: {why}"),
        )))
    }

    /// [`Runtime::stringify`] for every item of the array `items`, in one call: the JSON
    /// texts, or the index and reason of the first item that has no JSON form.
    pub fn stringify_all(
        &self,
        env: &Env,
        items: Unknown,
        len: u32,
    ) -> Result<std::result::Result<Vec<String>, (u32, String)>> {
        if len == 0 {
            return Ok(Ok(Vec::new()));
        }
        let out = self.stringify_lines.borrow_back(env)?.call(items)?;
        if out.get_type()? == ValueType::String {
            let lines = unsafe { out.cast::<String>() }?;
            return Ok(Ok(lines.split('\n').map(str::to_owned).collect()));
        }
        let failed: Array = unsafe { out.cast() }?;
        let index: u32 = failed.get(0)?.unwrap_or_default();
        let why: String = failed.get(1)?.unwrap_or_default();
        Ok(Err((index, why)))
    }

    /// A new delivery hub (`createDeliveries()`), one per client.
    pub fn create_deliveries<'e>(&self, env: &'e Env) -> Result<Object<'e>> {
        self.create_deliveries.borrow_back(env)?.call(())
    }

    /// `client.stream(stream, options)`: the async iterator.
    pub fn stream_iterator<'e>(
        &self,
        env: &'e Env,
        client: Unknown,
        stream: Unknown,
        options: Option<Unknown>,
    ) -> Result<Unknown<'e>> {
        self.stream_iterator
            .borrow_back(env)?
            .call(FnArgs::from((client, stream, options)))
    }

    /// `client.consume(stream, group, consumer, options)`: the async iterator.
    pub fn consume_iterator<'e>(&self, env: &'e Env, args: ConsumeArgs) -> Result<Unknown<'e>> {
        self.consume_iterator
            .borrow_back(env)?
            .call(FnArgs::from(args))
    }

    /// The process-wide client kept on `globalThis`, or `undefined`.
    pub fn get_singleton<'e>(&self, env: &'e Env) -> Result<Unknown<'e>> {
        self.get_singleton.borrow_back(env)?.call(())
    }

    /// Keeps `client` on `globalThis` as the process-wide client.
    pub fn set_singleton(&self, env: &Env, client: Unknown) -> Result<()> {
        self.set_singleton.borrow_back(env)?.call(client)
    }

    /// Adjusts the exports (rest arguments of `acknowledgeMessages`).
    pub fn patch_exports(&self, env: &Env, exports: Object) -> Result<()> {
        self.patch_exports.borrow_back(env)?.call(exports)
    }

    /// Wraps a logger function so that it receives parsed records and cannot throw.
    pub fn logger<'e>(&self, env: &'e Env, f: Unknown) -> Result<Function<'e, String, ()>> {
        let wrapped: Unknown = self.logger.borrow_back(env)?.call(f)?;
        unsafe { wrapped.cast() }
    }
}
