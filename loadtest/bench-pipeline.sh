#!/usr/bin/env bash
# Inference pipeline benchmark on the release build, through the real
# DIMSE listener, the store, assembly, the engines, SR writing and storing:
#   - end-to-end latency (last instance received → result SR stored) of
#     CT_SERIES 64-slice head CTs (512x512) and CR_SERIES single CRs, sent
#     one after another, each waiting for its result;
#   - CNN throughput: CNN_IMAGES DX images (256x256) routed per instance to
#     resnet18-demo, images/s from the first job started to the last done.
# End-to-end latency includes the series stable time (STABLE, default 1s):
# the table prints it and the time after it.
# Compare the CNN figure with `cargo run --release -p dicom-gateway
# --example engine_bench` (the engine alone on the same tensors).
#
# Usage: loadtest/bench-pipeline.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CT_SERIES=${CT_SERIES:-10}
CR_SERIES=${CR_SERIES:-10}
CNN_IMAGES=${CNN_IMAGES:-100}
STABLE=${STABLE:-1s}
WORKERS=${WORKERS:-2}
export TCP_NODELAY=1

cargo build --release --locked -p dicom-gateway -p dicom-loadtest >&2
bin=target/release
work=$(mktemp -d)
gw=""
cleanup() { [ -n "$gw" ] && kill "$gw" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

cat > "$work/routes.toml" <<TOML
[[route]]
name = "ct-head-hyperdensity"
model = "ct-hyperdensity@2.0.0"
level = "series"
[route.match]
modality = ["CT"]
body_part_examined = ["HEAD"]

[[route]]
name = "cr-exposure"
model = "dx-exposure@1.0.0"
level = "instance"
[route.match]
modality = ["CR"]

[[route]]
name = "dx-cnn"
model = "resnet18-demo@1.0.0"
level = "instance"
[route.match]
modality = ["DX"]
TOML
cat > "$work/gateway.toml" <<TOML
[dimse]
listen = "127.0.0.1:0"
[dicomweb]
enabled = false
[metrics]
listen = "127.0.0.1:0"
[logging]
level = "warn"
[pipeline]
models_dir = "$PWD/models"
routes_file = "$work/routes.toml"
stable_time = "$STABLE"
workers = $WORKERS
[[sites]]
name = "demo"
ae_titles = ["DEMO-SCU"]
allowed_peers = ["127.0.0.0/8"]
TOML
data="$work/data"
"$bin/dicom-gateway" serve --config "$work/gateway.toml" --data-dir "$data" 2>"$work/gw.log" &
gw=$!
for _ in $(seq 200); do [ -f "$data/listeners.json" ] && break; sleep 0.1; done
addr=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['dimse'])" "$data/listeners.json")

wait_jobs() { # route count → waits until that many jobs of the route are done
  python3 - "$data/index.sqlite" "$1" "$2" <<'PY'
import sqlite3, sys, time
db, route, want = sys.argv[1], sys.argv[2], int(sys.argv[3])
deadline = time.time() + 600
while time.time() < deadline:
    c = sqlite3.connect(db, timeout=10)
    done, failed = c.execute("SELECT SUM(state='done'), SUM(state='failed') FROM jobs WHERE route=?", (route,)).fetchone()
    c.close()
    if (failed or 0) > 0: sys.exit(f"{failed} {route} jobs failed")
    if (done or 0) >= want: sys.exit(0)
    time.sleep(0.02)
sys.exit(f"timed out waiting for {want} {route} jobs")
PY
}
send() { "$bin/dicom-loadtest" store --addr "$addr" --calling-ae DEMO-SCU --called-ae GATEWAY --json "$@" >/dev/null; }

for i in $(seq "$CT_SERIES"); do
  send --modality ct --instances 64 --seed $((100 + i)); wait_jobs ct-head-hyperdensity "$i"
done
for i in $(seq "$CR_SERIES"); do
  send --modality cr --instances 1 --seed $((200 + i)); wait_jobs cr-exposure "$i"
done
send --modality dx --instances "$CNN_IMAGES" --rows 256 --columns 256 --seed 300
wait_jobs dx-cnn "$CNN_IMAGES"
rss=$(awk '/VmHWM/ {print $2}' "/proc/$gw/status")

python3 - "$data/index.sqlite" "$STABLE" "$rss" "$WORKERS" <<'PY'
import sqlite3, sys
db, stable, rss, workers = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
stable_ms = float(stable.rstrip("s").rstrip("m")) * (1 if stable.endswith("ms") else 1000)
c = sqlite3.connect(db)
def pct(xs, p):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]
print(f"\nInference pipeline, release build, tract engine, {workers} workers, stable time {stable}\n")
print(f"{'what':<36}{'n':>5}{'p50 ms':>9}{'p95 ms':>9}{'p50 after stable':>18}")
for route, label in [("ct-head-hyperdensity", "CT head, 64 x 512x512 slices"), ("cr-exposure", "single CR, 1024x1024")]:
    e2e = [f - r for f, r in c.execute("SELECT finished_ms, ready_after_ms FROM jobs WHERE route=? AND state='done'", (route,))]
    print(f"{label:<36}{len(e2e):>5}{pct(e2e,50):>9.0f}{pct(e2e,95):>9.0f}{pct(e2e,50)-stable_ms:>18.0f}")
n, first, last = c.execute("SELECT COUNT(*), MIN(started_ms), MAX(finished_ms) FROM jobs WHERE route='dx-cnn' AND state='done'").fetchone()
print(f"\nCNN (resnet18-demo, 224x224) through the gateway: {n} images in {(last-first)/1000:.2f} s = {n*1000/(last-first):.1f} images/s")
print(f"peak RSS of the gateway: {rss/1024:.0f} MiB")
PY
