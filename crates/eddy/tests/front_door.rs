//! What a client sees on the wire before and around the operations: front
//! door errors, JSON and CBOR bodies, HTTP/2 with prior knowledge, request
//! ids, size limits. Raw HTTP, because SDKs never send most of these.

mod common;

use bytes::Bytes;
use ciborium::Value as Cbor;
use common::Eddy;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};

const AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host;x-amz-date, Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

struct Reply {
    status: u16,
    headers: hyper::HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| panic!("not JSON: {:?}", self.body))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn send(eddy: &Eddy, http2: bool, req: Request<Full<Bytes>>) -> Reply {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", eddy.port))
        .await
        .unwrap();
    let io = TokioIo::new(stream);
    let resp = if http2 {
        let (mut tx, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        tx.send_request(req).await.unwrap()
    } else {
        let (mut tx, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        tx.send_request(req).await.unwrap()
    };
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

fn request(
    target: Option<&str>,
    content_type: &str,
    body: impl Into<Bytes>,
) -> hyper::http::request::Builder {
    let _ = body;
    let mut b = Request::builder()
        .method("POST")
        .uri("/")
        .header("host", "localhost")
        .header("content-type", content_type)
        .header("x-amz-date", "20260101T000000Z")
        .header("authorization", AUTH);
    if let Some(t) = target {
        b = b.header("x-amz-target", format!("Kinesis_20131202.{t}"));
    }
    b
}

async fn call_json(eddy: &Eddy, op: &str, body: &str) -> Reply {
    let req = request(Some(op), "application/x-amz-json-1.1", body.to_string())
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    send(eddy, false, req).await
}

async fn call_cbor(eddy: &Eddy, op: &str, body: &Cbor) -> Reply {
    let mut buf = Vec::new();
    ciborium::into_writer(body, &mut buf).unwrap();
    let req = request(Some(op), "application/x-amz-cbor-1.1", buf.clone())
        .body(Full::new(Bytes::from(buf)))
        .unwrap();
    send(eddy, false, req).await
}

fn cbor_map(entries: Vec<(&str, Cbor)>) -> Cbor {
    Cbor::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Cbor::Text(k.to_string()), v))
            .collect(),
    )
}

fn cbor_get<'a>(v: &'a Cbor, key: &str) -> Option<&'a Cbor> {
    v.as_map()?
        .iter()
        .find(|(k, _)| k.as_text() == Some(key))
        .map(|(_, v)| v)
}

#[tokio::test]
async fn front_door_errors_come_in_aws_order_and_shape() {
    let eddy = Eddy::start();
    let get = send(
        &eddy,
        false,
        Request::get("/")
            .header("host", "x")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(get.status, 403);
    assert!(
        get.text().contains("<AccessDeniedException>"),
        "{}",
        get.text()
    );
    assert!(get.headers.contains_key("x-amzn-requestid"));

    let wrong_type = send(
        &eddy,
        false,
        request(Some("ListStreams"), "text/plain", "{}")
            .body(Full::new(Bytes::from("{}")))
            .unwrap(),
    )
    .await;
    assert_eq!(wrong_type.status, 404);
    assert!(wrong_type.text().contains("UnknownOperationException"));

    let unknown = call_json(&eddy, "NoSuchOperation", "{}").await;
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.json()["__type"], "UnknownOperationException");

    let no_auth = send(
        &eddy,
        false,
        Request::post("/")
            .header("host", "x")
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", "Kinesis_20131202.ListStreams")
            .body(Full::new(Bytes::from("{}")))
            .unwrap(),
    )
    .await;
    assert_eq!(no_auth.status, 400);
    assert_eq!(
        no_auth.json()["__type"],
        "MissingAuthenticationTokenException"
    );
    assert_eq!(no_auth.json()["message"], "Missing Authentication Token");

    let garbage = call_json(&eddy, "ListStreams", "{not json").await;
    assert_eq!(garbage.status, 400);
    assert_eq!(garbage.json()["__type"], "SerializationException");

    let wrong_field_type = call_json(
        &eddy,
        "CreateStream",
        r#"{"StreamName":"s","ShardCount":"two"}"#,
    )
    .await;
    assert_eq!(wrong_field_type.status, 400);
    assert_eq!(wrong_field_type.json()["__type"], "SerializationException");

    let invalid = call_json(&eddy, "CreateStream", r#"{"StreamName":"","ShardCount":0}"#).await;
    assert_eq!(invalid.status, 400);
    assert_eq!(invalid.json()["__type"], "ValidationException");
    assert!(
        invalid.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("3 validation errors detected: ")
    );
}

#[tokio::test]
async fn json_bodies_work_end_to_end_and_carry_request_ids() {
    let eddy = Eddy::start();
    let c = call_json(
        &eddy,
        "CreateStream",
        r#"{"StreamName":"j","ShardCount":1}"#,
    )
    .await;
    assert_eq!(c.status, 200, "{}", c.text());
    assert!(c.headers.contains_key("x-amzn-requestid"));
    let p = call_json(
        &eddy,
        "PutRecord",
        r#"{"StreamName":"j","PartitionKey":"k","Data":"aGVsbG8="}"#,
    )
    .await;
    assert_eq!(p.status, 200, "{}", p.text());
    let seq = p.json()["SequenceNumber"].as_str().unwrap().to_string();
    let it = call_json(
        &eddy,
        "GetShardIterator",
        r#"{"StreamName":"j","ShardId":"shardId-000000000000","ShardIteratorType":"TRIM_HORIZON"}"#,
    )
    .await
    .json();
    let recs = call_json(
        &eddy,
        "GetRecords",
        &format!(
            r#"{{"ShardIterator":"{}"}}"#,
            it["ShardIterator"].as_str().unwrap()
        ),
    )
    .await
    .json();
    assert_eq!(recs["Records"][0]["Data"], "aGVsbG8=");
    assert_eq!(recs["Records"][0]["SequenceNumber"], seq.as_str());
    assert!(recs["Records"][0]["ApproximateArrivalTimestamp"].is_number());
}

#[tokio::test]
async fn cbor_requests_get_cbor_answers_with_millisecond_timestamps() {
    let eddy = Eddy::start();
    let c = call_cbor(
        &eddy,
        "CreateStream",
        &cbor_map(vec![
            ("StreamName", Cbor::Text("c".into())),
            ("ShardCount", Cbor::Integer(1.into())),
        ]),
    )
    .await;
    assert_eq!(c.status, 200, "{}", c.text());
    let before_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 1000;
    let p = call_cbor(
        &eddy,
        "PutRecord",
        &cbor_map(vec![
            ("StreamName", Cbor::Text("c".into())),
            ("PartitionKey", Cbor::Text("k".into())),
            ("Data", Cbor::Bytes(vec![0, 1, 2, 255])),
        ]),
    )
    .await;
    assert_eq!(p.status, 200);
    assert_eq!(p.headers["content-type"], "application/x-amz-cbor-1.1");
    let p: Cbor = ciborium::from_reader(&p.body[..]).unwrap();
    assert!(
        cbor_get(&p, "SequenceNumber")
            .and_then(Cbor::as_text)
            .is_some()
    );

    // AT_TIMESTAMP with a CBOR tag-1 millisecond timestamp.
    let it = call_cbor(
        &eddy,
        "GetShardIterator",
        &cbor_map(vec![
            ("StreamName", Cbor::Text("c".into())),
            ("ShardId", Cbor::Text("shardId-000000000000".into())),
            ("ShardIteratorType", Cbor::Text("AT_TIMESTAMP".into())),
            (
                "Timestamp",
                Cbor::Tag(1, Box::new(Cbor::Integer(before_ms.into()))),
            ),
        ]),
    )
    .await;
    assert_eq!(it.status, 200, "{}", it.text());
    let it: Cbor = ciborium::from_reader(&it.body[..]).unwrap();
    let iterator = cbor_get(&it, "ShardIterator").unwrap().clone();
    let r = call_cbor(
        &eddy,
        "GetRecords",
        &cbor_map(vec![("ShardIterator", iterator)]),
    )
    .await;
    assert_eq!(r.status, 200);
    let r: Cbor = ciborium::from_reader(&r.body[..]).unwrap();
    let records = cbor_get(&r, "Records").unwrap().as_array().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(
        cbor_get(&records[0], "Data"),
        Some(&Cbor::Bytes(vec![0, 1, 2, 255]))
    );
    match cbor_get(&records[0], "ApproximateArrivalTimestamp") {
        Some(Cbor::Tag(1, inner)) => {
            let ms: i128 = inner
                .as_integer()
                .expect("an integer, never a float")
                .into();
            assert!(ms as i64 >= before_ms, "milliseconds since the epoch");
        }
        other => panic!("expected tag 1 timestamp, got {other:?}"),
    }

    let err = call_cbor(
        &eddy,
        "DescribeStream",
        &cbor_map(vec![("StreamName", Cbor::Text("missing".into()))]),
    )
    .await;
    assert_eq!(err.status, 400);
    let err: Cbor = ciborium::from_reader(&err.body[..]).unwrap();
    assert_eq!(
        cbor_get(&err, "__type").and_then(Cbor::as_text),
        Some("ResourceNotFoundException")
    );
}

#[tokio::test]
async fn http2_with_prior_knowledge_is_served_on_the_same_port() {
    let eddy = Eddy::start();
    let req = request(Some("ListStreams"), "application/x-amz-json-1.1", "{}")
        .uri(format!("http://127.0.0.1:{}/", eddy.port))
        .body(Full::new(Bytes::from("{}")))
        .unwrap();
    let r = send(&eddy, true, req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["StreamNames"], serde_json::json!([]));
    assert!(r.headers.contains_key("x-amzn-requestid"));
}

#[tokio::test]
async fn oversized_bodies_are_refused_without_harm() {
    let eddy = Eddy::start();
    let huge = vec![b' '; 21 * 1024 * 1024];
    let req = request(
        Some("PutRecord"),
        "application/x-amz-json-1.1",
        Bytes::new(),
    )
    .body(Full::new(Bytes::from(huge)))
    .unwrap();
    let r = send(&eddy, false, req).await;
    assert_eq!(r.status, 413);
    // The server is still healthy.
    assert_eq!(call_json(&eddy, "ListStreams", "{}").await.status, 200);
}

/// Every operation of the model, sent an empty object and a malformed body:
/// the missing required members come back as AWS's ValidationException
/// (one "must not be null" per member), garbage as SerializationException,
/// and nothing panics, hangs or answers 5xx.
#[tokio::test]
async fn every_operation_rejects_missing_members_and_garbage_like_aws() {
    let eddy = Eddy::start_with(&["--shard-limits", "off"]);
    let model: serde_json::Value =
        serde_json::from_str(include_str!("../../wire/models/kinesis-2013-12-02.json")).unwrap();
    let ops = model["operations"].as_object().unwrap();
    assert!(ops.len() >= 50);
    for (name, op) in ops {
        let input = op["input"]["shape"].as_str().map(|s| &model["shapes"][s]);
        let required: Vec<&str> = input
            .and_then(|s| s["required"].as_array())
            .map(|r| r.iter().map(|v| v.as_str().unwrap()).collect())
            .unwrap_or_default();
        let empty = call_json(&eddy, name, "{}").await;
        assert!(
            empty.status < 500,
            "{name}: {} {}",
            empty.status,
            empty.text()
        );
        if !required.is_empty() {
            assert_eq!(empty.status, 400, "{name}");
            let body = empty.json();
            assert_eq!(body["__type"], "ValidationException", "{name}: {body}");
            let msg = body["message"].as_str().unwrap();
            for member in &required {
                let mut camel = member.to_string();
                camel[..1].make_ascii_lowercase();
                assert!(
                    msg.contains(&format!("Value null at '{camel}' failed to satisfy constraint: Member must not be null")),
                    "{name}: {msg}"
                );
            }
        }
        let garbage = call_json(&eddy, name, "{\"unterminated").await;
        assert_eq!(garbage.status, 400, "{name}");
        assert_eq!(garbage.json()["__type"], "SerializationException", "{name}");
    }
}
