//! `eddy-wire`: the AWS protocols, independent of any one service's rules.
//!
//! Owns: the embedded service models (operations, shapes, constraints), the
//! document [`Value`] that requests and responses pass through, shape-directed
//! decoding of `application/x-amz-json-1.1` and `application/x-amz-cbor-1.1`
//! bodies (SerializationException on wrong types), model-driven validation
//! (ValidationException text exactly as AWS writes it), encoding of responses
//! and of error bodies.
//!
//! THE PUBLIC API BELOW IS A CONTRACT used by `eddy-streams` and
//! `eddy-server`; bodies are being implemented.

mod value;

use bytes::Bytes;

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
    Map(Vec<(String, Value)>),
}

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
