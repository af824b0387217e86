//! Throughput of decode + validate for the hot path: a PutRecords body of
//! 500 records with 100-byte payloads (~92 KB of JSON), and its CBOR twin.
//!
//! `cargo run --release -p eddy-wire --example decode_bench`

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ciborium::Value as Cbor;
use eddy_wire::{Protocol, kinesis};

fn json_body() -> Vec<u8> {
    let mut s = String::from(r#"{"StreamName":"bench-stream","Records":["#);
    for i in 0..500 {
        if i > 0 {
            s.push(',');
        }
        let data: Vec<u8> = (0..100).map(|j| (i * 7 + j) as u8).collect();
        s.push_str(&format!(
            r#"{{"Data":"{}","PartitionKey":"partition-key-{i:06}"}}"#,
            STANDARD.encode(&data)
        ));
    }
    s.push_str("]}");
    s.into_bytes()
}

fn cbor_body() -> Vec<u8> {
    let records = (0..500)
        .map(|i| {
            let data: Vec<u8> = (0..100).map(|j| (i * 7 + j) as u8).collect();
            Cbor::Map(vec![
                (Cbor::Text("Data".into()), Cbor::Bytes(data)),
                (
                    Cbor::Text("PartitionKey".into()),
                    Cbor::Text(format!("partition-key-{i:06}")),
                ),
            ])
        })
        .collect();
    let v = Cbor::Map(vec![
        (
            Cbor::Text("StreamName".into()),
            Cbor::Text("bench-stream".into()),
        ),
        (Cbor::Text("Records".into()), Cbor::Array(records)),
    ]);
    let mut out = Vec::new();
    ciborium::ser::into_writer(&v, &mut out).unwrap();
    out
}

fn run(protocol: Protocol, body: &[u8]) {
    let svc = kinesis();
    let op = svc.operation("PutRecords").unwrap();
    let once = || {
        let v = svc.decode(op, protocol, body).unwrap();
        svc.validate(op, &v).unwrap();
        v
    };
    assert_eq!(once().list("Records").unwrap().len(), 500);
    for _ in 0..200 {
        std::hint::black_box(once());
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        std::hint::black_box(once());
        n += 1;
    }
    let per = start.elapsed() / n as u32;
    let rps = 500.0 / per.as_secs_f64();
    println!(
        "{protocol:?}: body {} bytes, decode+validate {:.1} us per request, {:.2} M records/s on one core",
        body.len(),
        per.as_secs_f64() * 1e6,
        rps / 1e6
    );
}

fn main() {
    run(Protocol::Json, &json_body());
    run(Protocol::Cbor, &cbor_body());
}
