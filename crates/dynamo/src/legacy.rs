//! The legacy (pre-expression) parameters: `Expected`, `AttributeUpdates`,
//! `KeyConditions`, `QueryFilter` / `ScanFilter` with `ConditionalOperator`.
//! Conditions become the same [`Cond`] trees expressions parse to.

use eddy_wire::Value;

use crate::attr::{Attr, Item, attr_from_value};
use crate::error::{Result, invalid_param};
use crate::expr::{CmpOp, Cond, Operand, Step, add_value, delete_value};

fn path(name: &str) -> Vec<Step> {
    vec![Step::Name(name.to_string())]
}

/// One `ComparisonOperator` with its arguments as a condition on `name`.
fn comparison(name: &str, op: &str, args: Vec<Attr>) -> Result<Cond> {
    let want = match op {
        "NULL" | "NOT_NULL" => 0,
        "BETWEEN" => 2,
        "IN" => usize::MAX,
        _ => 1,
    };
    if (want == usize::MAX && args.is_empty()) || (want != usize::MAX && args.len() != want) {
        return Err(invalid_param(format!(
            "Invalid number of argument(s) for the {op} ComparisonOperator"
        )));
    }
    let p = || Operand::Path(path(name));
    let v = |i: usize| Operand::Value(args[i].clone());
    let cmp = |o| Cond::Cmp(p(), o, v(0));
    Ok(match op {
        "EQ" => cmp(CmpOp::Eq),
        "NE" => cmp(CmpOp::Ne),
        "LT" => cmp(CmpOp::Lt),
        "LE" => cmp(CmpOp::Le),
        "GT" => cmp(CmpOp::Gt),
        "GE" => cmp(CmpOp::Ge),
        "NULL" => Cond::NotExists(path(name)),
        "NOT_NULL" => Cond::Exists(path(name)),
        "CONTAINS" => Cond::Contains(p(), v(0)),
        "NOT_CONTAINS" => Cond::Not(Box::new(Cond::Contains(p(), v(0)))),
        "BEGINS_WITH" => Cond::BeginsWith(p(), v(0)),
        "BETWEEN" => Cond::Between(p(), v(0), v(1)),
        "IN" => Cond::In(p(), (0..args.len()).map(v).collect()),
        other => {
            return Err(invalid_param(format!(
                "Unsupported ComparisonOperator: {other}"
            )));
        }
    })
}

fn values(list: Option<&[Value]>) -> Result<Vec<Attr>> {
    list.unwrap_or(&[]).iter().map(attr_from_value).collect()
}

fn combine(conds: Vec<Cond>, op: Option<&str>) -> Option<Cond> {
    let or = op == Some("OR");
    conds.into_iter().reduce(|a, b| {
        if or {
            Cond::Or(Box::new(a), Box::new(b))
        } else {
            Cond::And(Box::new(a), Box::new(b))
        }
    })
}

/// `Expected` (with `ConditionalOperator`) as a condition.
pub fn expected(expected: &Value, conditional_operator: Option<&str>) -> Result<Option<Cond>> {
    let mut conds = Vec::new();
    for (name, e) in expected.as_map().unwrap_or(&[]) {
        let value = e.get("Value").map(attr_from_value).transpose()?;
        let exists = e.bool("Exists");
        if let Some(op) = e.str("ComparisonOperator") {
            if exists.is_some() {
                return Err(invalid_param(format!(
                    "Exists and ComparisonOperator cannot be used together for Attribute: {name}"
                )));
            }
            let args = match (value, e.list("AttributeValueList")) {
                (Some(_), Some(_)) => {
                    return Err(invalid_param(format!(
                        "Value and AttributeValueList cannot be used together for Attribute: {name}"
                    )));
                }
                (Some(v), None) => vec![v],
                (None, list) => values(list)?,
            };
            conds.push(comparison(name, op, args)?);
            continue;
        }
        if e.get("AttributeValueList").is_some() {
            return Err(invalid_param(format!(
                "AttributeValueList can only be used with a ComparisonOperator for Attribute: {name}"
            )));
        }
        match (exists, value) {
            (Some(false), Some(_)) => {
                return Err(invalid_param(format!(
                    "Value cannot be used when Exists is false for Attribute: {name}"
                )));
            }
            (Some(false), None) => conds.push(Cond::NotExists(path(name))),
            (Some(true), None) => {
                return Err(invalid_param(format!(
                    "Value must be provided when Exists is true for Attribute: {name}"
                )));
            }
            (None, None) => {
                return Err(invalid_param(format!(
                    "Value must be provided when Exists is null for Attribute: {name}"
                )));
            }
            (_, Some(v)) => conds.push(Cond::Cmp(
                Operand::Path(path(name)),
                CmpOp::Eq,
                Operand::Value(v),
            )),
        }
    }
    Ok(combine(conds, conditional_operator))
}

/// `KeyConditions`, `QueryFilter` or `ScanFilter` (`Condition` maps).
pub fn conditions(map: &Value, conditional_operator: Option<&str>) -> Result<Option<Cond>> {
    let mut conds = Vec::new();
    for (name, c) in map.as_map().unwrap_or(&[]) {
        let op = c.str("ComparisonOperator").unwrap_or("EQ");
        conds.push(comparison(name, op, values(c.list("AttributeValueList"))?)?);
    }
    Ok(combine(conds, conditional_operator))
}

/// One `AttributeUpdates` action, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct AttrUpdate {
    pub name: String,
    pub action: String,
    pub value: Option<Attr>,
}

pub fn attribute_updates(updates: &Value) -> Result<Vec<AttrUpdate>> {
    let mut out = Vec::new();
    for (name, u) in updates.as_map().unwrap_or(&[]) {
        let action = u.str("Action").unwrap_or("PUT").to_string();
        let value = u.get("Value").map(attr_from_value).transpose()?;
        if value.is_none() && action != "DELETE" {
            return Err(invalid_param(
                "Only DELETE action is allowed when no attribute value is specified",
            ));
        }
        if action == "DELETE"
            && let Some(v) = &value
            && !matches!(v, Attr::SS(_) | Attr::NS(_) | Attr::BS(_))
        {
            return Err(invalid_param(format!(
                "DELETE action with value is not supported for the type {}",
                v.type_name()
            )));
        }
        if action == "ADD"
            && let Some(v) = &value
            && !matches!(
                v,
                Attr::N(_) | Attr::SS(_) | Attr::NS(_) | Attr::BS(_) | Attr::L(_)
            )
        {
            return Err(invalid_param(format!(
                "ADD action is not supported for the type {}",
                v.type_name()
            )));
        }
        out.push(AttrUpdate {
            name: name.to_string(),
            action,
            value,
        });
    }
    Ok(out)
}

/// Applies `AttributeUpdates` to an item.
pub fn apply_attribute_updates(updates: &[AttrUpdate], item: &Item) -> Result<Item> {
    let mut new = item.clone();
    for u in updates {
        let old = item.get(&u.name);
        match (u.action.as_str(), &u.value) {
            ("PUT", Some(v)) => {
                new.insert(u.name.clone(), v.clone());
            }
            ("DELETE", None) => {
                new.remove(&u.name);
            }
            ("DELETE", Some(v)) => match delete_value(old, v) {
                Ok(Some(r)) => {
                    new.insert(u.name.clone(), r);
                }
                Ok(None) => {
                    new.remove(&u.name);
                }
                Err(_) => {
                    return Err(invalid_param("Type mismatch for attribute to update"));
                }
            },
            ("ADD", Some(Attr::L(l))) => match old {
                None => {
                    new.insert(u.name.clone(), Attr::L(l.clone()));
                }
                Some(Attr::L(o)) => {
                    let mut o = o.clone();
                    o.extend(l.iter().cloned());
                    new.insert(u.name.clone(), Attr::L(o));
                }
                Some(_) => {
                    return Err(invalid_param("Type mismatch for attribute to update"));
                }
            },
            ("ADD", Some(v)) => match add_value(old, v) {
                Ok(r) => {
                    new.insert(u.name.clone(), r);
                }
                Err(_) => {
                    return Err(invalid_param("Type mismatch for attribute to update"));
                }
            },
            _ => {
                return Err(invalid_param(
                    "Only DELETE action is allowed when no attribute value is specified",
                ));
            }
        }
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::eval;

    fn av(ty: &'static str, v: &str) -> Value {
        Value::map().with(ty, v)
    }

    fn lease(counter: &str) -> Item {
        let mut i = Item::new();
        i.insert("leaseKey".into(), Attr::S("shard-1".into()));
        i.insert("leaseOwner".into(), Attr::S("a".into()));
        i.insert("leaseCounter".into(), Attr::N(counter.into()));
        i
    }

    #[test]
    fn expected_exists_false_only_holds_for_absent_attributes() {
        let e = Value::map().with("leaseKey", Value::map().with("Exists", false));
        let c = expected(&e, None).unwrap().unwrap();
        assert!(eval(&c, &Item::new()));
        assert!(!eval(&c, &lease("1")));
    }

    #[test]
    fn expected_value_compares_numbers_numerically() {
        let e = Value::map().with("leaseCounter", Value::map().with("Value", av("N", "7.0")));
        let c = expected(&e, None).unwrap().unwrap();
        assert!(eval(&c, &lease("7")));
        assert!(!eval(&c, &lease("8")));
        assert!(!eval(&c, &Item::new()));
    }

    #[test]
    fn expected_combines_with_and_by_default_and_or_on_request() {
        let e = Value::map()
            .with("leaseCounter", Value::map().with("Value", av("N", "7")))
            .with("checkpointOwner", Value::map().with("Exists", false))
            .with("leaseOwner", Value::map().with("Value", av("S", "b")));
        let and = expected(&e, None).unwrap().unwrap();
        assert!(!eval(&and, &lease("7")));
        let or = expected(&e, Some("OR")).unwrap().unwrap();
        assert!(eval(&or, &lease("7")));
    }

    #[test]
    fn expected_comparison_operators() {
        let list = |vals: &[&str]| Value::List(vals.iter().map(|v| av("N", v)).collect());
        let cond = |op: &str, vals: &[&str]| {
            let e = Value::map().with(
                "leaseCounter",
                Value::map()
                    .with("ComparisonOperator", op)
                    .with("AttributeValueList", list(vals)),
            );
            expected(&e, None).unwrap().unwrap()
        };
        let l = lease("5");
        assert!(eval(&cond("GT", &["4"]), &l));
        assert!(!eval(&cond("LT", &["5"]), &l));
        assert!(eval(&cond("LE", &["5"]), &l));
        assert!(eval(&cond("BETWEEN", &["1", "10"]), &l));
        assert!(eval(&cond("IN", &["3", "5"]), &l));
        assert!(eval(&cond("NOT_NULL", &[]), &l));
        assert!(!eval(&cond("NULL", &[]), &l));
        assert!(eval(&cond("NE", &["6"]), &l));
        // Absent attributes: not equal, and containing nothing.
        assert!(eval(&cond("NE", &["6"]), &Item::new()));
        assert!(eval(&cond("NOT_CONTAINS", &["6"]), &Item::new()));
        assert!(!eval(&cond("CONTAINS", &["6"]), &Item::new()));
    }

    #[test]
    fn expected_mistakes_give_dynamodb_messages() {
        let bad = |e: Value| expected(&e, None).unwrap_err().to_string();
        let m = bad(Value::map().with("a", Value::map().with("Exists", true)));
        assert!(
            m.ends_with("Value must be provided when Exists is true for Attribute: a"),
            "{m}"
        );
        let m = bad(Value::map().with(
            "a",
            Value::map()
                .with("Exists", false)
                .with("Value", av("S", "x")),
        ));
        assert!(
            m.ends_with("Value cannot be used when Exists is false for Attribute: a"),
            "{m}"
        );
        let m = bad(Value::map().with(
            "a",
            Value::map()
                .with("ComparisonOperator", "BETWEEN")
                .with("AttributeValueList", Value::List(vec![av("N", "1")])),
        ));
        assert!(
            m.ends_with("Invalid number of argument(s) for the BETWEEN ComparisonOperator"),
            "{m}"
        );
    }

    #[test]
    fn attribute_updates_put_add_delete() {
        let u = Value::map()
            .with(
                "leaseCounter",
                Value::map()
                    .with("Action", "ADD")
                    .with("Value", av("N", "1")),
            )
            .with(
                "leaseOwner",
                Value::map()
                    .with("Action", "PUT")
                    .with("Value", av("S", "b")),
            )
            .with(
                "ownerSwitchesSinceCheckpoint",
                Value::map()
                    .with("Action", "ADD")
                    .with("Value", av("N", "1")),
            )
            .with("checkpointOwner", Value::map().with("Action", "DELETE"));
        let ups = attribute_updates(&u).unwrap();
        let mut item = lease("5");
        item.insert("checkpointOwner".into(), Attr::S("a".into()));
        let new = apply_attribute_updates(&ups, &item).unwrap();
        assert_eq!(new["leaseCounter"], Attr::N("6".into()));
        assert_eq!(new["leaseOwner"], Attr::S("b".into()));
        assert_eq!(new["ownerSwitchesSinceCheckpoint"], Attr::N("1".into()));
        assert!(!new.contains_key("checkpointOwner"));
        let bad = Value::map().with("x", Value::map().with("Action", "PUT"));
        assert!(attribute_updates(&bad).is_err());
    }
}
