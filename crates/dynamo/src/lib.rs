//! `eddy-dynamo`: the DynamoDB API subset that lease managers (the KCL and
//! Eddy's consumer library) use, so that `eddy serve` alone is enough.
//!
//! Owns: tables (create, describe, update with GSIs, delete, list,
//! continuous-backup settings), items (get, put, update, delete, scan,
//! query, batch get/write, transactional get/write) with both the legacy
//! (`Expected`, `AttributeUpdates`, `KeyConditions`) and the expression
//! forms of conditions and updates,
//! and their durable state under `<data-dir>/dynamo/` (one checksummed
//! journal per table, fsync'd per write, compacted atomically).
//!
//! Requests arrive decoded and validated against the DynamoDB model by
//! `eddy-wire`; [`Dynamo::handle`] runs one operation. It blocks on disk
//! (fsync), so async callers run it on a blocking thread. Every table has
//! its own lock; a conditional write checks and writes under it. Requests
//! spanning tables (batches, transactions) lock them in name order; their
//! writes to one table are one journal record (atomic across a crash),
//! but writes to several tables are not atomic across a crash.

mod attr;
mod error;
mod expr;
mod journal;
mod legacy;
mod ops;
mod table;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use eddy_wire::Value;

pub use error::{DynamoError, Result};

use journal::Journal;
use table::Table;

/// The operations served (the rest of the model answers
/// `UnknownOperationException`).
pub const OPERATIONS: &[&str] = &[
    "CreateTable",
    "DescribeTable",
    "UpdateTable",
    "DeleteTable",
    "ListTables",
    "GetItem",
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "Scan",
    "Query",
    "UpdateContinuousBackups",
    "DescribeContinuousBackups",
    "BatchGetItem",
    "BatchWriteItem",
    "TransactGetItems",
    "TransactWriteItems",
    "UpdateTimeToLive",
    "DescribeTimeToLive",
    "TagResource",
    "UntagResource",
    "ListTagsOfResource",
];

/// The DynamoDB service: all tables of one data directory.
#[derive(Clone)]
pub struct Dynamo {
    inner: Arc<Inner>,
}

struct Inner {
    /// `<data-dir>/dynamo/tables`.
    dir: PathBuf,
    tables: RwLock<BTreeMap<String, Arc<Mutex<Table>>>>,
}

/// Journal file of a table (names longer than a file name allows are
/// shortened and made unique with a checksum).
fn journal_path(dir: &Path, name: &str) -> PathBuf {
    if name.len() <= 200 {
        dir.join(format!("{name}.journal"))
    } else {
        dir.join(format!(
            "{}-{:08x}.journal",
            &name[..200],
            crc32c::crc32c(name.as_bytes())
        ))
    }
}

impl Dynamo {
    /// Opens (creating if needed) the state under `dir` and replays every
    /// table's journal.
    pub fn open(dir: impl AsRef<Path>) -> std::io::Result<Dynamo> {
        let dir = dir.as_ref().join("tables");
        if !dir.is_dir() {
            std::fs::create_dir_all(&dir)?;
            // Make the new directories themselves durable before any table
            // is (once: later starts find them in place).
            for d in dir.ancestors().take(3) {
                if let Ok(f) = std::fs::File::open(d) {
                    f.sync_all()?;
                }
            }
        }
        let mut tables = BTreeMap::new();
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            match path.extension().and_then(|e| e.to_str()) {
                Some("journal") => {}
                Some("tmp") => {
                    // An interrupted compaction or creation.
                    std::fs::remove_file(&path)?;
                    continue;
                }
                _ => continue,
            }
            let (j, records) = Journal::open(&path)?;
            match Table::replay(j, records) {
                Some(t) => {
                    tables.insert(t.meta.name.clone(), Arc::new(Mutex::new(t)));
                }
                None => {
                    tracing::warn!(path = %path.display(), "dynamo journal without table metadata; ignored");
                }
            }
        }
        Ok(Dynamo {
            inner: Arc::new(Inner {
                dir,
                tables: RwLock::new(tables),
            }),
        })
    }

    /// Runs one operation on a decoded, model-validated input.
    pub fn handle(&self, op: &str, input: &Value) -> Result<Value> {
        match op {
            "CreateTable" => ops::create_table(self, input),
            "DescribeTable" => ops::describe_table(self, input),
            "UpdateTable" => ops::update_table(self, input),
            "DeleteTable" => ops::delete_table(self, input),
            "ListTables" => ops::list_tables(self, input),
            "GetItem" => ops::get_item(self, input),
            "PutItem" => ops::put_item(self, input),
            "UpdateItem" => ops::update_item(self, input),
            "DeleteItem" => ops::delete_item(self, input),
            "Scan" => ops::scan(self, input),
            "Query" => ops::query(self, input),
            "UpdateContinuousBackups" => ops::update_continuous_backups(self, input),
            "DescribeContinuousBackups" => ops::describe_continuous_backups(self, input),
            "BatchGetItem" => ops::batch_get_item(self, input),
            "BatchWriteItem" => ops::batch_write_item(self, input),
            "TransactGetItems" => ops::transact_get_items(self, input),
            "TransactWriteItems" => ops::transact_write_items(self, input),
            "UpdateTimeToLive" => ops::update_time_to_live(self, input),
            "DescribeTimeToLive" => ops::describe_time_to_live(self, input),
            "TagResource" => ops::tag_resource(self, input),
            "UntagResource" => ops::untag_resource(self, input),
            "ListTagsOfResource" => ops::list_tags_of_resource(self, input),
            other => Err(DynamoError::Validation(format!(
                "{other} is not supported by Eddy yet."
            ))),
        }
    }

    fn table(&self, name: &str) -> Option<Arc<Mutex<Table>>> {
        self.inner.tables.read().unwrap().get(name).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(d: &Dynamo, op: &str, body: &str) -> Result<Value> {
        let svc = eddy_wire::dynamodb();
        let o = svc.operation(op).unwrap();
        let input = svc
            .decode_valid(o, eddy_wire::Protocol::Json, body.as_bytes())
            .unwrap();
        d.handle(op, &input)
    }

    fn create(d: &Dynamo) {
        call(
            d,
            "CreateTable",
            r#"{"TableName":"leases","KeySchema":[{"AttributeName":"leaseKey","KeyType":"HASH"}],
                "AttributeDefinitions":[{"AttributeName":"leaseKey","AttributeType":"S"}],
                "BillingMode":"PAY_PER_REQUEST"}"#,
        )
        .unwrap();
    }

    fn counter(d: &Dynamo, key: &str) -> Option<String> {
        let out = call(
            d,
            "GetItem",
            &format!(r#"{{"TableName":"leases","Key":{{"leaseKey":{{"S":"{key}"}}}}}}"#),
        )
        .unwrap();
        out.get("Item")
            .and_then(|i| i.get("leaseCounter"))
            .and_then(|c| c.str("N"))
            .map(str::to_string)
    }

    fn journal_file(dir: &Path) -> PathBuf {
        dir.join("tables").join("leases.journal")
    }

    #[test]
    fn concurrent_conditional_renewals_have_exactly_one_winner() {
        let dir = tempfile::tempdir().unwrap();
        let d = Dynamo::open(dir.path()).unwrap();
        create(&d);
        call(
            &d,
            "PutItem",
            r#"{"TableName":"leases","Item":{"leaseKey":{"S":"s1"},"leaseCounter":{"N":"1"}}}"#,
        )
        .unwrap();
        let results: Vec<Result<Value>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|w| {
                    let d = d.clone();
                    s.spawn(move || {
                        call(
                            &d,
                            "UpdateItem",
                            &format!(
                                r#"{{"TableName":"leases","Key":{{"leaseKey":{{"S":"s1"}}}},
                                   "Expected":{{"leaseCounter":{{"Value":{{"N":"1"}}}}}},
                                   "AttributeUpdates":{{"leaseCounter":{{"Action":"ADD","Value":{{"N":"1"}}}},
                                                       "leaseOwner":{{"Action":"PUT","Value":{{"S":"w{w}"}}}}}}}}"#
                            ),
                        )
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let wins = results.iter().filter(|r| r.is_ok()).count();
        let lost = results
            .iter()
            .filter(|r| matches!(r, Err(DynamoError::ConditionFailed(None))))
            .count();
        assert_eq!((wins, lost), (1, 7));
        assert_eq!(counter(&d, "s1").as_deref(), Some("2"));
    }

    #[test]
    fn compaction_bounds_the_journal_and_keeps_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let d = Dynamo::open(dir.path()).unwrap();
        create(&d);
        let pad = "x".repeat(1000);
        let mut max_len = 0;
        for i in 0..600 {
            call(
                &d,
                "PutItem",
                &format!(
                    r#"{{"TableName":"leases","Item":{{"leaseKey":{{"S":"k{}"}},"leaseCounter":{{"N":"{i}"}},"pad":{{"S":"{pad}"}}}}}}"#,
                    i % 3
                ),
            )
            .unwrap();
            max_len = max_len.max(std::fs::metadata(journal_file(dir.path())).unwrap().len());
        }
        // 600 writes of ~1.1 KB would be ~650 KB without compaction.
        assert!(max_len < 300 * 1024, "journal grew to {max_len}");
        drop(d);
        let d = Dynamo::open(dir.path()).unwrap();
        assert_eq!(counter(&d, "k0").as_deref(), Some("597"));
        assert_eq!(counter(&d, "k1").as_deref(), Some("598"));
        assert_eq!(counter(&d, "k2").as_deref(), Some("599"));
    }

    #[test]
    fn reopen_after_a_torn_write_keeps_acknowledged_items_and_accepts_more() {
        let dir = tempfile::tempdir().unwrap();
        let d = Dynamo::open(dir.path()).unwrap();
        create(&d);
        call(
            &d,
            "PutItem",
            r#"{"TableName":"leases","Item":{"leaseKey":{"S":"a"},"leaseCounter":{"N":"5"}}}"#,
        )
        .unwrap();
        drop(d);
        // Half a frame at the end, as a crash mid-write leaves it.
        let path = journal_file(dir.path());
        let mut data = std::fs::read(&path).unwrap();
        data.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3, 4, b'{', b'"']);
        std::fs::write(&path, &data).unwrap();
        // And an interrupted compaction's temporary file.
        std::fs::write(path.with_extension("tmp"), b"garbage").unwrap();

        let d = Dynamo::open(dir.path()).unwrap();
        assert_eq!(counter(&d, "a").as_deref(), Some("5"));
        assert!(!path.with_extension("tmp").exists());
        call(
            &d,
            "PutItem",
            r#"{"TableName":"leases","Item":{"leaseKey":{"S":"b"},"leaseCounter":{"N":"6"}}}"#,
        )
        .unwrap();
        drop(d);
        let d = Dynamo::open(dir.path()).unwrap();
        assert_eq!(counter(&d, "a").as_deref(), Some("5"));
        assert_eq!(counter(&d, "b").as_deref(), Some("6"));
    }

    #[test]
    fn key_values_are_checked_as_dynamodb_checks_them() {
        let dir = tempfile::tempdir().unwrap();
        let d = Dynamo::open(dir.path()).unwrap();
        create(&d);
        let msg = |op: &str, body: &str| match call(&d, op, body) {
            Err(DynamoError::Validation(m)) => m,
            other => panic!("{op} {body}: {other:?}"),
        };
        assert_eq!(
            msg(
                "PutItem",
                r#"{"TableName":"leases","Item":{"leaseKey":{"S":""}}}"#
            ),
            "One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an empty string value. Key: leaseKey"
        );
        assert_eq!(
            msg(
                "GetItem",
                r#"{"TableName":"leases","Key":{"leaseKey":{"S":""}}}"#
            ),
            "One or more parameter values were invalid: The AttributeValue for a key attribute cannot contain an empty string value. Key: leaseKey"
        );
        assert_eq!(
            msg(
                "PutItem",
                r#"{"TableName":"leases","Item":{"leaseKey":{"N":"1"}}}"#
            ),
            "One or more parameter values were invalid: Type mismatch for key leaseKey expected: S actual: N"
        );
        let long = "k".repeat(2049);
        assert_eq!(
            msg(
                "PutItem",
                &format!(r#"{{"TableName":"leases","Item":{{"leaseKey":{{"S":"{long}"}}}}}}"#)
            ),
            "One or more parameter values were invalid: Size of hashkey has exceeded the maximum size limit of2048 bytes"
        );
        assert_eq!(
            msg(
                "GetItem",
                r#"{"TableName":"leases","Key":{"other":{"S":"a"}}}"#
            ),
            "The provided key element does not match the schema"
        );
    }

    #[test]
    fn deleted_tables_stay_deleted_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let d = Dynamo::open(dir.path()).unwrap();
        create(&d);
        call(&d, "DeleteTable", r#"{"TableName":"leases"}"#).unwrap();
        drop(d);
        let d = Dynamo::open(dir.path()).unwrap();
        let e = call(&d, "DescribeTable", r#"{"TableName":"leases"}"#).unwrap_err();
        assert_eq!(
            e,
            DynamoError::NotFound("Requested resource not found: Table: leases not found".into())
        );
        create(&d);
    }
}
