// The async iterators of client.stream() and client.consume(), with backpressure.
// One piece of the addon's JavaScript: src/js/runtime.rs evaluates the pieces in order, each
// given what the earlier ones returned.
(function streamcastIterators(runtime) {
  "use strict";

  const { ON_STOP } = runtime;

  // Marks the iterators' own callbacks, which only buffer a message: the tracing wrappers
  // (runtime/tracing.js) leave them alone, and the iterator traces the loop's handling of each
  // message instead (runtime.traceYield), from when it yields it.
  const UNTRACED = Symbol("streamcast.untraced");

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
  // `decorate(message, handled)` prepares a message as it arrives (`handled(message)` tells
  // that the loop is done with it, e.g. on ack()); `trace(message)` starts the trace of its
  // handling when it is yielded and returns the function that ends it (or null).
  function iterator(start, signal, highWaterMark, decorate, trace) {
    const buffer = [];
    let waiter = null; // { resolve, reject } of a next() that found nothing
    let resume = null; // resolves the callback that is waiting for room
    let ended = false;
    let failure = null;
    let started = false; // the loop's start has settled (successfully or not)
    let stopping = null;
    let current = null; // the message the loop is handling (the last one yielded)
    let handling = null; // ends the trace of `current`'s handling

    // The loop is done with `current`: it asked for the next message, acknowledged it, or
    // ended. Its trace covers that time, not the time it waited in the buffer.
    function settle() {
      current = null;
      if (handling === null) return;
      const h = handling;
      handling = null;
      h();
    }

    function handled(message) {
      if (message === current) settle();
    }

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
      settle();
      current = value;
      handling = trace(value);
      return value;
    }

    function onMessage(message) {
      if (ended) return undefined;
      buffer.push(decorate(message, handled));
      settleWaiter();
      if (buffer.length >= highWaterMark) return new Promise((r) => (resume = r));
      return undefined;
    }
    // The addon stopped the loop (unsubscribe, stopConsumer, disconnect, or a start that
    // failed). While the start is still pending, its outcome decides: a failure must reach
    // next() as an error, not as the end.
    let stoppedByAddon = false;
    onMessage[UNTRACED] = true;
    onMessage[ON_STOP] = () => {
      stoppedByAddon = true;
      if (started) void end(false);
    };

    // Ends the iteration; `stop` also stops the loop (once its start settled), unless the
    // addon stopped it already. The loop is done with the message it was handling, however
    // the iteration ended (return(), the signal, unsubscribe, disconnect).
    function end(stop) {
      settle();
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
            settle();
            if (signal !== null) signal.removeEventListener("abort", onAbort);
            settleWaiter();
            return null;
          },
        );
    }

    return {
      next() {
        settle();
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
        settle();
        await end(true);
        return { value, done: true };
      },
      async throw(error) {
        settle();
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
      (message) => runtime.traceYield(client, "deliver", {}, message),
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
      (message, handled) => {
        // A consumer's read goes to this consumer alone, so the message object is its own.
        const id = message.id;
        message.ack = () => {
          handled(message);
          return ack(id);
        };
        return message;
      },
      (message) => runtime.traceYield(client, "consume", { group, consumer }, message),
    );
  }

  return { streamIterator, consumeIterator, UNTRACED };
})
