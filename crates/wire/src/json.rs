//! `application/x-amz-json-1.1`: shape-directed decoding straight from the
//! body bytes (no intermediate JSON tree) and encoding.

use std::cell::RefCell;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::{Bytes, BytesMut};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::model::{Service, ShapeId, ShapeKind};
use crate::{AwsError, Key, Value};

/// What the body held where a value of some shape was expected.
pub(crate) enum Found<'a> {
    Bool,
    /// A number (`float`: written with a fraction or exponent).
    Number,
    Str(&'a str),
    List,
    Object,
}

const BIG_NUMBER: &str = "class com.amazon.coral.value.json.numbers.TruncatingBigNumber";
const LIST_HERE: &str = "Start of list found where not expected";
const OBJECT_HERE: &str = "Start of structure or map found where not expected.";

/// The SerializationException message AWS (Coral) gives when `found` is
/// where a value of `kind` was expected (texts from kinesalite, recorded
/// against AWS).
pub(crate) fn type_error(kind: &ShapeKind, found: Found<'_>) -> String {
    let scalar = |java: &str| -> String {
        match &found {
            Found::Bool => format!("class java.lang.Boolean can not be converted to an {java}"),
            Found::Number => format!("{BIG_NUMBER} can not be converted to an {java}"),
            Found::Str(_) => format!("class java.lang.String can not be converted to an {java}"),
            Found::List => LIST_HERE.to_string(),
            Found::Object => OBJECT_HERE.to_string(),
        }
    };
    match kind {
        ShapeKind::Boolean => match found {
            Found::Str(s) => format!("'{}' can not be converted to an Boolean", s.to_uppercase()),
            _ => scalar("Boolean"),
        },
        ShapeKind::Integer => scalar("Integer"),
        ShapeKind::Long => scalar("Long"),
        ShapeKind::Double => scalar("Double"),
        ShapeKind::Float => scalar("Float"),
        ShapeKind::String => scalar("String"),
        // Not recorded anywhere; Coral's Java type for timestamps is Date.
        ShapeKind::Timestamp => scalar("Date"),
        ShapeKind::Blob => match found {
            Found::Bool => "class java.lang.Boolean can not be converted to a Blob".to_string(),
            Found::Number => format!("{BIG_NUMBER} can not be converted to a Blob"),
            Found::Str(_) => "class java.lang.String can not be converted to a Blob".to_string(),
            Found::List => LIST_HERE.to_string(),
            Found::Object => OBJECT_HERE.to_string(),
        },
        ShapeKind::List { .. } => match found {
            Found::Object => OBJECT_HERE.to_string(),
            _ => "Expected list or null".to_string(),
        },
        ShapeKind::Map { .. } => match found {
            Found::List => LIST_HERE.to_string(),
            _ => "Expected map or null".to_string(),
        },
        ShapeKind::Structure { .. } => match found {
            Found::List => LIST_HERE.to_string(),
            _ => "Expected null".to_string(),
        },
    }
}

/// Decodes a base64 blob as AWS does (standard alphabet, padded), with
/// AWS's messages for the ways it can be wrong.
pub(crate) fn decode_base64(s: &str) -> Result<Bytes, String> {
    if !s.len().is_multiple_of(4) {
        return Err(format!(
            "'{s}' can not be converted to a Blob: Base64 encoded length is expected a multiple of 4 bytes but found: {}",
            s.chars().count()
        ));
    }
    match STANDARD.decode(s) {
        Ok(v) => Ok(Bytes::from(v)),
        Err(_) => {
            // Slow path, only for bad input: find the first offending
            // character the way AWS reports it.
            let b = s.as_bytes();
            for (i, &c) in b.iter().enumerate() {
                let in_alphabet = c.is_ascii_alphanumeric() || c == b'+' || c == b'/' || c == b'=';
                let bad_pad = c == b'=' && b.get(i + 1).is_some_and(|&n| n != b'=');
                if !in_alphabet || bad_pad {
                    let ch = s[i..].chars().next().unwrap_or('?');
                    return Err(format!(
                        "'{s}' can not be converted to a Blob: Invalid Base64 character: '{ch}'"
                    ));
                }
            }
            // (sic: "dectected" is AWS's spelling)
            Err(format!(
                "'{s}' can not be converted to a Blob: Invalid last non-pad Base64 character dectected"
            ))
        }
    }
}

/// Seconds (possibly fractional) since the epoch to milliseconds.
pub(crate) fn seconds_to_ms(s: f64) -> i64 {
    (s * 1000.0).round() as i64
}

/// Shared state of one decode: the first type error met (the serde error
/// itself only carries "abort"), and the arena blobs are decoded into.
struct Ctx<'s> {
    svc: &'s Service,
    error: RefCell<Option<String>>,
    arena: RefCell<BlobArena>,
}

/// Decoded blobs of one request share a few large allocations (slices of
/// one `BytesMut`, frozen), instead of one or two allocations per record.
/// A blob keeps its chunk alive; a chunk is at most 3/4 of the body.
struct BlobArena {
    buf: BytesMut,
    /// Capacity for the first chunk: enough for every blob in the body.
    first: usize,
}

impl BlobArena {
    fn new(body_len: usize) -> BlobArena {
        BlobArena {
            buf: BytesMut::new(),
            first: body_len / 4 * 3 + 3,
        }
    }

    fn decode(&mut self, s: &str) -> Result<Bytes, String> {
        if !s.len().is_multiple_of(4) {
            return decode_base64(s);
        }
        let estimate = s.len() / 4 * 3;
        if self.buf.capacity() < estimate {
            let cap = estimate.max(std::mem::take(&mut self.first)).max(4096);
            self.buf = BytesMut::with_capacity(cap);
        }
        self.buf.resize(estimate, 0);
        match STANDARD.decode_slice(s, &mut self.buf[..]) {
            Ok(n) => {
                self.buf.truncate(n);
                Ok(self.buf.split_to(n).freeze())
            }
            Err(_) => {
                self.buf.clear();
                decode_base64(s)
            }
        }
    }
}

impl Ctx<'_> {
    fn fail<E: serde::de::Error>(&self, msg: String) -> E {
        let mut slot = self.error.borrow_mut();
        if slot.is_none() {
            *slot = Some(msg);
        }
        E::custom("type error")
    }
}

#[derive(Clone, Copy)]
struct Seed<'c, 's> {
    ctx: &'c Ctx<'s>,
    shape: ShapeId,
}

impl<'de> DeserializeSeed<'de> for Seed<'_, '_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl Seed<'_, '_> {
    fn kind(&self) -> &ShapeKind {
        &self.ctx.svc.shape(self.shape).kind
    }

    fn number<E: serde::de::Error>(self, i: Option<i64>, f: f64) -> Result<Value, E> {
        match self.kind() {
            ShapeKind::Integer | ShapeKind::Long => Ok(Value::Int(match i {
                Some(i) => i,
                None => f.floor() as i64,
            })),
            ShapeKind::Double | ShapeKind::Float => Ok(Value::Float(f)),
            ShapeKind::Timestamp => Ok(Value::Timestamp(match i {
                Some(i) => i.saturating_mul(1000),
                None => seconds_to_ms(f),
            })),
            // kinesalite: "For some reason, doubles are fine" for booleans.
            ShapeKind::Boolean if i.is_none() => Ok(Value::Bool(f != 0.0)),
            k => Err(self.ctx.fail(type_error(k, Found::Number))),
        }
    }

    fn string<E: serde::de::Error>(self, s: &str) -> Result<Value, E> {
        match self.kind() {
            ShapeKind::String => Ok(Value::String(s.to_string())),
            ShapeKind::Blob => self
                .ctx
                .arena
                .borrow_mut()
                .decode(s)
                .map(Value::Blob)
                .map_err(|m| self.ctx.fail(m)),
            // kinesalite notes 'true'/'false'/'1'/'0'/'yes'/'no' convert.
            ShapeKind::Boolean => match s.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(Value::Bool(true)),
                "false" | "0" | "no" => Ok(Value::Bool(false)),
                _ => Err(self.ctx.fail(type_error(self.kind(), Found::Str(s)))),
            },
            k => Err(self.ctx.fail(type_error(k, Found::Str(s)))),
        }
    }
}

impl<'de> Visitor<'de> for Seed<'_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<Value, E> {
        match self.kind() {
            ShapeKind::Boolean => Ok(Value::Bool(b)),
            k => Err(self.ctx.fail(type_error(k, Found::Bool))),
        }
    }

    fn visit_i64<E: serde::de::Error>(self, i: i64) -> Result<Value, E> {
        self.number(Some(i), i as f64)
    }

    fn visit_u64<E: serde::de::Error>(self, u: u64) -> Result<Value, E> {
        self.number(Some(i64::try_from(u).unwrap_or(i64::MAX)), u as f64)
    }

    fn visit_f64<E: serde::de::Error>(self, f: f64) -> Result<Value, E> {
        self.number(None, f)
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Value, E> {
        self.string(s)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        match *self.kind() {
            ShapeKind::List { member } => {
                let seed = Seed {
                    ctx: self.ctx,
                    shape: member,
                };
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(v) = seq.next_element_seed(seed)? {
                    out.push(v);
                }
                Ok(Value::List(out))
            }
            ref k => Err(self.ctx.fail(type_error(k, Found::List))),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        match self.kind() {
            ShapeKind::Structure { members } => {
                let mut out: Vec<(Key, Value)> = Vec::with_capacity(members.len().min(8));
                // Members seen so far (the first 128), to spot repeats cheaply.
                let mut seen = 0u128;
                while let Some(idx) = map.next_key_seed(MemberKey(members))? {
                    let Some(idx) = idx else {
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    };
                    let m = &members[idx];
                    let v = map.next_value_seed(Seed {
                        ctx: self.ctx,
                        shape: m.shape,
                    })?;
                    // Repeated keys: the last one wins.
                    let bit = 1u128.checked_shl(idx as u32).unwrap_or(0);
                    if seen & bit != 0 || bit == 0 {
                        out.retain(|(k, _)| *k != m.name);
                    }
                    seen |= bit;
                    if !matches!(v, Value::Null) {
                        out.push((Key::Borrowed(m.name), v));
                    }
                }
                Ok(Value::Map(out))
            }
            &ShapeKind::Map { value, .. } => {
                let mut out: Vec<(Key, Value)> = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    let v = map.next_value_seed(Seed {
                        ctx: self.ctx,
                        shape: value,
                    })?;
                    out.retain(|(old, _)| *old != k);
                    // As for structure members, null means absent.
                    if !matches!(v, Value::Null) {
                        out.push((Key::Owned(k), v));
                    }
                }
                Ok(Value::Map(out))
            }
            k => Err(self.ctx.fail(type_error(k, Found::Object))),
        }
    }
}

/// Matches an object key against a structure's members (borrowed when the
/// key has no escapes): `Some(index)`, or `None` for an unknown member.
struct MemberKey<'m>(&'m [crate::model::Member]);

impl<'de> DeserializeSeed<'de> for MemberKey<'_> {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        // Raw bytes: serde_json then skips the UTF-8 check (member names
        // are ASCII; an unknown key is skipped either way).
        d.deserialize_bytes(self)
    }
}

impl<'de> Visitor<'de> for MemberKey<'_> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member name")
    }
    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Option<usize>, E> {
        self.visit_bytes(s.as_bytes())
    }
    fn visit_bytes<E: serde::de::Error>(self, s: &[u8]) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|m| m.name.as_bytes() == s))
    }
}

/// Top level: the body must be one JSON object.
struct Top<'c, 's>(Seed<'c, 's>);

impl<'de> DeserializeSeed<'de> for Top<'_, '_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Top<'_, '_> {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        self.0.visit_map(map)
    }
}

/// Decodes a JSON request body against structure `shape` (or, with `None`,
/// checks it is an object and returns an empty structure).
pub(crate) fn decode(
    svc: &Service,
    shape: Option<ShapeId>,
    body: &[u8],
) -> Result<Value, AwsError> {
    let ctx = Ctx {
        svc,
        error: RefCell::new(None),
        arena: RefCell::new(BlobArena::new(body.len())),
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let result = match shape {
        Some(shape) => Top(Seed { ctx: &ctx, shape }).deserialize(&mut de),
        None => IgnoredObject.deserialize(&mut de).map(|()| Value::map()),
    };
    let result = result.and_then(|v| de.end().map(|()| v));
    match result {
        Ok(v) => Ok(v),
        Err(_) => Err(match ctx.error.into_inner() {
            Some(msg) => AwsError::serialization(msg),
            None => AwsError::bare("SerializationException"),
        }),
    }
}

/// Accepts any JSON object, ignoring its content.
struct IgnoredObject;

impl<'de> DeserializeSeed<'de> for IgnoredObject {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for IgnoredObject {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

// ---------------------------------------------------------------- encoding

/// Writes `s` as a JSON string literal.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    // Fast path for the common case (sequence numbers, shard ids, keys):
    // nothing to escape, so the bytes go out as they are. JSON only needs
    // `"`, `\` and control characters escaped; other UTF-8 is written raw,
    // as serde_json does.
    // (A non-short-circuiting fold, so the check vectorizes.)
    let plain = s
        .bytes()
        .fold(true, |ok, b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'));
    if plain {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    // serde_json's escaping; writing to a Vec cannot fail.
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec");
}

fn write_f64(out: &mut Vec<u8>, f: f64) {
    if f.is_finite() {
        serde_json::to_writer(&mut *out, &f).expect("writing to a Vec");
    } else if f.is_nan() {
        write_str(out, "NaN");
    } else if f > 0.0 {
        write_str(out, "Infinity");
    } else {
        write_str(out, "-Infinity");
    }
}

/// `bytes` as a base64 JSON string (base64 needs no escaping).
pub fn write_base64(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    let start = out.len();
    out.resize(
        start + base64::encoded_len(bytes.len(), true).unwrap_or(0),
        0,
    );
    let n = STANDARD
        .encode_slice(bytes, &mut out[start..])
        .expect("sized buffer");
    out.truncate(start + n);
    out.push(b'"');
}

/// Epoch milliseconds as JSON epoch seconds with a millisecond fraction
/// (`1700000000.5`, `1700000000.0`): written digit by digit, once per record
/// of every GetRecords answer.
pub fn write_timestamp(out: &mut Vec<u8>, ms: i64) {
    let abs = ms.unsigned_abs();
    let (secs, frac) = (abs / 1000, abs % 1000);
    if ms < 0 {
        out.push(b'-');
    }
    write_u64(out, secs);
    out.push(b'.');
    if frac == 0 {
        out.push(b'0');
    } else {
        let digits = [
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ];
        let keep = 3 - digits.iter().rev().take_while(|&&d| d == b'0').count();
        out.extend_from_slice(&digits[..keep]);
    }
}

/// `v` in decimal.
fn write_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[at..]);
}

/// Encodes `v` as JSON, guided by `shape` where known (members not in the
/// model are written by their value's own type).
pub(crate) fn encode_value(svc: &Service, shape: Option<ShapeId>, v: &Value, out: &mut Vec<u8>) {
    let kind = shape.map(|s| &svc.shape(s).kind);
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Int(i) => match kind {
            Some(ShapeKind::Timestamp) => write_timestamp(out, *i),
            _ => out.extend_from_slice(i.to_string().as_bytes()),
        },
        Value::Float(f) => match kind {
            Some(ShapeKind::Integer | ShapeKind::Long) => {
                out.extend_from_slice((*f as i64).to_string().as_bytes())
            }
            _ => write_f64(out, *f),
        },
        Value::String(s) => match kind {
            Some(ShapeKind::Blob) => write_str(out, &STANDARD.encode(s.as_bytes())),
            _ => write_str(out, s),
        },
        Value::Blob(b) => write_base64(out, b),
        Value::Timestamp(ms) => write_timestamp(out, *ms),
        Value::Lazy(list) => {
            let member = match kind {
                Some(ShapeKind::List { member }) => Some(*member),
                _ => None,
            };
            out.push(b'[');
            for i in 0..list.0.len() {
                if i > 0 {
                    out.push(b',');
                }
                if !list.0.write_json(i, out) {
                    encode_value(svc, member, &list.0.item(i), out);
                }
            }
            out.push(b']');
        }
        Value::List(items) => {
            let member = match kind {
                Some(ShapeKind::List { member }) => Some(*member),
                _ => None,
            };
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                encode_value(svc, member, item, out);
            }
            out.push(b']');
        }
        Value::Map(entries) => {
            out.push(b'{');
            let mut first = true;
            // Members usually come in model order: look just past the last
            // one found before searching the whole structure.
            let mut next_member = 0;
            for (k, item) in entries {
                if matches!(item, Value::Null) {
                    continue;
                }
                let item_shape = match kind {
                    Some(ShapeKind::Structure { members }) => {
                        let at = match members.get(next_member) {
                            Some(m) if m.name == *k => Some(next_member),
                            _ => members.iter().position(|m| m.name == *k),
                        };
                        at.map(|i| {
                            next_member = i + 1;
                            members[i].shape
                        })
                    }
                    Some(ShapeKind::Map { value, .. }) => Some(*value),
                    _ => None,
                };
                if !first {
                    out.push(b',');
                }
                first = false;
                match k {
                    // Borrowed keys are member names of the model or of our
                    // own code: identifiers, never in need of escaping.
                    Key::Borrowed(name) => {
                        debug_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
                        out.push(b'"');
                        out.extend_from_slice(name.as_bytes());
                        out.push(b'"');
                    }
                    Key::Owned(name) => write_str(out, name),
                }
                out.push(b':');
                encode_value(svc, item_shape, item, out);
            }
            out.push(b'}');
        }
    }
}
