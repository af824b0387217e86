"""The same flows as the Rust SDK tests, through boto3 and the AWS CLI."""

import json
import os
import subprocess
import time

import pytest
from botocore.exceptions import ClientError


def error(excinfo):
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["Error"]["Message"]


def test_stream_lifecycle_with_boto3(kinesis):
    kinesis.create_stream(StreamName="b", ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName="b", WaiterConfig={"Delay": 1, "MaxAttempts": 5})
    desc = kinesis.describe_stream(StreamName="b")["StreamDescription"]
    assert desc["StreamStatus"] == "ACTIVE"
    assert [s["ShardId"] for s in desc["Shards"]] == ["shardId-000000000000", "shardId-000000000001"]
    assert kinesis.list_streams()["StreamNames"] == ["b"]
    with pytest.raises(ClientError) as e:
        kinesis.create_stream(StreamName="b", ShardCount=1)
    assert error(e) == ("ResourceInUseException", "Stream b under account 000000000000 already exists.")
    kinesis.delete_stream(StreamName="b")
    with pytest.raises(ClientError) as e:
        kinesis.describe_stream(StreamName="b")
    assert error(e)[0] == "ResourceNotFoundException"


def test_put_records_and_read_them_back_with_boto3(kinesis):
    kinesis.create_stream(StreamName="s", ShardCount=1)
    out = kinesis.put_records(
        StreamName="s",
        Records=[{"Data": f"rec-{i}".encode(), "PartitionKey": f"k{i}"} for i in range(50)],
    )
    assert out["FailedRecordCount"] == 0
    assert len(out["Records"]) == 50
    it = kinesis.get_shard_iterator(StreamName="s", ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON")
    got = kinesis.get_records(ShardIterator=it["ShardIterator"], Limit=20)
    assert [r["Data"] for r in got["Records"]] == [f"rec-{i}".encode() for i in range(20)]
    assert got["Records"][0]["SequenceNumber"] == out["Records"][0]["SequenceNumber"]
    assert got["Records"][0]["ApproximateArrivalTimestamp"].year >= 2024
    rest = kinesis.get_records(ShardIterator=got["NextShardIterator"])
    assert len(rest["Records"]) == 30
    assert rest["MillisBehindLatest"] == 0


def test_validation_errors_with_boto3(kinesis):
    with pytest.raises(ClientError) as e:
        kinesis.create_stream(StreamName="x" * 129, ShardCount=1)
    code, msg = error(e)
    assert code == "ValidationException"
    assert msg.startswith("1 validation error detected: Value '" + "x" * 129 + "' at 'streamName' failed to satisfy constraint: Member must have length less than or equal to 128")
    with pytest.raises(ClientError) as e:
        kinesis.get_records(ShardIterator="AAAAAAAAAAAAAAAA")
    assert error(e) == ("InvalidArgumentException", "Invalid ShardIterator.")


def test_records_survive_kill_9_with_boto3(eddy, kinesis):
    kinesis.create_stream(StreamName="d", ShardCount=1)
    seqs = [kinesis.put_record(StreamName="d", Data=b"x%d" % i, PartitionKey="p")["SequenceNumber"] for i in range(20)]
    eddy.kill9()
    eddy.start()
    it = kinesis.get_shard_iterator(StreamName="d", ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON")
    got = kinesis.get_records(ShardIterator=it["ShardIterator"])
    assert [r["SequenceNumber"] for r in got["Records"]] == seqs


def aws(eddy, *args):
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_PAGER": "",
    }
    p = subprocess.run(
        ["aws", "kinesis", *args, "--endpoint-url", eddy.endpoint, "--output", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return p


def test_aws_cli_round_trip(eddy):
    assert aws(eddy, "create-stream", "--stream-name", "cli", "--shard-count", "1").returncode == 0
    w = aws(eddy, "wait", "stream-exists", "--stream-name", "cli")
    assert w.returncode == 0, w.stderr
    # AWS CLI v1 (the PyPI package) sends --data as raw text and prints blobs as base64.
    p = aws(eddy, "put-record", "--stream-name", "cli", "--partition-key", "k", "--data", "hello")
    assert p.returncode == 0, p.stderr
    seq = json.loads(p.stdout)["SequenceNumber"]
    it = json.loads(aws(eddy, "get-shard-iterator", "--stream-name", "cli", "--shard-id", "shardId-000000000000", "--shard-iterator-type", "TRIM_HORIZON").stdout)
    recs = json.loads(aws(eddy, "get-records", "--shard-iterator", it["ShardIterator"]).stdout)
    assert recs["Records"][0]["SequenceNumber"] == seq
    assert recs["Records"][0]["Data"] == "aGVsbG8="
    bad = aws(eddy, "describe-stream", "--stream-name", "missing")
    assert bad.returncode != 0
    assert "ResourceNotFoundException" in bad.stderr
    assert "Stream missing under account 000000000000 not found." in bad.stderr
