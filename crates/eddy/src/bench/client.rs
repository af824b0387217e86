//! A minimal Kinesis JSON 1.1 client: one HTTP/1.1 keep-alive connection per
//! worker, a dummy SigV4-shaped `Authorization` header (the servers measured
//! accept any credentials), reconnect on transport errors.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Where to send requests, and the headers every request carries.
pub struct Endpoint {
    pub addr: SocketAddr,
    host: HeaderValue,
    date: HeaderValue,
    auth: HeaderValue,
}

impl Endpoint {
    pub async fn resolve(url: &str) -> anyhow::Result<Arc<Endpoint>> {
        let uri: hyper::Uri = url
            .parse()
            .with_context(|| format!("parsing --endpoint {url}"))?;
        match uri.scheme_str() {
            Some("http") | None => {}
            Some(other) => bail!("only http:// endpoints are supported, got {other}://"),
        }
        let authority = uri
            .authority()
            .with_context(|| format!("--endpoint {url} has no host"))?;
        let port = authority.port_u16().unwrap_or(80);
        let addr = tokio::net::lookup_host((authority.host(), port))
            .await
            .with_context(|| format!("resolving {}", authority.host()))?
            .next()
            .with_context(|| format!("{} resolves to no address", authority.host()))?;
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let (date, day) = amz_date(secs);
        Ok(Arc::new(Endpoint {
            addr,
            host: HeaderValue::from_str(authority.as_str())?,
            date: HeaderValue::from_str(&date)?,
            auth: HeaderValue::from_str(&dummy_authorization(&day, secs))?,
        }))
    }
}

/// `X-Amz-Date` (`YYYYMMDDTHHMMSSZ`) and the credential-scope day
/// (`YYYYMMDD`) for a Unix time.
pub fn amz_date(unix_secs: u64) -> (String, String) {
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let day = format!("{y:04}{m:02}{d:02}");
    let date = format!(
        "{day}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    );
    (date, day)
}

/// An `Authorization` header shaped like SigV4 with a made-up signature.
pub fn dummy_authorization(day: &str, seed: u64) -> String {
    let mut sig = String::with_capacity(64);
    let mut x = seed | 1;
    while sig.len() < 64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        sig.push_str(&format!("{:016x}", x));
    }
    sig.truncate(64);
    format!(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/{day}/us-east-1/kinesis/aws4_request, \
         SignedHeaders=host;x-amz-date, Signature={sig}"
    )
}

/// How one call ended.
pub enum Outcome {
    /// HTTP 200 and its body.
    Ok(Bytes),
    /// Any other HTTP status, with the error code from the body.
    Http { status: u16, body: Bytes },
    /// No HTTP answer (connect error, reset, timeout).
    Transport(String),
}

/// One keep-alive connection, reopened on demand after a transport error.
pub struct Conn {
    ep: Arc<Endpoint>,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    pub fn new(ep: Arc<Endpoint>) -> Conn {
        Conn { ep, sender: None }
    }

    /// Opens the connection now, so that connecting is not measured.
    pub async fn warm(&mut self) -> anyhow::Result<()> {
        self.connect().await.map(|_| ())
    }

    async fn connect(&mut self) -> anyhow::Result<&mut SendRequest<Full<Bytes>>> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(self.ep.addr))
                .await
                .context("connect timed out")??;
            stream.set_nodelay(true)?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .context("HTTP handshake")?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.sender = Some(sender);
        }
        Ok(self.sender.as_mut().expect("just set"))
    }

    /// Sends one Kinesis operation (`target` such as
    /// `Kinesis_20131202.PutRecords`) with a prebuilt JSON body.
    pub async fn call(&mut self, target: &'static str, body: Bytes) -> Outcome {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.call_inner(target, body)).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => {
                self.sender = None;
                Outcome::Transport(format!("{e:#}"))
            }
            Err(_) => {
                self.sender = None;
                Outcome::Transport(format!("no answer within {}s", REQUEST_TIMEOUT.as_secs()))
            }
        }
    }

    async fn call_inner(&mut self, target: &'static str, body: Bytes) -> anyhow::Result<Outcome> {
        let ep = self.ep.clone();
        let sender = self.connect().await?;
        sender.ready().await.context("connection not ready")?;
        let req = Request::builder()
            .method(Method::POST)
            .uri("/")
            .header(HOST, ep.host.clone())
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-amz-json-1.1"),
            )
            .header("x-amz-target", HeaderValue::from_static(target))
            .header("x-amz-date", ep.date.clone())
            .header(AUTHORIZATION, ep.auth.clone())
            .body(Full::new(body))?;
        let resp = sender.send_request(req).await.context("sending request")?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .context("reading response body")?
            .to_bytes();
        Ok(if status == 200 {
            Outcome::Ok(body)
        } else {
            Outcome::Http { status, body }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amz_date_formats_unix_time_in_utc() {
        assert_eq!(
            amz_date(0),
            ("19700101T000000Z".to_string(), "19700101".to_string())
        );
        // 2026-01-01T00:00:00Z
        assert_eq!(amz_date(1_767_225_600).0, "20260101T000000Z");
        // 2024-02-29T23:59:59Z (leap day)
        assert_eq!(amz_date(1_709_251_199).0, "20240229T235959Z");
    }

    #[test]
    fn dummy_authorization_is_sigv4_shaped() {
        let auth = dummy_authorization("20260101", 42);
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host;x-amz-date, Signature="
        ));
        let sig = auth.rsplit('=').next().unwrap();
        assert_eq!(sig.len(), 64);
        assert!(sig.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
