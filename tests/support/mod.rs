//! Shared by the integration tests: a private `redis-server` (RAII), a channel-backed
//! `Handler`, an independent checker connection, and deadline-bound waits. `topology` holds
//! the Redis Cluster and Sentinel fixtures.
#![allow(dead_code)]

pub mod topology;

use std::collections::HashSet;
use std::future::Future;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use redis::aio::MultiplexedConnection;
use redis::Value;
use streamcast::{
    Batch, CallbackFailure, Client, Config, ConfigInput, HandleResult, Handler, Outcome, StreamId,
};
use tokio::sync::mpsc;

/// The server binary the tests run: `STREAMCAST_TEST_SERVER` names one of the matrix
/// (docs/servers.md), installed by `scripts/servers.sh install` into `.servers/<name>/bin/`;
/// unset or `redis-7.0`, `redis-server` from PATH. Panics with the command that installs it
/// when the selected server is missing, so a run never silently tests another server.
pub fn server_binary() -> std::path::PathBuf {
    let name = std::env::var("STREAMCAST_TEST_SERVER").unwrap_or_default();
    let program = match name.as_str() {
        "" | "redis-7.0" => return "redis-server".into(),
        "redis-8.2" => "redis-server",
        "valkey-8.1" | "valkey-9.1" => "valkey-server",
        other => panic!(
            "STREAMCAST_TEST_SERVER={other:?} is not a test server (redis-7.0, redis-8.2, valkey-8.1, valkey-9.1)"
        ),
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".servers")
        .join(&name)
        .join("bin")
        .join(program);
    assert!(
        path.is_file(),
        "STREAMCAST_TEST_SERVER={name}: {} is missing; run `scripts/servers.sh install {name}`",
        path.display()
    );
    path
}

/// How long a fresh `redis-server` may take to answer PING.
const START_DEADLINE: Duration = Duration::from_secs(10);
/// Default time allowed for an expected delivery.
pub const DELIVERY: Duration = Duration::from_secs(10);

/// A `redis-server` of this test alone: free port, own tempdir, no persistence, killed on drop.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers PING.
    pub async fn start() -> RedisServer {
        let dir = tempfile::tempdir().expect("create a tempdir for redis-server");
        let mut last_error = String::new();
        // Another process may take the port between our probe and redis-server's bind;
        // then the server exits and a different port is tried.
        for _ in 0..5 {
            let port = free_port();
            match launch(port, dir.path()).await {
                Ok(child) => {
                    return RedisServer {
                        port,
                        dir,
                        child: Some(child),
                    }
                }
                Err(e) => last_error = e,
            }
        }
        panic!("cannot start redis-server: {last_error}");
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// SIGKILLs the server and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOPs the server: connections stay open and nothing is answered (a stall).
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// SIGCONTs a paused server.
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let pid = self.child.as_ref().expect("server running").id();
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{name} {pid} failed");
    }

    /// Starts the server again on the same port (empty: nothing is persisted).
    pub async fn restart(&mut self) {
        self.restart_with(&[]).await;
    }

    /// Starts the server again on the same port (empty), with `extra` configuration
    /// arguments after the usual ones (`["--user", "default", ...]`).
    pub async fn restart_with(&mut self, extra: &[&str]) {
        self.kill();
        let child = launch_with(self.port, self.dir.path(), extra)
            .await
            .unwrap_or_else(|e| panic!("cannot restart redis-server on {}: {e}", self.port));
        self.child = Some(child);
    }

    /// A connection of the test's own, independent of streamcast.
    pub async fn checker(&self) -> MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("checker url")
            .get_multiplexed_async_connection()
            .await
            .expect("checker connects")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

async fn launch(port: u16, dir: &Path) -> Result<Child, String> {
    launch_with(port, dir, &[]).await
}

async fn launch_with(port: u16, dir: &Path, extra: &[&str]) -> Result<Child, String> {
    let log = dir.join(format!("redis-{port}.log"));
    let mut child = Command::new(server_binary())
        .arg("--port")
        .arg(port.to_string())
        .arg("--bind")
        .arg("127.0.0.1")
        .arg("--save")
        .arg("")
        .arg("--appendonly")
        .arg("no")
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(&log)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn redis-server: {e}"))?;
    let deadline = Instant::now() + START_DEADLINE;
    let fail = |child: &mut Child, why: String| {
        let _ = child.kill();
        let _ = child.wait();
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        Err(format!("{why}; log:\n{log}"))
    };
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return fail(&mut child, format!("exited early ({status})")),
            Ok(None) => {}
            Err(e) => return fail(&mut child, format!("try_wait: {e}")),
        }
        if ping(port).await {
            // A PONG from someone else's server on this port must not count as ours.
            return match server_pid(port).await {
                Some(pid) if pid == child.id() => Ok(child),
                other => fail(
                    &mut child,
                    format!("port {port} answered with pid {other:?}, not ours"),
                ),
            };
        }
        if Instant::now() > deadline {
            return fail(&mut child, format!("no PONG within {START_DEADLINE:?}"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn ping(port: u16) -> bool {
    // tokio's io-util is not enabled; a blocking probe with short timeouts is enough here.
    let probe = move || -> std::io::Result<bool> {
        use std::io::{Read, Write};
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
        s.set_read_timeout(Some(Duration::from_millis(500)))?;
        s.set_write_timeout(Some(Duration::from_millis(500)))?;
        s.write_all(b"PING\r\n")?;
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf)?;
        Ok(&buf == b"+PONG\r\n")
    };
    matches!(tokio::task::spawn_blocking(probe).await, Ok(Ok(true)))
}

async fn server_pid(port: u16) -> Option<u32> {
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .ok()?
        .get_multiplexed_async_connection()
        .await
        .ok()?;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut c)
        .await
        .ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|p| p.trim().parse().ok())
}

/// A config pointing at `url`, everything else default.
pub fn config(url: &str) -> Config {
    Config::from_input(ConfigInput {
        redis_url: Some(url.to_owned()),
        ..Default::default()
    })
    .expect("valid config")
}

/// A connected client of `server`.
pub async fn client(server: &RedisServer) -> Arc<Client> {
    let c = Arc::new(Client::new(config(&server.url())));
    c.connect().await.expect("connect to the private server");
    c
}

/// One message as the test handler saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub stream: String,
    pub id: StreamId,
    pub data: serde_json::Value,
    pub timestamp: u64,
}

/// A `Handler` that forwards every entry to a channel; it can fail chosen ids and be slow.
pub struct ChannelHandler {
    tx: mpsc::UnboundedSender<Received>,
    fail: HashSet<StreamId>,
    delay: Option<Duration>,
}

impl ChannelHandler {
    /// A handler and the inbox it fills.
    pub fn new() -> (Arc<ChannelHandler>, Inbox) {
        Self::with(HashSet::new(), None)
    }

    /// A handler that reports `fail` ids as failed and sleeps `delay` per batch.
    pub fn with(fail: HashSet<StreamId>, delay: Option<Duration>) -> (Arc<ChannelHandler>, Inbox) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Arc::new(ChannelHandler { tx, fail, delay }), Inbox { rx })
    }
}

impl Handler for ChannelHandler {
    fn handle(&self, batch: Batch) -> BoxFuture<'static, HandleResult> {
        let tx = self.tx.clone();
        let fail = self.fail.clone();
        let delay = self.delay;
        Box::pin(async move {
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            let mut failures = Vec::new();
            let handled = batch.entries().len();
            for e in batch.entries() {
                let _ = tx.send(Received {
                    stream: batch.stream().to_string(),
                    id: e.id,
                    data: e.data_value(),
                    timestamp: e.timestamp(),
                });
                if fail.contains(&e.id) {
                    failures.push(CallbackFailure {
                        id: e.id.to_string(),
                        error: "the test handler fails this id".to_owned(),
                    });
                }
            }
            Ok(Outcome { handled, failures })
        })
    }
}

/// The receiving end of a [`ChannelHandler`].
pub struct Inbox {
    rx: mpsc::UnboundedReceiver<Received>,
}

impl Inbox {
    /// Waits for exactly `n` messages, failing the test when `within` passes first.
    pub async fn take(&mut self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + within;
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(m)) => got.push(m),
                Ok(None) => panic!(
                    "handler dropped after {} of {n} messages: {:?}",
                    got.len(),
                    got.last()
                ),
                Err(_) => panic!(
                    "only {} of {n} messages within {within:?}; last: {:?}",
                    got.len(),
                    got.last()
                ),
            }
        }
        got
    }

    /// Waits for one message.
    pub async fn one(&mut self, within: Duration) -> Received {
        self.take(1, within).await.remove(0)
    }

    /// Asserts that nothing has arrived so far (no waiting).
    pub fn assert_empty(&mut self) {
        if let Ok(m) = self.rx.try_recv() {
            panic!("unexpected message: {m:?}");
        }
    }

    /// Asserts that nothing arrives for `quiet` (a bounded sleep is the point here).
    pub async fn assert_quiet(&mut self, quiet: Duration) {
        if let Ok(Some(m)) = tokio::time::timeout(quiet, self.rx.recv()).await {
            panic!("unexpected message: {m:?}");
        }
    }
}

/// Awaits `fut`, failing the test when it has not finished within [`DELIVERY`].
///
/// A deadline, not a measurement: the behaviour it guards fails by never finishing (or by
/// waiting out an hour-long BLOCK or a ten-minute timeout), far beyond [`DELIVERY`].
pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(DELIVERY, fut).await {
        Ok(out) => out,
        Err(_) => panic!("not within {DELIVERY:?}: {what}"),
    }
}

/// Polls `cond` every 10 ms until it holds; panics naming `what` after `within`.
pub async fn until<F: FnMut() -> bool>(what: &str, within: Duration, mut cond: F) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// As [`until`], with an async condition.
pub async fn until_async<F, Fut>(what: &str, within: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !cond().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether some client of the server is blocked in an XREAD.
pub async fn reader_blocked(conn: &mut MultiplexedConnection) -> bool {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(conn)
        .await
        .expect("CLIENT LIST");
    list.lines()
        .any(|l| l.contains(" cmd=xread ") && l.split(' ').any(|f| f == "flags=b"))
}

/// Waits until the client's reader is blocked in its XREAD.
pub async fn wait_reader_blocked(conn: &mut MultiplexedConnection) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !reader_blocked(conn).await {
        assert!(
            Instant::now() < deadline,
            "the reader never blocked in XREAD"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One raw entry as XRANGE returns it.
pub type RawEntry = (StreamId, Vec<(Vec<u8>, Vec<u8>)>);

/// XRANGE `stream` - + through the checker, parsed here (not by streamcast's codec).
pub async fn xrange(conn: &mut MultiplexedConnection, stream: &str) -> Vec<RawEntry> {
    let v: Value = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .expect("XRANGE");
    let bulk = |v: &Value| match v {
        Value::BulkString(b) => b.clone(),
        other => panic!("expected a bulk string, got {other:?}"),
    };
    let Value::Array(items) = v else {
        panic!("XRANGE replied {v:?}")
    };
    items
        .iter()
        .map(|item| {
            let Value::Array(parts) = item else {
                panic!("entry {item:?}")
            };
            let id = String::from_utf8(bulk(&parts[0])).expect("utf-8 id");
            let Value::Array(flat) = &parts[1] else {
                panic!("fields {:?}", parts[1])
            };
            let fields = flat
                .chunks(2)
                .map(|kv| (bulk(&kv[0]), bulk(&kv[1])))
                .collect();
            (id.parse().expect("an id"), fields)
        })
        .collect()
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// `calls` of one command in `INFO commandstats` (`cmdstat_xinfo|stream`, ...).
pub async fn calls(conn: &mut MultiplexedConnection, cmd: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .expect("INFO commandstats");
    let prefix = format!("cmdstat_{cmd}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
