//! Errors: what `send` refuses ([`SendError`]), how a record finally fails
//! ([`PutError`]), and how a Kinesis call fails ([`ClientError`]).

use std::time::Duration;

/// `send` did not accept the record.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    #[error("the producer is at its outstanding-records bound (fail-fast mode)")]
    Full,
    #[error("the producer is shut down")]
    Closed,
    #[error("partition key must be 1 to 256 characters, got {0}")]
    PartitionKey(usize),
    #[error("explicit hash key {0:?} is not a decimal integer below 2^128")]
    ExplicitHashKey(String),
    #[error("record of {0} bytes (data + partition key) exceeds the 1 MiB record limit")]
    TooLarge(usize),
}

/// The final outcome of a record that did not make it.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PutError {
    #[error(
        "record expired after {elapsed:?} and {attempts} attempts (record TTL); last error: {last_error}"
    )]
    Expired {
        elapsed: Duration,
        attempts: u32,
        last_error: String,
    },
    #[error("rejected by the service: {code}: {message}")]
    Rejected { code: String, message: String },
    #[error("the producer stopped before the record completed")]
    Shutdown,
}

/// How a Kinesis call failed, classified for the retry policy.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ClientError {
    /// ProvisionedThroughputExceeded and friends: retry after backoff.
    #[error("throttled: {0}")]
    Throttled(String),
    /// Connection failures, timeouts, 5xx: retry after backoff.
    #[error("transient: {0}")]
    Transient(String),
    /// The request can never succeed (no such stream, bad input, access):
    /// the records fail now.
    #[error("{code}: {message}")]
    Fatal { code: String, message: String },
}

impl ClientError {
    /// Classifies an AWS error code.
    pub fn from_code(code: &str, message: &str) -> ClientError {
        match code {
            "ProvisionedThroughputExceededException"
            | "KMSThrottlingException"
            | "LimitExceededException"
            | "ThrottlingException" => ClientError::Throttled(format!("{code}: {message}")),
            "ResourceNotFoundException"
            | "ValidationException"
            | "InvalidArgumentException"
            | "AccessDeniedException"
            | "KMSAccessDeniedException"
            | "KMSDisabledException"
            | "KMSNotFoundException"
            | "KMSInvalidStateException"
            | "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "SerializationException"
            | "MissingAuthenticationTokenException" => ClientError::Fatal {
                code: code.to_string(),
                message: message.to_string(),
            },
            _ => ClientError::Transient(format!("{code}: {message}")),
        }
    }
}
