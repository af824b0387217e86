"""The lease-table API through boto3: the KCL's legacy conditional writes,
expressions, paging, a GSI, and durability across kill -9."""

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError


@pytest.fixture
def ddb(eddy):
    return boto3.client(
        "dynamodb",
        endpoint_url=eddy.endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=Config(retries={"max_attempts": 1}),
    )


def create_leases(ddb, name="leases"):
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 5})


def test_lease_conditional_writes_with_boto3(ddb):
    create_leases(ddb)
    with pytest.raises(ClientError) as e:
        create_leases(ddb)
    assert e.value.response["Error"] == {"Code": "ResourceInUseException", "Message": "Table already exists: leases"}

    item = {"leaseKey": {"S": "shardId-000000000000"}, "leaseOwner": {"S": "a"}, "leaseCounter": {"N": "1"}}
    ddb.put_item(TableName="leases", Item=item, Expected={"leaseKey": {"Exists": False}})
    with pytest.raises(ClientError) as e:
        ddb.put_item(TableName="leases", Item=item, Expected={"leaseKey": {"Exists": False}})
    assert e.value.response["Error"]["Code"] == "ConditionalCheckFailedException"

    out = ddb.update_item(
        TableName="leases",
        Key={"leaseKey": {"S": "shardId-000000000000"}},
        Expected={"leaseCounter": {"Value": {"N": "1"}}},
        AttributeUpdates={
            "leaseCounter": {"Action": "PUT", "Value": {"N": "2"}},
            "ownerSwitchesSinceCheckpoint": {"Action": "ADD", "Value": {"N": "1"}},
        },
        ReturnValues="ALL_NEW",
    )
    assert out["Attributes"]["leaseCounter"] == {"N": "2"}
    assert out["Attributes"]["ownerSwitchesSinceCheckpoint"] == {"N": "1"}

    with pytest.raises(ClientError) as e:
        ddb.update_item(
            TableName="leases",
            Key={"leaseKey": {"S": "shardId-000000000000"}},
            ConditionExpression="leaseCounter = :n",
            UpdateExpression="SET leaseOwner = :b",
            ExpressionAttributeValues={":n": {"N": "1"}, ":b": {"S": "b"}},
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    assert e.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert e.value.response["Item"]["leaseCounter"] == {"N": "2"}

    with pytest.raises(ClientError) as e:
        ddb.get_item(TableName="missing", Key={"leaseKey": {"S": "x"}})
    assert e.value.response["Error"] == {"Code": "ResourceNotFoundException", "Message": "Requested resource not found"}


def test_paging_and_gsi_with_boto3(ddb):
    create_leases(ddb)
    for i in range(10):
        ddb.put_item(
            TableName="leases",
            Item={"leaseKey": {"S": f"shardId-{i:012d}"}, "leaseOwner": {"S": f"w{i % 2}"}, "leaseCounter": {"N": "0"}},
        )
    pages = ddb.get_paginator("scan").paginate(TableName="leases", PaginationConfig={"PageSize": 3})
    keys = [it["leaseKey"]["S"] for page in pages for it in page["Items"]]
    assert sorted(keys) == [f"shardId-{i:012d}" for i in range(10)]

    ddb.update_table(
        TableName="leases",
        AttributeDefinitions=[
            {"AttributeName": "leaseOwner", "AttributeType": "S"},
            {"AttributeName": "leaseKey", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexUpdates=[
            {
                "Create": {
                    "IndexName": "LeaseOwnerToLeaseKeyIndex",
                    "KeySchema": [
                        {"AttributeName": "leaseOwner", "KeyType": "HASH"},
                        {"AttributeName": "leaseKey", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                }
            }
        ],
    )
    pages = ddb.get_paginator("query").paginate(
        TableName="leases",
        IndexName="LeaseOwnerToLeaseKeyIndex",
        KeyConditionExpression="leaseOwner = :o",
        ExpressionAttributeValues={":o": {"S": "w1"}},
        PaginationConfig={"PageSize": 2},
    )
    keys = [it["leaseKey"]["S"] for page in pages for it in page["Items"]]
    assert keys == [f"shardId-{i:012d}" for i in range(1, 10, 2)]


def test_acknowledged_items_survive_kill_9(eddy, ddb):
    create_leases(ddb)
    for i in range(20):
        ddb.put_item(TableName="leases", Item={"leaseKey": {"S": f"k{i}"}, "leaseCounter": {"N": str(i)}})
    eddy.kill9()
    eddy.start()
    items = ddb.scan(TableName="leases")["Items"]
    assert sorted((it["leaseKey"]["S"], it["leaseCounter"]["N"]) for it in items) == sorted(
        (f"k{i}", str(i)) for i in range(20)
    )
