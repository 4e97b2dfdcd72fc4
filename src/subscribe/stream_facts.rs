//! Where a stream is, without its payloads: `XINFO STREAM` run inside a small Lua script that
//! returns only the fields the position checks, `"$"` resolution and status refreshes read.
//!
//! `XINFO STREAM` always carries the first and last entries with all their fields: with
//! 1 MiB payloads, an idle reader's checks downloaded about 32 MiB every few seconds
//! (REVIEW A8). The script keeps the reply to a few numbers whatever the payloads, and its
//! shape is the one `codec::parse_stream_info` reads (the first entry's fields left empty).
//! `EVAL` (not `EVALSHA`) keeps it one self-contained command per stream: routable by its key
//! in a cluster, pipelined, and never `NOSCRIPT` after a restart or a failover.

use redis::Value;

use crate::codec::{parse_stream_info, StreamInfo};
use crate::error::Result;

/// Nil for a missing key, `WRONGTYPE` for another type, else the fields below. A refusal
/// inside a script comes back as a plain `ERR`: the ACL check up front keeps the server's
/// `NOPERM` for the caller.
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
return out
";

/// The command that asks where `stream` is.
pub(crate) fn stream_facts_cmd(stream: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(SCRIPT).arg(1).arg(stream);
    cmd
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
