#!/usr/bin/env bash
# download-range-ignored.sh: how many requests, and how many bytes, one file costs against a
# server that answers every `Range` request with `200` and the whole file.
#
# nginx on 127.0.0.1 with `max_ranges 0` (it then ignores `Range` and sends the whole file,
# as some mirrors and proxies do) serves FILES random files of SIZE MiB and logs every request.
# `modelctl apply --yes` downloads them into an empty store (a models.yaml with a `url` source
# and the sha256 of each), RUNS times; each run reports the GETs per file and the body bytes
# sent per byte needed, and checks the stored blobs. The same is then done once against nginx
# honouring `Range`, for comparison (there a file costs one request per 4 MiB chunk).
#
# Target: 1 request per file against the Range-ignoring server (at most 2), bytes sent / bytes
# needed 1.00.
#
# Usage: bench/download-range-ignored.sh [-b BINARY] [-s SIZE_MIB] [-f FILES] [-n RUNS]
#   -b  the modelctl binary (default: target/release/modelctl)
#   -s  file size in MiB (default 64: above the 16 MiB threshold, so 16 chunks of 4 MiB)
#   -f  files (default 4)
#   -n  runs (default 3)
# Example: bash bench/download-range-ignored.sh -b target/release/modelctl
# Needs nginx (installed with apt-get when missing). Scratch data lives under /tmp and is
# removed on exit.
set -euo pipefail
# What is measured is the download: no machine cache to link an earlier run's bytes from.
export MODELCTL_NO_CACHE=1
bin=target/release/modelctl size=64 files=4 runs=3
while getopts b:s:f:n: o; do
  case $o in
    b) bin=$OPTARG ;; s) size=$OPTARG ;; f) files=$OPTARG ;; n) runs=$OPTARG ;; *) exit 2 ;;
  esac
done
bin=$(realpath "$bin")
[[ -x $bin ]] || { echo "no modelctl binary at $bin" >&2; exit 1; }
if ! command -v nginx >/dev/null; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
fi

work=$(mktemp -d /tmp/modelctl-range.XXXXXX)
cleanup() {
  [[ -s $work/nginx.pid ]] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
chmod 755 "$work"
mkdir -p "$work/www" "$work/project"
bytes=$((size * 1024 * 1024))
port=$((20000 + RANDOM % 20000))
log=$work/access.log

# serve MAX_RANGES: (re)starts nginx; `max_ranges 0` ignores Range, an empty value honours it.
serve() {
  [[ -s $work/nginx.pid ]] && { kill "$(cat "$work/nginx.pid")"; sleep 0.5; }
  cat >"$work/nginx.conf" <<CONF
worker_processes 2; pid $work/nginx.pid; error_log $work/error.log; daemon on;
events { worker_connections 512; }
http {
  log_format bytes '\$body_bytes_sent \$status \$request_method \$uri "\$http_range"';
  access_log $log bytes;
  sendfile on;
  ${1:+max_ranges $1;}
  server { listen 127.0.0.1:$port; root $work/www; }
}
CONF
  nginx -c "$work/nginx.conf"
  sleep 0.5
}

{
  echo "version: 1"
  echo "store: ./store"
  echo "models:"
  for ((f = 0; f < files; f++)); do
    head -c "$bytes" /dev/urandom >"$work/www/f$f.bin"
    printf '  f%d:\n    type: llm\n    source:\n      url: http://127.0.0.1:%d/f%d.bin\n      sha256: %s\n' \
      "$f" "$port" "$f" "$(sha256sum "$work/www/f$f.bin" | cut -d' ' -f1)"
  done
} >"$work/project/models.yaml"
cd "$work/project"

# run LABEL: one apply into an empty store; prints GETs per file and bytes sent / needed.
run() {
  rm -rf store models.lock
  "$bin" --color never lock >/dev/null 2>&1 || { echo "modelctl lock failed" >&2; exit 1; }
  : >"$log"
  "$bin" --color never apply --yes >"$work/apply.log" 2>&1 || { cat "$work/apply.log" >&2; exit 1; }
  sleep 0.3
  for ((f = 0; f < files; f++)); do
    want=$(sed -n "/\/f$f\.bin$/{n;p}" models.yaml | awk '{print $2}')
    [[ $(sha256sum "store/blobs/sha256/${want:0:2}/$want" | cut -d' ' -f1) == "$want" ]] ||
      { echo "no verified blob for f$f" >&2; exit 1; }
  done
  awk -v files="$files" -v need="$((files * bytes))" -v label="$1" '
    $3 == "GET" { gets++; per[$4]++; sent += $1; if ($2 == 200) whole++ }
    END {
      max = 0; for (f in per) if (per[f] > max) max = per[f]
      printf "  %s: %d GETs for %d files (%.2f per file, at most %d; %d answered 200), %.0f bytes sent for %.0f needed (%.4f)\n",
        label, gets, files, gets / files, max, whole, sent, need, sent / need
    }' "$log"
}

echo "== $(uptime)"
echo "== $bin apply --yes: $files files of $size MiB from nginx on loopback"
serve 0
for ((i = 1; i <= runs; i++)); do run "Range ignored (max_ranges 0), run $i"; done
serve ""
run "Range honoured"
echo "== $(uptime)"
