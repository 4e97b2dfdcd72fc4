//! Following a failover as the sentinels announce it: one subscription per sentinel to the
//! failover channels, the events read for our master name, and the connections moved when
//! they say the primary changed.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::{RedisError, Value};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::node::timed_out;
use super::node::NodeAddr;
use super::sentinel::{SentinelNews, SentinelTarget};
use crate::config::Config;

/// How often each sentinel subscription is checked with a PING.
const SENTINEL_PING_EVERY: Duration = Duration::from_secs(1);

/// The channels a failover is followed on.
const SENTINEL_CHANNELS: [&str; 4] = [
    "+switch-master",
    "+failover-state-send-slaveof-noone",
    "+promoted-slave",
    "-failover-abort-slave-timeout",
];

/// Reads one sentinel event about `master`; `None` for other masters and other events.
fn sentinel_news(channel: &str, payload: &str, master: &str) -> Option<SentinelNews> {
    let parts: Vec<&str> = payload.split_whitespace().collect();
    let addr = |host: &str, port: &str| {
        Some(NodeAddr {
            host: host.to_owned(),
            port: port.parse().ok()?,
        })
    };
    match channel {
        // "<name> <old ip> <old port> <new ip> <new port>"
        "+switch-master" => match parts[..] {
            [name, _, _, host, port] if name == master => {
                addr(host, port).map(SentinelNews::Switched)
            }
            _ => None,
        },
        // "slave <ip>:<port> <ip> <port> @ <name> <master ip> <master port>"
        "+failover-state-send-slaveof-noone" | "+promoted-slave" => match parts[..] {
            ["slave", _, host, port, "@", name, _, _] if name == master => {
                addr(host, port).map(SentinelNews::Promoting)
            }
            _ => None,
        },
        // "master <name> <ip> <port>"
        "-failover-abort-slave-timeout" => match parts[..] {
            ["master", name, _, _] if name == master => Some(SentinelNews::Aborted),
            _ => None,
        },
        _ => None,
    }
}

impl SentinelTarget {
    /// Follows failovers of our primary on every sentinel until `token` is cancelled, and
    /// calls `switched` whenever the connections must move (once per change, however many
    /// sentinels announce it): when the leading sentinel starts promoting a replica, when a
    /// switch names another primary, and when a failover we moved for is aborted.
    pub async fn follow_switches(
        self: Arc<Self>,
        cfg: Arc<Config>,
        token: CancellationToken,
        switched: Arc<dyn Fn() + Send + Sync>,
    ) {
        let mut tasks = Vec::new();
        for (i, sentinel) in self.sentinels.iter().enumerate() {
            let me = self.clone();
            let sentinel = sentinel.clone();
            let token = token.clone();
            let switched = switched.clone();
            let cfg = cfg.clone();
            tasks.push(tokio::spawn(async move {
                let mut backoff = super::backoff::Backoff::new(cfg.reconnect);
                while !token.is_cancelled() {
                    let listened = tokio::select! {
                        _ = token.cancelled() => return,
                        r = me.listen(&sentinel, &cfg, &switched, &mut backoff) => r,
                    };
                    if let Err(e) = listened {
                        let delay = backoff.next_delay();
                        warn!(sentinel = i, error = %e, retry_in_ms = delay.as_millis() as u64, "cannot follow failovers on a sentinel; retrying");
                        tokio::select! {
                            _ = token.cancelled() => return,
                            _ = tokio::time::sleep(delay) => {}
                        }
                    }
                }
            }));
        }
        token.cancelled().await;
        for t in tasks {
            t.abort();
        }
    }

    /// Follows one sentinel's failover events until its subscription fails. A link that
    /// dies silently (no FIN: a partition, a frozen sentinel) is found by a PING every
    /// [`SENTINEL_PING_EVERY`] that must be answered within the command timeout.
    async fn listen(
        &self,
        sentinel: &redis::Client,
        cfg: &Config,
        switched: &Arc<dyn Fn() + Send + Sync>,
        backoff: &mut super::backoff::Backoff,
    ) -> std::result::Result<(), RedisError> {
        let subscribed = tokio::time::timeout(cfg.connect_timeout + cfg.command_timeout, async {
            let mut pubsub = sentinel.get_async_pubsub().await?;
            pubsub.subscribe(&SENTINEL_CHANNELS[..]).await?;
            Ok::<_, RedisError>(pubsub)
        })
        .await
        .map_err(|_| timed_out("subscribing to a sentinel"))??;
        backoff.reset();
        let (mut sink, mut messages) = subscribed.split();
        let mut ping = tokio::time::interval(SENTINEL_PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let msg = tokio::select! {
                msg = messages.next() => match msg {
                    Some(msg) => msg,
                    None => break,
                },
                _ = ping.tick() => {
                    tokio::time::timeout(cfg.command_timeout, sink.ping::<Value>())
                        .await
                        .map_err(|_| timed_out("a sentinel's subscription answering PING"))??;
                    continue;
                }
            };
            let payload: String = msg.get_payload()?;
            let channel = msg.get_channel_name();
            let Some(news) = sentinel_news(channel, &payload, &self.master) else {
                continue;
            };
            let what = match &news {
                SentinelNews::Switched(_) => "Sentinel switched the primary; moving every connection to it",
                SentinelNews::Promoting(_) => "Sentinel is promoting a replica; moving every connection to it now (the old primary would lose what it takes from here on)",
                SentinelNews::Aborted => "Sentinel aborted the failover; asking the sentinels for the primary again",
            };
            let to = match &news {
                SentinelNews::Switched(a) | SentinelNews::Promoting(a) => a.to_string(),
                SentinelNews::Aborted => "(the sentinels' answer)".to_owned(),
            };
            if self.apply(news) {
                info!(master = %self.master, event = channel, new = %to, "{what}");
                switched();
            }
        }
        Err(RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "the sentinel closed the subscription",
        )))
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

    #[test]
    fn sentinel_events_are_read_for_our_master_only() {
        // Payloads as Redis 7.0 sentinels publish them.
        let promoting = "slave 10.0.0.2:6380 10.0.0.2 6380 @ mymaster 10.0.0.1 6379";
        assert_eq!(
            sentinel_news("+failover-state-send-slaveof-noone", promoting, "mymaster"),
            Some(SentinelNews::Promoting(at(6380)))
        );
        assert_eq!(
            sentinel_news("+promoted-slave", promoting, "mymaster"),
            Some(SentinelNews::Promoting(at(6380)))
        );
        assert_eq!(sentinel_news("+promoted-slave", promoting, "other"), None);
        assert_eq!(
            sentinel_news(
                "+switch-master",
                "mymaster 10.0.0.1 6379 10.0.0.2 6380",
                "mymaster"
            ),
            Some(SentinelNews::Switched(at(6380)))
        );
        assert_eq!(
            sentinel_news(
                "+switch-master",
                "mymaster 10.0.0.1 6379 10.0.0.2 notaport",
                "mymaster"
            ),
            None
        );
        assert_eq!(
            sentinel_news(
                "-failover-abort-slave-timeout",
                "master mymaster 10.0.0.1 6379",
                "mymaster"
            ),
            Some(SentinelNews::Aborted)
        );
        assert_eq!(
            sentinel_news(
                "-failover-abort-slave-timeout",
                "master other 10.0.0.1 6379",
                "mymaster"
            ),
            None
        );
        // Another sentinel's lost election says nothing about the promotion under way.
        assert_eq!(
            sentinel_news(
                "-failover-abort-not-elected",
                "master mymaster 10.0.0.1 6379",
                "mymaster"
            ),
            None
        );
        assert_eq!(
            sentinel_news("+sdown", "master mymaster 10.0.0.1 6379", "mymaster"),
            None
        );
    }
}
