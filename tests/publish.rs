//! Publishing: the wire format, ids Redis refuses, batches, and fail-open behaviour.

mod support;

use std::sync::Arc;
use std::time::Duration;

use streamcast::{Client, Config, ConfigInput, PublishId, StartId, StreamId, SubscribeOptions};
use support::{
    client, now_ms, wait_reader_blocked, within, xrange, ChannelHandler, RedisServer, DELIVERY,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_writes_exactly_data_then_timestamp() {
    let server = RedisServer::start().await;
    let c = client(&server).await;
    let mut check = server.checker().await;
    let json = r#"{"a":[1,2],"s":"x\"y","n":null}"#;

    let before = now_ms();
    let id = c
        .publish("orders", json, PublishId::Auto, None)
        .await
        .unwrap()
        .expect("an id while Redis is up");
    let after = now_ms();

    let entries = xrange(&mut check, "orders").await;
    assert_eq!(entries.len(), 1);
    let (got_id, fields) = &entries[0];
    assert_eq!(*got_id, id);
    let names: Vec<&[u8]> = fields.iter().map(|(k, _)| k.as_slice()).collect();
    assert_eq!(names, vec![&b"data"[..], &b"timestamp"[..]]);
    assert_eq!(fields[0].1, json.as_bytes());
    let ts: u64 = std::str::from_utf8(&fields[1].1).unwrap().parse().unwrap();
    assert!(
        (before..=after).contains(&ts),
        "{ts} not in {before}..={after}"
    );
    assert_eq!(c.status().counters.published, 1);
    c.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_redis_refuses_are_invalid_arg_other_refusals_are_refused_and_write_nothing() {
    let server = RedisServer::start().await;
    let c = client(&server).await;
    let mut check = server.checker().await;

    let exact = StreamId::new(5, 1);
    assert_eq!(
        c.publish("s", "1", PublishId::Exact(exact), None)
            .await
            .unwrap(),
        Some(exact)
    );
    assert_eq!(
        c.publish("s", "2", PublishId::AutoSeq(5), None)
            .await
            .unwrap(),
        Some(StreamId::new(5, 2))
    );
    for bad in [
        PublishId::Exact(StreamId::new(5, 2)),
        PublishId::Exact(StreamId::new(3, 0)),
        PublishId::AutoSeq(4),
    ] {
        let err = c.publish("s", "3", bad, None).await.unwrap_err();
        assert_eq!(err.code(), "ERR_INVALID_ARG", "{bad:?}: {err}");
    }
    let ids: Vec<StreamId> = xrange(&mut check, "s")
        .await
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(ids, vec![StreamId::new(5, 1), StreamId::new(5, 2)]);

    let _: () = redis::cmd("SET")
        .arg("plain")
        .arg("v")
        .query_async(&mut check)
        .await
        .unwrap();
    // A key of another type is the server's refusal, whatever the id: never a complaint
    // about the payload or the id.
    for id in [PublishId::Auto, PublishId::Exact(StreamId::new(9, 0))] {
        let err = c.publish("plain", "1", id, None).await.unwrap_err();
        assert_eq!(err.code(), "ERR_REFUSED", "{id:?}: {err}");
        assert_eq!(err.redis_code(), Some("WRONGTYPE"), "{id:?}: {err}");
    }
    let err = c
        .publish_batch("plain", &["1".to_owned(), "2".to_owned()])
        .await
        .unwrap_err();
    assert_eq!(err.redis_code(), Some("WRONGTYPE"), "{err}");
    let v: String = redis::cmd("GET")
        .arg("plain")
        .query_async(&mut check)
        .await
        .unwrap();
    assert_eq!(v, "v");
    assert_eq!(
        c.publish("", "1", PublishId::Auto, None)
            .await
            .unwrap_err()
            .code(),
        "ERR_INVALID_ARG"
    );
    c.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_batch_keeps_order() {
    let server = RedisServer::start().await;
    let c = client(&server).await;
    let mut check = server.checker().await;
    let items: Vec<String> = (0..500).map(|i| format!(r#"{{"i":{i}}}"#)).collect();

    let ids = c.publish_batch("batch", &items).await.unwrap();
    assert_eq!(ids.len(), items.len());
    let ids: Vec<StreamId> = ids
        .into_iter()
        .map(|i| i.expect("every item written"))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids not increasing");

    let entries = xrange(&mut check, "batch").await;
    let stored_ids: Vec<StreamId> = entries.iter().map(|e| e.0).collect();
    assert_eq!(stored_ids, ids);
    let stored_data: Vec<String> = entries
        .iter()
        .map(|e| {
            assert_eq!(e.1[0].0, b"data");
            String::from_utf8(e.1[0].1.clone()).unwrap()
        })
        .collect();
    assert_eq!(stored_data, items);
    assert_eq!(c.status().counters.published, 500);
    c.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_is_not_delayed_by_a_blocked_read() {
    let server = RedisServer::start().await;
    let c = client(&server).await;
    let mut check = server.checker().await;
    let (handler, mut inbox) = ChannelHandler::new();
    // The read blocks for an hour: a publish queued behind it could not finish within
    // `within`'s deadline.
    c.subscribe(
        "quiet",
        handler,
        SubscribeOptions {
            start: StartId::Latest,
            block: Some(Duration::from_millis(streamcast::config::MAX_BLOCK_MS)),
            count: None,
        },
    )
    .await
    .unwrap();
    wait_reader_blocked(&mut check).await;

    let id = within(
        "a publish while a read is blocked",
        c.publish("other", "1", PublishId::Auto, None),
    )
    .await
    .unwrap();
    assert!(id.is_some());

    let id = within(
        "a publish to the blocked stream",
        c.publish("quiet", "2", PublishId::Auto, None),
    )
    .await
    .unwrap();
    assert_eq!(inbox.one(DELIVERY).await.id, id.unwrap());
    c.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_fails_connect_and_publish_fails_open() {
    // Nothing listens on port 1, so every attempt is refused at once. The command timeout is
    // ten minutes: resolving within `within`'s deadline proves that fail-open did not wait for it.
    let cfg = Config::from_input(ConfigInput {
        redis_url: Some("redis://127.0.0.1:1".to_owned()),
        connect_timeout_ms: Some(300.0),
        command_timeout_ms: Some(600_000.0),
        reconnect_initial_delay_ms: Some(50.0),
        reconnect_max_delay_ms: Some(200.0),
        ..Default::default()
    })
    .unwrap();
    let c = Arc::new(Client::new(cfg));

    let err = within("connect() rejects", c.connect()).await.unwrap_err();
    assert!(
        matches!(err.code(), "ERR_UNAVAILABLE" | "ERR_TIMEOUT"),
        "{err}"
    );
    assert!(!c.status().connected);

    assert_eq!(
        within(
            "publish fails open",
            c.publish("s", "1", PublishId::Auto, None)
        )
        .await
        .unwrap(),
        None
    );
    let batch = within(
        "publish_batch fails open",
        c.publish_batch("s", &["1".to_owned(), "2".to_owned()]),
    )
    .await
    .unwrap();
    assert_eq!(batch, vec![None, None]);
    assert_eq!(c.status().counters.publish_failed, 3);
    assert_eq!(c.status().counters.published, 0);

    within("disconnect() returns", c.disconnect()).await;
    // After disconnect() publishing still fails open (a request in flight during a
    // shutdown gets null, not an error), and counts as failed.
    assert_eq!(
        c.publish("s", "1", PublishId::Auto, None).await.unwrap(),
        None
    );
    assert_eq!(c.status().counters.publish_failed, 4);
}

/// "`null` within `commandTimeoutMs`" holds for a publish that waited its turn behind a
/// pipeline the server never answered: its deadline runs from the call, not from the send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_queued_behind_a_stalled_pipeline_resolves_null_within_the_command_timeout() {
    const TIMEOUT: Duration = Duration::from_millis(2000);
    // Scheduling slack on a loaded machine; the bug this guards against adds half a timeout
    // (1000 ms) here.
    const SLACK: Duration = Duration::from_millis(600);
    let server = RedisServer::start().await;
    let c = Arc::new(Client::new(
        Config::from_input(ConfigInput {
            redis_url: Some(server.url()),
            command_timeout_ms: Some(TIMEOUT.as_millis() as f64),
            ..Default::default()
        })
        .unwrap(),
    ));
    c.connect().await.unwrap();
    c.publish("stall", "0", PublishId::Auto, None)
        .await
        .unwrap()
        .expect("written before the stall");

    server.pause();
    let (tx, first) = tokio::sync::oneshot::channel();
    c.start_publish("stall", "1", PublishId::Auto, None, None, move |r| {
        let _ = tx.send(r);
    })
    .unwrap();
    // The first pipeline is on the wire, unanswered, for half its timeout; the second publish
    // queues behind it.
    tokio::time::sleep(TIMEOUT / 2).await;
    let queued_at = std::time::Instant::now();
    let second = c
        .publish("stall", "2", PublishId::Auto, None)
        .await
        .unwrap();
    let waited = queued_at.elapsed();
    assert_eq!(second, None, "the server is stopped");
    assert!(
        waited < TIMEOUT + SLACK,
        "a publish resolved null {waited:?} after the call; the contract is within commandTimeoutMs ({TIMEOUT:?})"
    );
    assert_eq!(
        within("the first publish", first).await.unwrap().unwrap(),
        None
    );
    server.resume();
    c.disconnect().await;
}
