"""Enhanced fan-out through boto3: SubscribeToShard over HTTP/1.1 chunked
event streams, across a reshard."""

import pytest
from botocore.exceptions import ClientError


def events(sub):
    for ev in sub["EventStream"]:
        yield ev["SubscribeToShardEvent"]


def test_boto3_subscribes_and_follows_child_shards(kinesis):
    kinesis.create_stream(StreamName="fan", ShardCount=1)
    arn = kinesis.describe_stream_summary(StreamName="fan")["StreamDescriptionSummary"]["StreamARN"]
    consumer = kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="py")["Consumer"]
    for i in range(10):
        kinesis.put_record(StreamName="fan", Data=b"before-%d" % i, PartitionKey=str(i))

    sub = kinesis.subscribe_to_shard(
        ConsumerARN=consumer["ConsumerARN"],
        ShardId="shardId-000000000000",
        StartingPosition={"Type": "TRIM_HORIZON"},
    )
    got = []
    stream = events(sub)
    while len(got) < 10:
        ev = next(stream)
        got += [r["Data"] for r in ev["Records"]]
        assert ev["ContinuationSequenceNumber"]
    assert got == [b"before-%d" % i for i in range(10)]

    kinesis.split_shard(
        StreamName="fan",
        ShardToSplit="shardId-000000000000",
        NewStartingHashKey="170141183460469231731687303715884105728",
    )
    last = None
    for ev in stream:
        assert not ev["Records"], "nothing lands in a closed parent"
        last = ev
        if ev.get("ChildShards"):
            break
    assert last is not None and last.get("ContinuationSequenceNumber") is None
    assert sorted(c["ShardId"] for c in last["ChildShards"]) == ["shardId-000000000001", "shardId-000000000002"]

    kinesis.put_record(StreamName="fan", Data=b"after", PartitionKey="x")
    seen = []
    for child in ("shardId-000000000001", "shardId-000000000002"):
        sub = kinesis.subscribe_to_shard(
            ConsumerARN=consumer["ConsumerARN"], ShardId=child, StartingPosition={"Type": "TRIM_HORIZON"}
        )
        first = next(events(sub))
        seen += [r["Data"] for r in first["Records"]]
    assert seen == [b"after"]


def test_boto3_unknown_consumer_is_not_found(kinesis):
    kinesis.create_stream(StreamName="fan2", ShardCount=1)
    with pytest.raises(ClientError) as e:
        kinesis.subscribe_to_shard(
            ConsumerARN="arn:aws:kinesis:us-east-1:000000000000:stream/fan2/consumer/ghost:1700000000",
            ShardId="shardId-000000000000",
            StartingPosition={"Type": "LATEST"},
        )
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
