//! The front door: what AWS checks before it looks at the body, in its
//! order (recorded by kinesalite against AWS; see the reference, section 1).

use crate::error::ErrorResponse;
use crate::model::{Operation, Service};
use crate::{AwsError, Protocol, Value};

/// The parts of an HTTP request the front door looks at.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestHead<'a> {
    pub method: &'a str,
    pub content_type: Option<&'a str>,
    /// `X-Amz-Target` header.
    pub target: Option<&'a str>,
    /// `Authorization` header.
    pub authorization: Option<&'a str>,
    /// Raw query string (without `?`).
    pub query: Option<&'a str>,
    /// `X-Amz-Date` or `Date` header present.
    pub has_date: bool,
    pub body_is_empty: bool,
}

const JSON_1_1: &str = "application/x-amz-json-1.1";

const ACCESS_DENIED: &str = "Unable to determine service/operation name to be authorized";

fn access_denied() -> ErrorResponse {
    ErrorResponse::xml(403, "AccessDeniedException", Some(ACCESS_DENIED))
}

/// Splits a query string into raw `(name, value)` pairs. Names are compared
/// undecoded (the SigV4 parameter names need no escaping); values are only
/// tested for emptiness.
fn query_pairs(q: &str) -> impl Iterator<Item = (&str, &str)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// The `IncompleteSignatureException` message for a header or query
/// signature lacking parts, or `None` if it has them all.
fn incomplete_signature(head: &RequestHead<'_>) -> Option<String> {
    let mut msg = String::new();
    if let Some(auth) = head.authorization {
        // `AWS4-HMAC-SHA256 Credential=.., SignedHeaders=.., Signature=..`:
        // the first word is the algorithm; parameters are split on commas
        // and spaces.
        let params: Vec<(&str, &str)> = auth
            .split([',', ' '])
            .skip(1)
            .filter(|p| !p.is_empty())
            .map(|p| {
                let p = p.trim();
                let mut kv = p.split('=');
                (kv.next().unwrap_or(""), kv.next().unwrap_or(""))
            })
            .collect();
        for name in ["Credential", "Signature", "SignedHeaders"] {
            // The last occurrence counts; an empty value is missing.
            let present = params
                .iter()
                .rev()
                .find(|(k, _)| *k == name)
                .is_some_and(|(_, v)| !v.is_empty());
            if !present {
                msg.push_str(&format!(
                    "Authorization header requires '{name}' parameter. "
                ));
            }
        }
        if !head.has_date {
            msg.push_str(
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. ",
            );
        }
        if !msg.is_empty() {
            msg.push_str("Authorization=");
            msg.push_str(auth);
        }
    } else {
        let q = head.query.unwrap_or("");
        for name in [
            "X-Amz-Algorithm",
            "X-Amz-Credential",
            "X-Amz-Signature",
            "X-Amz-SignedHeaders",
            "X-Amz-Date",
        ] {
            let present = query_pairs(q).any(|(k, v)| k == name && !v.is_empty());
            if !present {
                msg.push_str(&format!(
                    "AWS query-string parameters must include '{name}'. "
                ));
            }
        }
        if !msg.is_empty() {
            msg.push_str("Re-examine the query-string parameters.");
        }
    }
    (!msg.is_empty()).then_some(msg)
}

impl Service {
    /// Splits an `X-Amz-Target` into (service prefix, operation name) as
    /// AWS does: on dots, taking the first two parts.
    fn split_target(target: Option<&str>) -> (Option<&str>, Option<&str>) {
        let Some(t) = target else {
            return (None, None);
        };
        let mut parts = t.split('.');
        let service = parts.next().filter(|s| !s.is_empty());
        let op = parts.next().filter(|s| !s.is_empty());
        (service, op)
    }

    /// The operation an `X-Amz-Target` names, if it is one of this service.
    pub fn operation_for_target(&self, target: Option<&str>) -> Option<&Operation> {
        match Self::split_target(target) {
            (Some(service), Some(op)) if service == self.target_prefix() => self.operation(op),
            _ => None,
        }
    }

    /// The checks made before the body is parsed, in AWS's order:
    ///
    /// 1. method not `POST`: 403 XML `AccessDeniedException`;
    /// 2. empty body: 400 `SerializationException` if the target names an
    ///    operation, else `UnknownOperationException` (in JSON if the
    ///    content type is amz-json-1.1, otherwise in CBOR, as AWS does);
    /// 3. content type neither amz-json-1.1 nor amz-cbor-1.1: 404 XML
    ///    `<UnknownOperationException/>`, or 403 AccessDenied if the target
    ///    lacks a service or operation part;
    /// 4. unknown target: 400 `UnknownOperationException`;
    /// 5. authentication present and well formed (signatures themselves
    ///    are not verified here).
    ///
    /// AWS checks that the body parses between 3 and 4; here that is left
    /// to [`Service::decode`], so an unparsable body with an unknown target
    /// or no credentials gets the target/auth error instead of
    /// `SerializationException`.
    pub fn front_door<'s>(
        &'s self,
        head: &RequestHead<'_>,
    ) -> Result<(&'s Operation, Protocol), ErrorResponse> {
        if head.method != "POST" {
            return Err(access_denied());
        }
        let op = self.operation_for_target(head.target);
        let protocol = head.content_type.and_then(|c| self.protocol_for(c));
        if head.body_is_empty {
            let code = if op.is_some() {
                "SerializationException"
            } else {
                "UnknownOperationException"
            };
            let reply = if protocol == Some(Protocol::Json) || self.protocol_for(JSON_1_1).is_none()
            {
                Protocol::Json
            } else {
                Protocol::Cbor
            };
            return Err(self.error_reply(&AwsError::bare(code), reply));
        }
        let Some(protocol) = protocol else {
            return Err(match Self::split_target(head.target) {
                (Some(_), Some(_)) => ErrorResponse::xml(404, "UnknownOperationException", None),
                _ => access_denied(),
            });
        };
        let Some(op) = op else {
            return Err(self.error_reply(&AwsError::bare("UnknownOperationException"), protocol));
        };

        let auth_query = head
            .query
            .is_some_and(|q| query_pairs(q).any(|(k, _)| k == "X-Amz-Algorithm"));
        match (head.authorization.is_some(), auth_query) {
            (true, true) => {
                return Err(self.error_reply(
                    &AwsError::new(
                        "InvalidSignatureException",
                        "Found both 'X-Amz-Algorithm' as a query-string param and 'Authorization' as HTTP header.",
                    ),
                    protocol,
                ));
            }
            (false, false) => {
                return Err(self.error_reply(
                    &AwsError::new(
                        "MissingAuthenticationTokenException",
                        "Missing Authentication Token",
                    ),
                    protocol,
                ));
            }
            _ => {}
        }
        if let Some(msg) = incomplete_signature(head) {
            return Err(self.error_reply(
                &AwsError::new("IncompleteSignatureException", msg),
                protocol,
            ));
        }
        Ok((op, protocol))
    }

    /// The whole request path up to the handler, in AWS's exact order:
    /// [`Service::front_door`], except that a body that does not parse
    /// beats an unknown target or bad credentials (as with AWS), then
    /// [`Service::decode`] and [`Service::validate`]. Errors come back as
    /// complete replies in the request's protocol.
    pub fn accept<'s>(
        &'s self,
        head: &RequestHead<'_>,
        body: &[u8],
    ) -> Result<(&'s Operation, Protocol, Value), ErrorResponse> {
        let head = RequestHead {
            body_is_empty: body.is_empty(),
            ..*head
        };
        let (op, protocol) = match self.front_door(&head) {
            Ok(found) => found,
            Err(e) => {
                // Only the target and auth checks come after the parse
                // check; those replies are in a protocol's content type.
                if let Some(protocol) = self.protocol_for(e.content_type)
                    && !body.is_empty()
                    && !well_formed(protocol, body)
                {
                    return Err(
                        self.error_reply(&AwsError::bare("SerializationException"), protocol)
                    );
                }
                return Err(e);
            }
        };
        let value = self
            .decode(op, protocol, body)
            .and_then(|v| self.validate(op, &v).map(|()| v))
            .map_err(|e| self.error_reply(&e, protocol))?;
        Ok((op, protocol, value))
    }
}

/// Whether `body` is one well-formed JSON object (or array, which AWS's
/// parser also accepts at this stage) or one well-formed CBOR item.
fn well_formed(protocol: Protocol, body: &[u8]) -> bool {
    match protocol {
        Protocol::Json => {
            let first = body.iter().find(|b| !b.is_ascii_whitespace());
            matches!(first, Some(b'{' | b'['))
                && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
        }
        Protocol::Cbor => crate::cbor::well_formed(body),
    }
}
