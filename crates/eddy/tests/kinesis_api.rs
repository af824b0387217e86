//! Every Data Streams operation, driven through the official aws-sdk-kinesis
//! against a real `eddy serve` process.

mod common;

use aws_sdk_kinesis::client::Waiters;
use aws_sdk_kinesis::primitives::{Blob, DateTime};
use aws_sdk_kinesis::types::{
    MetricsName, MinimumThroughputBillingCommitmentInputStatus, PutRecordsRequestEntry,
    ShardFilter, ShardFilterType, ShardIteratorType, StreamMode, StreamModeDetails, StreamStatus,
};
use common::{Eddy, code, create_stream, message};

#[tokio::test]
async fn create_describe_list_and_delete_streams() {
    let eddy = Eddy::start();
    let k = eddy.client();
    create_stream(&k, "alpha", 3).await;
    // A stream created with only a name gets four shards.
    k.create_stream().stream_name("beta").send().await.unwrap();

    let d = k
        .describe_stream()
        .stream_name("alpha")
        .send()
        .await
        .unwrap();
    let desc = d.stream_description().unwrap();
    assert_eq!(desc.stream_status(), &StreamStatus::Active);
    assert_eq!(desc.shards().len(), 3);
    assert_eq!(
        desc.stream_arn(),
        "arn:aws:kinesis:us-east-1:000000000000:stream/alpha"
    );
    assert_eq!(desc.retention_period_hours(), 24);
    assert_eq!(desc.shards()[0].shard_id(), "shardId-000000000000");
    assert_eq!(
        desc.shards()[0]
            .hash_key_range()
            .unwrap()
            .starting_hash_key(),
        "0"
    );
    assert_eq!(
        desc.shards()[2].hash_key_range().unwrap().ending_hash_key(),
        "340282366920938463463374607431768211455"
    );
    let beta = k
        .describe_stream_summary()
        .stream_name("beta")
        .send()
        .await
        .unwrap();
    assert_eq!(
        beta.stream_description_summary()
            .unwrap()
            .open_shard_count(),
        4
    );

    let dup = k
        .create_stream()
        .stream_name("alpha")
        .shard_count(1)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&dup), "ResourceInUseException");
    assert_eq!(
        message(&dup),
        "Stream alpha under account 000000000000 already exists."
    );

    let list = k.list_streams().send().await.unwrap();
    assert_eq!(list.stream_names(), ["alpha", "beta"]);
    assert_eq!(list.stream_summaries().len(), 2);
    assert!(!list.has_more_streams());

    k.delete_stream().stream_name("alpha").send().await.unwrap();
    let gone = k
        .describe_stream()
        .stream_name("alpha")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&gone), "ResourceNotFoundException");
    assert_eq!(
        message(&gone),
        "Stream alpha under account 000000000000 not found."
    );
}

#[tokio::test]
async fn list_streams_and_describe_stream_page() {
    let eddy = Eddy::start();
    let k = eddy.client();
    for i in 0..5 {
        create_stream(&k, &format!("s{i}"), 1).await;
    }
    let p1 = k.list_streams().limit(2).send().await.unwrap();
    assert_eq!(p1.stream_names(), ["s0", "s1"]);
    assert!(p1.has_more_streams());
    let p2 = k
        .list_streams()
        .next_token(p1.next_token().unwrap())
        .limit(2)
        .send()
        .await
        .unwrap();
    assert_eq!(p2.stream_names(), ["s2", "s3"]);
    let p3 = k
        .list_streams()
        .exclusive_start_stream_name("s3")
        .send()
        .await
        .unwrap();
    assert_eq!(p3.stream_names(), ["s4"]);
    assert!(!p3.has_more_streams());

    create_stream(&k, "wide", 5).await;
    let d = k
        .describe_stream()
        .stream_name("wide")
        .limit(2)
        .send()
        .await
        .unwrap();
    let d = d.stream_description().unwrap();
    assert!(d.has_more_shards());
    assert_eq!(d.shards().len(), 2);
    let next = k
        .describe_stream()
        .stream_name("wide")
        .exclusive_start_shard_id("shardId-000000000001")
        .send()
        .await
        .unwrap();
    let next = next.stream_description().unwrap();
    assert_eq!(next.shards().len(), 3);
    assert!(!next.has_more_shards());
}

#[tokio::test]
async fn put_and_get_records_round_trip_in_order() {
    let eddy = Eddy::start();
    let k = eddy.client();
    create_stream(&k, "s", 2).await;
    let r = k
        .put_record()
        .stream_name("s")
        .partition_key("a")
        .data(Blob::new("first"))
        .send()
        .await
        .unwrap();
    // md5("a") falls in the lower half.
    assert_eq!(r.shard_id(), "shardId-000000000000");
    let first_seq = r.sequence_number().to_string();

    let entries: Vec<_> = (0..100)
        .map(|i| {
            PutRecordsRequestEntry::builder()
                .partition_key("a")
                .data(Blob::new(format!("rec-{i}")))
                .build()
                .unwrap()
        })
        .collect();
    let pr = k
        .put_records()
        .stream_name("s")
        .set_records(Some(entries))
        .send()
        .await
        .unwrap();
    assert_eq!(pr.failed_record_count(), Some(0));
    assert_eq!(pr.records().len(), 100);
    let seqs: Vec<common::SeqNum> = pr
        .records()
        .iter()
        .map(|r| common::SeqNum::of(r.sequence_number().unwrap()))
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "sequence numbers increase within a shard"
    );
    assert!(first_seq.bytes().all(|b| b.is_ascii_digit()) && first_seq.len() > 20);

    let it = k
        .get_shard_iterator()
        .stream_name("s")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap();
    let got = k
        .get_records()
        .shard_iterator(it.shard_iterator().unwrap())
        .send()
        .await
        .unwrap();
    let data: Vec<String> = got
        .records()
        .iter()
        .map(|r| String::from_utf8(r.data().as_ref().to_vec()).unwrap())
        .collect();
    assert_eq!(data.len(), 101);
    assert_eq!(data[0], "first");
    assert_eq!(data[100], "rec-99");
    assert_eq!(got.records()[0].partition_key(), Some("a"));
    assert_eq!(got.records()[0].sequence_number(), first_seq);
    assert!(got.records()[0].approximate_arrival_timestamp().is_some());
    assert_eq!(got.millis_behind_latest(), Some(0));
    let next = got
        .next_shard_iterator()
        .expect("an open shard always has a next iterator");
    let empty = k.get_records().shard_iterator(next).send().await.unwrap();
    assert!(empty.records().is_empty());
    assert!(
        empty.next_shard_iterator().is_some(),
        "a fresh iterator even when empty"
    );
}

#[tokio::test]
async fn get_records_honours_limit_and_every_iterator_type() {
    let eddy = Eddy::start_with(&["--shard-limits", "off"]);
    let k = eddy.client();
    create_stream(&k, "s", 1).await;
    let mut seqs = Vec::new();
    for i in 0..10 {
        let r = k
            .put_record()
            .stream_name("s")
            .partition_key("k")
            .data(Blob::new(vec![i as u8]))
            .send()
            .await
            .unwrap();
        seqs.push(r.sequence_number().to_string());
    }
    let iter = |t: ShardIteratorType, seq: Option<&str>| {
        k.get_shard_iterator()
            .stream_name("s")
            .shard_id("shardId-000000000000")
            .shard_iterator_type(t)
            .set_starting_sequence_number(seq.map(str::to_string))
    };
    let first_byte = |out: &aws_sdk_kinesis::operation::get_records::GetRecordsOutput| {
        out.records().first().map(|r| r.data().as_ref()[0])
    };

    let it = iter(ShardIteratorType::TrimHorizon, None)
        .send()
        .await
        .unwrap();
    let out = k
        .get_records()
        .shard_iterator(it.shard_iterator().unwrap())
        .limit(3)
        .send()
        .await
        .unwrap();
    assert_eq!(out.records().len(), 3);
    assert!(out.millis_behind_latest().is_some());
    let out2 = k
        .get_records()
        .shard_iterator(out.next_shard_iterator().unwrap())
        .limit(3)
        .send()
        .await
        .unwrap();
    assert_eq!(first_byte(&out2), Some(3));

    let at = iter(ShardIteratorType::AtSequenceNumber, Some(&seqs[4]))
        .send()
        .await
        .unwrap();
    let out = k
        .get_records()
        .shard_iterator(at.shard_iterator().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(first_byte(&out), Some(4));
    assert_eq!(out.records().len(), 6);

    let after = iter(ShardIteratorType::AfterSequenceNumber, Some(&seqs[4]))
        .send()
        .await
        .unwrap();
    let out = k
        .get_records()
        .shard_iterator(after.shard_iterator().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(first_byte(&out), Some(5));

    let latest = iter(ShardIteratorType::Latest, None).send().await.unwrap();
    let out = k
        .get_records()
        .shard_iterator(latest.shard_iterator().unwrap())
        .send()
        .await
        .unwrap();
    assert!(out.records().is_empty());
    k.put_record()
        .stream_name("s")
        .partition_key("k")
        .data(Blob::new(vec![42]))
        .send()
        .await
        .unwrap();
    let out = k
        .get_records()
        .shard_iterator(out.next_shard_iterator().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(first_byte(&out), Some(42));

    // AT_TIMESTAMP: a time before everything starts at the oldest record; now is after all.
    let old = iter(ShardIteratorType::AtTimestamp, None)
        .timestamp(DateTime::from_secs(1_000_000_000))
        .send()
        .await
        .unwrap();
    let out = k
        .get_records()
        .shard_iterator(old.shard_iterator().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(first_byte(&out), Some(0));
    let future = iter(ShardIteratorType::AtTimestamp, None)
        .timestamp(DateTime::from_secs(4_000_000_000))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&future), "InvalidArgumentException");
    assert!(message(&future).starts_with(
        "The timestampInMillis parameter cannot be greater than the currentTimestampInMillis."
    ));
    let none = iter(ShardIteratorType::AtTimestamp, None)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        message(&none),
        "Must specify timestampInMillis parameter for iterator of type AT_TIMESTAMP. Current request has no timestamp parameter."
    );
}

#[tokio::test]
async fn iterator_and_sequence_number_errors_match_aws() {
    let eddy = Eddy::start();
    let k = eddy.client();
    create_stream(&k, "s", 2).await;
    create_stream(&k, "other", 1).await;
    let r = k
        .put_record()
        .stream_name("s")
        .partition_key("a")
        .data(Blob::new("x"))
        .send()
        .await
        .unwrap();
    let o = k
        .put_record()
        .stream_name("other")
        .partition_key("a")
        .data(Blob::new("x"))
        .send()
        .await
        .unwrap();

    let bad = k
        .get_records()
        .shard_iterator("bm90LWFuLWl0ZXJhdG9y")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&bad), "InvalidArgumentException");
    assert_eq!(message(&bad), "Invalid ShardIterator.");

    let wrong_shard = k
        .get_shard_iterator()
        .stream_name("s")
        .shard_id("shardId-000000000001")
        .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
        .starting_sequence_number(r.sequence_number())
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        message(&wrong_shard),
        "Invalid StartingSequenceNumber. It encodes shardId-000000000000, while it was used in a call to a shard with shardId-000000000001"
    );
    let foreign = k
        .get_shard_iterator()
        .stream_name("s")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
        .starting_sequence_number(o.sequence_number())
        .send()
        .await
        .unwrap_err();
    assert!(
        message(&foreign).ends_with("is invalid because it did not come from this stream."),
        "{}",
        message(&foreign)
    );

    let missing_seq = k
        .get_shard_iterator()
        .stream_name("s")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
        .send()
        .await
        .unwrap_err();
    assert!(
        message(&missing_seq)
            .ends_with("Request specified AFTER_SEQUENCE_NUMBER and no StartingSequenceNumber.")
    );

    let no_shard = k
        .get_shard_iterator()
        .stream_name("s")
        .shard_id("shardId-000000000009")
        .shard_iterator_type(ShardIteratorType::Latest)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&no_shard), "ResourceNotFoundException");
    assert_eq!(
        message(&no_shard),
        "Shard shardId-000000000009 in stream s under account 000000000000 does not exist"
    );

    let ehk = k
        .put_record()
        .stream_name("s")
        .partition_key("a")
        .explicit_hash_key("340282366920938463463374607431768211456")
        .data(Blob::new("x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&ehk), "InvalidArgumentException");
    assert_eq!(
        message(&ehk),
        "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was 340282366920938463463374607431768211456"
    );
    let routed = k
        .put_record()
        .stream_name("s")
        .partition_key("a")
        .explicit_hash_key("340282366920938463463374607431768211455")
        .data(Blob::new("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(routed.shard_id(), "shardId-000000000001");

    let nostream = k
        .put_record()
        .stream_name("nope")
        .partition_key("a")
        .data(Blob::new("x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&nostream), "ResourceNotFoundException");
}

#[tokio::test]
async fn stream_arn_works_wherever_a_name_does() {
    let eddy = Eddy::start();
    let k = eddy.client();
    create_stream(&k, "s", 1).await;
    let arn = "arn:aws:kinesis:us-east-1:000000000000:stream/s";
    let r = k
        .put_record()
        .stream_arn(arn)
        .partition_key("p")
        .data(Blob::new("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.shard_id(), "shardId-000000000000");
    let d = k
        .describe_stream_summary()
        .stream_arn(arn)
        .send()
        .await
        .unwrap();
    assert_eq!(d.stream_description_summary().unwrap().stream_name(), "s");
    let other_account = k
        .describe_stream_summary()
        .stream_arn("arn:aws:kinesis:us-east-1:123456789012:stream/s")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&other_account), "ResourceNotFoundException");
    let both = k
        .describe_stream_summary()
        .stream_arn(arn)
        .stream_name("t")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&both), "InvalidArgumentException");
    let neither = k.describe_stream_summary().send().await.unwrap_err();
    assert_eq!(code(&neither), "InvalidArgumentException");
}

#[tokio::test]
async fn list_shards_pages_and_filters() {
    let eddy = Eddy::start();
    let k = eddy.client();
    create_stream(&k, "s", 5).await;
    let all = k.list_shards().stream_name("s").send().await.unwrap();
    assert_eq!(all.shards().len(), 5);
    assert!(all.next_token().is_none());
    let p1 = k
        .list_shards()
        .stream_name("s")
        .max_results(2)
        .send()
        .await
        .unwrap();
    assert_eq!(p1.shards().len(), 2);
    let p2 = k
        .list_shards()
        .next_token(p1.next_token().unwrap())
        .max_results(2)
        .send()
        .await
        .unwrap();
    assert_eq!(p2.shards()[0].shard_id(), "shardId-000000000002");
    let after = k
        .list_shards()
        .stream_name("s")
        .exclusive_start_shard_id("shardId-000000000003")
        .send()
        .await
        .unwrap();
    assert_eq!(after.shards().len(), 1);
    let filtered = k
        .list_shards()
        .stream_name("s")
        .shard_filter(
            ShardFilter::builder()
                .r#type(ShardFilterType::AfterShardId)
                .shard_id("shardId-000000000000")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(filtered.shards().len(), 4);
    let latest = k
        .list_shards()
        .stream_name("s")
        .shard_filter(
            ShardFilter::builder()
                .r#type(ShardFilterType::AtLatest)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(latest.shards().len(), 5);
    let both = k
        .list_shards()
        .stream_name("s")
        .next_token(p1.next_token().unwrap())
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        message(&both),
        "NextToken and StreamName cannot be provided together."
    );
    let neither = k.list_shards().send().await.unwrap_err();
    assert_eq!(
        message(&neither),
        "Either NextToken or StreamName should be provided."
    );
}

#[tokio::test]
async fn retention_changes_follow_aws_rules() {
    let eddy = Eddy::start();
    let k = eddy.client();
    create_stream(&k, "s", 1).await;
    k.increase_stream_retention_period()
        .stream_name("s")
        .retention_period_hours(48)
        .send()
        .await
        .unwrap();
    let d = k
        .describe_stream_summary()
        .stream_name("s")
        .send()
        .await
        .unwrap();
    assert_eq!(
        d.stream_description_summary()
            .unwrap()
            .retention_period_hours(),
        48
    );
    let wrong = k
        .increase_stream_retention_period()
        .stream_name("s")
        .retention_period_hours(30)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        message(&wrong),
        "Requested retention period (30 hours) for stream s can not be shorter than existing retention period (48 hours). Use DecreaseRetentionPeriod API."
    );
    let short = k
        .decrease_stream_retention_period()
        .stream_name("s")
        .retention_period_hours(12)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        message(&short),
        "Minimum allowed retention period is 24 hours. Requested retention period (12 hours) is too short."
    );
    k.decrease_stream_retention_period()
        .stream_name("s")
        .retention_period_hours(24)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn stream_tags_and_resource_tags() {
    let eddy = Eddy::start();
    let k = eddy.client();
    k.create_stream()
        .stream_name("s")
        .shard_count(1)
        .tags("team", "data")
        .send()
        .await
        .unwrap();
    k.add_tags_to_stream()
        .stream_name("s")
        .tags("env", "test")
        .tags("app", "x")
        .send()
        .await
        .unwrap();
    let t = k
        .list_tags_for_stream()
        .stream_name("s")
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = t.tags().iter().map(|t| t.key()).collect();
    assert_eq!(keys, ["app", "env", "team"]);
    let page = k
        .list_tags_for_stream()
        .stream_name("s")
        .limit(1)
        .exclusive_start_tag_key("app")
        .send()
        .await
        .unwrap();
    assert_eq!(page.tags()[0].key(), "env");
    assert!(page.has_more_tags());
    k.remove_tags_from_stream()
        .stream_name("s")
        .tag_keys("env")
        .send()
        .await
        .unwrap();
    let arn = "arn:aws:kinesis:us-east-1:000000000000:stream/s";
    k.tag_resource()
        .resource_arn(arn)
        .tags("owner", "me")
        .send()
        .await
        .unwrap();
    k.untag_resource()
        .resource_arn(arn)
        .tag_keys("app")
        .send()
        .await
        .unwrap();
    let r = k
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = r.tags().iter().map(|t| t.key()).collect();
    assert_eq!(keys, ["owner", "team"]);
}

#[tokio::test]
async fn monitoring_encryption_and_settings_are_kept() {
    let eddy = Eddy::start();
    let k = eddy.client();
    create_stream(&k, "s", 1).await;
    let e = k
        .enable_enhanced_monitoring()
        .stream_name("s")
        .shard_level_metrics(MetricsName::IncomingBytes)
        .send()
        .await
        .unwrap();
    assert!(e.current_shard_level_metrics().is_empty());
    assert_eq!(
        e.desired_shard_level_metrics(),
        [MetricsName::IncomingBytes]
    );
    let e = k
        .enable_enhanced_monitoring()
        .stream_name("s")
        .shard_level_metrics(MetricsName::All)
        .send()
        .await
        .unwrap();
    assert_eq!(e.desired_shard_level_metrics().len(), 7);
    let d = k
        .disable_enhanced_monitoring()
        .stream_name("s")
        .shard_level_metrics(MetricsName::All)
        .send()
        .await
        .unwrap();
    assert!(d.desired_shard_level_metrics().is_empty());

    k.start_stream_encryption()
        .stream_name("s")
        .encryption_type(aws_sdk_kinesis::types::EncryptionType::Kms)
        .key_id("alias/aws/kinesis")
        .send()
        .await
        .unwrap();
    let s = k
        .describe_stream_summary()
        .stream_name("s")
        .send()
        .await
        .unwrap();
    let s = s.stream_description_summary().unwrap();
    assert_eq!(
        s.encryption_type(),
        Some(&aws_sdk_kinesis::types::EncryptionType::Kms)
    );
    assert_eq!(s.key_id(), Some("alias/aws/kinesis"));
    let put = k
        .put_record()
        .stream_name("s")
        .partition_key("p")
        .data(Blob::new("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        put.encryption_type(),
        Some(&aws_sdk_kinesis::types::EncryptionType::Kms)
    );
    k.stop_stream_encryption()
        .stream_name("s")
        .encryption_type(aws_sdk_kinesis::types::EncryptionType::Kms)
        .key_id("alias/aws/kinesis")
        .send()
        .await
        .unwrap();

    let limits = k.describe_limits().send().await.unwrap();
    assert_eq!(limits.open_shard_count(), 1);
    assert_eq!(limits.shard_limit(), 20000);

    let a = k
        .update_account_settings()
        .minimum_throughput_billing_commitment(
            aws_sdk_kinesis::types::MinimumThroughputBillingCommitmentInput::builder()
                .status(MinimumThroughputBillingCommitmentInputStatus::Enabled)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert!(a.minimum_throughput_billing_commitment().is_some());
    let a = k.describe_account_settings().send().await.unwrap();
    assert_eq!(
        a.minimum_throughput_billing_commitment()
            .unwrap()
            .status()
            .as_str(),
        "ENABLED"
    );
}

#[tokio::test]
async fn stream_mode_record_size_warm_throughput_and_policies() {
    let eddy = Eddy::start();
    let k = eddy.client();
    create_stream(&k, "s", 1).await;
    let arn = "arn:aws:kinesis:us-east-1:000000000000:stream/s";
    k.update_stream_mode()
        .stream_arn(arn)
        .stream_mode_details(
            StreamModeDetails::builder()
                .stream_mode(StreamMode::OnDemand)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let s = k
        .describe_stream_summary()
        .stream_name("s")
        .send()
        .await
        .unwrap();
    assert_eq!(
        s.stream_description_summary()
            .unwrap()
            .stream_mode_details()
            .unwrap()
            .stream_mode(),
        &StreamMode::OnDemand
    );
    let w = k
        .update_stream_warm_throughput()
        .stream_name("s")
        .warm_throughput_mibps(100)
        .send()
        .await
        .unwrap();
    assert_eq!(w.warm_throughput().unwrap().target_mibps(), Some(100));

    // Records up to the stream's maximum record size are accepted.
    let big = vec![7u8; 2 * 1024 * 1024];
    let too_big = k
        .put_record()
        .stream_name("s")
        .partition_key("p")
        .data(Blob::new(big.clone()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&too_big), "ValidationException");
    k.update_max_record_size()
        .stream_arn(arn)
        .max_record_size_in_kib(4096)
        .send()
        .await
        .unwrap();
    let ok = k
        .put_record()
        .stream_name("s")
        .partition_key("p")
        .data(Blob::new(big.clone()))
        .send()
        .await
        .unwrap();
    let it = k
        .get_shard_iterator()
        .stream_name("s")
        .shard_id(ok.shard_id())
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap();
    let got = k
        .get_records()
        .shard_iterator(it.shard_iterator().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(got.records()[0].data().as_ref(), &big[..]);

    k.update_stream_record_distribution_strategy()
        .stream_arn(arn)
        .record_distribution_strategy(
            aws_sdk_kinesis::types::RecordDistributionStrategy::UserPartitionKey,
        )
        .send()
        .await
        .unwrap();

    let none = k
        .get_resource_policy()
        .resource_arn(arn)
        .send()
        .await
        .unwrap();
    assert_eq!(none.policy(), "{}");
    let policy = r#"{"Version":"2012-10-17","Statement":[]}"#;
    k.put_resource_policy()
        .resource_arn(arn)
        .policy(policy)
        .send()
        .await
        .unwrap();
    assert_eq!(
        k.get_resource_policy()
            .resource_arn(arn)
            .send()
            .await
            .unwrap()
            .policy(),
        policy
    );
    k.delete_resource_policy()
        .resource_arn(arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        k.get_resource_policy()
            .resource_arn(arn)
            .send()
            .await
            .unwrap()
            .policy(),
        "{}"
    );
}

#[tokio::test]
async fn validation_errors_reach_the_sdk_with_aws_text() {
    let eddy = Eddy::start();
    let k = eddy.client();
    let bad = k
        .create_stream()
        .stream_name("bad name!")
        .shard_count(1)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&bad), "ValidationException");
    assert_eq!(
        message(&bad),
        "1 validation error detected: Value 'bad name!' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"
    );
}

#[tokio::test]
async fn metadata_and_records_survive_a_restart() {
    let mut eddy = Eddy::start();
    let k = eddy.client();
    k.create_stream()
        .stream_name("s")
        .shard_count(2)
        .tags("a", "b")
        .send()
        .await
        .unwrap();
    k.increase_stream_retention_period()
        .stream_name("s")
        .retention_period_hours(72)
        .send()
        .await
        .unwrap();
    let r = k
        .put_record()
        .stream_name("s")
        .partition_key("p")
        .data(Blob::new("kept"))
        .send()
        .await
        .unwrap();
    let it = k
        .get_shard_iterator()
        .stream_name("s")
        .shard_id(r.shard_id())
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap();
    let status = eddy.terminate();
    assert!(status.success(), "SIGTERM shuts down cleanly: {status}");
    eddy.spawn();
    let k = eddy.client();
    let d = k
        .describe_stream_summary()
        .stream_name("s")
        .send()
        .await
        .unwrap();
    assert_eq!(
        d.stream_description_summary()
            .unwrap()
            .retention_period_hours(),
        72
    );
    // Iterators survive restarts too.
    let got = k
        .get_records()
        .shard_iterator(it.shard_iterator().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(got.records().len(), 1);
    assert_eq!(got.records()[0].sequence_number(), r.sequence_number());
    let tags = k
        .list_tags_for_stream()
        .stream_name("s")
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tags().len(), 1);
}

#[tokio::test]
async fn transition_times_emulate_aws_for_waiters() {
    let eddy = Eddy::start_with(&["--transition-ms", "400"]);
    let k = eddy.client();
    create_stream(&k, "slow", 1).await;
    let d = k
        .describe_stream_summary()
        .stream_name("slow")
        .send()
        .await
        .unwrap();
    assert_eq!(
        d.stream_description_summary().unwrap().stream_status(),
        &StreamStatus::Creating
    );
    let early = k
        .put_record()
        .stream_name("slow")
        .partition_key("p")
        .data(Blob::new("x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&early), "ResourceNotFoundException");
    // The SDK waiter polls at once, then every 10 s: let the transition end first.
    tokio::time::sleep(std::time::Duration::from_millis(450)).await;
    let waited = k
        .wait_until_stream_exists()
        .stream_name("slow")
        .wait(std::time::Duration::from_secs(30))
        .await;
    assert!(waited.is_ok(), "the SDK waiter sees ACTIVE");
    k.increase_stream_retention_period()
        .stream_name("slow")
        .retention_period_hours(48)
        .send()
        .await
        .unwrap();
    k.start_stream_encryption()
        .stream_name("slow")
        .encryption_type(aws_sdk_kinesis::types::EncryptionType::Kms)
        .key_id("alias/aws/kinesis")
        .send()
        .await
        .unwrap();
    let d = k
        .describe_stream_summary()
        .stream_name("slow")
        .send()
        .await
        .unwrap();
    assert_eq!(
        d.stream_description_summary().unwrap().stream_status(),
        &StreamStatus::Updating
    );
    let busy = k
        .stop_stream_encryption()
        .stream_name("slow")
        .encryption_type(aws_sdk_kinesis::types::EncryptionType::Kms)
        .key_id("alias/aws/kinesis")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&busy), "ResourceInUseException");
    assert_eq!(
        message(&busy),
        "Stream slow under account 000000000000 not ACTIVE, instead in state UPDATING"
    );
    // Writes keep working while UPDATING.
    k.put_record()
        .stream_name("slow")
        .partition_key("p")
        .data(Blob::new("x"))
        .send()
        .await
        .unwrap();
    k.delete_stream().stream_name("slow").send().await.unwrap();
    let d = k
        .describe_stream_summary()
        .stream_name("slow")
        .send()
        .await
        .unwrap();
    assert_eq!(
        d.stream_description_summary().unwrap().stream_status(),
        &StreamStatus::Deleting
    );
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let gone = k
        .describe_stream_summary()
        .stream_name("slow")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&gone), "ResourceNotFoundException");
}

#[tokio::test]
async fn get_records_stops_at_ten_mebibytes() {
    let eddy = Eddy::start_with(&["--durability", "none", "--shard-limits", "off"]);
    let k = eddy.client();
    create_stream(&k, "big", 1).await;
    let arn = "arn:aws:kinesis:us-east-1:000000000000:stream/big";
    k.update_max_record_size()
        .stream_arn(arn)
        .max_record_size_in_kib(4096)
        .send()
        .await
        .unwrap();
    for i in 0..4u8 {
        let data = vec![i; 3 * 1024 * 1024];
        k.put_record()
            .stream_name("big")
            .partition_key("p")
            .data(Blob::new(data))
            .send()
            .await
            .unwrap();
    }
    let it = k
        .get_shard_iterator()
        .stream_name("big")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap();
    let first = k
        .get_records()
        .shard_iterator(it.shard_iterator().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        first.records().len(),
        3,
        "12 MiB stored, at most 10 MiB returned"
    );
    assert!(first.millis_behind_latest().is_some());
    let rest = k
        .get_records()
        .shard_iterator(first.next_shard_iterator().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(rest.records().len(), 1);
    assert_eq!(rest.records()[0].data().as_ref()[0], 3);
}
