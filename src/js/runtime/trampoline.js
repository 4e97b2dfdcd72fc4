// The batch trampoline: calls one callback a message at a time and reports what failed.
// One piece of the addon's JavaScript: src/js/runtime.rs evaluates the pieces in order, each
// given what the earlier ones returned.
(function streamcastTrampoline(runtime) {
  "use strict";

  const { describe } = runtime;

  // An entry the addon could not hand over (its JSON is longer than a string can be): it is
  // reported as a failed delivery instead of being passed to the callback.
  class Undeliverable {
    constructor(id, reason) {
      this.id = id;
      this.reason = reason;
    }
  }

  function isThenable(value) {
    return value !== null && typeof value === "object" && typeof value.then === "function";
  }

  // The report of one batch: null when every message was handed to the callback and none
  // failed, else [handled count, id, error, id, error, ...] (all strings).
  function report(handled, total, failed) {
    return handled === total && failed.length === 0 ? null : [String(handled), ...failed];
  }

  // Calls `callback` for the messages of each batch, one at a time (a returned Promise is
  // awaited before the next message), or up to `concurrency` at once. Batches may arrive
  // before the previous one finished: they run one after another, in arrival order.
  // `deliver(messages, from)` handles messages[from..] and returns the report, or a Promise
  // of it as soon as a callback returned a thenable. After `stop()` no callback starts.
  function trampoline(callback, concurrency) {
    let stopped = false;
    // The promise of the last batch still running, or null.
    let busy = null;

    // Calls back batch[i], batch[i + 1], ... while the callbacks return plain values:
    // [where it stopped, the thenable that stopped it or null].
    function callFrom(batch, i, failed) {
      for (; i < batch.length && !stopped; i++) {
        const message = batch[i];
        if (message instanceof Undeliverable) {
          failed.push(message.id, message.reason);
          continue;
        }
        try {
          const returned = callback(message);
          if (isThenable(returned)) return [i, returned];
        } catch (e) {
          failed.push(message.id, describe(e));
        }
      }
      return [i, null];
    }

    // Awaits the thenable of message `i`, then goes on from the next message.
    async function finish(batch, from, i, pending, failed) {
      while (pending !== null) {
        try {
          await pending;
        } catch (e) {
          failed.push(batch[i].id, describe(e));
        }
        [i, pending] = callFrom(batch, i + 1, failed);
      }
      return report(i - from, batch.length - from, failed);
    }

    async function concurrent(batch, from, failed) {
      const running = new Set();
      async function one(message) {
        try {
          await callback(message);
        } catch (e) {
          failed.push(message.id, describe(e));
        }
      }
      let i = from;
      for (; i < batch.length && !stopped; i++) {
        if (batch[i] instanceof Undeliverable) {
          failed.push(batch[i].id, batch[i].reason);
          continue;
        }
        const p = one(batch[i]).then(() => running.delete(p));
        running.add(p);
        if (running.size >= concurrency) await Promise.race(running);
      }
      await Promise.all(running);
      return report(i - from, batch.length - from, failed);
    }

    function run(batch, from) {
      const failed = [];
      if (concurrency > 1) return concurrent(batch, from, failed);
      const [i, pending] = callFrom(batch, from, failed);
      return pending === null ? report(i - from, batch.length - from, failed) : finish(batch, from, i, pending, failed);
    }

    function deliver(batch, from) {
      const go = () => run(batch, from);
      let result;
      if (busy === null) {
        try {
          result = go();
        } catch (e) {
          result = Promise.reject(e);
        }
        if (!(result instanceof Promise)) return result;
      } else {
        result = busy.then(go, go);
      }
      busy = result;
      const idle = () => {
        if (busy === result) busy = null;
      };
      result.then(idle, idle);
      return result;
    }

    function stop() {
      stopped = true;
    }

    return { deliver, stop };
  }

  return { trampoline, Undeliverable };
})
