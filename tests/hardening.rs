//! The server's state is not the caller's mistake; the offline buffer keeps call order under
//! repeated cuts; panicking handlers leave no ghosts; trimming never deletes work a consumer
//! group has not finished.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::aio::MultiplexedConnection;
use streamcast::{
    Batch, Client, Config, ConfigInput, ConsumeOptions, HandleResult, Handler, Outcome, PublishId,
    StartId, StreamId, SubscribeOptions, Trim, TrimTo,
};
use support::{config, until, until_async, within, xrange, ChannelHandler, RedisServer, DELIVERY};

fn config_with(url: &str, f: impl FnOnce(&mut ConfigInput)) -> Config {
    let mut input = ConfigInput {
        redis_url: Some(url.to_owned()),
        ..Default::default()
    };
    f(&mut input);
    Config::from_input(input).expect("valid config")
}

async fn cmd<T: redis::FromRedisValue>(conn: &mut MultiplexedConnection, args: &[&str]) -> T {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query_async(conn)
        .await
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// A port nothing listens on.
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readonly_after_a_failover_fails_open_and_the_connections_are_replaced() {
    let server = RedisServer::start().await;
    let mut check = server.checker().await;
    let c = Client::new(config(&server.url()));
    c.connect().await.unwrap();
    assert!(c
        .create_consumer_group("jobs", "g", StartId::After(StreamId::ZERO))
        .await
        .unwrap());
    let (h, mut inbox) = ChannelHandler::new();
    c.consume("jobs", "g", "w", h, ConsumeOptions::default())
        .await
        .unwrap();
    let reconnects_before = c.status().counters.reconnects;

    // What a managed Redis's failover looks like from the old primary's connections: the
    // server is demoted to a replica (of a primary we cannot reach).
    let _: () = cmd(
        &mut check,
        &["REPLICAOF", "127.0.0.1", &dead_port().to_string()],
    )
    .await;
    for _ in 0..3 {
        let r = c.publish("jobs", r#"{"n":0}"#, PublishId::Auto, None).await;
        assert!(
            matches!(r, Ok(None)),
            "READONLY is the server's state: fail open, not {r:?}"
        );
    }
    assert!(c.status().counters.server_state_errors >= 1);
    // READONLY replaces the command connection, and the consumer's XREADGROUP (a write)
    // meets it too and replaces its own.
    until("the connections were replaced", DELIVERY, || {
        c.status().counters.reconnects >= reconnects_before + 2
    })
    .await;

    let _: () = cmd(&mut check, &["REPLICAOF", "NO", "ONE"]).await;
    let deadline = std::time::Instant::now() + DELIVERY;
    let id = loop {
        if let Some(id) = c
            .publish("jobs", r#"{"n":1}"#, PublishId::Auto, None)
            .await
            .unwrap()
        {
            break Some(id);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no publish succeeded after REPLICAOF NO ONE"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The consumer consumes again.
    assert_eq!(inbox.one(DELIVERY).await.id, id.unwrap());
    c.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offline_buffer_keeps_call_order_and_settles_everything_under_repeated_cuts() {
    let server = RedisServer::start().await;
    let c = Arc::new(Client::new(config_with(&server.url(), |i| {
        i.offline_buffer = Some(100_000.0);
        i.reconnect_max_delay_ms = Some(50.0);
    })));
    c.connect().await.unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cuts = Arc::new(AtomicUsize::new(0));
    let cutter = {
        let stop = stop.clone();
        let cuts = cuts.clone();
        let url = server.url();
        tokio::spawn(async move {
            let mut killer = redis::Client::open(url)
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            while !stop.load(Ordering::SeqCst) {
                let _: redis::RedisResult<i64> = redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("TYPE")
                    .arg("normal")
                    .query_async(&mut killer)
                    .await;
                cuts.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    // Waves of concurrent publishes: call order is n.
    let mut results = Vec::new();
    let mut n = 0u64;
    // Waves until the connection has been cut many times under them.
    let mut waves = 0;
    while cuts.load(Ordering::SeqCst) < 40 || waves < 20 {
        waves += 1;
        let mut wave = Vec::new();
        for _ in 0..50 {
            let (tx, rx) = tokio::sync::oneshot::channel();
            c.start_publish(
                "ordered",
                &format!(r#"{{"n":{n}}}"#),
                PublishId::Auto,
                None,
                None,
                move |r| {
                    let _ = tx.send(r);
                },
            )
            .unwrap();
            wave.push((n, rx));
            n += 1;
        }
        for (n, rx) in wave {
            // Every publish settles; none waits for a reconnect that never comes.
            let r = within("a parked publish settles", rx).await.unwrap();
            results.push((n, r.unwrap()));
        }
    }
    stop.store(true, Ordering::SeqCst);
    cutter.await.unwrap();
    // The cuts took the checker's connection too.
    let mut check = server.checker().await;
    let stored = xrange(&mut check, "ordered").await;
    let stored_n: Vec<u64> = stored
        .iter()
        .map(|(_, f)| {
            let data: serde_json::Value =
                serde_json::from_slice(&f.iter().find(|(k, _)| k == b"data").unwrap().1).unwrap();
            data["n"].as_u64().unwrap()
        })
        .collect();
    // Every id a publish resolved to is stored, with its payload.
    let by_id: std::collections::HashMap<StreamId, u64> = stored
        .iter()
        .map(|(id, _)| *id)
        .zip(stored_n.iter().copied())
        .collect();
    for (n, r) in &results {
        if let Some(id) = r {
            assert_eq!(by_id.get(id), Some(n), "publish {n} resolved to {id}");
        }
    }
    // Call order: the first copy of every n appears in increasing n (a publish cut on the
    // wire may be stored twice: at least once).
    let mut seen = HashSet::new();
    let firsts: Vec<u64> = stored_n.into_iter().filter(|n| seen.insert(*n)).collect();
    assert!(
        firsts.windows(2).all(|w| w[0] < w[1]),
        "entries out of call order: {firsts:?}"
    );
    assert!(results.iter().filter(|(_, r)| r.is_some()).count() > 100);
    c.disconnect().await;
}

/// A handler that panics on every batch.
struct Panicking(AtomicUsize);

impl Handler for Panicking {
    fn handle(&self, _batch: Batch) -> BoxFuture<'static, HandleResult> {
        self.0.fetch_add(1, Ordering::SeqCst);
        panic!("the handler panics");
    }
}

/// A handler that claims to have handled far more messages than it got.
struct Boasting;

impl Handler for Boasting {
    fn handle(&self, _batch: Batch) -> BoxFuture<'static, HandleResult> {
        Box::pin(async {
            Ok(Outcome {
                handled: 1_000,
                failures: Vec::new(),
            })
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_leaves_no_ghost_consumer_or_subscription() {
    let server = RedisServer::start().await;
    let c = Client::new(config(&server.url()));
    c.connect().await.unwrap();
    assert!(c
        .create_consumer_group("p", "g", StartId::After(StreamId::ZERO))
        .await
        .unwrap());
    c.publish("p", "1", PublishId::Auto, None).await.unwrap();
    let panicking = Arc::new(Panicking(AtomicUsize::new(0)));
    c.consume("p", "g", "w", panicking.clone(), ConsumeOptions::default())
        .await
        .unwrap();
    until("the handler ran", DELIVERY, || {
        panicking.0.load(Ordering::SeqCst) > 0
    })
    .await;
    until("the consumer left the registry", DELIVERY, || {
        c.status().consumer_groups.is_empty()
    })
    .await;
    // Not running: stopping returns at once, and the same consumer can start again.
    assert!(!within("stop returns", c.stop_consumer("p", "g", "w")).await);
    let (h, mut inbox) = ChannelHandler::new();
    c.consume("p", "g", "w", h, ConsumeOptions::default())
        .await
        .unwrap();
    // Its pending entry (the one the panicking handler got) is delivered again.
    inbox.one(DELIVERY).await;

    let sub = Arc::new(Panicking(AtomicUsize::new(0)));
    let id = c
        .subscribe("s", sub.clone(), SubscribeOptions::default())
        .await
        .unwrap();
    c.publish("s", "1", PublishId::Auto, None).await.unwrap();
    until("the subscription ended with its handler", DELIVERY, || {
        !c.is_subscribed(id)
    })
    .await;
    assert!(c.status().subscription_details.is_empty());
    c.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_reports_more_than_it_got_cannot_crash_the_consumer() {
    let server = RedisServer::start().await;
    let check = server.checker().await;
    let c = Client::new(config(&server.url()));
    c.connect().await.unwrap();
    assert!(c
        .create_consumer_group("b", "g", StartId::After(StreamId::ZERO))
        .await
        .unwrap());
    c.consume("b", "g", "w", Arc::new(Boasting), ConsumeOptions::default())
        .await
        .unwrap();
    for i in 0..3 {
        c.publish("b", &i.to_string(), PublishId::Auto, None)
            .await
            .unwrap();
    }
    until_async("all three acknowledged", DELIVERY, || {
        let mut check = check.clone();
        let acked = c.status().counters.acked;
        async move {
            let check = &mut check;
            let v: (u64, redis::Value, redis::Value, redis::Value) =
                cmd(check, &["XPENDING", "b", "g"]).await;
            v.0 == 0 && acked == 3
        }
    })
    .await;
    assert_eq!(c.status().counters.acked, 3);
    assert_eq!(c.status().consumer_groups, vec!["b:g:w".to_owned()]);
    c.disconnect().await;
}

/// A stream of `n` entries with group `g` created at 0, of which consumer `w` read `read`
/// and acknowledged `acked` (the first ones).
async fn backlog(
    c: &Client,
    check: &mut MultiplexedConnection,
    stream: &str,
    n: usize,
    read: usize,
    acked: usize,
) -> Vec<StreamId> {
    // The group first: from its creation on, its entries are protected.
    let _: () = cmd(check, &["XGROUP", "CREATE", stream, "g", "0", "MKSTREAM"]).await;
    let items: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    let ids: Vec<StreamId> = c
        .publish_batch(stream, &items)
        .await
        .unwrap()
        .into_iter()
        .map(Option::unwrap)
        .collect();
    if read > 0 {
        let _: redis::Value = cmd(
            check,
            &[
                "XREADGROUP",
                "GROUP",
                "g",
                "w",
                "COUNT",
                &read.to_string(),
                "STREAMS",
                stream,
                ">",
            ],
        )
        .await;
    }
    if acked > 0 {
        let mut ack = vec!["XACK", stream, "g"];
        let acked_ids: Vec<String> = ids[..acked].iter().map(|i| i.to_string()).collect();
        ack.extend(acked_ids.iter().map(String::as_str));
        let _: u64 = cmd(check, &ack).await;
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trimming_stops_at_the_oldest_entry_a_group_has_not_finished() {
    let server = RedisServer::start().await;
    let mut check = server.checker().await;
    let c = Client::new(config(&server.url()));
    c.connect().await.unwrap();
    let exact = |to| Trim {
        to,
        approximate: false,
        keep_unacknowledged: true,
    };

    // 100 entries; 30 delivered, 20 acknowledged: entries 20.. are work not done.
    let ids = backlog(&c, &mut check, "work", 100, 30, 20).await;
    assert_eq!(c.trim("work", exact(TrimTo::MaxLen(10))).await.unwrap(), 20);
    let left = xrange(&mut check, "work").await;
    assert_eq!(left.first().unwrap().0, ids[20]);
    assert_eq!(left.len(), 80);
    // MINID beyond the work: stops at it too.
    assert_eq!(
        c.trim("work", exact(TrimTo::MinId(ids[90]))).await.unwrap(),
        0
    );
    // Without the protection, the threshold alone decides.
    let unsafe_trim = Trim {
        keep_unacknowledged: false,
        ..exact(TrimTo::MaxLen(10))
    };
    assert_eq!(c.trim("work", unsafe_trim).await.unwrap(), 70);

    // Nothing delivered yet (a group created at 0 that never read): nothing removable.
    let _ = backlog(&c, &mut check, "fresh", 50, 0, 0).await;
    assert_eq!(c.trim("fresh", exact(TrimTo::MaxLen(5))).await.unwrap(), 0);
    // Everything delivered and acknowledged: MAXLEN applies as usual.
    let _ = backlog(&c, &mut check, "done", 50, 50, 50).await;
    assert_eq!(c.trim("done", exact(TrimTo::MaxLen(5))).await.unwrap(), 45);
    // No group: as XTRIM.
    let items: Vec<String> = (0..30).map(|i| i.to_string()).collect();
    c.publish_batch("plain", &items).await.unwrap();
    assert_eq!(c.trim("plain", exact(TrimTo::MaxLen(5))).await.unwrap(), 25);
    // A missing stream: nothing to do.
    assert_eq!(
        c.trim("missing", exact(TrimTo::MaxLen(5))).await.unwrap(),
        0
    );
    c.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_trim_covers_published_streams_only_and_keeps_unfinished_work() {
    let server = RedisServer::start().await;
    let mut check = server.checker().await;
    let interval = |i: &mut ConfigInput| {
        i.auto_trim_interval = Some(100.0);
        i.default_max_len = Some(10.0);
    };
    // A reader: subscribes to and consumes from other services' streams.
    let reader = Client::new(config_with(&server.url(), interval));
    reader.connect().await.unwrap();
    // A writer of its own stream, which also has a work queue.
    let writer = Client::new(config_with(&server.url(), interval));
    writer.connect().await.unwrap();

    let items: Vec<String> = (0..300).map(|i| i.to_string()).collect();
    let _ = writer.publish_batch("theirs", &items).await.unwrap();
    let (h, _inbox) = ChannelHandler::new();
    reader
        .subscribe("theirs", h, SubscribeOptions::default())
        .await
        .unwrap();
    // 1,000 entries, 600 delivered, 500 acknowledged: approximate trimming removes whole
    // nodes (100 entries each) below entry 500, never entry 500 or later.
    let ids = backlog(&writer, &mut check, "queue", 1000, 600, 500).await;

    // The writer's auto-trim runs every 100 ms: "theirs" (published by the writer) is
    // trimmed to about 10; the queue keeps everything from its first unfinished entry.
    until_async("the writer trimmed", DELIVERY, || {
        let mut check = check.clone();
        async move { cmd::<u64>(&mut check, &["XLEN", "theirs"]).await < 300 }
    })
    .await;
    until_async(
        "the writer trimmed the queue as far as it may",
        DELIVERY,
        || {
            let mut check = check.clone();
            async move { cmd::<u64>(&mut check, &["XLEN", "queue"]).await < 1000 }
        },
    )
    .await;
    // Approximate trimming removes whole nodes below the first unfinished entry, never it.
    let queue = xrange(&mut check, "queue").await;
    assert!(
        queue.first().unwrap().0 <= ids[500],
        "work was trimmed away"
    );
    assert_eq!(queue.iter().filter(|(id, _)| *id >= ids[500]).count(), 500);
    // A stream only read by `reader` and never published by anyone since: untouched.
    let only_read: Vec<String> = (0..300).map(|i| i.to_string()).collect();
    let _: () = {
        let mut p = redis::pipe();
        for i in &only_read {
            p.cmd("XADD")
                .arg("read-only")
                .arg("*")
                .arg("data")
                .arg(i)
                .ignore();
        }
        p.query_async(&mut check).await.unwrap()
    };
    let (h2, _inbox2) = ChannelHandler::new();
    reader
        .subscribe(
            "read-only",
            h2,
            SubscribeOptions {
                start: StartId::After(StreamId::ZERO),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // Several auto-trim periods of both clients pass; asserting that nothing happens needs
    // a window.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(cmd::<u64>(&mut check, &["XLEN", "read-only"]).await, 300);
    reader.disconnect().await;
    writer.disconnect().await;
}
