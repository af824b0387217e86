//! The DynamoDB model behind the same front door: JSON 1.0, no CBOR, and
//! error types qualified as DynamoDB (Coral) writes them.

use eddy_wire::{Protocol, RequestHead, dynamodb, kinesis};

const AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host;x-amz-date, Signature=00";

fn head<'a>(content_type: &'a str, target: &'a str) -> RequestHead<'a> {
    RequestHead {
        method: "POST",
        content_type: Some(content_type),
        target: Some(target),
        authorization: Some(AUTH),
        query: None,
        has_date: true,
        body_is_empty: false,
    }
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap()
}

#[test]
fn json_1_0_requests_are_decoded_and_validated_against_the_dynamodb_model() {
    let svc = dynamodb();
    assert_eq!(svc.target_prefix(), "DynamoDB_20120810");
    let (op, protocol, input) = svc
        .accept(
            &head("application/x-amz-json-1.0", "DynamoDB_20120810.PutItem"),
            br#"{"TableName":"leases","Item":{"leaseKey":{"S":"a"},"n":{"N":"42"},"b":{"B":"AAE="}}}"#,
        )
        .unwrap();
    assert_eq!((op.name.as_str(), protocol), ("PutItem", Protocol::Json));
    let item = input.get("Item").unwrap();
    assert_eq!(item.get("n").unwrap().str("N"), Some("42"));
    assert_eq!(
        item.get("b").unwrap().blob("B").unwrap().as_ref(),
        &[0u8, 1]
    );
    assert_eq!(svc.content_type(protocol), "application/x-amz-json-1.0");
}

#[test]
fn dynamodb_errors_carry_coral_namespaces_and_the_json_1_0_content_type() {
    let svc = dynamodb();
    let e = svc
        .accept(
            &head("application/x-amz-json-1.0", "DynamoDB_20120810.ListTables"),
            br#"{"Limit":0}"#,
        )
        .unwrap_err();
    assert_eq!(
        (e.status, e.content_type),
        (400, "application/x-amz-json-1.0")
    );
    assert_eq!(
        json(&e.body)["__type"],
        "com.amazon.coral.validate#ValidationException"
    );
    let e = svc
        .accept(
            &head(
                "application/x-amz-json-1.0",
                "DynamoDB_20120810.NoSuchThing",
            ),
            b"{}",
        )
        .unwrap_err();
    assert_eq!(
        json(&e.body)["__type"],
        "com.amazon.coral.service#UnknownOperationException"
    );
    let e = svc
        .accept(
            &head("application/x-amz-json-1.0", "DynamoDB_20120810.GetItem"),
            b"{not json",
        )
        .unwrap_err();
    assert_eq!(
        json(&e.body)["__type"],
        "com.amazon.coral.service#SerializationException"
    );
    // No CBOR for DynamoDB: an unknown content type, as AWS answers it.
    let e = svc
        .accept(
            &head("application/x-amz-cbor-1.1", "DynamoDB_20120810.ListTables"),
            b"\xa0",
        )
        .unwrap_err();
    assert_eq!(e.status, 404);
}

#[test]
fn kinesis_keeps_json_1_1_cbor_and_bare_error_types() {
    let svc = kinesis();
    assert_eq!(
        svc.content_type(Protocol::Json),
        "application/x-amz-json-1.1"
    );
    assert_eq!(
        svc.protocol_for("application/x-amz-cbor-1.1"),
        Some(Protocol::Cbor)
    );
    assert_eq!(svc.protocol_for("application/x-amz-json-1.0"), None);
    assert_eq!(svc.error_type("ValidationException"), "ValidationException");
    assert_eq!(
        dynamodb().error_type("ResourceNotFoundException"),
        "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException"
    );
}
