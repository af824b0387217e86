//! Model-driven constraint validation with AWS's ValidationException text:
//! `N validation errors detected: Value '<v>' at '<path>' failed to satisfy
//! constraint: Member must <rule>; ...`.

use std::fmt::Write;

use crate::model::{Service, Shape, ShapeId, ShapeKind};
use crate::{AwsError, Value};

/// AWS lists at most this many violations in one message.
pub const MAX_LISTED: usize = 10;

/// One step of a validation path.
#[derive(Clone, Copy)]
enum Seg<'a> {
    Member(&'a str),
    /// 0-based list index (printed 1-based, followed by `.member`).
    Index(usize),
    /// Map key (followed by `.member`).
    Key(&'a str),
}

struct Validator<'a> {
    svc: &'a Service,
    path: Vec<Seg<'a>>,
    errors: Vec<String>,
}

/// Whether a value of `shape` is a scalar (not a list, map or structure).
fn is_scalar(shape: &Shape) -> bool {
    !matches!(
        shape.kind,
        ShapeKind::Structure { .. } | ShapeKind::List { .. } | ShapeKind::Map { .. }
    )
}

fn length_of(v: &Value) -> Option<i64> {
    Some(match v {
        Value::String(s) => s.chars().count() as i64,
        Value::Blob(b) => b.len() as i64,
        Value::List(l) => l.len() as i64,
        Value::Lazy(l) => l.0.len() as i64,
        Value::Map(m) => m.len() as i64,
        _ => return None,
    })
}

fn number_of(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}

/// The rules (without "Member must ") of a scalar shape that `v` breaks,
/// in AWS's order: enum, pattern, length min, length max, value min, value
/// max.
fn scalar_violations(shape: &Shape, v: &Value, out: &mut Vec<String>) {
    if let (Some(values), Value::String(s)) = (&shape.enum_values, v)
        && !values.iter().any(|e| e == s)
    {
        out.push(enum_rule(values));
    }
    if let (Some(p), Value::String(s)) = (&shape.pattern, v)
        && !p.is_match(s)
    {
        out.push(format!("satisfy regular expression pattern: {}", p.source));
    }
    let is_number = matches!(
        shape.kind,
        ShapeKind::Integer | ShapeKind::Long | ShapeKind::Double | ShapeKind::Float
    );
    if is_number {
        if let Some(n) = number_of(v) {
            if let Some(min) = shape.min
                && n < min as f64
            {
                out.push(format!("have value greater than or equal to {min}"));
            }
            if let Some(max) = shape.max
                && n > max as f64
            {
                out.push(format!("have value less than or equal to {max}"));
            }
        }
    } else if (shape.min.is_some() || shape.max.is_some())
        && let Some(len) = length_of(v)
    {
        if let Some(min) = shape.min
            && len < min
        {
            out.push(format!("have length greater than or equal to {min}"));
        }
        if let Some(max) = shape.max
            && len > max
        {
            out.push(format!("have length less than or equal to {max}"));
        }
    }
}

fn enum_rule(values: &[String]) -> String {
    format!("satisfy enum value set: [{}]", values.join(", "))
}

/// All the constraints of a scalar shape, as listed when a list member or
/// map key/value breaks one: `[Member must have length less than or equal
/// to 128, Member must have length greater than or equal to 1]` (AWS lists
/// the maximum first).
fn all_rules(shape: &Shape) -> Vec<String> {
    let mut rules = Vec::new();
    let is_number = matches!(
        shape.kind,
        ShapeKind::Integer | ShapeKind::Long | ShapeKind::Double | ShapeKind::Float
    );
    let what = if is_number { "value" } else { "length" };
    if let Some(max) = shape.max {
        rules.push(format!(
            "Member must have {what} less than or equal to {max}"
        ));
    }
    if let Some(min) = shape.min {
        rules.push(format!(
            "Member must have {what} greater than or equal to {min}"
        ));
    }
    if let Some(p) = &shape.pattern {
        rules.push(format!(
            "Member must satisfy regular expression pattern: {}",
            p.source
        ));
    }
    if let Some(values) = &shape.enum_values {
        rules.push(format!("Member must {}", enum_rule(values)));
    }
    rules
}

/// A small stable hash, standing in for Java's identity hash code when a
/// structure is printed (`PutRecordsRequestEntry@1b2c3d4e`).
fn fake_hash(v: &Value, h: &mut u32) {
    fn mix(h: &mut u32, bytes: &[u8]) {
        for &b in bytes {
            *h = (*h ^ b as u32).wrapping_mul(16_777_619);
        }
    }
    match v {
        Value::Null => mix(h, b"n"),
        Value::Bool(b) => mix(h, &[*b as u8]),
        Value::Int(i) | Value::Timestamp(i) => mix(h, &i.to_le_bytes()),
        Value::Float(f) => mix(h, &f.to_le_bytes()),
        Value::String(s) => mix(h, s.as_bytes()),
        Value::Blob(b) => mix(h, b),
        Value::List(l) => l.iter().for_each(|x| fake_hash(x, h)),
        Value::Lazy(l) => l.items().iter().for_each(|x| fake_hash(x, h)),
        Value::Map(m) => m.iter().for_each(|(k, x)| {
            mix(h, k.as_bytes());
            fake_hash(x, h)
        }),
    }
}

/// Prints a value the way Java's `toString` would in AWS's messages.
fn print(svc: &Service, shape: Option<ShapeId>, v: &Value, out: &mut String) {
    let kind = shape.map(|s| &svc.shape(s).kind);
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) => {
            let _ = write!(out, "{f:?}");
        }
        Value::Timestamp(ms) => {
            let _ = write!(out, "{ms}");
        }
        Value::String(s) => out.push_str(s),
        Value::Blob(b) => {
            let _ = write!(
                out,
                "java.nio.HeapByteBuffer[pos=0 lim={0} cap={0}]",
                b.len()
            );
        }
        Value::List(items) => {
            let member = match kind {
                Some(ShapeKind::List { member }) => Some(*member),
                _ => None,
            };
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                print(svc, member, item, out);
            }
            out.push(']');
        }
        Value::Lazy(list) => print(svc, shape, &Value::List(list.items()), out),
        Value::Map(entries) => match (kind, shape) {
            (Some(ShapeKind::Structure { .. }), Some(id)) => {
                // Coral's generated classes print as class@hash.
                let mut h = 2_166_136_261u32;
                fake_hash(v, &mut h);
                let _ = write!(out, "{}.{}@{h:x}", svc.java_package(), svc.shape(id).name);
            }
            _ => {
                let value_shape = match kind {
                    Some(ShapeKind::Map { value, .. }) => Some(*value),
                    _ => None,
                };
                out.push('{');
                for (i, (k, item)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(k);
                    out.push('=');
                    print(svc, value_shape, item, out);
                }
                out.push('}');
            }
        },
    }
}

impl<'a> Validator<'a> {
    fn full(&self) -> bool {
        self.errors.len() >= MAX_LISTED
    }

    fn path_string(&self, last: Option<&str>) -> String {
        let mut p = String::new();
        for seg in &self.path {
            if !p.is_empty() {
                p.push('.');
            }
            match seg {
                Seg::Member(m) => p.push_str(m),
                Seg::Index(i) => {
                    let _ = write!(p, "{}.member", i + 1);
                }
                Seg::Key(k) => {
                    let _ = write!(p, "{k}.member");
                }
            }
        }
        if let Some(last) = last {
            if !p.is_empty() {
                p.push('.');
            }
            p.push_str(last);
        }
        p
    }

    /// Records a violation of `rule` by `v` (of `shape`) at the current
    /// path (+ `last`).
    fn report(&mut self, shape: ShapeId, v: Option<&Value>, last: Option<&str>, rule: &str) {
        if self.full() {
            return;
        }
        let mut msg = String::from("Value ");
        match v {
            None => msg.push_str("null"),
            Some(v) => {
                msg.push('\'');
                print(self.svc, Some(shape), v, &mut msg);
                msg.push('\'');
            }
        }
        let _ = write!(
            msg,
            " at '{}' failed to satisfy constraint: {rule}",
            self.path_string(last)
        );
        self.errors.push(msg);
    }

    fn structure(&mut self, shape: ShapeId, v: &'a Value) {
        let svc = self.svc;
        let ShapeKind::Structure { members } = &svc.shape(shape).kind else {
            return;
        };
        for m in members {
            if self.full() {
                return;
            }
            match v.get(m.name) {
                None if m.required => {
                    self.report(m.shape, None, Some(&m.path_name), "Member must not be null")
                }
                None => {}
                Some(mv) => {
                    self.path.push(Seg::Member(&m.path_name));
                    self.value(m.shape, mv);
                    self.path.pop();
                }
            }
        }
    }

    /// Validates `v` of `shape`; the path already ends with its name.
    fn value(&mut self, shape_id: ShapeId, v: &'a Value) {
        let svc = self.svc;
        let shape = svc.shape(shape_id);
        let mut rules = Vec::new();
        scalar_violations(shape, v, &mut rules);
        for r in &rules {
            self.report(shape_id, Some(v), None, &format!("Member must {r}"));
        }
        match &shape.kind {
            ShapeKind::Structure { .. } => self.structure(shape_id, v),
            &ShapeKind::List { member } => {
                let Value::List(items) = v else { return };
                let member_shape = svc.shape(member);
                if is_scalar(member_shape) {
                    // AWS reports broken scalar members once, on the list.
                    let broken = items.iter().any(|item| {
                        let mut r = Vec::new();
                        scalar_violations(member_shape, item, &mut r);
                        !r.is_empty()
                    });
                    if broken {
                        let rule = format!(
                            "Member must satisfy constraint: [{}]",
                            all_rules(member_shape).join(", ")
                        );
                        self.report(shape_id, Some(v), None, &rule);
                    }
                    return;
                }
                for (i, item) in items.iter().enumerate() {
                    if self.full() {
                        return;
                    }
                    if matches!(item, Value::Null) {
                        continue;
                    }
                    self.path.push(Seg::Index(i));
                    self.value(member, item);
                    self.path.pop();
                }
            }
            &ShapeKind::Map { key, value } => {
                let Value::Map(entries) = v else { return };
                let key_shape = svc.shape(key);
                let key_broken = entries.iter().any(|(k, _)| {
                    let mut r = Vec::new();
                    scalar_violations(key_shape, &Value::String(k.to_string()), &mut r);
                    !r.is_empty()
                });
                if key_broken {
                    let rule = format!(
                        "Map keys must satisfy constraint: [{}]",
                        all_rules(key_shape).join(", ")
                    );
                    self.report(shape_id, Some(v), None, &rule);
                }
                let value_shape = svc.shape(value);
                if is_scalar(value_shape) {
                    let broken = entries.iter().any(|(_, item)| {
                        let mut r = Vec::new();
                        scalar_violations(value_shape, item, &mut r);
                        !r.is_empty()
                    });
                    if broken {
                        let rule = format!(
                            "Map value must satisfy constraint: [{}]",
                            all_rules(value_shape).join(", ")
                        );
                        self.report(shape_id, Some(v), None, &rule);
                    }
                    return;
                }
                for (k, item) in entries {
                    if self.full() {
                        return;
                    }
                    if matches!(item, Value::Null) {
                        continue;
                    }
                    self.path.push(Seg::Key(k));
                    self.value(value, item);
                    self.path.pop();
                }
            }
            _ => {}
        }
    }
}

/// The ValidationException message for `errors` (at most [`MAX_LISTED`]).
pub fn validation_message(errors: &[String]) -> String {
    let n = errors.len();
    format!(
        "{n} validation error{} detected: {}",
        if n == 1 { "" } else { "s" },
        errors.join("; ")
    )
}

/// Checks `input` against the constraints of structure `shape`; returns the
/// listed violations (at most [`MAX_LISTED`]), in model member order,
/// depth first.
pub(crate) fn violations(svc: &Service, shape: ShapeId, input: &Value) -> Vec<String> {
    let mut v = Validator {
        svc,
        path: Vec::new(),
        errors: Vec::new(),
    };
    v.structure(shape, input);
    v.errors
}

pub(crate) fn validate(
    svc: &Service,
    shape: Option<ShapeId>,
    input: &Value,
) -> Result<(), AwsError> {
    let Some(shape) = shape else { return Ok(()) };
    let errors = violations(svc, shape, input);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AwsError::validation(validation_message(&errors)))
    }
}
