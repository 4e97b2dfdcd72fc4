//! A Redis Cluster (3 masters, 3 replicas, real processes): publish, subscribe and groups
//! over streams on every master, one reader connection per master.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use streamcast::{
    Client, Config, ConfigInput, ConsumeOptions, PublishId, StartId, StreamId, SubscribeOptions,
};
use support::topology::{RedisCluster, Servers};
use support::{until_async, ChannelHandler, DELIVERY};

fn cluster_config(cluster: &RedisCluster) -> Config {
    let hosts: Vec<String> = cluster
        .seed_urls()
        .iter()
        .map(|u| u.trim_start_matches("redis://").to_owned())
        .collect();
    Config::from_input(ConfigInput {
        redis_url: Some(format!("redis+cluster://{}", hosts.join(","))),
        enable_auto_trim: Some(false),
        ..Default::default()
    })
    .expect("a valid cluster config")
}

/// Connections of streamcast (not the fixture's) blocked in XREAD on `port`.
async fn blocked_readers(cluster: &RedisCluster, port: u16) -> usize {
    cluster
        .client_list(port)
        .await
        .iter()
        .filter(|c| !c.is_fixture() && c.is_blocked() && c.get("cmd") == "xread")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_streams_on_every_master_are_read_in_order_with_one_reader_per_master() {
    let cluster = RedisCluster::start().await;
    let c = Arc::new(Client::new(cluster_config(&cluster)));
    c.connect().await.unwrap();
    let streams: Vec<String> = (0..20).map(|i| format!("events:{i}")).collect();
    let mut masters_used = std::collections::BTreeSet::new();
    for s in &streams {
        masters_used.insert(cluster.master_for_key(s).await);
    }
    assert_eq!(
        masters_used.len(),
        3,
        "the streams are spread over all masters"
    );
    let mut inboxes = Vec::new();
    for s in &streams {
        let (h, inbox) = ChannelHandler::new();
        c.subscribe(s, h, SubscribeOptions::default())
            .await
            .unwrap();
        inboxes.push(inbox);
    }
    let mut published: HashMap<String, Vec<StreamId>> = HashMap::new();
    for round in 0..10 {
        for s in &streams {
            let id = c
                .publish(s, &format!(r#"{{"n":{round}}}"#), PublishId::Auto, None)
                .await
                .unwrap()
                .expect("published");
            published.entry(s.clone()).or_default().push(id);
        }
    }
    for (s, inbox) in streams.iter().zip(inboxes.iter_mut()) {
        let got: Vec<StreamId> = inbox
            .take(10, DELIVERY)
            .await
            .iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(&got, &published[s], "{s}");
        inbox.assert_quiet(Duration::from_millis(50)).await;
    }
    for port in cluster.masters().await {
        until_async(
            "every master has exactly one blocked reader of ours",
            DELIVERY,
            || async { blocked_readers(&cluster, port).await == 1 },
        )
        .await;
    }
    c.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_group_on_a_cluster_shares_the_work_and_acknowledges() {
    let cluster = RedisCluster::start().await;
    let c = Arc::new(Client::new(cluster_config(&cluster)));
    c.connect().await.unwrap();
    assert!(c
        .create_consumer_group("{jobs}:q", "g", StartId::After(StreamId::ZERO))
        .await
        .unwrap());
    let (h, mut inbox) = ChannelHandler::new();
    c.consume("{jobs}:q", "g", "w", h, ConsumeOptions::default())
        .await
        .unwrap();
    let items: Vec<String> = (0..50).map(|i| i.to_string()).collect();
    let ids: Vec<StreamId> = c
        .publish_batch("{jobs}:q", &items)
        .await
        .unwrap()
        .into_iter()
        .map(Option::unwrap)
        .collect();
    let got: Vec<StreamId> = inbox
        .take(50, DELIVERY)
        .await
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(got, ids);
    let owner = cluster.master_for_key("{jobs}:q").await;
    until_async("everything acknowledged", DELIVERY, || async {
        let v: (u64, redis::Value, redis::Value, redis::Value) = cluster
            .query(owner, redis::cmd("XPENDING").arg("{jobs}:q").arg("g"))
            .await;
        v.0 == 0
    })
    .await;
    c.disconnect().await;
}
