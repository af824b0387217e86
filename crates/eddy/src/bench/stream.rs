//! The bench's own stream: create, wait for ACTIVE, list shards, delete.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use serde_json::{Value, json};

use super::body;
use super::client::{Conn, Outcome};
use super::stats::{Failure, backoff};

pub const TARGET_PREFIX: &str = "Kinesis_20131202.";

/// One control-plane call that must succeed: retried on throttling and
/// transport errors, an error for anything else.
pub async fn admin(conn: &mut Conn, target: &'static str, req: Value) -> anyhow::Result<Value> {
    let op = target.trim_start_matches(TARGET_PREFIX);
    let body = Bytes::from(serde_json::to_vec(&req)?);
    let mut attempt = 0;
    loop {
        let outcome = conn.call(target, body.clone()).await;
        let failure = match outcome {
            Outcome::Ok(b) => {
                return if b.is_empty() {
                    Ok(Value::Null)
                } else {
                    serde_json::from_slice(&b).with_context(|| format!("parsing {op} answer"))
                };
            }
            Outcome::Http { status, ref body } => {
                let code = body::error_code(body);
                let throttled = code.contains("LimitExceeded") || code.contains("Throttl");
                if !throttled && status < 500 {
                    let msg = body::error_message(body).unwrap_or_default();
                    bail!("{op} failed: HTTP {status} {code}: {msg}");
                }
                if throttled {
                    Failure::Throttled
                } else {
                    Failure::Other
                }
            }
            Outcome::Transport(ref e) => {
                if attempt >= 3 {
                    bail!("{op} failed: {e}");
                }
                Failure::Other
            }
        };
        attempt += 1;
        if attempt > 20 {
            bail!("{op} kept failing after {attempt} attempts");
        }
        tokio::time::sleep(backoff(&failure, attempt)).await;
    }
}

/// A unique stream name for this run.
pub fn unique_name() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("eddy-bench-{secs}-{}", std::process::id())
}

/// Creates the stream and waits until DescribeStreamSummary says ACTIVE;
/// returns how long that took.
pub async fn create(conn: &mut Conn, name: &str, shards: u32) -> anyhow::Result<Duration> {
    let start = Instant::now();
    admin(
        conn,
        "Kinesis_20131202.CreateStream",
        json!({"StreamName": name, "ShardCount": shards}),
    )
    .await?;
    loop {
        let v = admin(
            conn,
            "Kinesis_20131202.DescribeStreamSummary",
            json!({"StreamName": name}),
        )
        .await?;
        let status = v["StreamDescriptionSummary"]["StreamStatus"]
            .as_str()
            .unwrap_or("?");
        if status == "ACTIVE" {
            return Ok(start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(120) {
            bail!("stream {name} still {status} after 120s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A shard and the start of its hash key range.
#[derive(Debug, Clone)]
pub struct Shard {
    pub id: String,
    pub starting_hash_key: String,
}

pub async fn shards(conn: &mut Conn, name: &str) -> anyhow::Result<Vec<Shard>> {
    let mut out = Vec::new();
    let mut req = json!({"StreamName": name});
    loop {
        let v = admin(conn, "Kinesis_20131202.ListShards", req).await?;
        for s in v["Shards"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            out.push(Shard {
                id: s["ShardId"].as_str().context("shard without id")?.into(),
                starting_hash_key: s["HashKeyRange"]["StartingHashKey"]
                    .as_str()
                    .unwrap_or("0")
                    .into(),
            });
        }
        match v["NextToken"].as_str() {
            Some(t) => req = json!({"NextToken": t}),
            None => break,
        }
    }
    if out.is_empty() {
        bail!("stream {name} has no shards");
    }
    Ok(out)
}

pub async fn delete(conn: &mut Conn, name: &str) -> anyhow::Result<()> {
    admin(
        conn,
        "Kinesis_20131202.DeleteStream",
        json!({"StreamName": name, "EnforceConsumerDeletion": true}),
    )
    .await
    .map(|_| ())
}

pub async fn shard_iterator(
    conn: &mut Conn,
    stream: &str,
    shard: &str,
    kind: &str,
) -> anyhow::Result<String> {
    let v = admin(
        conn,
        "Kinesis_20131202.GetShardIterator",
        json!({"StreamName": stream, "ShardId": shard, "ShardIteratorType": kind}),
    )
    .await?;
    Ok(v["ShardIterator"]
        .as_str()
        .context("GetShardIterator answer without ShardIterator")?
        .to_string())
}
