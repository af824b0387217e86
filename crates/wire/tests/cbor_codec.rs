//! CBOR (application/x-amz-cbor-1.1) decoding and encoding.

use bytes::Bytes;
use ciborium::Value as Cbor;
use eddy_wire::{AwsError, Protocol, Value, kinesis};

fn text(s: &str) -> Cbor {
    Cbor::Text(s.into())
}

fn cbor(v: &Cbor) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(v, &mut out).unwrap();
    out
}

fn decode(op: &str, body: &[u8]) -> Result<Value, AwsError> {
    let svc = kinesis();
    svc.decode(svc.operation(op).unwrap(), Protocol::Cbor, body)
}

fn get_shard_iterator_with(ts: Cbor) -> Vec<u8> {
    cbor(&Cbor::Map(vec![
        (text("StreamName"), text("s")),
        (text("ShardId"), text("shardId-000000000000")),
        (text("ShardIteratorType"), text("AT_TIMESTAMP")),
        (text("Timestamp"), ts),
    ]))
}

#[test]
fn cbor_put_records_with_byte_strings_decodes() {
    let body = cbor(&Cbor::Map(vec![
        (text("StreamName"), text("s")),
        (
            text("Records"),
            Cbor::Array(vec![
                Cbor::Map(vec![
                    (text("Data"), Cbor::Bytes(vec![0, 1, 2, 255])),
                    (text("PartitionKey"), text("pk")),
                    (text("Unknown"), Cbor::Array(vec![Cbor::Null])),
                ]),
                Cbor::Map(vec![
                    (text("Data"), Cbor::Bytes(vec![])),
                    (text("PartitionKey"), text("pk2")),
                    (text("ExplicitHashKey"), Cbor::Null),
                ]),
            ]),
        ),
    ]));
    let svc = kinesis();
    let op = svc.operation("PutRecords").unwrap();
    let v = svc.decode(op, Protocol::Cbor, &body).unwrap();
    svc.validate(op, &v).unwrap();
    let recs = v.list("Records").unwrap();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].blob("Data").unwrap().as_ref(), &[0, 1, 2, 255]);
    assert_eq!(recs[0].str("PartitionKey"), Some("pk"));
    assert_eq!(recs[0].get("Unknown"), None);
    assert_eq!(recs[1].blob("Data").unwrap().len(), 0);
    assert_eq!(recs[1].as_map().unwrap().len(), 2, "null member is absent");
}

#[test]
fn cbor_tag1_integer_timestamps_are_milliseconds() {
    let v = decode(
        "GetShardIterator",
        &get_shard_iterator_with(Cbor::Tag(
            1,
            Box::new(Cbor::Integer(1_603_149_588_042i64.into())),
        )),
    )
    .unwrap();
    assert_eq!(v.timestamp("Timestamp"), Some(1_603_149_588_042));
}

#[test]
fn cbor_float_and_untagged_timestamps_are_accepted_leniently() {
    let cases = [
        // RFC 8949 tag 1 + float seconds
        (
            Cbor::Tag(1, Box::new(Cbor::Float(1_603_149_588.042))),
            1_603_149_588_042,
        ),
        // untagged float seconds
        (Cbor::Float(1_603_149_588.5), 1_603_149_588_500),
        // untagged integer milliseconds
        (
            Cbor::Integer(1_603_149_588_042i64.into()),
            1_603_149_588_042,
        ),
        // untagged integer seconds (too small to be milliseconds of this era)
        (Cbor::Integer(1_603_149_588i64.into()), 1_603_149_588_000),
    ];
    for (ts, ms) in cases {
        let v = decode("GetShardIterator", &get_shard_iterator_with(ts.clone())).unwrap();
        assert_eq!(v.timestamp("Timestamp"), Some(ms), "{ts:?}");
    }
}

#[test]
fn cbor_indefinite_length_maps_from_java_sdk_decode() {
    // bf 6a "StreamName" 61 "s" 6a "ShardCount" 02 ff
    let mut body = vec![0xbf, 0x6a];
    body.extend_from_slice(b"StreamName");
    body.push(0x61);
    body.push(b's');
    body.push(0x6a);
    body.extend_from_slice(b"ShardCount");
    body.push(0x02);
    body.push(0xff);
    let v = decode("CreateStream", &body).unwrap();
    assert_eq!(v.str("StreamName"), Some("s"));
    assert_eq!(v.i64("ShardCount"), Some(2));
}

#[test]
fn cbor_wrong_types_and_garbage_give_serialization_exception() {
    let body = cbor(&Cbor::Map(vec![
        (text("StreamName"), text("s")),
        (text("ShardCount"), text("2")),
    ]));
    let err = decode("CreateStream", &body).unwrap_err();
    assert_eq!(err.code, "SerializationException");
    assert_eq!(
        err.message.as_deref(),
        Some("class java.lang.String can not be converted to an Integer")
    );
    let err = decode("CreateStream", &[0xff, 0x00, 0x13]).unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.message),
        ("SerializationException", None)
    );
    let err = decode("CreateStream", &cbor(&Cbor::Array(vec![]))).unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.message),
        ("SerializationException", None)
    );
}

#[test]
fn cbor_output_timestamps_are_tag1_integer_milliseconds() {
    let svc = kinesis();
    let op = svc.operation("GetRecords").unwrap();
    let out = Value::map()
        .with(
            "Records",
            vec![
                Value::map()
                    .with("SequenceNumber", "1")
                    .with(
                        "ApproximateArrivalTimestamp",
                        Value::Timestamp(1_506_440_188_749),
                    )
                    .with("Data", Bytes::from_static(b"\x00hi"))
                    .with("PartitionKey", "k"),
            ],
        )
        .with("NextShardIterator", "it")
        .with("MillisBehindLatest", 5i64);
    let body = svc.encode(op, Protocol::Cbor, &out);
    let raw: Cbor = ciborium::de::from_reader(&body[..]).unwrap();
    let Cbor::Map(top) = &raw else {
        panic!("not a map: {raw:?}")
    };
    let records = &top.iter().find(|(k, _)| *k == text("Records")).unwrap().1;
    let Cbor::Array(records) = records else {
        panic!()
    };
    let Cbor::Map(rec) = &records[0] else {
        panic!()
    };
    let field = |name: &str| {
        rec.iter()
            .find(|(k, _)| *k == text(name))
            .unwrap()
            .1
            .clone()
    };
    assert_eq!(
        field("ApproximateArrivalTimestamp"),
        Cbor::Tag(1, Box::new(Cbor::Integer(1_506_440_188_749i64.into())))
    );
    assert_eq!(field("Data"), Cbor::Bytes(b"\x00hi".to_vec()));
    // The raw bytes: c1 (tag 1) followed by an integer head (major type 0),
    // never a float (fb).
    let pos = body.windows(1).position(|w| w[0] == 0xc1).unwrap();
    assert_eq!(
        body[pos + 1] >> 5,
        0,
        "tag 1 content is an unsigned integer"
    );

    // And it decodes back to the same value.
    let back = svc
        .decode_shape(op.output.unwrap(), Protocol::Cbor, &body)
        .unwrap();
    assert_eq!(back, out);
}

#[test]
fn cbor_error_bodies_are_maps() {
    let err = AwsError::new("ResourceNotFoundException", "Stream s not found.");
    let raw: Cbor = ciborium::de::from_reader(&err.encode(Protocol::Cbor)[..]).unwrap();
    assert_eq!(
        raw,
        Cbor::Map(vec![
            (text("__type"), text("ResourceNotFoundException")),
            (text("message"), text("Stream s not found.")),
        ])
    );
    let raw: Cbor = ciborium::de::from_reader(
        &AwsError::bare("SerializationException").encode(Protocol::Cbor)[..],
    )
    .unwrap();
    assert_eq!(
        raw,
        Cbor::Map(vec![(text("__type"), text("SerializationException"))])
    );
}

#[test]
fn cbor_chunked_strings_small_floats_and_unknown_members_decode() {
    let mut body = vec![0xa4]; // map(4)
    // "StreamName": indefinite text "a" "b"
    body.push(0x6a);
    body.extend_from_slice(b"StreamName");
    body.extend_from_slice(&[0x7f, 0x61, b'a', 0x61, b'b', 0xff]);
    // "Data": indefinite bytes [1] [2, 3]
    body.push(0x64);
    body.extend_from_slice(b"Data");
    body.extend_from_slice(&[0x5f, 0x41, 1, 0x42, 2, 3, 0xff]);
    // "Junk": {"x": [tag 99 (1.5 as half float), null]}
    body.push(0x64);
    body.extend_from_slice(b"Junk");
    body.extend_from_slice(&[0xa1, 0x61, b'x', 0x82, 0xd8, 99, 0xf9, 0x3e, 0x00, 0xf6]);
    // "PartitionKey": "k"
    body.push(0x6c);
    body.extend_from_slice(b"PartitionKey");
    body.extend_from_slice(&[0x61, b'k']);
    let v = decode("PutRecord", &body).unwrap();
    assert_eq!(
        v,
        Value::map()
            .with("StreamName", "ab")
            .with("Data", Bytes::from_static(&[1, 2, 3]))
            .with("PartitionKey", "k")
    );
    // Single-precision float seconds inside tag 1 (1.5e9 is exact in f32).
    let v = decode(
        "GetShardIterator",
        &get_shard_iterator_with(Cbor::Tag(1, Box::new(Cbor::Float(1.5e9)))),
    )
    .unwrap();
    assert_eq!(v.timestamp("Timestamp"), Some(1_500_000_000_000));
}

#[test]
fn cbor_truncated_trailing_and_overdeep_bodies_are_rejected() {
    let good = cbor(&Cbor::Map(vec![(text("StreamName"), text("s"))]));
    for cut in 1..good.len() {
        let err = decode("CreateStream", &good[..cut]).unwrap_err();
        assert_eq!(
            (err.code.as_str(), &err.message),
            ("SerializationException", &None)
        );
    }
    let mut trailing = good.clone();
    trailing.push(0x00);
    assert!(decode("CreateStream", &trailing).is_err());
    // 10,000 nested arrays under an unknown member: rejected, no stack overflow.
    let mut deep = vec![0xa1, 0x61, b'z'];
    deep.extend(std::iter::repeat_n(0x81, 10_000));
    deep.push(0x00);
    assert!(decode("CreateStream", &deep).is_err());
}

proptest::proptest! {
    #[test]
    fn cbor_decoding_arbitrary_bytes_never_panics(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
        let _ = decode("PutRecords", &body);
        let mut prefixed = vec![0xa2, 0x67];
        prefixed.extend_from_slice(b"Records");
        prefixed.extend_from_slice(&body);
        let _ = decode("PutRecords", &prefixed);
    }
}
