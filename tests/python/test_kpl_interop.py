"""KPL aggregation interop: records that `eddy put --aggregate` (the
eddy-producer library) packs are deaggregated correctly by the Python
`aws-kinesis-agg` package, read back through boto3 from a real `eddy serve`.

The other direction (aggregates made by aws-kinesis-agg, deaggregated by
eddy-producer) runs from Rust: crates/producer/tests/kpl_compat.rs runs
crates/producer/tests/fixtures/kpl_aggregate.py with this venv's python and
also compares against the checked-in output, byte for byte.
"""

import base64
import hashlib
import json
import os
import subprocess

from aws_kinesis_agg import MAGIC
from aws_kinesis_agg.deaggregator import iter_deaggregate_records

from conftest import EDDY


def eddy_put(eddy, args, lines):
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_REGION": "us-east-1",
    }
    env.pop("AWS_PROFILE", None)
    return subprocess.run(
        [EDDY, "put", "--endpoint", eddy.endpoint, "--max-buffered-ms", "20", "--json", *args],
        input="".join(line + "\n" for line in lines).encode(),
        capture_output=True,
        env=env,
        timeout=60,
    )


def read_stream(kinesis, stream):
    """Every Kinesis record of every shard, in shard order, as boto3 gives them."""
    out = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        it = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while it:
            r = kinesis.get_records(ShardIterator=it, Limit=10000)
            out.extend((shard, rec) for rec in r["Records"])
            if not r["Records"] and r.get("MillisBehindLatest", 0) == 0:
                break
            it = r.get("NextShardIterator")
    return out


def hash_key(pk):
    return int.from_bytes(hashlib.md5(pk.encode("utf-8")).digest(), "big")


def test_eddy_put_aggregates_deaggregate_with_aws_kinesis_agg(eddy, kinesis):
    kinesis.create_stream(StreamName="agg", ShardCount=3)
    keys = ["user-%d" % (i % 37) for i in range(2000)] + ["clé-é-%d" % i for i in range(10)]
    lines = [json.dumps({"user": k, "n": i, "pad": "x" * (i % 50)}) for i, k in enumerate(keys)]
    res = eddy_put(eddy, ["--stream", "agg", "--aggregate", "--partition-key-field", "user"], lines)
    assert res.returncode == 0, res.stderr.decode()
    summary = json.loads(res.stdout)
    assert summary["records"] == len(lines) and summary["failed"] == 0

    raw = read_stream(kinesis, "agg")
    aggregated = [rec for _, rec in raw if rec["Data"].startswith(MAGIC)]
    assert len(raw) < len(lines) / 10, "records should have been packed"
    assert aggregated, "at least one aggregated record"
    assert summary["kinesis_records"] == len(raw)

    seen = []
    for shard, rec in raw:
        users = list(iter_deaggregate_records(rec, data_format="Boto3"))
        lo = int(shard["HashKeyRange"]["StartingHashKey"])
        hi = int(shard["HashKeyRange"]["EndingHashKey"])
        if rec["Data"].startswith(MAGIC):
            assert len(users) > 1
            assert [u["kinesis"]["subSequenceNumber"] for u in users] == list(range(len(users)))
            assert all(u["kinesis"]["aggregated"] for u in users)
            assert all(u["kinesis"]["sequenceNumber"] == rec["SequenceNumber"] for u in users)
        for u in users:
            k = u["kinesis"]
            data = base64.b64decode(k["data"]) if rec["Data"].startswith(MAGIC) else k["data"]
            pk = k["partitionKey"]
            # Never an aggregate mixing shards: every user record belongs here.
            assert lo <= hash_key(pk) <= hi, (pk, shard["ShardId"])
            seen.append((pk, data.decode("utf-8")))
    assert sorted(seen) == sorted(zip(keys, lines))


def test_single_record_aggregates_go_plain_and_still_deaggregate(eddy, kinesis):
    # One record per partition key and a tiny buffering time: lone records
    # are sent unaggregated, as the KPL does; the deaggregator passes them.
    kinesis.create_stream(StreamName="one", ShardCount=1)
    res = eddy_put(eddy, ["--stream", "one", "--aggregate", "--partition-key", "k"], ["only"])
    assert res.returncode == 0, res.stderr.decode()
    raw = read_stream(kinesis, "one")
    assert len(raw) == 1
    assert raw[0][1]["Data"] == b"only"
    users = list(iter_deaggregate_records(raw[0][1], data_format="Boto3"))
    assert len(users) == 1 and users[0]["kinesis"]["data"] == b"only"
