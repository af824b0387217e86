//! Put-to-push latency of enhanced fan-out: PutRecord at a fixed rate, one or
//! several consumers subscribed with SubscribeToShard (aws-sdk-kinesis), the
//! time from sending each record to receiving it pushed. Run with
//! `cargo bench -p eddy --bench fan_out_latency`; it starts `eddy serve`
//! (default fsync durability) itself. Settings by environment:
//! `EDDY_BENCH_RATE` (records/s, default 1000), `EDDY_BENCH_SECS` (per
//! scenario, default 5), `EDDY_BENCH_DURABILITY` (default fsync).

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{ShardIteratorType, StartingPosition, SubscribeToShardEventStream};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn scenario(
    k: &aws_sdk_kinesis::Client,
    stream: &str,
    consumers: &[String],
    rate: u64,
    secs: u64,
) -> (usize, f64, f64, f64) {
    let base = Instant::now();
    let received: Arc<Mutex<Vec<f64>>> = Arc::default();
    let mut subs = Vec::new();
    for arn in consumers {
        let mut out = k
            .subscribe_to_shard()
            .consumer_arn(arn)
            .shard_id("shardId-000000000000")
            .starting_position(
                StartingPosition::builder()
                    .r#type(ShardIteratorType::Latest)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("subscribe");
        let received = received.clone();
        subs.push(tokio::spawn(async move {
            while let Ok(Some(ev)) = out.event_stream.recv().await {
                if let SubscribeToShardEventStream::SubscribeToShardEvent(ev) = ev {
                    let now = base.elapsed().as_nanos() as u64;
                    let mut r = received.lock().unwrap();
                    for rec in ev.records() {
                        let sent = u64::from_be_bytes(rec.data().as_ref()[..8].try_into().unwrap());
                        r.push((now - sent) as f64 / 1e6);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // subscriptions settle
    let total = rate * secs;
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let inflight = Arc::new(tokio::sync::Semaphore::new(256));
    for i in 0..total {
        tick.tick().await;
        let permit = inflight.clone().acquire_owned().await.unwrap();
        let k = k.clone();
        let stream = stream.to_string();
        tokio::spawn(async move {
            let sent = base.elapsed().as_nanos() as u64;
            let mut data = sent.to_be_bytes().to_vec();
            data.extend_from_slice(&[0u8; 92]);
            let _ = k
                .put_record()
                .stream_name(stream)
                .partition_key(format!("k{}", i % 64))
                .data(Blob::new(data))
                .send()
                .await;
            drop(permit);
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for s in subs {
        s.abort();
    }
    let mut lat = received.lock().unwrap().clone();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0),
    )
}

fn main() {
    let rate: u64 = env_or("EDDY_BENCH_RATE", 1000);
    let secs: u64 = env_or("EDDY_BENCH_SECS", 5);
    let durability: String = env_or("EDDY_BENCH_DURABILITY", "fsync".to_string());
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--shard-limits",
            "off",
            "--durability",
            &durability,
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env("EDDY_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("starting eddy serve");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "eddy serve did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let results: HashMap<usize, (usize, f64, f64, f64)> = rt.block_on(async {
        let conf = aws_sdk_kinesis::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(
                "AKIDEXAMPLE",
                "secret",
                None,
                None,
                "bench",
            ))
            .endpoint_url(format!("http://127.0.0.1:{port}"))
            .build();
        let k = aws_sdk_kinesis::Client::from_conf(conf);
        k.create_stream()
            .stream_name("fan")
            .shard_count(1)
            .send()
            .await
            .unwrap();
        let arn = "arn:aws:kinesis:us-east-1:000000000000:stream/fan";
        let mut consumers = Vec::new();
        for i in 0..5 {
            let c = k
                .register_stream_consumer()
                .stream_arn(arn)
                .consumer_name(format!("c{i}"))
                .send()
                .await
                .unwrap();
            consumers.push(c.consumer().unwrap().consumer_arn().to_string());
        }
        let mut out = HashMap::new();
        for n in [1usize, 5] {
            out.insert(n, scenario(&k, "fan", &consumers[..n], rate, secs).await);
        }
        out
    });
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "put-to-push latency, {rate} records/s for {secs} s, durability {durability}, 1 shard"
    );
    println!("| consumers | pushes received | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|");
    for n in [1usize, 5] {
        let (count, p50, p99, max) = results[&n];
        println!("| {n} | {count} | {p50:.2} | {p99:.2} | {max:.2} |");
    }
}
