// Process-wide pieces: the singleton slot on globalThis, the exports patch, the logger wrapper.
// One piece of the addon's JavaScript: src/js/runtime.rs evaluates the pieces in order, each
// given what the earlier ones returned.
(function streamcastProcess(runtime) {
  "use strict";

  // Kept on globalThis so that a module evaluated again (next dev's hot reload, a bundler that
  // loads two copies) finds the same client.
  const CLIENT_KEY = Symbol.for("streamcast.client");

  function getSingleton() {
    return globalThis[CLIENT_KEY];
  }

  function setSingleton(client) {
    Object.defineProperty(globalThis, CLIENT_KEY, { value: client, writable: true, configurable: true, enumerable: false });
  }

  // ---- exports patch ---------------------------------------------------------------------

  // Lets acknowledgeMessages(stream, group, ...ids) take its ids as rest arguments: the native
  // method receives them as one array.
  function patchExports(exports) {
    const proto = exports.StreamsClient.prototype;
    const native = proto.acknowledgeMessages;
    Object.defineProperty(proto, "acknowledgeMessages", {
      value: function acknowledgeMessages(stream, group, ...ids) {
        return native.call(this, stream, group, ids.length === 1 && Array.isArray(ids[0]) ? ids[0] : ids);
      },
      writable: true,
      configurable: true,
    });
    // The tracing wrappers (runtime/tracing.js, evaluated after this piece) go on top.
    runtime.patchTracing(exports);
  }

  // ---- logging ---------------------------------------------------------------------------

  // Wraps a logger so that it receives parsed records and can never throw into the addon.
  function logger(fn) {
    return function streamcastLogRecord(line) {
      try {
        fn(JSON.parse(line));
      } catch {
        // A logger that throws loses that record only.
      }
    };
  }

  return { getSingleton, setSingleton, patchExports, logger };
})
