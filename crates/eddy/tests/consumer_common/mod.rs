//! Shared by the consumer tests: a dynalite server (the npm package, as the
//! lease table's DynamoDB) and DynamoDB clients.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};

pub struct Dynalite {
    child: Child,
    pub port: u16,
}

impl Drop for Dynalite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Installs dynalite into `.npm-test/` once (scripts/test.sh does it first).
fn dynalite_script() -> PathBuf {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = INSTALL.lock().unwrap();
    let dir = workspace_root().join(".npm-test");
    let cli = dir.join("node_modules/dynalite/cli.js");
    if !cli.exists() {
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .arg("dynalite@4")
            .stdout(Stdio::null())
            .status()
            .expect("running npm install dynalite");
        assert!(status.success(), "npm install dynalite failed");
    }
    cli
}

impl Dynalite {
    /// Starts dynalite on a free port, or `None` (with a message) when
    /// node is not installed.
    pub fn start() -> Option<Dynalite> {
        if Command::new("node")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            eprintln!("SKIPPED: `node` is not installed, so dynalite cannot serve the lease table");
            return None;
        }
        let script = dynalite_script();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("node")
            .arg(script)
            .args(["--port", &port.to_string(), "--createTableMs", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning dynalite");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "dynalite did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Dynalite { child, port })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn client(&self) -> aws_sdk_dynamodb::Client {
        ddb_client(&self.endpoint())
    }
}

pub fn ddb_client(endpoint: &str) -> aws_sdk_dynamodb::Client {
    let conf = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "AKIDEXAMPLE",
            "secret",
            None,
            None,
            "test",
        ))
        .endpoint_url(endpoint)
        .build();
    aws_sdk_dynamodb::Client::from_conf(conf)
}

/// Waits until `cond` holds, polling; panics with `what` after `secs`.
pub async fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
