//! The front door: checks before the body, in AWS's order.

use eddy_wire::{ErrorResponse, Protocol, RequestHead, kinesis};

const JSON: &str = "application/x-amz-json-1.1";
const CBOR: &str = "application/x-amz-cbor-1.1";
const AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/kinesis/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7";
const ACCESS_DENIED: &str = "<AccessDeniedException>\n  <Message>Unable to determine service/operation name to be authorized</Message>\n</AccessDeniedException>\n";

/// A well-formed signed PutRecord request.
fn good() -> RequestHead<'static> {
    RequestHead {
        method: "POST",
        content_type: Some(JSON),
        target: Some("Kinesis_20131202.PutRecord"),
        authorization: Some(AUTH),
        query: None,
        has_date: true,
        body_is_empty: false,
    }
}

fn reject(head: RequestHead<'_>) -> ErrorResponse {
    match kinesis().front_door(&head) {
        Ok((op, _)) => panic!("accepted as {}", op.name),
        Err(e) => e,
    }
}

fn json_body(e: &ErrorResponse) -> serde_json::Value {
    assert_eq!(e.content_type, JSON);
    serde_json::from_slice(&e.body).unwrap()
}

#[test]
fn well_formed_requests_pass_in_either_protocol() {
    let (op, protocol) = kinesis().front_door(&good()).unwrap();
    assert_eq!((op.name.as_str(), protocol), ("PutRecord", Protocol::Json));
    let head = RequestHead {
        content_type: Some("application/x-amz-cbor-1.1; charset=utf-8"),
        target: Some("Kinesis_20131202.GetRecords"),
        ..good()
    };
    let (op, protocol) = kinesis().front_door(&head).unwrap();
    assert_eq!((op.name.as_str(), protocol), ("GetRecords", Protocol::Cbor));
    // Presigned query authentication instead of the header.
    let head = RequestHead {
        authorization: None,
        has_date: false,
        query: Some(
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20150830%2Fus-east-1%2Fkinesis%2Faws4_request&X-Amz-Date=20150830T123600Z&X-Amz-SignedHeaders=host&X-Amz-Signature=abc",
        ),
        ..good()
    };
    assert!(kinesis().front_door(&head).is_ok());
}

#[test]
fn non_post_is_access_denied_before_anything_else() {
    let e = reject(RequestHead {
        method: "GET",
        content_type: None,
        target: None,
        authorization: None,
        body_is_empty: true,
        ..good()
    });
    assert_eq!(e.status, 403);
    assert_eq!(String::from_utf8(e.body).unwrap(), ACCESS_DENIED);
}

#[test]
fn empty_body_is_serialization_or_unknown_operation_before_content_type() {
    // valid target, JSON: SerializationException in JSON
    let e = reject(RequestHead {
        body_is_empty: true,
        authorization: None,
        ..good()
    });
    assert_eq!(e.status, 400);
    assert_eq!(e.body, br#"{"__type":"SerializationException"}"#);
    // unknown target: UnknownOperationException
    let e = reject(RequestHead {
        body_is_empty: true,
        target: Some("Kinesis_20131202.Nope"),
        ..good()
    });
    assert_eq!(json_body(&e)["__type"], "UnknownOperationException");
    // not JSON (even a bad content type): answered in CBOR, as AWS does
    let e = reject(RequestHead {
        body_is_empty: true,
        content_type: Some("text/plain"),
        ..good()
    });
    assert_eq!((e.status, e.content_type), (400, CBOR));
    let raw: ciborium::Value = ciborium::de::from_reader(&e.body[..]).unwrap();
    assert_eq!(
        raw,
        ciborium::Value::Map(vec![(
            ciborium::Value::Text("__type".into()),
            ciborium::Value::Text("SerializationException".into())
        )])
    );
}

#[test]
fn bad_content_type_is_404_unknown_operation_or_403_without_target() {
    for ct in [None, Some("application/json"), Some("text/plain")] {
        let e = reject(RequestHead {
            content_type: ct,
            authorization: None,
            ..good()
        });
        assert_eq!(e.status, 404, "{ct:?}");
        assert_eq!(e.body, b"<UnknownOperationException/>\n");
        let e = reject(RequestHead {
            content_type: ct,
            target: None,
            ..good()
        });
        assert_eq!(e.status, 403);
        assert_eq!(String::from_utf8(e.body).unwrap(), ACCESS_DENIED);
        let e = reject(RequestHead {
            content_type: ct,
            target: Some("Kinesis_20131202"),
            ..good()
        });
        assert_eq!(e.status, 403, "target without an operation part");
    }
}

#[test]
fn unknown_target_is_unknown_operation_before_auth() {
    for target in [
        Some("Kinesis_20131202.Nope"),
        Some("DynamoDB_20120810.PutRecord"),
        Some("Kinesis_20131202"),
        None,
    ] {
        let e = reject(RequestHead {
            target,
            authorization: None,
            ..good()
        });
        assert_eq!(e.status, 400, "{target:?}");
        assert_eq!(e.body, br#"{"__type":"UnknownOperationException"}"#);
    }
    // In CBOR for CBOR requests.
    let e = reject(RequestHead {
        target: Some("Kinesis_20131202.Nope"),
        content_type: Some(CBOR),
        ..good()
    });
    assert_eq!(e.content_type, CBOR);
}

#[test]
fn missing_and_doubled_authentication() {
    let e = reject(RequestHead {
        authorization: None,
        ..good()
    });
    assert_eq!(e.status, 400);
    assert_eq!(
        e.body,
        br#"{"__type":"MissingAuthenticationTokenException","message":"Missing Authentication Token"}"#
    );
    let e = reject(RequestHead {
        query: Some("X-Amz-Algorithm=AWS4-HMAC-SHA256"),
        ..good()
    });
    let body = json_body(&e);
    assert_eq!(body["__type"], "InvalidSignatureException");
    assert_eq!(
        body["message"],
        "Found both 'X-Amz-Algorithm' as a query-string param and 'Authorization' as HTTP header."
    );
}

#[test]
fn incomplete_authorization_header_lists_each_missing_part() {
    let e = reject(RequestHead {
        authorization: Some(
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/kinesis/aws4_request",
        ),
        has_date: false,
        ..good()
    });
    let body = json_body(&e);
    assert_eq!(body["__type"], "IncompleteSignatureException");
    assert_eq!(
        body["message"],
        "Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization=AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/kinesis/aws4_request"
    );
    let e = reject(RequestHead {
        authorization: Some("AWS4-HMAC-SHA256"),
        ..good()
    });
    assert_eq!(
        json_body(&e)["message"],
        "Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. Authorization=AWS4-HMAC-SHA256"
    );
    let e = reject(RequestHead {
        has_date: false,
        ..good()
    });
    assert_eq!(
        json_body(&e)["message"],
        format!(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization={AUTH}"
        )
    );
}

#[test]
fn incomplete_query_signature_lists_each_missing_parameter() {
    let e = reject(RequestHead {
        authorization: None,
        query: Some("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20150830T123600Z"),
        ..good()
    });
    let body = json_body(&e);
    assert_eq!(body["__type"], "IncompleteSignatureException");
    assert_eq!(
        body["message"],
        "AWS query-string parameters must include 'X-Amz-Credential'. AWS query-string parameters must include 'X-Amz-Signature'. AWS query-string parameters must include 'X-Amz-SignedHeaders'. Re-examine the query-string parameters."
    );
}

#[test]
fn front_door_checks_run_in_aws_order() {
    // Everything wrong: the method wins.
    let all_wrong = RequestHead {
        method: "PUT",
        content_type: Some("text/plain"),
        target: Some("Nope.Nope"),
        authorization: None,
        query: None,
        has_date: false,
        body_is_empty: true,
    };
    assert_eq!(reject(all_wrong).status, 403);
    // POST: the empty body is next (answered in CBOR for a non-JSON type).
    let e = reject(RequestHead {
        method: "POST",
        ..all_wrong
    });
    assert_eq!((e.status, e.content_type), (400, CBOR));
    // With a body: the content type.
    let e = reject(RequestHead {
        method: "POST",
        body_is_empty: false,
        ..all_wrong
    });
    assert_eq!(e.status, 404);
    // With JSON: the target.
    let e = reject(RequestHead {
        method: "POST",
        body_is_empty: false,
        content_type: Some(JSON),
        ..all_wrong
    });
    assert_eq!(json_body(&e)["__type"], "UnknownOperationException");
    // With a target: authentication.
    let e = reject(RequestHead {
        method: "POST",
        body_is_empty: false,
        content_type: Some(JSON),
        target: Some("Kinesis_20131202.ListStreams"),
        ..all_wrong
    });
    assert_eq!(
        json_body(&e)["__type"],
        "MissingAuthenticationTokenException"
    );
}

#[test]
fn error_response_from_aws_error_uses_the_protocol() {
    let err = eddy_wire::AwsError::new("InternalFailureException", "boom").with_status(500);
    let r = ErrorResponse::from((err.clone(), Protocol::Json));
    assert_eq!((r.status, r.content_type), (500, JSON));
    assert_eq!(
        r.body,
        br#"{"__type":"InternalFailureException","message":"boom"}"#
    );
    let r = ErrorResponse::from((err, Protocol::Cbor));
    assert_eq!((r.status, r.content_type), (500, CBOR));
    assert_eq!(eddy_wire::content_type(Protocol::Json), JSON);
    assert_eq!(eddy_wire::content_type(Protocol::Cbor), CBOR);
}

#[test]
fn accept_decodes_and_validates_after_the_front_door() {
    let svc = kinesis();
    let body = br#"{"StreamName":"s","Data":"aGk=","PartitionKey":"k"}"#;
    let (op, protocol, v) = svc.accept(&good(), body).unwrap();
    assert_eq!((op.name.as_str(), protocol), ("PutRecord", Protocol::Json));
    assert_eq!(v.blob("Data").unwrap().as_ref(), b"hi");
    // Validation and type errors come back as replies in the protocol.
    let e = svc.accept(&good(), br#"{"StreamName":"s"}"#).unwrap_err();
    assert_eq!(e.status, 400);
    assert_eq!(
        json_body(&e)["message"],
        "1 validation error detected: Value null at 'data' failed to satisfy constraint: Member must not be null"
    );
    let e = svc.accept(&good(), br#"{"StreamName":1}"#).unwrap_err();
    assert_eq!(json_body(&e)["__type"], "SerializationException");
    // body_is_empty is taken from the body itself.
    let e = svc.accept(&good(), b"").unwrap_err();
    assert_eq!(e.body, br#"{"__type":"SerializationException"}"#);
}

#[test]
fn accept_reports_unparsable_bodies_before_target_and_auth() {
    let svc = kinesis();
    // Unknown target + garbage: the parse failure wins (AWS's order).
    let head = RequestHead {
        target: Some("Kinesis_20131202.Nope"),
        ..good()
    };
    let e = svc.accept(&head, b"{not json").unwrap_err();
    assert_eq!(e.body, br#"{"__type":"SerializationException"}"#);
    // ... but a parsable body gets UnknownOperationException.
    let e = svc.accept(&head, b"{}").unwrap_err();
    assert_eq!(e.body, br#"{"__type":"UnknownOperationException"}"#);
    // No credentials + garbage: SerializationException too.
    let head = RequestHead {
        authorization: None,
        ..good()
    };
    let e = svc.accept(&head, b"\"str\"").unwrap_err();
    assert_eq!(e.body, br#"{"__type":"SerializationException"}"#);
    let e = svc.accept(&head, b"{}").unwrap_err();
    assert_eq!(
        json_body(&e)["__type"],
        "MissingAuthenticationTokenException"
    );
    // CBOR: a truncated map with no credentials.
    let head = RequestHead {
        authorization: None,
        content_type: Some(CBOR),
        ..good()
    };
    let e = svc.accept(&head, &[0xa1, 0x61]).unwrap_err();
    assert_eq!(e.content_type, CBOR);
    let raw: ciborium::Value = ciborium::de::from_reader(&e.body[..]).unwrap();
    assert_eq!(
        raw,
        ciborium::Value::Map(vec![(
            ciborium::Value::Text("__type".into()),
            ciborium::Value::Text("SerializationException".into())
        )])
    );
    // Bad content type with garbage: still 404 (checked before parsing).
    let head = RequestHead {
        content_type: Some("text/plain"),
        ..good()
    };
    assert_eq!(svc.accept(&head, b"{garbage").unwrap_err().status, 404);
}
