//! Losing the server: publishing fails open, and a subscriber resumes after a restart.

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use streamcast::{Client, Config, ConfigInput, PublishId, StreamId, SubscribeOptions};
use support::{until, ChannelHandler, RedisServer, DELIVERY};

/// A connected client of `server` with short timeouts and reconnect delays.
async fn quick_client(server: &RedisServer) -> Arc<Client> {
    let cfg = Config::from_input(ConfigInput {
        redis_url: Some(server.url()),
        connect_timeout_ms: Some(500.0),
        command_timeout_ms: Some(500.0),
        reconnect_initial_delay_ms: Some(20.0),
        reconnect_max_delay_ms: Some(200.0),
        ..Default::default()
    })
    .unwrap();
    let c = Arc::new(Client::new(cfg));
    c.connect().await.unwrap();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_resumes_after_the_server_restarts() {
    let mut server = RedisServer::start().await;
    let c = quick_client(&server).await;
    let (handler, mut inbox) = ChannelHandler::new();
    c.subscribe("events", handler, SubscribeOptions::default())
        .await
        .unwrap();

    let before = c
        .publish("events", "\"before\"", PublishId::Auto, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(inbox.one(DELIVERY).await.id, before);

    server.kill();
    // Fail open while the server is gone.
    assert_eq!(
        c.publish("events", "\"lost\"", PublishId::Auto, None)
            .await
            .unwrap(),
        None
    );
    server.restart().await;

    // The restarted server is empty; an entry written by another program must arrive.
    let mut check = server.checker().await;
    let foreign: String = redis::cmd("XADD")
        .arg("events")
        .arg("*")
        .arg("data")
        .arg("\"after\"")
        .query_async(&mut check)
        .await
        .unwrap();
    let foreign: StreamId = foreign.parse().unwrap();
    let m = inbox.one(DELIVERY).await;
    assert_eq!((m.id, m.data), (foreign, json!("after")));
    assert!(
        c.status().counters.reconnects >= 1,
        "{:?}",
        c.status().counters
    );

    until("the command connection is back", DELIVERY, || {
        c.status().connected
    })
    .await;
    let ours = c
        .publish("events", "\"ours\"", PublishId::Auto, None)
        .await
        .unwrap()
        .expect("publish works once the client reports connected");
    let m = inbox.one(DELIVERY).await;
    assert_eq!((m.id, m.data), (ours, json!("ours")));
    inbox.assert_quiet(Duration::from_millis(200)).await;
    c.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_a_restarted_server_lost_are_reported_to_the_publisher() {
    let mut server = RedisServer::start().await;
    let c = quick_client(&server).await;
    // Acknowledged, then gone with the server (it keeps nothing on disk): what a failover
    // to a replica that never got them looks like to the publisher.
    for i in 0..5 {
        c.publish("a", &format!("{i}"), PublishId::Auto, None)
            .await
            .unwrap()
            .expect("written");
    }
    c.publish_batch("b", &["1".to_owned(), "2".to_owned()])
        .await
        .unwrap();
    server.restart().await;
    until("the lost publishes are reported", DELIVERY, || {
        c.status().counters.publish_lost >= 7
    })
    .await;
    assert_eq!(c.status().counters.publish_lost, 7);
    // A publish to the new server is not lost, and nothing is reported twice.
    c.publish("a", "\"after\"", PublishId::Auto, None)
        .await
        .unwrap()
        .expect("written after the restart");
    assert_eq!(c.status().counters.publish_lost, 7);
    c.disconnect().await;
}
