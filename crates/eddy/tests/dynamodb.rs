//! The DynamoDB API subset that lease managers use, served by a real
//! `eddy serve` and driven by the official `aws-sdk-dynamodb` client: table
//! lifecycle, the KCL's lease operations in their legacy (`Expected` +
//! `AttributeUpdates`) and expression forms, paging, a GSI added later,
//! errors as DynamoDB writes them, and durability across SIGKILL.

mod common;

use std::collections::{BTreeSet, HashMap};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeAction, AttributeDefinition, AttributeValue, AttributeValueUpdate, BillingMode,
    ComparisonOperator, Condition, CreateGlobalSecondaryIndexAction, ExpectedAttributeValue,
    GlobalSecondaryIndexUpdate, KeySchemaElement, KeyType, PointInTimeRecoverySpecification,
    Projection, ProjectionType, ProvisionedThroughput, ReturnValue,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TableStatus,
};
use bytes::Bytes;
use common::Eddy;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

type Item = HashMap<String, AttributeValue>;

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}
fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn key_element(name: &str, ty: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(ty)
        .build()
        .unwrap()
}

fn definition(name: &str, ty: ScalarAttributeType) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ty)
        .build()
        .unwrap()
}

/// A KCL lease table: hash key `leaseKey`, on demand.
async fn create_lease_table(c: &Client, name: &str) {
    c.create_table()
        .table_name(name)
        .key_schema(key_element("leaseKey", KeyType::Hash))
        .attribute_definitions(definition("leaseKey", ScalarAttributeType::S))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
}

fn expect_value(v: AttributeValue) -> ExpectedAttributeValue {
    ExpectedAttributeValue::builder().value(v).build()
}

fn expect_absent() -> ExpectedAttributeValue {
    ExpectedAttributeValue::builder().exists(false).build()
}

fn put_update(v: AttributeValue) -> AttributeValueUpdate {
    AttributeValueUpdate::builder()
        .action(AttributeAction::Put)
        .value(v)
        .build()
}

fn lease(key: &str, owner: &str, counter: i64) -> Item {
    HashMap::from([
        ("leaseKey".to_string(), s(key)),
        ("leaseOwner".to_string(), s(owner)),
        ("leaseCounter".to_string(), n(counter)),
        ("checkpoint".to_string(), s("TRIM_HORIZON")),
        ("checkpointSubSequenceNumber".to_string(), n(0)),
        ("ownerSwitchesSinceCheckpoint".to_string(), n(0)),
        (
            "parentShardId".to_string(),
            AttributeValue::Ss(vec!["shardId-000000000000".into()]),
        ),
    ])
}

async fn get_lease(c: &Client, table: &str, key: &str) -> Option<Item> {
    c.get_item()
        .table_name(table)
        .key("leaseKey", s(key))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
}

#[tokio::test]
async fn table_lifecycle_create_describe_list_update_delete() {
    let eddy = Eddy::start();
    let c = eddy.dynamodb_client();
    create_lease_table(&c, "app-leases").await;

    let err = c
        .create_table()
        .table_name("app-leases")
        .key_schema(key_element("leaseKey", KeyType::Hash))
        .attribute_definitions(definition("leaseKey", ScalarAttributeType::S))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_in_use_exception(), "{err:?}");
    assert_eq!(err.message(), Some("Table already exists: app-leases"));

    c.create_table()
        .table_name("provisioned")
        .key_schema(key_element("pk", KeyType::Hash))
        .key_schema(key_element("sk", KeyType::Range))
        .attribute_definitions(definition("pk", ScalarAttributeType::S))
        .attribute_definitions(definition("sk", ScalarAttributeType::N))
        .provisioned_throughput(
            ProvisionedThroughput::builder()
                .read_capacity_units(5)
                .write_capacity_units(7)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    let t = c
        .describe_table()
        .table_name("app-leases")
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    assert_eq!(t.table_status, Some(TableStatus::Active));
    assert_eq!(t.key_schema()[0].attribute_name(), "leaseKey");
    assert_eq!(
        t.billing_mode_summary.unwrap().billing_mode,
        Some(BillingMode::PayPerRequest)
    );
    assert_eq!(t.item_count, Some(0));
    let p = c
        .describe_table()
        .table_name("provisioned")
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    assert_eq!(p.key_schema()[1].key_type(), &KeyType::Range);
    assert_eq!(
        p.provisioned_throughput.unwrap().write_capacity_units,
        Some(7)
    );

    let names = c.list_tables().send().await.unwrap().table_names.unwrap();
    assert_eq!(names, ["app-leases", "provisioned"]);
    let page = c.list_tables().limit(1).send().await.unwrap();
    assert_eq!(page.table_names(), ["app-leases"]);
    assert_eq!(page.last_evaluated_table_name(), Some("app-leases"));
    let rest = c
        .list_tables()
        .exclusive_start_table_name("app-leases")
        .send()
        .await
        .unwrap();
    assert_eq!(rest.table_names(), ["provisioned"]);
    assert_eq!(rest.last_evaluated_table_name(), None);

    // Continuous backups: no-op, but remembered.
    let d = c
        .describe_continuous_backups()
        .table_name("app-leases")
        .send()
        .await
        .unwrap();
    let pitr = |d: &aws_sdk_dynamodb::types::ContinuousBackupsDescription| {
        d.point_in_time_recovery_description()
            .unwrap()
            .point_in_time_recovery_status()
            .unwrap()
            .as_str()
            .to_string()
    };
    assert_eq!(
        pitr(d.continuous_backups_description().unwrap()),
        "DISABLED"
    );
    c.update_continuous_backups()
        .table_name("app-leases")
        .point_in_time_recovery_specification(
            PointInTimeRecoverySpecification::builder()
                .point_in_time_recovery_enabled(true)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let d = c
        .describe_continuous_backups()
        .table_name("app-leases")
        .send()
        .await
        .unwrap();
    assert_eq!(pitr(d.continuous_backups_description().unwrap()), "ENABLED");

    let deleted = c
        .delete_table()
        .table_name("app-leases")
        .send()
        .await
        .unwrap();
    assert_eq!(
        deleted.table_description.unwrap().table_status,
        Some(TableStatus::Deleting)
    );
    let err = c
        .describe_table()
        .table_name("app-leases")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    let err = c
        .get_item()
        .table_name("app-leases")
        .key("leaseKey", s("x"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    assert_eq!(err.message(), Some("Requested resource not found"));

    // Common mistakes get DynamoDB's ValidationException text.
    let err = c
        .create_table()
        .table_name("bad")
        .key_schema(key_element("a", KeyType::Hash))
        .attribute_definitions(definition("b", ScalarAttributeType::S))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("ValidationException"));
    assert_eq!(
        err.message(),
        Some(
            "One or more parameter values were invalid: Some index key attributes are not defined in AttributeDefinitions. Keys: [a], AttributeDefinitions: [b]"
        )
    );
    let err = c
        .create_table()
        .table_name("bad")
        .key_schema(key_element("a", KeyType::Hash))
        .attribute_definitions(definition("a", ScalarAttributeType::S))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(
        err.message(),
        Some(
            "One or more parameter values were invalid: ReadCapacityUnits and WriteCapacityUnits must both be specified when BillingMode is PROVISIONED"
        )
    );
}

#[tokio::test]
async fn kcl_lease_create_renew_take_checkpoint_evict_with_expected() {
    let eddy = Eddy::start();
    let c = eddy.dynamodb_client();
    let t = "kcl";
    create_lease_table(&c, t).await;
    let shard = "shardId-000000000001";

    // Create: PutItem if the lease does not exist.
    c.put_item()
        .table_name(t)
        .set_item(Some(lease(shard, "worker-a", 1)))
        .expected("leaseKey", expect_absent())
        .send()
        .await
        .unwrap();
    let err = c
        .put_item()
        .table_name(t)
        .set_item(Some(lease(shard, "worker-b", 1)))
        .expected("leaseKey", expect_absent())
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_conditional_check_failed_exception(), "{err:?}");
    assert_eq!(err.message(), Some("The conditional request failed"));

    // Renew: counter N -> N+1 if still N and no checkpoint owner.
    let renewed = c
        .update_item()
        .table_name(t)
        .key("leaseKey", s(shard))
        .expected("leaseCounter", expect_value(n(1)))
        .expected("checkpointOwner", expect_absent())
        .attribute_updates("leaseCounter", put_update(n(2)))
        .return_values(ReturnValue::AllNew)
        .send()
        .await
        .unwrap();
    let attrs = renewed.attributes.unwrap();
    assert_eq!(attrs["leaseCounter"], n(2));
    assert_eq!(attrs["leaseOwner"], s("worker-a"));

    // A stale renew loses the lease and, when asked, sees the item.
    let err = c
        .update_item()
        .table_name(t)
        .key("leaseKey", s(shard))
        .expected("leaseCounter", expect_value(n(1)))
        .attribute_updates("leaseCounter", put_update(n(2)))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    let aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(
        ccf,
    ) = err
    else {
        panic!("expected ConditionalCheckFailedException, got {err:?}");
    };
    assert_eq!(ccf.item.unwrap()["leaseCounter"], n(2));
    // Without ReturnValuesOnConditionCheckFailure, no item.
    let err = c
        .update_item()
        .table_name(t)
        .key("leaseKey", s(shard))
        .expected("leaseCounter", expect_value(n(1)))
        .attribute_updates("leaseCounter", put_update(n(2)))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    let aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(
        ccf,
    ) = err
    else {
        panic!("expected ConditionalCheckFailedException, got {err:?}");
    };
    assert!(ccf.item.is_none());

    // Take: another worker steals it.
    c.update_item()
        .table_name(t)
        .key("leaseKey", s(shard))
        .expected("leaseCounter", expect_value(n(2)))
        .attribute_updates("leaseCounter", put_update(n(3)))
        .attribute_updates("leaseOwner", put_update(s("worker-b")))
        .attribute_updates(
            "ownerSwitchesSinceCheckpoint",
            AttributeValueUpdate::builder()
                .action(AttributeAction::Add)
                .value(n(1))
                .build(),
        )
        .attribute_updates(
            "checkpointOwner",
            AttributeValueUpdate::builder()
                .action(AttributeAction::Delete)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let l = get_lease(&c, t, shard).await.unwrap();
    assert_eq!(l["leaseOwner"], s("worker-b"));
    assert_eq!(l["ownerSwitchesSinceCheckpoint"], n(1));
    assert_eq!(l["leaseCounter"], n(3));

    // Checkpoint: only the holder of counter 3 may write it.
    c.update_item()
        .table_name(t)
        .key("leaseKey", s(shard))
        .expected("leaseCounter", expect_value(n(3)))
        .attribute_updates(
            "checkpoint",
            put_update(s(
                "49590338271490256608559692538361571095921575989136588898",
            )),
        )
        .attribute_updates("checkpointSubSequenceNumber", put_update(n(7)))
        .attribute_updates("ownerSwitchesSinceCheckpoint", put_update(n(0)))
        .attribute_updates("leaseCounter", put_update(n(4)))
        .send()
        .await
        .unwrap();
    let l = get_lease(&c, t, shard).await.unwrap();
    assert_eq!(
        l["checkpoint"],
        s("49590338271490256608559692538361571095921575989136588898")
    );
    assert_eq!(l["checkpointSubSequenceNumber"], n(7));

    // Evict: only if still owned by worker-b and the lease exists.
    let evict = |owner: &'static str| {
        c.update_item()
            .table_name(t)
            .key("leaseKey", s(shard))
            .expected("leaseOwner", expect_value(s(owner)))
            .expected(
                "leaseKey",
                ExpectedAttributeValue::builder()
                    .comparison_operator(ComparisonOperator::NotNull)
                    .build(),
            )
            .attribute_updates(
                "leaseOwner",
                AttributeValueUpdate::builder()
                    .action(AttributeAction::Delete)
                    .build(),
            )
            .attribute_updates(
                "leaseCounter",
                AttributeValueUpdate::builder()
                    .action(AttributeAction::Add)
                    .value(n(1))
                    .build(),
            )
            .send()
    };
    let err = evict("worker-a").await.unwrap_err().into_service_error();
    assert!(err.is_conditional_check_failed_exception(), "{err:?}");
    evict("worker-b").await.unwrap();
    let l = get_lease(&c, t, shard).await.unwrap();
    assert!(!l.contains_key("leaseOwner"));
    assert_eq!(l["leaseCounter"], n(5));

    // Delete the lease (shard finished): conditional too.
    let err = c
        .delete_item()
        .table_name(t)
        .key("leaseKey", s(shard))
        .expected("leaseCounter", expect_value(n(4)))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_conditional_check_failed_exception(), "{err:?}");
    let old = c
        .delete_item()
        .table_name(t)
        .key("leaseKey", s(shard))
        .expected("leaseCounter", expect_value(n(5)))
        .return_values(ReturnValue::AllOld)
        .send()
        .await
        .unwrap();
    assert_eq!(old.attributes.unwrap()["leaseCounter"], n(5));
    assert!(get_lease(&c, t, shard).await.is_none());
}

#[tokio::test]
async fn condition_and_update_expressions_do_what_the_legacy_forms_do() {
    let eddy = Eddy::start();
    let c = eddy.dynamodb_client();
    let t = "expr";
    create_lease_table(&c, t).await;
    let shard = "shardId-000000000002";

    c.put_item()
        .table_name(t)
        .set_item(Some(lease(shard, "worker-a", 1)))
        .condition_expression("attribute_not_exists(leaseKey)")
        .send()
        .await
        .unwrap();
    let err = c
        .put_item()
        .table_name(t)
        .set_item(Some(lease(shard, "worker-a", 1)))
        .condition_expression("attribute_not_exists(leaseKey)")
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    let aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(ccf) =
        err
    else {
        panic!("expected ConditionalCheckFailedException, got {err:?}");
    };
    assert_eq!(ccf.item.unwrap()["leaseOwner"], s("worker-a"));

    // Renew with SET and an arithmetic update, returning what changed.
    let out = c
        .update_item()
        .table_name(t)
        .key("leaseKey", s(shard))
        .condition_expression("#c = :n AND (attribute_not_exists(#co) OR #co = :me)")
        .update_expression("SET #c = #c + :one")
        .expression_attribute_names("#c", "leaseCounter")
        .expression_attribute_names("#co", "checkpointOwner")
        .expression_attribute_values(":n", n(1))
        .expression_attribute_values(":me", s("worker-a"))
        .expression_attribute_values(":one", n(1))
        .return_values(ReturnValue::UpdatedOld)
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.attributes.unwrap(),
        HashMap::from([("leaseCounter".to_string(), n(1))])
    );

    // Take: SET owner, ADD a counter, REMOVE the checkpoint owner, DELETE a
    // parent from the set.
    let out = c
        .update_item()
        .table_name(t)
        .key("leaseKey", s(shard))
        .condition_expression("leaseCounter BETWEEN :lo AND :hi AND leaseOwner IN (:a, :b) AND begins_with(leaseKey, :prefix) AND size(leaseOwner) > :zero")
        .update_expression("SET leaseOwner = :b, leaseCounter = leaseCounter + :one ADD ownerSwitchesSinceCheckpoint :one REMOVE checkpointOwner DELETE parentShardId :parents")
        .expression_attribute_values(":lo", n(2))
        .expression_attribute_values(":hi", n(2))
        .expression_attribute_values(":a", s("worker-a"))
        .expression_attribute_values(":b", s("worker-b"))
        .expression_attribute_values(":prefix", s("shardId-"))
        .expression_attribute_values(":zero", n(0))
        .expression_attribute_values(":one", n(1))
        .expression_attribute_values(
            ":parents",
            AttributeValue::Ss(vec!["shardId-000000000000".into()]),
        )
        .return_values(ReturnValue::UpdatedNew)
        .send()
        .await
        .unwrap();
    let attrs = out.attributes.unwrap();
    assert_eq!(attrs["leaseOwner"], s("worker-b"));
    assert_eq!(attrs["leaseCounter"], n(3));
    assert_eq!(attrs["ownerSwitchesSinceCheckpoint"], n(1));
    assert!(!attrs.contains_key("parentShardId"), "emptied set removed");
    assert!(!attrs.contains_key("checkpoint"), "only updated attributes");

    // A failed condition changes nothing.
    let err = c
        .update_item()
        .table_name(t)
        .key("leaseKey", s(shard))
        .condition_expression("NOT (leaseOwner = :b)")
        .update_expression("SET leaseOwner = :a")
        .expression_attribute_values(":a", s("worker-a"))
        .expression_attribute_values(":b", s("worker-b"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_conditional_check_failed_exception(), "{err:?}");
    let l = get_lease(&c, t, shard).await.unwrap();
    assert_eq!(l["leaseOwner"], s("worker-b"));
    assert_eq!(l["leaseCounter"], n(3));

    // UpdateItem on a missing key creates the item (upsert).
    c.update_item()
        .table_name(t)
        .key("leaseKey", s("new"))
        .update_expression("SET leaseCounter = if_not_exists(leaseCounter, :zero) + :one")
        .expression_attribute_values(":zero", n(0))
        .expression_attribute_values(":one", n(1))
        .send()
        .await
        .unwrap();
    assert_eq!(get_lease(&c, t, "new").await.unwrap()["leaseCounter"], n(1));

    // Projection on GetItem.
    let item = c
        .get_item()
        .table_name(t)
        .key("leaseKey", s(shard))
        .projection_expression("#o, leaseCounter")
        .expression_attribute_names("#o", "leaseOwner")
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert_eq!(item.len(), 2);

    // Mistakes: ValidationException with DynamoDB's text.
    let msg = |e: aws_sdk_dynamodb::operation::update_item::UpdateItemError| {
        assert_eq!(e.code(), Some("ValidationException"));
        e.message().unwrap().to_string()
    };
    let e = c
        .update_item()
        .table_name(t)
        .key("leaseKey", s(shard))
        .update_expression("SET leaseOwner = :missing")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(
        msg(e),
        "Invalid UpdateExpression: An expression attribute value used in expression is not defined; attribute value: :missing"
    );
    let e = c
        .update_item()
        .table_name(t)
        .key("leaseKey", s(shard))
        .update_expression("SET leaseKey = :v")
        .expression_attribute_values(":v", s("other"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(
        msg(e),
        "One or more parameter values were invalid: Cannot update attribute leaseKey. This attribute is part of the key"
    );
    let e = c
        .update_item()
        .table_name(t)
        .key("leaseKey", s(shard))
        .expected("leaseCounter", expect_value(n(3)))
        .condition_expression("leaseCounter = :v")
        .expression_attribute_values(":v", n(3))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(
        msg(e),
        "Can not use both expression and non-expression parameters in the same request: Non-expression parameters: {Expected} Expression parameters: {ConditionExpression}"
    );
    let e = c
        .update_item()
        .table_name(t)
        .key("leaseKey", n(1))
        .update_expression("SET a = :v")
        .expression_attribute_values(":v", n(3))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(msg(e), "The provided key element does not match the schema");
    let e = c
        .put_item()
        .table_name(t)
        .item("leaseOwner", s("x"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(
        e.message(),
        Some("One or more parameter values were invalid: Missing the key leaseKey in the item")
    );
}

async fn put_numbered(c: &Client, t: &str, hash: &str, range: i64) {
    c.put_item()
        .table_name(t)
        .item("pk", s(hash))
        .item("sk", n(range))
        .item("payload", s(&format!("{hash}/{range}")))
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn scan_and_query_page_with_limit_and_exclusive_start_key() {
    let eddy = Eddy::start();
    let c = eddy.dynamodb_client();
    let t = "paged";
    c.create_table()
        .table_name(t)
        .key_schema(key_element("pk", KeyType::Hash))
        .key_schema(key_element("sk", KeyType::Range))
        .attribute_definitions(definition("pk", ScalarAttributeType::S))
        .attribute_definitions(definition("sk", ScalarAttributeType::N))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    for h in ["a", "b", "c"] {
        for r in 0..9 {
            put_numbered(&c, t, h, r * 5 - 10).await;
        }
    }

    // Scan in pages of 4: every item exactly once.
    let mut seen = Vec::new();
    let mut start = None;
    let mut pages = 0;
    loop {
        let out = c
            .scan()
            .table_name(t)
            .limit(4)
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        pages += 1;
        assert!(out.count <= 4);
        for it in out.items() {
            seen.push(it["payload"].as_s().unwrap().clone());
        }
        start = out.last_evaluated_key;
        if start.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), 27);
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 27);
    assert!(pages >= 7);

    // Parallel scan: the segments partition the table.
    let mut union = BTreeSet::new();
    for seg in 0..3 {
        let out = c
            .scan()
            .table_name(t)
            .segment(seg)
            .total_segments(3)
            .send()
            .await
            .unwrap();
        for it in out.items() {
            assert!(union.insert(it["payload"].as_s().unwrap().clone()));
        }
    }
    assert_eq!(union.len(), 27);

    // Scan with a filter counts what it scanned and what matched.
    let out = c
        .scan()
        .table_name(t)
        .filter_expression("sk >= :z")
        .expression_attribute_values(":z", n(0))
        .send()
        .await
        .unwrap();
    assert_eq!((out.count, out.scanned_count), (21, 27));

    // Query: hash equality and a numeric range, in order, both ways, paged.
    let query = |forward: bool, start: Option<Item>| {
        c.query()
            .table_name(t)
            .key_condition_expression("pk = :h AND sk BETWEEN :lo AND :hi")
            .expression_attribute_values(":h", s("b"))
            .expression_attribute_values(":lo", n(-5))
            .expression_attribute_values(":hi", n(20))
            .scan_index_forward(forward)
            .limit(2)
            .set_exclusive_start_key(start)
            .send()
    };
    for forward in [true, false] {
        let mut got = Vec::new();
        let mut start = None;
        loop {
            let out = query(forward, start).await.unwrap();
            for it in out.items() {
                got.push(it["sk"].as_n().unwrap().parse::<i64>().unwrap());
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        let mut want = vec![-5, 0, 5, 10, 15, 20];
        if !forward {
            want.reverse();
        }
        assert_eq!(got, want, "forward={forward}");
    }

    // Legacy KeyConditions.
    let out = c
        .query()
        .table_name(t)
        .key_conditions(
            "pk",
            Condition::builder()
                .comparison_operator(ComparisonOperator::Eq)
                .attribute_value_list(s("c"))
                .build()
                .unwrap(),
        )
        .key_conditions(
            "sk",
            Condition::builder()
                .comparison_operator(ComparisonOperator::Lt)
                .attribute_value_list(n(0))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(out.count, 2);
    assert_eq!(out.items()[0]["sk"], n(-10));

    let err = c
        .query()
        .table_name(t)
        .key_condition_expression("sk = :v")
        .expression_attribute_values(":v", n(1))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(
        err.message(),
        Some("Query condition missed key schema element: pk")
    );
}

#[tokio::test]
async fn gsi_added_by_update_table_answers_queries_by_owner() {
    let eddy = Eddy::start();
    let c = eddy.dynamodb_client();
    let t = "kcl3";
    create_lease_table(&c, t).await;
    for (i, owner) in ["w1", "w2", "w1", "w1", "w2"].iter().enumerate() {
        c.put_item()
            .table_name(t)
            .set_item(Some(lease(&format!("shardId-{i:012}"), owner, 1)))
            .send()
            .await
            .unwrap();
    }
    // A lease without an owner is not in the index.
    c.put_item()
        .table_name(t)
        .item("leaseKey", s("shardId-unowned"))
        .item("leaseCounter", n(0))
        .send()
        .await
        .unwrap();

    let out = c
        .update_table()
        .table_name(t)
        .attribute_definitions(definition("leaseOwner", ScalarAttributeType::S))
        .attribute_definitions(definition("leaseKey", ScalarAttributeType::S))
        .global_secondary_index_updates(
            GlobalSecondaryIndexUpdate::builder()
                .create(
                    CreateGlobalSecondaryIndexAction::builder()
                        .index_name("LeaseOwnerToLeaseKeyIndex")
                        .key_schema(key_element("leaseOwner", KeyType::Hash))
                        .key_schema(key_element("leaseKey", KeyType::Range))
                        .projection(
                            Projection::builder()
                                .projection_type(ProjectionType::KeysOnly)
                                .build(),
                        )
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let gsi = &out
        .table_description
        .unwrap()
        .global_secondary_indexes
        .unwrap()[0];
    assert_eq!(gsi.index_name(), Some("LeaseOwnerToLeaseKeyIndex"));
    assert_eq!(gsi.index_status().unwrap().as_str(), "ACTIVE");

    let desc = c
        .describe_table()
        .table_name(t)
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    assert_eq!(desc.global_secondary_indexes().len(), 1);
    assert_eq!(desc.global_secondary_indexes()[0].item_count, Some(5));

    let mut keys = Vec::new();
    let mut start = None;
    loop {
        let out = c
            .query()
            .table_name(t)
            .index_name("LeaseOwnerToLeaseKeyIndex")
            .key_condition_expression("leaseOwner = :o")
            .expression_attribute_values(":o", s("w1"))
            .limit(2)
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        for it in out.items() {
            // KEYS_ONLY: table key and index key, nothing else.
            assert_eq!(
                it.keys().cloned().collect::<BTreeSet<_>>(),
                BTreeSet::from(["leaseKey".to_string(), "leaseOwner".to_string()])
            );
            keys.push(it["leaseKey"].as_s().unwrap().clone());
        }
        start = out.last_evaluated_key;
        if start.is_none() {
            break;
        }
    }
    assert_eq!(
        keys,
        [
            "shardId-000000000000",
            "shardId-000000000002",
            "shardId-000000000003"
        ]
    );

    // The index follows writes.
    c.update_item()
        .table_name(t)
        .key("leaseKey", s("shardId-000000000001"))
        .update_expression("SET leaseOwner = :o")
        .expression_attribute_values(":o", s("w1"))
        .send()
        .await
        .unwrap();
    let out = c
        .query()
        .table_name(t)
        .index_name("LeaseOwnerToLeaseKeyIndex")
        .key_condition_expression("leaseOwner = :o")
        .expression_attribute_values(":o", s("w1"))
        .select(aws_sdk_dynamodb::types::Select::Count)
        .send()
        .await
        .unwrap();
    assert_eq!(out.count, 4);

    let err = c
        .query()
        .table_name(t)
        .index_name("LeaseOwnerToLeaseKeyIndex")
        .key_condition_expression("leaseOwner = :o")
        .expression_attribute_values(":o", s("w1"))
        .consistent_read(true)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(
        err.message(),
        Some("Consistent reads are not supported on global secondary indexes")
    );
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9_and_restart() {
    let mut eddy = Eddy::start();
    let c = eddy.dynamodb_client();
    create_lease_table(&c, "durable").await;
    c.update_table()
        .table_name("durable")
        .attribute_definitions(definition("leaseOwner", ScalarAttributeType::S))
        .attribute_definitions(definition("leaseKey", ScalarAttributeType::S))
        .global_secondary_index_updates(
            GlobalSecondaryIndexUpdate::builder()
                .create(
                    CreateGlobalSecondaryIndexAction::builder()
                        .index_name("byOwner")
                        .key_schema(key_element("leaseOwner", KeyType::Hash))
                        .projection(
                            Projection::builder()
                                .projection_type(ProjectionType::All)
                                .build(),
                        )
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    create_lease_table(&c, "dropped").await;
    c.delete_table().table_name("dropped").send().await.unwrap();

    // Concurrent acknowledged writes, then updates and deletes.
    let mut tasks = Vec::new();
    for w in 0..4 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                c.put_item()
                    .table_name("durable")
                    .set_item(Some(lease(&format!("k-{w}-{i:02}"), &format!("w{w}"), 1)))
                    .send()
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for i in 0..25 {
        c.update_item()
            .table_name("durable")
            .key("leaseKey", s(&format!("k-0-{i:02}")))
            .attribute_updates("leaseCounter", put_update(n(2)))
            .send()
            .await
            .unwrap();
    }
    for i in 0..10 {
        c.delete_item()
            .table_name("durable")
            .key("leaseKey", s(&format!("k-1-{i:02}")))
            .send()
            .await
            .unwrap();
    }

    eddy.kill9();
    eddy.spawn();
    let c = eddy.dynamodb_client();
    let names = c.list_tables().send().await.unwrap().table_names.unwrap();
    assert_eq!(names, ["durable"]);
    let desc = c
        .describe_table()
        .table_name("durable")
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    assert_eq!(desc.global_secondary_indexes().len(), 1, "index survived");
    let out = c.scan().table_name("durable").send().await.unwrap();
    let items: HashMap<String, Item> = out
        .items()
        .iter()
        .map(|it| (it["leaseKey"].as_s().unwrap().clone(), it.clone()))
        .collect();
    assert_eq!(items.len(), 90);
    for i in 0..25 {
        assert_eq!(items[&format!("k-0-{i:02}")]["leaseCounter"], n(2));
        assert_eq!(items.contains_key(&format!("k-1-{i:02}")), i >= 10);
    }
    assert_eq!(
        items["k-3-24"]["parentShardId"],
        lease("x", "y", 1)["parentShardId"]
    );
    // And the table still takes conditional writes.
    c.put_item()
        .table_name("durable")
        .set_item(Some(lease("k-9", "w9", 1)))
        .condition_expression("attribute_not_exists(leaseKey)")
        .send()
        .await
        .unwrap();
    let out = c
        .query()
        .table_name("durable")
        .index_name("byOwner")
        .key_condition_expression("leaseOwner = :o")
        .expression_attribute_values(":o", s("w2"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.count, 25);
}

/// Raw JSON 1.0 over HTTP, to see the wire exactly as DynamoDB writes it.
async fn raw(eddy: &Eddy, op: &str, body: &str) -> (u16, String, serde_json::Value) {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", eddy.port))
        .await
        .unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .method("POST")
        .uri("/")
        .header("host", "localhost")
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amz-target", format!("DynamoDB_20120810.{op}"))
        .header("x-amz-date", "20260101T000000Z")
        .header("authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host;x-amz-date, Signature=0123456789abcdef")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        ct,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn errors_on_the_wire_are_typed_as_dynamodb_types_them() {
    let eddy = Eddy::start();
    let (status, ct, body) = raw(&eddy, "DescribeTable", r#"{"TableName":"nope"}"#).await;
    assert_eq!((status, ct.as_str()), (400, "application/x-amz-json-1.0"));
    assert_eq!(
        body,
        serde_json::json!({
            "__type": "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException",
            "message": "Requested resource not found: Table: nope not found"
        })
    );
    let (status, _, body) = raw(&eddy, "ListTables", r#"{"Limit":0}"#).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["__type"],
        "com.amazon.coral.validate#ValidationException"
    );
    assert_eq!(
        body["message"],
        "1 validation error detected: Value '0' at 'limit' failed to satisfy constraint: Member must have value greater than or equal to 1"
    );
    let (status, _, body) = raw(&eddy, "DescribeLimits", "{}").await;
    assert_eq!(status, 400);
    assert_eq!(
        body["__type"],
        "com.amazon.coral.service#UnknownOperationException"
    );
    let (status, _, body) = raw(
        &eddy,
        "CreateTable",
        r#"{"TableName":"t1","KeySchema":[{"AttributeName":"k","KeyType":"HASH"}],"AttributeDefinitions":[{"AttributeName":"k","AttributeType":"S"}],"BillingMode":"PAY_PER_REQUEST"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["TableDescription"]["TableStatus"], "ACTIVE");
    raw(
        &eddy,
        "PutItem",
        r#"{"TableName":"t1","Item":{"k":{"S":"a"},"n":{"N":"1"}}}"#,
    )
    .await;
    let (status, _, body) = raw(
        &eddy,
        "PutItem",
        r#"{"TableName":"t1","Item":{"k":{"S":"a"}},"Expected":{"k":{"Exists":false}},"ReturnValuesOnConditionCheckFailure":"ALL_OLD"}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        serde_json::json!({
            "__type": "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException",
            "message": "The conditional request failed",
            "Item": {"k": {"S": "a"}, "n": {"N": "1"}}
        })
    );
    // Numbers come back in canonical form.
    raw(
        &eddy,
        "PutItem",
        r#"{"TableName":"t1","Item":{"k":{"S":"b"},"n":{"N":"007.50"}}}"#,
    )
    .await;
    let (_, _, body) = raw(
        &eddy,
        "GetItem",
        r#"{"TableName":"t1","Key":{"k":{"S":"b"}}}"#,
    )
    .await;
    assert_eq!(body["Item"]["n"]["N"], "7.5");
    // Kinesis still answers on the same port with its own protocol.
    let k = eddy.client();
    k.list_streams().send().await.unwrap();
}

#[tokio::test]
async fn transactions_and_batches_are_all_or_nothing() {
    use aws_sdk_dynamodb::types::{
        ConditionCheck, Delete, Get, KeysAndAttributes, Put, PutRequest, TransactGetItem,
        TransactWriteItem, Update, WriteRequest,
    };
    let mut eddy = Eddy::start();
    let c = eddy.dynamodb_client();
    create_lease_table(&c, "leases").await;
    create_lease_table(&c, "coordinator").await;

    // BatchWriteItem across two tables, then BatchGetItem.
    let put = |k: &str| {
        WriteRequest::builder()
            .put_request(
                PutRequest::builder()
                    .set_item(Some(lease(k, "w1", 1)))
                    .build()
                    .unwrap(),
            )
            .build()
    };
    let out = c
        .batch_write_item()
        .request_items("leases", vec![put("a"), put("b"), put("c")])
        .request_items("coordinator", vec![put("Leader")])
        .send()
        .await
        .unwrap();
    assert!(out.unprocessed_items().is_none_or(|u| u.is_empty()));
    let keys = |ks: &[&str]| {
        KeysAndAttributes::builder()
            .set_keys(Some(
                ks.iter()
                    .map(|k| HashMap::from([("leaseKey".to_string(), s(k))]))
                    .collect(),
            ))
            .build()
            .unwrap()
    };
    let got = c
        .batch_get_item()
        .request_items("leases", keys(&["a", "c", "zz"]))
        .request_items("coordinator", keys(&["Leader"]))
        .send()
        .await
        .unwrap();
    let responses = got.responses.unwrap();
    assert_eq!(responses["leases"].len(), 2);
    assert_eq!(responses["coordinator"].len(), 1);

    // A transaction whose condition fails writes nothing and says which.
    let tx = |counter: i64| {
        c.transact_write_items()
            .transact_items(
                TransactWriteItem::builder()
                    .condition_check(
                        ConditionCheck::builder()
                            .table_name("coordinator")
                            .key("leaseKey", s("Leader"))
                            .condition_expression("leaseOwner = :me")
                            .expression_attribute_values(":me", s("w1"))
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .transact_items(
                TransactWriteItem::builder()
                    .update(
                        Update::builder()
                            .table_name("leases")
                            .key("leaseKey", s("a"))
                            .update_expression("SET leaseOwner = :o ADD leaseCounter :one")
                            .condition_expression("leaseCounter = :n")
                            .expression_attribute_values(":o", s("w2"))
                            .expression_attribute_values(":one", n(1))
                            .expression_attribute_values(":n", n(counter))
                            .return_values_on_condition_check_failure(
                                ReturnValuesOnConditionCheckFailure::AllOld,
                            )
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .transact_items(
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name("leases")
                            .set_item(Some(lease("d", "w2", 1)))
                            .condition_expression("attribute_not_exists(leaseKey)")
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .transact_items(
                TransactWriteItem::builder()
                    .delete(
                        Delete::builder()
                            .table_name("leases")
                            .key("leaseKey", s("b"))
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .send()
    };
    let err = tx(7).await.unwrap_err().into_service_error();
    let aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(tce) = err else {
        panic!("expected TransactionCanceledException, got {err:?}");
    };
    let codes: Vec<&str> = tce
        .cancellation_reasons()
        .iter()
        .map(|r| r.code().unwrap())
        .collect();
    assert_eq!(codes, ["None", "ConditionalCheckFailed", "None", "None"]);
    assert_eq!(
        tce.cancellation_reasons()[1].item.as_ref().unwrap()["leaseCounter"],
        n(1)
    );
    assert_eq!(
        tce.message(),
        Some(
            "Transaction cancelled, please refer cancellation reasons for specific reasons [None, ConditionalCheckFailed, None, None]"
        )
    );
    assert!(get_lease(&c, "leases", "d").await.is_none());
    assert!(get_lease(&c, "leases", "b").await.is_some());
    assert_eq!(
        get_lease(&c, "leases", "a").await.unwrap()["leaseOwner"],
        s("w1")
    );

    // With the right counter every write happens, and survives kill -9.
    tx(1).await.unwrap();
    eddy.kill9();
    eddy.spawn();
    let c = eddy.dynamodb_client();
    let a = get_lease(&c, "leases", "a").await.unwrap();
    assert_eq!(
        (a["leaseOwner"].clone(), a["leaseCounter"].clone()),
        (s("w2"), n(2))
    );
    assert!(get_lease(&c, "leases", "d").await.is_some());
    assert!(get_lease(&c, "leases", "b").await.is_none());

    let got = c
        .transact_get_items()
        .transact_items(
            TransactGetItem::builder()
                .get(
                    Get::builder()
                        .table_name("leases")
                        .key("leaseKey", s("a"))
                        .projection_expression("leaseCounter")
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .transact_items(
            TransactGetItem::builder()
                .get(
                    Get::builder()
                        .table_name("leases")
                        .key("leaseKey", s("b"))
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let r = got.responses();
    assert_eq!(
        r[0].item.as_ref().unwrap(),
        &HashMap::from([("leaseCounter".to_string(), n(2))])
    );
    assert!(r[1].item.is_none());

    // Two operations on one item are refused.
    let err = c
        .transact_write_items()
        .transact_items(
            TransactWriteItem::builder()
                .delete(
                    Delete::builder()
                        .table_name("leases")
                        .key("leaseKey", s("a"))
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .transact_items(
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name("leases")
                        .set_item(Some(lease("a", "w3", 9)))
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(
        err.message(),
        Some("Transaction request cannot include multiple operations on one item")
    );
}

#[tokio::test]
async fn ttl_and_tag_settings_are_kept_across_restart() {
    use aws_sdk_dynamodb::types::{Tag, TimeToLiveSpecification, TimeToLiveStatus};
    let mut eddy = Eddy::start();
    let c = eddy.dynamodb_client();
    c.create_table()
        .table_name("WorkerMetricStats")
        .key_schema(key_element("wid", KeyType::Hash))
        .attribute_definitions(definition("wid", ScalarAttributeType::S))
        .billing_mode(BillingMode::PayPerRequest)
        .tags(Tag::builder().key("app").value("kcl").build().unwrap())
        .send()
        .await
        .unwrap();
    let ttl = |enabled: bool| {
        c.update_time_to_live()
            .table_name("WorkerMetricStats")
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(enabled)
                    .attribute_name("expiresAt")
                    .build()
                    .unwrap(),
            )
            .send()
    };
    ttl(true).await.unwrap();
    let err = ttl(true).await.unwrap_err().into_service_error();
    assert_eq!(err.message(), Some("TimeToLive is already enabled"));
    let arn = c
        .describe_table()
        .table_name("WorkerMetricStats")
        .send()
        .await
        .unwrap()
        .table
        .unwrap()
        .table_arn
        .unwrap();
    c.tag_resource()
        .resource_arn(&arn)
        .tags(Tag::builder().key("team").value("streams").build().unwrap())
        .send()
        .await
        .unwrap();
    c.untag_resource()
        .resource_arn(&arn)
        .tag_keys("app")
        .send()
        .await
        .unwrap();

    eddy.kill9();
    eddy.spawn();
    let c = eddy.dynamodb_client();
    let d = c
        .describe_time_to_live()
        .table_name("WorkerMetricStats")
        .send()
        .await
        .unwrap()
        .time_to_live_description
        .unwrap();
    assert_eq!(d.time_to_live_status, Some(TimeToLiveStatus::Enabled));
    assert_eq!(d.attribute_name.as_deref(), Some("expiresAt"));
    let tags = c
        .list_tags_of_resource()
        .resource_arn(&arn)
        .send()
        .await
        .unwrap()
        .tags
        .unwrap();
    assert_eq!(tags.len(), 1);
    assert_eq!((tags[0].key(), tags[0].value()), ("team", "streams"));
}
