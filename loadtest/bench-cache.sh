#!/usr/bin/env bash
# Result cache benchmark on the release build: a head CT (INSTANCES slices
# of 512x512, hyperdense blob) is sent, then sent again under new study,
# series and instance UIDs (a re-export: same pixels, new identity). The
# first is a cache miss (the model runs on every slice); the re-sent one
# hits for every slice (decode and hash only, no inference). Prints, for
# each, the job time (claim → result stored) and the time to result after
# the series became ready, for the in-process cache and, when redis-server
# is installed, for Redis.
#
# Usage: loadtest/bench-cache.sh      (ROUNDS=5 INSTANCES=64 STABLE=1s)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
INSTANCES=${INSTANCES:-64}
STABLE=${STABLE:-1s}
export TCP_NODELAY=1
python=${GATEWAY_TEST_PYTHON:-.venv/bin/python}
"$python" -c 'import pydicom' 2>/dev/null || { echo "needs pydicom: run scripts/test.sh first (it creates .venv)" >&2; exit 1; }

cargo build --release --locked -p dicom-gateway -p dicom-loadtest >&2
bin=${CARGO_TARGET_DIR:-target}/release
work=$(mktemp -d)
gw=""
redis_pid=""
cleanup() {
  [ -n "$gw" ] && kill "$gw" 2>/dev/null || true
  [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The series, and copies of it under new UIDs (one per round).
"$bin/dicom-loadtest" generate --modality ct --instances "$INSTANCES" --seed 4242 --out "$work/original" >/dev/null
"$python" - "$work" "$ROUNDS" <<'PY'
import os, sys, pydicom
from pydicom.uid import generate_uid
work, rounds = sys.argv[1], int(sys.argv[2])
files = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(work, "original")) for f in fs)
for r in range(rounds * 2):
    out = os.path.join(work, f"copy{r}")
    os.makedirs(out)
    study, series = generate_uid(), generate_uid()
    for i, path in enumerate(files):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        sop = generate_uid()
        ds.SOPInstanceUID = sop
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.save_as(os.path.join(out, f"{i:04}.dcm"))
PY

run_gateway() { # name cache-toml
  local name=$1 cache=$2
  mkdir -p "$work/$name"
  cat > "$work/$name/gateway.toml" <<TOML
[dimse]
listen = "127.0.0.1:0"
[dicomweb]
enabled = false
[admin]
enabled = false
[metrics]
listen = "127.0.0.1:0"
[logging]
level = "warn"
[pipeline]
models_dir = "$PWD/models"
stable_time = "$STABLE"
[[sites]]
name = "demo"
ae_titles = ["DEMO-SCU"]
allowed_peers = ["127.0.0.0/8"]
$cache
TOML
  data="$work/$name/data"
  "$bin/dicom-gateway" serve --config "$work/$name/gateway.toml" --data-dir "$data" 2>"$work/$name/gw.log" &
  gw=$!
  for _ in $(seq 200); do [ -f "$data/listeners.json" ] && break; sleep 0.1; done
  port=$("$python" -c "import json,sys; print(json.load(open(sys.argv[1]))['dimse'].rsplit(':',1)[1])" "$data/listeners.json")
  for r in $(seq 0 $((ROUNDS * 2 - 1))); do
    # Even rounds: new pixels for this gateway's cache (a miss); odd: the
    # same pixels again (a hit). Each copy has its own UIDs.
    src=$([ $((r % 2)) -eq 0 ] && echo "$work/copy$r" || echo "$work/copy$((r - 1))")
    if [ $((r % 2)) -eq 1 ]; then
      "$python" - "$src" "$work/$name/resend$r" <<'PY'
import os, sys, pydicom
from pydicom.uid import generate_uid
src, out = sys.argv[1], sys.argv[2]
os.makedirs(out)
study, series = generate_uid(), generate_uid()
for f in sorted(os.listdir(src)):
    ds = pydicom.dcmread(os.path.join(src, f))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    sop = generate_uid(); ds.SOPInstanceUID = sop; ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.save_as(os.path.join(out, f))
PY
      src="$work/$name/resend$r"
    else
      # A new series: change one pixel so the cache has not seen it.
      "$python" - "$src" "$r" <<'PY'
import os, sys, pydicom
src, r = sys.argv[1], int(sys.argv[2])
for f in sorted(os.listdir(src)):
    p = os.path.join(src, f); ds = pydicom.dcmread(p)
    a = ds.pixel_array; a[0, 0] = (int(a[0, 0]) + 1 + r) % 100; ds.PixelData = a.tobytes(); ds.save_as(p)
PY
    fi
    /usr/bin/storescu -q -aet DEMO-SCU -aec GATEWAY 127.0.0.1 "$port" "$src"/*.dcm
    "$python" - "$data/index.sqlite" $((r + 1)) <<'PY'
import sqlite3, sys, time
db, want = sys.argv[1], int(sys.argv[2])
deadline = time.time() + 600
while time.time() < deadline:
    c = sqlite3.connect(db, timeout=10)
    (done,) = c.execute("SELECT COUNT(*) FROM jobs WHERE state='done'").fetchone()
    c.close()
    if done >= want: sys.exit(0)
    time.sleep(0.02)
sys.exit("timed out")
PY
  done
  "$python" - "$data/index.sqlite" "$name" "$STABLE" <<'PY'
import sqlite3, sys
db, name, stable = sys.argv[1], sys.argv[2], sys.argv[3]
stable_ms = float(stable.rstrip("s").rstrip("m")) * (1 if stable.endswith("ms") else 1000)
c = sqlite3.connect(db)
rows = c.execute("SELECT cache_hit, finished_ms - started_ms, finished_ms - ready_after_ms FROM jobs WHERE state='done' ORDER BY id").fetchall()
def median(xs):
    xs = sorted(xs); return xs[len(xs) // 2] if xs else float("nan")
for hit, label in [(0, "miss (model runs)"), (1, "hit (no inference)")]:
    job = [j for h, j, _ in rows if h == hit]; e2e = [e - stable_ms for h, _, e in rows if h == hit]
    print(f"{name:<8}{label:<22}{len(job):>4}{median(job):>12.0f}{median(e2e):>22.0f}")
PY
  metrics=$("$python" -c "import json,sys; print(json.load(open(sys.argv[1]))['metrics'])" "$data/listeners.json")
  "$python" -c "import sys, urllib.request; print(''.join(l for l in urllib.request.urlopen('http://' + sys.argv[1] + '/metrics').read().decode().splitlines(True) if l.startswith('gateway_cache_')), end='')" "$metrics" >&2
  kill "$gw"; wait "$gw" 2>/dev/null || true; gw=""
}

echo
echo "Re-sent head CT, $INSTANCES slices of 512x512, release build, tract, medians over $ROUNDS rounds"
printf '%-8s%-22s%4s%12s%22s\n' cache result n "job ms" "ready → result ms"
run_gateway memory '[cache]
kind = "memory"'
if command -v redis-server >/dev/null; then
  rport=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  redis-server --port "$rport" --save '' --appendonly no --daemonize no >/dev/null 2>&1 &
  redis_pid=$!
  sleep 0.5
  run_gateway redis "[cache]
kind = \"redis\"
[cache.redis]
url = \"redis://127.0.0.1:$rport\""
fi
