//! `application/x-amz-cbor-1.1`: maps keyed by member name, blobs as byte
//! strings, timestamps as tag 1 + integer epoch milliseconds.
//!
//! A small shape-directed reader and writer over the raw bytes (RFC 8949
//! subset the AWS SDKs use: definite and indefinite lengths, tags, half /
//! single / double floats). Going through `ciborium::Value` cost a second
//! tree and a copy of every blob; the tests use ciborium as the independent
//! reference encoder/decoder.

use bytes::{Bytes, BytesMut};

use crate::json::{Found, seconds_to_ms, type_error};
use crate::model::{Service, ShapeId, ShapeKind};
use crate::{AwsError, Key, Value};

/// CBOR tag of an epoch-based date/time.
const TAG_EPOCH: u64 = 1;

/// An untagged integer timestamp below this is taken as seconds, above as
/// milliseconds (1e11 ms is 1973; 1e11 s is the year 5138).
const SECONDS_LIMIT: i128 = 100_000_000_000;

/// Nesting limit (the models nest a few levels; unknown members may not
/// blow the stack).
const MAX_DEPTH: usize = 128;

enum Error {
    /// Not well-formed CBOR: SerializationException without a message.
    Syntax,
    /// Well-formed but the wrong type: SerializationException with text.
    Type(String),
}

type R<T> = Result<T, Error>;

/// A data item's initial byte, decoded.
#[derive(Clone, Copy)]
struct Head {
    major: u8,
    info: u8,
    /// The argument; `None` for indefinite length (info 31).
    arg: Option<u64>,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    depth: usize,
    arena: BytesMut,
    arena_first: usize,
}

fn clamp(i: i128) -> i64 {
    i.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as f64;
    sign * match exp {
        0 => frac * 2f64.powi(-24),
        31 if frac == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        e => (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
    }
}

/// What a value looks like, for type-error messages.
enum Kind<'a> {
    Int(i128),
    Float(f64),
    Bytes(Bytes),
    Text(std::borrow::Cow<'a, str>),
    Bool(bool),
    Null,
    List,
    Map,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader {
            buf,
            pos: 0,
            depth: 0,
            arena: BytesMut::new(),
            arena_first: buf.len(),
        }
    }

    fn byte(&mut self) -> R<u8> {
        let b = *self.buf.get(self.pos).ok_or(Error::Syntax)?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: u64) -> R<&'a [u8]> {
        let n = usize::try_from(n).map_err(|_| Error::Syntax)?;
        let end = self.pos.checked_add(n).ok_or(Error::Syntax)?;
        let s = self.buf.get(self.pos..end).ok_or(Error::Syntax)?;
        self.pos = end;
        Ok(s)
    }

    fn uint(&mut self, len: usize) -> R<u64> {
        let s = self.take(len as u64)?;
        Ok(s.iter().fold(0u64, |acc, &b| (acc << 8) | b as u64))
    }

    fn head(&mut self) -> R<Head> {
        let b = self.byte()?;
        let (major, info) = (b >> 5, b & 0x1f);
        let arg = match info {
            0..=23 => Some(info as u64),
            24 => Some(self.uint(1)?),
            25 => Some(self.uint(2)?),
            26 => Some(self.uint(4)?),
            27 => Some(self.uint(8)?),
            31 if matches!(major, 2..=5 | 7) => None,
            _ => return Err(Error::Syntax),
        };
        Ok(Head { major, info, arg })
    }

    fn peek_break(&self) -> bool {
        self.buf.get(self.pos) == Some(&0xff)
    }

    /// Reads the next `(count or indefinite)` element framing: returns
    /// whether another element follows.
    fn more(&mut self, remaining: &mut Option<u64>) -> R<bool> {
        match remaining {
            Some(0) => Ok(false),
            Some(n) => {
                *n -= 1;
                Ok(true)
            }
            None => {
                if self.peek_break() {
                    self.pos += 1;
                    Ok(false)
                } else {
                    Ok(true)
                }
            }
        }
    }

    /// The content of a byte or text string whose head was `h`.
    fn string_bytes(&mut self, h: Head) -> R<std::borrow::Cow<'a, [u8]>> {
        match h.arg {
            Some(n) => Ok(std::borrow::Cow::Borrowed(self.take(n)?)),
            None => {
                let mut out = Vec::new();
                loop {
                    if self.peek_break() {
                        self.pos += 1;
                        return Ok(std::borrow::Cow::Owned(out));
                    }
                    let c = self.head()?;
                    if c.major != h.major {
                        return Err(Error::Syntax);
                    }
                    let n = c.arg.ok_or(Error::Syntax)?;
                    out.extend_from_slice(self.take(n)?);
                }
            }
        }
    }

    fn text(&mut self, h: Head) -> R<std::borrow::Cow<'a, str>> {
        Ok(match self.string_bytes(h)? {
            std::borrow::Cow::Borrowed(b) => {
                std::borrow::Cow::Borrowed(std::str::from_utf8(b).map_err(|_| Error::Syntax)?)
            }
            std::borrow::Cow::Owned(v) => {
                std::borrow::Cow::Owned(String::from_utf8(v).map_err(|_| Error::Syntax)?)
            }
        })
    }

    /// A blob's bytes, sharing one allocation per request.
    fn blob(&mut self, bytes: &[u8]) -> Bytes {
        if self.arena.capacity() < bytes.len() {
            let cap = bytes
                .len()
                .max(std::mem::take(&mut self.arena_first))
                .max(4096);
            self.arena = BytesMut::with_capacity(cap);
        }
        self.arena.extend_from_slice(bytes);
        self.arena.split_to(bytes.len()).freeze()
    }

    fn float(&mut self, h: Head) -> f64 {
        let a = h.arg.unwrap_or(0);
        match h.info {
            25 => f16_to_f64(a as u16),
            26 => f32::from_bits(a as u32) as f64,
            _ => f64::from_bits(a),
        }
    }

    /// Skips one data item whose head was `h`.
    fn skip_after(&mut self, h: Head) -> R<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Error::Syntax);
        }
        match h.major {
            0 | 1 | 7 => {}
            2 | 3 => {
                self.string_bytes(h)?;
            }
            4 | 5 => {
                let per = if h.major == 5 { 2 } else { 1 };
                let mut remaining = h.arg.map(|n| n.saturating_mul(per));
                while self.more(&mut remaining)? {
                    let c = self.head()?;
                    self.skip_after(c)?;
                }
            }
            6 => {
                let c = self.head()?;
                self.skip_after(c)?;
            }
            _ => return Err(Error::Syntax),
        }
        self.depth -= 1;
        Ok(())
    }

    /// Reads a scalar item (or recognises a container) for type errors and
    /// leniency. Containers are skipped.
    fn kind(&mut self, h: Head) -> R<Kind<'a>> {
        Ok(match h.major {
            0 => Kind::Int(h.arg.unwrap_or(0) as i128),
            1 => Kind::Int(-1 - h.arg.unwrap_or(0) as i128),
            2 => {
                let b = self.string_bytes(h)?;
                Kind::Bytes(self.blob(&b))
            }
            3 => Kind::Text(self.text(h)?),
            4 => {
                self.skip_after(h)?;
                Kind::List
            }
            5 => {
                self.skip_after(h)?;
                Kind::Map
            }
            6 => {
                let c = self.head()?;
                return self.kind(c);
            }
            _ => match h.info {
                20 => Kind::Bool(false),
                21 => Kind::Bool(true),
                22 | 23 => Kind::Null,
                25..=27 => Kind::Float(self.float(h)),
                _ => return Err(Error::Syntax),
            },
        })
    }

    fn value(&mut self, svc: &Service, shape: ShapeId) -> R<Value> {
        let h = self.head()?;
        self.value_after(svc, shape, h)
    }

    fn value_after(&mut self, svc: &Service, shape: ShapeId, h: Head) -> R<Value> {
        let kind = &svc.shape(shape).kind;
        // Tags: tag 1 on a timestamp is meaningful, others are looked through.
        if h.major == 6 {
            let inner = self.head()?;
            if h.arg == Some(TAG_EPOCH) && matches!(kind, ShapeKind::Timestamp) {
                return match self.kind(inner)? {
                    // Tag 1 + integer: milliseconds (what the AWS SDKs send).
                    Kind::Int(i) => Ok(Value::Timestamp(clamp(i))),
                    // Tag 1 + float: RFC 8949 seconds; accepted leniently.
                    Kind::Float(f) => Ok(Value::Timestamp(seconds_to_ms(f))),
                    Kind::Null => Ok(Value::Null),
                    k => Err(self.type_err(kind, &k)),
                };
            }
            return self.value_after(svc, shape, inner);
        }
        match (kind, h.major) {
            (&ShapeKind::List { member }, 4) => {
                self.enter()?;
                let mut remaining = h.arg;
                let mut out = Vec::with_capacity(h.arg.unwrap_or(0).min(1024) as usize);
                while self.more(&mut remaining)? {
                    out.push(self.value(svc, member)?);
                }
                self.depth -= 1;
                Ok(Value::List(out))
            }
            (ShapeKind::Structure { members }, 5) => {
                self.enter()?;
                let mut remaining = h.arg;
                let mut out: Vec<(Key, Value)> =
                    Vec::with_capacity(h.arg.unwrap_or(4).min(members.len() as u64) as usize);
                while self.more(&mut remaining)? {
                    let kh = self.head()?;
                    if kh.major != 3 {
                        // Not a member name: skip the entry.
                        self.skip_after(kh)?;
                        let vh = self.head()?;
                        self.skip_after(vh)?;
                        continue;
                    }
                    // Member names are compared as raw bytes: no UTF-8
                    // check needed to find (or skip) a member.
                    let key = self.string_bytes(kh)?;
                    let Some(m) = members.iter().find(|m| m.name.as_bytes() == &*key) else {
                        let vh = self.head()?;
                        self.skip_after(vh)?;
                        continue;
                    };
                    let v = self.value(svc, m.shape)?;
                    if out.iter().any(|(k, _)| *k == m.name) {
                        out.retain(|(k, _)| *k != m.name);
                    }
                    if !matches!(v, Value::Null) {
                        out.push((Key::Borrowed(m.name), v));
                    }
                }
                self.depth -= 1;
                Ok(Value::Map(out))
            }
            (&ShapeKind::Map { value, .. }, 5) => {
                self.enter()?;
                let mut remaining = h.arg;
                let mut out: Vec<(Key, Value)> = Vec::new();
                while self.more(&mut remaining)? {
                    let kh = self.head()?;
                    if kh.major != 3 {
                        return Err(Error::Type("Expected map key to be a string".into()));
                    }
                    let key = self.text(kh)?.into_owned();
                    let v = self.value(svc, value)?;
                    out.retain(|(k, _)| *k != key);
                    // As for structure members, null means absent.
                    if !matches!(v, Value::Null) {
                        out.push((Key::Owned(key), v));
                    }
                }
                self.depth -= 1;
                Ok(Value::Map(out))
            }
            _ => {
                let k = self.kind(h)?;
                self.scalar(kind, k)
            }
        }
    }

    fn enter(&mut self) -> R<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            Err(Error::Syntax)
        } else {
            Ok(())
        }
    }

    fn type_err(&self, kind: &ShapeKind, k: &Kind<'_>) -> Error {
        let found = match k {
            Kind::Int(_) | Kind::Float(_) | Kind::Null => Found::Number,
            Kind::Bytes(_) => Found::Str(""),
            Kind::Text(s) => Found::Str(s),
            Kind::Bool(_) => Found::Bool,
            Kind::List => Found::List,
            Kind::Map => Found::Object,
        };
        Error::Type(type_error(kind, found))
    }

    fn scalar(&self, kind: &ShapeKind, k: Kind<'_>) -> R<Value> {
        Ok(match (kind, k) {
            (_, Kind::Null) => Value::Null,
            (ShapeKind::Boolean, Kind::Bool(b)) => Value::Bool(b),
            (ShapeKind::Integer | ShapeKind::Long, Kind::Int(i)) => Value::Int(clamp(i)),
            (ShapeKind::Integer | ShapeKind::Long, Kind::Float(f)) => Value::Int(f.floor() as i64),
            (ShapeKind::Double | ShapeKind::Float, Kind::Float(f)) => Value::Float(f),
            (ShapeKind::Double | ShapeKind::Float, Kind::Int(i)) => Value::Float(i as f64),
            (ShapeKind::Timestamp, Kind::Int(i)) => Value::Timestamp(if i.abs() < SECONDS_LIMIT {
                clamp(i * 1000)
            } else {
                clamp(i)
            }),
            (ShapeKind::Timestamp, Kind::Float(f)) => Value::Timestamp(seconds_to_ms(f)),
            (ShapeKind::String, Kind::Text(s)) => Value::String(s.into_owned()),
            // Lenient: UTF-8 bytes where a string is expected.
            (ShapeKind::String, Kind::Bytes(b)) => match std::str::from_utf8(&b) {
                Ok(s) => Value::String(s.to_string()),
                Err(_) => return Err(Error::Type(type_error(kind, Found::Str("")))),
            },
            (ShapeKind::Blob, Kind::Bytes(b)) => Value::Blob(b),
            // A text string where a blob is expected: base64, as in JSON.
            (ShapeKind::Blob, Kind::Text(s)) => {
                Value::Blob(crate::json::decode_base64(&s).map_err(Error::Type)?)
            }
            (_, k) => return Err(self.type_err(kind, &k)),
        })
    }
}

/// Decodes a CBOR request body against structure `shape` (`None`: any map,
/// returned empty).
pub(crate) fn decode(
    svc: &Service,
    shape: Option<ShapeId>,
    body: &[u8],
) -> Result<Value, AwsError> {
    let mut r = Reader::new(body);
    let result = (|| {
        let mut h = r.head()?;
        while h.major == 6 {
            h = r.head()?;
        }
        if h.major != 5 {
            return Err(Error::Syntax);
        }
        let v = match shape {
            Some(shape) => r.value_after(svc, shape, h)?,
            None => {
                r.skip_after(h)?;
                Value::map()
            }
        };
        if r.pos != body.len() {
            return Err(Error::Syntax);
        }
        Ok(v)
    })();
    result.map_err(|e| match e {
        Error::Syntax => AwsError::bare("SerializationException"),
        Error::Type(msg) => AwsError::serialization(msg),
    })
}

/// Whether `body` is exactly one well-formed CBOR data item.
pub(crate) fn well_formed(body: &[u8]) -> bool {
    let mut r = Reader::new(body);
    r.head().and_then(|h| r.skip_after(h)).is_ok() && r.pos == body.len()
}

// ---------------------------------------------------------------- encoding

fn head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    if n < 24 {
        out.push(m | n as u8);
    } else if n <= u8::MAX as u64 {
        out.extend_from_slice(&[m | 24, n as u8]);
    } else if n <= u16::MAX as u64 {
        out.push(m | 25);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= u32::MAX as u64 {
        out.push(m | 26);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn int(out: &mut Vec<u8>, i: i64) {
    if i >= 0 {
        head(out, 0, i as u64);
    } else {
        head(out, 1, (-1 - i) as u64);
    }
}

pub(crate) fn text(out: &mut Vec<u8>, s: &str) {
    head(out, 3, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    head(out, 2, b.len() as u64);
    out.extend_from_slice(b);
}

fn float(out: &mut Vec<u8>, f: f64) {
    out.push(0xfb);
    out.extend_from_slice(&f.to_bits().to_be_bytes());
}

/// Tag 1 + integer epoch milliseconds (never a float: Java rejects it).
fn timestamp(out: &mut Vec<u8>, ms: i64) {
    out.push(0xc1);
    int(out, ms);
}

/// Starts a map of `n` entries.
pub(crate) fn map_head(out: &mut Vec<u8>, n: usize) {
    head(out, 5, n as u64);
}

/// Encodes `v` as CBOR, guided by `shape` where known (members not in the
/// model are written by their value's own type).
pub(crate) fn encode_value(svc: &Service, shape: Option<ShapeId>, v: &Value, out: &mut Vec<u8>) {
    let kind = shape.map(|s| &svc.shape(s).kind);
    match v {
        Value::Null => out.push(0xf6),
        Value::Bool(b) => out.push(if *b { 0xf5 } else { 0xf4 }),
        Value::Int(i) => match kind {
            Some(ShapeKind::Timestamp) => timestamp(out, *i),
            Some(ShapeKind::Double | ShapeKind::Float) => float(out, *i as f64),
            _ => int(out, *i),
        },
        Value::Float(f) => match kind {
            Some(ShapeKind::Integer | ShapeKind::Long) => int(out, *f as i64),
            Some(ShapeKind::Timestamp) => timestamp(out, *f as i64),
            _ => float(out, *f),
        },
        Value::String(s) => match kind {
            Some(ShapeKind::Blob) => bytes(out, s.as_bytes()),
            _ => text(out, s),
        },
        Value::Blob(b) => match kind {
            // A blob where the model has a string: base64 text.
            Some(ShapeKind::String) => {
                use base64::Engine;
                text(out, &base64::engine::general_purpose::STANDARD.encode(b))
            }
            _ => bytes(out, b),
        },
        Value::Timestamp(ms) => timestamp(out, *ms),
        Value::Lazy(list) => {
            let member = match kind {
                Some(ShapeKind::List { member }) => Some(*member),
                _ => None,
            };
            head(out, 4, list.0.len() as u64);
            for i in 0..list.0.len() {
                encode_value(svc, member, &list.0.item(i), out);
            }
        }
        Value::List(items) => {
            let member = match kind {
                Some(ShapeKind::List { member }) => Some(*member),
                _ => None,
            };
            head(out, 4, items.len() as u64);
            for item in items {
                encode_value(svc, member, item, out);
            }
        }
        Value::Map(entries) => {
            let n = entries
                .iter()
                .filter(|(_, item)| !matches!(item, Value::Null))
                .count();
            map_head(out, n);
            for (k, item) in entries {
                if matches!(item, Value::Null) {
                    continue;
                }
                let item_shape = match kind {
                    Some(ShapeKind::Structure { members }) => {
                        members.iter().find(|m| m.name == *k).map(|m| m.shape)
                    }
                    Some(ShapeKind::Map { value, .. }) => Some(*value),
                    _ => None,
                };
                text(out, k);
                encode_value(svc, item_shape, item, out);
            }
        }
    }
}
