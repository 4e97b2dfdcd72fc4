//! Trimming on every server of the matrix (`STREAMCAST_TEST_SERVER`): approximate trims
//! remove whole nodes, and no trim removes an entry a consumer group has not had delivered
//! and acknowledged (Redis 8.2's `XTRIM ~ … ACKED` removes nothing at all, so the client
//! must not rely on it).

mod support;

use redis::aio::MultiplexedConnection;
use streamcast::{Client, StreamId, Trim, TrimTo};
use support::{client, xrange, RedisServer};

/// Appends entries `1-0` … `n-0` (the ids tell their position).
async fn seed(check: &mut MultiplexedConnection, stream: &str, n: u64) {
    let mut pipe = redis::pipe();
    for i in 1..=n {
        pipe.cmd("XADD")
            .arg(stream)
            .arg(format!("{i}-0"))
            .arg("data")
            .arg(i)
            .ignore();
    }
    let () = pipe.query_async(check).await.unwrap();
}

/// Group `g` from the start, `delivered` entries read by consumer `w`, the first `acked`
/// acknowledged.
async fn group(check: &mut MultiplexedConnection, stream: &str, delivered: u64, acked: u64) {
    let () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg("g")
        .arg("0")
        .query_async(check)
        .await
        .unwrap();
    if delivered > 0 {
        let _: redis::Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("g")
            .arg("w")
            .arg("COUNT")
            .arg(delivered)
            .arg("STREAMS")
            .arg(stream)
            .arg(">")
            .query_async(check)
            .await
            .unwrap();
    }
    if acked > 0 {
        let mut ack = redis::cmd("XACK");
        ack.arg(stream).arg("g");
        for i in 1..=acked {
            ack.arg(format!("{i}-0"));
        }
        let n: u64 = ack.query_async(check).await.unwrap();
        assert_eq!(n, acked);
    }
}

fn approx(to: TrimTo) -> Trim {
    Trim {
        to,
        approximate: true,
        keep_unacknowledged: true,
    }
}

async fn first_and_len(check: &mut MultiplexedConnection, stream: &str) -> (u64, usize) {
    let left = xrange(check, stream).await;
    let first = left.first().map_or(0, |e| e.0.ms);
    (first, left.len())
}

async fn trim(c: &Client, stream: &str, t: Trim) -> u64 {
    c.trim(stream, t).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approximate_trims_remove_whole_nodes_up_to_what_groups_still_need() {
    let server = RedisServer::start().await;
    let mut check = server.checker().await;
    let c = client(&server).await;

    // No group: the threshold alone decides; whole nodes (100 entries each by default) go.
    seed(&mut check, "plain", 1_000).await;
    let removed = trim(&c, "plain", approx(TrimTo::MaxLen(100))).await;
    let (first, len) = first_and_len(&mut check, "plain").await;
    assert!(
        removed >= 800,
        "approximate MAXLEN 100 of 1,000 entries removed {removed}"
    );
    assert_eq!(removed as usize + len, 1_000);
    assert!(len >= 100);
    assert_eq!(
        first,
        removed + 1,
        "the oldest entries are the ones removed"
    );

    // Every entry delivered and acknowledged by the only group: as without a group.
    seed(&mut check, "done", 1_000).await;
    group(&mut check, "done", 1_000, 1_000).await;
    let removed = trim(&c, "done", approx(TrimTo::MaxLen(100))).await;
    assert!(removed >= 800, "removed {removed} of a finished stream");

    // 500 delivered, 300 acknowledged: entry 301 is work not done, so at most 300 go, and
    // some whole node before it does.
    seed(&mut check, "work", 1_000).await;
    group(&mut check, "work", 500, 300).await;
    let removed = trim(&c, "work", approx(TrimTo::MaxLen(100))).await;
    let (first, len) = first_and_len(&mut check, "work").await;
    assert!(
        (1..=300).contains(&removed),
        "removed {removed}, the group needs entry 301 on"
    );
    assert!(
        first <= 301,
        "entry 301 (pending) was removed: first is {first}"
    );
    assert_eq!(removed as usize + len, 1_000);
    // The same by id.
    let removed = trim(
        &c,
        "work",
        approx(TrimTo::MinId(StreamId { ms: 900, seq: 0 })),
    )
    .await;
    let (first, _) = first_and_len(&mut check, "work").await;
    assert!(
        first <= 301,
        "MINID removed pending work: first is {first} ({removed} removed)"
    );

    // A threshold near the length (the check counts the entries below what the group needs):
    // MAXLEN 600 would remove 400, the group lets 300 go; MAXLEN 900 (exact) removes 100.
    seed(&mut check, "near", 1_000).await;
    group(&mut check, "near", 500, 300).await;
    let removed = trim(&c, "near", approx(TrimTo::MaxLen(600))).await;
    let (first, len) = first_and_len(&mut check, "near").await;
    assert!(
        removed <= 300 && first <= 301,
        "removed {removed}, first {first}"
    );
    assert_eq!(removed as usize + len, 1_000);
    seed(&mut check, "near2", 1_000).await;
    group(&mut check, "near2", 500, 300).await;
    let exact = Trim {
        approximate: false,
        ..approx(TrimTo::MaxLen(900))
    };
    assert_eq!(trim(&c, "near2", exact).await, 100);
    assert_eq!(first_and_len(&mut check, "near2").await, (101, 900));

    // All delivered entries acknowledged, the rest never delivered: entry 501 on is kept.
    seed(&mut check, "tail", 1_000).await;
    group(&mut check, "tail", 500, 500).await;
    let removed = trim(&c, "tail", approx(TrimTo::MaxLen(100))).await;
    let (first, _) = first_and_len(&mut check, "tail").await;
    assert!(
        (1..=500).contains(&removed) && first <= 501,
        "removed {removed}, first left {first}: the group has not had 501 on delivered"
    );

    // keepUnacknowledged: false removes what the threshold says, work or not.
    let removed = trim(
        &c,
        "tail",
        Trim {
            keep_unacknowledged: false,
            ..approx(TrimTo::MaxLen(100))
        },
    )
    .await;
    assert!(removed > 0);
    assert!(first_and_len(&mut check, "tail").await.0 > 501);
    c.disconnect().await;
}

/// XRANGE calls the server counted (scripts' calls included).
async fn xrange_calls(check: &mut MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(check)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_xrange:calls="))
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_within_max_len_is_not_read_to_be_trimmed() {
    // REVIEW A23: the safety check read up to maxLen + 1 entries even when the stream held
    // fewer than maxLen (nothing to trim), blocking the server for a large maxLen.
    let server = RedisServer::start().await;
    let mut check = server.checker().await;
    let c = client(&server).await;
    seed(&mut check, "s", 2_000).await;
    group(&mut check, "s", 10, 0).await;
    let before = xrange_calls(&mut check).await;
    for approximate in [true, false] {
        let t = Trim {
            approximate,
            ..approx(TrimTo::MaxLen(1_000_000))
        };
        assert_eq!(trim(&c, "s", t).await, 0);
    }
    assert_eq!(
        xrange_calls(&mut check).await,
        before,
        "the trim read entries"
    );
    assert_eq!(first_and_len(&mut check, "s").await, (1, 2_000));
    c.disconnect().await;
}
