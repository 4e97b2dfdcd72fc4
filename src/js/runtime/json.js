// JSON.stringify with bigints as decimal strings (V8 does it faster than anything built
// from Rust), and how an error is described in a report.
// One piece of the addon's JavaScript: src/js/runtime.rs evaluates the pieces in order, each
// given what the earlier ones returned.
(function streamcastJson() {
  "use strict";

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

  return { stringify, stringifyLines, describe };
})
