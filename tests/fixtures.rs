//! The fixtures' own tests, not streamcast's: `support/topology.rs` (a real Redis Cluster and
//! Sentinel set-up) driven with the `redis` crate's own cluster and sentinel clients, so that a
//! failing product test can be told apart from a broken fixture. The cluster takes writes on
//! every master, survives a SIGKILLed master with the replicated keys and moves slots; the
//! sentinel set-up fails over on `SENTINEL FAILOVER` and on a SIGKILL, and a client asking the
//! sentinels finds the new master. No streamcast code runs here. The times are printed (to
//! stderr, past the test harness's capture), never asserted.

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::Sentinel;
use redis::AsyncCommands;
use support::topology::{info_field, RedisCluster, RedisSentinel, Servers, SENTINEL_MASTER_NAME};

fn report(what: &str, took: Duration) {
    let _ = writeln!(std::io::stderr(), "[topology] {what}: {took:.2?}");
}

async fn cluster_conn(cluster: &RedisCluster) -> ClusterConnection {
    ClusterClientBuilder::new(cluster.seed_urls())
        .response_timeout(Duration::from_secs(2))
        .build()
        .expect("cluster client")
        .get_async_connection()
        .await
        .expect("cluster connection")
}

async fn started_cluster() -> RedisCluster {
    let t = Instant::now();
    let cluster = RedisCluster::start().await;
    report("cluster start (6 nodes, create, healthy)", t.elapsed());
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_takes_writes_on_each_of_its_three_masters() {
    let cluster = started_cluster().await;
    let masters = cluster.masters().await;
    assert_eq!(masters.len(), 3, "masters {masters:?}");
    let mut nodes: Vec<u16> = masters.clone();
    for &m in &masters {
        let replica = cluster.replica_of(m).await;
        let info: String = cluster
            .query(replica, redis::cmd("INFO").arg("replication"))
            .await;
        assert_eq!(info_field(&info, "master_port"), Some(&*m.to_string()));
        nodes.push(replica);
    }
    nodes.sort_unstable();
    let mut all = cluster.ports();
    all.sort_unstable();
    assert_eq!(nodes, all, "every node is a master or a master's replica");

    let mut conn = cluster_conn(&cluster).await;
    for &m in &masters {
        let stream = cluster.key_on(m, "events").await;
        let id: String = conn.xadd(&stream, "*", &[("n", m)]).await.unwrap();
        // The entry is on the master that owns the slot, read without redirection.
        let len: u64 = cluster.query(m, redis::cmd("XLEN").arg(&stream)).await;
        assert_eq!(len, 1, "{stream} on :{m} (entry {id})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_masters_replica_takes_over_with_the_replicated_entries() {
    let mut cluster = started_cluster().await;
    let victim = cluster.masters().await[0];
    let replica = cluster.replica_of(victim).await;
    let stream = cluster.key_on(victim, "events").await;
    let mut conn = cluster_conn(&cluster).await;
    for i in 0..100 {
        let _: String = conn.xadd(&stream, "*", &[("i", i)]).await.unwrap();
    }
    // Replication is asynchronous: only what the replica acknowledged survives a SIGKILL.
    let acked: u64 = cluster
        .query(victim, redis::cmd("WAIT").arg(1).arg(5_000))
        .await;
    assert_eq!(acked, 1);

    let t = Instant::now();
    let promoted = cluster.kill_master(victim).await;
    report(
        "cluster: SIGKILL of a master until healthy again",
        t.elapsed(),
    );
    assert_eq!(promoted, replica);
    assert_eq!(cluster.master_for_key(&stream).await, promoted);

    let mut fresh = cluster_conn(&cluster).await;
    let len: u64 = fresh.xlen(&stream).await.unwrap();
    assert_eq!(len, 100);
    let _: String = fresh.xadd(&stream, "*", &[("i", "after")]).await.unwrap();

    let t = Instant::now();
    cluster.restart(victim).await;
    report(
        "cluster: restart of the old master until healthy",
        t.elapsed(),
    );
    let info: String = cluster
        .query(victim, redis::cmd("INFO").arg("replication"))
        .await;
    assert_eq!(info_field(&info, "role"), Some("slave"));
    assert_eq!(
        info_field(&info, "master_port"),
        Some(&*promoted.to_string())
    );
    // A replica serves reads only on a connection that sent READONLY (else it answers MOVED).
    cluster.query::<()>(victim, &redis::cmd("READONLY")).await;
    let replicated: u64 = cluster.query(victim, redis::cmd("XLEN").arg(&stream)).await;
    assert_eq!(replicated, 101, "the returning node resynchronised");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_moves_slots_with_their_keys() {
    let cluster = started_cluster().await;
    let masters = cluster.masters().await;
    let (from, to) = (masters[0], masters[1]);
    let mut conn = cluster_conn(&cluster).await;
    // Keys in many slots of `from`, so the moved slots carry some.
    let mut keys = Vec::new();
    for i in 0..3_000 {
        let key = format!("k{i}");
        if cluster.master_for_key(&key).await == from {
            let _: () = conn.set(&key, i).await.unwrap();
            keys.push((key, i));
        }
    }

    let t = Instant::now();
    let moved = cluster.reshard(from, to, 100).await;
    report("cluster: redis-cli reshard of 100 slots", t.elapsed());
    let mut moved_keys = 0;
    for (key, value) in &keys {
        let slot = cluster.slot_of(key).await;
        if moved.contains(&slot) {
            moved_keys += 1;
            let got: i64 = cluster.query(to, redis::cmd("GET").arg(key)).await;
            assert_eq!(got, *value);
            let err = cluster
                .node_conn(from)
                .await
                .get::<_, i64>(key)
                .await
                .unwrap_err();
            assert_eq!(err.code(), Some("MOVED"), "{err}");
        }
        let got: i64 = conn.get(key).await.unwrap();
        assert_eq!(got, *value, "{key} through the cluster client");
    }
    assert!(moved_keys > 0, "no key in the 100 moved slots");

    // By hand: while the slot is migrating, the old owner answers ASK for keys it no longer has.
    let slot = cluster.slot_of("hand-moved").await;
    let owner = cluster.master_for_slot(slot).await;
    let target = *masters.iter().find(|&&m| m != owner).unwrap();
    let _: () = conn.set("{hand-moved}:kept", 1).await.unwrap();
    let t = Instant::now();
    cluster.begin_slot_move(slot, target).await;
    let err = cluster
        .node_conn(owner)
        .await
        .get::<_, Option<i64>>("{hand-moved}:absent")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ASK"), "{err}");
    cluster.finish_slot_move(slot, target).await;
    report("cluster: one slot moved by hand", t.elapsed());
    assert_eq!(cluster.master_for_slot(slot).await, target);
    let kept: i64 = cluster
        .query(target, redis::cmd("GET").arg("{hand-moved}:kept"))
        .await;
    assert_eq!(kept, 1);
}

async fn started_sentinel() -> RedisSentinel {
    let t = Instant::now();
    let setup = RedisSentinel::start().await;
    report(
        "sentinel start (master, replica, 3 sentinels, ready)",
        t.elapsed(),
    );
    setup
}

/// The port of the master the sentinels hand out to a client that asks them.
async fn resolved_master(setup: &RedisSentinel) -> (u16, redis::Client) {
    let mut sentinel = Sentinel::build(setup.sentinel_urls()).expect("sentinel client");
    let client = sentinel
        .async_master_for(SENTINEL_MASTER_NAME, None)
        .await
        .expect("the sentinels name a master");
    let port = match client.get_connection_info().addr() {
        redis::ConnectionAddr::Tcp(_, port) => *port,
        other => panic!("unexpected address {other:?}"),
    };
    (port, client)
}

/// Writes `key` on the master and waits until the replica acknowledged it.
async fn write_replicated(client: &redis::Client, key: &str) {
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = conn.set(key, "v").await.unwrap();
    let acked: u64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(acked, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_promotes_the_replica_and_the_sentinels_name_it() {
    let setup = started_sentinel().await;
    let old = setup.master_port().await;
    let (port, client) = resolved_master(&setup).await;
    assert_eq!(port, old);
    write_replicated(&client, "before").await;

    let t = Instant::now();
    let new = setup.failover().await;
    report(
        "sentinel: SENTINEL FAILOVER until all sentinels switched",
        t.elapsed(),
    );
    assert_ne!(new, old);
    let (port, client) = resolved_master(&setup).await;
    assert_eq!(port, new);
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let got: String = conn.get("before").await.unwrap();
    assert_eq!(got, "v");
    let _: () = conn.set("after", "w").await.unwrap();

    let t = Instant::now();
    setup.wait_ready().await;
    report(
        "sentinel: after the switch, until the old master is a linked replica",
        t.elapsed(),
    );
    let info: String = setup
        .query(old, redis::cmd("INFO").arg("replication"))
        .await;
    assert_eq!(info_field(&info, "role"), Some("slave"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_sentinel_master_is_replaced_and_comes_back_as_a_replica() {
    let mut setup = started_sentinel().await;
    let (old, client) = resolved_master(&setup).await;
    write_replicated(&client, "before").await;

    let t = Instant::now();
    let new = setup.kill_master().await;
    report(
        "sentinel: SIGKILL of the master until all sentinels switched",
        t.elapsed(),
    );
    let (port, client) = resolved_master(&setup).await;
    assert_eq!(port, new);
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let got: String = conn.get("before").await.unwrap();
    assert_eq!(got, "v");

    let t = Instant::now();
    setup.restart(old).await;
    report(
        "sentinel: restart of the old master until ready",
        t.elapsed(),
    );
    let info: String = setup
        .query(old, redis::cmd("INFO").arg("replication"))
        .await;
    assert_eq!(info_field(&info, "role"), Some("slave"), "{}", setup.logs());
    assert_eq!(info_field(&info, "master_port"), Some(&*new.to_string()));
    let copied: String = setup.query(old, redis::cmd("GET").arg("before")).await;
    assert_eq!(copied, "v");
}
