//! Enhanced fan-out through aws-sdk-kinesis and raw HTTP/2: registered
//! consumers and SubscribeToShard push delivery.

mod common;

use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{
    ConsumerStatus, ShardIteratorType, StartingPosition, SubscribeToShardEvent,
    SubscribeToShardEventStream,
};
use common::{Eddy, code, create_stream, message};

const STREAM_ARN: &str = "arn:aws:kinesis:us-east-1:000000000000:stream/s";

async fn register(k: &aws_sdk_kinesis::Client, name: &str) -> String {
    let out = k
        .register_stream_consumer()
        .stream_arn(STREAM_ARN)
        .consumer_name(name)
        .send()
        .await
        .unwrap();
    out.consumer().unwrap().consumer_arn().to_string()
}

fn position(t: ShardIteratorType, seq: Option<&str>) -> StartingPosition {
    StartingPosition::builder()
        .r#type(t)
        .set_sequence_number(seq.map(str::to_string))
        .build()
        .unwrap()
}

/// Receives events until `want` records arrived or the shard ended.
async fn collect(
    out: &mut aws_sdk_kinesis::operation::subscribe_to_shard::SubscribeToShardOutput,
    want: usize,
) -> (Vec<String>, Option<SubscribeToShardEvent>) {
    let mut data = Vec::new();
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(20), out.event_stream.recv())
            .await
            .expect("an event arrives in time")
            .expect("no stream error")
            .expect("the stream goes on");
        let SubscribeToShardEventStream::SubscribeToShardEvent(ev) = ev else {
            panic!("unexpected event")
        };
        data.extend(
            ev.records()
                .iter()
                .map(|r| String::from_utf8(r.data().as_ref().to_vec()).unwrap()),
        );
        if ev.continuation_sequence_number().is_empty() {
            assert!(
                !ev.child_shards().is_empty(),
                "the end of a closed shard names its children"
            );
            return (data, Some(ev));
        }
        assert!(ev.child_shards().is_empty());
        if data.len() >= want {
            return (data, None);
        }
    }
}

#[tokio::test]
async fn consumers_register_describe_list_and_deregister() {
    let eddy = Eddy::start();
    let k = eddy.client();
    create_stream(&k, "s", 1).await;
    let arn = register(&k, "app").await;
    assert!(
        arn.starts_with("arn:aws:kinesis:us-east-1:000000000000:stream/s/consumer/app:"),
        "{arn}"
    );
    let d = k
        .describe_stream_consumer()
        .consumer_arn(&arn)
        .send()
        .await
        .unwrap();
    let d = d.consumer_description().unwrap();
    assert_eq!(d.consumer_status(), &ConsumerStatus::Active);
    assert_eq!(d.stream_arn(), STREAM_ARN);
    let by_name = k
        .describe_stream_consumer()
        .stream_arn(STREAM_ARN)
        .consumer_name("app")
        .send()
        .await
        .unwrap();
    assert_eq!(by_name.consumer_description().unwrap().consumer_arn(), arn);
    let dup = k
        .register_stream_consumer()
        .stream_arn(STREAM_ARN)
        .consumer_name("app")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&dup), "ResourceInUseException");
    for i in 0..3 {
        register(&k, &format!("c{i}")).await;
    }
    let p1 = k
        .list_stream_consumers()
        .stream_arn(STREAM_ARN)
        .max_results(2)
        .send()
        .await
        .unwrap();
    assert_eq!(p1.consumers().len(), 2);
    let p2 = k
        .list_stream_consumers()
        .stream_arn(STREAM_ARN)
        .next_token(p1.next_token().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(p2.consumers().len(), 2);
    let s = k
        .describe_stream_summary()
        .stream_name("s")
        .send()
        .await
        .unwrap();
    assert_eq!(
        s.stream_description_summary().unwrap().consumer_count(),
        Some(4)
    );

    k.tag_resource()
        .resource_arn(&arn)
        .tags("team", "x")
        .send()
        .await
        .unwrap();
    let tags = k
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tags()[0].key(), "team");

    k.deregister_stream_consumer()
        .consumer_arn(&arn)
        .send()
        .await
        .unwrap();
    let gone = k
        .describe_stream_consumer()
        .consumer_arn(&arn)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&gone), "ResourceNotFoundException");
    let busy = k.delete_stream().stream_name("s").send().await.unwrap_err();
    assert_eq!(code(&busy), "ResourceInUseException");
    k.delete_stream()
        .stream_name("s")
        .enforce_consumer_deletion(true)
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_get_stored_then_live_records_in_order() {
    let eddy = Eddy::start();
    let k = eddy.client();
    create_stream(&k, "s", 1).await;
    let arn = register(&k, "app").await;
    for i in 0..10 {
        k.put_record()
            .stream_name("s")
            .partition_key("p")
            .data(Blob::new(format!("old-{i}")))
            .send()
            .await
            .unwrap();
    }
    let mut sub = k
        .subscribe_to_shard()
        .consumer_arn(&arn)
        .shard_id("shardId-000000000000")
        .starting_position(position(ShardIteratorType::TrimHorizon, None))
        .send()
        .await
        .unwrap();
    let (old, _) = collect(&mut sub, 10).await;
    assert_eq!(old, (0..10).map(|i| format!("old-{i}")).collect::<Vec<_>>());
    // Pushed as soon as they are written.
    for i in 0..5 {
        k.put_record()
            .stream_name("s")
            .partition_key("p")
            .data(Blob::new(format!("new-{i}")))
            .send()
            .await
            .unwrap();
    }
    let (new, _) = collect(&mut sub, 5).await;
    assert_eq!(new, (0..5).map(|i| format!("new-{i}")).collect::<Vec<_>>());

    // A second subscription within 5 seconds is refused.
    let again = k
        .subscribe_to_shard()
        .consumer_arn(&arn)
        .shard_id("shardId-000000000000")
        .starting_position(position(ShardIteratorType::Latest, None))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&again), "ResourceInUseException");
    assert!(message(&again).starts_with("Another active subscription exists for this consumer"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuation_numbers_resume_exactly_where_a_subscription_stopped() {
    let eddy = Eddy::start();
    let k = eddy.client();
    create_stream(&k, "s", 1).await;
    let arn = register(&k, "app").await;
    // Subscribing from LATEST on an empty shard still yields a usable continuation.
    let mut sub = k
        .subscribe_to_shard()
        .consumer_arn(&arn)
        .shard_id("shardId-000000000000")
        .starting_position(position(ShardIteratorType::Latest, None))
        .send()
        .await
        .unwrap();
    let first = sub.event_stream.recv().await.unwrap().unwrap();
    let SubscribeToShardEventStream::SubscribeToShardEvent(first) = first else {
        panic!()
    };
    let cont = first.continuation_sequence_number().to_string();
    k.put_record()
        .stream_name("s")
        .partition_key("p")
        .data(Blob::new("a"))
        .send()
        .await
        .unwrap();
    let consumer2 = register(&k, "other").await;
    let mut resumed = k
        .subscribe_to_shard()
        .consumer_arn(&consumer2)
        .shard_id("shardId-000000000000")
        .starting_position(position(
            ShardIteratorType::AfterSequenceNumber,
            Some(&cont),
        ))
        .send()
        .await
        .unwrap();
    let (data, _) = collect(&mut resumed, 1).await;
    assert_eq!(data, ["a"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_follow_a_reshard_through_child_shards() {
    let eddy = Eddy::start_with(&["--shard-limits", "off"]);
    let k = eddy.client();
    create_stream(&k, "s", 1).await;
    let arn = register(&k, "app").await;
    let mut expected = Vec::new();
    for i in 0..20 {
        let d = format!("{i}");
        k.put_record()
            .stream_name("s")
            .partition_key(&d)
            .data(Blob::new(d.clone()))
            .send()
            .await
            .unwrap();
        expected.push(d);
    }
    let mut parent = k
        .subscribe_to_shard()
        .consumer_arn(&arn)
        .shard_id("shardId-000000000000")
        .starting_position(position(ShardIteratorType::TrimHorizon, None))
        .send()
        .await
        .unwrap();
    let (mut got, _) = collect(&mut parent, 20).await;
    k.split_shard()
        .stream_name("s")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key("170141183460469231731687303715884105728")
        .send()
        .await
        .unwrap();
    for i in 20..40 {
        let d = format!("{i}");
        k.put_record()
            .stream_name("s")
            .partition_key(&d)
            .data(Blob::new(d.clone()))
            .send()
            .await
            .unwrap();
        expected.push(d);
    }
    let (rest, end) = collect(&mut parent, usize::MAX).await;
    assert!(rest.is_empty(), "nothing lands in a closed parent");
    let children: Vec<String> = end
        .unwrap()
        .child_shards()
        .iter()
        .map(|c| c.shard_id().to_string())
        .collect();
    assert_eq!(children, ["shardId-000000000001", "shardId-000000000002"]);
    tokio::time::sleep(Duration::from_millis(50)).await;
    for child in children {
        let mut sub = k
            .subscribe_to_shard()
            .consumer_arn(&arn)
            .shard_id(&child)
            .starting_position(position(ShardIteratorType::TrimHorizon, None))
            .send()
            .await
            .unwrap();
        // Each child holds part of the 20 later records; take what is there.
        let ev = sub.event_stream.recv().await.unwrap().unwrap();
        let SubscribeToShardEventStream::SubscribeToShardEvent(ev) = ev else {
            panic!()
        };
        got.extend(
            ev.records()
                .iter()
                .map(|r| String::from_utf8(r.data().as_ref().to_vec()).unwrap()),
        );
    }
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "every record once, across the reshard");
}

#[tokio::test]
async fn bad_consumer_arns_get_aws_errors() {
    let eddy = Eddy::start();
    let k = eddy.client();
    create_stream(&k, "s", 1).await;
    let malformed = k
        .subscribe_to_shard()
        .consumer_arn("not-an-arn")
        .shard_id("shardId-000000000000")
        .starting_position(position(ShardIteratorType::Latest, None))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&malformed), "ValidationException");
    let unknown = k
        .subscribe_to_shard()
        .consumer_arn(format!("{STREAM_ARN}/consumer/ghost:1700000000"))
        .shard_id("shardId-000000000000")
        .starting_position(position(ShardIteratorType::Latest, None))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&unknown), "ResourceNotFoundException");
}

#[tokio::test]
async fn subscribe_over_http2_prior_knowledge_streams_event_frames() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let eddy = Eddy::start();
    let k = eddy.client();
    create_stream(&k, "s", 1).await;
    let arn = register(&k, "app").await;
    k.put_record()
        .stream_name("s")
        .partition_key("p")
        .data(Blob::new("h2"))
        .send()
        .await
        .unwrap();

    let io = TokioIo::new(
        tokio::net::TcpStream::connect(("127.0.0.1", eddy.port))
            .await
            .unwrap(),
    );
    let (mut tx, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    tokio::spawn(conn);
    let body = serde_json::json!({
        "ConsumerARN": arn,
        "ShardId": "shardId-000000000000",
        "StartingPosition": {"Type": "TRIM_HORIZON"}
    })
    .to_string();
    let req = hyper::Request::post(format!("http://127.0.0.1:{}/", eddy.port))
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", "Kinesis_20131202.SubscribeToShard")
        .header("x-amz-date", "20260101T000000Z")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=00",
        )
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "application/vnd.amazon.eventstream"
    );
    let mut body = resp.into_body();
    let mut buf = bytes::BytesMut::new();
    let mut decoder = aws_smithy_eventstream::frame::MessageFrameDecoder::new();
    let mut messages = Vec::new();
    while messages.len() < 2 {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        buf.extend_from_slice(&frame.into_data().unwrap());
        while let aws_smithy_eventstream::frame::DecodedFrame::Complete(m) =
            decoder.decode_frame(&mut buf).unwrap()
        {
            messages.push(m);
        }
    }
    let header = |m: &aws_smithy_types::event_stream::Message, name: &str| {
        m.headers()
            .iter()
            .find(|h| h.name().as_str() == name)
            .map(|h| h.value().as_string().unwrap().as_str().to_string())
    };
    assert_eq!(
        header(&messages[0], ":event-type").as_deref(),
        Some("initial-response")
    );
    assert_eq!(
        header(&messages[1], ":event-type").as_deref(),
        Some("SubscribeToShardEvent")
    );
    let event: serde_json::Value = serde_json::from_slice(messages[1].payload()).unwrap();
    assert_eq!(event["Records"][0]["Data"], "aDI=");
    assert!(event["ContinuationSequenceNumber"].is_string());
}

#[tokio::test]
async fn cbor_subscriptions_get_cbor_events_over_http1() {
    use bytes::Bytes;
    use ciborium::Value as Cbor;
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::TokioIo;

    let eddy = Eddy::start();
    let k = eddy.client();
    create_stream(&k, "s", 1).await;
    let arn = register(&k, "app").await;
    k.put_record()
        .stream_name("s")
        .partition_key("p")
        .data(Blob::new(vec![0u8, 255]))
        .send()
        .await
        .unwrap();

    let text = |s: &str| Cbor::Text(s.to_string());
    let request = Cbor::Map(vec![
        (text("ConsumerARN"), text(&arn)),
        (text("ShardId"), text("shardId-000000000000")),
        (
            text("StartingPosition"),
            Cbor::Map(vec![(text("Type"), text("TRIM_HORIZON"))]),
        ),
    ]);
    let mut body = Vec::new();
    ciborium::into_writer(&request, &mut body).unwrap();
    let io = TokioIo::new(
        tokio::net::TcpStream::connect(("127.0.0.1", eddy.port))
            .await
            .unwrap(),
    );
    let (mut tx, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::post("/")
        .header("host", "localhost")
        .header("content-type", "application/x-amz-cbor-1.1")
        .header("x-amz-target", "Kinesis_20131202.SubscribeToShard")
        .header("x-amz-date", "20260101T000000Z")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=00",
        )
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["transfer-encoding"], "chunked");
    let mut stream = resp.into_body();
    let mut buf = bytes::BytesMut::new();
    let mut decoder = aws_smithy_eventstream::frame::MessageFrameDecoder::new();
    let mut messages = Vec::new();
    while messages.len() < 2 {
        let frame = tokio::time::timeout(Duration::from_secs(10), stream.frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        buf.extend_from_slice(&frame.into_data().unwrap());
        while let aws_smithy_eventstream::frame::DecodedFrame::Complete(m) =
            decoder.decode_frame(&mut buf).unwrap()
        {
            messages.push(m);
        }
    }
    let header = |m: &aws_smithy_types::event_stream::Message, name: &str| {
        m.headers()
            .iter()
            .find(|h| h.name().as_str() == name)
            .map(|h| h.value().as_string().unwrap().as_str().to_string())
    };
    assert_eq!(
        header(&messages[0], ":event-type").as_deref(),
        Some("initial-response")
    );
    assert_eq!(
        header(&messages[1], ":content-type").as_deref(),
        Some("application/x-amz-cbor-1.1")
    );
    let event: Cbor = ciborium::from_reader(&messages[1].payload()[..]).unwrap();
    let get = |v: &Cbor, key: &str| {
        v.as_map()
            .unwrap()
            .iter()
            .find(|(k, _)| k.as_text() == Some(key))
            .map(|(_, v)| v.clone())
    };
    let records = get(&event, "Records").unwrap();
    let record = &records.as_array().unwrap()[0];
    assert_eq!(get(record, "Data"), Some(Cbor::Bytes(vec![0, 255])));
    assert!(
        matches!(
            get(record, "ApproximateArrivalTimestamp"),
            Some(Cbor::Tag(1, _))
        ),
        "tag 1 + epoch ms"
    );
    assert!(matches!(
        get(&event, "ContinuationSequenceNumber"),
        Some(Cbor::Text(_))
    ));
}
