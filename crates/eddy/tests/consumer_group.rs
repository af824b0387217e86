//! Consumer groups across processes: `eddy tail --group` workers share a
//! stream while it is written to; one is killed with SIGKILL, another joins,
//! a shard is split. At the end every record was printed at least once,
//! children only after their parents, and a record was printed twice only
//! when the worker that printed it first died or lost that shard before
//! checkpointing.

mod common;
mod consumer_common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use common::{Eddy, create_stream};
use consumer_common::{Dynalite, wait_until};
use serde_json::Value;

/// One line from a worker: a record (stdout) or an event (stderr).
#[derive(Debug, Clone)]
struct Line {
    worker: &'static str,
    record: bool,
    v: Value,
}

#[derive(Default, Clone)]
struct Log(Arc<Mutex<Vec<Line>>>);

impl Log {
    fn lines(&self) -> Vec<Line> {
        self.0.lock().unwrap().clone()
    }

    /// Current holder of each shard: the last worker that started it.
    fn holders(&self) -> HashMap<String, &'static str> {
        let mut h = HashMap::new();
        for l in self.lines() {
            if !l.record && l.v["event"] == "start" {
                h.insert(l.v["shardId"].as_str().unwrap().to_string(), l.worker);
            }
            if !l.record && (l.v["event"] == "leaseLost" || l.v["event"] == "shardEnd") {
                let s = l.v["shardId"].as_str().unwrap();
                if h.get(s) == Some(&l.worker) {
                    h.remove(s);
                }
            }
        }
        h
    }

    fn count_held(&self, worker: &str) -> usize {
        self.holders().values().filter(|w| **w == worker).count()
    }
}

struct Worker {
    child: Child,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ddb`: the lease table's endpoint, or `None` for Eddy's own DynamoDB API.
fn spawn_worker(name: &'static str, eddy: &str, ddb: Option<&str>, efo: bool, log: &Log) -> Worker {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eddy"));
    cmd.args([
        "tail",
        "--stream",
        "g",
        "--group",
        "app",
        "--endpoint",
        eddy,
    ])
    .args(["--worker-id", name])
    .args(["--lease-duration-ms", "2000", "--shard-sync-ms", "500"])
    .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    .env("AWS_SECRET_ACCESS_KEY", "secret")
    .env("AWS_REGION", "us-east-1")
    .env("EDDY_LOG", "warn")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    if efo {
        cmd.arg("--efo");
    }
    if let Some(ddb) = ddb {
        cmd.args(["--dynamodb-endpoint", ddb]);
    }
    let mut child = cmd.spawn().expect("spawning eddy tail");
    for (pipe, record) in [
        (
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            true,
        ),
        (Box::new(child.stderr.take().unwrap()), false),
    ] {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => log.0.lock().unwrap().push(Line {
                        worker: name,
                        record,
                        v,
                    }),
                    Err(_) => eprintln!("[{name}] {line}"),
                }
            }
        });
    }
    Worker { child }
}

async fn group_survives_a_kill_a_join_and_a_split(efo: bool, on_dynalite: bool) {
    let dyn_ = if on_dynalite {
        match Dynalite::start() {
            Some(d) => Some(d),
            None => return,
        }
    } else {
        None
    };
    let eddy = Eddy::start();
    let k = eddy.client();
    create_stream(&k, "g", 4).await;
    let ep = eddy.endpoint();
    let ddb = dyn_.as_ref().map(Dynalite::endpoint);
    let ddb = ddb.as_deref();
    let log = Log::default();

    let mut w1 = spawn_worker("w1", &ep, ddb, efo, &log);
    let _w2 = spawn_worker("w2", &ep, ddb, efo, &log);
    wait_until(30, "two workers with two shards each", || {
        log.count_held("w1") == 2 && log.count_held("w2") == 2
    })
    .await;

    // Produce for about four seconds: 40 batches of 10.
    let producer = {
        let k = k.clone();
        tokio::spawn(async move {
            for b in 0..40 {
                let entries = (0..10)
                    .map(|j| {
                        let i = b * 10 + j;
                        PutRecordsRequestEntry::builder()
                            .partition_key(format!("pk-{}", rand::random::<u32>()))
                            .data(Blob::new(format!("r-{i}")))
                            .build()
                            .unwrap()
                    })
                    .collect::<Vec<_>>();
                let out = k
                    .put_records()
                    .stream_name("g")
                    .set_records(Some(entries))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(out.failed_record_count(), Some(0));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let w1_held: Vec<String> = log
        .holders()
        .into_iter()
        .filter(|(_, w)| *w == "w1")
        .map(|(s, _)| s)
        .collect();
    w1.child.kill().unwrap(); // SIGKILL
    w1.child.wait().unwrap();
    let killed_at = log.lines().len();
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Split one of the dead worker's shards: its successor must finish it
    // before the children.
    let victim = w1_held.iter().min().unwrap().clone();
    let shards = k.list_shards().stream_name("g").send().await.unwrap();
    let range = shards
        .shards()
        .iter()
        .find(|s| s.shard_id() == victim)
        .unwrap()
        .hash_key_range()
        .unwrap()
        .clone();
    let lo: u128 = range.starting_hash_key().parse().unwrap();
    let hi: u128 = range.ending_hash_key().parse().unwrap();
    k.split_shard()
        .stream_name("g")
        .shard_to_split(&victim)
        .new_starting_hash_key((lo + (hi - lo) / 2).to_string())
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let _w3 = spawn_worker("w3", &ep, ddb, efo, &log);
    producer.await.unwrap();

    let want: HashSet<String> = (0..400).map(|i| format!("r-{i}")).collect();
    let printed = || -> HashSet<String> {
        log.lines()
            .iter()
            .filter(|l| l.record)
            .map(|l| l.v["data"].as_str().unwrap().to_string())
            .collect()
    };
    wait_until(40, "every record printed", || printed().is_superset(&want)).await;

    let lines = log.lines();
    // Takeover: every shard the dead worker held was started again by
    // another worker, resuming from a checkpoint where it had one.
    for s in &w1_held {
        assert!(
            lines[killed_at..]
                .iter()
                .any(|l| !l.record && l.v["event"] == "start" && l.v["shardId"] == *s),
            "{s} taken over"
        );
    }
    let resumed_from_sequence = lines[killed_at..].iter().any(|l| {
        !l.record
            && l.v["event"] == "start"
            && w1_held.iter().any(|s| l.v["shardId"] == *s)
            && l.v["checkpoint"].as_str().unwrap().starts_with('4')
    });
    assert!(
        resumed_from_sequence,
        "a taken-over shard resumed from w1's checkpoint"
    );
    // The joining worker got a share.
    assert!(
        lines
            .iter()
            .any(|l| l.worker == "w3" && !l.record && l.v["event"] == "start"),
        "w3 took leases"
    );

    // Duplicates only where the first printer died or lost the shard before
    // it could checkpoint.
    let mut first: HashMap<(String, String), usize> = HashMap::new();
    let mut duplicates = 0;
    for (i, l) in lines.iter().enumerate().filter(|(_, l)| l.record) {
        let key = (
            format!("{}/{}", l.v["shardId"], l.v["sequenceNumber"]),
            l.v["subSequenceNumber"].to_string(),
        );
        match first.get(&key) {
            None => {
                first.insert(key, i);
            }
            Some(&j) => {
                duplicates += 1;
                let p = &lines[j];
                let shard = &p.v["shardId"];
                let lost_later = lines[j..].iter().any(|e| {
                    e.worker == p.worker
                        && !e.record
                        && e.v["event"] == "leaseLost"
                        && e.v["shardId"] == *shard
                });
                assert!(
                    p.worker == "w1" || lost_later,
                    "{} printed twice: first by {} which neither died nor lost {shard}",
                    p.v,
                    p.worker
                );
            }
        }
    }
    let per_worker = |w: &str| lines.iter().filter(|l| l.record && l.worker == w).count();
    let w1_printed = per_worker("w1");
    eprintln!(
        "printed by w1/w2/w3: {}/{}/{}; duplicates: {duplicates}; w1 held {w1_held:?}",
        w1_printed,
        per_worker("w2"),
        per_worker("w3")
    );
    assert!(
        duplicates <= w1_printed + 40,
        "{duplicates} duplicates: more than a batch per lost shard"
    );

    // Parents before children.
    let shards = k.list_shards().stream_name("g").send().await.unwrap();
    let children: Vec<_> = shards
        .shards()
        .iter()
        .filter(|s| s.parent_shard_id() == Some(victim.as_str()))
        .collect();
    assert_eq!(children.len(), 2);
    let last_of_parent = lines
        .iter()
        .rposition(|l| l.record && l.v["shardId"] == *victim)
        .expect("the parent had records");
    let parent_end = lines
        .iter()
        .position(|l| !l.record && l.v["event"] == "shardEnd" && l.v["shardId"] == *victim)
        .expect("the parent reached SHARD_END");
    assert!(last_of_parent < parent_end);
    for c in children {
        if let Some(first_child) = lines
            .iter()
            .position(|l| l.record && l.v["shardId"] == c.shard_id())
        {
            assert!(
                parent_end < first_child,
                "{} printed before its parent ended",
                c.shard_id()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_group_survives_a_kill_a_join_and_a_split() {
    let t = Instant::now();
    group_survives_a_kill_a_join_and_a_split(false, true).await;
    eprintln!("took {:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_group_survives_a_kill_a_join_and_a_split() {
    let t = Instant::now();
    group_survives_a_kill_a_join_and_a_split(true, true).await;
    eprintln!("took {:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_with_the_lease_table_on_eddy_survives_a_kill_a_join_and_a_split() {
    let t = Instant::now();
    group_survives_a_kill_a_join_and_a_split(false, false).await;
    eprintln!("took {:?}", t.elapsed());
}
