//! The service model: operations and shapes parsed from an AWS JSON model
//! document (the format botocore and the SDK code generators consume).

use std::collections::HashMap;
use std::sync::OnceLock;

use regex::Regex;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value as Json;

/// Index of a shape inside its [`Service`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShapeId(pub(crate) u32);

/// What kind of value a shape describes.
#[derive(Debug, Clone)]
pub enum ShapeKind {
    Structure { members: Vec<Member> },
    List { member: ShapeId },
    Map { key: ShapeId, value: ShapeId },
    String,
    Integer,
    Long,
    Double,
    Float,
    Boolean,
    Blob,
    Timestamp,
}

/// A member of a structure shape.
#[derive(Debug, Clone)]
pub struct Member {
    /// Member name as in the model (and on the wire): `StreamName`.
    /// `'static` because decoded documents borrow it as their member keys
    /// (no allocation per member per record); a model lives for the whole
    /// process, so its member names are leaked once when it is parsed.
    pub name: &'static str,
    /// Name used in validation paths: `streamName`.
    pub path_name: String,
    pub shape: ShapeId,
    pub required: bool,
}

/// A compiled `pattern` constraint.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// The pattern as written in the model (quoted in messages).
    pub source: String,
    /// Anchored (whole-match) compiled form, built on first use: compiling
    /// every pattern of a model up front costs milliseconds of start-up,
    /// and most are never exercised. `None`: Rust's regex cannot express it.
    regex: OnceLock<Option<Regex>>,
}

impl Pattern {
    pub fn new(source: &str) -> Pattern {
        Pattern {
            source: source.to_string(),
            regex: OnceLock::new(),
        }
    }

    fn compiled(&self) -> Option<&Regex> {
        self.regex
            .get_or_init(|| compile_pattern(&self.source))
            .as_ref()
    }

    /// Whether `s` matches as a whole. A pattern that cannot be compiled
    /// is not enforced (there is none in the embedded models; a test checks).
    pub fn is_match(&self, s: &str) -> bool {
        self.compiled().is_none_or(|r| r.is_match(s))
    }

    /// Whether the pattern compiles (and so is enforced).
    pub fn compiles(&self) -> bool {
        self.compiled().is_some()
    }
}

/// A named shape with its constraints.
#[derive(Debug, Clone)]
pub struct Shape {
    pub name: String,
    pub kind: ShapeKind,
    /// `min` (length for strings/blobs/lists/maps, value for numbers).
    pub min: Option<i64>,
    /// `max` (length for strings/blobs/lists/maps, value for numbers).
    pub max: Option<i64>,
    pub pattern: Option<Pattern>,
    /// Allowed values of an enum string, in model order.
    pub enum_values: Option<Vec<String>>,
}

/// One operation of a service.
#[derive(Debug, Clone)]
pub struct Operation {
    pub name: String,
    /// Input structure shape (`None`: the operation takes no input).
    pub input: Option<ShapeId>,
    /// Output structure shape (`None`: empty response body).
    pub output: Option<ShapeId>,
    /// Names of the modelled error shapes.
    pub errors: Vec<String>,
}

/// A parsed service model. Several can coexist (one per AWS service served).
#[derive(Debug)]
pub struct Service {
    target_prefix: String,
    /// `com.amazonaws.<endpointPrefix>.v<apiVersion>`: Java package of the
    /// generated Coral types, used when a structure is printed in a
    /// ValidationException message.
    java_package: String,
    shapes: Vec<Shape>,
    shape_index: HashMap<String, ShapeId>,
    operations: Vec<Operation>,
    op_index: HashMap<String, usize>,
    /// `metadata.jsonVersion` is `1.0` (DynamoDB): JSON 1.0 content type,
    /// no CBOR, and error codes qualified with Coral namespaces.
    json_1_0: bool,
}

/// Error while loading a service model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("model is malformed: {0}")]
    Malformed(String),
}

/// Member names are leaked once per (name, process): decoded documents use
/// them as `&'static str` keys. Bounded by the distinct names of the models
/// loaded (a few hundred), not by traffic.
fn intern(name: &str) -> &'static str {
    static NAMES: std::sync::Mutex<Option<std::collections::HashSet<&'static str>>> =
        std::sync::Mutex::new(None);
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    let names = names.get_or_insert_with(Default::default);
    if let Some(n) = names.get(name) {
        return n;
    }
    let leaked: &'static str = name.to_string().leak();
    names.insert(leaked);
    leaked
}

static KINESIS: OnceLock<Service> = OnceLock::new();

/// The embedded Kinesis Data Streams model (`Kinesis_20131202`), parsed once.
pub fn kinesis() -> &'static Service {
    KINESIS.get_or_init(|| {
        Service::from_json(include_str!("../models/kinesis-2013-12-02.json"))
            .expect("embedded Kinesis model is valid")
    })
}

static DYNAMODB: OnceLock<Service> = OnceLock::new();

/// The embedded DynamoDB model (`DynamoDB_20120810`, JSON 1.0), parsed once.
pub fn dynamodb() -> &'static Service {
    DYNAMODB.get_or_init(|| {
        Service::from_json(include_str!("../models/dynamodb-2012-08-10.json"))
            .expect("embedded DynamoDB model is valid")
    })
}

fn bad(msg: impl Into<String>) -> ModelError {
    ModelError::Malformed(msg.into())
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// A JSON object whose key order is kept (serde_json's `Map` sorts keys
/// unless its `preserve_order` feature is on; member order matters for
/// validation message order).
struct Ordered<T>(Vec<(String, T)>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Ordered<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Ordered<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Ordered<T>, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, T>()? {
                    out.push((k, v));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
struct ModelDoc {
    metadata: Json,
    operations: Ordered<OpDoc>,
    shapes: Ordered<ShapeDoc>,
}

#[derive(Deserialize)]
struct RefDoc {
    shape: String,
}

#[derive(Deserialize)]
struct OpDoc {
    input: Option<RefDoc>,
    output: Option<RefDoc>,
    #[serde(default)]
    errors: Vec<RefDoc>,
}

#[derive(Deserialize)]
struct ShapeDoc {
    #[serde(rename = "type")]
    ty: String,
    members: Option<Ordered<RefDoc>>,
    #[serde(default)]
    required: Vec<String>,
    member: Option<RefDoc>,
    key: Option<RefDoc>,
    value: Option<RefDoc>,
    min: Option<f64>,
    max: Option<f64>,
    pattern: Option<String>,
    #[serde(rename = "enum")]
    enum_values: Option<Vec<String>>,
}

/// Compiles an AWS (Java) pattern for whole-match use. `\d` is ASCII-only in
/// Java, so it is narrowed to `[0-9]` (Rust's `\d` is Unicode).
fn compile_pattern(source: &str) -> Option<Regex> {
    let mut java = String::with_capacity(source.len() + 8);
    let mut chars = source.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('d') => java.push_str("[0-9]"),
                Some(n) => {
                    java.push('\\');
                    java.push(n);
                }
                None => java.push('\\'),
            }
        } else {
            java.push(c);
        }
    }
    Regex::new(&format!("^(?:{java})$")).ok()
}

impl Service {
    /// Parses an AWS JSON service model document.
    pub fn from_json(text: &str) -> Result<Service, ModelError> {
        let doc: ModelDoc = serde_json::from_str(text)?;
        let meta = &doc.metadata;
        let target_prefix = meta
            .get("targetPrefix")
            .and_then(Json::as_str)
            .ok_or_else(|| bad("no metadata.targetPrefix"))?
            .to_string();
        let endpoint = meta
            .get("endpointPrefix")
            .and_then(Json::as_str)
            .unwrap_or("service");
        let version = meta
            .get("apiVersion")
            .and_then(Json::as_str)
            .unwrap_or("")
            .replace('-', "");
        let java_package = format!("com.amazonaws.{endpoint}.v{version}");
        let json_1_0 = meta.get("jsonVersion").and_then(Json::as_str) == Some("1.0");

        let mut shape_index = HashMap::with_capacity(doc.shapes.0.len());
        for (i, (name, _)) in doc.shapes.0.iter().enumerate() {
            shape_index.insert(name.clone(), ShapeId(i as u32));
        }
        let lookup = |r: Option<&RefDoc>, ctx: &str| -> Result<ShapeId, ModelError> {
            let name = &r
                .ok_or_else(|| bad(format!("{ctx}: missing shape reference")))?
                .shape;
            shape_index
                .get(name)
                .copied()
                .ok_or_else(|| bad(format!("{ctx}: unknown shape {name}")))
        };

        let mut shapes = Vec::with_capacity(doc.shapes.0.len());
        for (name, s) in &doc.shapes.0 {
            let kind = match s.ty.as_str() {
                "structure" => {
                    let mut members = Vec::new();
                    if let Some(ms) = &s.members {
                        for (mname, mref) in &ms.0 {
                            members.push(Member {
                                name: intern(mname),
                                path_name: lower_first(mname),
                                shape: lookup(Some(mref), &format!("{name}.{mname}"))?,
                                required: s.required.iter().any(|r| r == mname),
                            });
                        }
                    }
                    ShapeKind::Structure { members }
                }
                "list" => ShapeKind::List {
                    member: lookup(s.member.as_ref(), name)?,
                },
                "map" => ShapeKind::Map {
                    key: lookup(s.key.as_ref(), name)?,
                    value: lookup(s.value.as_ref(), name)?,
                },
                "string" | "enum" => ShapeKind::String,
                "integer" | "short" | "byte" | "intEnum" => ShapeKind::Integer,
                "long" | "bigInteger" => ShapeKind::Long,
                "double" | "bigDecimal" => ShapeKind::Double,
                "float" => ShapeKind::Float,
                "boolean" => ShapeKind::Boolean,
                "blob" => ShapeKind::Blob,
                "timestamp" => ShapeKind::Timestamp,
                other => return Err(bad(format!("shape {name}: unsupported type {other:?}"))),
            };
            let pattern = s.pattern.as_deref().map(Pattern::new);
            shapes.push(Shape {
                name: name.clone(),
                kind,
                min: s.min.map(|f| f as i64),
                max: s.max.map(|f| f as i64),
                pattern,
                enum_values: s.enum_values.clone(),
            });
        }

        let mut operations = Vec::with_capacity(doc.operations.0.len());
        let mut op_index = HashMap::with_capacity(doc.operations.0.len());
        for (name, o) in &doc.operations.0 {
            let input = match &o.input {
                Some(r) => Some(lookup(Some(r), name)?),
                None => None,
            };
            let output = match &o.output {
                Some(r) => Some(lookup(Some(r), name)?),
                None => None,
            };
            op_index.insert(name.clone(), operations.len());
            operations.push(Operation {
                name: name.clone(),
                input,
                output,
                errors: o.errors.iter().map(|e| e.shape.clone()).collect(),
            });
        }

        Ok(Service {
            target_prefix,
            java_package,
            shapes,
            shape_index,
            operations,
            op_index,
            json_1_0,
        })
    }

    /// The `X-Amz-Target` prefix: `Kinesis_20131202`.
    pub fn target_prefix(&self) -> &str {
        &self.target_prefix
    }

    pub fn operation(&self, name: &str) -> Option<&Operation> {
        self.op_index.get(name).map(|&i| &self.operations[i])
    }

    pub fn operations(&self) -> impl Iterator<Item = &Operation> {
        self.operations.iter()
    }

    /// The shape with this id.
    pub fn shape(&self, id: ShapeId) -> &Shape {
        &self.shapes[id.0 as usize]
    }

    /// Looks a shape up by its model name.
    pub fn shape_id(&self, name: &str) -> Option<ShapeId> {
        self.shape_index.get(name).copied()
    }

    /// Looks a shape up by its model name.
    pub fn shape_named(&self, name: &str) -> Option<&Shape> {
        self.shape_id(name).map(|id| self.shape(id))
    }

    pub fn shapes(&self) -> impl Iterator<Item = &Shape> {
        self.shapes.iter()
    }

    pub(crate) fn java_package(&self) -> &str {
        &self.java_package
    }

    /// The protocol of a request `Content-Type` (parameters after `;`
    /// ignored) for this service: JSON 1.1 or CBOR 1.1 for JSON-1.1
    /// services (Kinesis), JSON 1.0 (or 1.1) for JSON-1.0 services
    /// (DynamoDB, which has no CBOR).
    pub fn protocol_for(&self, content_type: &str) -> Option<crate::Protocol> {
        if !self.json_1_0 {
            return crate::Protocol::from_content_type(content_type);
        }
        let base = content_type.split(';').next().unwrap_or("").trim();
        (base.eq_ignore_ascii_case("application/x-amz-json-1.0")
            || base.eq_ignore_ascii_case("application/x-amz-json-1.1"))
        .then_some(crate::Protocol::Json)
    }

    /// `Content-Type` of this service's bodies in `protocol`.
    pub fn content_type(&self, protocol: crate::Protocol) -> &'static str {
        if self.json_1_0 {
            "application/x-amz-json-1.0"
        } else {
            crate::content_type(protocol)
        }
    }

    /// The `__type` this service writes for an error code: unchanged for
    /// Kinesis; for JSON-1.0 services (DynamoDB) qualified as Coral does
    /// (`com.amazon.coral.validate#ValidationException`,
    /// `com.amazon.coral.service#SerializationException`, service errors
    /// in the service's package). Already qualified codes are kept.
    pub fn error_type(&self, code: &str) -> String {
        if !self.json_1_0 || code.contains('#') {
            return code.to_string();
        }
        match code {
            "ValidationException" => format!("com.amazon.coral.validate#{code}"),
            "SerializationException"
            | "UnknownOperationException"
            | "MissingAuthenticationTokenException"
            | "IncompleteSignatureException"
            | "InvalidSignatureException"
            | "AccessDeniedException"
            | "InternalFailure" => format!("com.amazon.coral.service#{code}"),
            _ => format!("{}#{code}", self.java_package),
        }
    }

    /// A complete error reply of this service in `protocol`.
    pub fn error_reply(
        &self,
        err: &crate::AwsError,
        protocol: crate::Protocol,
    ) -> crate::ErrorResponse {
        let err = crate::AwsError {
            code: self.error_type(&err.code),
            ..err.clone()
        };
        crate::ErrorResponse {
            status: err.status,
            content_type: self.content_type(protocol),
            body: err.encode(protocol),
        }
    }
}
