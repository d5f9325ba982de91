#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian machine: installs what the
# tests talk to (dcmtk, redis-server) when missing, builds the workspace
# once, then runs every test. CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

need_packages=()
for tool in storescu echoscu findscu storescp dcmcjpeg dcmcrle dcmcjpls dcmdump; do
  [ -x "/usr/bin/$tool" ] || { need_packages+=(dcmtk); break; }
done
command -v redis-server >/dev/null 2>&1 || need_packages+=(redis-server)
if [ ${#need_packages[@]} -gt 0 ]; then
  echo "installing: ${need_packages[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get update -q
  $sudo_cmd apt-get install -y -q --no-install-recommends "${need_packages[@]}"
fi

# Python peers (DICOMweb client, the KServe v2 server for the triton engine)
# in a project-local virtual environment.
venv=.venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import dicomweb_client, pydicom, pynetdicom, onnx, numpy, onnxruntime, kserve; assert onnxruntime.__version__ == "1.31.1"; from importlib.metadata import version; assert version("kserve").startswith("0.21.")' 2>/dev/null; then
  python3 -m venv "$venv" 2>/dev/null || {
    echo "installing python3-venv"
    sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q --no-install-recommends python3-venv
    python3 -m venv "$venv"
  }
  "$venv/bin/pip" install -q --disable-pip-version-check -r tests/python/requirements.txt
fi
export GATEWAY_TEST_PYTHON="$PWD/$venv/bin/python"

# The onnxruntime engine loads ONNX Runtime at run time: the CPU wheel's
# shared library, found where the venv installed it.
ort_capi="$("$venv/bin/python" -c 'import os, onnxruntime; print(os.path.join(os.path.dirname(onnxruntime.__file__), "capi"))')"
ort_libs=("$ort_capi"/libonnxruntime.so.*)
if [ ! -f "${ort_libs[0]}" ]; then
  echo "no libonnxruntime.so.* in $ort_capi" >&2
  exit 1
fi
export ORT_DYLIB_PATH="${ort_libs[0]}"

# dcmtk keeps Nagle's algorithm on unless told otherwise (40 ms per round trip).
export TCP_NODELAY=1
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# The end-to-end tests drive the real binary: build everything first.
cargo build --workspace --all-targets --locked
cargo test --workspace --locked "$@"
