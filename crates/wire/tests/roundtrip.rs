//! Property: decode(encode(v)) == v for Record-shaped outputs, both protocols.

use bytes::Bytes;
use eddy_wire::{Protocol, Value, kinesis};
use proptest::prelude::*;

fn record() -> impl Strategy<Value = Value> {
    (
        "0|[1-9][0-9]{0,55}",
        proptest::option::of(-4_102_444_800_000i64..4_102_444_800_000),
        proptest::collection::vec(any::<u8>(), 0..300),
        proptest::option::of("\\PC{1,40}"),
        proptest::option::of(prop_oneof![Just("NONE"), Just("KMS")]),
    )
        .prop_map(|(seq, ts, data, pk, enc)| {
            Value::map()
                .with("SequenceNumber", seq)
                .with(
                    "ApproximateArrivalTimestamp",
                    ts.map_or(Value::Null, Value::Timestamp),
                )
                .with("Data", Bytes::from(data))
                .with("PartitionKey", pk)
                .with("EncryptionType", enc)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn record_outputs_round_trip_through_json_and_cbor(v in record()) {
        let svc = kinesis();
        let shape = svc.shape_id("Record").unwrap();
        for protocol in [Protocol::Json, Protocol::Cbor] {
            let body = svc.encode_shape(shape, protocol, &v);
            let back = svc.decode_shape(shape, protocol, &body).unwrap();
            prop_assert_eq!(&back, &v, "{:?}", protocol);
        }
    }

    #[test]
    fn get_records_outputs_round_trip(records in proptest::collection::vec(record(), 0..5), behind in 0i64..1_000_000) {
        let svc = kinesis();
        let op = svc.operation("GetRecords").unwrap();
        let v = Value::map()
            .with("Records", records)
            .with("NextShardIterator", "AAAA")
            .with("MillisBehindLatest", behind);
        for protocol in [Protocol::Json, Protocol::Cbor] {
            let body = svc.encode(op, protocol, &v);
            let back = svc.decode_shape(op.output.unwrap(), protocol, &body).unwrap();
            prop_assert_eq!(&back, &v, "{:?}", protocol);
        }
    }
}
