//! Redis Sentinel (1 primary, 1 replica, 3 sentinels, real processes): the primary is found
//! through the sentinels and followed across a failover.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use streamcast::{Client, Config, ConfigInput, PublishId, SubscribeOptions};
use support::topology::{RedisSentinel, Servers};
use support::{ChannelHandler, DELIVERY};

fn sentinel_config(s: &RedisSentinel) -> Config {
    let hosts: Vec<String> = s
        .sentinel_urls()
        .iter()
        .map(|u| u.trim_start_matches("redis://").to_owned())
        .collect();
    Config::from_input(ConfigInput {
        redis_url: Some(format!("redis+sentinel://{}/mymaster", hosts.join(","))),
        enable_auto_trim: Some(false),
        reconnect_max_delay_ms: Some(200.0),
        ..Default::default()
    })
    .expect("a valid sentinel config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_and_reading_follow_a_sentinel_failover() {
    let setup = RedisSentinel::start().await;
    let c = Arc::new(Client::new(sentinel_config(&setup)));
    c.connect().await.unwrap();
    let (h, mut inbox) = ChannelHandler::new();
    c.subscribe("events", h, SubscribeOptions::default())
        .await
        .unwrap();
    let before = c
        .publish("events", "1", PublishId::Auto, None)
        .await
        .unwrap()
        .expect("published to the primary");
    assert_eq!(inbox.one(DELIVERY).await.id, before);

    let old = setup.master_port().await;
    let new = setup.failover().await;
    assert_ne!(old, new);
    // Publishing reaches the new primary by itself (it follows +switch-master).
    let deadline = Instant::now() + DELIVERY;
    let after = loop {
        if let Some(id) = c
            .publish("events", "2", PublishId::Auto, None)
            .await
            .unwrap()
        {
            let on_new: Vec<(String, Vec<String>)> = setup
                .query(
                    new,
                    redis::cmd("XRANGE")
                        .arg("events")
                        .arg(id.to_string())
                        .arg(id.to_string()),
                )
                .await;
            if !on_new.is_empty() {
                break id;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no publish reached the new primary"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The subscription reads from the new primary and gets it.
    let mut got = inbox.one(DELIVERY).await;
    while got.id != after {
        got = inbox.one(DELIVERY).await;
    }
    c.disconnect().await;
}
