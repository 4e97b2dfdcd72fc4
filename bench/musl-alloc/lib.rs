//! See Cargo.toml: one exported function, timed by dlopen.c.
use serde_json::{json, Value};
use std::sync::mpsc::sync_channel;
use std::thread;
use std::time::Instant;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `threads` producers each build and serialize `iters` messages (what publishMessage does on
/// the JS thread); one consumer parses each and builds an XADD-like command (the tokio worker),
/// then frees both, so most frees happen on another thread than the allocation. Returns ns.
#[no_mangle]
pub extern "C" fn alloc_bench(iters: u64, threads: u32) -> u64 {
    let start = Instant::now();
    let (tx, rx) = sync_channel::<Vec<u8>>(256);
    let producers: Vec<_> = (0..threads.max(1))
        .map(|t| {
            let tx = tx.clone();
            thread::spawn(move || {
                for n in 0..iters {
                    let v = json!({
                        "type": "session_created", "sessionId": format!("s-{t}-{n}"), "userId": n,
                        "tags": ["a", "b", "c"], "meta": { "ip": "10.0.0.1", "agent": "bench/1.0", "n": n }
                    });
                    if tx.send(serde_json::to_vec(&v).expect("serialize")).is_err() {
                        return;
                    }
                }
            })
        })
        .collect();
    drop(tx);
    let mut bytes = 0usize;
    for text in rx {
        let v: Value = serde_json::from_slice(&text).expect("parse");
        let mut cmd: Vec<Vec<u8>> = vec![
            b"XADD".to_vec(),
            b"events".to_vec(),
            b"*".to_vec(),
            b"data".to_vec(),
        ];
        cmd.push(text);
        cmd.push(v["userId"].to_string().into_bytes());
        bytes += cmd.iter().map(Vec::len).sum::<usize>();
    }
    for p in producers {
        p.join().expect("producer");
    }
    std::hint::black_box(bytes);
    start.elapsed().as_nanos() as u64
}
