//! The operations.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use eddy_wire::Value;

use crate::attr::{Attr, Item, attr_from_value, item_from_value, item_size, item_to_value};
use crate::error::{DynamoError, Result, invalid, invalid_param, not_found, table_not_found};
use crate::expr::{self, CmpOp, Cond, Ctx, Operand, Path, Step};
use crate::journal::Journal;
use crate::table::{IndexMeta, Key, KeyVal, Table, TableMeta, item_key, key_item, request_key};
use crate::{Dynamo, journal_path, legacy};

const MAX_ITEM_BYTES: usize = 400 * 1024;
const MAX_PAGE_BYTES: usize = 1024 * 1024;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn uuid() -> String {
    let r: u128 = rand::random();
    let h = format!("{r:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn table_name(input: &Value) -> &str {
    input.str("TableName").unwrap_or_default()
}

fn lock(t: &Arc<Mutex<Table>>) -> MutexGuard<'_, Table> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

fn open_table(d: &Dynamo, input: &Value) -> Result<Arc<Mutex<Table>>> {
    d.table(table_name(input)).ok_or_else(not_found)
}

/// Runs `f` on a live table under its lock.
fn with_table<T>(d: &Dynamo, input: &Value, f: impl FnOnce(&mut Table) -> Result<T>) -> Result<T> {
    let t = open_table(d, input)?;
    let mut g = lock(&t);
    if g.journal.is_none() {
        return Err(not_found());
    }
    f(&mut g)
}

// ------------------------------------------------------------ tables

fn key_schema(v: Option<&[Value]>) -> Result<(String, Option<String>)> {
    let ks = v.unwrap_or(&[]);
    let name = |e: &Value| e.str("AttributeName").unwrap_or_default().to_string();
    let ty = |e: &Value| e.str("KeyType").unwrap_or_default().to_string();
    let Some(first) = ks.first() else {
        return Err(invalid(
            "Invalid KeySchema: Some index key attribute have no definition",
        ));
    };
    if ty(first) != "HASH" {
        return Err(invalid(
            "Invalid KeySchema: The first KeySchemaElement is not a HASH key type",
        ));
    }
    let range = match ks.get(1) {
        Some(e) if ty(e) != "RANGE" => {
            return Err(invalid(
                "Invalid KeySchema: The second KeySchemaElement is not a RANGE key type",
            ));
        }
        Some(e) => {
            if name(e) == name(first) {
                return Err(invalid(
                    "Invalid KeySchema: The second KeySchemaElement is not a RANGE key type",
                ));
            }
            Some(name(e))
        }
        None => None,
    };
    Ok((name(first), range))
}

fn index_meta(v: &Value, billing: &str, kind: &str) -> Result<IndexMeta> {
    let name = v.str("IndexName").unwrap_or_default().to_string();
    let (hash, range) = key_schema(v.list("KeySchema"))?;
    let p = v.get("Projection");
    let projection = p
        .and_then(|p| p.str("ProjectionType"))
        .unwrap_or("ALL")
        .to_string();
    let non_key: Vec<String> = p
        .and_then(|p| p.list("NonKeyAttributes"))
        .unwrap_or(&[])
        .iter()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect();
    if projection != "INCLUDE" && !non_key.is_empty() {
        return Err(invalid_param(format!(
            "ProjectionType is {projection}, but NonKeyAttributes is specified"
        )));
    }
    let tp = v.get("ProvisionedThroughput");
    if kind == "global" {
        if billing == "PROVISIONED" && tp.is_none() {
            return Err(invalid_param(format!(
                "ProvisionedThroughput must be specified for index: {name}"
            )));
        }
        if billing == "PAY_PER_REQUEST" && tp.is_some() {
            return Err(invalid_param(format!(
                "ProvisionedThroughput should not be specified for index: {name} when BillingMode is PAY_PER_REQUEST"
            )));
        }
    }
    Ok(IndexMeta {
        name,
        hash,
        range,
        projection,
        non_key,
        read: tp.and_then(|t| t.i64("ReadCapacityUnits")).unwrap_or(0),
        write: tp.and_then(|t| t.i64("WriteCapacityUnits")).unwrap_or(0),
    })
}

/// Checks every key attribute is defined and every definition used.
fn check_definitions(meta: &TableMeta) -> Result<()> {
    let mut keys: Vec<&str> = meta.key_names();
    for ix in meta.gsis.iter().chain(meta.lsis.iter()) {
        keys.push(&ix.hash);
        if let Some(r) = &ix.range {
            keys.push(r);
        }
    }
    let defined: Vec<&str> = meta.attributes.iter().map(|(n, _)| n.as_str()).collect();
    if keys.iter().any(|k| !defined.contains(k)) {
        let mut uniq: Vec<&str> = Vec::new();
        for k in &keys {
            if !uniq.contains(k) {
                uniq.push(k);
            }
        }
        return Err(invalid_param(format!(
            "Some index key attributes are not defined in AttributeDefinitions. Keys: [{}], AttributeDefinitions: [{}]",
            uniq.join(", "),
            defined.join(", ")
        )));
    }
    if defined.iter().any(|d| !keys.contains(d)) {
        return Err(invalid_param(
            "Number of attributes in KeySchema does not exactly match number of attributes defined in AttributeDefinitions",
        ));
    }
    Ok(())
}

fn attribute_definitions(v: Option<&[Value]>) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for d in v.unwrap_or(&[]) {
        let n = d.str("AttributeName").unwrap_or_default().to_string();
        let t = d.str("AttributeType").unwrap_or_default().to_string();
        if out.iter().any(|(m, _)| *m == n) {
            return Err(invalid_param(format!(
                "Duplicate AttributeName in AttributeDefinitions: {n}"
            )));
        }
        out.push((n, t));
    }
    Ok(out)
}

fn billing_and_throughput(input: &Value, default: &str) -> Result<(String, i64, i64)> {
    let billing = input.str("BillingMode").unwrap_or(default).to_string();
    let tp = input.get("ProvisionedThroughput");
    match (billing.as_str(), tp) {
        ("PAY_PER_REQUEST", Some(_)) => Err(invalid_param(
            "Neither ReadCapacityUnits nor WriteCapacityUnits can be specified when BillingMode is PAY_PER_REQUEST",
        )),
        ("PROVISIONED", None) => Err(invalid_param(
            "ReadCapacityUnits and WriteCapacityUnits must both be specified when BillingMode is PROVISIONED",
        )),
        (_, tp) => Ok((
            billing,
            tp.and_then(|t| t.i64("ReadCapacityUnits")).unwrap_or(0),
            tp.and_then(|t| t.i64("WriteCapacityUnits")).unwrap_or(0),
        )),
    }
}

pub fn create_table(d: &Dynamo, input: &Value) -> Result<Value> {
    let name = table_name(input).to_string();
    let attributes = attribute_definitions(input.list("AttributeDefinitions"))?;
    let (hash, range) = key_schema(input.list("KeySchema"))?;
    let (billing, read, write) = billing_and_throughput(input, "PROVISIONED")?;
    let gsis = input
        .list("GlobalSecondaryIndexes")
        .unwrap_or(&[])
        .iter()
        .map(|v| index_meta(v, &billing, "global"))
        .collect::<Result<Vec<_>>>()?;
    let lsis = input
        .list("LocalSecondaryIndexes")
        .unwrap_or(&[])
        .iter()
        .map(|v| index_meta(v, &billing, "local"))
        .collect::<Result<Vec<_>>>()?;
    for l in &lsis {
        if range.is_none() {
            return Err(invalid_param(
                "Table KeySchema does not have a range key, which is required when specifying a LocalSecondaryIndex",
            ));
        }
        if l.hash != hash || l.range.is_none() {
            return Err(invalid_param(format!(
                "Index KeySchema does not have the same leading hash key as table KeySchema for index: {}. index hash key: {}, table hash key: {}",
                l.name, l.hash, hash
            )));
        }
    }
    let mut names = BTreeSet::new();
    for ix in gsis.iter().chain(lsis.iter()) {
        if !names.insert(ix.name.clone()) {
            return Err(invalid_param(format!("Duplicate index name: {}", ix.name)));
        }
    }
    let meta = TableMeta {
        name: name.clone(),
        id: uuid(),
        attributes,
        hash,
        range,
        billing,
        read,
        write,
        gsis,
        lsis,
        created_ms: now_ms(),
        pitr: false,
        deletion_protection: input.bool("DeletionProtectionEnabled").unwrap_or(false),
        ttl: None,
        tags: tags_of(input),
    };
    check_definitions(&meta)?;
    let mut tables = d.inner.tables.write().unwrap_or_else(|p| p.into_inner());
    if tables.contains_key(&name) {
        return Err(DynamoError::InUse(format!("Table already exists: {name}")));
    }
    let j = Journal::create(&journal_path(&d.inner.dir, &name), &meta)?;
    let t = Table::new(meta, j);
    let desc = t.describe("ACTIVE");
    tables.insert(name, Arc::new(Mutex::new(t)));
    Ok(Value::map().with("TableDescription", desc))
}

pub fn describe_table(d: &Dynamo, input: &Value) -> Result<Value> {
    let name = table_name(input);
    let t = d.table(name).ok_or_else(|| table_not_found(name))?;
    let g = lock(&t);
    if g.journal.is_none() {
        return Err(table_not_found(name));
    }
    Ok(Value::map().with("Table", g.describe("ACTIVE")))
}

pub fn delete_table(d: &Dynamo, input: &Value) -> Result<Value> {
    let name = table_name(input);
    let mut tables = d.inner.tables.write().unwrap_or_else(|p| p.into_inner());
    let t = tables
        .get(name)
        .cloned()
        .ok_or_else(|| table_not_found(name))?;
    let mut g = lock(&t);
    if g.meta.deletion_protection {
        return Err(invalid("Resource cannot be deleted as it is currently protected against deletion. Disable deletion protection first.".to_string()));
    }
    let desc = g.describe("DELETING");
    if let Some(j) = g.journal.take() {
        j.remove()?;
    }
    tables.remove(name);
    Ok(Value::map().with("TableDescription", desc))
}

pub fn list_tables(d: &Dynamo, input: &Value) -> Result<Value> {
    let limit = input.i64("Limit").unwrap_or(100).clamp(1, 100) as usize;
    let start = input.str("ExclusiveStartTableName");
    let tables = d.inner.tables.read().unwrap_or_else(|p| p.into_inner());
    let names: Vec<&String> = tables
        .keys()
        .filter(|n| start.is_none_or(|s| n.as_str() > s))
        .collect();
    let page: Vec<Value> = names.iter().take(limit).map(|n| Value::from(*n)).collect();
    let mut out = Value::map().with("TableNames", Value::List(page));
    if names.len() > limit {
        out.set("LastEvaluatedTableName", names[limit - 1].as_str());
    }
    Ok(out)
}

pub fn update_table(d: &Dynamo, input: &Value) -> Result<Value> {
    let updates = input.list("GlobalSecondaryIndexUpdates").unwrap_or(&[]);
    let something = updates.len()
        + input.get("BillingMode").is_some() as usize
        + input.get("ProvisionedThroughput").is_some() as usize
        + input.get("DeletionProtectionEnabled").is_some() as usize
        + input.get("StreamSpecification").is_some() as usize
        + input.get("SSESpecification").is_some() as usize
        + input.get("TableClass").is_some() as usize;
    if something == 0 {
        return Err(invalid(
            "At least one of ProvisionedThroughput, BillingMode, UpdateStreamEnabled, GlobalSecondaryIndexUpdates or SSESpecification or ReplicaUpdates is required",
        ));
    }
    let name = table_name(input).to_string();
    let t = d.table(&name).ok_or_else(|| table_not_found(&name))?;
    let mut g = lock(&t);
    if g.journal.is_none() {
        return Err(table_not_found(&name));
    }
    let mut meta = g.meta.clone();
    for (n, ty) in attribute_definitions(input.list("AttributeDefinitions"))? {
        match meta.attr_type(&n) {
            Some(old) if old != ty => {
                return Err(invalid_param(format!(
                    "Cannot change the type of attribute {n} from {old} to {ty}"
                )));
            }
            Some(_) => {}
            None => meta.attributes.push((n, ty)),
        }
    }
    if input.get("BillingMode").is_some() || input.get("ProvisionedThroughput").is_some() {
        let (billing, read, write) = billing_and_throughput(input, &meta.billing)?;
        meta.billing = billing;
        meta.read = read;
        meta.write = write;
    }
    if let Some(p) = input.bool("DeletionProtectionEnabled") {
        meta.deletion_protection = p;
    }
    for u in updates {
        if let Some(c) = u.get("Create") {
            let ix = index_meta(c, &meta.billing, "global")?;
            if meta.index(&ix.name).is_some() {
                return Err(invalid_param(format!(
                    "Attempting to create an index which already exists: {}",
                    ix.name
                )));
            }
            meta.gsis.push(ix);
        } else if let Some(del) = u.get("Delete") {
            let n = del.str("IndexName").unwrap_or_default();
            if !meta.is_gsi(n) {
                return Err(DynamoError::NotFound(format!(
                    "Requested resource not found: Index: {n} not found"
                )));
            }
            meta.gsis.retain(|i| i.name != n);
        } else if let Some(up) = u.get("Update") {
            let n = up.str("IndexName").unwrap_or_default();
            let Some(ix) = meta.gsis.iter_mut().find(|i| i.name == n) else {
                return Err(DynamoError::NotFound(format!(
                    "Requested resource not found: Index: {n} not found"
                )));
            };
            if let Some(tp) = up.get("ProvisionedThroughput") {
                ix.read = tp.i64("ReadCapacityUnits").unwrap_or(ix.read);
                ix.write = tp.i64("WriteCapacityUnits").unwrap_or(ix.write);
            }
        }
    }
    // Definitions no longer used by any key are dropped (as DynamoDB
    // does after an index is deleted); missing ones are an error.
    let used: Vec<String> = meta
        .key_names()
        .into_iter()
        .map(str::to_string)
        .chain(
            meta.gsis
                .iter()
                .chain(meta.lsis.iter())
                .flat_map(|i| std::iter::once(i.hash.clone()).chain(i.range.clone())),
        )
        .collect();
    meta.attributes.retain(|(n, _)| used.contains(n));
    check_definitions(&meta)?;
    g.set_meta(meta)?;
    Ok(Value::map().with("TableDescription", g.describe("ACTIVE")))
}

fn backups(meta: &TableMeta) -> Value {
    let status = if meta.pitr { "ENABLED" } else { "DISABLED" };
    let mut pitr = Value::map().with("PointInTimeRecoveryStatus", status);
    if meta.pitr {
        pitr.set("RecoveryPeriodInDays", 35i64);
    }
    Value::map().with(
        "ContinuousBackupsDescription",
        Value::map()
            .with("ContinuousBackupsStatus", "ENABLED")
            .with("PointInTimeRecoveryDescription", pitr),
    )
}

pub fn update_continuous_backups(d: &Dynamo, input: &Value) -> Result<Value> {
    let name = table_name(input).to_string();
    let t = d
        .table(&name)
        .ok_or_else(|| DynamoError::NotFound(format!("Table not found: {name}")))?;
    let mut g = lock(&t);
    let enabled = input
        .get("PointInTimeRecoverySpecification")
        .and_then(|p| p.bool("PointInTimeRecoveryEnabled"))
        .unwrap_or(false);
    if g.meta.pitr != enabled {
        let mut meta = g.meta.clone();
        meta.pitr = enabled;
        g.set_meta(meta)?;
    }
    let out = backups(&g.meta);
    Ok(out)
}

pub fn describe_continuous_backups(d: &Dynamo, input: &Value) -> Result<Value> {
    let name = table_name(input).to_string();
    let t = d
        .table(&name)
        .ok_or_else(|| DynamoError::NotFound(format!("Table not found: {name}")))?;
    let g = lock(&t);
    Ok(backups(&g.meta))
}

pub fn update_time_to_live(d: &Dynamo, input: &Value) -> Result<Value> {
    let spec = input
        .get("TimeToLiveSpecification")
        .cloned()
        .unwrap_or_else(Value::map);
    let enabled = spec.bool("Enabled").unwrap_or(false);
    let attr = spec.str("AttributeName").unwrap_or_default().to_string();
    let name = table_name(input).to_string();
    let t = d.table(&name).ok_or_else(not_found)?;
    let mut g = lock(&t);
    if g.journal.is_none() {
        return Err(not_found());
    }
    let mut meta = g.meta.clone();
    match (enabled, &meta.ttl) {
        (true, Some(_)) => return Err(invalid("TimeToLive is already enabled")),
        (false, None) => return Err(invalid("TimeToLive is already disabled")),
        (true, None) => meta.ttl = Some(attr),
        (false, Some(_)) => meta.ttl = None,
    }
    g.set_meta(meta)?;
    Ok(Value::map().with("TimeToLiveSpecification", spec))
}

pub fn describe_time_to_live(d: &Dynamo, input: &Value) -> Result<Value> {
    let name = table_name(input).to_string();
    let t = d.table(&name).ok_or_else(not_found)?;
    let g = lock(&t);
    if g.journal.is_none() {
        return Err(not_found());
    }
    let desc = match &g.meta.ttl {
        Some(a) => Value::map()
            .with("TimeToLiveStatus", "ENABLED")
            .with("AttributeName", a.as_str()),
        None => Value::map().with("TimeToLiveStatus", "DISABLED"),
    };
    Ok(Value::map().with("TimeToLiveDescription", desc))
}

fn tags_of(input: &Value) -> Vec<(String, String)> {
    input
        .list("Tags")
        .unwrap_or(&[])
        .iter()
        .map(|t| {
            (
                t.str("Key").unwrap_or_default().to_string(),
                t.str("Value").unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The table an ARN names, locked.
fn table_of_arn(d: &Dynamo, arn: &str) -> Result<Arc<Mutex<Table>>> {
    let missing = || {
        DynamoError::NotFound(format!(
            "Requested resource not found: ResourcArn: {arn} not found"
        ))
    };
    let name = arn.rsplit_once(":table/").map(|(_, n)| n).ok_or_else(|| {
        invalid(format!(
            "Invalid TableArn: Invalid ResourceArn provided as input {arn}"
        ))
    })?;
    let t = d.table(name).ok_or_else(missing)?;
    if lock(&t).journal.is_none() {
        return Err(missing());
    }
    Ok(t)
}

pub fn tag_resource(d: &Dynamo, input: &Value) -> Result<Value> {
    let t = table_of_arn(d, input.str("ResourceArn").unwrap_or_default())?;
    let mut g = lock(&t);
    let mut meta = g.meta.clone();
    for (k, v) in tags_of(input) {
        meta.tags.retain(|(old, _)| *old != k);
        meta.tags.push((k, v));
    }
    g.set_meta(meta)?;
    Ok(Value::map())
}

pub fn untag_resource(d: &Dynamo, input: &Value) -> Result<Value> {
    let t = table_of_arn(d, input.str("ResourceArn").unwrap_or_default())?;
    let mut g = lock(&t);
    let keys: Vec<&str> = input
        .list("TagKeys")
        .unwrap_or(&[])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut meta = g.meta.clone();
    meta.tags.retain(|(k, _)| !keys.contains(&k.as_str()));
    g.set_meta(meta)?;
    Ok(Value::map())
}

pub fn list_tags_of_resource(d: &Dynamo, input: &Value) -> Result<Value> {
    let t = table_of_arn(d, input.str("ResourceArn").unwrap_or_default())?;
    let g = lock(&t);
    let tags = g
        .meta
        .tags
        .iter()
        .map(|(k, v)| {
            Value::map()
                .with("Key", k.as_str())
                .with("Value", v.as_str())
        })
        .collect();
    Ok(Value::map().with("Tags", Value::List(tags)))
}

// ------------------------------------------------------------ items

/// Present request members among `names`.
fn present<'a>(input: &Value, names: &[&'a str]) -> Vec<&'a str> {
    names
        .iter()
        .copied()
        .filter(|n| input.get(n).is_some())
        .collect()
}

/// The expression context of a request, after the mixing rules.
fn context(input: &Value, legacy: &[&str], expressions: &[&str]) -> Result<Ctx> {
    let old = present(input, legacy);
    let new = present(input, expressions);
    if !old.is_empty() && !new.is_empty() {
        return Err(invalid(format!(
            "Can not use both expression and non-expression parameters in the same request: Non-expression parameters: {{{}}} Expression parameters: {{{}}}",
            old.join(", "),
            new.join(", ")
        )));
    }
    let names = input.get("ExpressionAttributeNames");
    let values = input.get("ExpressionAttributeValues");
    if new.is_empty() && names.is_some() {
        return Err(invalid(
            "ExpressionAttributeNames can only be specified when using expressions",
        ));
    }
    let value_exprs: Vec<&str> = expressions
        .iter()
        .copied()
        .filter(|e| *e != "ProjectionExpression")
        .collect();
    if values.is_some()
        && !value_exprs.is_empty()
        && value_exprs.iter().all(|e| input.get(e).is_none())
    {
        return Err(invalid(format!(
            "ExpressionAttributeValues can only be specified when using expressions: {} {} null",
            value_exprs.join(" and "),
            if value_exprs.len() > 1 { "are" } else { "is" }
        )));
    }
    if names.is_some_and(|n| n.as_map().is_some_and(|m| m.is_empty())) {
        return Err(invalid("ExpressionAttributeNames must not be empty"));
    }
    if values.is_some_and(|n| n.as_map().is_some_and(|m| m.is_empty())) {
        return Err(invalid("ExpressionAttributeValues must not be empty"));
    }
    let names: BTreeMap<String, String> = names
        .and_then(Value::as_map)
        .unwrap_or(&[])
        .iter()
        .filter_map(|(k, v)| v.as_str().map(|s| (k.to_string(), s.to_string())))
        .collect();
    let mut vals = BTreeMap::new();
    for (k, v) in values.and_then(Value::as_map).unwrap_or(&[]) {
        let a = attr_from_value(v).map_err(|e| match e {
            DynamoError::Validation(m) => invalid(format!(
                "ExpressionAttributeValues contains invalid value: {m} for key {k}"
            )),
            e => e,
        })?;
        vals.insert(k.to_string(), a);
    }
    Ok(Ctx::new(names, vals))
}

/// The write condition of Put/Update/DeleteItem.
fn write_condition(input: &Value, ctx: &mut Ctx) -> Result<Option<Cond>> {
    if let Some(src) = input.str("ConditionExpression") {
        return Ok(Some(expr::parse_condition(
            "ConditionExpression",
            src,
            ctx,
        )?));
    }
    match input.get("Expected") {
        Some(e) => legacy::expected(e, input.str("ConditionalOperator")),
        None => Ok(None),
    }
}

fn return_values(input: &Value, allowed: &[&str]) -> Result<String> {
    let rv = input.str("ReturnValues").unwrap_or("NONE");
    if !allowed.contains(&rv) {
        return Err(invalid("Return values set to invalid value"));
    }
    Ok(rv.to_string())
}

fn check_size(item: &Item) -> Result<()> {
    if item_size(item) > MAX_ITEM_BYTES {
        return Err(invalid("Item size has exceeded the maximum allowed size"));
    }
    Ok(())
}

/// Index keys must have the declared types (or be absent).
fn check_index_keys(meta: &TableMeta, item: &Item) -> Result<()> {
    for ix in meta.gsis.iter().chain(meta.lsis.iter()) {
        for k in std::iter::once(&ix.hash).chain(ix.range.iter()) {
            if let Some(a) = item.get(k) {
                let ty = meta.attr_type(k).unwrap_or("S");
                if KeyVal::of(a, ty).is_none() {
                    return Err(invalid_param(format!(
                        "Type mismatch for Index Key {k} Expected: {ty} Actual: {} IndexName: {}",
                        a.type_name(),
                        ix.name
                    )));
                }
            }
        }
    }
    Ok(())
}

fn consumed(input: &Value, out: &mut Value) {
    if matches!(
        input.str("ReturnConsumedCapacity"),
        Some("TOTAL" | "INDEXES")
    ) {
        out.set(
            "ConsumedCapacity",
            Value::map()
                .with("TableName", table_name(input))
                .with("CapacityUnits", Value::Float(1.0)),
        );
    }
}

pub fn put_item(d: &Dynamo, input: &Value) -> Result<Value> {
    single_write(d, "PutItem", input)
}

pub fn update_item(d: &Dynamo, input: &Value) -> Result<Value> {
    single_write(d, "UpdateItem", input)
}

pub fn delete_item(d: &Dynamo, input: &Value) -> Result<Value> {
    single_write(d, "DeleteItem", input)
}

/// Put/Update/DeleteItem: check and write under the table's lock.
fn single_write(d: &Dynamo, op: &str, input: &Value) -> Result<Value> {
    let w = Write::prepare(op, input)?;
    let mut out = with_table(d, input, |t| {
        let p = w.plan(t)?;
        if let Some(change) = p.change {
            t.apply(vec![(p.key, change)])?;
        }
        Ok(p.out)
    })?;
    consumed(input, &mut out);
    Ok(out)
}

fn projection(input: &Value, ctx: &mut Ctx) -> Result<Option<Vec<Path>>> {
    if let Some(src) = input.str("ProjectionExpression") {
        return Ok(Some(expr::parse_projection(src, ctx)?));
    }
    Ok(input.list("AttributesToGet").map(|names| {
        names
            .iter()
            .filter_map(|n| n.as_str().map(|s| vec![Step::Name(s.to_string())]))
            .collect()
    }))
}

pub fn get_item(d: &Dynamo, input: &Value) -> Result<Value> {
    let mut ctx = context(input, &["AttributesToGet"], &["ProjectionExpression"])?;
    let key = item_from_value(input.get("Key").unwrap_or(&Value::Null))?;
    let proj = projection(input, &mut ctx)?;
    ctx.check_all_used()?;
    let mut out = with_table(d, input, |t| {
        let k = request_key(&t.meta, &key)?;
        let mut out = Value::map();
        if let Some(item) = t.items.get(&k) {
            let item = match &proj {
                Some(p) => expr::project(item, p),
                None => item.clone(),
            };
            out.set("Item", item_to_value(&item));
        }
        Ok(out)
    })?;
    consumed(input, &mut out);
    Ok(out)
}

enum Change {
    None,
    Legacy(Vec<legacy::AttrUpdate>),
    Expr(expr::Update),
}

/// What a write does, parsed and checked before any table is locked.
enum WriteKind {
    Put(Item),
    Delete(Item),
    Update {
        key: Item,
        change: Change,
        updated: BTreeSet<String>,
    },
    /// TransactWriteItems' ConditionCheck.
    Check(Item),
}

/// One write (of an item operation or a transaction).
struct Write {
    table: String,
    kind: WriteKind,
    cond: Option<Cond>,
    return_values: String,
    all_old_on_failure: bool,
}

/// The outcome of a write's check: what to store (`None`: nothing;
/// `Some(None)`: delete) and the operation's answer.
struct Planned {
    key: Key,
    change: Option<Option<Item>>,
    out: Value,
}

impl Write {
    /// Parses a PutItem/UpdateItem/DeleteItem input, or a transaction's
    /// `Put`/`Update`/`Delete`/`ConditionCheck` (named the same way).
    fn prepare(op: &str, input: &Value) -> Result<Write> {
        let (legacy_params, expr_params, allowed): (&[&str], &[&str], &[&str]) = match op {
            "PutItem" | "Put" | "DeleteItem" | "Delete" => (
                &["Expected", "ConditionalOperator"],
                &["ConditionExpression"],
                &["NONE", "ALL_OLD"],
            ),
            "UpdateItem" | "Update" => (
                &["AttributeUpdates", "Expected", "ConditionalOperator"],
                &["UpdateExpression", "ConditionExpression"],
                &["NONE", "ALL_OLD", "UPDATED_OLD", "ALL_NEW", "UPDATED_NEW"],
            ),
            _ => (&[], &["ConditionExpression"], &["NONE"]),
        };
        let mut ctx = context(input, legacy_params, expr_params)?;
        let return_values = return_values(input, allowed)?;
        let attrs = |name: &str| item_from_value(input.get(name).unwrap_or(&Value::Null));
        let kind = match op {
            "PutItem" | "Put" => {
                let item = attrs("Item")?;
                check_size(&item)?;
                WriteKind::Put(item)
            }
            "DeleteItem" | "Delete" => WriteKind::Delete(attrs("Key")?),
            "UpdateItem" | "Update" => {
                let change = if let Some(src) = input.str("UpdateExpression") {
                    Change::Expr(expr::parse_update(src, &mut ctx)?)
                } else if let Some(u) = input.get("AttributeUpdates") {
                    Change::Legacy(legacy::attribute_updates(u)?)
                } else {
                    Change::None
                };
                let updated = match &change {
                    Change::None => BTreeSet::new(),
                    Change::Legacy(u) => u.iter().map(|u| u.name.clone()).collect(),
                    Change::Expr(u) => expr::updated_names(u),
                };
                WriteKind::Update {
                    key: attrs("Key")?,
                    change,
                    updated,
                }
            }
            _ => WriteKind::Check(attrs("Key")?),
        };
        let cond = write_condition(input, &mut ctx)?;
        ctx.check_all_used()?;
        Ok(Write {
            table: table_name(input).to_string(),
            kind,
            cond,
            return_values,
            all_old_on_failure: input.str("ReturnValuesOnConditionCheckFailure") == Some("ALL_OLD"),
        })
    }

    /// The key the write addresses, checked against the table's schema.
    fn key(&self, meta: &TableMeta) -> Result<Key> {
        match &self.kind {
            WriteKind::Put(item) => {
                let k = item_key(meta, item)?;
                check_index_keys(meta, item)?;
                Ok(k)
            }
            WriteKind::Delete(key) | WriteKind::Check(key) | WriteKind::Update { key, .. } => {
                request_key(meta, key)
            }
        }
    }

    /// Checks the condition against the table as it is and computes the
    /// change; nothing is written.
    fn plan(&self, t: &Table) -> Result<Planned> {
        let key = self.key(&t.meta)?;
        if let WriteKind::Update { updated, .. } = &self.kind {
            for name in t.meta.key_names() {
                if updated.contains(name) {
                    return Err(invalid_param(format!(
                        "Cannot update attribute {name}. This attribute is part of the key"
                    )));
                }
            }
        }
        let old = t.items.get(&key).cloned();
        if let Some(c) = &self.cond
            && !expr::eval(c, old.as_ref().unwrap_or(&Item::new()))
        {
            return Err(DynamoError::ConditionFailed(
                old.filter(|_| self.all_old_on_failure),
            ));
        }
        let mut out = Value::map();
        let all_old = |out: &mut Value| {
            if self.return_values == "ALL_OLD"
                && let Some(o) = &old
            {
                out.set("Attributes", item_to_value(o));
            }
        };
        let change = match &self.kind {
            WriteKind::Put(item) => {
                all_old(&mut out);
                Some(Some(item.clone()))
            }
            WriteKind::Delete(_) => {
                all_old(&mut out);
                old.as_ref().map(|_| None)
            }
            WriteKind::Check(_) => None,
            WriteKind::Update {
                key: key_attrs,
                change,
                updated,
            } => {
                let base = old.clone().unwrap_or_else(|| key_attrs.clone());
                let new = match change {
                    Change::None => base,
                    Change::Legacy(u) => legacy::apply_attribute_updates(u, &base)?,
                    Change::Expr(u) => expr::apply_update(u, &base)?,
                };
                if key_item(&t.meta, &new) != *key_attrs {
                    // A nested path under a key, or an index into it.
                    return Err(invalid_param(
                        "Cannot update attribute in the key. This attribute is part of the key",
                    ));
                }
                check_size(&new)?;
                check_index_keys(&t.meta, &new)?;
                let pick = |item: &Item| -> Item {
                    item.iter()
                        .filter(|(n, _)| updated.contains(*n))
                        .map(|(n, a)| (n.clone(), a.clone()))
                        .collect()
                };
                let attrs = match self.return_values.as_str() {
                    "ALL_OLD" => old.clone(),
                    "ALL_NEW" => Some(new.clone()),
                    "UPDATED_OLD" => old.as_ref().map(pick),
                    "UPDATED_NEW" => Some(pick(&new)),
                    _ => None,
                };
                if let Some(a) = attrs.filter(|a| !a.is_empty()) {
                    out.set("Attributes", item_to_value(&a));
                }
                Some(Some(new))
            }
        };
        Ok(Planned { key, change, out })
    }
}

/// Locks the named tables in name order (so concurrent multi-table
/// requests cannot deadlock); every one must exist.
fn lock_tables(
    d: &Dynamo,
    names: impl IntoIterator<Item = String>,
) -> Result<Vec<(String, Arc<Mutex<Table>>)>> {
    let names: BTreeSet<String> = names.into_iter().collect();
    names
        .into_iter()
        .map(|n| {
            let t = d.table(&n).ok_or_else(not_found)?;
            Ok((n, t))
        })
        .collect()
}

pub fn transact_write_items(d: &Dynamo, input: &Value) -> Result<Value> {
    let mut writes = Vec::new();
    for item in input.list("TransactItems").unwrap_or(&[]) {
        let present: Vec<&str> = ["ConditionCheck", "Put", "Delete", "Update"]
            .into_iter()
            .filter(|k| item.get(k).is_some())
            .collect();
        let [op] = present.as_slice() else {
            return Err(invalid(
                "TransactItems can only contain one of Check, Put, Update or Delete",
            ));
        };
        writes.push(Write::prepare(op, item.get(op).unwrap_or(&Value::Null))?);
    }
    let tables = lock_tables(d, writes.iter().map(|w| w.table.clone()))?;
    let mut guards: BTreeMap<&str, MutexGuard<'_, Table>> = BTreeMap::new();
    for (n, t) in &tables {
        let g = lock(t);
        if g.journal.is_none() {
            return Err(not_found());
        }
        guards.insert(n.as_str(), g);
    }
    let mut seen = BTreeSet::new();
    for w in &writes {
        let k = w.key(&guards[w.table.as_str()].meta)?;
        if !seen.insert((w.table.clone(), k)) {
            return Err(invalid(
                "Transaction request cannot include multiple operations on one item",
            ));
        }
    }
    let mut plans = Vec::new();
    let mut reasons = Vec::new();
    for w in &writes {
        match w.plan(&guards[w.table.as_str()]) {
            Ok(p) => {
                reasons.push(None);
                plans.push(Some(p));
            }
            Err(DynamoError::ConditionFailed(item)) => {
                reasons.push(Some(item));
                plans.push(None);
            }
            Err(e) => return Err(e),
        }
    }
    if reasons.iter().any(Option::is_some) {
        return Err(DynamoError::TransactionCanceled(reasons));
    }
    let mut per_table: BTreeMap<&str, Vec<(Key, Option<Item>)>> = BTreeMap::new();
    for (w, p) in writes.iter().zip(plans) {
        if let Some(p) = p
            && let Some(change) = p.change
        {
            per_table
                .entry(w.table.as_str())
                .or_default()
                .push((p.key, change));
        }
    }
    for (name, changes) in per_table {
        if let Some(g) = guards.get_mut(name) {
            g.apply(changes)?;
        }
    }
    let mut out = Value::map();
    consumed(input, &mut out);
    Ok(out)
}

pub fn transact_get_items(d: &Dynamo, input: &Value) -> Result<Value> {
    let mut gets = Vec::new();
    for item in input.list("TransactItems").unwrap_or(&[]) {
        let g = item.get("Get").unwrap_or(&Value::Null);
        let mut ctx = context(g, &[], &["ProjectionExpression"])?;
        let proj = projection(g, &mut ctx)?;
        ctx.check_all_used()?;
        let key = item_from_value(g.get("Key").unwrap_or(&Value::Null))?;
        gets.push((table_name(g).to_string(), key, proj));
    }
    let tables = lock_tables(d, gets.iter().map(|g| g.0.clone()))?;
    let mut guards: BTreeMap<&str, MutexGuard<'_, Table>> = BTreeMap::new();
    for (n, t) in &tables {
        let g = lock(t);
        if g.journal.is_none() {
            return Err(not_found());
        }
        guards.insert(n.as_str(), g);
    }
    let mut responses = Vec::new();
    for (table, key, proj) in &gets {
        let t = &guards[table.as_str()];
        let k = request_key(&t.meta, key)?;
        let mut r = Value::map();
        if let Some(item) = t.items.get(&k) {
            let item = match proj {
                Some(p) => expr::project(item, p),
                None => item.clone(),
            };
            r.set("Item", item_to_value(&item));
        }
        responses.push(r);
    }
    Ok(Value::map().with("Responses", Value::List(responses)))
}

pub fn batch_write_item(d: &Dynamo, input: &Value) -> Result<Value> {
    let requests = input
        .get("RequestItems")
        .and_then(Value::as_map)
        .unwrap_or(&[]);
    // Parse everything first: a bad request writes nothing.
    let mut parsed: Vec<(String, Vec<WriteKind>)> = Vec::new();
    for (table, list) in requests {
        let mut kinds = Vec::new();
        for r in list.as_list().unwrap_or(&[]) {
            match (r.get("PutRequest"), r.get("DeleteRequest")) {
                (Some(p), None) => {
                    let item = item_from_value(p.get("Item").unwrap_or(&Value::Null))?;
                    check_size(&item)?;
                    kinds.push(WriteKind::Put(item));
                }
                (None, Some(del)) => kinds.push(WriteKind::Delete(item_from_value(
                    del.get("Key").unwrap_or(&Value::Null),
                )?)),
                _ => {
                    return Err(invalid(
                        "Supplied AttributeValue has more than one datatypes set, must contain exactly one of the supported datatypes",
                    ));
                }
            }
        }
        parsed.push((table.to_string(), kinds));
    }
    let tables = lock_tables(d, parsed.iter().map(|p| p.0.clone()))?;
    let mut guards: BTreeMap<&str, MutexGuard<'_, Table>> = BTreeMap::new();
    for (n, t) in &tables {
        let g = lock(t);
        if g.journal.is_none() {
            return Err(not_found());
        }
        guards.insert(n.as_str(), g);
    }
    let mut per_table = Vec::new();
    for (table, kinds) in &parsed {
        let meta = &guards[table.as_str()].meta;
        let mut seen = BTreeSet::new();
        let mut changes = Vec::new();
        for kind in kinds {
            let (k, change) = match kind {
                WriteKind::Put(item) => {
                    let k = item_key(meta, item).map_err(|_| {
                        invalid("The provided key element does not match the schema")
                    })?;
                    check_index_keys(meta, item)?;
                    (k, Some(item.clone()))
                }
                WriteKind::Delete(key) | WriteKind::Check(key) | WriteKind::Update { key, .. } => {
                    (request_key(meta, key)?, None)
                }
            };
            if !seen.insert(k.clone()) {
                return Err(invalid("Provided list of item keys contains duplicates"));
            }
            changes.push((k, change));
        }
        per_table.push((table.as_str(), changes));
    }
    for (table, changes) in per_table {
        if let Some(g) = guards.get_mut(table) {
            g.apply(changes)?;
        }
    }
    let mut out = Value::map().with("UnprocessedItems", Value::map());
    consumed(input, &mut out);
    Ok(out)
}

pub fn batch_get_item(d: &Dynamo, input: &Value) -> Result<Value> {
    let requests = input
        .get("RequestItems")
        .and_then(Value::as_map)
        .unwrap_or(&[]);
    let mut parsed = Vec::new();
    for (table, ka) in requests {
        let mut ctx = context(ka, &["AttributesToGet"], &["ProjectionExpression"])?;
        let proj = projection(ka, &mut ctx)?;
        ctx.check_all_used()?;
        let keys = ka
            .list("Keys")
            .unwrap_or(&[])
            .iter()
            .map(item_from_value)
            .collect::<Result<Vec<_>>>()?;
        parsed.push((table.clone(), keys, proj));
    }
    let mut responses = Value::map();
    for (table, keys, proj) in &parsed {
        let t = d.table(table).ok_or_else(not_found)?;
        let g = lock(&t);
        if g.journal.is_none() {
            return Err(not_found());
        }
        let mut seen = BTreeSet::new();
        let mut items = Vec::new();
        for key in keys {
            let k = request_key(&g.meta, key)?;
            if !seen.insert(k.clone()) {
                return Err(invalid("Provided list of item keys contains duplicates"));
            }
            if let Some(item) = g.items.get(&k) {
                let item = match proj {
                    Some(p) => expr::project(item, p),
                    None => item.clone(),
                };
                items.push(item_to_value(&item));
            }
        }
        responses.set(table.to_string(), Value::List(items));
    }
    Ok(Value::map()
        .with("Responses", responses)
        .with("UnprocessedKeys", Value::map()))
}

// ------------------------------------------------------------ scan / query

/// Where a read looks: the table or one of its indexes.
struct Source<'a> {
    meta: &'a TableMeta,
    index: Option<&'a IndexMeta>,
}

/// Sort position of an item in a source: (index hash, index range, table
/// key) for an index, the table key for the table.
type Pos = (Option<KeyVal>, Option<KeyVal>, Key);

impl Source<'_> {
    fn hash(&self) -> &str {
        self.index.map_or(&self.meta.hash, |i| &i.hash)
    }

    fn range(&self) -> Option<&str> {
        match self.index {
            Some(i) => i.range.as_deref(),
            None => self.meta.range.as_deref(),
        }
    }

    fn kv(&self, item: &Item, name: &str) -> Option<KeyVal> {
        KeyVal::of(item.get(name)?, self.meta.attr_type(name)?)
    }

    /// The position of an item, `None` if the index does not hold it.
    fn pos(&self, item: &Item) -> Option<Pos> {
        let key = item_key(self.meta, item).ok()?;
        match self.index {
            None => Some((None, None, key)),
            Some(ix) => {
                let h = self.kv(item, &ix.hash)?;
                let r = match &ix.range {
                    Some(r) => Some(self.kv(item, r)?),
                    None => None,
                };
                Some((Some(h), r, key))
            }
        }
    }

    /// Key attributes of the source (table keys plus index keys).
    fn key_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .meta
            .key_names()
            .into_iter()
            .map(str::to_string)
            .collect();
        if let Some(ix) = self.index {
            for k in std::iter::once(&ix.hash).chain(ix.range.iter()) {
                if !v.contains(k) {
                    v.push(k.clone());
                }
            }
        }
        v
    }

    /// What the index holds of an item.
    fn projected(&self, item: &Item) -> Item {
        let Some(ix) = self.index else {
            return item.clone();
        };
        if ix.projection == "ALL" {
            return item.clone();
        }
        let keep = self.key_names();
        item.iter()
            .filter(|(n, _)| keep.contains(n) || ix.non_key.contains(n))
            .map(|(n, a)| (n.clone(), a.clone()))
            .collect()
    }

    fn start_pos(&self, start: &Item) -> Result<Pos> {
        let bad = || {
            invalid(
                "The provided starting key is invalid: The provided key element does not match the schema",
            )
        };
        let names = self.key_names();
        if start.len() != names.len() || names.iter().any(|n| !start.contains_key(n)) {
            return Err(bad());
        }
        self.pos(start).ok_or_else(bad)
    }
}

struct Read<'a> {
    source: Source<'a>,
    /// Candidate items in source order.
    items: Vec<(Pos, &'a Item)>,
}

fn read_source<'a>(t: &'a Table, input: &Value, query: bool) -> Result<Read<'a>> {
    let index =
        match input.str("IndexName") {
            Some(n) => Some(t.meta.index(n).ok_or_else(|| {
                invalid(format!("The table does not have the specified index: {n}"))
            })?),
            None => None,
        };
    if let Some(ix) = index
        && input.bool("ConsistentRead") == Some(true)
        && t.meta.is_gsi(&ix.name)
    {
        return Err(invalid(
            "Consistent reads are not supported on global secondary indexes",
        ));
    }
    let _ = query;
    let source = Source {
        meta: &t.meta,
        index,
    };
    let mut items: Vec<(Pos, &Item)> = t
        .items
        .values()
        .filter_map(|it| source.pos(it).map(|p| (p, it)))
        .collect();
    if index.is_some() {
        items.sort_by(|a, b| a.0.cmp(&b.0));
    }
    Ok(Read { source, items })
}

/// Pages `candidates` (already in the order to return them) after
/// `ExclusiveStartKey`, applies Limit, the 1 MB page size, the filter and
/// the projection, and builds the Scan/Query answer.
fn page(
    input: &Value,
    source: &Source<'_>,
    candidates: Vec<(Pos, &Item)>,
    forward: bool,
    filter: Option<&Cond>,
    proj: Option<&[Path]>,
) -> Result<Value> {
    let start = match input.get("ExclusiveStartKey") {
        Some(v) => Some(source.start_pos(&item_from_value(v)?)?),
        None => None,
    };
    let limit = input.i64("Limit").map(|l| l.max(1) as usize);
    let select = input.str("Select").unwrap_or(if proj.is_some() {
        "SPECIFIC_ATTRIBUTES"
    } else {
        "ALL_ATTRIBUTES"
    });
    let mut out_items = Vec::new();
    let mut count = 0i64;
    let mut scanned = 0usize;
    let mut bytes = 0usize;
    let mut last: Option<&Item> = None;
    let mut stopped = false;
    for (pos, item) in candidates.iter().filter(|(p, _)| match &start {
        None => true,
        Some(s) if forward => p > s,
        Some(s) => p < s,
    }) {
        let _ = pos;
        if limit.is_some_and(|l| scanned >= l) || bytes >= MAX_PAGE_BYTES {
            stopped = true;
            break;
        }
        scanned += 1;
        bytes += item_size(item);
        last = Some(item);
        let visible = source.projected(item);
        if filter.is_some_and(|f| !expr::eval(f, &visible)) {
            continue;
        }
        count += 1;
        if select != "COUNT" {
            let shown = match proj {
                Some(p) => expr::project(&visible, p),
                None => visible,
            };
            out_items.push(item_to_value(&shown));
        }
    }
    // DynamoDB names the last evaluated key whenever it stops at Limit,
    // even if nothing follows.
    if limit.is_some_and(|l| scanned >= l) {
        stopped = true;
    }
    let mut out = Value::map();
    if select != "COUNT" {
        out.set("Items", Value::List(out_items));
    }
    out.set("Count", count);
    out.set("ScannedCount", scanned as i64);
    if stopped && let Some(item) = last {
        let names = source.key_names();
        let key: Item = item
            .iter()
            .filter(|(n, _)| names.contains(n))
            .map(|(n, a)| (n.clone(), a.clone()))
            .collect();
        out.set("LastEvaluatedKey", item_to_value(&key));
    }
    consumed(input, &mut out);
    Ok(out)
}

fn check_select(input: &Value, has_proj: bool, source: &Source<'_>) -> Result<()> {
    match input.str("Select") {
        Some("SPECIFIC_ATTRIBUTES") if !has_proj => Err(invalid(
            "Select type SPECIFIC_ATTRIBUTES requires AttributesToGet or ProjectionExpression",
        )),
        Some(s) if s != "SPECIFIC_ATTRIBUTES" && has_proj => Err(invalid(format!(
            "Cannot specify the AttributesToGet when choosing to get {s}"
        ))),
        Some("ALL_PROJECTED_ATTRIBUTES") if source.index.is_none() => Err(invalid(
            "ALL_PROJECTED_ATTRIBUTES can be used only when Querying using an IndexName",
        )),
        _ => Ok(()),
    }
}

pub fn scan(d: &Dynamo, input: &Value) -> Result<Value> {
    let mut ctx = context(
        input,
        &["ScanFilter", "AttributesToGet", "ConditionalOperator"],
        &["FilterExpression", "ProjectionExpression"],
    )?;
    let filter = match input.str("FilterExpression") {
        Some(src) => Some(expr::parse_condition("FilterExpression", src, &mut ctx)?),
        None => match input.get("ScanFilter") {
            Some(f) => legacy::conditions(f, input.str("ConditionalOperator"))?,
            None => None,
        },
    };
    let proj = projection(input, &mut ctx)?;
    ctx.check_all_used()?;
    let segment = match (input.i64("Segment"), input.i64("TotalSegments")) {
        (None, None) => None,
        (Some(_), None) => {
            return Err(invalid(
                "The TotalSegments parameter is required but was not present in the request when Segment parameter is present",
            ));
        }
        (None, Some(_)) => {
            return Err(invalid(
                "The Segment parameter is required but was not present in the request when parameter TotalSegments is present",
            ));
        }
        (Some(s), Some(n)) if s >= n => {
            return Err(invalid(format!(
                "The Segment parameter is zero-based and must be less than parameter TotalSegments: Segment: {s} is not less than TotalSegments: {n}"
            )));
        }
        (Some(s), Some(n)) => Some((s as u32, n as u32)),
    };
    with_table(d, input, |t| {
        let read = read_source(t, input, false)?;
        check_select(input, proj.is_some(), &read.source)?;
        let candidates: Vec<(Pos, &Item)> = match segment {
            None => read.items,
            Some((s, n)) => read
                .items
                .into_iter()
                .filter(|(_, item)| {
                    let hk = item
                        .get(&t.meta.hash)
                        .map(|a| serde_json::to_vec(a).unwrap_or_default())
                        .unwrap_or_default();
                    crc32c::crc32c(&hk) % n == s
                })
                .collect(),
        };
        page(
            input,
            &read.source,
            candidates,
            true,
            filter.as_ref(),
            proj.as_deref(),
        )
    })
}

/// Splits a key condition into (hash value, optional range condition).
fn key_condition(cond: Cond, source: &Source<'_>, kind: &str) -> Result<(Attr, Option<Cond>)> {
    fn flatten(c: Cond, out: &mut Vec<Cond>, kind: &str) -> Result<()> {
        match c {
            Cond::And(a, b) => {
                flatten(*a, out, kind)?;
                flatten(*b, out, kind)
            }
            Cond::Or(..) => Err(invalid(format!("Invalid operator used in {kind}: OR"))),
            Cond::Not(..) => Err(invalid(format!("Invalid operator used in {kind}: NOT"))),
            c => {
                out.push(c);
                Ok(())
            }
        }
    }
    let mut parts = Vec::new();
    flatten(cond, &mut parts, kind)?;
    if parts.len() > 2 {
        return Err(invalid(
            "Conditions can be of length 1 or 2 only".to_string(),
        ));
    }
    fn subject(c: &Cond) -> Option<&str> {
        let path = match c {
            Cond::Cmp(Operand::Path(p), _, Operand::Value(_))
            | Cond::Between(Operand::Path(p), Operand::Value(_), Operand::Value(_))
            | Cond::BeginsWith(Operand::Path(p), Operand::Value(_)) => p,
            _ => return None,
        };
        match path.as_slice() {
            [Step::Name(n)] => Some(n),
            _ => None,
        }
    }
    let hash = source.hash();
    let mut hash_value = None;
    let mut range_cond = None;
    for c in parts {
        let Some(name) = subject(&c) else {
            return Err(invalid("Query key condition not supported"));
        };
        if name == hash && hash_value.is_none() {
            match c {
                Cond::Cmp(_, CmpOp::Eq, Operand::Value(v)) => hash_value = Some(v),
                _ => return Err(invalid("Query key condition not supported")),
            }
        } else if Some(name) == source.range() && range_cond.is_none() {
            if matches!(c, Cond::Cmp(_, CmpOp::Ne, _)) {
                return Err(invalid(
                    "Unsupported operator on KeyCondition: <>".to_string(),
                ));
            }
            range_cond = Some(c);
        } else if name == hash || Some(name) == source.range() {
            return Err(invalid(
                "KeyConditionExpressions must only contain one condition per key",
            ));
        } else {
            return Err(invalid(format!(
                "Query condition missed key schema element: {}",
                if hash_value.is_none() {
                    hash
                } else {
                    source.range().unwrap_or(hash)
                }
            )));
        }
    }
    let Some(hv) = hash_value else {
        return Err(invalid(format!(
            "Query condition missed key schema element: {hash}"
        )));
    };
    let ty = source.meta.attr_type(hash).unwrap_or("S");
    if KeyVal::of(&hv, ty).is_none() {
        return Err(invalid_param(
            "Condition parameter type does not match schema type",
        ));
    }
    Ok((hv, range_cond))
}

pub fn query(d: &Dynamo, input: &Value) -> Result<Value> {
    let mut ctx = context(
        input,
        &[
            "KeyConditions",
            "QueryFilter",
            "AttributesToGet",
            "ConditionalOperator",
        ],
        &[
            "KeyConditionExpression",
            "FilterExpression",
            "ProjectionExpression",
        ],
    )?;
    let key_cond = match input.str("KeyConditionExpression") {
        Some(src) => expr::parse_condition("KeyConditionExpression", src, &mut ctx)?,
        None => match input.get("KeyConditions") {
            Some(k) => legacy::conditions(k, None)?.ok_or_else(|| {
                invalid("Either the KeyConditions or KeyConditionExpression parameter must be specified in the request.")
            })?,
            None => {
                return Err(invalid(
                    "Either the KeyConditions or KeyConditionExpression parameter must be specified in the request.",
                ));
            }
        },
    };
    let filter = match input.str("FilterExpression") {
        Some(src) => Some(expr::parse_condition("FilterExpression", src, &mut ctx)?),
        None => match input.get("QueryFilter") {
            Some(f) => legacy::conditions(f, input.str("ConditionalOperator"))?,
            None => None,
        },
    };
    let proj = projection(input, &mut ctx)?;
    ctx.check_all_used()?;
    let forward = input.bool("ScanIndexForward").unwrap_or(true);
    with_table(d, input, |t| {
        let read = read_source(t, input, true)?;
        check_select(input, proj.is_some(), &read.source)?;
        let kind = if input.get("KeyConditionExpression").is_some() {
            "KeyConditionExpression"
        } else {
            "KeyConditions"
        };
        let (hv, range_cond) = key_condition(key_cond.clone(), &read.source, kind)?;
        let hash = read.source.hash().to_string();
        let mut candidates: Vec<(Pos, &Item)> = read
            .items
            .into_iter()
            .filter(|(_, item)| {
                item.get(&hash)
                    .is_some_and(|a| crate::attr::attr_eq(a, &hv))
                    && range_cond.as_ref().is_none_or(|c| expr::eval(c, item))
            })
            .collect();
        if !forward {
            candidates.reverse();
        }
        page(
            input,
            &read.source,
            candidates,
            forward,
            filter.as_ref(),
            proj.as_deref(),
        )
    })
}
