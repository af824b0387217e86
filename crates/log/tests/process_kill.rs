//! Real-process crash test: this test binary re-executes itself as a child
//! that appends on the real file system and prints each acknowledgement;
//! the parent kills it with SIGKILL at random moments, many times, and
//! checks after every restart that each acknowledged record is present, in
//! order, exactly once.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use eddy_log::{Log, LogConfig};
use rand::Rng;

const TEST_NAME: &str = "sigkill_at_random_moments_never_loses_acknowledged_records";
const SHARDS: u64 = 4;

fn child(dir: String, round: u64) {
    let rt = rt();
    let log = Log::open_with(
        LogConfig::new(dir),
        eddy_log::Options {
            segment_bytes: 256 << 10,
            ..Default::default()
        },
    )
    .unwrap();
    for s in 0..SHARDS {
        if !log.shard_exists(s) {
            log.create_shard(s, 1).unwrap();
        }
    }
    rt.block_on(async {
        let mut tasks = Vec::new();
        for w in 0..4u64 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0u64.. {
                    let s = (w + i) % SHARDS;
                    let base = round * 100_000_000 + w * 10_000_000 + i * 10;
                    let seqs: Vec<u64> = (0..(i % 3 + 1)).map(|k| base + k).collect();
                    let a = log
                        .append(one(s, seqs.iter().map(|q| record(s, *q)).collect()))
                        .await
                        .unwrap();
                    let list: Vec<String> = seqs.iter().map(|q| q.to_string()).collect();
                    println!("ACK {s} {} {}", a[0].first_position, list.join(","));
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

fn verify(dir: &std::path::Path, acks: &[(u64, u64, Vec<u64>)], round: u64) {
    let rt = rt();
    let log = Log::open(LogConfig::new(dir)).unwrap();
    let mut shards: HashMap<u64, Vec<u64>> = HashMap::new();
    for s in 0..SHARDS {
        if !log.shard_exists(s) {
            assert!(acks.is_empty(), "round {round}: shard {s} lost");
            continue;
        }
        let recs = read_all(&log, s);
        let seqs: Vec<u64> = recs
            .iter()
            .map(|r| check_record(s, &r.key, &r.value))
            .collect();
        let uniq: HashSet<u64> = seqs.iter().copied().collect();
        assert_eq!(
            uniq.len(),
            seqs.len(),
            "round {round}: shard {s} has a record twice"
        );
        // Each writer's records appear in the order it wrote them.
        let mut last: HashMap<u64, u64> = HashMap::new();
        for q in &seqs {
            let writer = q / 10_000_000;
            if let Some(prev) = last.insert(writer, *q) {
                assert!(prev < *q, "round {round}: shard {s} out of order");
            }
        }
        shards.insert(s, seqs);
    }
    for (s, first, seqs) in acks {
        let got = &shards[s];
        for (i, q) in seqs.iter().enumerate() {
            let p = *first as usize + i;
            assert_eq!(
                got.get(p),
                Some(q),
                "round {round}: acknowledged {s}/{p} missing or different"
            );
        }
    }
    rt.block_on(log.shutdown()).unwrap();
}

#[test]
fn sigkill_at_random_moments_never_loses_acknowledged_records() {
    if let Ok(dir) = std::env::var("EDDY_LOG_CHILD_DIR") {
        let round = std::env::var("EDDY_LOG_CHILD_ROUND")
            .unwrap()
            .parse()
            .unwrap();
        child(dir, round);
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::thread_rng();
    let mut acks: Vec<(u64, u64, Vec<u64>)> = Vec::new();
    for round in 0..20u64 {
        let mut child = Command::new(&exe)
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env("EDDY_LOG_CHILD_DIR", tmp.path())
            .env("EDDY_LOG_CHILD_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (first_tx, first_rx) = std::sync::mpsc::channel::<()>();
        let reader = std::thread::spawn(move || {
            let mut v = Vec::new();
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let Some(rest) = line.strip_prefix("ACK ") else {
                    continue;
                };
                let mut it = rest.split(' ');
                let s: u64 = it.next().unwrap().parse().unwrap();
                let p: u64 = it.next().unwrap().parse().unwrap();
                let seqs = it
                    .next()
                    .unwrap()
                    .split(',')
                    .map(|q| q.parse().unwrap())
                    .collect();
                v.push((s, p, seqs));
                let _ = first_tx.send(());
            }
            v
        });
        // Kill at a random moment after the child has started acknowledging.
        first_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("child acknowledged nothing");
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..250)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let got = reader.join().unwrap();
        assert!(!got.is_empty());
        acks.extend(got);
        verify(tmp.path(), &acks, round);
    }
    eprintln!("{} acknowledged appends over 20 SIGKILLed runs", acks.len());
    assert!(acks.len() > 100, "only {} acknowledgements", acks.len());
}
