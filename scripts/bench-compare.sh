#!/usr/bin/env bash
# Side-by-side comparison of Eddy with the Kinesis emulators a user would
# otherwise pick: kinesalite and kinesis-mock (npm package kinesis-local).
#
# For each server: start it on its own port, measure time-to-first-answer
# (ms from process start until a ListStreams answers 200) and idle RSS
# (VmRSS right after it is ready, before any load), run `eddy bench --json`
# against it with the same settings, stop it. Prints one table with the
# medians over RUNS rounds and ratios against kinesalite.
#
# Usage: scripts/bench-compare.sh            (3 rounds, 10 s per phase)
#        RUNS=1 DURATION=5 scripts/bench-compare.sh
# Environment:
#   RUNS         rounds (default 3); the table shows medians
#   DURATION     seconds per timed bench phase (default 10)
#   SERVERS      which servers, space-separated (default "eddy kinesalite kinesis-mock")
#   BENCH_ARGS   extra arguments for eddy bench, the same for every server
#   PEERS_DIR    where the npm peers are installed and scratch data lives
#                (default ./bench-peers, gitignored)
#   OUT_DIR      where raw results go (default $PEERS_DIR/results/<timestamp>)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNS="${RUNS:-3}"
DURATION="${DURATION:-10}"
SERVERS="${SERVERS:-eddy kinesalite kinesis-mock}"
PEERS_DIR="${PEERS_DIR:-$ROOT/bench-peers}"
OUT_DIR="${OUT_DIR:-$PEERS_DIR/results/$(date -u +%Y%m%dT%H%M%SZ)}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
EDDY="$TARGET_DIR/release/eddy"
KINESALITE_VERSION=3.3.3
KINESIS_LOCAL_VERSION=0.6.2
# Same parameters for every server.
COMMON_ARGS=(--shards 4 --record-size 100 --batch 500 --concurrency 8 --rate 1000
    --duration "$DURATION" --phases put-records,put-record,get-records,latency)
# shellcheck disable=SC2206
EXTRA_ARGS=(${BENCH_ARGS:-})

log() { printf '[bench-compare] %s\n' "$*" >&2; }

# --- build and install ------------------------------------------------------
log "building eddy (release)"
(cd "$ROOT" && cargo build --release -p eddy)

mkdir -p "$PEERS_DIR" "$OUT_DIR"
if [[ ! -f "$PEERS_DIR/node_modules/kinesalite/package.json" ||
      ! -f "$PEERS_DIR/node_modules/kinesis-local/package.json" ]]; then
    log "installing kinesalite@$KINESALITE_VERSION and kinesis-local@$KINESIS_LOCAL_VERSION into $PEERS_DIR"
    [[ -f "$PEERS_DIR/package.json" ]] || echo '{"name":"bench-peers","private":true}' >"$PEERS_DIR/package.json"
    (cd "$PEERS_DIR" && npm install --no-audit --no-fund \
        "kinesalite@$KINESALITE_VERSION" "kinesis-local@$KINESIS_LOCAL_VERSION" >&2)
fi
NODE_VERSION="$(node --version)"

# --- start / ready / stop ---------------------------------------------------
# start_server NAME PORT LOGFILE CMD...: starts CMD detached, waits until a
# ListStreams on PORT answers 200; prints "PID READY_MS".
start_server() {
    local port="$1" logfile="$2"
    shift 2
    python3 - "$port" "$logfile" "$@" <<'PY'
import socket, subprocess, sys, time
port, logfile, cmd = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
req = (b"POST / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
       b"Content-Type: application/x-amz-json-1.1\r\n"
       b"X-Amz-Target: Kinesis_20131202.ListStreams\r\n"
       b"X-Amz-Date: 20260101T000000Z\r\n"
       b"Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/kinesis/aws4_request, "
       b"SignedHeaders=host;x-amz-date, Signature=" + b"0" * 64 + b"\r\n"
       b"Content-Length: 2\r\nConnection: close\r\n\r\n{}") % port
out = open(logfile, "wb")
t0 = time.monotonic()
proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                        start_new_session=True)
deadline = t0 + 120
while True:
    if proc.poll() is not None:
        sys.exit(f"server exited with {proc.returncode} before answering; see {logfile}")
    if time.monotonic() > deadline:
        proc.kill()
        sys.exit(f"server did not answer ListStreams within 120 s; see {logfile}")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(req)
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            if data.startswith(b"HTTP/1.1 200"):
                ready_ms = (time.monotonic() - t0) * 1000
                break
    except OSError:
        pass
    time.sleep(0.001)
print(proc.pid, f"{ready_ms:.1f}")
PY
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
# CPU ticks (1/100 s) used so far by a process: utime + stime.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }

stop_server() {
    local pid="$1"
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    log "pid $pid did not stop on SIGTERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
}

port_of() {
    case "$1" in
    eddy) echo 4611 ;;
    kinesalite) echo 4612 ;;
    kinesis-mock) echo 4614 ;; # plain HTTP port; 4613 is its TLS port
    esac
}

command_of() {
    local name="$1" port="$2" data="$3"
    case "$name" in
    eddy)
        # Default durability (fsync); per-shard throughput limits off.
        local limits=()
        if "$EDDY" serve --help | grep -q -- '--shard-limits'; then limits=(--shard-limits off); fi
        echo env EDDY_LOG=warn "$EDDY" serve --listen "127.0.0.1:$port" --data-dir "$data" "${limits[@]}"
        ;;
    kinesalite)
        # In memory (no --path); no artificial CREATING/DELETING delays.
        echo node "$PEERS_DIR/node_modules/kinesalite/cli.js" --port "$port" \
            --createStreamMs 0 --deleteStreamMs 0 --updateStreamMs 0 --shardLimit 100
        ;;
    kinesis-mock)
        # In memory (SHOULD_PERSIST_DATA defaults to false); no artificial delays.
        echo env KINESIS_MOCK_PLAIN_PORT="$port" KINESIS_MOCK_TLS_PORT="$((port - 1))" \
            KINESIS_MOCK_CERT_PATH="$PEERS_DIR/node_modules/kinesis-local/server.json" \
            CREATE_STREAM_DURATION=0ms DELETE_STREAM_DURATION=0ms UPDATE_SHARD_COUNT_DURATION=0ms \
            SHARD_LIMIT=100 LOG_LEVEL=WARN \
            node "$PEERS_DIR/node_modules/kinesis-local/main.js"
        ;;
    esac
}

# --- rounds -----------------------------------------------------------------
log "results in $OUT_DIR"
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "machine: $(nproc) vCPU, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
    echo "cpu: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
    dirty=""
    if [[ -n "$(cd "$ROOT" && git status --porcelain --untracked-files=no)" ]]; then dirty=" + uncommitted changes"; fi
    echo "eddy: $(cd "$ROOT" && git rev-parse --short HEAD)$dirty ($("$EDDY" --version))"
    echo "node: $NODE_VERSION; kinesalite $KINESALITE_VERSION; kinesis-local $KINESIS_LOCAL_VERSION"
    echo "bench: eddy bench --json ${COMMON_ARGS[*]} ${EXTRA_ARGS[*]}"
} >"$OUT_DIR/meta.txt"
cat "$OUT_DIR/meta.txt" >&2

for round in $(seq 1 "$RUNS"); do
    for name in $SERVERS; do
        port="$(port_of "$name")"
        data="$PEERS_DIR/data-$name"
        rm -rf "$data"
        mkdir -p "$data"
        # shellcheck disable=SC2046
        read -r -a cmd <<<"$(command_of "$name" "$port" "$data")"
        log "round $round/$RUNS: $name on :$port"
        read -r pid ready_ms < <(start_server "$port" "$OUT_DIR/$name-$round.log" "${cmd[@]}")
        sleep 1
        rss="$(rss_kb "$pid")"
        log "$name ready in ${ready_ms} ms, idle RSS ${rss} kB; running eddy bench"
        load="$(cut -d' ' -f1 /proc/loadavg)"
        status=ok
        cpu0="$(cpu_ticks "$pid")"
        t0="$(date +%s.%N)"
        if ! "$EDDY" bench --endpoint "http://127.0.0.1:$port" --json "${COMMON_ARGS[@]}" "${EXTRA_ARGS[@]}" \
            >"$OUT_DIR/$name-$round.json" 2>"$OUT_DIR/$name-$round.bench.log"; then
            status=failed
            log "eddy bench against $name failed; see $OUT_DIR/$name-$round.bench.log"
        fi
        cpu1="$(cpu_ticks "$pid")"
        t1="$(date +%s.%N)"
        server_cores="$(awk -v c0="$cpu0" -v c1="$cpu1" -v t0="$t0" -v t1="$t1" 'BEGIN {printf "%.3f", (c1 - c0) / 100 / (t1 - t0)}')"
        stop_server "$pid"
        rm -rf "$data"
        printf '{"server":"%s","round":%d,"ready_ms":%s,"idle_rss_kb":%s,"load1":%s,"server_cores":%s,"status":"%s"}\n' \
            "$name" "$round" "$ready_ms" "$rss" "$load" "$server_cores" "$status" >>"$OUT_DIR/startup.jsonl"
    done
done

# --- table ------------------------------------------------------------------
python3 - "$OUT_DIR" "$SERVERS" <<'PY' | tee "$OUT_DIR/table.md"
import json, os, statistics, sys
out_dir, servers = sys.argv[1], sys.argv[2].split()
starts = [json.loads(l) for l in open(os.path.join(out_dir, "startup.jsonl"))]

def bench(name, rnd):
    p = os.path.join(out_dir, f"{name}-{rnd}.json")
    try:
        return json.load(open(p))
    except (OSError, ValueError):
        return None

def get(d, *path):
    for k in path:
        if d is None:
            return None
        d = d.get(k)
    return d

metrics = [
    # label, extractor, format, higher is better
    ("PutRecords records/s", lambda s, b: get(b, "put_records", "records_per_s"), "{:,.0f}", True),
    ("PutRecords MB/s", lambda s, b: get(b, "put_records", "mb_per_s"), "{:.2f}", True),
    ("PutRecord records/s", lambda s, b: get(b, "put_record", "records_per_s"), "{:,.0f}", True),
    ("GetRecords drain MB/s", lambda s, b: get(b, "get_records", "mb_per_s"), "{:.2f}", True),
    ("put-to-visible p50 ms", lambda s, b: get(b, "put_to_visible", "latency", "p50_ms"), "{:.2f}", False),
    ("put-to-visible p99 ms", lambda s, b: get(b, "put_to_visible", "latency", "p99_ms"), "{:.2f}", False),
    ("put-to-visible achieved rate/s", lambda s, b: get(b, "put_to_visible", "send_rate"), "{:,.0f}", True),
    ("time to first answer ms", lambda s, b: s["ready_ms"], "{:.1f}", False),
    ("idle RSS MB", lambda s, b: s["idle_rss_kb"] / 1024, "{:.1f}", False),
    ("server CPU cores, average over the bench", lambda s, b: s.get("server_cores"), "{:.2f}", False),
    ("generator CPU cores, PutRecords phase", lambda s, b: get(b, "put_records", "generator_cpu_cores"), "{:.2f}", False),
]

med = {}
runs = {}
for name in servers:
    rows = [s for s in starts if s["server"] == name]
    runs[name] = len(rows)
    for label, f, _, _ in metrics:
        vals = [f(s, bench(name, s["round"])) for s in rows]
        vals = [v for v in vals if v is not None]
        med[(name, label)] = statistics.median(vals) if vals else None

base = "kinesalite" if "kinesalite" in servers else servers[0]
head = ["metric"] + [f"{n} (median of {runs[n]})" for n in servers]
head += [f"{n} / {base}" for n in servers if n != base]
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
for label, _, fmt, _ in metrics:
    row = [label]
    for n in servers:
        v = med[(n, label)]
        row.append(fmt.format(v) if v is not None else "n/a")
    for n in servers:
        if n == base:
            continue
        v, b = med[(n, label)], med[(base, label)]
        row.append(f"{v / b:.2f}x" if v is not None and b else "n/a")
    print("| " + " | ".join(row) + " |")

# Errors and incomplete drains, so nothing is hidden behind a median.
notes = []
for name in servers:
    for s in [s for s in starts if s["server"] == name]:
        b = bench(name, s["round"])
        if b is None:
            notes.append(f"{name} round {s['round']}: bench failed ({s['status']})")
            continue
        for phase in ("put_records", "put_record", "get_records", "put_to_visible"):
            for e in (b.get(phase) or {}).get("errors", []):
                notes.append(f"{name} round {s['round']} {phase}: {e['count']} x {e['kind']}: {e['example'][:120]}")
        d = b.get("get_records")
        if d and not d["complete"]:
            notes.append(f"{name} round {s['round']}: drain incomplete ({d['records']} of {d['expected_records']})")
        v = b.get("put_to_visible")
        if v and (v["missing"] or v["sent"] < v["planned"]):
            notes.append(f"{name} round {s['round']}: put-to-visible sent {v['sent']} of {v['planned']}, "
                         f"{v['missing']} never seen")
loads = ", ".join(f"{s['server']} r{s['round']}: {s['load1']}" for s in starts)
notes.append(f"1-minute load average when each bench started (other work on the machine shows here): {loads}")
if notes:
    print()
    for n in notes:
        print(f"- {n}")
PY
log "raw results: $OUT_DIR"
