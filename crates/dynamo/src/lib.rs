//! `eddy-dynamo`: the DynamoDB API subset that lease managers (the KCL and
//! Eddy's consumer library) use, so that `eddy serve` alone is enough.
//!
//! Owns: tables (create, describe, update with GSIs, delete, list,
//! continuous-backup settings), items (get, put, update, delete, scan,
//! query) with both the legacy (`Expected`, `AttributeUpdates`,
//! `KeyConditions`) and the expression forms of conditions and updates,
//! and their durable state under `<data-dir>/dynamo/` (one checksummed
//! journal per table, fsync'd per write, compacted atomically).
//!
//! Requests arrive decoded and validated against the DynamoDB model by
//! `eddy-wire`; [`Dynamo::handle`] runs one operation. It blocks on disk
//! (fsync), so async callers run it on a blocking thread. Every table has
//! its own lock; a conditional write checks and writes under it.

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
        std::fs::create_dir_all(&dir)?;
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
            other => Err(DynamoError::Validation(format!(
                "{other} is not supported by Eddy yet."
            ))),
        }
    }

    fn table(&self, name: &str) -> Option<Arc<Mutex<Table>>> {
        self.inner.tables.read().unwrap().get(name).cloned()
    }
}
