//! Real local topologies for the scale-out tests: a Redis Cluster of 3 masters and 3
//! replicas, and a Sentinel set-up of 1 master, 1 replica and 3 sentinels. Every process runs
//! on free loopback ports in a tempdir of its own and is SIGKILLed when the fixture drops
//! (also on a panic); where `setpriv` exists, the kernel also kills it when the thread that
//! started it exits, so not even a killed test binary leaves servers behind. (That is why the
//! fixtures must be started and restarted from the test's own thread or a runtime worker,
//! never from `spawn_blocking`, whose idle threads exit after 10 s.)
//!
//! Every wait polls the servers for the condition it needs (never a fixed sleep) and panics
//! naming the condition and the last thing it saw when the deadline passes. The fixtures'
//! own connections are named [`FIXTURE_CLIENT_NAME`] in `CLIENT LIST`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, FromRedisValue, RedisResult, Value};

/// `cluster-node-timeout` of the cluster nodes, in milliseconds.
///
/// A master that does not answer the cluster bus for this long is flagged PFAIL, and FAIL
/// once a majority of masters agree; its replica then waits 500-1000 ms and is elected. So
/// a SIGKILLed master is replaced about 2 s after the kill. Redis's default (15 s) would make
/// every failover test wait that long. Much shorter values would risk false failovers when a
/// busy 2-core CI machine delays a node's cluster cron (it runs every 100 ms) by a second.
pub const CLUSTER_NODE_TIMEOUT_MS: u64 = 1_000;

/// `repl-ping-replica-period` of the cluster nodes, in seconds.
///
/// Redis 7.0 leaves a replica out of `CLUSTER SLOTS` while its replication offset is 0, and on
/// an idle master the offset first moves with the master's PING to its replicas: every 10 s by
/// default, so a fresh cluster would list no replicas for up to 10 s (measured: start-up took
/// 11.6 s with the default, about 3 s with 1 s).
pub const CLUSTER_REPL_PING_REPLICA_PERIOD_S: u64 = 1;

/// `down-after-milliseconds` of the sentinels: a master silent this long is subjectively
/// down. Redis's 30 s default would dominate every test. 1 s (one PING period) was too short:
/// right after `+switch-master` a sentinel's fresh link to the promoted node got its first PONG
/// only ~1.1 s later, so the leader marked the new master down at once and, counting the
/// other sentinels' "down" votes left over from the failover just finished, failed straight
/// back to the old master (1 run in 9 of `cargo test --test topology` on a loaded machine;
/// the sentinel logs show `+sdown`/`+odown` of the new master 1.03 s after the switch).
/// 3 s leaves two PING periods of margin and adds 2 s to a SIGKILL failover.
pub const SENTINEL_DOWN_AFTER_MS: u64 = 3_000;

/// `failover-timeout` of the sentinels. It bounds the election and the promotion (each well
/// under a second here), and a sentinel that saw a failover attempt fail waits twice this long
/// before trying again: 5 s keeps a retry after a split vote within the test deadlines, while
/// leaving the promotion enough time on a loaded machine. The default (3 min) would turn any
/// failed attempt into a hung test.
pub const SENTINEL_FAILOVER_TIMEOUT_MS: u64 = 5_000;

/// The name the sentinels monitor the master under.
pub const SENTINEL_MASTER_NAME: &str = "mymaster";

/// `CLIENT SETNAME` of the fixtures' own connections, so tests can leave them out of
/// `CLIENT LIST` counts.
pub const FIXTURE_CLIENT_NAME: &str = "topology-fixture";

/// Time allowed for a topology to become ready after start, a failover, a restart or a reshard.
const SETTLE: Duration = Duration::from_secs(60);
/// Time allowed for one process to answer PING after it was spawned.
const PROCESS_START: Duration = Duration::from_secs(10);
/// Poll interval of every wait.
const POLL: Duration = Duration::from_millis(20);
/// Slots of a Redis Cluster.
pub const CLUSTER_SLOTS: u32 = 16_384;

/// Runs `probe` every [`POLL`] until it returns `Ok(Some(v))`; panics naming `what` and the
/// last `Err` or `Ok(None)` reason after `within`.
async fn wait_for<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        let last = match probe().await {
            Ok(v) => return v,
            Err(why) => why,
        };
        assert!(
            Instant::now() < deadline,
            "not within {within:?}: {what}; last seen: {last}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// `n` distinct free loopback ports, all probed at once so none repeats.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// The value of `field` in an `INFO` reply.
pub fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|l| {
        l.strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

/// One `redis-server` (data node or sentinel) that the fixture can kill and start again.
struct Process {
    port: u16,
    dir: PathBuf,
    /// Arguments after the program name; a sentinel's first one is its config file.
    args: Vec<String>,
    child: Option<Child>,
}

impl Process {
    fn new(port: u16, dir: PathBuf, args: Vec<String>) -> Process {
        std::fs::create_dir_all(&dir).expect("create the server's directory");
        Process {
            port,
            dir,
            args,
            child: None,
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    fn alive(&self) -> bool {
        self.child.is_some()
    }

    /// Spawns the server and waits until it answers PING with this process's pid.
    async fn start(&mut self) -> Result<(), String> {
        self.kill();
        // The kernel SIGKILLs the server when the spawning thread dies (see the module doc).
        let setpriv = Path::new("/usr/bin/setpriv");
        let server = super::server_binary();
        let mut cmd = if setpriv.exists() {
            let mut c = Command::new(setpriv);
            c.args(["--pdeathsig", "KILL"]).arg(server);
            c
        } else {
            Command::new(server)
        };
        let child = cmd
            .args(&self.args)
            .arg("--logfile")
            .arg(self.log())
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn redis-server: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + PROCESS_START;
        loop {
            let exited = match self.child.as_mut().map(Child::try_wait) {
                Some(Ok(None)) => None,
                Some(Ok(Some(status))) => Some(status.to_string()),
                Some(Err(e)) => Some(e.to_string()),
                None => Some("gone".to_owned()),
            };
            if let Some(why) = exited {
                self.child = None;
                return Err(format!("exited during start ({why}); {}", self.log_tail()));
            }
            if super::ping(self.port).await {
                let ours = self.child.as_ref().map(Child::id);
                let pid = super::server_pid(self.port).await;
                if pid.is_some() && pid == ours {
                    return Ok(());
                }
                self.kill();
                return Err(format!("port {} answered with pid {pid:?}", self.port));
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!("no PONG within {PROCESS_START:?}"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGKILLs the server and reaps it.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log()).unwrap_or_default();
        let lines: Vec<_> = log.lines().collect();
        format!(
            "log of :{}:\n{}",
            self.port,
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One cached connection per port, reopened after a failure (a killed or restarted server).
#[derive(Default)]
pub struct Conns(Mutex<HashMap<u16, MultiplexedConnection>>);

/// What both fixtures offer for reaching one of their servers directly.
#[allow(async_fn_in_trait)] // test support: never used where `Send` bounds would matter
pub trait Servers {
    /// The fixture's cached connections.
    fn conns(&self) -> &Conns;

    /// A plain connection to the server on `port` (a cluster node, a data node or a
    /// sentinel; no redirections followed), named [`FIXTURE_CLIENT_NAME`].
    async fn node_conn(&self, port: u16) -> MultiplexedConnection {
        self.conns()
            .get(port)
            .await
            .unwrap_or_else(|e| panic!("connect to :{port}: {e}"))
    }

    /// Runs `cmd` on the server on `port`.
    ///
    /// # Panics
    /// When it cannot be reached or replies with an error.
    async fn query<T: FromRedisValue>(&self, port: u16, cmd: &redis::Cmd) -> T {
        self.conns()
            .query(port, cmd)
            .await
            .unwrap_or_else(|e| panic!(":{port}: {e}"))
    }
}

impl Conns {
    async fn get(&self, port: u16) -> RedisResult<MultiplexedConnection> {
        if let Some(c) = self.0.lock().expect("conns lock").get(&port) {
            return Ok(c.clone());
        }
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(5)));
        let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}"))?
            .get_multiplexed_async_connection_with_config(&cfg)
            .await?;
        redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(FIXTURE_CLIENT_NAME)
            .query_async::<()>(&mut conn)
            .await?;
        self.0
            .lock()
            .expect("conns lock")
            .insert(port, conn.clone());
        Ok(conn)
    }

    /// Runs `cmd` on the server at `port`; a broken connection is dropped for the next call.
    async fn query<T: FromRedisValue>(&self, port: u16, cmd: &redis::Cmd) -> RedisResult<T> {
        let mut conn = self.get(port).await?;
        let r = cmd.query_async(&mut conn).await;
        if let Err(e) = &r {
            if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                self.0.lock().expect("conns lock").remove(&port);
            }
        }
        r
    }

    async fn info(&self, port: u16, section: &str) -> Result<String, String> {
        self.query(port, redis::cmd("INFO").arg(section))
            .await
            .map_err(|e| format!(":{port} INFO {section}: {e}"))
    }
}

/// One client of a server as `CLIENT LIST` shows it.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// Every `key=value` field of the line (`id`, `name`, `cmd`, `flags`, `laddr`, ...).
    pub fields: HashMap<String, String>,
}

impl ClientInfo {
    /// A field's value, "" when absent.
    pub fn get(&self, field: &str) -> &str {
        self.fields.get(field).map(String::as_str).unwrap_or("")
    }

    /// Whether this is one of the fixtures' own connections.
    pub fn is_fixture(&self) -> bool {
        self.get("name") == FIXTURE_CLIENT_NAME
    }

    /// Whether the client is blocked in a command (`flags` contains `b`).
    pub fn is_blocked(&self) -> bool {
        self.get("flags").contains('b')
    }
}

fn parse_client_list(list: &str) -> Vec<ClientInfo> {
    list.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| ClientInfo {
            fields: l
                .split(' ')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        })
        .collect()
}

/// One contiguous range of slots and the nodes serving it, as `CLUSTER SLOTS` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRange {
    /// First slot of the range.
    pub start: u16,
    /// Last slot of the range (inclusive).
    pub end: u16,
    /// Port of the master owning the range.
    pub master: u16,
    /// Ports of its replicas that the node asked does not consider failed.
    pub replicas: Vec<u16>,
}

impl SlotRange {
    /// Whether `slot` is in the range.
    pub fn contains(&self, slot: u16) -> bool {
        (self.start..=self.end).contains(&slot)
    }
}

fn parse_cluster_slots(v: Value) -> Result<Vec<SlotRange>, String> {
    let int = |v: &Value| match v {
        Value::Int(i) => Ok(*i),
        other => Err(format!("expected an integer, got {other:?}")),
    };
    let node_port = |v: &Value| match v {
        Value::Array(parts) if parts.len() >= 2 => int(&parts[1]).map(|p| p as u16),
        other => Err(format!("expected a node, got {other:?}")),
    };
    let Value::Array(ranges) = v else {
        return Err(format!("CLUSTER SLOTS replied {v:?}"));
    };
    let mut out = Vec::with_capacity(ranges.len());
    for r in &ranges {
        let Value::Array(parts) = r else {
            return Err(format!("a range {r:?}"));
        };
        if parts.len() < 3 {
            return Err(format!("a short range {parts:?}"));
        }
        let mut replicas = parts[3..]
            .iter()
            .map(node_port)
            .collect::<Result<Vec<_>, _>>()?;
        replicas.sort_unstable();
        out.push(SlotRange {
            start: int(&parts[0])? as u16,
            end: int(&parts[1])? as u16,
            master: node_port(&parts[2])?,
            replicas,
        });
    }
    out.sort_by_key(|r| r.start);
    Ok(out)
}

/// A Redis Cluster of 3 masters with one replica each, every node a private `redis-server`.
///
/// ```ignore
/// let mut cluster = RedisCluster::start().await;
/// let client = redis::cluster::ClusterClient::new(cluster.seed_urls())?;
/// let master = cluster.master_for_key("events").await;
/// let promoted = cluster.kill_master(master).await; // returns once the cluster is ok again
/// ```
pub struct RedisCluster {
    nodes: Vec<Process>,
    conns: Conns,
    _dir: tempfile::TempDir,
}

impl Servers for RedisCluster {
    fn conns(&self) -> &Conns {
        &self.conns
    }
}

impl RedisCluster {
    /// Starts 6 nodes, creates the cluster with `redis-cli --cluster create --cluster-replicas 1`
    /// and returns once every node reports `cluster_state:ok`, all 16384 slots are served,
    /// all nodes agree on the slot map and every replica's link to its master is up.
    pub async fn start() -> RedisCluster {
        let dir = tempfile::tempdir().expect("create the cluster's tempdir");
        let mut last_error = String::new();
        // Another process may take one of our probed ports before redis-server binds it:
        // then every node starts over on fresh ports.
        for _ in 0..3 {
            let ports = free_ports(12);
            let mut nodes: Vec<Process> = (0..6)
                .map(|i| {
                    let (port, bus) = (ports[i], ports[i + 6]);
                    let node_dir = dir.path().join(format!("node-{port}"));
                    let args = [
                        "--port",
                        &port.to_string(),
                        "--cluster-port",
                        &bus.to_string(),
                        "--bind",
                        "127.0.0.1",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        &CLUSTER_NODE_TIMEOUT_MS.to_string(),
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--repl-diskless-sync",
                        "yes",
                        "--repl-diskless-sync-delay",
                        "0",
                        "--repl-ping-replica-period",
                        &CLUSTER_REPL_PING_REPLICA_PERIOD_S.to_string(),
                        "--dir",
                        node_dir.to_str().expect("utf-8 tempdir"),
                    ]
                    .map(str::to_owned)
                    .to_vec();
                    Process::new(port, node_dir, args)
                })
                .collect();
            let mut started = Ok(());
            for n in &mut nodes {
                started = n.start().await;
                if started.is_err() {
                    break;
                }
            }
            match started {
                Ok(()) => {
                    let cluster = RedisCluster {
                        nodes,
                        conns: Conns::default(),
                        _dir: dir,
                    };
                    cluster.create().await;
                    return cluster;
                }
                Err(e) => last_error = e,
            }
        }
        panic!("cannot start the cluster's nodes: {last_error}");
    }

    async fn create(&self) {
        let addrs: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = run_redis_cli(
            ["--cluster", "create"]
                .into_iter()
                .map(str::to_owned)
                .chain(addrs)
                .chain(["--cluster-replicas", "1", "--cluster-yes"].map(str::to_owned)),
        )
        .await;
        if let Err(e) = out {
            panic!("redis-cli --cluster create failed: {e}");
        }
        self.wait_healthy().await;
    }

    /// The ports of all six nodes, in start order.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// The ports of the nodes running now (not killed).
    pub fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.alive())
            .map(|n| n.port)
            .collect()
    }

    /// `redis://127.0.0.1:<port>` of every node, to seed a cluster client.
    pub fn seed_urls(&self) -> Vec<String> {
        self.ports()
            .into_iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// The node's id (`CLUSTER MYID`).
    pub async fn node_id(&self, port: u16) -> String {
        self.query(port, redis::cmd("CLUSTER").arg("MYID")).await
    }

    /// The slot map as a live node sees it (`CLUSTER SLOTS`), ordered by slot.
    pub async fn slots(&self) -> Vec<SlotRange> {
        let mut last = String::new();
        for port in self.live_ports() {
            match self
                .conns
                .query::<Value>(port, redis::cmd("CLUSTER").arg("SLOTS"))
                .await
            {
                Ok(v) => return parse_cluster_slots(v).expect("CLUSTER SLOTS reply"),
                Err(e) => last = e.to_string(),
            }
        }
        panic!("no live node answers CLUSTER SLOTS: {last}");
    }

    /// The ports of the masters that own slots, ascending.
    pub async fn masters(&self) -> Vec<u16> {
        let mut m: Vec<u16> = self.slots().await.iter().map(|r| r.master).collect();
        m.sort_unstable();
        m.dedup();
        m
    }

    /// The port of the (first) live replica of `master`.
    pub async fn replica_of(&self, master: u16) -> u16 {
        let slots = self.slots().await;
        let range = slots
            .iter()
            .find(|r| r.master == master)
            .unwrap_or_else(|| panic!(":{master} owns no slots"));
        *range
            .replicas
            .first()
            .unwrap_or_else(|| panic!(":{master} has no replica"))
    }

    /// The hash slot of `key` (`CLUSTER KEYSLOT`, so hash tags count as Redis counts them).
    pub async fn slot_of(&self, key: &str) -> u16 {
        let port = self.live_ports()[0];
        self.query(port, redis::cmd("CLUSTER").arg("KEYSLOT").arg(key))
            .await
    }

    /// The port of the master that owns `slot`.
    pub async fn master_for_slot(&self, slot: u16) -> u16 {
        self.slots()
            .await
            .iter()
            .find(|r| r.contains(slot))
            .map(|r| r.master)
            .unwrap_or_else(|| panic!("slot {slot} is not served"))
    }

    /// The port of the master that owns `key`'s slot.
    pub async fn master_for_key(&self, key: &str) -> u16 {
        let slot = self.slot_of(key).await;
        self.master_for_slot(slot).await
    }

    /// A key (`{prefix}-<n>`) whose slot `master` owns: handy to put a stream on a chosen node.
    pub async fn key_on(&self, master: u16, prefix: &str) -> String {
        let slots = self.slots().await;
        let port = self.live_ports()[0];
        for n in 0..100_000 {
            let key = format!("{prefix}-{n}");
            let slot: u16 = self
                .query(port, redis::cmd("CLUSTER").arg("KEYSLOT").arg(&key))
                .await;
            if slots.iter().any(|r| r.master == master && r.contains(slot)) {
                return key;
            }
        }
        panic!("no key with prefix {prefix:?} hashes to :{master}");
    }

    /// `CLIENT LIST` of one node, parsed.
    pub async fn client_list(&self, port: u16) -> Vec<ClientInfo> {
        let list: String = self.query(port, redis::cmd("CLIENT").arg("LIST")).await;
        parse_client_list(&list)
    }

    /// SIGKILLs one node and returns at once (see [`RedisCluster::kill_master`] to also wait
    /// for the failover).
    pub fn kill(&mut self, port: u16) {
        self.node_mut(port).kill();
        self.conns.0.lock().expect("conns lock").remove(&port);
    }

    /// SIGKILLs master `port`, waits until its replica has been promoted and owns its slots,
    /// and the cluster is healthy again; returns the new master's port.
    pub async fn kill_master(&mut self, port: u16) -> u16 {
        let slots = self.slots().await;
        let owned: Vec<_> = slots.iter().filter(|r| r.master == port).cloned().collect();
        assert!(!owned.is_empty(), ":{port} is not a master");
        let replica = self.replica_of(port).await;
        self.kill(port);
        self.wait_promoted(port, replica).await;
        replica
    }

    /// Waits until `replica` reports `role:master` and every live node gives it the slots
    /// `old_master` had, then until the cluster is healthy.
    pub async fn wait_promoted(&self, old_master: u16, replica: u16) {
        let what = format!("replica :{replica} takes over the slots of :{old_master}");
        wait_for(&what, SETTLE, || async {
            let info = self.conns.info(replica, "replication").await?;
            if info_field(&info, "role") != Some("master") {
                return Err(format!(
                    ":{replica} is still {:?}",
                    info_field(&info, "role")
                ));
            }
            for port in self.live_ports() {
                let v: Value = self
                    .conns
                    .query(port, redis::cmd("CLUSTER").arg("SLOTS"))
                    .await
                    .map_err(|e| format!(":{port}: {e}"))?;
                if parse_cluster_slots(v)?
                    .iter()
                    .any(|r| r.master == old_master)
                {
                    return Err(format!(":{port} still routes slots to :{old_master}"));
                }
            }
            Ok(())
        })
        .await;
        self.wait_healthy().await;
    }

    /// Starts a killed (or running) node again on its port with its `nodes.conf`, so it
    /// rejoins with its identity (empty: nothing is persisted). A master that was failed over
    /// comes back as a replica of its successor. Returns once the cluster is healthy.
    pub async fn restart(&mut self, port: u16) {
        let node = self.node_mut(port);
        if let Err(e) = node.start().await {
            panic!("cannot restart node :{port}: {e}");
        }
        self.wait_healthy().await;
    }

    /// Moves `count` slots from master `from` to master `to` with
    /// `redis-cli --cluster reshard ... --cluster-yes` (keys are migrated), and returns the
    /// slots that moved once every node agrees on the new map.
    pub async fn reshard(&self, from: u16, to: u16, count: u16) -> Vec<u16> {
        let before = self.slots().await;
        let (from_id, to_id) = (self.node_id(from).await, self.node_id(to).await);
        let out = run_redis_cli(
            [
                "--cluster",
                "reshard",
                &format!("127.0.0.1:{from}"),
                "--cluster-from",
                &from_id,
                "--cluster-to",
                &to_id,
                "--cluster-slots",
                &count.to_string(),
                "--cluster-yes",
            ]
            .map(str::to_owned),
        )
        .await;
        if let Err(e) = out {
            panic!("redis-cli --cluster reshard failed: {e}");
        }
        self.wait_healthy().await;
        let after = self.slots().await;
        let owner =
            |map: &[SlotRange], s: u16| map.iter().find(|r| r.contains(s)).map(|r| r.master);
        let moved: Vec<u16> = (0..CLUSTER_SLOTS as u16)
            .filter(|&s| owner(&before, s) == Some(from) && owner(&after, s) == Some(to))
            .collect();
        assert_eq!(
            moved.len(),
            count as usize,
            "reshard moved {} slots, not {count}",
            moved.len()
        );
        moved
    }

    /// Starts moving `slot` to master `to` by hand: `CLUSTER SETSLOT IMPORTING` on `to`,
    /// `MIGRATING` on the owner. From now on the owner answers `-ASK` for keys of the slot
    /// it no longer has. Finish with [`RedisCluster::finish_slot_move`].
    pub async fn begin_slot_move(&self, slot: u16, to: u16) {
        let from = self.master_for_slot(slot).await;
        assert_ne!(from, to, "slot {slot} is already on :{to}");
        let (from_id, to_id) = (self.node_id(from).await, self.node_id(to).await);
        let setslot = |state: &str, id: &str| {
            redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg(state)
                .arg(id)
                .clone()
        };
        self.query::<()>(to, &setslot("IMPORTING", &from_id)).await;
        self.query::<()>(from, &setslot("MIGRATING", &to_id)).await;
    }

    /// Moves the remaining keys of `slot` to `to` with `MIGRATE` (the keys already moved
    /// stay), gives the slot to `to` on every master (`CLUSTER SETSLOT NODE`), and waits
    /// until the cluster is healthy again.
    pub async fn finish_slot_move(&self, slot: u16, to: u16) {
        let from = self.master_for_slot(slot).await;
        loop {
            let keys: Vec<String> = self
                .query(
                    from,
                    redis::cmd("CLUSTER")
                        .arg("GETKEYSINSLOT")
                        .arg(slot)
                        .arg(100),
                )
                .await;
            if keys.is_empty() {
                break;
            }
            self.query::<()>(
                from,
                redis::cmd("MIGRATE")
                    .arg("127.0.0.1")
                    .arg(to)
                    .arg("")
                    .arg(0)
                    .arg(5_000)
                    .arg("KEYS")
                    .arg(&keys),
            )
            .await;
        }
        let to_id = self.node_id(to).await;
        let setslot = redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("NODE")
            .arg(&to_id)
            .clone();
        // The target first, so the slot is never without an owner that accepts it.
        self.query::<()>(to, &setslot).await;
        self.query::<()>(from, &setslot).await;
        for m in self.masters().await {
            if m != to && m != from {
                self.query::<()>(m, &setslot).await;
            }
        }
        self.wait_healthy().await;
    }

    /// Waits until every live node reports `cluster_state:ok` with all 16384 slots ok, all of
    /// them give the same `CLUSTER SLOTS` (masters and replicas), no live node is flagged
    /// failed by another, and every live node without slots is a replica whose link to its
    /// master is up and which the slot map lists under that master.
    pub async fn wait_healthy(&self) {
        wait_for("the cluster is healthy", SETTLE, || self.health()).await;
    }

    async fn health(&self) -> Result<(), String> {
        let live = self.live_ports();
        let mut agreed: Option<(u16, Vec<SlotRange>)> = None;
        for &port in &live {
            let info: String = self
                .conns
                .query(port, redis::cmd("CLUSTER").arg("INFO"))
                .await
                .map_err(|e| format!(":{port} CLUSTER INFO: {e}"))?;
            let all = CLUSTER_SLOTS.to_string();
            for (field, want) in [
                ("cluster_state", "ok"),
                ("cluster_slots_assigned", all.as_str()),
                ("cluster_slots_ok", all.as_str()),
            ] {
                let got = info_field(&info, field);
                if got != Some(want) {
                    return Err(format!(":{port} {field}:{got:?}"));
                }
            }
            let v: Value = self
                .conns
                .query(port, redis::cmd("CLUSTER").arg("SLOTS"))
                .await
                .map_err(|e| format!(":{port} CLUSTER SLOTS: {e}"))?;
            let map = parse_cluster_slots(v)?;
            match &agreed {
                None => agreed = Some((port, map)),
                Some((first, m)) if *m != map => {
                    return Err(format!(
                        ":{port} and :{first} disagree on the slots' masters and replicas"
                    ))
                }
                Some(_) => {}
            }
            let nodes: String = self
                .conns
                .query(port, redis::cmd("CLUSTER").arg("NODES"))
                .await
                .map_err(|e| format!(":{port} CLUSTER NODES: {e}"))?;
            for line in nodes.lines() {
                let f: Vec<&str> = line.split(' ').collect();
                let Some(node_port) = f
                    .get(1)
                    .and_then(|a| a.split(['@', ':']).nth(1))
                    .and_then(|p| p.parse::<u16>().ok())
                else {
                    continue;
                };
                if live.contains(&node_port) && f.get(2).is_some_and(|fl| fl.contains("fail")) {
                    return Err(format!(":{port} flags live :{node_port} as {}", f[2]));
                }
            }
        }
        let map = agreed.map(|(_, m)| m).unwrap_or_default();
        for &port in &live {
            if map.iter().any(|r| r.master == port) {
                continue;
            }
            let info = self.conns.info(port, "replication").await?;
            let master = info_field(&info, "master_port").and_then(|p| p.parse::<u16>().ok());
            if info_field(&info, "role") != Some("slave")
                || info_field(&info, "master_link_status") != Some("up")
            {
                return Err(format!(
                    ":{port} owns no slots but is not a linked replica (role {:?}, link {:?})",
                    info_field(&info, "role"),
                    info_field(&info, "master_link_status")
                ));
            }
            if !map
                .iter()
                .any(|r| Some(r.master) == master && r.replicas.contains(&port))
            {
                return Err(format!(
                    "the slot map does not list :{port} as a replica of :{master:?} yet"
                ));
            }
        }
        Ok(())
    }

    fn node_mut(&mut self, port: u16) -> &mut Process {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no node on :{port}"))
    }
}

/// Runs `redis-cli` with `args`; `Err` carries its output when it fails.
async fn run_redis_cli(args: impl IntoIterator<Item = String>) -> Result<String, String> {
    let args: Vec<String> = args.into_iter().collect();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("redis-cli")
            .args(&args)
            .stdin(Stdio::null())
            .output()
    })
    .await
    .expect("join redis-cli")
    .map_err(|e| format!("spawn redis-cli: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // redis-cli --cluster reports some failures as [ERR] lines with exit status 0.
    if out.status.success() && !text.contains("[ERR]") {
        Ok(text)
    } else {
        Err(format!("{}: {text}", out.status))
    }
}

/// One master, one replica and three sentinels (quorum 2), every one a private `redis-server`.
///
/// ```ignore
/// let mut sentinel = RedisSentinel::start().await;
/// let mut s = redis::sentinel::Sentinel::build(sentinel.sentinel_urls())?;
/// let old = sentinel.master_port().await;
/// let new = sentinel.failover().await; // SENTINEL FAILOVER, all sentinels switched
/// sentinel.wait_ready().await;          // the old master is the new one's replica again
/// ```
pub struct RedisSentinel {
    /// The two data nodes, in start order (the first one starts as the master).
    data: Vec<Process>,
    sentinels: Vec<Process>,
    conns: Conns,
    _dir: tempfile::TempDir,
}

impl Servers for RedisSentinel {
    fn conns(&self) -> &Conns {
        &self.conns
    }
}

impl RedisSentinel {
    /// Starts the master and the replica, waits until the replica's link is up, then starts
    /// the sentinels (so their first INFO of the master already lists the replica; otherwise
    /// they learn of it only on the next INFO, 10 s later), and returns once
    /// [`RedisSentinel::wait_ready`] holds.
    pub async fn start() -> RedisSentinel {
        let mut last_error = String::new();
        // Another process may take one of our probed ports before redis-server binds it:
        // then everything starts over on fresh ports (the failed attempt drops its processes).
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("create the sentinel set-up's tempdir");
            let ports = free_ports(5);
            let master = ports[0];
            let data: Vec<Process> = ports[..2]
                .iter()
                .map(|&port| {
                    let node_dir = dir.path().join(format!("data-{port}"));
                    let mut args = data_node_args(port, &node_dir);
                    if port != master {
                        args.extend(["--replicaof".into(), "127.0.0.1".into(), master.to_string()]);
                    }
                    Process::new(port, node_dir, args)
                })
                .collect();
            let sentinels: Vec<Process> = ports[2..]
                .iter()
                .map(|&port| {
                    let sdir = dir.path().join(format!("sentinel-{port}"));
                    std::fs::create_dir_all(&sdir).expect("create the sentinel's directory");
                    let conf = sdir.join("sentinel.conf");
                    std::fs::write(&conf, sentinel_conf(port, &sdir, master))
                        .expect("write sentinel.conf");
                    let args = vec![
                        conf.to_str().expect("utf-8 tempdir").to_owned(),
                        "--sentinel".to_owned(),
                    ];
                    Process::new(port, sdir, args)
                })
                .collect();
            let mut setup = RedisSentinel {
                data,
                sentinels,
                conns: Conns::default(),
                _dir: dir,
            };
            match setup.launch().await {
                Ok(()) => {
                    setup.wait_ready().await;
                    return setup;
                }
                Err(e) => last_error = e,
            }
        }
        panic!("cannot start the sentinel set-up: {last_error}");
    }

    async fn launch(&mut self) -> Result<(), String> {
        for n in &mut self.data {
            n.start().await?;
        }
        let replica = self.data[1].port;
        wait_for("the replica's link is up", SETTLE, || async {
            let info = self.conns.info(replica, "replication").await?;
            match info_field(&info, "master_link_status") {
                Some("up") => Ok(()),
                other => Err(format!("master_link_status {other:?}")),
            }
        })
        .await;
        for s in &mut self.sentinels {
            s.start().await?;
        }
        Ok(())
    }

    /// `redis://127.0.0.1:<port>` of the three sentinels.
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinel_ports()
            .into_iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// The three sentinels' ports.
    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(|s| s.port).collect()
    }

    /// The two data nodes' ports (the first one started as the master).
    pub fn data_ports(&self) -> Vec<u16> {
        self.data.iter().map(|n| n.port).collect()
    }

    /// The master's port as all three sentinels report it (`SENTINEL GET-MASTER-ADDR-BY-NAME`).
    ///
    /// # Panics
    /// When the sentinels disagree (a failover is under way: wait for it first).
    pub async fn master_port(&self) -> u16 {
        match self.agreed_master().await {
            Ok(p) => p,
            Err(e) => panic!("no agreed master: {e}"),
        }
    }

    async fn agreed_master(&self) -> Result<u16, String> {
        let mut seen = None;
        for port in self.sentinel_ports() {
            let (_, p): (String, u16) = self
                .conns
                .query(
                    port,
                    redis::cmd("SENTINEL")
                        .arg("GET-MASTER-ADDR-BY-NAME")
                        .arg(SENTINEL_MASTER_NAME),
                )
                .await
                .map_err(|e| format!("sentinel :{port}: {e}"))?;
            match seen {
                None => seen = Some(p),
                Some(q) if q != p => return Err(format!("sentinels name :{q} and :{p}")),
                Some(_) => {}
            }
        }
        seen.ok_or_else(|| "no sentinels".to_owned())
    }

    /// The data node that is not the master.
    pub async fn replica_port(&self) -> u16 {
        let master = self.master_port().await;
        self.data_ports()
            .into_iter()
            .find(|&p| p != master)
            .expect("two data nodes")
    }

    /// Sends `SENTINEL FAILOVER` to one sentinel and waits until all three name the other
    /// data node as the master (each has processed `+switch-master`) and it reports
    /// `role:master`; returns its port. The old master is demoted later, when the sentinels
    /// next look at it (see [`RedisSentinel::wait_ready`]).
    pub async fn failover(&self) -> u16 {
        let old = self.master_port().await;
        let sentinel = self.sentinel_ports()[0];
        // A sentinel refuses (NOGOODSLAVE, INPROG) while its view of the replica is not yet
        // fresh or an earlier failover is still being wrapped up: ask until it accepts.
        wait_for("a sentinel accepts SENTINEL FAILOVER", SETTLE, || async {
            self.conns
                .query::<()>(
                    sentinel,
                    redis::cmd("SENTINEL")
                        .arg("FAILOVER")
                        .arg(SENTINEL_MASTER_NAME),
                )
                .await
                .map_err(|e| e.to_string())
        })
        .await;
        self.wait_switched(old).await
    }

    /// SIGKILLs the current master and waits until the sentinels have promoted the replica
    /// (as in [`RedisSentinel::failover`]); returns the new master's port.
    pub async fn kill_master(&mut self) -> u16 {
        let old = self.master_port().await;
        self.kill(old);
        self.wait_switched(old).await
    }

    /// SIGKILLs a data node or a sentinel and returns at once.
    pub fn kill(&mut self, port: u16) {
        self.process_mut(port).kill();
        self.conns.0.lock().expect("conns lock").remove(&port);
    }

    /// Waits until all sentinels name a master other than `old` and it reports `role:master`.
    pub async fn wait_switched(&self, old: u16) -> u16 {
        let what = format!("the sentinels switch from :{old}");
        wait_for(&what, SETTLE, || async {
            let new = self.agreed_master().await?;
            if new == old {
                return Err(format!("still :{old}"));
            }
            let info = self.conns.info(new, "replication").await?;
            match info_field(&info, "role") {
                Some("master") => Ok(new),
                other => Err(format!(":{new} reports role {other:?}")),
            }
        })
        .await
    }

    /// Starts a killed data node again (empty: nothing is persisted) as a replica of the
    /// current master, as a node whose configuration follows the failover would, and waits
    /// until the set-up is ready again. (A node started without `replicaof` would come back
    /// as a second master and be demoted by the sentinels only after about 10 s.)
    pub async fn restart(&mut self, port: u16) {
        let master = self.master_port().await;
        assert_ne!(port, master, ":{port} is the master");
        let node = self.process_mut(port);
        let dir = node.dir.clone();
        node.args = data_node_args(port, &dir);
        node.args
            .extend(["--replicaof".into(), "127.0.0.1".into(), master.to_string()]);
        if let Err(e) = node.start().await {
            panic!("cannot restart :{port}: {e}");
        }
        self.wait_ready().await;
    }

    /// Waits until all three sentinels agree on a master that reports `role:master`, the
    /// other data node (when running) is its replica with the link up, and every sentinel
    /// sees the master up, the replica up with its link ok, and the two other sentinels.
    pub async fn wait_ready(&self) {
        wait_for("the sentinel set-up is ready", SETTLE, || self.readiness()).await;
    }

    async fn readiness(&self) -> Result<(), String> {
        let master = self.agreed_master().await?;
        let info = self.conns.info(master, "replication").await?;
        if info_field(&info, "role") != Some("master") {
            return Err(format!(
                "master :{master} reports {:?}",
                info_field(&info, "role")
            ));
        }
        let replica = self
            .data
            .iter()
            .find(|n| n.port != master && n.alive())
            .map(|n| n.port);
        if let Some(r) = replica {
            let info = self.conns.info(r, "replication").await?;
            let want_port = master.to_string();
            if info_field(&info, "role") != Some("slave")
                || info_field(&info, "master_port") != Some(want_port.as_str())
                || info_field(&info, "master_link_status") != Some("up")
            {
                return Err(format!(":{r} is not a linked replica of :{master}"));
            }
        }
        for s in self.sentinel_ports() {
            let fields = |v: Value| -> Result<HashMap<String, String>, String> {
                let map: BTreeMap<String, String> = FromRedisValue::from_redis_value(v)
                    .map_err(|e| format!("sentinel :{s}: {e}"))?;
                Ok(map.into_iter().collect())
            };
            let m: Value = self
                .conns
                .query(
                    s,
                    redis::cmd("SENTINEL")
                        .arg("MASTER")
                        .arg(SENTINEL_MASTER_NAME),
                )
                .await
                .map_err(|e| format!("sentinel :{s}: {e}"))?;
            let m = fields(m)?;
            let get = |k: &str| m.get(k).map(String::as_str).unwrap_or("");
            if get("flags") != "master" || get("num-other-sentinels") != "2" {
                return Err(format!(
                    "sentinel :{s} sees the master as {:?} with {} other sentinels",
                    get("flags"),
                    get("num-other-sentinels")
                ));
            }
            let Some(r) = replica else { continue };
            let replicas: Vec<Value> = self
                .conns
                .query(
                    s,
                    redis::cmd("SENTINEL")
                        .arg("REPLICAS")
                        .arg(SENTINEL_MASTER_NAME),
                )
                .await
                .map_err(|e| format!("sentinel :{s}: {e}"))?;
            let mut known = false;
            for v in replicas {
                let f = fields(v)?;
                let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
                if get("port") == r.to_string() {
                    known = get("flags") == "slave" && get("master-link-status") == "ok";
                }
            }
            if !known {
                return Err(format!(
                    "sentinel :{s} does not see :{r} as a linked replica"
                ));
            }
        }
        Ok(())
    }

    /// The last lines of every data node's and sentinel's log, for an assertion's message.
    pub fn logs(&self) -> String {
        self.data
            .iter()
            .chain(self.sentinels.iter())
            .map(Process::log_tail)
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn process_mut(&mut self, port: u16) -> &mut Process {
        self.data
            .iter_mut()
            .chain(self.sentinels.iter_mut())
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no process on :{port}"))
    }
}

fn data_node_args(port: u16, dir: &Path) -> Vec<String> {
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--repl-diskless-sync",
        "yes",
        "--repl-diskless-sync-delay",
        "0",
        "--dir",
        dir.to_str().expect("utf-8 tempdir"),
    ]
    .map(str::to_owned)
    .to_vec()
}

fn sentinel_conf(port: u16, dir: &Path, master: u16) -> String {
    format!(
        "port {port}\n\
         bind 127.0.0.1\n\
         dir {dir}\n\
         sentinel monitor {name} 127.0.0.1 {master} 2\n\
         sentinel down-after-milliseconds {name} {SENTINEL_DOWN_AFTER_MS}\n\
         sentinel failover-timeout {name} {SENTINEL_FAILOVER_TIMEOUT_MS}\n\
         sentinel parallel-syncs {name} 1\n",
        dir = dir.display(),
        name = SENTINEL_MASTER_NAME,
    )
}
