// The per-client delivery hub: parses each read once for every subscription that receives it.
// One piece of the addon's JavaScript: src/js/runtime.rs evaluates the pieces in order, each
// given what the earlier ones returned.
(function streamcastDeliveries(runtime) {
  "use strict";

  const { trampoline, Undeliverable } = runtime;

  // Called when the addon stops a loop (unsubscribe, stopConsumer, disconnect): lets an
  // iterator built on a callback end with it.
  const ON_STOP = Symbol("streamcast.onStop");

  // The async context every delivery runs in: the one current when the addon was loaded (this
  // script runs once per environment, at the first require or import). Without it a callback
  // would run in the context of whatever made the client's delivery threadsafe function (its
  // first subscribe: in a web app, a request whose AsyncLocalStorage stores, a user or a
  // transaction, would then be visible in every later delivery), and what a callback sees
  // would depend on which call happened to come first. Loaded at start-up, outside any
  // request, this context holds none of the app's stores. One resource for all clients: it is
  // never destroyed, and entering it costs the before/after hooks only when async_hooks are on.
  // process.getBuiltinModule: Node >= 20.16; on older versions deliveries keep the context of
  // the threadsafe function.
  const asyncHooks =
    typeof process === "object" && process !== null && typeof process.getBuiltinModule === "function"
      ? process.getBuiltinModule("node:async_hooks")
      : undefined;
  const deliveryScope =
    asyncHooks !== undefined && typeof asyncHooks.AsyncResource === "function"
      ? new asyncHooks.AsyncResource("streamcast.delivery", { requireManualDestroy: true })
      : null;

  // Every subscription and consumer loop of one client, keyed by a number the addon picks.
  // The addon hands over all batches that arrived since the JavaScript thread last woke up in
  // one `dispatch` call; a read that several subscriptions receive is parsed once and the
  // same message objects go to each of them (as an EventEmitter passes one object to every
  // listener).
  function createDeliveries() {
    const loops = new Map();
    const reads = new Map();

    function add(key, callback, concurrency) {
      const loop = trampoline(callback, concurrency);
      loop.onStop = typeof callback[ON_STOP] === "function" ? callback[ON_STOP] : null;
      loops.set(key, loop);
    }

    function stop(key) {
      const loop = loops.get(key);
      if (loop === undefined) return false;
      loops.delete(key);
      loop.stop();
      if (loop.onStop !== null) {
        try {
          loop.onStop();
        } catch {
          // An iterator's own bookkeeping; nothing to report to.
        }
      }
      return true;
    }

    // A read's JSON: one text, or (for a read too long for one string) its parts in order,
    // each a text or [reason, id, id, ...] for entries that could not cross.
    function parseRead(json) {
      if (typeof json === "string") return JSON.parse(json);
      const batch = [];
      for (const part of json) {
        if (typeof part === "string") {
          for (const message of JSON.parse(part)) batch.push(message);
        } else {
          for (let k = 1; k < part.length; k++) batch.push(new Undeliverable(part[k], part[0]));
        }
      }
      return batch;
    }

    // released: sequence numbers of reads the addon no longer holds; items: flat
    // [key, seq, json or null, from, ...], json given the first time a read is handed over.
    // Returns one report (or Promise of it) per item. Runs in the delivery scope, and so do
    // the callbacks and every continuation of their batches (Promises take the context they
    // are made in).
    function dispatch(released, items) {
      return deliveryScope === null ? dispatchNow(released, items) : deliveryScope.runInAsyncScope(dispatchNow, null, released, items);
    }

    function dispatchNow(released, items) {
      for (let i = 0; i < released.length; i++) reads.delete(released[i]);
      const out = new Array(items.length / 4);
      for (let i = 0, j = 0; i < items.length; i += 4, j++) {
        const key = items[i];
        const seq = items[i + 1];
        let batch = reads.get(seq);
        if (batch === undefined) {
          const json = items[i + 2];
          if (typeof json !== "string" && !Array.isArray(json)) {
            out[j] = Promise.reject(new Error(`streamcast: read ${seq} is neither cached nor given`));
            continue;
          }
          batch = parseRead(json);
          reads.set(seq, batch);
        }
        const loop = loops.get(key);
        if (loop === undefined) {
          out[j] = ["0"]; // stopped meanwhile: nothing handed over
          continue;
        }
        out[j] = loop.deliver(batch, items[i + 3]);
      }
      return out;
    }

    return { add, stop, dispatch, cached: () => reads.size, size: () => loops.size };
  }

  return { createDeliveries, ON_STOP };
})
