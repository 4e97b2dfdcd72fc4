//! Where a stream is, without its payloads: `XINFO STREAM` run inside a small Lua script that
//! returns only the fields the position checks, `"$"` resolution and status refreshes read.
//!
//! `XINFO STREAM` always carries the first and last entries with all their fields: with
//! 1 MiB payloads, an idle reader's checks downloaded about 32 MiB every few seconds
//! (REVIEW A8). The script keeps the reply to a few numbers whatever the payloads, and its
//! shape is the one `codec::parse_stream_info` reads (the first entry's fields left empty).
//! `EVAL` (not `EVALSHA`) keeps it one self-contained command per stream: routable by its key
//! in a cluster, pipelined, and never `NOSCRIPT` after a restart or a failover.
//!
//! A position check also asks, in the same script (so in the same instant), how many entries
//! follow each subscription's cursor, up to [`COUNT_AFTER_CAP`]: with nothing after the cursor
//! removed, the entries ever added minus those is the position's entry number, which a
//! subscription that trails its stream cannot learn otherwise (see `positions::verdict`).

use redis::Value;

use crate::codec::{parse_stream_info, StreamId, StreamInfo};
use crate::error::Result;

/// Nil for a missing key, `WRONGTYPE` for another type, else the fields below. A refusal
/// inside a script comes back as a plain `ERR`: the ACL check up front keeps the server's
/// `NOPERM` for the caller.
///
/// `ARGV[1]`, when given, is one more than the most entries counted after a cursor,
/// `ARGV[2]` the bytes of fields and values the count may copy, and each further argument a
/// cursor, the nearest the stream's end first: `after-cursors` then lists, per cursor, how
/// many entries follow it, or `-1` where the server refused the range (as for the largest id
/// there is, after which nothing can follow). The count walks from the stream's end one entry
/// at a time, each entry once for all cursors, and stops at the first cursor it cannot finish
/// within `ARGV[1]` entries or `ARGV[2]` bytes (copied, plus the one entry that passed them):
/// that cursor and the ones after it get no count. Entries are copied to be counted, and one
/// at a time the bytes copied are known before the next, whatever sizes the stream mixes. A
/// user who may not run `XREVRANGE` gets no counts, not an error.
const SCRIPT: &str = r"
for _, cmd in ipairs({ { 'TYPE' }, { 'XINFO', 'STREAM' } }) do
  cmd[#cmd + 1] = KEYS[1]
  if not redis.acl_check_cmd(unpack(cmd)) then
    return redis.error_reply('NOPERM this user has no permissions to run the ' ..
      string.lower(table.concat(cmd, '|', 1, #cmd - 1)) .. ' command on the stream')
  end
end
local t = redis.call('TYPE', KEYS[1])['ok']
if t == 'none' then return false end
if t ~= 'stream' then
  return redis.error_reply('WRONGTYPE Operation against a key holding the wrong kind of value')
end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local out = {}
for i = 1, #info, 2 do
  local k, v = info[i], info[i + 1]
  if k == 'last-generated-id' or k == 'max-deleted-entry-id' or k == 'entries-added'
    or k == 'length' then
    out[#out + 1] = k
    out[#out + 1] = v
  elseif k == 'first-entry' and v then
    out[#out + 1] = k
    out[#out + 1] = { v[1], {} }
  end
end
if #ARGV > 2 and redis.acl_check_cmd('XREVRANGE', KEYS[1], '+', '-') then
  local limit, budget = tonumber(ARGV[1]), tonumber(ARGV[2])
  local counted, bytes, upper, after = 0, 0, '+', {}
  for i = 3, #ARGV do
    local low, n = '(' .. ARGV[i], nil
    while counted < limit and bytes <= budget do
      local r = redis.pcall('XREVRANGE', KEYS[1], upper, low, 'COUNT', 1)
      if r['err'] then n = -1 break end
      if #r == 0 then n = counted break end
      counted = counted + 1
      for _, f in ipairs(r[1][2]) do bytes = bytes + #f end
      upper = '(' .. r[1][1]
    end
    if not n then break end
    after[#after + 1] = n
  end
  out[#out + 1] = 'after-cursors'
  out[#out + 1] = after
end
return out
";

/// Entries after a cursor that a position check counts, at most: a reader a few reads
/// behind its stream is within it, and the script's cost stays bounded (`XREVRANGE` copies
/// the entries it counts, payloads included; one check copies at most this many plus one,
/// whatever the number of cursors).
pub(crate) const COUNT_AFTER_CAP: u64 = 64;

/// Bytes of entries (fields and values) one check's count copies, at most (plus the entry
/// that passes it): a script copies about 9 ms per MiB on the server (Redis 7.0, this
/// machine), and blocks it meanwhile. A subscription trailing by entries of 1 KB is counted up
/// to [`COUNT_AFTER_CAP`] entries, by entries of 16 KiB up to 3, by entries of 64 KiB or more
/// not at all (a cursor at the end needs no count).
pub(crate) const COUNT_AFTER_BYTES: u64 = 64 * 1024;

/// Distinct cursors of one stream whose following entries one check counts, at most
/// (subscriptions of a stream are read together, so they rarely stand apart).
pub(crate) const COUNTED_CURSORS: usize = 4;

/// The command that asks where `stream` is.
pub(crate) fn stream_facts_cmd(stream: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(SCRIPT).arg(1).arg(stream);
    cmd
}

/// The command that asks where `stream` is and how many entries follow each of `cursors`
/// (see [`parse_counts_after`]), which come the nearest the stream's end first.
pub(crate) fn stream_facts_after_cmd(stream: &str, cursors: &[StreamId]) -> redis::Cmd {
    let mut cmd = stream_facts_cmd(stream);
    if !cursors.is_empty() {
        cmd.arg(COUNT_AFTER_CAP + 1).arg(COUNT_AFTER_BYTES);
        for c in cursors {
            cmd.arg(c);
        }
    }
    cmd
}

/// The entries after each cursor of [`stream_facts_after_cmd`], as `(cursor, count)`: only
/// the counts the script could make (it may not run `XREVRANGE`, or the server refused the
/// range) and that stayed within
/// [`COUNT_AFTER_CAP`].
pub(crate) fn parse_counts_after(v: &Value, cursors: &[StreamId]) -> Vec<(StreamId, u64)> {
    let Value::Array(flat) = v else {
        return Vec::new();
    };
    let counts = flat.chunks(2).find_map(|kv| match kv {
        [Value::BulkString(k), Value::Array(counts)] if k == b"after-cursors" => Some(counts),
        _ => None,
    });
    cursors
        .iter()
        .zip(counts.into_iter().flatten())
        .filter_map(|(c, n)| match n {
            Value::Int(n) => u64::try_from(*n)
                .ok()
                .filter(|&n| n <= COUNT_AFTER_CAP)
                .map(|n| (*c, n)),
            _ => None,
        })
        .collect()
}

/// Reads the script's reply: `None` for a missing key.
///
/// # Errors
/// [`crate::Error::Protocol`] for a reply of another shape.
pub(crate) fn parse_stream_facts(v: &Value) -> Result<Option<StreamInfo>> {
    match v {
        Value::Nil => Ok(None),
        v => parse_stream_info(v).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn counts_after_cursors_are_read_in_order_and_capped() {
        // Nearest the end first, as sent; the script's counts add up from the end.
        let cursors: Vec<StreamId> = ["9-0", "7-0", "5-0", "3-0"]
            .map(|c| c.parse().unwrap())
            .into();
        let reply = Value::Array(vec![
            bulk("length"),
            Value::Int(10),
            bulk("after-cursors"),
            Value::Array(vec![
                Value::Int(0),
                Value::Int(-1),
                Value::Int(COUNT_AFTER_CAP as i64 + 1),
            ]),
        ]);
        // A refused range (-1) and a count past the cap say nothing, and keep their places;
        // the script stopped before the last cursor.
        assert_eq!(parse_counts_after(&reply, &cursors), vec![(cursors[0], 0)]);
        let reply = Value::Array(vec![
            bulk("after-cursors"),
            Value::Array(vec![Value::Int(-1), Value::Int(2), Value::Int(5)]),
        ]);
        assert_eq!(
            parse_counts_after(&reply, &cursors),
            vec![(cursors[1], 2), (cursors[2], 5)]
        );
        // No counts (the user may not run XREVRANGE): nothing is known.
        let without = Value::Array(vec![bulk("length"), Value::Int(10)]);
        assert!(parse_counts_after(&without, &cursors).is_empty());
        let cmd = stream_facts_after_cmd("s", &cursors[..1]);
        let args: Vec<Vec<u8>> = cmd
            .args_iter()
            .filter_map(|a| match a {
                redis::Arg::Simple(b) => Some(b.to_vec()),
                _ => None,
            })
            .collect();
        assert_eq!(
            args[2..],
            [
                b"1".to_vec(),
                b"s".to_vec(),
                b"65".to_vec(),
                b"65536".to_vec(),
                b"9-0".to_vec()
            ]
        );
    }
}
