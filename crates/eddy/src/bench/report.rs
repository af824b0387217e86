//! The human-readable summary printed at the end of a run.

use std::fmt::Write;

use super::Summary;
use super::phases::Throughput;
use super::stats::{ErrorTally, Quantiles};

fn ms(q: Option<Quantiles>, f: fn(&Quantiles) -> f64) -> String {
    q.map_or_else(|| "-".to_string(), |q| format!("{:.2}", f(&q)))
}

fn throughput_row(out: &mut String, name: &str, t: &Throughput) {
    let _ = writeln!(
        out,
        "{name:<20} {:>10} {:>12} {:>8.2} {:>12.0} {:>9.2} {:>9} {:>9} {:>8}",
        t.requests,
        t.records,
        t.seconds,
        t.records_per_s,
        t.mb_per_s,
        ms(t.request_latency, |q| q.p50_ms),
        ms(t.request_latency, |q| q.p99_ms),
        t.errors.iter().map(|e| e.count).sum::<u64>(),
    );
}

fn errors(out: &mut String, name: &str, errors: &[ErrorTally]) {
    for e in errors {
        let _ = writeln!(
            out,
            "  {name}: {} x {}: {}",
            e.count,
            e.kind,
            e.example.chars().take(160).collect::<String>()
        );
    }
}

pub fn table(s: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "eddy bench against {}: {} shards, {}-byte records, PutRecords batch {}, \
         concurrency {}, {}s per timed phase (stream created and ACTIVE in {:.0} ms)",
        s.endpoint,
        s.shards,
        s.record_size,
        s.batch,
        s.concurrency,
        s.duration_s,
        s.create_stream_ms
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<20} {:>10} {:>12} {:>8} {:>12} {:>9} {:>9} {:>9} {:>8}",
        "phase",
        "requests",
        "records",
        "seconds",
        "records/s",
        "MB/s",
        "p50 ms",
        "p99 ms",
        "errors"
    );
    if let Some(t) = &s.put_records {
        throughput_row(&mut out, "PutRecords", t);
    }
    if let Some(t) = &s.put_record {
        throughput_row(&mut out, "PutRecord", t);
    }
    if let Some(t) = &s.prefill {
        throughput_row(&mut out, "(prefill PutRecords)", t);
    }
    if let Some(d) = &s.get_records {
        let _ = writeln!(
            out,
            "{:<20} {:>10} {:>12} {:>8.2} {:>12.0} {:>9.2} {:>9} {:>9} {:>8}",
            "GetRecords drain",
            d.calls,
            d.records,
            d.seconds,
            d.records_per_s,
            d.mb_per_s,
            "-",
            "-",
            d.errors.iter().map(|e| e.count).sum::<u64>(),
        );
    }
    if let Some(v) = &s.put_to_visible {
        let _ = writeln!(
            out,
            "{:<20} {:>10} {:>12} {:>8} {:>12.0} {:>9} {:>9} {:>9} {:>8}",
            "put-to-visible",
            v.get_records_calls,
            v.seen,
            "-",
            v.send_rate,
            "-",
            ms(v.latency, |q| q.p50_ms),
            ms(v.latency, |q| q.p99_ms),
            v.errors.iter().map(|e| e.count).sum::<u64>(),
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "MB = 10^6 bytes of record data; p50/p99 of the write phases are per request \
         (send to answer)."
    );
    if let Some(d) = &s.get_records {
        let _ = writeln!(
            out,
            "GetRecords drain read {} of {} records written{}.",
            d.records,
            d.expected_records,
            if d.complete {
                ""
            } else {
                " (INCOMPLETE: time limit or errors)"
            }
        );
    }
    if let Some(v) = &s.put_to_visible {
        let _ = writeln!(
            out,
            "put-to-visible: {} of {} planned records sent at {} records/s to {}: {} acknowledged, {} seen by \
             GetRecords, {} missing; latency from sending PutRecord to the GetRecords answer \
             holding the record: p50 {} ms, p99 {} ms, max {} ms (PutRecord ack p50 {} ms, \
             p99 {} ms); reader made {} GetRecords calls, {} empty, {} throttled.",
            v.sent,
            v.planned,
            v.target_rate,
            v.shard,
            v.acknowledged,
            v.seen,
            v.missing,
            ms(v.latency, |q| q.p50_ms),
            ms(v.latency, |q| q.p99_ms),
            ms(v.latency, |q| q.max_ms),
            ms(v.ack_latency, |q| q.p50_ms),
            ms(v.ack_latency, |q| q.p99_ms),
            v.get_records_calls,
            v.empty_polls,
            v.throttled_polls,
        );
    }
    let cpu: Vec<String> = [
        (
            "PutRecords",
            s.put_records.as_ref().and_then(|t| t.generator_cpu_cores),
        ),
        (
            "PutRecord",
            s.put_record.as_ref().and_then(|t| t.generator_cpu_cores),
        ),
        (
            "drain",
            s.get_records.as_ref().and_then(|d| d.generator_cpu_cores),
        ),
        (
            "put-to-visible",
            s.put_to_visible
                .as_ref()
                .and_then(|v| v.generator_cpu_cores),
        ),
    ]
    .iter()
    .filter_map(|(name, c)| c.map(|c| format!("{name} {c:.2}")))
    .collect();
    if !cpu.is_empty() {
        let _ = writeln!(
            out,
            "CPU cores used by the load generator itself: {}.",
            cpu.join(", ")
        );
    }
    let mut any = String::new();
    if let Some(t) = &s.put_records {
        errors(&mut any, "PutRecords", &t.errors);
    }
    if let Some(t) = &s.put_record {
        errors(&mut any, "PutRecord", &t.errors);
    }
    if let Some(t) = &s.prefill {
        errors(&mut any, "prefill", &t.errors);
    }
    if let Some(d) = &s.get_records {
        errors(&mut any, "GetRecords", &d.errors);
    }
    if let Some(v) = &s.put_to_visible {
        errors(&mut any, "put-to-visible", &v.errors);
    }
    if !any.is_empty() {
        let _ = writeln!(out, "errors:");
        out.push_str(&any);
    }
    out
}
