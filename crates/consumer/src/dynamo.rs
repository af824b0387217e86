//! The lease table in DynamoDB (or anything speaking its API: Eddy, dynalite),
//! through `aws-sdk-dynamodb`, with the KCL's legacy `Expected` +
//! `AttributeUpdates` conditions.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeAction, AttributeDefinition, AttributeValue, AttributeValueUpdate, BillingMode,
    ExpectedAttributeValue, KeySchemaElement, KeyType, ReturnValue, ScalarAttributeType,
    TableStatus,
};

use crate::lease::{Checkpoint, Lease, LeaseError, LeaseStore};

/// A lease table named after the application.
#[derive(Clone)]
pub struct DynamoLeaseStore {
    client: Client,
    table: String,
}

type Item = HashMap<String, AttributeValue>;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn put(v: AttributeValue) -> AttributeValueUpdate {
    AttributeValueUpdate::builder()
        .action(AttributeAction::Put)
        .value(v)
        .build()
}

fn delete() -> AttributeValueUpdate {
    AttributeValueUpdate::builder()
        .action(AttributeAction::Delete)
        .build()
}

fn equals(v: AttributeValue) -> ExpectedAttributeValue {
    ExpectedAttributeValue::builder().value(v).build()
}

fn absent() -> ExpectedAttributeValue {
    ExpectedAttributeValue::builder().exists(false).build()
}

fn owner_expectation(owner: &Option<String>) -> ExpectedAttributeValue {
    match owner {
        Some(o) => equals(s(o)),
        None => absent(),
    }
}

fn store_error<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    key: &str,
    e: SdkError<E, R>,
) -> LeaseError {
    if e.code() == Some("ConditionalCheckFailedException") {
        return LeaseError::ConditionFailed(key.to_string());
    }
    match e {
        SdkError::ServiceError(se) => {
            let err = se.into_err();
            LeaseError::Store(format!(
                "{}: {}",
                err.code().unwrap_or("error"),
                err.message().unwrap_or("")
            ))
        }
        other => LeaseError::Store(format!("{other:?}")),
    }
}

pub fn lease_to_item(l: &Lease) -> Item {
    let mut item = Item::new();
    item.insert("leaseKey".into(), s(&l.lease_key));
    if let Some(o) = &l.lease_owner {
        item.insert("leaseOwner".into(), s(o));
    }
    item.insert("leaseCounter".into(), n(l.lease_counter));
    item.insert("checkpoint".into(), s(l.checkpoint.as_attribute()));
    item.insert(
        "checkpointSubSequenceNumber".into(),
        n(l.checkpoint.sub_sequence()),
    );
    item.insert(
        "ownerSwitchesSinceCheckpoint".into(),
        n(l.owner_switches_since_checkpoint),
    );
    if !l.parent_shard_ids.is_empty() {
        item.insert(
            "parentShardId".into(),
            AttributeValue::Ss(l.parent_shard_ids.clone()),
        );
    }
    if let Some(h) = &l.starting_hash_key {
        item.insert("startingHashKey".into(), s(h));
    }
    if let Some(h) = &l.ending_hash_key {
        item.insert("endingHashKey".into(), s(h));
    }
    if let Some(o) = &l.checkpoint_owner {
        item.insert("checkpointOwner".into(), s(o));
    }
    item
}

pub fn item_to_lease(item: &Item) -> Option<Lease> {
    let get_s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let get_n = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let checkpoint = get_s("checkpoint").unwrap_or_else(|| "TRIM_HORIZON".into());
    Some(Lease {
        lease_key: get_s("leaseKey")?,
        lease_owner: get_s("leaseOwner"),
        lease_counter: get_n("leaseCounter"),
        checkpoint: Checkpoint::from_attributes(&checkpoint, get_n("checkpointSubSequenceNumber")),
        owner_switches_since_checkpoint: get_n("ownerSwitchesSinceCheckpoint"),
        parent_shard_ids: item
            .get("parentShardId")
            .and_then(|v| v.as_ss().ok())
            .cloned()
            .unwrap_or_default(),
        starting_hash_key: get_s("startingHashKey"),
        ending_hash_key: get_s("endingHashKey"),
        checkpoint_owner: get_s("checkpointOwner"),
    })
}

impl DynamoLeaseStore {
    pub fn new(client: Client, table: impl Into<String>) -> DynamoLeaseStore {
        DynamoLeaseStore {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn key(k: &str) -> Item {
        HashMap::from([("leaseKey".to_string(), s(k))])
    }

    async fn update(
        &self,
        key: &str,
        expected: Vec<(&str, ExpectedAttributeValue)>,
        updates: Vec<(&str, AttributeValueUpdate)>,
    ) -> Result<Lease, LeaseError> {
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(key)))
            .return_values(ReturnValue::AllNew);
        for (k, v) in expected {
            req = req.expected(k, v);
        }
        for (k, v) in updates {
            req = req.attribute_updates(k, v);
        }
        let out = req.send().await.map_err(|e| store_error(key, e))?;
        out.attributes()
            .and_then(item_to_lease)
            .ok_or_else(|| LeaseError::Store(format!("UpdateItem on {key} returned no item")))
    }
}

impl LeaseStore for DynamoLeaseStore {
    async fn ensure_table(&self) -> Result<(), LeaseError> {
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("leaseKey")
                    .key_type(KeyType::Hash)
                    .build()
                    .expect("complete key schema"),
            )
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("leaseKey")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .expect("complete attribute definition"),
            )
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        if let Err(e) = created
            && e.code() != Some("ResourceInUseException")
        {
            return Err(store_error(&self.table, e));
        }
        for _ in 0..600 {
            let d = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await;
            match d {
                Ok(d) if d.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) => {
                    return Ok(());
                }
                Ok(_) => {}
                Err(e) if e.code() == Some("ResourceNotFoundException") => {}
                Err(e) => return Err(store_error(&self.table, e)),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(LeaseError::Store(format!(
            "table {} did not become ACTIVE",
            self.table
        )))
    }

    async fn list_leases(&self) -> Result<Vec<Lease>, LeaseError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| store_error(&self.table, e))?;
            out.extend(page.items().iter().filter_map(item_to_lease));
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.lease_key.cmp(&b.lease_key));
        Ok(out)
    }

    async fn get_lease(&self, key: &str) -> Result<Option<Lease>, LeaseError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error(key, e))?;
        Ok(out.item().and_then(item_to_lease))
    }

    async fn create_lease_if_not_exists(&self, lease: &Lease) -> Result<bool, LeaseError> {
        let r = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(lease_to_item(lease)))
            .expected("leaseKey", absent())
            .send()
            .await
            .map_err(|e| store_error(&lease.lease_key, e));
        match r {
            Ok(_) => Ok(true),
            Err(LeaseError::ConditionFailed(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn renew_lease(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        self.update(
            &lease.lease_key,
            vec![
                ("leaseCounter", equals(n(lease.lease_counter))),
                ("leaseOwner", owner_expectation(&lease.lease_owner)),
            ],
            vec![("leaseCounter", put(n(lease.lease_counter + 1)))],
        )
        .await
    }

    async fn take_lease(&self, lease: &Lease, owner: &str) -> Result<Lease, LeaseError> {
        self.update(
            &lease.lease_key,
            vec![("leaseCounter", equals(n(lease.lease_counter)))],
            vec![
                ("leaseOwner", put(s(owner))),
                ("leaseCounter", put(n(lease.lease_counter + 1))),
                (
                    "ownerSwitchesSinceCheckpoint",
                    AttributeValueUpdate::builder()
                        .action(AttributeAction::Add)
                        .value(n(1))
                        .build(),
                ),
                ("checkpointOwner", delete()),
            ],
        )
        .await
    }

    async fn request_handoff(&self, lease: &Lease, new_owner: &str) -> Result<Lease, LeaseError> {
        let Some(current) = &lease.lease_owner else {
            return self.take_lease(lease, new_owner).await;
        };
        self.update(
            &lease.lease_key,
            vec![
                ("leaseCounter", equals(n(lease.lease_counter))),
                ("leaseOwner", equals(s(current))),
            ],
            vec![
                ("leaseOwner", put(s(new_owner))),
                ("checkpointOwner", put(s(current))),
                ("leaseCounter", put(n(lease.lease_counter + 1))),
                (
                    "ownerSwitchesSinceCheckpoint",
                    AttributeValueUpdate::builder()
                        .action(AttributeAction::Add)
                        .value(n(1))
                        .build(),
                ),
            ],
        )
        .await
    }

    async fn complete_handoff(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        let Some(owner) = &lease.checkpoint_owner else {
            return Err(LeaseError::ConditionFailed(lease.lease_key.clone()));
        };
        self.update(
            &lease.lease_key,
            vec![
                ("leaseCounter", equals(n(lease.lease_counter))),
                ("checkpointOwner", equals(s(owner))),
            ],
            vec![
                ("checkpointOwner", delete()),
                ("leaseCounter", put(n(lease.lease_counter + 1))),
            ],
        )
        .await
    }

    async fn evict_lease(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        self.update(
            &lease.lease_key,
            vec![
                ("leaseOwner", owner_expectation(&lease.lease_owner)),
                ("leaseKey", equals(s(&lease.lease_key))),
            ],
            vec![
                ("leaseOwner", delete()),
                ("leaseCounter", put(n(lease.lease_counter + 1))),
            ],
        )
        .await
    }

    async fn update_checkpoint(
        &self,
        lease: &Lease,
        checkpoint: &Checkpoint,
    ) -> Result<Lease, LeaseError> {
        self.update(
            &lease.lease_key,
            vec![
                ("leaseCounter", equals(n(lease.lease_counter))),
                ("leaseOwner", owner_expectation(&lease.lease_owner)),
                (
                    "checkpointOwner",
                    owner_expectation(&lease.checkpoint_owner),
                ),
            ],
            vec![
                ("checkpoint", put(s(checkpoint.as_attribute()))),
                (
                    "checkpointSubSequenceNumber",
                    put(n(checkpoint.sub_sequence())),
                ),
                ("ownerSwitchesSinceCheckpoint", put(n(0))),
                ("leaseCounter", put(n(lease.lease_counter + 1))),
            ],
        )
        .await
    }
}
