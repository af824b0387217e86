"""Starts a real `eddy serve` (the debug binary built by scripts/test.sh) for
the boto3 and AWS CLI tests."""

import os
import socket
import subprocess
import tempfile
import time

import boto3
import pytest
from botocore.config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EDDY = os.environ.get("EDDY_BIN", os.path.join(ROOT, "target", "debug", "eddy"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="eddy-py-")
        self.port = free_port()
        self.proc = None

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        self.proc = subprocess.Popen(
            [EDDY, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.dir],
            env={**os.environ, "EDDY_LOG": "warn"},
        )
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("eddy exited early")
                time.sleep(0.02)
        raise RuntimeError("eddy did not start")

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


@pytest.fixture
def eddy():
    s = Server()
    s.start()
    yield s
    s.stop()


@pytest.fixture
def kinesis(eddy):
    return boto3.client(
        "kinesis",
        endpoint_url=eddy.endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=Config(retries={"max_attempts": 1}),
    )
