//! JSON decoding (SerializationException texts, timestamps, blobs) and
//! encoding.

use bytes::Bytes;
use eddy_wire::{AwsError, Protocol, Value, kinesis};

fn decode(op: &str, body: &str) -> Result<Value, AwsError> {
    let svc = kinesis();
    svc.decode(svc.operation(op).unwrap(), Protocol::Json, body.as_bytes())
}

const BIG: &str = "class com.amazon.coral.value.json.numbers.TruncatingBigNumber";

#[test]
fn wrong_types_give_serialization_exception_texts() {
    let table: Vec<(&str, &str, String)> = vec![
        // string where an integer is expected
        (
            "CreateStream",
            r#"{"StreamName":"s","ShardCount":"1"}"#,
            "class java.lang.String can not be converted to an Integer".into(),
        ),
        (
            "GetRecords",
            r#"{"ShardIterator":"x","Limit":true}"#,
            "class java.lang.Boolean can not be converted to an Integer".into(),
        ),
        (
            "CreateStream",
            r#"{"StreamName":"s","ShardCount":[]}"#,
            "Start of list found where not expected".into(),
        ),
        (
            "CreateStream",
            r#"{"StreamName":"s","ShardCount":{}}"#,
            "Start of structure or map found where not expected.".into(),
        ),
        // number where a string is expected
        (
            "CreateStream",
            r#"{"StreamName":1}"#,
            format!("{BIG} can not be converted to an String"),
        ),
        (
            "CreateStream",
            r#"{"StreamName":34.56}"#,
            format!("{BIG} can not be converted to an String"),
        ),
        (
            "CreateStream",
            r#"{"StreamName":true}"#,
            "class java.lang.Boolean can not be converted to an String".into(),
        ),
        // object where a list is expected
        (
            "PutRecords",
            r#"{"StreamName":"s","Records":{}}"#,
            "Start of structure or map found where not expected.".into(),
        ),
        (
            "PutRecords",
            r#"{"StreamName":"s","Records":"x"}"#,
            "Expected list or null".into(),
        ),
        (
            "PutRecords",
            r#"{"StreamName":"s","Records":[23]}"#,
            "Expected null".into(),
        ),
        (
            "PutRecords",
            r#"{"StreamName":"s","Records":[[]]}"#,
            "Start of list found where not expected".into(),
        ),
        (
            "PutRecords",
            r#"{"StreamName":"s","Records":[{"Data":"AA==","PartitionKey":5}]}"#,
            format!("{BIG} can not be converted to an String"),
        ),
        // maps
        (
            "AddTagsToStream",
            r#"{"StreamName":"s","Tags":[]}"#,
            "Start of list found where not expected".into(),
        ),
        (
            "AddTagsToStream",
            r#"{"StreamName":"s","Tags":"x"}"#,
            "Expected map or null".into(),
        ),
        (
            "AddTagsToStream",
            r#"{"StreamName":"s","Tags":{"a":1}}"#,
            format!("{BIG} can not be converted to an String"),
        ),
        // blobs
        (
            "PutRecord",
            r#"{"StreamName":"s","Data":"23456"}"#,
            "'23456' can not be converted to a Blob: Base64 encoded length is expected a multiple of 4 bytes but found: 5".into(),
        ),
        (
            "PutRecord",
            r#"{"StreamName":"s","Data":"=+/="}"#,
            "'=+/=' can not be converted to a Blob: Invalid Base64 character: '='".into(),
        ),
        (
            "PutRecord",
            r#"{"StreamName":"s","Data":"ab$d"}"#,
            "'ab$d' can not be converted to a Blob: Invalid Base64 character: '$'".into(),
        ),
        (
            "PutRecord",
            r#"{"StreamName":"s","Data":"+/+="}"#,
            "'+/+=' can not be converted to a Blob: Invalid last non-pad Base64 character dectected".into(),
        ),
        (
            "PutRecord",
            r#"{"StreamName":"s","Data":true}"#,
            "class java.lang.Boolean can not be converted to a Blob".into(),
        ),
        (
            "PutRecord",
            r#"{"StreamName":"s","Data":23}"#,
            format!("{BIG} can not be converted to a Blob"),
        ),
        // booleans
        (
            "DeleteStream",
            r#"{"StreamName":"s","EnforceConsumerDeletion":"23"}"#,
            "'23' can not be converted to an Boolean".into(),
        ),
        (
            "DeleteStream",
            r#"{"StreamName":"s","EnforceConsumerDeletion":"hello"}"#,
            "'HELLO' can not be converted to an Boolean".into(),
        ),
        (
            "DeleteStream",
            r#"{"StreamName":"s","EnforceConsumerDeletion":23}"#,
            format!("{BIG} can not be converted to an Boolean"),
        ),
        // structures
        (
            "CreateStream",
            r#"{"StreamName":"s","StreamModeDetails":"x"}"#,
            "Expected null".into(),
        ),
        (
            "CreateStream",
            r#"{"StreamName":"s","StreamModeDetails":[]}"#,
            "Start of list found where not expected".into(),
        ),
    ];
    let mut failures = Vec::new();
    for (op, body, want) in &table {
        match decode(op, body) {
            Err(e) if e.code == "SerializationException" && e.message.as_deref() == Some(want) => {
                assert_eq!(e.status, 400)
            }
            other => failures.push(format!("{op} {body}\n  want: {want}\n  got:  {other:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn unparsable_bodies_give_serialization_exception_without_message() {
    for body in [
        "",
        "{",
        "[]",
        "null",
        "12",
        "\"s\"",
        "{}x",
        "{\"StreamName\":}",
    ] {
        let err = decode("CreateStream", body).expect_err(body);
        assert_eq!(err.code, "SerializationException", "{body}");
        assert_eq!(err.message, None, "{body}");
        assert_eq!(
            err.encode(Protocol::Json),
            br#"{"__type":"SerializationException"}"#
        );
    }
}

#[test]
fn serialization_exception_body_uses_capital_message_key() {
    let err = decode("CreateStream", r#"{"StreamName":1}"#).unwrap_err();
    let body: serde_json::Value = serde_json::from_slice(&err.encode(Protocol::Json)).unwrap();
    assert_eq!(body["__type"], "SerializationException");
    assert_eq!(
        body["Message"],
        format!("{BIG} can not be converted to an String")
    );
    assert!(body.get("message").is_none());
    let other = AwsError::new("ResourceNotFoundException", "gone");
    assert_eq!(
        other.encode(Protocol::Json),
        br#"{"__type":"ResourceNotFoundException","message":"gone"}"#
    );
}

#[test]
fn unknown_members_are_ignored_and_null_means_absent() {
    let v = decode(
        "CreateStream",
        r#"{"Foo":{"x":[1,{"y":null}]},"StreamName":"s","ShardCount":null,"Tags":{"k":"v"}}"#,
    )
    .unwrap();
    assert_eq!(
        v,
        Value::Map(vec![
            ("StreamName".into(), Value::String("s".into())),
            (
                "Tags".into(),
                Value::Map(vec![("k".into(), Value::String("v".into()))])
            ),
        ])
    );
}

#[test]
fn operations_without_input_members_accept_an_empty_object() {
    let v = decode("DescribeLimits", "{}").unwrap();
    assert_eq!(v, Value::map());
    let v = decode("DescribeLimits", r#"{"Anything":[1,2]}"#).unwrap();
    assert_eq!(v, Value::map());
}

#[test]
fn numbers_decode_to_integers_and_floats_are_floored() {
    let v = decode("GetRecords", r#"{"ShardIterator":"x","Limit":25}"#).unwrap();
    assert_eq!(v.i64("Limit"), Some(25));
    let v = decode("GetRecords", r#"{"ShardIterator":"x","Limit":2.7}"#).unwrap();
    assert_eq!(v.get("Limit"), Some(&Value::Int(2)));
    let v = decode(
        "DeleteStream",
        r#"{"StreamName":"s","EnforceConsumerDeletion":true}"#,
    )
    .unwrap();
    assert_eq!(v.bool("EnforceConsumerDeletion"), Some(true));
}

#[test]
fn json_timestamps_accept_integer_fraction_and_exponent_seconds() {
    let cases = [
        ("1506440188", 1_506_440_188_000),
        ("1506440188.749", 1_506_440_188_749),
        ("1.603149588042E9", 1_603_149_588_042),
        ("1.603149588042e9", 1_603_149_588_042),
        ("0", 0),
        ("0.001", 1),
    ];
    for (text, ms) in cases {
        let body = format!(
            r#"{{"StreamName":"s","ShardId":"shardId-000000000000","ShardIteratorType":"AT_TIMESTAMP","Timestamp":{text}}}"#
        );
        let v = decode("GetShardIterator", &body).unwrap();
        assert_eq!(v.timestamp("Timestamp"), Some(ms), "{text}");
    }
    let err = decode(
        "GetShardIterator",
        r#"{"ShardId":"a","ShardIteratorType":"LATEST","Timestamp":true}"#,
    )
    .unwrap_err();
    assert_eq!(err.code, "SerializationException");
}

#[test]
fn blobs_decode_from_padded_standard_base64() {
    let v = decode(
        "PutRecords",
        r#"{"StreamName":"s","Records":[{"Data":"aGVsbG8=","PartitionKey":"a"},{"Data":"","PartitionKey":"b"},{"Data":"+/8=","PartitionKey":"c"}]}"#,
    )
    .unwrap();
    let recs = v.list("Records").unwrap();
    assert_eq!(recs[0].blob("Data").unwrap().as_ref(), b"hello");
    assert_eq!(recs[1].blob("Data").unwrap().as_ref(), b"");
    assert_eq!(recs[2].blob("Data").unwrap().as_ref(), &[0xfb, 0xff]);
    assert_eq!(recs[2].str("PartitionKey"), Some("c"));
}

#[test]
fn escaped_member_names_and_strings_decode() {
    let v = decode("CreateStream", r#"{"Stream\u004eame":"a\u00e9\n"}"#).unwrap();
    assert_eq!(v.str("StreamName"), Some("aé\n"));
}

#[test]
fn outputs_encode_blobs_as_base64_and_timestamps_as_seconds() {
    let svc = kinesis();
    let op = svc.operation("GetRecords").unwrap();
    let out = Value::map()
        .with(
            "Records",
            vec![
                Value::map()
                    .with(
                        "SequenceNumber",
                        "49590338271490256608559692538361571095921575989136588898",
                    )
                    .with(
                        "ApproximateArrivalTimestamp",
                        Value::Timestamp(1_506_440_188_749),
                    )
                    .with("Data", Bytes::from_static(b"hello"))
                    .with("PartitionKey", "pk"),
                Value::map()
                    .with("SequenceNumber", "2")
                    .with(
                        "ApproximateArrivalTimestamp",
                        Value::Timestamp(1_506_440_188_000),
                    )
                    .with("Data", Bytes::new()),
            ],
        )
        .with("NextShardIterator", Value::Null)
        .with("MillisBehindLatest", 0i64);
    let body = svc.encode(op, Protocol::Json, &out);
    let text = String::from_utf8(body.clone()).unwrap();
    assert!(
        text.contains(r#""ApproximateArrivalTimestamp":1506440188.749"#),
        "{text}"
    );
    assert!(
        text.contains(r#""ApproximateArrivalTimestamp":1506440188.0"#),
        "{text}"
    );
    assert!(text.contains(r#""Data":"aGVsbG8=""#), "{text}");
    assert!(!text.contains("NextShardIterator"), "{text}");
    let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(parsed["MillisBehindLatest"], 0);
    assert_eq!(parsed["Records"][1]["Data"], "");
}

#[test]
fn output_less_operations_encode_an_empty_body() {
    let svc = kinesis();
    let op = svc.operation("CreateStream").unwrap();
    assert!(op.output.is_none());
    assert!(svc.encode(op, Protocol::Json, &Value::map()).is_empty());
    assert!(svc.encode(op, Protocol::Cbor, &Value::map()).is_empty());
    let op = svc.operation("DescribeLimits").unwrap();
    assert_eq!(svc.encode(op, Protocol::Json, &Value::map()), b"{}");
}

#[test]
fn negative_and_sub_second_timestamps_encode_exactly() {
    let svc = kinesis();
    let shape = svc.shape_id("Record").unwrap();
    for ms in [-1i64, -1500, 1, 10, 100, 999, 1_000, 4_102_444_800_123] {
        let v = Value::map()
            .with("SequenceNumber", "1")
            .with("ApproximateArrivalTimestamp", Value::Timestamp(ms))
            .with("Data", Bytes::new());
        let body = svc.encode_shape(shape, Protocol::Json, &v);
        let back = svc.decode_shape(shape, Protocol::Json, &body).unwrap();
        assert_eq!(
            back.timestamp("ApproximateArrivalTimestamp"),
            Some(ms),
            "{}",
            String::from_utf8_lossy(&body)
        );
    }
}

#[test]
fn escaped_slashes_in_base64_blobs_decode() {
    let v = decode(
        "PutRecord",
        r#"{"StreamName":"s","Data":"+\/8=","PartitionKey":"k"}"#,
    )
    .unwrap();
    assert_eq!(v.blob("Data").unwrap().as_ref(), &[0xfb, 0xff]);
}

proptest::proptest! {
    #[test]
    fn json_decoding_arbitrary_input_never_panics(body in "[\\[\\]{}\":,0-9a-zA-Z.eE+/= -]{0,64}") {
        let _ = decode("PutRecords", &body);
        let _ = decode("CreateStream", &format!("{{\"StreamName\":{body}}}"));
        let _ = decode("PutRecords", &format!("{{\"Records\":[{{\"Data\":{body}}}]}}"));
    }
}

#[test]
fn null_map_values_are_absent() {
    let v = decode(
        "AddTagsToStream",
        r#"{"StreamName":"s","Tags":{"a":null,"b":"x"}}"#,
    )
    .unwrap();
    assert_eq!(
        v.get("Tags"),
        Some(&Value::Map(vec![("b".into(), Value::String("x".into()))]))
    );
}

#[test]
fn timestamps_keep_only_significant_millisecond_digits() {
    let svc = kinesis();
    let op = svc.operation("GetRecords").unwrap();
    for (ms, text) in [
        (1_506_440_188_500, "1506440188.5"),
        (1_506_440_188_050, "1506440188.05"),
        (1_506_440_188_005, "1506440188.005"),
        (1_506_440_188_000, "1506440188.0"),
        (0, "0.0"),
        (-1_500, "-1.5"),
    ] {
        let out = Value::map().with(
            "Records",
            vec![Value::map().with("ApproximateArrivalTimestamp", Value::Timestamp(ms))],
        );
        let body = String::from_utf8(svc.encode(op, Protocol::Json, &out)).unwrap();
        assert!(
            body.contains(&format!(r#""ApproximateArrivalTimestamp":{text}}}"#)),
            "{ms}: {body}"
        );
    }
}

#[test]
fn strings_are_escaped_exactly_as_serde_json_escapes_them() {
    let svc = kinesis();
    let op = svc.operation("ListStreams").unwrap();
    for s in [
        "plain-stream.name_1",
        "quote\"inside",
        "back\\slash",
        "tab\there",
        "nul\u{0}and\u{1f}",
        "ünïcödé ✓ 𝄞",
        "\u{7f}del",
        "",
    ] {
        let out = Value::map().with("StreamNames", vec![Value::from(s)]);
        let body = String::from_utf8(svc.encode(op, Protocol::Json, &out)).unwrap();
        let expected = format!(
            r#"{{"StreamNames":[{}]}}"#,
            serde_json::to_string(s).unwrap()
        );
        assert_eq!(body, expected);
    }
}
