// The per-client delivery hub: parses each read once for every subscription that receives it.
// One piece of the addon's JavaScript: src/js/runtime.rs evaluates the pieces in order, each
// given what the earlier ones returned.
(function streamcastDeliveries(runtime) {
  "use strict";

  const { trampoline, Undeliverable } = runtime;

  // Called when the addon stops a loop (unsubscribe, stopConsumer, disconnect): lets an
  // iterator built on a callback end with it.
  const ON_STOP = Symbol("streamcast.onStop");

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
    // Returns one report (or Promise of it) per item.
    function dispatch(released, items) {
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
