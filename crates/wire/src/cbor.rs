//! `application/x-amz-cbor-1.1`: maps keyed by member name, blobs as byte
//! strings, timestamps as tag 1 + integer epoch milliseconds.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use ciborium::Value as Cbor;

use crate::json::{Found, seconds_to_ms, type_error};
use crate::model::{Service, ShapeId, ShapeKind};
use crate::{AwsError, Value};

/// CBOR tag of an epoch-based date/time.
const TAG_EPOCH: u64 = 1;

/// An untagged integer timestamp below this is taken as seconds, above as
/// milliseconds (1e11 ms is 1973; 1e11 s is the year 5138).
const SECONDS_LIMIT: i128 = 100_000_000_000;

pub(crate) fn to_vec(v: &Cbor) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    ciborium::ser::into_writer(v, &mut out).expect("writing CBOR to a Vec");
    out
}

fn found(v: &Cbor) -> Found<'_> {
    match v {
        Cbor::Bool(_) => Found::Bool,
        Cbor::Integer(_) | Cbor::Float(_) => Found::Number,
        Cbor::Text(s) => Found::Str(s),
        Cbor::Bytes(_) => Found::Str(""),
        Cbor::Array(_) => Found::List,
        Cbor::Map(_) => Found::Object,
        Cbor::Tag(_, inner) => found(inner),
        _ => Found::Number,
    }
}

fn clamp(i: i128) -> i64 {
    i.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

fn convert(svc: &Service, shape: ShapeId, v: Cbor) -> Result<Value, String> {
    let kind = &svc.shape(shape).kind;
    if matches!(v, Cbor::Null) {
        return Ok(Value::Null);
    }
    // Any tag other than the timestamp one is looked through.
    let v = match v {
        Cbor::Tag(t, inner) if t != TAG_EPOCH || !matches!(kind, ShapeKind::Timestamp) => *inner,
        v => v,
    };
    match (kind, v) {
        (ShapeKind::Timestamp, Cbor::Tag(_, inner)) => match *inner {
            // Tag 1 + integer: milliseconds (what the AWS Java SDKs send).
            Cbor::Integer(i) => Ok(Value::Timestamp(clamp(i128::from(i)))),
            // Tag 1 + float: RFC 8949 seconds; accepted leniently.
            Cbor::Float(f) => Ok(Value::Timestamp(seconds_to_ms(f))),
            other => Err(type_error(kind, found(&other))),
        },
        (ShapeKind::Timestamp, Cbor::Integer(i)) => {
            let i = i128::from(i);
            Ok(Value::Timestamp(if i.abs() < SECONDS_LIMIT {
                clamp(i * 1000)
            } else {
                clamp(i)
            }))
        }
        (ShapeKind::Timestamp, Cbor::Float(f)) => Ok(Value::Timestamp(seconds_to_ms(f))),
        (ShapeKind::Boolean, Cbor::Bool(b)) => Ok(Value::Bool(b)),
        (ShapeKind::Integer | ShapeKind::Long, Cbor::Integer(i)) => {
            Ok(Value::Int(clamp(i128::from(i))))
        }
        (ShapeKind::Integer | ShapeKind::Long, Cbor::Float(f)) => Ok(Value::Int(f.floor() as i64)),
        (ShapeKind::Double | ShapeKind::Float, Cbor::Float(f)) => Ok(Value::Float(f)),
        (ShapeKind::Double | ShapeKind::Float, Cbor::Integer(i)) => {
            Ok(Value::Float(i128::from(i) as f64))
        }
        (ShapeKind::String, Cbor::Text(s)) => Ok(Value::String(s)),
        // Lenient: UTF-8 bytes where a string is expected.
        (ShapeKind::String, Cbor::Bytes(b)) => String::from_utf8(b)
            .map(Value::String)
            .map_err(|_| type_error(kind, Found::Str(""))),
        (ShapeKind::Blob, Cbor::Bytes(b)) => Ok(Value::Blob(Bytes::from(b))),
        // A text string where a blob is expected: base64, as in JSON.
        (ShapeKind::Blob, Cbor::Text(s)) => crate::json::decode_base64(&s).map(Value::Blob),
        (&ShapeKind::List { member }, Cbor::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(convert(svc, member, item)?);
            }
            Ok(Value::List(out))
        }
        (ShapeKind::Structure { members }, Cbor::Map(entries)) => {
            let mut out: Vec<(String, Value)> = Vec::with_capacity(entries.len());
            for (k, item) in entries {
                let Cbor::Text(k) = k else { continue };
                let Some(m) = members.iter().find(|m| m.name == k) else {
                    continue;
                };
                let item = convert(svc, m.shape, item)?;
                out.retain(|(old, _)| *old != m.name);
                if !matches!(item, Value::Null) {
                    out.push((k, item));
                }
            }
            Ok(Value::Map(out))
        }
        (&ShapeKind::Map { value, .. }, Cbor::Map(entries)) => {
            let mut out: Vec<(String, Value)> = Vec::with_capacity(entries.len());
            for (k, item) in entries {
                let Cbor::Text(k) = k else {
                    return Err("Expected map key to be a string".to_string());
                };
                let item = convert(svc, value, item)?;
                out.retain(|(old, _)| *old != k);
                out.push((k, item));
            }
            Ok(Value::Map(out))
        }
        (_, other) => Err(type_error(kind, found(&other))),
    }
}

/// Decodes a CBOR request body against structure `shape`.
pub(crate) fn decode(
    svc: &Service,
    shape: Option<ShapeId>,
    body: &[u8],
) -> Result<Value, AwsError> {
    let parsed: Cbor =
        ciborium::de::from_reader(body).map_err(|_| AwsError::bare("SerializationException"))?;
    let parsed = match parsed {
        Cbor::Tag(_, inner) => *inner,
        p => p,
    };
    if !matches!(parsed, Cbor::Map(_)) {
        return Err(AwsError::bare("SerializationException"));
    }
    match shape {
        Some(shape) => convert(svc, shape, parsed).map_err(AwsError::serialization),
        None => Ok(Value::map()),
    }
}

/// Converts `v` to CBOR, guided by `shape` where known.
pub(crate) fn to_cbor(svc: &Service, shape: Option<ShapeId>, v: &Value) -> Cbor {
    let kind = shape.map(|s| &svc.shape(s).kind);
    match v {
        Value::Null => Cbor::Null,
        Value::Bool(b) => Cbor::Bool(*b),
        Value::Int(i) => match kind {
            Some(ShapeKind::Timestamp) => {
                Cbor::Tag(TAG_EPOCH, Box::new(Cbor::Integer((*i).into())))
            }
            Some(ShapeKind::Double | ShapeKind::Float) => Cbor::Float(*i as f64),
            _ => Cbor::Integer((*i).into()),
        },
        Value::Float(f) => match kind {
            Some(ShapeKind::Integer | ShapeKind::Long) => Cbor::Integer((*f as i64).into()),
            Some(ShapeKind::Timestamp) => {
                Cbor::Tag(TAG_EPOCH, Box::new(Cbor::Integer((*f as i64).into())))
            }
            _ => Cbor::Float(*f),
        },
        Value::String(s) => match kind {
            Some(ShapeKind::Blob) => Cbor::Bytes(s.as_bytes().to_vec()),
            _ => Cbor::Text(s.clone()),
        },
        Value::Blob(b) => match kind {
            // A blob where the model has a string: send it as base64 text.
            Some(ShapeKind::String) => Cbor::Text(STANDARD.encode(b)),
            _ => Cbor::Bytes(b.to_vec()),
        },
        Value::Timestamp(ms) => Cbor::Tag(TAG_EPOCH, Box::new(Cbor::Integer((*ms).into()))),
        Value::List(items) => {
            let member = match kind {
                Some(ShapeKind::List { member }) => Some(*member),
                _ => None,
            };
            Cbor::Array(items.iter().map(|i| to_cbor(svc, member, i)).collect())
        }
        Value::Map(entries) => Cbor::Map(
            entries
                .iter()
                .filter(|(_, item)| !matches!(item, Value::Null))
                .map(|(k, item)| {
                    let item_shape = match kind {
                        Some(ShapeKind::Structure { members }) => {
                            members.iter().find(|m| m.name == *k).map(|m| m.shape)
                        }
                        Some(ShapeKind::Map { value, .. }) => Some(*value),
                        _ => None,
                    };
                    (Cbor::Text(k.clone()), to_cbor(svc, item_shape, item))
                })
                .collect(),
        ),
    }
}
