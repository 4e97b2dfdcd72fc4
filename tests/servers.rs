//! What differs between the servers of the matrix (`STREAMCAST_TEST_SERVER`): the client
//! tells which one it reached, and `deleteOnAck` deletes acknowledged entries on each (with
//! `XACKDEL` on Redis 8.2+, `XACK` + `XDEL` elsewhere).

mod support;

use std::collections::HashSet;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use streamcast::{ConsumeOptions, ServerFamily, StartId, StreamId};
use support::{client, until, until_async, xrange, ChannelHandler, RedisServer, DELIVERY};

async fn info_server(check: &mut MultiplexedConnection) -> String {
    redis::cmd("INFO")
        .arg("server")
        .query_async(check)
        .await
        .unwrap()
}

fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// Calls of `command` the server counted.
async fn calls(check: &mut MultiplexedConnection, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(check)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_names_the_server_family_and_version() {
    let server = RedisServer::start().await;
    let mut check = server.checker().await;
    let info = info_server(&mut check).await;
    let c = client(&server).await;
    let s = c.status().server.expect("known once connected");
    match field(&info, "valkey_version") {
        Some(v) => assert_eq!((s.family, s.version.as_str()), (ServerFamily::Valkey, v)),
        None => assert_eq!(
            (s.family, s.version.as_str()),
            (ServerFamily::Redis, field(&info, "redis_version").unwrap())
        ),
    }
    let redis_82 = s.family == ServerFamily::Redis && {
        let mut v = s.version.split('.').map(|p| p.parse::<u32>().unwrap());
        (v.next().unwrap(), v.next().unwrap()) >= (8, 2)
    };
    assert_eq!(s.features().contains(&"XACKDEL"), redis_82);
    c.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_on_ack_deletes_handled_and_dead_lettered_entries() {
    let server = RedisServer::start().await;
    let mut check = server.checker().await;
    let c = client(&server).await;
    let redis_82 = c.status().server.unwrap().features().contains(&"XACKDEL");
    c.create_consumer_group("q", "g", StartId::After(StreamId::ZERO))
        .await
        .unwrap();
    let items: Vec<String> = (0..20).map(|i| i.to_string()).collect();
    let ids: Vec<StreamId> = c
        .publish_batch("q", &items)
        .await
        .unwrap()
        .into_iter()
        .map(Option::unwrap)
        .collect();
    // A second stream whose consumer acks only: its entries stay.
    c.create_consumer_group("kept", "g", StartId::After(StreamId::ZERO))
        .await
        .unwrap();
    c.publish_batch("kept", &items).await.unwrap();

    // Entry 3 fails: delivered again, it is dead-lettered (and deleted) instead.
    let poison: HashSet<StreamId> = [ids[3]].into();
    let (handler, mut inbox) = ChannelHandler::with(poison, None);
    let opts = ConsumeOptions {
        delete_on_ack: true,
        max_deliveries: Some(1),
        retry_delay: Duration::from_millis(10),
        ..Default::default()
    };
    let (xackdel_before, xdel_before) = (
        calls(&mut check, "xackdel").await,
        calls(&mut check, "xdel").await,
    );
    c.consume("q", "g", "w", handler, opts).await.unwrap();
    let (plain, mut plain_inbox) = ChannelHandler::new();
    c.consume("kept", "g", "w", plain, ConsumeOptions::default())
        .await
        .unwrap();
    inbox.take(20, DELIVERY).await;
    plain_inbox.take(20, DELIVERY).await;
    until_async("every entry of q deleted", DELIVERY, || {
        let mut check = check.clone();
        async move { xrange(&mut check, "q").await.is_empty() }
    })
    .await;
    until("all 20 + 20 acknowledged", DELIVERY, || {
        c.status().counters.acked >= 39 && c.status().counters.dead_lettered == 1
    })
    .await;
    let pending: (u64,) = redis::cmd("XPENDING")
        .arg("q")
        .arg("g")
        .query_async::<(u64, redis::Value, redis::Value, redis::Value)>(&mut check)
        .await
        .map(|r| (r.0,))
        .unwrap();
    assert_eq!(pending.0, 0);
    assert_eq!(xrange(&mut check, "q:dead").await.len(), 1);
    // Acknowledged without deleteOnAck: all still there.
    until_async("kept acknowledged", DELIVERY, || {
        let mut check = check.clone();
        async move {
            let p: (u64, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
                .arg("kept")
                .arg("g")
                .query_async(&mut check)
                .await
                .unwrap();
            p.0 == 0
        }
    })
    .await;
    assert_eq!(xrange(&mut check, "kept").await.len(), 20);
    // The server's own command on 8.2+, XACK + XDEL elsewhere.
    let used_xackdel = calls(&mut check, "xackdel").await > xackdel_before;
    let used_xdel = calls(&mut check, "xdel").await > xdel_before;
    assert_eq!((used_xackdel, used_xdel), (redis_82, !redis_82));
    c.disconnect().await;
}
