//! ValidationException messages, table-driven, for many operations.

use bytes::Bytes;
use eddy_wire::{AwsError, Protocol, Value, kinesis};

fn validate_json(op: &str, body: &str) -> Result<Value, AwsError> {
    let svc = kinesis();
    let op = svc.operation(op).expect("operation exists");
    let v = svc.decode(op, Protocol::Json, body.as_bytes())?;
    svc.validate(op, &v)?;
    Ok(v)
}

fn message(op: &str, body: &str) -> String {
    let err = validate_json(op, body).expect_err("request should be invalid");
    assert_eq!(err.code, "ValidationException", "{err}");
    assert_eq!(err.status, 400);
    err.message.expect("validation errors carry a message")
}

const NAME_PATTERN: &str = "[a-zA-Z0-9_.-]+";

#[test]
fn validation_messages_match_aws_text() {
    let long_name = "a".repeat(129);
    let long_key = "k".repeat(257);
    let table: Vec<(&str, String, String)> = vec![
        (
            "CreateStream",
            r#"{"StreamName":"a b","ShardCount":1}"#.into(),
            format!(
                "1 validation error detected: Value 'a b' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression pattern: {NAME_PATTERN}"
            ),
        ),
        (
            "CreateStream",
            r#"{"StreamName":"","ShardCount":1}"#.into(),
            format!(
                "2 validation errors detected: Value '' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression pattern: {NAME_PATTERN}; Value '' at 'streamName' failed to satisfy constraint: Member must have length greater than or equal to 1"
            ),
        ),
        (
            "CreateStream",
            format!(r#"{{"StreamName":"{long_name}","ShardCount":1}}"#),
            format!(
                "1 validation error detected: Value '{long_name}' at 'streamName' failed to satisfy constraint: Member must have length less than or equal to 128"
            ),
        ),
        (
            "CreateStream",
            r#"{"StreamName":"s","ShardCount":0}"#.into(),
            "1 validation error detected: Value '0' at 'shardCount' failed to satisfy constraint: Member must have value greater than or equal to 1".into(),
        ),
        (
            "CreateStream",
            r#"{"ShardCount":1}"#.into(),
            "1 validation error detected: Value null at 'streamName' failed to satisfy constraint: Member must not be null".into(),
        ),
        (
            "CreateStream",
            r#"{"StreamName":"s","StreamModeDetails":{"StreamMode":"FAST"},"MaxRecordSizeInKiB":1023}"#.into(),
            "2 validation errors detected: Value 'FAST' at 'streamModeDetails.streamMode' failed to satisfy constraint: Member must satisfy enum value set: [PROVISIONED, ON_DEMAND]; Value '1023' at 'maxRecordSizeInKiB' failed to satisfy constraint: Member must have value greater than or equal to 1024".into(),
        ),
        (
            "CreateStream",
            r#"{"StreamName":"s","StreamModeDetails":{}}"#.into(),
            "1 validation error detected: Value null at 'streamModeDetails.streamMode' failed to satisfy constraint: Member must not be null".into(),
        ),
        (
            "PutRecord",
            format!(r#"{{"StreamName":"s","PartitionKey":"{long_key}"}}"#),
            format!(
                "2 validation errors detected: Value null at 'data' failed to satisfy constraint: Member must not be null; Value '{long_key}' at 'partitionKey' failed to satisfy constraint: Member must have length less than or equal to 256"
            ),
        ),
        (
            "PutRecord",
            r#"{"StreamName":"s","Data":"AA==","PartitionKey":"","ExplicitHashKey":"01"}"#.into(),
            "2 validation errors detected: Value '' at 'partitionKey' failed to satisfy constraint: Member must have length greater than or equal to 1; Value '01' at 'explicitHashKey' failed to satisfy constraint: Member must satisfy regular expression pattern: ^(0|([1-9]\\d{0,38}))$".into(),
        ),
        (
            "PutRecord",
            r#"{"StreamARN":"arn:aws:kinesis:us-east-1:123:stream/x","Data":"AA=="}"#.into(),
            "1 validation error detected: Value 'arn:aws:kinesis:us-east-1:123:stream/x' at 'streamARN' failed to satisfy constraint: Member must satisfy regular expression pattern: arn:aws.*:kinesis:.*:\\d{12}:stream/\\S+".into(),
        ),
        (
            "PutRecords",
            r#"{"StreamName":"s","Records":[]}"#.into(),
            "1 validation error detected: Value '[]' at 'records' failed to satisfy constraint: Member must have length greater than or equal to 1".into(),
        ),
        (
            "PutRecords",
            r#"{"StreamName":"s"}"#.into(),
            "1 validation error detected: Value null at 'records' failed to satisfy constraint: Member must not be null".into(),
        ),
        (
            "PutRecords",
            r#"{"StreamName":"s","Records":[{"Data":"","PartitionKey":""},{"PartitionKey":"k"},{"Data":"AA==","PartitionKey":"k","ExplicitHashKey":"x"}]}"#.into(),
            "3 validation errors detected: Value '' at 'records.1.member.partitionKey' failed to satisfy constraint: Member must have length greater than or equal to 1; Value null at 'records.2.member.data' failed to satisfy constraint: Member must not be null; Value 'x' at 'records.3.member.explicitHashKey' failed to satisfy constraint: Member must satisfy regular expression pattern: ^(0|([1-9]\\d{0,38}))$".into(),
        ),
        (
            "GetShardIterator",
            r#"{"StreamName":"s","ShardId":"shardId-000000000000","ShardIteratorType":"FOO"}"#.into(),
            "1 validation error detected: Value 'FOO' at 'shardIteratorType' failed to satisfy constraint: Member must satisfy enum value set: [AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER, TRIM_HORIZON, LATEST, AT_TIMESTAMP]".into(),
        ),
        (
            "GetShardIterator",
            r#"{"StreamName":"s"}"#.into(),
            "2 validation errors detected: Value null at 'shardId' failed to satisfy constraint: Member must not be null; Value null at 'shardIteratorType' failed to satisfy constraint: Member must not be null".into(),
        ),
        (
            "GetRecords",
            r#"{"ShardIterator":"x","Limit":0}"#.into(),
            "1 validation error detected: Value '0' at 'limit' failed to satisfy constraint: Member must have value greater than or equal to 1".into(),
        ),
        (
            "GetRecords",
            r#"{"ShardIterator":"x","Limit":10001}"#.into(),
            "1 validation error detected: Value '10001' at 'limit' failed to satisfy constraint: Member must have value less than or equal to 10000".into(),
        ),
        (
            "GetRecords",
            format!(r#"{{"ShardIterator":"{}"}}"#, "i".repeat(513)),
            format!(
                "1 validation error detected: Value '{}' at 'shardIterator' failed to satisfy constraint: Member must have length less than or equal to 512",
                "i".repeat(513)
            ),
        ),
        (
            "ListShards",
            r#"{"StreamName":"s","MaxResults":0}"#.into(),
            "1 validation error detected: Value '0' at 'maxResults' failed to satisfy constraint: Member must have value greater than or equal to 1".into(),
        ),
        (
            "ListShards",
            r#"{"StreamName":"s","MaxResults":10001,"ShardFilter":{"Type":"NOPE"}}"#.into(),
            "2 validation errors detected: Value '10001' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to 10000; Value 'NOPE' at 'shardFilter.type' failed to satisfy constraint: Member must satisfy enum value set: [AFTER_SHARD_ID, AT_TRIM_HORIZON, FROM_TRIM_HORIZON, AT_LATEST, AT_TIMESTAMP, FROM_TIMESTAMP]".into(),
        ),
        (
            "AddTagsToStream",
            r#"{"StreamName":"s","Tags":{}}"#.into(),
            "1 validation error detected: Value '{}' at 'tags' failed to satisfy constraint: Member must have length greater than or equal to 1".into(),
        ),
        (
            "AddTagsToStream",
            r#"{"StreamName":"s"}"#.into(),
            "1 validation error detected: Value null at 'tags' failed to satisfy constraint: Member must not be null".into(),
        ),
        (
            "AddTagsToStream",
            r#"{"StreamName":"s","Tags":{"":"v"}}"#.into(),
            "1 validation error detected: Value '{=v}' at 'tags' failed to satisfy constraint: Map keys must satisfy constraint: [Member must have length less than or equal to 128, Member must have length greater than or equal to 1]".into(),
        ),
        (
            "CreateStream",
            format!(r#"{{"StreamName":"s","Tags":{{"a":"{}"}}}}"#, "v".repeat(257)),
            format!(
                "1 validation error detected: Value '{{a={}}}' at 'tags' failed to satisfy constraint: Map value must satisfy constraint: [Member must have length less than or equal to 256, Member must have length greater than or equal to 0]",
                "v".repeat(257)
            ),
        ),
        (
            "RemoveTagsFromStream",
            r#"{"StreamName":"s","TagKeys":["a",""]}"#.into(),
            "1 validation error detected: Value '[a, ]' at 'tagKeys' failed to satisfy constraint: Member must satisfy constraint: [Member must have length less than or equal to 128, Member must have length greater than or equal to 1]".into(),
        ),
        (
            "EnableEnhancedMonitoring",
            r#"{"StreamName":"s","ShardLevelMetrics":["IncomingBytes","Bogus"]}"#.into(),
            "1 validation error detected: Value '[IncomingBytes, Bogus]' at 'shardLevelMetrics' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: [IncomingBytes, IncomingRecords, OutgoingBytes, OutgoingRecords, WriteProvisionedThroughputExceeded, ReadProvisionedThroughputExceeded, IteratorAgeMilliseconds, ALL]]".into(),
        ),
        (
            "IncreaseStreamRetentionPeriod",
            r#"{"StreamName":"s"}"#.into(),
            "1 validation error detected: Value null at 'retentionPeriodHours' failed to satisfy constraint: Member must not be null".into(),
        ),
        (
            "DeleteStream",
            r#"{"StreamName":"s","StreamId":"short"}"#.into(),
            "1 validation error detected: Value 'short' at 'streamId' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-z0-9]{20}-[a-z0-9]{3}".into(),
        ),
    ];
    let mut failures = Vec::new();
    for (op, body, want) in &table {
        let got = message(op, body);
        if got != *want {
            failures.push(format!("{op} {body}\n  want: {want}\n  got:  {got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn valid_requests_pass_validation() {
    let ok = [
        (
            "CreateStream",
            r#"{"StreamName":"my-stream_1.x","ShardCount":4}"#,
        ),
        ("CreateStream", r#"{"StreamName":"s","Tags":{"a":""}}"#),
        ("DescribeLimits", "{}"),
        ("ListStreams", "{}"),
        ("ListShards", r#"{"NextToken":"t"}"#),
        (
            "PutRecord",
            r#"{"StreamName":"s","Data":"","PartitionKey":"k","ExplicitHashKey":"340282366920938463463374607431768211455"}"#,
        ),
        (
            "GetShardIterator",
            r#"{"StreamARN":"arn:aws:kinesis:us-east-1:123456789012:stream/s","ShardId":"shardId-000000000001","ShardIteratorType":"AT_TIMESTAMP","Timestamp":1506440188.749}"#,
        ),
        ("GetRecords", r#"{"ShardIterator":"x","Limit":10000}"#),
        (
            "EnableEnhancedMonitoring",
            r#"{"StreamName":"s","ShardLevelMetrics":["ALL"]}"#,
        ),
    ];
    for (op, body) in ok {
        if let Err(e) = validate_json(op, body) {
            panic!("{op} {body}: {e}");
        }
    }
}

#[test]
fn string_length_counts_characters_not_bytes() {
    // 256 two-byte characters: 512 bytes, but within the 256 limit.
    let key = "é".repeat(256);
    validate_json(
        "PutRecord",
        &format!(r#"{{"StreamName":"s","Data":"","PartitionKey":"{key}"}}"#),
    )
    .expect("256 characters are allowed");
    let key = "é".repeat(257);
    let msg = message(
        "PutRecord",
        &format!(r#"{{"StreamName":"s","Data":"","PartitionKey":"{key}"}}"#),
    );
    assert!(
        msg.ends_with("Member must have length less than or equal to 256"),
        "{msg}"
    );
}

#[test]
fn pattern_digit_class_is_ascii_only() {
    // Java's \d matches ASCII digits only; Arabic-Indic digits are not.
    let msg = message(
        "PutRecord",
        r#"{"StreamName":"s","Data":"","PartitionKey":"k","ExplicitHashKey":"١٢"}"#,
    );
    assert!(msg.contains("at 'explicitHashKey'"), "{msg}");
}

#[test]
fn put_records_with_501_records_reports_list_length() {
    let entry = r#"{"Data":"AA==","PartitionKey":"k"}"#;
    let body = format!(
        r#"{{"StreamName":"s","Records":[{}]}}"#,
        vec![entry; 501].join(",")
    );
    let msg = message("PutRecords", &body);
    let prefix = "1 validation error detected: Value '[com.amazonaws.kinesis.v20131202.PutRecordsRequestEntry@";
    let suffix = "]' at 'records' failed to satisfy constraint: Member must have length less than or equal to 500";
    assert!(msg.starts_with(prefix), "{msg:.200}");
    assert!(msg.ends_with(suffix), "{}", &msg[msg.len() - 200..]);
    assert_eq!(
        msg.matches("PutRecordsRequestEntry@").count(),
        501,
        "each entry is printed"
    );
    // 500 is fine.
    let body = format!(
        r#"{{"StreamName":"s","Records":[{}]}}"#,
        vec![entry; 500].join(",")
    );
    validate_json("PutRecords", &body).expect("500 records are allowed");
}

#[test]
fn multiple_errors_are_joined_and_capped_at_ten() {
    // 12 records without Data and an invalid stream name: 13 violations.
    let body = format!(
        r#"{{"Records":[{}],"StreamName":"bad name"}}"#,
        [r#"{"PartitionKey":"k"}"#; 12].join(",")
    );
    let msg = message("PutRecords", &body);
    let prefix = "10 validation errors detected: ";
    assert!(msg.starts_with(prefix), "{msg}");
    let items: Vec<&str> = msg[prefix.len()..].split("; ").collect();
    assert_eq!(items.len(), 10, "{msg}");
    for (i, item) in items.iter().enumerate() {
        assert_eq!(
            *item,
            format!(
                "Value null at 'records.{}.member.data' failed to satisfy constraint: Member must not be null",
                i + 1
            )
        );
    }
    assert!(!msg.contains("streamName"), "the 11th+ are not listed");
}

#[test]
fn blob_values_print_as_heap_byte_buffers() {
    let svc = kinesis();
    let op = svc.operation("PutRecord").unwrap();
    let big = Bytes::from(vec![0u8; 10 * 1024 * 1024 + 1]);
    let input = Value::map()
        .with("StreamName", "s")
        .with("PartitionKey", "k")
        .with("Data", big);
    let err = svc.validate(op, &input).unwrap_err();
    assert_eq!(
        err.message.as_deref(),
        Some(
            "1 validation error detected: Value 'java.nio.HeapByteBuffer[pos=0 lim=10485761 cap=10485761]' at 'data' failed to satisfy constraint: Member must have length less than or equal to 10485760"
        )
    );
    assert_eq!(
        String::from_utf8(err.encode(Protocol::Json)).unwrap(),
        format!(
            r#"{{"__type":"ValidationException","message":"{}"}}"#,
            err.message.as_deref().unwrap()
        )
    );
}

#[test]
fn every_model_pattern_compiles() {
    let svc = kinesis();
    let raw: serde_json::Value =
        serde_json::from_str(include_str!("../models/kinesis-2013-12-02.json")).unwrap();
    let mut n = 0;
    for (name, shape) in raw["shapes"].as_object().unwrap() {
        if let Some(p) = shape.get("pattern").and_then(|p| p.as_str()) {
            let parsed = svc.shape_named(name).unwrap();
            assert_eq!(
                parsed.pattern.as_ref().map(|p| p.source.as_str()),
                Some(p),
                "{name}"
            );
            assert!(parsed.pattern.as_ref().unwrap().compiles(), "{name}: {p}");
            n += 1;
        }
    }
    assert!(n > 10, "the model has patterns ({n})");
}
