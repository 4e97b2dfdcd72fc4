// The JavaScript that runs inside the streamcast addon. src/js/mod.rs evaluates this file once
// per JavaScript environment (main thread or worker) and keeps the object it returns; the
// Rust binding calls these functions. It is a single expression so that it can be evaluated
// as is, and a test can load it on its own (__test__/runtime.spec.ts) without the addon.
//
// What lives here and why: JSON.stringify with bigints (V8 does it faster than anything
// built from Rust), the batch trampolines that call user callbacks one message at a time,
// the per-client delivery hub that parses each read once for every subscription, the async
// iterators (a protocol of JavaScript objects), and the process-wide singleton slot.
(function streamcastRuntime() {
  "use strict";

  // ---- JSON ------------------------------------------------------------------------------

  function bigintReplacer(_key, value) {
    return typeof value === "bigint" ? value.toString() : value;
  }

  function describe(error) {
    try {
      return error instanceof Error ? String(error.stack || error) : String(error);
    } catch {
      return "unprintable error";
    }
  }

  // The JSON text of `value`, or [reason] when it has none. Plain JSON.stringify first: a
  // replacer costs a call per value (about 1.5 µs per 200-byte object); only a value it
  // refuses (a bigint, say) is tried again with the bigint replacer (so a getter or toJSON of
  // such a value runs twice).
  function stringify(value) {
    let text;
    try {
      text = JSON.stringify(value);
    } catch {
      try {
        text = JSON.stringify(value, bigintReplacer);
      } catch (e) {
        return [e && e.message ? e.message : String(e)];
      }
    }
    return text === undefined ? [typeof value + " cannot be represented as JSON"] : text;
  }

  // Every item's JSON text joined by newlines (JSON.stringify never writes a raw newline), or
  // [index, reason] for the first item that has no JSON form.
  function stringifyLines(items) {
    const out = new Array(items.length);
    for (let i = 0; i < items.length; i++) {
      const text = stringify(items[i]);
      if (typeof text !== "string") return [i, text[0]];
      out[i] = text;
    }
    return out.join("\n");
  }

  // ---- delivering batches to one callback ------------------------------------------------

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

  // ---- the delivery hub of one client ----------------------------------------------------

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

  // ---- async iterators ---------------------------------------------------------------------

  const DEFAULT_HIGH_WATER_MARK = 64;

  function highWaterMarkOf(value) {
    if (value === undefined || value === null) return DEFAULT_HIGH_WATER_MARK;
    if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > 1e6) {
      const e = new Error(`invalid highWaterMark: ${String(value)} is not a whole number between 1 and 1000000`);
      e.code = "ERR_INVALID_ARG";
      throw e;
    }
    return value;
  }

  function checkSignal(signal) {
    if (signal === undefined || signal === null) return null;
    if (typeof signal !== "object" || typeof signal.aborted !== "boolean" || typeof signal.addEventListener !== "function") {
      const e = new TypeError("invalid signal: expected an AbortSignal");
      e.code = "ERR_INVALID_ARG";
      throw e;
    }
    return signal;
  }

  // An async iterator over the messages a callback-based loop delivers, with backpressure:
  // once `highWaterMark` messages wait unread, the callback returns a Promise that resolves
  // when the loop takes one, so the trampoline (and behind it the reader) stops there.
  // `start(onMessage)` starts the loop and resolves to its stop function.
  function iterator(start, signal, highWaterMark, decorate) {
    const buffer = [];
    let waiter = null; // { resolve, reject } of a next() that found nothing
    let resume = null; // resolves the callback that is waiting for room
    let ended = false;
    let failure = null;
    let started = false; // the loop's start has settled (successfully or not)
    let stopping = null;

    function settleWaiter() {
      if (waiter === null) return;
      const w = waiter;
      if (buffer.length > 0) {
        waiter = null;
        w.resolve({ value: take(), done: false });
      } else if (failure !== null) {
        waiter = null;
        w.reject(failure);
      } else if (ended) {
        waiter = null;
        w.resolve({ value: undefined, done: true });
      }
    }

    function take() {
      const value = buffer.shift();
      if (resume !== null && buffer.length < highWaterMark) {
        const r = resume;
        resume = null;
        r();
      }
      return value;
    }

    function onMessage(message) {
      if (ended) return undefined;
      buffer.push(decorate(message));
      settleWaiter();
      if (buffer.length >= highWaterMark) return new Promise((r) => (resume = r));
      return undefined;
    }
    // The addon stopped the loop (unsubscribe, stopConsumer, disconnect, or a start that
    // failed). While the start is still pending, its outcome decides: a failure must reach
    // next() as an error, not as the end.
    let stoppedByAddon = false;
    onMessage[ON_STOP] = () => {
      stoppedByAddon = true;
      if (started) void end(false);
    };

    // Ends the iteration; `stop` also stops the loop (once its start settled), unless the
    // addon stopped it already.
    function end(stop) {
      if (ended) return stopping ?? Promise.resolve();
      ended = true;
      if (signal !== null) signal.removeEventListener("abort", onAbort);
      buffer.length = 0;
      if (resume !== null) {
        resume();
        resume = null;
      }
      settleWaiter();
      stopping = stop
        ? starting.then((stopLoop) => (stopLoop !== null && !stoppedByAddon ? stopLoop() : undefined))
        : Promise.resolve();
      return stopping;
    }

    function onAbort() {
      void end(true).catch(() => {});
    }

    // Resolves to the loop's stop function, or null when it never started.
    let starting;
    if (signal !== null && signal.aborted) {
      ended = true;
      started = true;
      starting = Promise.resolve(null);
    } else {
      if (signal !== null) signal.addEventListener("abort", onAbort, { once: true });
      starting = Promise.resolve()
        .then(() => start(onMessage))
        .then(
          (stopLoop) => {
            started = true;
            if (stoppedByAddon) void end(false);
            return stopLoop;
          },
          (e) => {
            started = true;
            if (ended) return null; // return() came first: the loop is over either way
            failure = e;
            ended = true;
            if (signal !== null) signal.removeEventListener("abort", onAbort);
            settleWaiter();
            return null;
          },
        );
    }

    return {
      next() {
        if (buffer.length > 0) return Promise.resolve({ value: take(), done: false });
        if (failure !== null) {
          const f = failure;
          failure = null;
          return Promise.reject(f);
        }
        if (ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => (waiter = { resolve, reject }));
      },
      async return(value) {
        await end(true);
        return { value, done: true };
      },
      async throw(error) {
        await end(true);
        throw error;
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
  }

  // client.stream(stream, options): messages of a subscription.
  function streamIterator(client, stream, options) {
    const { signal, highWaterMark, ...subscribeOptions } = options ?? {};
    const abort = checkSignal(signal);
    const hwm = highWaterMarkOf(highWaterMark);
    return iterator(
      async (onMessage) => {
        const subscription = await client.subscribe(stream, onMessage, subscribeOptions);
        return () => subscription.unsubscribe();
      },
      abort,
      hwm,
      (message) => message,
    );
  }

  // client.consume(stream, group, consumer, options): messages of a consumer, each with ack().
  function consumeIterator(client, stream, group, consumer, options) {
    const { signal, highWaterMark, ...consumeOptions } = options ?? {};
    for (const key of ["autoAck", "concurrency"]) {
      if (key in consumeOptions) {
        const e = new Error(
          `invalid options: ${key} is not an option of consume(): its messages are acknowledged with ack(), one at a time (use consumeFromGroup for ${key})`,
        );
        e.code = "ERR_INVALID_ARG";
        throw e;
      }
    }
    const abort = checkSignal(signal);
    const hwm = highWaterMarkOf(highWaterMark);
    // Acks of one tick go out in one XACK.
    let queued = [];
    let flush = null;
    function ack(id) {
      queued.push(id);
      if (flush === null) {
        flush = Promise.resolve().then(() => {
          const ids = queued;
          queued = [];
          flush = null;
          return client.acknowledgeMessages(stream, group, ids);
        });
      }
      return flush.then(() => undefined);
    }
    return iterator(
      async (onMessage) => {
        await client.consumeFromGroup(stream, group, consumer, onMessage, { ...consumeOptions, autoAck: false });
        return () => client.stopConsumer(stream, group, consumer);
      },
      abort,
      hwm,
      (message) => {
        // A consumer's read goes to this consumer alone, so the message object is its own.
        const id = message.id;
        message.ack = () => ack(id);
        return message;
      },
    );
  }

  // ---- the process-wide client ------------------------------------------------------------

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

  return {
    stringify,
    stringifyLines,
    trampoline,
    createDeliveries,
    streamIterator,
    consumeIterator,
    getSingleton,
    setSingleton,
    patchExports,
    logger,
  };
})()
//# sourceURL=streamcast/runtime.js
