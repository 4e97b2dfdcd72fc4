//! A primary named by Sentinel: asking the sentinels where it is, checking the answer with
//! `ROLE`, and the promotion under way (announced by the leading sentinel, see
//! `sentinel_events.rs`) that connections move to before the sentinels confirm it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{RedisError, Value};
use tokio::sync::watch;

use super::dial::open;
use super::node::{node_client, node_url, not_known, timed_out, NodeAddr};
use crate::config::Config;

/// A primary named by Sentinel.
pub struct SentinelTarget {
    pub(super) sentinels: Vec<redis::Client>,
    pub(super) master: String,
    scheme: String,
    userinfo: String,
    db: i64,
    /// Which sentinel to ask first (the one that answered last).
    next: AtomicUsize,
    /// The primary, as last resolved or announced (a promotion, `+switch-master`).
    current: watch::Sender<Option<NodeAddr>>,
    /// The replica the leading sentinel is promoting and since when: connections go there
    /// until `+switch-master`, an abort, or [`PROMOTION_HINT_TTL`].
    promoting: Mutex<Option<(NodeAddr, Instant)>>,
}

/// How long an announced promotion is preferred to what the sentinels answer. A promotion
/// takes about a second (the leader waits for the replica's `INFO` to say master); if
/// neither `+switch-master` nor an abort arrived by then (the subscription was lost), the
/// sentinels are asked again.
const PROMOTION_HINT_TTL: Duration = Duration::from_secs(10);

/// How often a replica being promoted is asked whether it is the primary yet.
const PROMOTION_POLL: Duration = Duration::from_millis(5);

/// What one sentinel event says about the primary of a given master name.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SentinelNews {
    /// `+switch-master`: the failover ended, this is the primary.
    Switched(NodeAddr),
    /// `+failover-state-send-slaveof-noone` or `+promoted-slave`: this replica is being
    /// (or was just) made the primary.
    Promoting(NodeAddr),
    /// `-failover-abort-slave-timeout`: the promotion did not finish in time; the old
    /// primary stays. (The other aborts end a sentinel's own attempt before it promotes
    /// anything, possibly while another sentinel's promotion goes on: they change nothing.)
    Aborted,
}

impl SentinelTarget {
    pub(super) fn new(
        sentinels: Vec<redis::Client>,
        master: String,
        scheme: String,
        userinfo: String,
        db: i64,
    ) -> Self {
        SentinelTarget {
            sentinels,
            master,
            scheme,
            userinfo,
            db,
            next: AtomicUsize::new(0),
            current: watch::Sender::new(None),
            promoting: Mutex::new(None),
        }
    }

    /// A client for the node at `addr`, with the configured scheme, credentials and db.
    fn node(
        &self,
        addr: &NodeAddr,
        cfg: &Config,
    ) -> std::result::Result<redis::Client, RedisError> {
        node_client(
            &node_url(&self.scheme, &self.userinfo, addr, Some(self.db)),
            cfg,
        )
    }

    /// Opens a connection to the primary (checked with `ROLE`).
    ///
    /// # Errors
    /// Why it could not be opened.
    pub(super) async fn open_primary(
        &self,
        cfg: &Config,
    ) -> std::result::Result<MultiplexedConnection, RedisError> {
        // While a promotion is announced, the replica being promoted, not what the
        // sentinels still name (the old primary, which would take the writes and
        // lose them). It turns primary within milliseconds, so it is asked again
        // until it has (within connectTimeoutMs) instead of waiting out a back-off,
        // each time on a new connection: the sentinel's promotion ends with
        // `CLIENT KILL TYPE normal`, which closes every connection opened before it.
        let (addr, promoting) = match self.promoting() {
            Some(a) => (a, true),
            None => (self.resolve(cfg).await?, false),
        };
        let client = self.node(&addr, cfg)?;
        let deadline = Instant::now() + cfg.connect_timeout;
        let conn = loop {
            let attempt = async {
                let mut conn = open(&client, cfg).await?;
                check_primary(&mut conn, &addr, cfg).await?;
                Ok::<_, RedisError>(conn)
            };
            match attempt.await {
                Ok(conn) => break conn,
                Err(_) if promoting && Instant::now() < deadline => {
                    tokio::time::sleep(PROMOTION_POLL).await;
                }
                Err(e) => return Err(e),
            }
        };
        self.current.send_replace(Some(addr));
        Ok(conn)
    }

    /// A client for the primary as last resolved or announced (asking the sentinels when
    /// none is known).
    ///
    /// # Errors
    /// When no sentinel named a primary.
    pub(super) async fn primary_client(
        &self,
        cfg: &Config,
    ) -> std::result::Result<redis::Client, RedisError> {
        let known = self.current.borrow().clone();
        let addr = match known {
            Some(a) => a,
            None => self.resolve(cfg).await?,
        };
        self.node(&addr, cfg)
    }

    /// Asks the sentinels, in turn, where the primary is.
    ///
    /// # Errors
    /// The last sentinel's failure when none answered with an address.
    async fn resolve(&self, cfg: &Config) -> std::result::Result<NodeAddr, RedisError> {
        let n = self.sentinels.len();
        let first = self.next.load(Ordering::Relaxed);
        let mut last = not_known("no sentinel was asked");
        for k in 0..n {
            let i = (first + k) % n;
            let asked = async {
                let mut conn = open(&self.sentinels[i], cfg).await?;
                redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(&self.master)
                    .query_async::<Option<(String, u16)>>(&mut conn)
                    .await
            };
            match tokio::time::timeout(cfg.connect_timeout + cfg.command_timeout, asked).await {
                Ok(Ok(Some((host, port)))) => {
                    self.next.store(i, Ordering::Relaxed);
                    return Ok(NodeAddr { host, port });
                }
                Ok(Ok(None)) => {
                    last = not_known("the sentinels do not know this master name");
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = timed_out("asking a sentinel"),
            }
        }
        Err(last)
    }

    /// Watches the primary's address (changes on every announced promotion and switch;
    /// `None` after an aborted failover, until the sentinels are asked again).
    pub fn current(&self) -> watch::Receiver<Option<NodeAddr>> {
        self.current.subscribe()
    }

    /// The replica being promoted, while that announcement is fresh.
    pub(super) fn promoting(&self) -> Option<NodeAddr> {
        let mut p = self.promoting.lock().unwrap_or_else(|e| e.into_inner());
        match &*p {
            Some((addr, since)) if since.elapsed() < PROMOTION_HINT_TTL => Some(addr.clone()),
            _ => {
                *p = None;
                None
            }
        }
    }

    /// Applies one piece of sentinel news; `true` when every connection must move.
    pub(super) fn apply(&self, news: SentinelNews) -> bool {
        let mut promoting = self.promoting.lock().unwrap_or_else(|e| e.into_inner());
        let to = match news {
            SentinelNews::Switched(new) => {
                *promoting = None;
                Some(new)
            }
            SentinelNews::Promoting(new) => {
                *promoting = Some((new.clone(), Instant::now()));
                Some(new)
            }
            SentinelNews::Aborted => {
                // Only a failover we moved for matters: go back to asking the sentinels.
                if promoting.take().is_none() {
                    return false;
                }
                None
            }
        };
        self.current.send_if_modified(|cur| {
            if *cur == to {
                false
            } else {
                cur.clone_from(&to);
                true
            }
        })
    }
}

/// Checks with `ROLE` that a node Sentinel named is the primary (a stale answer during a
/// failover names the old one).
async fn check_primary(
    conn: &mut MultiplexedConnection,
    addr: &NodeAddr,
    cfg: &Config,
) -> std::result::Result<(), RedisError> {
    let role = tokio::time::timeout(
        cfg.command_timeout,
        redis::cmd("ROLE").query_async::<Value>(conn),
    )
    .await
    .map_err(|_| timed_out("ROLE"))??;
    let is_master = match &role {
        Value::Array(parts) => {
            matches!(parts.first(), Some(Value::BulkString(b)) if b == b"master")
        }
        _ => false,
    };
    if is_master {
        Ok(())
    } else {
        Err(RedisError::from(std::io::Error::other(format!(
            "Sentinel named {addr} as the primary, but it is not one (yet)"
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(port: u16) -> NodeAddr {
        NodeAddr {
            host: "10.0.0.2".to_owned(),
            port,
        }
    }

    fn sentinel_target() -> SentinelTarget {
        SentinelTarget {
            sentinels: Vec::new(),
            master: "mymaster".to_owned(),
            scheme: "redis".to_owned(),
            userinfo: String::new(),
            db: 0,
            next: AtomicUsize::new(0),
            current: watch::Sender::new(Some(at(6379))),
            promoting: Mutex::new(None),
        }
    }

    #[test]
    fn a_promotion_moves_the_connections_once_and_the_switch_confirms_it() {
        let t = sentinel_target();
        // The leader's two promotion events, from one or several sentinels: one move.
        assert!(t.apply(SentinelNews::Promoting(at(6380))));
        assert!(!t.apply(SentinelNews::Promoting(at(6380))));
        assert_eq!(t.promoting(), Some(at(6380)));
        assert_eq!(*t.current().borrow(), Some(at(6380)));
        // +switch-master names the same node: nothing moves again, the hint is done.
        assert!(!t.apply(SentinelNews::Switched(at(6380))));
        assert_eq!(t.promoting(), None);
        // An abort after the switch concerns nothing we moved for.
        assert!(!t.apply(SentinelNews::Aborted));
        assert_eq!(*t.current().borrow(), Some(at(6380)));
    }

    #[test]
    fn an_aborted_promotion_sends_the_connections_back_to_the_sentinels_answer() {
        let t = sentinel_target();
        assert!(t.apply(SentinelNews::Promoting(at(6380))));
        assert!(t.apply(SentinelNews::Aborted));
        assert_eq!(t.promoting(), None);
        assert_eq!(*t.current().borrow(), None);
    }

    #[test]
    fn a_stale_promotion_is_forgotten() {
        let t = sentinel_target();
        *t.promoting.lock().unwrap() = Some((at(6380), Instant::now() - PROMOTION_HINT_TTL));
        assert_eq!(t.promoting(), None);
        assert!(t.promoting.lock().unwrap().is_none());
    }
}
