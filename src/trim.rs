//! XTRIM that never deletes work, the set of streams a client publishes to, and the
//! auto-trim task.
//!
//! A consumer group's entries are work: an entry the group has not had delivered yet, or has
//! delivered and not seen acknowledged, is a task nobody has done. So a trim (automatic or
//! `trimStream`) removes at most the entries every group of the stream is done with: it
//! stops at the oldest id some group still needs (its first pending entry, or else the entry
//! after its last delivered one). A small Lua script does this atomically, so that nothing a
//! consumer reads meanwhile slips between the check and the trim.
//!
//! Redis 8.2 added `XTRIM … ACKED`, which keeps whatever a group has not had delivered and
//! acknowledged. Exact trims use it there (it may also remove acknowledged entries after a
//! pending one, which the rule allows). Approximate trims do not: on 8.2.3
//! `XTRIM s MAXLEN ~ 100 ACKED` removes nothing, even from a stream without groups, while
//! `~` without `ACKED` removes whole nodes; so they take the script on every server, which
//! trims with `~` to the threshold or to the oldest id a group needs.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::codec::{check_stream_name, StreamId};
use crate::config::whole_number;
use crate::connection::CommandConn;
use crate::error::{refusal, Error, Result};

/// Streams remembered for automatic trimming, at most; beyond, the least recently used one
/// is forgotten (it is trimmed again once it is published to again).
const MAX_TOUCHED: usize = 100_000;

/// A stream not used for this long (or two trim periods, if longer) is forgotten: nobody
/// publishes to it, so it does not grow.
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// What a trim keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrimTo {
    /// At most this many entries (`MAXLEN`).
    MaxLen(u64),
    /// Only entries with an id at or above this one (`MINID`).
    MinId(StreamId),
}

/// A trim request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trim {
    /// What to keep.
    pub to: TrimTo,
    /// `~`: let Redis remove whole macro-nodes only, which is much cheaper; the stream may
    /// keep a few more entries than asked.
    pub approximate: bool,
    /// Never remove an entry a consumer group of the stream has not had delivered and
    /// acknowledged. Defaults to true.
    pub keep_unacknowledged: bool,
}

/// The options of `trimStream` (and the trimming of `publishMessage`) as a caller gives them.
#[derive(Debug, Clone, Default)]
pub struct TrimInput {
    /// `MAXLEN`.
    pub max_len: Option<f64>,
    /// `MINID`.
    pub min_id: Option<String>,
    /// `~` (default) or `=`.
    pub approximate: Option<bool>,
    /// See [`Trim::keep_unacknowledged`].
    pub keep_unacknowledged: Option<bool>,
}

impl Trim {
    /// Validates a caller's trim options; `Ok(None)` when neither `maxLen` nor `minId` is
    /// given.
    ///
    /// # Errors
    /// [`Error::InvalidArg`] for both `maxLen` and `minId`, a negative or fractional
    /// `maxLen`, or a `minId` that is not a stream id.
    pub fn from_input(input: TrimInput) -> Result<Option<Trim>> {
        let to = match (input.max_len, input.min_id) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid("maxLen", "give maxLen or minId, not both"))
            }
            (Some(n), None) => TrimTo::MaxLen(whole_number("maxLen", n, 0, i64::MAX as u64)?),
            (None, Some(id)) => TrimTo::MinId(id.parse().map_err(|_| {
                Error::invalid(
                    "minId",
                    format!("{id:?} is not a stream id like 1700000000000-0"),
                )
            })?),
            (None, None) => return Ok(None),
        };
        Ok(Some(Trim {
            to,
            approximate: input.approximate.unwrap_or(true),
            keep_unacknowledged: input.keep_unacknowledged.unwrap_or(true),
        }))
    }

    /// Appends `MAXLEN|MINID [~|=] threshold` to a command (XTRIM or XADD).
    pub fn write_args(&self, cmd: &mut redis::Cmd) {
        let op = self.op();
        match self.to {
            TrimTo::MaxLen(n) => cmd.arg("MAXLEN").arg(op).arg(n),
            TrimTo::MinId(id) => cmd.arg("MINID").arg(op).arg(id),
        };
    }

    fn op(&self) -> &'static str {
        if self.approximate {
            "~"
        } else {
            "="
        }
    }

    /// The plain `XTRIM`, which removes whatever the threshold says.
    fn xtrim(&self, stream: &str) -> redis::Cmd {
        let mut c = redis::cmd("XTRIM");
        c.arg(stream);
        self.write_args(&mut c);
        c
    }

    /// `XTRIM … ACKED` (Redis 8.2+): the server keeps what a group still needs.
    fn xtrim_acked(&self, stream: &str) -> redis::Cmd {
        let mut c = self.xtrim(stream);
        c.arg("ACKED");
        c
    }
}

/// Trims like `XTRIM`, but stops at the oldest entry a consumer group still needs. Returns
/// `{removed, limited, safe id}`: `limited` is 1 when the groups kept entries the threshold
/// alone would have removed.
const SAFE_TRIM_LUA: &str = r#"
local key, kind, op, threshold = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
if redis.call('EXISTS', key) == 0 then return {0, 0, ''} end
local function parts(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return ms, seq
end
-- Exact id order on strings: no float rounding of large sequence numbers.
local function num_less(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end
local function id_less(a, b)
  local am, as = parts(a)
  local bm, bs = parts(b)
  if am ~= bm then return num_less(am, bm) end
  return num_less(as, bs)
end
local safe = nil
for _, g in ipairs(redis.call('XINFO', 'GROUPS', key)) do
  local f = {}
  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
  -- Entries up to the last delivered one are done unless pending: the group needs the next.
  local need = f['last-delivered-id']
  local ms, seq = parts(need)
  if #seq < 15 then need = ms .. '-' .. string.format('%d', tonumber(seq) + 1) end
  if tonumber(f['pending']) > 0 then
    local first = redis.call('XPENDING', key, f['name'])[2]
    if first and id_less(first, need) then need = first end
  end
  if safe == nil or id_less(need, safe) then safe = need end
end
local args = {key, kind, op, threshold}
local limited = 0
if safe ~= nil then
  if kind == 'MINID' then
    if id_less(safe, threshold) then args[4] = safe; limited = 1 end
  else
    -- MAXLEN n keeps the n newest: safe unless more than n entries are at or above `safe`,
    -- that is unless fewer than len - n are below it. Count on the side that reads fewer
    -- entries: at most min(n + 1, len - n), never a whole large maxLen.
    local n = tonumber(threshold)
    local len = redis.call('XLEN', key)
    if len <= n then return {0, 0, safe} end
    if len - n <= n + 1 then
      local below = redis.call('XRANGE', key, '-', '(' .. safe, 'COUNT', len - n)
      if #below < len - n then limited = 1 end
    else
      local needed = redis.call('XRANGE', key, safe, '+', 'COUNT', n + 1)
      if #needed > n then limited = 1 end
    end
    if limited == 1 then args = {key, 'MINID', op, safe} end
  end
end
return {redis.call('XTRIM', unpack(args)), limited, safe or ''}
"#;

/// The script, hashed once.
fn safe_trim_script() -> &'static redis::Script {
    static SCRIPT: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| redis::Script::new(SAFE_TRIM_LUA))
}

/// Trims `stream`; returns the number of entries removed, `0` when Redis is unavailable.
///
/// # Errors
/// [`Error::InvalidArg`] for a bad stream name; [`Error::Refused`] when Redis refuses it (a key
/// that is not a stream, a missing permission).
pub async fn trim(cmd: &CommandConn, stream: &str, t: Trim) -> Result<u64> {
    check_stream_name(stream)?;
    let sent = if !t.keep_unacknowledged {
        cmd.query::<u64, _>(&t.xtrim(stream)).await
    } else if !t.approximate && cmd.server_has_xtrim_acked() {
        // Redis 8.2's `~ … ACKED` removes nothing at all (8.2.3: not even without a group),
        // so only the exact form is left to the server; approximate trims take the script.
        cmd.query::<u64, _>(&t.xtrim_acked(stream)).await
    } else {
        let (threshold, kind) = match t.to {
            TrimTo::MaxLen(n) => (n.to_string(), "MAXLEN"),
            TrimTo::MinId(id) => (id.to_string(), "MINID"),
        };
        let mut invocation = safe_trim_script().prepare_invoke();
        invocation.key(stream).arg(kind).arg(t.op()).arg(threshold);
        cmd.query::<(u64, u64, String), _>(&invocation)
            .await
            .map(|r| {
                r.map(|(removed, limited, safe)| {
                    if limited == 1 {
                        info!(stream, removed, kept_from = %safe, "trim stopped at the oldest entry a consumer group has not finished (keepUnacknowledged)");
                    }
                    removed
                })
            })
    };
    match sent {
        Ok(Some(n)) => {
            debug!(stream, removed = n, "trimmed");
            Ok(n)
        }
        Ok(None) => {
            warn!(stream, "Redis unavailable; stream not trimmed");
            Ok(0)
        }
        Err(e) => Err(refusal(stream, &e)),
    }
}

/// The streams a client published to (or read, with `autoTrimStreams: "touched"`), for
/// automatic trimming, with when each was last used; at most [`MAX_TOUCHED`], the least
/// recently used forgotten first. Every operation but [`Touched::recent`]'s listing costs
/// O(log n): `add` runs on the JavaScript thread for each publish.
#[derive(Debug)]
pub struct Touched(Mutex<Lru>);

/// Streams by last use: `order` lists them oldest first under a use counter, `at` holds each
/// one's counter and time.
#[derive(Debug)]
struct Lru {
    cap: usize,
    next: u64,
    at: HashMap<String, (u64, Instant)>,
    order: BTreeMap<u64, String>,
}

impl Default for Touched {
    fn default() -> Self {
        Touched::with_cap(MAX_TOUCHED)
    }
}

impl Touched {
    fn with_cap(cap: usize) -> Self {
        Touched(Mutex::new(Lru {
            cap,
            next: 0,
            at: HashMap::new(),
            order: BTreeMap::new(),
        }))
    }

    fn set(&self) -> MutexGuard<'_, Lru> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that `stream` was used now.
    pub fn add(&self, stream: &str) {
        let mut set = self.set();
        // Under the lock, so that use order and time order agree.
        let now = Instant::now();
        let touch = set.next;
        set.next += 1;
        if let Some((last, at)) = set.at.get_mut(stream) {
            let was = std::mem::replace(last, touch);
            *at = now;
            let name = set.order.remove(&was).unwrap_or_else(|| stream.to_owned());
            set.order.insert(touch, name);
            return;
        }
        if set.at.len() >= set.cap {
            if let Some((_, oldest)) = set.order.pop_first() {
                set.at.remove(&oldest);
            }
        }
        set.at.insert(stream.to_owned(), (touch, now));
        set.order.insert(touch, stream.to_owned());
    }

    /// The streams used within `idle` (sorted); the others are forgotten: a stream nobody
    /// publishes to does not grow, so it needs no trimming until it is used again.
    fn recent(&self, idle: Duration) -> Vec<String> {
        let now = Instant::now();
        let mut guard = self.set();
        let set = &mut *guard;
        while let Some(entry) = set.order.first_entry() {
            let stale = set
                .at
                .get(entry.get())
                .is_none_or(|(_, at)| now.duration_since(*at) > idle);
            if !stale {
                break;
            }
            let name = entry.remove();
            set.at.remove(&name);
        }
        let mut v: Vec<String> = set.at.keys().cloned().collect();
        v.sort();
        v
    }

    /// How many streams are remembered.
    pub fn len(&self) -> usize {
        self.set().at.len()
    }

    /// Whether no stream is remembered.
    pub fn is_empty(&self) -> bool {
        self.set().at.is_empty()
    }
}

/// Every `every`, trims each stream used within the last two periods (at least the last
/// hour) to `max_len` (approximately, keeping what consumer groups still need) until
/// cancelled.
pub async fn run_auto_trim(
    cmd: Arc<CommandConn>,
    touched: Arc<Touched>,
    every: Duration,
    max_len: u64,
    token: CancellationToken,
) {
    let t = Trim {
        to: TrimTo::MaxLen(max_len),
        approximate: true,
        keep_unacknowledged: true,
    };
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let streams = touched.recent(every.saturating_mul(2).max(FORGET_AFTER));
        let mut removed = 0;
        for s in &streams {
            match trim(&cmd, s, t).await {
                Ok(n) => removed += n,
                Err(e) => warn!(stream = %s, error = %e, "auto-trim failed for one stream"),
            }
        }
        info!(
            streams = streams.len(),
            removed, max_len, "auto-trim pass done"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(c: &redis::Cmd) -> Vec<String> {
        c.args_iter()
            .map(|a| match a {
                redis::Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
                _ => "<not a plain argument>".into(),
            })
            .collect()
    }

    #[test]
    fn trims_read_their_options() {
        let t = Trim::from_input(TrimInput {
            max_len: Some(100.0),
            ..Default::default()
        })
        .unwrap()
        .unwrap();
        assert_eq!(t.to, TrimTo::MaxLen(100));
        assert!(t.approximate && t.keep_unacknowledged);
        assert_eq!(args(&t.xtrim("s")), ["XTRIM", "s", "MAXLEN", "~", "100"]);
        assert_eq!(
            args(&t.xtrim_acked("s")),
            ["XTRIM", "s", "MAXLEN", "~", "100", "ACKED"]
        );
        let exact = Trim::from_input(TrimInput {
            min_id: Some("5-1".into()),
            approximate: Some(false),
            keep_unacknowledged: Some(false),
            ..Default::default()
        })
        .unwrap()
        .unwrap();
        assert_eq!(args(&exact.xtrim("s")), ["XTRIM", "s", "MINID", "=", "5-1"]);
        assert!(Trim::from_input(TrimInput::default()).unwrap().is_none());
        for bad in [
            TrimInput {
                max_len: Some(1.0),
                min_id: Some("1-0".into()),
                ..Default::default()
            },
            TrimInput {
                max_len: Some(-1.0),
                ..Default::default()
            },
            TrimInput {
                min_id: Some("x".into()),
                ..Default::default()
            },
        ] {
            assert_eq!(Trim::from_input(bad).unwrap_err().code(), "ERR_INVALID_ARG");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn touched_streams_are_forgotten_when_idle() {
        let t = Touched::default();
        t.add("a");
        tokio::time::advance(Duration::from_secs(50)).await;
        t.add("b");
        assert_eq!(t.recent(Duration::from_secs(60)), ["a", "b"]);
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(t.recent(Duration::from_secs(60)), ["b"]);
        assert_eq!(t.len(), 1);
        // Used again: remembered from then on.
        t.add("a");
        tokio::time::advance(Duration::from_secs(45)).await;
        assert_eq!(t.recent(Duration::from_secs(60)), ["a"]);
    }

    /// With time paused every use has the same instant: the order of use alone decides.
    #[tokio::test(start_paused = true)]
    async fn touched_streams_beyond_the_cap_forget_the_least_recently_used() {
        let t = Touched::with_cap(3);
        for s in ["a", "b", "c"] {
            t.add(s);
        }
        t.add("a");
        t.add("d");
        assert_eq!(t.recent(Duration::from_secs(60)), ["a", "c", "d"]);
        t.add("c");
        t.add("e");
        t.add("f");
        assert_eq!(t.recent(Duration::from_secs(60)), ["c", "e", "f"]);
        assert_eq!(t.len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn touched_streams_are_bounded_by_max_touched() {
        let t = Touched::default();
        for i in 0..=MAX_TOUCHED {
            t.add(&format!("s{i}"));
        }
        assert_eq!(t.len(), MAX_TOUCHED);
        let kept = t.recent(Duration::from_secs(60));
        assert!(
            !kept.contains(&"s0".to_owned()),
            "the first stream is forgotten"
        );
        assert!(kept.contains(&format!("s{MAX_TOUCHED}")));
    }
}
