//! `eddy-server`: the front door.
//!
//! Owns: the listening socket (HTTP/1.1 and HTTP/2 with prior knowledge on
//! the same port), reading bodies within a size limit, the AWS front-door
//! checks (delegated to `eddy-wire`), routing `X-Amz-Target` to the service
//! that serves the operation, `x-amzn-RequestId` on every response, and
//! graceful shutdown (stop accepting, answer in-flight requests, then stop).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use eddy_dynamo::Dynamo;
use eddy_streams::Streams;
use eddy_wire::{ErrorResponse, Protocol, RequestHead, Service};
use std::pin::Pin;
use std::task::{Context, Poll};

use eddy_streams::subscribe::Push;
use eddy_wire::eventstream;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Largest request body accepted: a 10 MiB record in base64 is ~13.4 MiB.
pub const MAX_BODY_BYTES: usize = 20 * 1024 * 1024;
/// How long shutdown waits for in-flight requests.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Everything a request may be routed to.
pub struct App {
    pub streams: Streams,
    pub dynamo: Dynamo,
    kinesis: &'static Service,
    dynamodb: &'static Service,
}

impl App {
    pub fn new(streams: Streams, dynamo: Dynamo) -> Arc<App> {
        Arc::new(App {
            streams,
            dynamo,
            kinesis: eddy_wire::kinesis(),
            dynamodb: eddy_wire::dynamodb(),
        })
    }
}

fn request_id() -> String {
    let r: u128 = rand::random();
    let h = format!("{r:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Response bodies: whole (most operations) or streamed (event streams).
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

fn respond(status: u16, content_type: &'static str, body: Vec<u8>) -> Response<Body> {
    with_body(
        status,
        content_type,
        Full::new(Bytes::from(body)).boxed_unsync(),
    )
}

fn with_body(status: u16, content_type: &'static str, body: Body) -> Response<Body> {
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn error_response(e: ErrorResponse) -> Response<Body> {
    respond(e.status, e.content_type, e.body)
}

fn aws_error(err: eddy_wire::AwsError, protocol: Protocol) -> Response<Body> {
    let status = err.status;
    respond(
        status,
        eddy_wire::content_type(protocol),
        err.encode(protocol),
    )
}

/// A body fed frame by frame from a bounded channel (event streams). Over
/// HTTP/1.1 it goes out chunked, over HTTP/2 as DATA frames.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|f| f.map(|b| Ok(http_body::Frame::data(b))))
    }
}

/// Answers SubscribeToShard with an event stream: the initial response,
/// then one frame per event the subscription pushes.
async fn subscribe(app: &App, input: &eddy_wire::Value, protocol: Protocol) -> Response<Body> {
    let mut pushes = match app.streams.subscribe(input).await {
        Ok(rx) => rx,
        Err(e) => return aws_error(e.to_aws(), protocol),
    };
    let service = app.kinesis;
    let shape = service
        .shape_id("SubscribeToShardEvent")
        .expect("the Kinesis model defines SubscribeToShardEvent");
    let (frames, rx) = mpsc::channel::<Bytes>(2);
    tokio::spawn(async move {
        if frames
            .send(eventstream::initial_response(protocol))
            .await
            .is_err()
        {
            return;
        }
        while let Some(push) = pushes.recv().await {
            let frame = match push {
                Push::Event(v) => eventstream::event(
                    "SubscribeToShardEvent",
                    protocol,
                    service.encode_shape(shape, protocol, &v),
                ),
                Push::Error(e) => eventstream::exception(&e.to_aws(), protocol),
            };
            if frames.send(frame).await.is_err() {
                return; // client gone: dropping `pushes` ends the subscription
            }
        }
    });
    with_body(
        200,
        eventstream::CONTENT_TYPE,
        ChannelBody(rx).boxed_unsync(),
    )
}

/// Answers a DynamoDB request (`X-Amz-Target: DynamoDB_20120810.*`). The
/// operation runs on a blocking thread: writes wait for fsync.
async fn dynamodb(app: &App, head: &RequestHead<'_>, body: &[u8]) -> Response<Body> {
    let service = app.dynamodb;
    let (op, protocol, input) = match service.accept(head, body) {
        Ok(x) => x,
        Err(e) => return error_response(e),
    };
    let content_type = service.content_type(protocol);
    if !eddy_dynamo::OPERATIONS.contains(&op.name.as_str()) {
        let e = eddy_wire::AwsError::new(
            "UnknownOperationException",
            format!("{} is not supported by Eddy yet.", op.name),
        );
        return error_response(service.error_reply(&e, protocol));
    }
    let dynamo = app.dynamo.clone();
    let name = op.name.clone();
    match tokio::task::spawn_blocking(move || dynamo.handle(&name, &input)).await {
        Ok(Ok(output)) => respond(200, content_type, service.encode(op, protocol, &output)),
        Ok(Err(e)) => {
            tracing::debug!(op = %op.name, error = %e, "request failed");
            respond(e.status(), content_type, e.body(service))
        }
        Err(e) => {
            let e = eddy_wire::AwsError::new("InternalServerError", e.to_string()).with_status(500);
            error_response(service.error_reply(&e, protocol))
        }
    }
}

/// Handles one HTTP request end to end.
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return respond(413, "text/plain", b"Request Entity Too Large".to_vec());
            }
            // The client went away mid-body; nothing useful to answer.
            return respond(400, "text/plain", Vec::new());
        }
    };
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let head = RequestHead {
        method: parts.method.as_str(),
        content_type: header("content-type"),
        target: header("x-amz-target"),
        authorization: header("authorization"),
        query: parts.uri.query(),
        has_date: parts.headers.contains_key("x-amz-date") || parts.headers.contains_key("date"),
        body_is_empty: body.is_empty(),
    };
    if head.target.and_then(|t| t.split('.').next()) == Some(app.dynamodb.target_prefix()) {
        return dynamodb(&app, &head, &body).await;
    }
    let service = app.kinesis;
    // Front door, decoding and validation, in AWS's order.
    let (op, protocol, input) = match service.accept(&head, &body) {
        Ok(x) => x,
        Err(e) => return error_response(e),
    };
    if !eddy_streams::OPERATIONS.contains(&op.name.as_str()) {
        // In the model but not served yet (e.g. queues): say so plainly.
        return aws_error(
            eddy_wire::AwsError::new(
                "UnknownOperationException",
                format!("{} is not supported by Eddy yet.", op.name),
            ),
            protocol,
        );
    }
    if op.name == "SubscribeToShard" {
        return subscribe(&app, &input, protocol).await;
    }
    match app.streams.handle(&op.name, input).await {
        Ok(output) => respond(
            200,
            eddy_wire::content_type(protocol),
            service.encode(op, protocol, &output),
        ),
        Err(e) => {
            tracing::debug!(op = %op.name, error = %e, "request failed");
            aws_error(e.to_aws(), protocol)
        }
    }
}

/// A bound server, ready to run.
pub struct Server {
    listener: TcpListener,
    app: Arc<App>,
}

impl Server {
    pub async fn bind(addr: SocketAddr, app: Arc<App>) -> std::io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Server { listener, app })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then stops accepting and waits (up
    /// to [`SHUTDOWN_GRACE`]) for in-flight requests to be answered.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> std::io::Result<()> {
        let builder = auto::Builder::new(TokioExecutor::new());
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = self.listener.accept() => {
                    let (stream, _peer) = match accepted {
                        Ok(x) => x,
                        Err(e) => {
                            // Out of file descriptors and the like: back off, keep serving.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let app = self.app.clone();
                    let svc = service_fn(move |req| {
                        let app = app.clone();
                        async move {
                            let mut resp = handle(app, req).await;
                            if let Ok(v) = HeaderValue::from_str(&request_id()) {
                                resp.headers_mut().insert("x-amzn-requestid", v);
                            }
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
                _ = &mut shutdown => break,
            }
        }
        drop(self.listener);
        // Event streams would otherwise hold their connections open.
        self.app.streams.end_all_subscriptions();
        tokio::select! {
            _ = graceful.shutdown() => {}
            _ = tokio::time::sleep(SHUTDOWN_GRACE) => {
                tracing::warn!("shutdown grace period passed with requests still in flight");
            }
        }
        Ok(())
    }
}
