//! Acknowledged means durable: `eddy serve` is killed with SIGKILL under
//! PutRecords load, restarted, and every acknowledged record is found, in
//! order, exactly once.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use common::{Eddy, create_stream};

/// Reads every record of every shard: shard id -> [(sequence number, data)].
async fn read_all(
    k: &aws_sdk_kinesis::Client,
    stream: &str,
) -> BTreeMap<String, Vec<(String, String)>> {
    let shards = k.list_shards().stream_name(stream).send().await.unwrap();
    let mut out = BTreeMap::new();
    for shard in shards.shards() {
        let mut it = k
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator
            .unwrap();
        let mut recs = Vec::new();
        loop {
            let r = k.get_records().shard_iterator(&it).send().await.unwrap();
            if r.records().is_empty() {
                break;
            }
            for rec in r.records() {
                recs.push((
                    rec.sequence_number().to_string(),
                    String::from_utf8(rec.data().as_ref().to_vec()).unwrap(),
                ));
            }
            it = r.next_shard_iterator().unwrap().to_string();
        }
        out.insert(shard.shard_id().to_string(), recs);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_kill_9_under_load() {
    let mut eddy = Eddy::start();
    create_stream(&eddy.client(), "crash", 3).await;
    // data -> (shard, sequence number) for every acknowledged record.
    let acked: Arc<Mutex<HashMap<String, (String, String)>>> = Arc::default();
    let mut next_id = 0u64;
    for round in 0..5 {
        let k = eddy.client();
        let mut writers = Vec::new();
        for w in 0..4 {
            let k = k.clone();
            let acked = acked.clone();
            let base = next_id + w * 1_000_000;
            writers.push(tokio::spawn(async move {
                for batch in 0u64.. {
                    let entries: Vec<_> = (0..50)
                        .map(|i| {
                            PutRecordsRequestEntry::builder()
                                .partition_key(format!("pk-{}", (batch + i) % 7))
                                .data(Blob::new(format!("r{round}-{}", base + batch * 50 + i)))
                                .build()
                                .unwrap()
                        })
                        .collect();
                    let datas: Vec<String> = entries
                        .iter()
                        .map(|e| String::from_utf8(e.data().as_ref().to_vec()).unwrap())
                        .collect();
                    match k
                        .put_records()
                        .stream_name("crash")
                        .set_records(Some(entries))
                        .send()
                        .await
                    {
                        Ok(out) => {
                            let mut a = acked.lock().unwrap();
                            for (d, r) in datas.into_iter().zip(out.records()) {
                                if let (Some(shard), Some(seq)) =
                                    (r.shard_id(), r.sequence_number())
                                {
                                    a.insert(d, (shard.to_string(), seq.to_string()));
                                }
                            }
                        }
                        Err(_) => return,
                    }
                }
            }));
        }
        let wait = 200 + (rand::random::<u64>() % 600);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        eddy.kill9();
        for w in writers {
            let _ = w.await;
        }
        next_id += 10_000_000;
        eddy.spawn();

        let all = read_all(&eddy.client(), "crash").await;
        let a = acked.lock().unwrap();
        assert!(
            !a.is_empty(),
            "round {round}: the load produced acknowledged records"
        );
        let mut seen: HashMap<&str, (&str, &str)> = HashMap::new();
        for (shard, recs) in &all {
            let seqs: Vec<common::SeqNum> =
                recs.iter().map(|(s, _)| common::SeqNum::of(s)).collect();
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "round {round}: {shard} is in order"
            );
            for (seq, data) in recs {
                assert!(
                    seen.insert(data, (shard, seq)).is_none(),
                    "round {round}: {data} stored twice"
                );
            }
        }
        for (data, (shard, seq)) in a.iter() {
            let found = seen.get(data.as_str());
            assert_eq!(
                found,
                Some(&(shard.as_str(), seq.as_str())),
                "round {round}: acknowledged {data} lost or moved"
            );
        }
        eprintln!(
            "round {round}: {} acknowledged, {} stored",
            a.len(),
            seen.len()
        );
    }
}
