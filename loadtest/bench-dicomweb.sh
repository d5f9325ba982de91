#!/usr/bin/env bash
# DICOMweb benchmark of one gateway over HTTPS on loopback, all driven by
# dicom-loadtest:
#   1. STOW-RS: STOW_INSTANCES CT slices (512x512, 16-bit; default 500),
#      PER_REQUEST per request (default 10), with 1 and 4 clients, over
#      HTTP/2 (ALPN) and HTTP/1.1;
#   2. populate: POPULATE_STUDIES x POPULATE_SERIES x POPULATE_INSTANCES small
#      (64x64) CT/MR images over C-STORE with 4 associations (default
#      100 x 4 x 25 = 10,000), one synthetic patient per study;
#   3. QIDO-RS: QIDO_QUERIES searches (default 500) of the realistic mix
#      (patient ID, date range, name wildcard, modality, series of a study,
#      instances of a series) with 1 and 4 clients, over everything stored,
#      over HTTP/2 and HTTP/1.1;
#   4. WADO-RS: the four 512x512 CT series stored in step 1, retrieved
#      whole, one at a time and then four at once, over HTTP/2 and HTTP/1.1.
# Prints one table. Traffic stays on 127.0.0.1/localhost; every step has a
# time limit (STEP_TIMEOUT seconds, default 600).
#
# Usage: loadtest/bench-dicomweb.sh        (KEEP=1 keeps the temp directory)
set -euo pipefail
cd "$(dirname "$0")/.."
STOW_INSTANCES=${STOW_INSTANCES:-500}
PER_REQUEST=${PER_REQUEST:-10}
POPULATE_STUDIES=${POPULATE_STUDIES:-100}
POPULATE_SERIES=${POPULATE_SERIES:-4}
POPULATE_INSTANCES=${POPULATE_INSTANCES:-25}
QIDO_QUERIES=${QIDO_QUERIES:-500}
STEP_TIMEOUT=${STEP_TIMEOUT:-600}

cargo build --release -p dicom-gateway -p dicom-loadtest >&2
bin=$(pwd)/target/release
work=$(mktemp -d)
gw=""
cleanup() {
  if [ -n "$gw" ]; then kill -TERM "$gw" 2>/dev/null || true; wait "$gw" 2>/dev/null || true; fi
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

# The gateway writes its development CA to ./certs of its working directory.
data="$work/data"
(cd "$work" && exec "$bin/dicom-gateway" serve --data-dir "$data" --dimse-addr 127.0.0.1:0 \
  --http-addr 127.0.0.1:0 --metrics-addr 127.0.0.1:0) 2>"$work/gateway.log" &
gw=$!
for _ in $(seq 300); do
  [ -f "$data/listeners.json" ] && break
  kill -0 "$gw" 2>/dev/null || { cat "$work/gateway.log" >&2; echo "gateway exited" >&2; exit 1; }
  sleep 0.1
done
[ -f "$data/listeners.json" ] || { echo "gateway did not start in 30 s" >&2; exit 1; }
listener() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$data/listeners.json" "$1"; }
dimse=$(listener dimse)
http_port=$(listener http); http_port=${http_port##*:}
url="https://localhost:$http_port/dicomweb"
ca="$work/certs/ca.pem"
DICOM_LOADTEST_TOKEN=$("$bin/dicom-gateway" tokens create --data-dir "$data" --site demo --scope read,write \
  --label bench-dicomweb 2>/dev/null)
export DICOM_LOADTEST_TOKEN
web=(--url "$url" --ca "$ca" --json)
results="$work/results.jsonl"
record() { # service label json
  echo "{\"service\": \"$1\", \"label\": \"$2\", \"result\": $3}" >> "$results"
}
# A step that fails still prints its JSON (failures are in the report);
# a step that prints nothing (crash, time limit) is recorded as null.
step() { timeout "$STEP_TIMEOUT" "$bin/dicom-loadtest" "$@" || true; }

# 1. STOW-RS. A distinct seed and patient per run: every instance is new.
echo "STOW-RS ..." >&2
seed=100
for http in auto 1.1; do
  for clients in 1 4; do
    seed=$((seed + 1))
    json=$(step stow "${web[@]}" --http "$http" --modality ct --instances "$STOW_INSTANCES" \
      --per-request "$PER_REQUEST" --clients "$clients" --seed "$seed" \
      --patient-id "STOW-$seed" --patient-name "STOWBENCH^CT")
    record stow "$clients" "${json:-null}"
  done
done

# 2. Populate over C-STORE: small images, many patients, studies and series.
echo "populating over C-STORE ..." >&2
json=$(step store --addr "$dimse" --calling-ae DEMO-SCU --called-ae GATEWAY --associations 4 \
  --modality ct,mr --studies "$POPULATE_STUDIES" --series "$POPULATE_SERIES" \
  --instances "$POPULATE_INSTANCES" --rows 64 --columns 64 --seed 1000 --transfer-syntax explicit --json)
record populate "store" "${json:-null}"

# 3. QIDO-RS over everything stored so far.
echo "QIDO-RS ..." >&2
for http in auto 1.1; do
  for clients in 1 4; do
    json=$(step qido "${web[@]}" --http "$http" --queries "$QIDO_QUERIES" --concurrency "$clients" --seed 1)
    record qido "$clients" "${json:-null}"
  done
done

# 4. WADO-RS of the 512x512 CT series from step 1.
echo "WADO-RS ..." >&2
for http in auto 1.1; do
  for clients in 1 4; do
    json=$(step wado "${web[@]}" --http "$http" --filter "PatientName=STOWBENCH^CT" --modality CT \
      --series-count 4 --concurrency "$clients")
    record wado "$clients" "${json:-null}"
  done
done
rss=$(awk '/VmHWM/ {print $2}' "/proc/$gw/status")

python3 - "$results" "$STOW_INSTANCES" "$PER_REQUEST" "$rss" "$(nproc)" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
stow_n, per_request, rss, cpus = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
def of(service): return [r for r in rows if r["service"] == service]
def failed(label, r):
    if r["result"] is None:
        print(f"{label:<10} no result (crashed or timed out; see the log above)")
        return True
    return False

print(f"\nDICOMweb over HTTPS, loopback, {cpus} CPUs; gateway peak RSS {rss/1024:.0f} MiB\n")
print(f"STOW-RS: {stow_n} CT slices 512x512x16, {per_request} per request")
print(f"{'clients':<10}{'http':<10}{'inst/s':>8}{'MB/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'stored':>8}{'fail':>6}")
stored_by_stow = 0
for r in of("stow"):
    if failed(r["label"], r): continue
    s = r["result"]; l = s["latency_ms"]; stored_by_stow += s["stored"]
    print(f"{r['label']:<10}{s['http_version']:<10}{s['instances_per_second']:>8.0f}{s['megabytes_per_second']:>8.1f}"
          f"{l['p50']:>9.1f}{l['p95']:>9.1f}{l['p99']:>9.1f}{s['stored']:>8}{s['failures']:>6}")

populated = 0
for r in of("populate"):
    if failed("populate", r): continue
    s = r["result"]; populated = s["stored"]
    print(f"\npopulate: C-STORE of {s['stored']}/{s['instances']} instances (64x64) over {s['associations']} "
          f"associations at {s['instances_per_second']:.0f} inst/s, {s['failures']} failures")

total = populated + stored_by_stow
print(f"\nQIDO-RS: searches over {total} instances "
      f"({populated} small + {stored_by_stow} CT 512x512)")
print("(per kind for 1 client; `all` for every run)")
print(f"{'clients':<10}{'kind':<24}{'queries':>8}{'q/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'results':>9}{'fail':>6}")
for r in of("qido"):
    if failed(r["label"], r): continue
    s = r["result"]
    for kind, k in (s["by_kind"].items() if r["label"] == "1" else []):
        l = k["latency_ms"]
        print(f"{r['label']:<10}{kind:<24}{k['queries']:>8}{'':>8}{l['p50']:>9.1f}{l['p95']:>9.1f}{l['p99']:>9.1f}"
              f"{k['mean_results']:>9.1f}{k['failures']:>6}")
    l = s["latency_ms"]
    print(f"{r['label']:<10}{'all (' + s['http_version'] + ')':<24}{s['queries']:>8}{s['queries_per_second']:>8.0f}"
          f"{l['p50']:>9.1f}{l['p95']:>9.1f}{l['p99']:>9.1f}{'':>9}{s['failures']:>6}")

print(f"\nWADO-RS: whole series of {stow_n} CT slices 512x512x16, multipart/related")
print(f"{'clients':<10}{'http':<10}{'series':>7}{'inst':>7}{'MB/s':>8}{'inst/s':>8}{'p50 ms':>9}{'max ms':>9}{'bad parts':>10}{'fail':>6}")
for r in of("wado"):
    if failed(r["label"], r): continue
    s = r["result"]; l = s["latency_ms"]
    print(f"{r['label']:<10}{s['http_version']:<10}{s['retrieved']:>7}{s['instances']:>7}{s['megabytes_per_second']:>8.0f}"
          f"{s['instances_per_second']:>8.0f}{l['p50']:>9.1f}{l['max']:>9.1f}"
          f"{s['non_dicom_parts'] + s['count_mismatches']:>10}{s['failures']:>6}")
PY
