//! Thousands of subscribed streams in one process: what an idle reader costs Redis, and that
//! a gap on one busy stream among them is still reported promptly.

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::aio::MultiplexedConnection;
use streamcast::{Batch, HandleResult, Handler, Outcome, PublishId, SubscribeOptions};
use support::{calls, client, until, until_async, ChannelHandler, RedisServer};
use tokio::sync::Semaphore;

/// Idle subscribed streams, one subscription each.
const IDLE_STREAMS: usize = 2_000;
/// The most `XINFO STREAM` commands one idle BLOCK may cost (the reader's bound).
const CHECKS_PER_BLOCK: u64 = 16;

/// Creates `n` streams of one entry each, named `idle:00000`... (sorted before `zz-hot`).
async fn create_idle_streams(conn: &mut MultiplexedConnection, n: usize) -> Vec<String> {
    let names: Vec<String> = (0..n).map(|i| format!("idle:{i:05}")).collect();
    let mut pipe = redis::pipe();
    for name in &names {
        pipe.cmd("XADD")
            .arg(name)
            .arg("*")
            .arg("data")
            .arg("{}")
            .ignore();
    }
    let () = pipe
        .query_async(conn)
        .await
        .expect("create the idle streams");
    names
}

fn blocking(ms: u64) -> SubscribeOptions {
    SubscribeOptions {
        block: Some(Duration::from_millis(ms)),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_subscriptions_cost_a_bounded_number_of_checks_per_block() {
    let server = RedisServer::start().await;
    let mut checker = server.checker().await;
    let names = create_idle_streams(&mut checker, IDLE_STREAMS).await;
    let c = client(&server).await;
    let (handler, _inbox) = ChannelHandler::new();
    for name in &names {
        c.subscribe(name, handler.clone(), blocking(100))
            .await
            .expect("subscribe");
    }
    // Counted from the first idle read on: subscribing itself resolves "$" per stream.
    let reads_from = calls(&mut checker, "xread").await;
    until_async("the reader has read", Duration::from_secs(20), || {
        let mut conn = checker.clone();
        async move { calls(&mut conn, "xread").await > reads_from }
    })
    .await;
    let xinfo_before = calls(&mut checker, "xinfo|stream").await;
    let xread_before = calls(&mut checker, "xread").await;
    until_async("20 idle BLOCK periods", Duration::from_secs(60), || {
        let mut conn = checker.clone();
        async move { calls(&mut conn, "xread").await >= xread_before + 20 }
    })
    .await;
    let xread = calls(&mut checker, "xread").await - xread_before;
    let xinfo = calls(&mut checker, "xinfo|stream").await - xinfo_before;
    println!("{IDLE_STREAMS} idle subscriptions: {xread} XREAD, {xinfo} XINFO STREAM");
    // One idle BLOCK may be followed by a check of at most CHECKS_PER_BLOCK streams (the
    // read in flight when we looked may add one more round).
    assert!(
        xinfo <= (xread + 1) * CHECKS_PER_BLOCK,
        "{xinfo} XINFO STREAM for {xread} idle reads: more than {CHECKS_PER_BLOCK} per BLOCK"
    );
    // ...and the checks do happen (a reader that never checked would find no gap).
    assert!(xinfo > 0, "no position was checked in {xread} idle reads");
    c.disconnect().await;
}

/// Holds every batch until the test opens the gate.
struct Gated {
    gate: Arc<Semaphore>,
}

impl Handler for Gated {
    fn handle(&self, batch: Batch) -> BoxFuture<'static, HandleResult> {
        let gate = self.gate.clone();
        let handled = batch.entries().len();
        Box::pin(async move {
            let _pass = gate.acquire().await.expect("gate open");
            Ok(Outcome {
                handled,
                failures: Vec::new(),
            })
        })
    }

    fn max_in_flight(&self) -> usize {
        1
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_on_one_busy_stream_among_thousands_is_reported_promptly() {
    let server = RedisServer::start().await;
    let mut checker = server.checker().await;
    let names = create_idle_streams(&mut checker, IDLE_STREAMS).await;
    let c = client(&server).await;
    let (idle, _inbox) = ChannelHandler::new();
    // A long BLOCK: a round of checks over every stream would take
    // IDLE_STREAMS / CHECKS_PER_BLOCK = 125 BLOCK periods (over two minutes).
    for name in &names {
        c.subscribe(name, idle.clone(), blocking(1_000))
            .await
            .expect("subscribe");
    }
    let gate = Arc::new(Semaphore::new(0));
    c.subscribe(
        "zz-hot",
        Arc::new(Gated { gate: gate.clone() }),
        blocking(1_000),
    )
    .await
    .expect("subscribe zz-hot");
    // One batch in the handler, one queued (its cursor moves when it is queued): the reader
    // then leaves zz-hot out of its reads until the handler makes room.
    for round in 0..2 {
        let id = c
            .publish(
                "zz-hot",
                &format!(r#"{{"round":{round}}}"#),
                PublishId::Auto,
                None,
            )
            .await
            .expect("publish")
            .expect("written");
        until(
            "the reader handed the entry over",
            Duration::from_secs(20),
            || {
                c.status()
                    .subscription_details
                    .iter()
                    .any(|s| s.stream == "zz-hot" && s.last_id == Some(id))
            },
        )
        .await;
    }
    // Entries the subscription never saw, trimmed before it could read them.
    for i in 0..50 {
        c.publish(
            "zz-hot",
            &format!(r#"{{"lost":{i}}}"#),
            PublishId::Auto,
            None,
        )
        .await
        .expect("publish")
        .expect("written");
    }
    let () = redis::cmd("XTRIM")
        .arg("zz-hot")
        .arg("MAXLEN")
        .arg(0)
        .query_async::<i64>(&mut checker)
        .await
        .map(|_| ())
        .expect("XTRIM");
    assert_eq!(c.status().counters.gaps, 0);
    gate.add_permits(1_000);
    until(
        "the gap on zz-hot is reported",
        Duration::from_secs(20),
        || c.status().counters.gaps >= 1,
    )
    .await;
    c.disconnect().await;
}

/// A reader whose full position check (every stream, after a reconnect) cannot fit in one
/// `commandTimeoutMs` must still get back to reading: the check goes in chunks, each with its
/// own timeout, a timed-out step backs off instead of reconnecting at once (REVIEW A4: the
/// loop connect -> INFO -> check -> timeout -> reconnect ran with no pause, and nothing was
/// delivered), and a chunk that timed out is halved for the next try. A check costs the
/// server about 60 µs per stream here, so the first chunk of 256 (about 15 ms) never fits in
/// the 3 ms timeout: with a fixed chunk the reader never read again (and with 25 ms, CI's
/// loaded runs missed it too, 2 of 4 on one day). It still failed on CI (Valkey 9.1, stop
/// 25) because the check itself was quadratic: each stream's subscriptions were found by a
/// scan of all 6,000, three times per stream, so the reader spent 5-7 s of CPU before it
/// read again (debug build), and under load that was past the 10 s below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_check_too_big_for_one_timeout_neither_loops_nor_stops_delivery() {
    const STREAMS: usize = 6_000;
    let server = RedisServer::start().await;
    let mut checker = server.checker().await;
    let names = create_idle_streams(&mut checker, STREAMS).await;
    let c = Arc::new(streamcast::Client::new(
        streamcast::Config::from_input(streamcast::ConfigInput {
            redis_url: Some(server.url()),
            command_timeout_ms: Some(10.0),
            ..Default::default()
        })
        .unwrap(),
    ));
    c.connect().await.unwrap();
    let (handler, mut inbox) = ChannelHandler::new();
    let from_start = SubscribeOptions {
        start: streamcast::StartId::After(streamcast::StreamId::ZERO),
        block: Some(Duration::from_millis(100)),
        count: None,
    };
    for name in &names {
        c.subscribe(name, handler.clone(), from_start)
            .await
            .expect("subscribe");
    }
    inbox.take(STREAMS, Duration::from_secs(30)).await;

    // Every connection of the client is cut: the reader reconnects and checks all 6,000
    // positions before it reads again.
    let _: () = redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "normal", "SKIPME", "yes"])
        .query_async(&mut checker)
        .await
        .map(|_: i64| ())
        .unwrap();
    let reconnects_before = c.status().counters.reconnects;
    let marker: String = redis::cmd("XADD")
        .arg(&names[0])
        .arg("*")
        .arg("data")
        .arg("\"marker\"")
        .query_async(&mut checker)
        .await
        .unwrap();
    let got = inbox.one(Duration::from_secs(10)).await;
    assert_eq!(got.id.to_string(), marker);
    let reconnects = c.status().counters.reconnects - reconnects_before;
    // The reader's and the command connection's, each with a back-off that only a read
    // resets: a chunk that still misses the 3 ms under load costs a reconnect after a
    // growing delay, never a loop.
    assert!(
        reconnects <= 8,
        "{reconnects} reconnects before the reader read again"
    );
    c.disconnect().await;
}

/// `total_net_output_bytes` of the server (everything it sent to every client).
async fn bytes_sent(conn: &mut MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(conn)
        .await
        .expect("INFO stats");
    info.lines()
        .find_map(|l| l.strip_prefix("total_net_output_bytes:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("total_net_output_bytes")
}

/// An idle reader's position checks do not download the entries (REVIEW A8): `XINFO STREAM`
/// carries the first and last entry with all their fields, so each check of a stream whose
/// entry is 1 MiB cost about 2 MiB; the stream-facts script returns a few numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_position_checks_do_not_download_payloads() {
    const PAYLOAD: usize = 1 << 20;
    const CHECKS: u64 = 5;
    let server = RedisServer::start().await;
    let mut checker = server.checker().await;
    let _: String = redis::cmd("XADD")
        .arg("big")
        .arg("*")
        .arg("data")
        .arg(format!("\"{}\"", "x".repeat(PAYLOAD)))
        .query_async(&mut checker)
        .await
        .unwrap();
    let c = client(&server).await;
    let (handler, _inbox) = ChannelHandler::new();
    c.subscribe("big", handler, blocking(50)).await.unwrap();
    let checks_from = calls(&mut checker, "xinfo|stream").await;
    let sent_from = bytes_sent(&mut checker).await;
    until_async("idle position checks", Duration::from_secs(20), || {
        let mut conn = checker.clone();
        async move { calls(&mut conn, "xinfo|stream").await >= checks_from + CHECKS }
    })
    .await;
    let checks = calls(&mut checker, "xinfo|stream").await - checks_from;
    let per_check = (bytes_sent(&mut checker).await - sent_from) / checks;
    // The checker's own INFO replies are in the count too (a few KiB each).
    assert!(
        per_check < 64 * 1024,
        "{per_check} bytes sent per position check of a stream whose entry is 1 MiB"
    );
    c.disconnect().await;
}
