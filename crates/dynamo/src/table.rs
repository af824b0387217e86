//! Table metadata, item keys, and one table's live state with its journal.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use eddy_wire::Value;
use serde::{Deserialize, Serialize};

use crate::attr::{Attr, Decimal, Item};
use crate::error::{Result, invalid, invalid_param};
use crate::journal::{Journal, Record};

/// A secondary index (global or local).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexMeta {
    pub name: String,
    pub hash: String,
    pub range: Option<String>,
    /// `ALL`, `KEYS_ONLY` or `INCLUDE`.
    pub projection: String,
    #[serde(default)]
    pub non_key: Vec<String>,
    #[serde(default)]
    pub read: i64,
    #[serde(default)]
    pub write: i64,
}

/// Everything DescribeTable tells besides the items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableMeta {
    pub name: String,
    pub id: String,
    /// `AttributeDefinitions`: (name, `S`|`N`|`B`).
    pub attributes: Vec<(String, String)>,
    pub hash: String,
    pub range: Option<String>,
    /// `PROVISIONED` or `PAY_PER_REQUEST`.
    pub billing: String,
    pub read: i64,
    pub write: i64,
    #[serde(default)]
    pub gsis: Vec<IndexMeta>,
    #[serde(default)]
    pub lsis: Vec<IndexMeta>,
    /// Creation time, epoch milliseconds.
    pub created_ms: i64,
    #[serde(default)]
    pub pitr: bool,
    #[serde(default)]
    pub deletion_protection: bool,
    /// Time-to-live attribute when TTL is enabled (items are not expired
    /// by Eddy; the setting is kept and described).
    #[serde(default)]
    pub ttl: Option<String>,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
}

impl TableMeta {
    #[cfg(test)]
    pub fn for_tests(name: &str, hash: &str) -> TableMeta {
        TableMeta {
            name: name.into(),
            id: "00000000-0000-0000-0000-000000000000".into(),
            attributes: vec![(hash.into(), "S".into())],
            hash: hash.into(),
            range: None,
            billing: "PAY_PER_REQUEST".into(),
            read: 0,
            write: 0,
            gsis: vec![],
            lsis: vec![],
            created_ms: 0,
            pitr: false,
            deletion_protection: false,
            ttl: None,
            tags: vec![],
        }
    }

    pub fn attr_type(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.as_str())
    }

    pub fn arn(&self) -> String {
        format!(
            "arn:aws:dynamodb:us-east-1:000000000000:table/{}",
            self.name
        )
    }

    pub fn index(&self, name: &str) -> Option<&IndexMeta> {
        self.gsis
            .iter()
            .chain(self.lsis.iter())
            .find(|i| i.name == name)
    }

    pub fn is_gsi(&self, name: &str) -> bool {
        self.gsis.iter().any(|i| i.name == name)
    }

    /// Names of the table's key attributes.
    pub fn key_names(&self) -> Vec<&str> {
        let mut v = vec![self.hash.as_str()];
        if let Some(r) = &self.range {
            v.push(r);
        }
        v
    }
}

/// A key attribute value, ordered as DynamoDB orders sort keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyVal {
    S(String),
    N(Decimal),
    B(Vec<u8>),
}

impl Ord for KeyVal {
    fn cmp(&self, o: &KeyVal) -> Ordering {
        match (self, o) {
            (KeyVal::S(a), KeyVal::S(b)) => a.as_bytes().cmp(b.as_bytes()),
            (KeyVal::N(a), KeyVal::N(b)) => a.cmp(b),
            (KeyVal::B(a), KeyVal::B(b)) => a.cmp(b),
            _ => self.rank().cmp(&o.rank()),
        }
    }
}

impl PartialOrd for KeyVal {
    fn partial_cmp(&self, o: &KeyVal) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl KeyVal {
    fn rank(&self) -> u8 {
        match self {
            KeyVal::S(_) => 0,
            KeyVal::N(_) => 1,
            KeyVal::B(_) => 2,
        }
    }

    /// The key value of `a` if it has type `ty` (`S`, `N`, `B`).
    pub fn of(a: &Attr, ty: &str) -> Option<KeyVal> {
        match (a, ty) {
            (Attr::S(s), "S") => Some(KeyVal::S(s.clone())),
            (Attr::N(n), "N") => Decimal::parse(n).map(KeyVal::N),
            (Attr::B(b), "B") => Some(KeyVal::B(b.clone())),
            _ => None,
        }
    }
}

/// A primary key: (partition, sort).
pub type Key = (KeyVal, Option<KeyVal>);

/// The key of a whole item (PutItem): every key attribute present, of its
/// declared type, non-empty.
pub fn item_key(meta: &TableMeta, item: &Item) -> Result<Key> {
    key_of(meta, item, "One or more parameter values are not valid.")
}

fn key_of(meta: &TableMeta, item: &Item, empty_prefix: &str) -> Result<Key> {
    let one = |name: &str, is_hash: bool| -> Result<KeyVal> {
        let ty = meta.attr_type(name).unwrap_or("S");
        let a = item
            .get(name)
            .ok_or_else(|| invalid_param(format!("Missing the key {name} in the item")))?;
        let kv = KeyVal::of(a, ty).ok_or_else(|| {
            invalid_param(format!(
                "Type mismatch for key {name} expected: {ty} actual: {}",
                a.type_name()
            ))
        })?;
        let len = match &kv {
            KeyVal::S(s) => s.len(),
            KeyVal::B(b) => b.len(),
            KeyVal::N(_) => 1,
        };
        if len == 0 {
            return Err(invalid(format!(
                "{empty_prefix} The AttributeValue for a key attribute cannot contain an empty {} value. Key: {name}",
                if ty == "S" { "string" } else { "binary" }
            )));
        }
        if is_hash && len > 2048 {
            return Err(invalid_param(
                "Size of hashkey has exceeded the maximum size limit of2048 bytes",
            ));
        }
        if !is_hash && len > 1024 {
            return Err(invalid_param(
                "Aggregated size of all range keys has exceeded the size limit of 1024 bytes",
            ));
        }
        Ok(kv)
    };
    Ok((
        one(&meta.hash, true)?,
        meta.range.as_deref().map(|r| one(r, false)).transpose()?,
    ))
}

/// The key of a `Key` parameter: exactly the key attributes.
pub fn request_key(meta: &TableMeta, key: &Item) -> Result<Key> {
    let mismatch = || invalid("The provided key element does not match the schema");
    if key.len() != meta.key_names().len() {
        return Err(mismatch());
    }
    for name in meta.key_names() {
        let a = key.get(name).ok_or_else(mismatch)?;
        let ty = meta.attr_type(name).unwrap_or("S");
        if KeyVal::of(a, ty).is_none() {
            return Err(mismatch());
        }
    }
    key_of(meta, key, "One or more parameter values were invalid:")
}

/// The key attributes of an item, as an item.
pub fn key_item(meta: &TableMeta, item: &Item) -> Item {
    meta.key_names()
        .into_iter()
        .filter_map(|n| item.get(n).map(|a| (n.to_string(), a.clone())))
        .collect()
}

/// One table: metadata, items in key order, the journal.
pub struct Table {
    pub meta: TableMeta,
    pub items: BTreeMap<Key, Item>,
    /// `None` once the table is deleted.
    pub journal: Option<Journal>,
    /// Bytes the live state would take in a freshly written journal.
    live_bytes: u64,
}

fn record_bytes(rec: &Record) -> u64 {
    serde_json::to_vec(rec)
        .map(|v| v.len() as u64 + 8)
        .unwrap_or(0)
}

/// The journal is compacted when it is this many times the live state.
const COMPACT_FACTOR: u64 = 4;
/// ... and at least this large.
const COMPACT_MIN: u64 = 256 * 1024;

impl Table {
    pub fn new(meta: TableMeta, journal: Journal) -> Table {
        let live_bytes = record_bytes(&Record::Table(Box::new(meta.clone())));
        Table {
            meta,
            items: BTreeMap::new(),
            journal: Some(journal),
            live_bytes,
        }
    }

    /// Rebuilds a table from its journal's records.
    pub fn replay(journal: Journal, records: Vec<Record>) -> Option<Table> {
        let mut it = records.into_iter();
        let Some(Record::Table(meta)) = it.next() else {
            return None;
        };
        let mut t = Table::new(*meta, journal);
        for rec in it {
            t.replay_one(rec);
        }
        Some(t)
    }

    fn replay_one(&mut self, rec: Record) {
        match rec {
            Record::Table(m) => self.meta = *m,
            Record::Put(item) => {
                if let Ok(k) = item_key(&self.meta, &item) {
                    self.live_bytes += record_bytes(&Record::Put(item.clone()));
                    if let Some(old) = self.items.insert(k, item) {
                        self.live_bytes -= record_bytes(&Record::Put(old));
                    }
                }
            }
            Record::Delete(key) => {
                if let Ok(k) = item_key(&self.meta, &key)
                    && let Some(old) = self.items.remove(&k)
                {
                    self.live_bytes -= record_bytes(&Record::Put(old));
                }
            }
            Record::Batch(recs) => {
                for r in recs {
                    self.replay_one(r);
                }
            }
        }
    }

    fn journal(&mut self) -> Result<&mut Journal> {
        self.journal.as_mut().ok_or_else(crate::error::not_found)
    }

    /// Writes item changes (`None`: delete) durably as one journal record,
    /// then makes them visible.
    pub fn apply(&mut self, changes: Vec<(Key, Option<Item>)>) -> Result<()> {
        let mut recs: Vec<Record> = changes
            .iter()
            .map(|(_, change)| match change {
                Some(item) => Record::Put(item.clone()),
                None => Record::Delete(Item::new()),
            })
            .collect();
        for (rec, (key, _)) in recs.iter_mut().zip(&changes) {
            if let Record::Delete(k) = rec
                && let Some(old) = self.items.get(key)
            {
                *k = key_item(&self.meta, old);
            }
        }
        let rec = if recs.len() == 1 {
            recs.pop().expect("one record")
        } else {
            Record::Batch(recs)
        };
        self.journal()?.append(&rec)?;
        for (key, change) in changes {
            let old = match change {
                Some(item) => {
                    self.live_bytes += record_bytes(&Record::Put(item.clone()));
                    self.items.insert(key, item)
                }
                None => self.items.remove(&key),
            };
            if let Some(o) = old {
                self.live_bytes -= record_bytes(&Record::Put(o));
            }
        }
        self.maybe_compact()
    }

    /// Replaces the metadata durably.
    pub fn set_meta(&mut self, meta: TableMeta) -> Result<()> {
        self.journal()?
            .append(&Record::Table(Box::new(meta.clone())))?;
        self.meta = meta;
        Ok(())
    }

    fn maybe_compact(&mut self) -> Result<()> {
        let len = self.journal.as_ref().map(|j| j.len()).unwrap_or(0);
        if len < COMPACT_MIN || len < COMPACT_FACTOR * self.live_bytes {
            return Ok(());
        }
        let records = std::iter::once(Record::Table(Box::new(self.meta.clone())))
            .chain(self.items.values().map(|i| Record::Put(i.clone())))
            .collect::<Vec<_>>();
        self.journal()?.rewrite(records.into_iter())?;
        tracing::debug!(table = %self.meta.name, before = len, "dynamo journal compacted");
        Ok(())
    }

    pub fn size_bytes(&self) -> i64 {
        self.items
            .values()
            .map(|i| crate::attr::item_size(i) as i64)
            .sum()
    }

    /// `TableDescription` with the given status.
    pub fn describe(&self, status: &str) -> Value {
        describe(
            &self.meta,
            status,
            self.items.len(),
            self.size_bytes(),
            |ix| {
                self.items
                    .values()
                    .filter(|it| {
                        it.contains_key(&ix.hash)
                            && ix.range.as_ref().is_none_or(|r| it.contains_key(r))
                    })
                    .count()
            },
        )
    }
}

fn key_schema(hash: &str, range: Option<&str>) -> Value {
    let mut v = vec![
        Value::map()
            .with("AttributeName", hash)
            .with("KeyType", "HASH"),
    ];
    if let Some(r) = range {
        v.push(
            Value::map()
                .with("AttributeName", r)
                .with("KeyType", "RANGE"),
        );
    }
    Value::List(v)
}

fn throughput(read: i64, write: i64) -> Value {
    Value::map()
        .with("NumberOfDecreasesToday", 0i64)
        .with("ReadCapacityUnits", read)
        .with("WriteCapacityUnits", write)
}

fn projection(ix: &IndexMeta) -> Value {
    let mut p = Value::map().with("ProjectionType", ix.projection.as_str());
    if !ix.non_key.is_empty() {
        p.set(
            "NonKeyAttributes",
            Value::List(ix.non_key.iter().map(Value::from).collect()),
        );
    }
    p
}

pub fn describe(
    meta: &TableMeta,
    status: &str,
    count: usize,
    size: i64,
    index_count: impl Fn(&IndexMeta) -> usize,
) -> Value {
    let mut d = Value::map()
        .with(
            "AttributeDefinitions",
            Value::List(
                meta.attributes
                    .iter()
                    .map(|(n, t)| {
                        Value::map()
                            .with("AttributeName", n.as_str())
                            .with("AttributeType", t.as_str())
                    })
                    .collect(),
            ),
        )
        .with("TableName", meta.name.as_str())
        .with("KeySchema", key_schema(&meta.hash, meta.range.as_deref()))
        .with("TableStatus", status)
        .with("CreationDateTime", Value::Timestamp(meta.created_ms))
        .with("ProvisionedThroughput", throughput(meta.read, meta.write))
        .with("TableSizeBytes", size)
        .with("ItemCount", count as i64)
        .with("TableArn", meta.arn())
        .with("TableId", meta.id.as_str())
        .with("DeletionProtectionEnabled", meta.deletion_protection);
    if meta.billing == "PAY_PER_REQUEST" {
        d.set(
            "BillingModeSummary",
            Value::map().with("BillingMode", "PAY_PER_REQUEST").with(
                "LastUpdateToPayPerRequestDateTime",
                Value::Timestamp(meta.created_ms),
            ),
        );
    }
    let index = |ix: &IndexMeta, global: bool| {
        let mut v = Value::map()
            .with("IndexName", ix.name.as_str())
            .with("KeySchema", key_schema(&ix.hash, ix.range.as_deref()))
            .with("Projection", projection(ix))
            .with("IndexSizeBytes", 0i64)
            .with("ItemCount", index_count(ix) as i64)
            .with("IndexArn", format!("{}/index/{}", meta.arn(), ix.name));
        if global {
            v.set("IndexStatus", "ACTIVE");
            v.set("ProvisionedThroughput", throughput(ix.read, ix.write));
        }
        v
    };
    if !meta.gsis.is_empty() {
        d.set(
            "GlobalSecondaryIndexes",
            Value::List(meta.gsis.iter().map(|i| index(i, true)).collect()),
        );
    }
    if !meta.lsis.is_empty() {
        d.set(
            "LocalSecondaryIndexes",
            Value::List(meta.lsis.iter().map(|i| index(i, false)).collect()),
        );
    }
    d
}
