//! Accessors and builders for [`Value`], the document model shared by the
//! codecs, the validator and the service handlers.

use bytes::Bytes;

use crate::{Key, Value};

impl Value {
    /// An empty structure.
    pub fn map() -> Value {
        Value::Map(Vec::new())
    }

    /// An empty structure with room for `n` members (one allocation for
    /// the per-record answers built by the thousand).
    pub fn map_with_capacity(n: usize) -> Value {
        Value::Map(Vec::with_capacity(n))
    }

    /// Member `key` of a structure; `None` if absent, explicitly null, or
    /// if `self` is not a structure.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(members) => members
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v)
                .filter(|v| !matches!(v, Value::Null)),
            _ => None,
        }
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
    pub fn i64(&self, key: &str) -> Option<i64> {
        self.get(key).and_then(Value::as_i64)
    }
    pub fn bool(&self, key: &str) -> Option<bool> {
        self.get(key).and_then(Value::as_bool)
    }
    pub fn blob(&self, key: &str) -> Option<&Bytes> {
        self.get(key).and_then(Value::as_blob)
    }
    pub fn timestamp(&self, key: &str) -> Option<i64> {
        self.get(key).and_then(Value::as_timestamp)
    }
    pub fn list(&self, key: &str) -> Option<&[Value]> {
        self.get(key).and_then(Value::as_list)
    }

    /// The items of list member `key`, whether built up front or produced
    /// on demand ([`Value::Lazy`]).
    pub fn items(&self, key: &str) -> Option<Vec<Value>> {
        match self.get(key)? {
            Value::List(items) => Some(items.clone()),
            Value::Lazy(list) => Some(list.items()),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Float(f) if f.fract() == 0.0 => Some(*f as i64),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
    pub fn as_blob(&self) -> Option<&Bytes> {
        match self {
            Value::Blob(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_timestamp(&self) -> Option<i64> {
        match self {
            Value::Timestamp(t) => Some(*t),
            _ => None,
        }
    }
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }
    pub fn as_map(&self) -> Option<&[(Key, Value)]> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// About the size of this value encoded as JSON (CBOR is smaller), so
    /// that a multi-megabyte GetRecords answer is written into one buffer
    /// instead of growing through a dozen reallocations.
    pub fn encoded_len_hint(&self) -> usize {
        match self {
            Value::Null | Value::Bool(_) => 5,
            Value::Int(_) | Value::Float(_) | Value::Timestamp(_) => 20,
            Value::String(s) => s.len() + 2,
            Value::Blob(b) => b.len().div_ceil(3) * 4 + 2,
            Value::Lazy(list) => {
                // Estimated from a sample of the items.
                let n = list.0.len();
                let step = (n / 16).max(1);
                let sample: Vec<usize> = (0..n)
                    .step_by(step)
                    .take(16)
                    .map(|i| list.0.item(i).encoded_len_hint() + 1)
                    .collect();
                let per = sample.iter().sum::<usize>() / sample.len().max(1);
                2 + per * n + per * n / 16
            }
            // Long lists (records) are estimated from a sample of their
            // items: a hint, not a bound.
            Value::List(items) if items.len() > 64 => {
                let step = items.len() / 16;
                let sample: usize = items
                    .iter()
                    .step_by(step)
                    .take(16)
                    .map(|v| v.encoded_len_hint() + 1)
                    .sum();
                2 + sample * items.len() / 16 + sample / 8
            }
            Value::List(items) => {
                2 + items
                    .iter()
                    .map(|v| v.encoded_len_hint() + 1)
                    .sum::<usize>()
            }
            Value::Map(members) => {
                2 + members
                    .iter()
                    .map(|(k, v)| k.len() + 4 + v.encoded_len_hint())
                    .sum::<usize>()
            }
        }
    }

    /// Removes member `key` from a structure and returns it (`None` if
    /// absent or if `self` is not a structure).
    pub fn take(&mut self, key: &str) -> Option<Value> {
        let Value::Map(members) = self else {
            return None;
        };
        let at = members.iter().position(|(k, _)| k == key)?;
        Some(members.swap_remove(at).1)
    }

    /// Builder: sets member `key` (replacing an existing one) and returns
    /// the structure. `Value::Null` values are kept out of the output.
    pub fn with(mut self, key: impl Into<Key>, value: impl Into<Value>) -> Value {
        self.set(key, value);
        self
    }

    /// Sets member `key`; a null value removes it. Panics if `self` is not a
    /// structure (a programming error, never input-driven).
    pub fn set(&mut self, key: impl Into<Key>, value: impl Into<Value>) {
        let key = key.into();
        let value = value.into();
        let Value::Map(members) = self else {
            panic!("Value::set on a non-structure");
        };
        members.retain(|(k, _)| *k != key);
        if !matches!(value, Value::Null) {
            members.push((key, value));
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_string())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}
impl From<&String> for Value {
    fn from(s: &String) -> Value {
        Value::String(s.clone())
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i)
    }
}
impl From<u32> for Value {
    fn from(i: u32) -> Value {
        Value::Int(i as i64)
    }
}
impl From<usize> for Value {
    fn from(i: usize) -> Value {
        Value::Int(i as i64)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}
impl From<Bytes> for Value {
    fn from(b: Bytes) -> Value {
        Value::Blob(b)
    }
}
impl From<Vec<Value>> for Value {
    fn from(l: Vec<Value>) -> Value {
        Value::List(l)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(o: Option<T>) -> Value {
        o.map_or(Value::Null, Into::into)
    }
}
