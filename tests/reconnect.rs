//! Losing the server: publishing fails open, and a subscriber resumes after a restart.

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use streamcast::{Client, Config, ConfigInput, PublishId, StreamId, SubscribeOptions};
use support::{until, wait_reader_blocked, ChannelHandler, RedisServer, DELIVERY};

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

/// A failover that rolled a stream back, where the first position check after the reader's
/// reconnect could not read that stream (a cluster answers CLUSTERDOWN or TRYAGAIN while it
/// fails over; here the restarted server refuses XINFO by ACL): a later check still knows
/// the server changed under the stream, and reports the lost tail as a gap instead of taking
/// it for entries that were delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_the_first_check_could_not_read_is_still_reported_as_a_gap() {
    let mut server = RedisServer::start().await;
    let c = quick_client(&server).await;
    let (handler, mut inbox) = ChannelHandler::new();
    let opts = SubscribeOptions {
        block: Some(Duration::from_millis(200)),
        ..Default::default()
    };
    c.subscribe("events", handler, opts).await.unwrap();
    let mut ids = Vec::new();
    for n in 0..3 {
        let id = c
            .publish("events", &n.to_string(), PublishId::Auto, None)
            .await
            .unwrap()
            .expect("written");
        ids.push(id);
    }
    let got: Vec<StreamId> = inbox.take(3, DELIVERY).await.iter().map(|m| m.id).collect();
    assert_eq!(got, ids);

    // The new server kept the first two entries, not the third, and refuses XINFO for now.
    server
        .restart_with(&[
            "--user", "default", "on", "nopass", "~*", "&*", "+@all", "-xinfo",
        ])
        .await;
    let mut check = server.checker().await;
    for (n, id) in ids[..2].iter().enumerate() {
        let _: String = redis::cmd("XADD")
            .arg("events")
            .arg(id.to_string())
            .arg("data")
            .arg(n.to_string())
            .query_async(&mut check)
            .await
            .unwrap();
    }
    // The reader reconnected, met the refusal in its check, and reads on.
    wait_reader_blocked(&mut check).await;
    assert_eq!(c.status().counters.gaps, 0);

    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg("+xinfo")
        .query_async(&mut check)
        .await
        .unwrap();
    until(
        "the lost third entry is reported as a gap",
        DELIVERY,
        || c.status().counters.gaps >= 1,
    )
    .await;
    assert_eq!(c.status().counters.gaps, 1);

    // Reading goes on after the new server's last id: nothing is delivered twice.
    let next = c
        .publish("events", "3", PublishId::Auto, None)
        .await
        .unwrap()
        .expect("written to the new server");
    assert_eq!(inbox.one(DELIVERY).await.id, next);
    inbox.assert_quiet(Duration::from_millis(300)).await;
    c.disconnect().await;
}
