//! A client's life: connecting on the first call, failing open after `disconnect()`, and
//! subscriptions and consumers that are reachable by `unsubscribe`/`stop` from the moment
//! they were started, before anything was awaited.

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;

use streamcast::{Client, ConsumeOptions, PublishId, StartId, StreamId, SubscribeOptions};
use support::{config, until_async, ChannelHandler, RedisServer, DELIVERY};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_connected_connects_on_its_first_publish() {
    let server = RedisServer::start().await;
    let c = Client::new(config(&server.url()));
    assert_eq!(c.status().state.name(), "idle");
    let id = c
        .publish("lazy", r#"{"n":1}"#, PublishId::Auto, None)
        .await
        .unwrap()
        .expect("the first publish waits for the first connection");
    let mut check = server.checker().await;
    let stored: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg("lazy")
        .arg("-")
        .arg("+")
        .query_async(&mut check)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].0, id.to_string());
    assert!(c.status().connected);
    c.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_disconnect_writes_fail_open_and_reads_are_refused() {
    let server = RedisServer::start().await;
    let c = Client::new(config(&server.url()));
    c.connect().await.unwrap();
    c.disconnect().await;
    assert_eq!(
        c.publish("s", "1", PublishId::Auto, None).await.unwrap(),
        None
    );
    assert!(!c
        .create_consumer_group("s", "g", StartId::Latest)
        .await
        .unwrap());
    assert_eq!(
        c.acknowledge("s", "g", &[StreamId::new(1, 0)])
            .await
            .unwrap(),
        0
    );
    let (h, _inbox) = ChannelHandler::new();
    let err = c
        .subscribe("s", h.clone(), SubscribeOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "ERR_CLOSED");
    let err = c
        .consume("s", "g", "c", h, ConsumeOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "ERR_CLOSED");
    // connect() opens it again.
    c.connect().await.unwrap();
    assert!(c
        .publish("s", "1", PublishId::Auto, None)
        .await
        .unwrap()
        .is_some());
    c.disconnect().await;
}

/// How many entries of `group` are pending (delivered, not acknowledged).
async fn pending_of(server: &RedisServer, stream: &str, group: &str) -> u64 {
    let mut check = server.checker().await;
    let v: (u64, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .query_async(&mut check)
        .await
        .unwrap();
    v.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_stopped_before_its_start_resolved_never_reads() {
    let server = RedisServer::start().await;
    let c = Arc::new(Client::new(config(&server.url())));
    c.connect().await.unwrap();
    assert!(c
        .create_consumer_group("jobs", "g", StartId::After(StreamId::ZERO))
        .await
        .unwrap());
    for i in 0..20 {
        c.publish("jobs", &format!(r#"{{"i":{i}}}"#), PublishId::Auto, None)
            .await
            .unwrap();
    }
    for round in 0..20 {
        let (h, mut inbox) = ChannelHandler::new();
        // Started and stopped without awaiting the start: the stop must reach it. The server
        // is paused meanwhile, so the consumer cannot have read before the stop (on a loaded
        // machine, it sometimes had: CI saw an entry delivered).
        server.pause();
        let started = c
            .start_consume("jobs", "g", "c", h, ConsumeOptions::default())
            .unwrap();
        let mut stop = Box::pin(c.stop_consumer("jobs", "g", "c"));
        // The first poll finds the consumer and cancels it; then it waits for the server.
        assert!((&mut stop).now_or_never().is_none());
        server.resume();
        assert!(
            stop.await,
            "round {round}: the consumer was registered at once"
        );
        let _ = started.await;
        assert!(c.status().consumer_groups.is_empty(), "round {round}");
        inbox.assert_quiet(Duration::from_millis(20)).await;
    }
    // Nothing was read into anyone's pending list, so no consumer took a share it never acks.
    assert_eq!(pending_of(&server, "jobs", "g").await, 0);
    c.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_removed_before_its_start_resolved_never_delivers() {
    let server = RedisServer::start().await;
    let c = Client::new(config(&server.url()));
    c.connect().await.unwrap();
    let (h, mut inbox) = ChannelHandler::new();
    let (id, resolved) = c
        .start_subscribe("s", h, SubscribeOptions::default())
        .unwrap();
    assert!(c.unsubscribe_id(id), "registered at once");
    resolved.await.unwrap();
    assert!(!c.is_subscribed(id));
    c.publish("s", "1", PublishId::Auto, None).await.unwrap();
    inbox.assert_quiet(Duration::from_millis(300)).await;
    assert!(c.status().subscription_details.is_empty());
    c.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_whose_group_is_missing_can_be_started_again_once_it_exists() {
    let server = RedisServer::start().await;
    let c = Client::new(config(&server.url()));
    c.connect().await.unwrap();
    let (h, mut inbox) = ChannelHandler::new();
    let err = c
        .consume("q", "g", "c", h.clone(), ConsumeOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "ERR_NOGROUP");
    assert!(c.status().consumer_groups.is_empty());
    assert!(c
        .create_consumer_group("q", "g", StartId::After(StreamId::ZERO))
        .await
        .unwrap());
    c.consume("q", "g", "c", h, ConsumeOptions::default())
        .await
        .unwrap();
    let id = c
        .publish("q", "1", PublishId::Auto, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(inbox.one(DELIVERY).await.id, id);
    until_async("the entry is acknowledged", DELIVERY, || async {
        pending_of(&server, "q", "g").await == 0
    })
    .await;
    c.disconnect().await;
}

/// `disconnect()` settles the offline buffer before it returns: a flush still waiting on
/// the server is abandoned and what it held resolves `null`, instead of being written after
/// the caller was told the client is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_settles_parked_publishes_a_stalled_flush_holds() {
    const PARKED: usize = 20;
    let mut server = RedisServer::start().await;
    // The client logs in as a user of its own, so that it can be kept out after the restart.
    let mut check = server.checker().await;
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&["conn", "on", ">pw", "~*", "&*", "+@all"])
        .query_async(&mut check)
        .await
        .unwrap();
    let c = Arc::new(Client::new(
        streamcast::Config::from_input(streamcast::ConfigInput {
            redis_url: Some(format!("redis://conn:pw@127.0.0.1:{}", server.port())),
            connect_timeout_ms: Some(500.0),
            command_timeout_ms: Some(5000.0),
            reconnect_initial_delay_ms: Some(20.0),
            reconnect_max_delay_ms: Some(200.0),
            offline_buffer: Some(1000.0),
            ..Default::default()
        })
        .unwrap(),
    ));
    c.connect().await.unwrap();
    server.kill();
    let settled = Arc::new(std::sync::Mutex::new(Vec::new()));
    for n in 0..PARKED {
        let settled = settled.clone();
        c.start_publish(
            "parked",
            &n.to_string(),
            PublishId::Auto,
            None,
            None,
            move |r| {
                settled.lock().unwrap().push(r.unwrap());
            },
        )
        .unwrap();
    }
    // The client cannot reconnect (its user is off) until writes are paused: its flush then
    // waits, while its PING and INFO on reconnecting do not.
    let off = ["--user", "conn", "off", ">pw", "~*", "&*", "+@all"];
    server.restart_with(&off).await;
    let mut check = server.checker().await;
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(30_000)
        .arg("WRITE")
        .query_async(&mut check)
        .await
        .unwrap();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("conn")
        .arg("on")
        .query_async(&mut check)
        .await
        .unwrap();
    until_async("the flush waits on the paused server", DELIVERY, || {
        let mut check = check.clone();
        async move {
            let list: String = redis::cmd("CLIENT")
                .arg("LIST")
                .query_async(&mut check)
                .await
                .unwrap();
            list.lines().any(|l| {
                l.split(' ')
                    .any(|f| f.starts_with("flags=") && f.contains('b'))
            })
        }
    })
    .await;
    assert!(settled.lock().unwrap().is_empty());

    c.disconnect().await;
    let settled = settled.lock().unwrap().clone();
    assert_eq!(
        settled.len(),
        PARKED,
        "disconnect() returned with parked publishes unsettled"
    );
    assert!(settled.iter().all(Option::is_none), "{settled:?}");
    let _: () = redis::cmd("CLIENT")
        .arg("UNPAUSE")
        .query_async(&mut check)
        .await
        .unwrap();
}
