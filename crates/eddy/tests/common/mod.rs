//! Shared harness for integration tests: starts a real `eddy serve` process
//! on a free port with its own data directory, and builds real AWS SDK
//! clients pointed at it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};

pub struct Eddy {
    pub child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub extra_args: Vec<String>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Eddy {
    /// Starts `eddy serve` with a fresh data directory.
    pub fn start() -> Eddy {
        Self::start_with(&[])
    }

    pub fn start_with(args: &[&str]) -> Eddy {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut e = Eddy {
            child: None,
            port: free_port(),
            dir,
            _tmp: Some(tmp),
            extra_args: args.iter().map(|s| s.to_string()).collect(),
        };
        e.spawn();
        e
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// (Re)starts the process on the same port and data directory and waits
    /// until it accepts connections.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_eddy"));
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(&self.dir)
            .args(&self.extra_args)
            .env("EDDY_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawning eddy serve");
        // Drain stderr in the background so the child never blocks on it.
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[eddy] {line}");
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("eddy serve exited early: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "eddy serve did not start listening"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        self.child = Some(child);
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap(); // SIGKILL
            c.wait().unwrap();
        }
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        unsafe_kill(c.id(), 15);
        c.wait().unwrap()
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn client(&self) -> aws_sdk_kinesis::Client {
        self.client_with(aws_sdk_kinesis::config::retry::RetryConfig::standard())
    }

    /// A client that never retries, to observe throttling as it happens.
    pub fn client_without_retries(&self) -> aws_sdk_kinesis::Client {
        self.client_with(aws_sdk_kinesis::config::retry::RetryConfig::disabled())
    }

    fn client_with(
        &self,
        retry: aws_sdk_kinesis::config::retry::RetryConfig,
    ) -> aws_sdk_kinesis::Client {
        let conf = aws_sdk_kinesis::Config::builder()
            .retry_config(retry)
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(
                "AKIDEXAMPLE",
                "secret",
                None,
                None,
                "test",
            ))
            .endpoint_url(self.endpoint())
            .build();
        aws_sdk_kinesis::Client::from_conf(conf)
    }

    /// A DynamoDB client pointed at this server (the lease-table API).
    pub fn dynamodb_client(&self) -> aws_sdk_dynamodb::Client {
        let conf = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "AKIDEXAMPLE",
                "secret",
                None,
                None,
                "test",
            ))
            .endpoint_url(self.endpoint())
            .build();
        aws_sdk_dynamodb::Client::from_conf(conf)
    }
}

fn unsafe_kill(pid: u32, sig: i32) {
    // Avoids a libc dependency for one call.
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

impl Drop for Eddy {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Creates a stream and returns its name.
pub async fn create_stream(client: &aws_sdk_kinesis::Client, name: &str, shards: i32) {
    client
        .create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
        .unwrap();
}

/// The AWS error code of a failed SDK call.
pub fn code<E, R>(err: &aws_sdk_kinesis::error::SdkError<E, R>) -> String
where
    E: aws_sdk_kinesis::error::ProvideErrorMetadata,
{
    err.as_service_error()
        .and_then(|e| e.code())
        .unwrap_or("<not a service error>")
        .to_string()
}

pub fn message<E, R>(err: &aws_sdk_kinesis::error::SdkError<E, R>) -> String
where
    E: aws_sdk_kinesis::error::ProvideErrorMetadata,
{
    err.as_service_error()
        .and_then(|e| e.message())
        .unwrap_or_default()
        .to_string()
}

/// A sequence number compared as the big decimal integer it is (AWS's are
/// longer than u128 can hold).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SeqNum(usize, String);

impl SeqNum {
    pub fn of(s: &str) -> SeqNum {
        assert!(
            !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()),
            "not a sequence number: {s}"
        );
        let digits = s.trim_start_matches('0');
        SeqNum(digits.len(), digits.to_string())
    }
}
