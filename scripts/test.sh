#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: installs what the tests
# need (a Python venv with pytest, boto3 and the AWS CLI; the AWS SDK for
# JavaScript v3 from npm), builds in the debug
# profile, runs the Rust tests (unit, property, integration against real
# `eddy serve` processes) and the Python tests (boto3, AWS CLI).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== python venv (pytest, boto3, awscli)"
if [ ! -x .venv/bin/pytest ] || ! .venv/bin/python -c "import boto3" 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
fi

echo "== dynalite (lease-table DynamoDB for the consumer tests)"
if command -v npm >/dev/null && [ ! -f .npm-test/node_modules/dynalite/cli.js ]; then
  npm install --no-audit --no-fund --prefix .npm-test dynalite@4 >/dev/null
fi

echo "== build (debug)"
cargo build --workspace --all-targets --locked

echo "== rust tests"
cargo test --workspace --locked --no-fail-fast -- --test-threads 2

echo "== python tests"
PATH="$PWD/.venv/bin:$PATH" .venv/bin/pytest -q tests/python

echo "== javascript tests (AWS SDK for JavaScript v3)"
if [ ! -d tests/js/node_modules/@aws-sdk/client-kinesis ]; then
  npm ci --prefix tests/js --no-audit --no-fund --silent
fi
node --test tests/js/
