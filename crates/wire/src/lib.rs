//! `eddy-wire`: the AWS protocols, independent of any one service's rules.
//!
//! Owns: the embedded service models (operations, shapes, constraints), the
//! document [`Value`] that requests and responses pass through, shape-directed
//! decoding of `application/x-amz-json-1.1` and `application/x-amz-cbor-1.1`
//! bodies (SerializationException on wrong types), model-driven validation
//! (ValidationException text exactly as AWS writes it), encoding of responses
//! and of error bodies, and the front door (checks made before the body).
//!
//! THE PUBLIC API BELOW IS A CONTRACT used by `eddy-streams` and
//! `eddy-server`.
//!
//! Typical server use:
//!
//! ```
//! use eddy_wire::{kinesis, Protocol, RequestHead, Value};
//!
//! let svc = kinesis();
//! let head = RequestHead {
//!     method: "POST",
//!     content_type: Some("application/x-amz-json-1.1"),
//!     target: Some("Kinesis_20131202.ListStreams"),
//!     authorization: Some("AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host;x-amz-date, Signature=00"),
//!     query: None,
//!     has_date: true,
//!     body_is_empty: false,
//! };
//! // front door + decode + validate, errors as complete replies:
//! let (op, protocol, input) = svc.accept(&head, b"{\"Limit\":5}").unwrap();
//! assert_eq!(input.i64("Limit"), Some(5));
//! // ... run the operation, then encode its output in the same protocol:
//! let out = Value::map().with("StreamNames", Vec::<Value>::new()).with("HasMoreStreams", false);
//! let body = svc.encode(op, protocol, &out);
//! assert_eq!(body, br#"{"StreamNames":[],"HasMoreStreams":false}"#);
//! # let _ = Protocol::Json;
//! ```

mod cbor;
mod error;
pub mod eventstream;
mod front;
mod json;
mod model;
mod validate;
mod value;

use bytes::Bytes;

pub use error::ErrorResponse;
pub use front::RequestHead;
pub use model::{
    Member, ModelError, Operation, Pattern, Service, Shape, ShapeId, ShapeKind, dynamodb, kinesis,
};

/// `Content-Type` of bodies in `protocol`.
pub fn content_type(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Json => "application/x-amz-json-1.1",
        Protocol::Cbor => "application/x-amz-cbor-1.1",
    }
}

impl Protocol {
    /// The protocol of a `Content-Type` header value (parameters after `;`
    /// ignored), if it is one of the two AWS JSON-1.1 protocols.
    pub fn from_content_type(content_type: &str) -> Option<Protocol> {
        let base = content_type.split(';').next().unwrap_or("").trim();
        if base.eq_ignore_ascii_case("application/x-amz-json-1.1") {
            Some(Protocol::Json)
        } else if base.eq_ignore_ascii_case("application/x-amz-cbor-1.1") {
            Some(Protocol::Cbor)
        } else {
            None
        }
    }

    /// Same as [`content_type`].
    pub fn content_type(self) -> &'static str {
        content_type(self)
    }
}

/// A document: what a request decodes to and a response encodes from.
/// Structures and maps are both `Map` (member name -> value, in insertion
/// order).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Blob(Bytes),
    /// Milliseconds since the Unix epoch.
    Timestamp(i64),
    List(Vec<Value>),
    Map(Vec<(Key, Value)>),
    /// A list whose items are produced while the answer is encoded: a
    /// GetRecords answer holds up to 10,000 records, and building a document
    /// tree for each costs more than writing them (see [`ItemSource`]).
    /// Outputs only; decoding never produces it.
    Lazy(LazyList),
}

/// The items of a [`Value::Lazy`] list.
pub trait ItemSource: Send + Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Item `i` as a document (CBOR answers, tests, anything generic).
    fn item(&self, i: usize) -> Value;
    /// Writes item `i` as JSON, byte for byte what encoding [`item`](Self::item)
    /// against the list's member shape writes (implementations test this,
    /// using the writers in [`json_out`]), and returns true; false to have
    /// the generic encoder write `item(i)` instead.
    fn write_json(&self, _i: usize, _out: &mut Vec<u8>) -> bool {
        false
    }
}

/// A shared [`ItemSource`]; compares and prints as its items.
#[derive(Clone)]
pub struct LazyList(pub std::sync::Arc<dyn ItemSource>);

impl LazyList {
    pub fn items(&self) -> Vec<Value> {
        (0..self.0.len()).map(|i| self.0.item(i)).collect()
    }
}

impl std::fmt::Debug for LazyList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.items()).finish()
    }
}

impl PartialEq for LazyList {
    fn eq(&self, other: &LazyList) -> bool {
        self.items() == other.items()
    }
}

/// The JSON writers the encoder uses for scalars, for [`ItemSource`]s that
/// write their items directly.
pub mod json_out {
    pub use crate::json::{write_base64, write_str, write_timestamp};
}

/// A structure member's or map entry's name: borrowed from the model (or a
/// literal) for structure members, owned for map keys chosen by the client.
pub type Key = std::borrow::Cow<'static, str>;

/// Body encoding of a request (and of its response).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Json,
    Cbor,
}

/// An AWS error as sent on the wire: `{"__type": code, "message": ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsError {
    pub code: String,
    pub message: Option<String>,
    pub status: u16,
}

impl Service {
    /// Decodes a request body into a document, directed by the operation's
    /// input shape. Wrong types give `SerializationException` with AWS's
    /// text; an unparsable body gives it without a message. Unknown members
    /// are dropped and JSON `null` means absent.
    pub fn decode(
        &self,
        op: &Operation,
        protocol: Protocol,
        body: &[u8],
    ) -> Result<Value, AwsError> {
        match protocol {
            Protocol::Json => json::decode(self, op.input, body),
            Protocol::Cbor => cbor::decode(self, op.input, body),
        }
    }

    /// Checks a decoded input against the model's constraints (required
    /// members, lengths, ranges, patterns, enums), giving AWS's
    /// `ValidationException` message.
    pub fn validate(&self, op: &Operation, input: &Value) -> Result<(), AwsError> {
        validate::validate(self, op.input, input)
    }

    /// The individual violations (at most 10, as AWS lists) that
    /// [`Service::validate`] would report, in order.
    pub fn violations(&self, op: &Operation, input: &Value) -> Vec<String> {
        match op.input {
            Some(shape) => validate::violations(self, shape, input),
            None => Vec::new(),
        }
    }

    /// Decode then validate.
    pub fn decode_valid(
        &self,
        op: &Operation,
        protocol: Protocol,
        body: &[u8],
    ) -> Result<Value, AwsError> {
        let v = self.decode(op, protocol, body)?;
        self.validate(op, &v)?;
        Ok(v)
    }

    /// Encodes an operation's output. Operations without an output shape
    /// get an empty body (as AWS sends); otherwise a JSON object or CBOR
    /// map, with `Null` members left out.
    pub fn encode(&self, op: &Operation, protocol: Protocol, output: &Value) -> Vec<u8> {
        match op.output {
            None => Vec::new(),
            Some(shape) => self.encode_shape(shape, protocol, output),
        }
    }

    /// Encodes `value` as a value of `shape` (e.g. an event-stream payload).
    pub fn encode_shape(&self, shape: ShapeId, protocol: Protocol, value: &Value) -> Vec<u8> {
        match protocol {
            Protocol::Json => {
                let mut out = Vec::with_capacity(value.encoded_len_hint());
                json::encode_value(self, Some(shape), value, &mut out);
                out
            }
            Protocol::Cbor => {
                let mut out = Vec::with_capacity(value.encoded_len_hint());
                cbor::encode_value(self, Some(shape), value, &mut out);
                out
            }
        }
    }

    /// Decodes `body` as a value of structure `shape` (e.g. to read back an
    /// output in tests or a client).
    pub fn decode_shape(
        &self,
        shape: ShapeId,
        protocol: Protocol,
        body: &[u8],
    ) -> Result<Value, AwsError> {
        match protocol {
            Protocol::Json => json::decode(self, Some(shape), body),
            Protocol::Cbor => cbor::decode(self, Some(shape), body),
        }
    }
}

pub use validate::{MAX_LISTED, validation_message};
