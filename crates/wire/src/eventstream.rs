//! The AWS event-stream framing used by SubscribeToShard responses:
//! prelude (total length, headers length, CRC), typed headers, payload,
//! message CRC. Encoding is delegated to `aws-smithy-eventstream`, the codec
//! the AWS SDKs decode with; this module only knows which headers Kinesis
//! sends for events, the initial response and exceptions.

use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::Bytes;

use crate::{AwsError, Protocol};

pub const CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";

fn frame(headers: Vec<(&'static str, String)>, payload: Vec<u8>) -> Bytes {
    let headers = headers
        .into_iter()
        .map(|(name, value)| Header::new(name, HeaderValue::String(value.into())))
        .collect();
    let message = Message::new_from_parts(headers, payload);
    let mut out = Vec::with_capacity(message.payload().len() + 128);
    aws_smithy_eventstream::frame::write_message_to(&message, &mut out)
        .expect("headers and payload sizes are within event-stream limits");
    Bytes::from(out)
}

/// The first message of every subscription (`:event-type initial-response`).
pub fn initial_response(protocol: Protocol) -> Bytes {
    let payload = match protocol {
        Protocol::Json => b"{}".to_vec(),
        Protocol::Cbor => vec![0xa0], // empty CBOR map
    };
    frame(
        vec![
            (":message-type", "event".into()),
            (":event-type", "initial-response".into()),
            (":content-type", protocol.content_type().into()),
        ],
        payload,
    )
}

/// An event of type `event_type` with an already encoded payload.
pub fn event(event_type: &str, protocol: Protocol, payload: Vec<u8>) -> Bytes {
    frame(
        vec![
            (":message-type", "event".into()),
            (":event-type", event_type.into()),
            (":content-type", protocol.content_type().into()),
        ],
        payload,
    )
}

/// An exception message; the stream ends after it.
pub fn exception(error: &AwsError, protocol: Protocol) -> Bytes {
    frame(
        vec![
            (":message-type", "exception".into()),
            (":exception-type", error.code.clone()),
            (":content-type", protocol.content_type().into()),
        ],
        error.encode(protocol),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_eventstream::frame::read_message_from;

    fn header(m: &Message, name: &str) -> String {
        m.headers()
            .iter()
            .find(|h| h.name().as_str() == name)
            .and_then(|h| h.value().as_string().ok())
            .map(|s| s.as_str().to_string())
            .unwrap_or_default()
    }

    #[test]
    fn frames_decode_with_the_sdk_codec_and_carry_kinesis_headers() {
        let m = read_message_from(initial_response(Protocol::Json)).unwrap();
        assert_eq!(header(&m, ":event-type"), "initial-response");
        assert_eq!(m.payload().as_ref(), b"{}");
        let m = read_message_from(event(
            "SubscribeToShardEvent",
            Protocol::Json,
            b"{\"Records\":[]}".to_vec(),
        ))
        .unwrap();
        assert_eq!(header(&m, ":message-type"), "event");
        assert_eq!(header(&m, ":content-type"), "application/x-amz-json-1.1");
        let e = AwsError::new("ResourceInUseException", "replaced");
        let m = read_message_from(exception(&e, Protocol::Json)).unwrap();
        assert_eq!(header(&m, ":message-type"), "exception");
        assert_eq!(header(&m, ":exception-type"), "ResourceInUseException");
    }

    #[test]
    fn a_corrupted_frame_is_rejected_by_its_crc() {
        let mut bytes = event("SubscribeToShardEvent", Protocol::Json, b"{}".to_vec()).to_vec();
        let n = bytes.len();
        bytes[n - 6] ^= 1;
        assert!(read_message_from(Bytes::from(bytes)).is_err());
    }
}
