//! Byte compatibility with the Python `aws-kinesis-agg` package: a fixture it
//! wrote (`fixtures/kpl_aggregate.txt`, by `fixtures/kpl_aggregate.py`) is
//! deaggregated by our deaggregator and re-encoded to the same bytes by our
//! aggregator; and, where the project's venv has the package, the script is
//! run live so a change on either side shows.

use std::path::PathBuf;
use std::process::Command;

use bytes::Bytes;
use eddy_producer::aggregation::Aggregate;
use eddy_producer::deaggregate;

struct Fixture {
    records: Vec<(String, Option<String>, Vec<u8>)>,
    aggregate: Vec<u8>,
}

fn parse(text: &str) -> Fixture {
    let mut records = Vec::new();
    let mut aggregate = None;
    for line in text.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(parts.len(), 4, "bad fixture line {line:?}");
        let ehk = (parts[2] != "-").then(|| parts[2].to_string());
        let data = hex::decode(parts[3]).unwrap();
        match parts[0] {
            "record" => records.push((parts[1].to_string(), ehk, data)),
            "aggregate" => aggregate = Some(data),
            other => panic!("bad fixture tag {other}"),
        }
    }
    Fixture {
        records,
        aggregate: aggregate.expect("an aggregate line"),
    }
}

fn check(fx: &Fixture) {
    let out = deaggregate("outer", &Bytes::from(fx.aggregate.clone())).unwrap();
    assert_eq!(out.len(), fx.records.len());
    for (i, (got, (pk, ehk, data))) in out.iter().zip(&fx.records).enumerate() {
        assert_eq!(&got.partition_key, pk, "record {i}");
        assert_eq!(&got.explicit_hash_key, ehk, "record {i}");
        assert_eq!(got.data.as_ref(), data.as_slice(), "record {i}");
        assert_eq!(got.sub_sequence_number, Some(i as u64));
    }
    let mut agg = Aggregate::new();
    for (pk, ehk, data) in &fx.records {
        agg.add(pk, ehk.as_deref(), data);
    }
    assert_eq!(
        agg.encode().as_ref(),
        fx.aggregate.as_slice(),
        "our encoding differs from aws-kinesis-agg's"
    );
}

#[test]
fn aggregate_written_by_aws_kinesis_agg_deaggregates_and_reencodes_byte_for_byte() {
    let fx = parse(include_str!("fixtures/kpl_aggregate.txt"));
    assert_eq!(fx.records.len(), 42);
    check(&fx);
}

/// The project's venv (made by scripts/test.sh) with `aws_kinesis_agg`.
fn venv_python() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let py = std::env::var_os("EDDY_PYTHON")
        .map(PathBuf::from)
        .unwrap_or(root.join(".venv/bin/python"));
    let ok = Command::new(&py)
        .args(["-c", "import aws_kinesis_agg"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    ok.then_some(py)
}

#[test]
fn aggregate_made_live_by_aws_kinesis_agg_deaggregates_and_reencodes_byte_for_byte() {
    let Some(py) = venv_python() else {
        // CI always has the venv (scripts/test.sh installs it first).
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have .venv with aws-kinesis-agg"
        );
        eprintln!("skipped: no .venv python with aws_kinesis_agg (run scripts/test.sh)");
        return;
    };
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kpl_aggregate.py");
    let out = Command::new(py).arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text,
        include_str!("fixtures/kpl_aggregate.txt"),
        "fixture is stale"
    );
    check(&parse(&text));
}
