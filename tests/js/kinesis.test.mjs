// Eddy through @aws-sdk/client-kinesis (JS v3): the third SDK family users
// point at Kinesis endpoints. Starts the debug `eddy` binary on a free port.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { createServer, connect } from "node:net";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import {
  KinesisClient,
  CreateStreamCommand,
  DescribeStreamSummaryCommand,
  PutRecordsCommand,
  GetShardIteratorCommand,
  GetRecordsCommand,
  ListShardsCommand,
} from "@aws-sdk/client-kinesis";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const bin = process.env.EDDY_BIN ?? join(root, "target", "debug", "eddy");
let server;
let client;

const freePort = () =>
  new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

const waitForPort = async (port) => {
  for (let i = 0; i < 400; i++) {
    const ok = await new Promise((resolve) => {
      const c = connect(port, "127.0.0.1", () => {
        c.end();
        resolve(true);
      });
      c.on("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error("eddy did not start");
};

before(async () => {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "eddy-js-"));
  server = spawn(bin, ["serve", "--listen", `127.0.0.1:${port}`, "--data-dir", dir], {
    stdio: ["ignore", "ignore", "inherit"],
    env: { ...process.env, EDDY_LOG: "warn" },
  });
  await waitForPort(port);
  client = new KinesisClient({
    endpoint: `http://127.0.0.1:${port}`,
    region: "us-east-1",
    credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "secret" },
    maxAttempts: 1,
  });
});

after(() => {
  client?.destroy();
  server?.kill("SIGTERM");
});

test("JS v3 creates a stream, writes and reads records back in order", async () => {
  await client.send(new CreateStreamCommand({ StreamName: "js", ShardCount: 2 }));
  const summary = await client.send(new DescribeStreamSummaryCommand({ StreamName: "js" }));
  assert.equal(summary.StreamDescriptionSummary.StreamStatus, "ACTIVE");
  assert.equal(summary.StreamDescriptionSummary.OpenShardCount, 2);
  assert.ok(summary.StreamDescriptionSummary.StreamCreationTimestamp instanceof Date);

  const records = Array.from({ length: 20 }, (_, i) => ({
    Data: new TextEncoder().encode(`js-${i}`),
    PartitionKey: "same",
  }));
  const put = await client.send(new PutRecordsCommand({ StreamName: "js", Records: records }));
  assert.equal(put.FailedRecordCount, 0);
  const shardId = put.Records[0].ShardId;
  assert.ok(put.Records.every((r) => r.ShardId === shardId));

  const it = await client.send(
    new GetShardIteratorCommand({ StreamName: "js", ShardId: shardId, ShardIteratorType: "TRIM_HORIZON" }),
  );
  const got = await client.send(new GetRecordsCommand({ ShardIterator: it.ShardIterator }));
  assert.deepEqual(
    got.Records.map((r) => new TextDecoder().decode(r.Data)),
    records.map((_, i) => `js-${i}`),
  );
  assert.equal(got.Records[0].SequenceNumber, put.Records[0].SequenceNumber);
  assert.ok(got.Records[0].ApproximateArrivalTimestamp instanceof Date);
  assert.equal(got.MillisBehindLatest, 0);

  const shards = await client.send(new ListShardsCommand({ StreamName: "js" }));
  assert.equal(shards.Shards.length, 2);
});

test("JS v3 sees AWS's error types and messages", async () => {
  await assert.rejects(
    client.send(new DescribeStreamSummaryCommand({ StreamName: "missing" })),
    (e) => e.name === "ResourceNotFoundException" && e.message === "Stream missing under account 000000000000 not found.",
  );
  await assert.rejects(
    client.send(new CreateStreamCommand({ StreamName: "bad name", ShardCount: 1 })),
    (e) => e.name === "ValidationException" && e.message.startsWith("1 validation error detected: Value 'bad name' at 'streamName'"),
  );
});
