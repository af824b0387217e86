//! DynamoDB errors as the service sends them.

use eddy_wire::{AwsError, Service, Value};

use crate::attr::Item;

/// An error of a DynamoDB operation.
#[derive(Debug, Clone, PartialEq)]
pub enum DynamoError {
    /// `ValidationException` with DynamoDB's text.
    Validation(String),
    /// `ResourceNotFoundException`.
    NotFound(String),
    /// `ResourceInUseException`.
    InUse(String),
    /// `ConditionalCheckFailedException`, with the item as it was when
    /// `ReturnValuesOnConditionCheckFailure` is `ALL_OLD` (and it exists).
    ConditionFailed(Option<Item>),
    /// `TransactionCanceledException`: one reason per transaction item,
    /// `None` for items that passed, `Some(old item if asked)` for failed
    /// conditions.
    TransactionCanceled(Vec<Option<Option<Item>>>),
    /// The data directory failed us: `InternalServerError`, HTTP 500.
    Internal(String),
}

pub type Result<T> = std::result::Result<T, DynamoError>;

pub(crate) fn invalid(msg: impl Into<String>) -> DynamoError {
    DynamoError::Validation(msg.into())
}

/// `ValidationException` about a parameter value.
pub(crate) fn invalid_param(msg: impl std::fmt::Display) -> DynamoError {
    DynamoError::Validation(format!("One or more parameter values were invalid: {msg}"))
}

pub(crate) fn not_found() -> DynamoError {
    DynamoError::NotFound("Requested resource not found".into())
}

pub(crate) fn table_not_found(name: &str) -> DynamoError {
    DynamoError::NotFound(format!(
        "Requested resource not found: Table: {name} not found"
    ))
}

impl From<std::io::Error> for DynamoError {
    fn from(e: std::io::Error) -> Self {
        tracing::error!(error = %e, "dynamo storage failure");
        DynamoError::Internal(format!("storage failure: {e}"))
    }
}

impl std::fmt::Display for DynamoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = self.to_aws();
        write!(f, "{}: {}", e.code, e.message.unwrap_or_default())
    }
}

impl std::error::Error for DynamoError {}

const NS: &str = "com.amazonaws.dynamodb.v20120810#";

impl DynamoError {
    /// The error as `__type` (fully qualified, as DynamoDB writes it) and
    /// message.
    pub fn to_aws(&self) -> AwsError {
        match self {
            DynamoError::Validation(m) => {
                AwsError::new("com.amazon.coral.validate#ValidationException", m.clone())
            }
            DynamoError::NotFound(m) => {
                AwsError::new(&format!("{NS}ResourceNotFoundException"), m.clone())
            }
            DynamoError::InUse(m) => {
                AwsError::new(&format!("{NS}ResourceInUseException"), m.clone())
            }
            DynamoError::ConditionFailed(_) => AwsError::new(
                &format!("{NS}ConditionalCheckFailedException"),
                "The conditional request failed",
            ),
            DynamoError::TransactionCanceled(reasons) => {
                let codes: Vec<&str> = reasons
                    .iter()
                    .map(|r| match r {
                        None => "None",
                        Some(_) => "ConditionalCheckFailed",
                    })
                    .collect();
                AwsError::new(
                    &format!("{NS}TransactionCanceledException"),
                    format!(
                        "Transaction cancelled, please refer cancellation reasons for specific reasons [{}]",
                        codes.join(", ")
                    ),
                )
            }
            DynamoError::Internal(m) => {
                AwsError::new(&format!("{NS}InternalServerError"), m.clone()).with_status(500)
            }
        }
    }

    /// The complete JSON error body: `{"__type":..,"message":..}`, plus
    /// `Item` for a failed condition that asked for the old item, or the
    /// `CancellationReasons` of a cancelled transaction.
    pub fn body(&self, service: &Service) -> Vec<u8> {
        let aws = self.to_aws();
        let plain = aws.encode(eddy_wire::Protocol::Json);
        let message = aws.message.clone().unwrap_or_default();
        let (shape, members) = match self {
            DynamoError::ConditionFailed(Some(item)) => (
                "ConditionalCheckFailedException",
                Value::map()
                    .with("message", message)
                    .with("Item", crate::attr::item_to_value(item)),
            ),
            DynamoError::TransactionCanceled(reasons) => {
                let list = reasons
                    .iter()
                    .map(|r| match r {
                        None => Value::map().with("Code", "None"),
                        Some(item) => {
                            let mut v = Value::map()
                                .with("Code", "ConditionalCheckFailed")
                                .with("Message", "The conditional request failed");
                            if let Some(item) = item {
                                v.set("Item", crate::attr::item_to_value(item));
                            }
                            v
                        }
                    })
                    .collect();
                (
                    "TransactionCanceledException",
                    Value::map()
                        .with("Message", message)
                        .with("CancellationReasons", Value::List(list)),
                )
            }
            _ => return plain,
        };
        let Some(shape) = service.shape_id(shape) else {
            return plain;
        };
        let rest = service.encode_shape(shape, eddy_wire::Protocol::Json, &members);
        // `{"__type":"..."` + `,` + the members without their opening brace.
        let mut out = plain[..plain.len() - 1].to_vec();
        if let Some(head) = out.iter().position(|&b| b == b',') {
            out.truncate(head); // drop the plain message; `rest` carries it
        }
        out.push(b',');
        out.extend_from_slice(&rest[1..]);
        out
    }

    pub fn status(&self) -> u16 {
        self.to_aws().status
    }
}
