//! AWS error values and their wire encodings.

use crate::{AwsError, Protocol, content_type};

impl AwsError {
    /// An error with a message, HTTP status 400.
    pub fn new(code: &str, message: impl Into<String>) -> AwsError {
        AwsError {
            code: code.to_string(),
            message: Some(message.into()),
            status: 400,
        }
    }

    /// An error without a message (`{"__type": code}`), HTTP status 400.
    pub fn bare(code: &str) -> AwsError {
        AwsError {
            code: code.to_string(),
            message: None,
            status: 400,
        }
    }

    pub fn with_status(mut self, status: u16) -> AwsError {
        self.status = status;
        self
    }

    /// `SerializationException` with a type-conversion message.
    pub fn serialization(message: impl Into<String>) -> AwsError {
        AwsError::new("SerializationException", message)
    }

    /// `ValidationException` with the given message.
    pub fn validation(message: impl Into<String>) -> AwsError {
        AwsError::new("ValidationException", message)
    }

    /// `InternalFailureException`, HTTP 500.
    pub fn internal_failure(message: impl Into<String>) -> AwsError {
        AwsError::new("InternalFailureException", message).with_status(500)
    }

    /// The JSON key of the message: AWS (Coral) writes `Message` for
    /// `SerializationException` and `message` for everything else.
    pub fn message_key(&self) -> &'static str {
        if self.code == "SerializationException"
            || self.code == "com.amazon.coral.service#SerializationException"
        {
            "Message"
        } else {
            "message"
        }
    }

    /// The error body: `{"__type": code, "message": msg}` (JSON) or the same
    /// map in CBOR. The message is omitted when `None`.
    pub fn encode(&self, protocol: Protocol) -> Vec<u8> {
        match protocol {
            Protocol::Json => {
                let mut out = Vec::with_capacity(64);
                out.extend_from_slice(b"{\"__type\":");
                crate::json::write_str(&mut out, &self.code);
                if let Some(m) = &self.message {
                    out.push(b',');
                    crate::json::write_str(&mut out, self.message_key());
                    out.push(b':');
                    crate::json::write_str(&mut out, m);
                }
                out.push(b'}');
                out
            }
            Protocol::Cbor => {
                let mut out = Vec::with_capacity(64);
                crate::cbor::map_head(&mut out, 1 + self.message.is_some() as usize);
                crate::cbor::text(&mut out, "__type");
                crate::cbor::text(&mut out, &self.code);
                if let Some(m) = &self.message {
                    crate::cbor::text(&mut out, self.message_key());
                    crate::cbor::text(&mut out, m);
                }
                out
            }
        }
    }
}

impl std::fmt::Display for AwsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.message {
            Some(m) => write!(f, "{}: {}", self.code, m),
            None => f.write_str(&self.code),
        }
    }
}

impl std::error::Error for AwsError {}

/// A complete error reply: status, `Content-Type` and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// Content type of the XML errors the front door sends before the request
/// is known to be an AWS JSON protocol request. AWS's exact header is not
/// recorded in the reference (kinesalite sends none).
pub const XML_CONTENT_TYPE: &str = "application/xml";

impl ErrorResponse {
    /// An XML error body as the AWS front end writes it for requests it
    /// cannot route: `<Code>\n  <Message>msg</Message>\n</Code>\n`.
    pub fn xml(status: u16, code: &str, message: Option<&str>) -> ErrorResponse {
        let body = match message {
            Some(m) => format!("<{code}>\n  <Message>{m}</Message>\n</{code}>\n"),
            None => format!("<{code}/>\n"),
        };
        ErrorResponse {
            status,
            content_type: XML_CONTENT_TYPE,
            body: body.into_bytes(),
        }
    }
}

impl From<(AwsError, Protocol)> for ErrorResponse {
    fn from((err, protocol): (AwsError, Protocol)) -> ErrorResponse {
        ErrorResponse::from((&err, protocol))
    }
}

impl From<(&AwsError, Protocol)> for ErrorResponse {
    fn from((err, protocol): (&AwsError, Protocol)) -> ErrorResponse {
        ErrorResponse {
            status: err.status,
            content_type: content_type(protocol),
            body: err.encode(protocol),
        }
    }
}
