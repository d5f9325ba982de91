#!/usr/bin/env bash
# C-STORE ingest benchmark: INSTANCES CT slices (512x512, 16-bit; default 500)
# with 1 and 4 associations, sent by dicom-loadtest to
#   - the gateway (fsync + index, group commit), and
#   - dcmtk's storescp (writes files, no fsync) as the reference,
# on the same generated data, in the same run. Prints one table.
#
# Usage: loadtest/bench-ingest.sh            (INSTANCES=500 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
INSTANCES=${INSTANCES:-500}
export TCP_NODELAY=1
command -v /usr/bin/storescp >/dev/null || { echo "needs dcmtk (apt-get install dcmtk)"; exit 1; }

cargo build --release --locked -p dicom-gateway -p dicom-loadtest >&2
bin=target/release
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run_load() { # addr called_ae associations → JSON line
  "$bin/dicom-loadtest" store --addr "$1" --calling-ae DEMO-SCU --called-ae "$2" \
    --modality ct --instances "$INSTANCES" --associations "$3" --seed 7 --transfer-syntax explicit --json
}

results="$work/results.jsonl"
for assoc in 1 4; do
  # Gateway: a fresh data directory per run so every instance is new.
  data="$work/gw-$assoc"
  "$bin/dicom-gateway" serve --data-dir "$data" --dimse-addr 127.0.0.1:0 --metrics-addr 127.0.0.1:0 \
    2>"$work/gw-$assoc.log" &
  gw=$!; pids+=("$gw")
  for _ in $(seq 100); do [ -f "$data/listeners.json" ] && break; sleep 0.1; done
  addr=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['dimse'])" "$data/listeners.json")
  json=$(run_load "$addr" GATEWAY "$assoc")
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$gw/status")
  echo "{\"target\": \"gateway\", \"associations\": $assoc, \"peak_rss_kib\": $rss, \"result\": $json}" >> "$results"
  kill -TERM "$gw"; wait "$gw" || true

  # dcmtk storescp, the reference. --fork serves parallel associations.
  port=$(free_port)
  mkdir -p "$work/scp-$assoc"
  fork=(); [ "$assoc" -gt 1 ] && fork=(--fork)
  /usr/bin/storescp "${fork[@]}" -aet ANY-SCP -od "$work/scp-$assoc" "$port" 2>"$work/scp-$assoc.log" &
  scp=$!; pids+=("$scp")
  sleep 0.5
  json=$(run_load "127.0.0.1:$port" ANY-SCP "$assoc")
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$scp/status")
  echo "{\"target\": \"dcmtk storescp\", \"associations\": $assoc, \"peak_rss_kib\": $rss, \"result\": $json}" >> "$results"
  kill "$scp"; wait "$scp" 2>/dev/null || true
done

python3 - "$results" "$INSTANCES" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"\nC-STORE of {sys.argv[2]} CT slices (512x512x16), loopback, this machine\n")
print(f"{'target':<16}{'assoc':>6}{'inst/s':>9}{'MB/s':>8}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}{'fail':>6}{'peak RSS MiB':>14}")
for r in rows:
    res = r["result"]; lat = res["latency_ms"]
    fails = res["failures"] if isinstance(res["failures"], int) else sum(res["failures"].values()) if isinstance(res["failures"], dict) else len(res["failures"])
    print(f"{r['target']:<16}{r['associations']:>6}{res['instances_per_second']:>9.0f}{res['megabytes_per_second']:>8.1f}"
          f"{lat['p50']:>8.1f}{lat['p95']:>8.1f}{lat['p99']:>8.1f}{fails:>6}{r['peak_rss_kib']/1024:>14.1f}")
print("\n(gateway RSS is the process's peak; storescp --fork RSS is the parent's only)")
PY
