#!/usr/bin/env bash
# download.sh: the download benchmark. `modelctl apply` against curl and aria2c, fetching the
# same file from the same local server in the same run.
#
# Method: nginx on 127.0.0.1 serves one file of random bytes (incompressible, SIZE MiB); a
# models.yaml declares it as an `url` source with its sha256. Each tool then fetches it RUNS
# times, from scratch every time (store, lock and earlier copies removed, page cache dropped
# when root):
#   curl        curl -o FILE                      (no verification, nothing fsynced)
#   curl+sync   curl -o FILE, then sync           (durable, no verification)
#   aria2c      aria2c -x16 -s16 -k1M             (16 connections, no verification)
#   modelctl    modelctl apply --yes, then sync   (ranged connections, sha256 verified, fsynced)
# and the median time of each is reported, with two ratios: modelctl / the faster of curl and
# aria2c, and modelctl / curl+sync (the fair reference on a disk slow to flush, since modelctl
# makes its file durable and curl does not). The load average is printed before and after:
# the machine may be shared, and the ratio depends on a free core for the hashing.
# At the end the stored blob is checked against the file's sha256.
#
# Targets (docs/performance.md):
#   no rate limit:   modelctl / curl         <= 1.10
#   -s 256 -r 20m:   modelctl / aria2c -x16  <= 1.00
#
# Usage: bench/download.sh [-b BINARY] [-s SIZE_MIB] [-r RATE] [-n RUNS]
#   -b  the modelctl binary (default: target/release/modelctl)
#   -s  file size in MiB (default 1024)
#   -r  nginx's per-connection rate limit (`limit_rate`), e.g. 20m (default: none). A CDN caps
#       each connection; under a cap, several ranged connections are what makes a download fast
#   -n  runs per tool (default 3)
# Needs nginx, curl, aria2c and bc (installed with apt-get when missing, as root). Scratch data
# (SIZE MiB, twice) lives under $TMPDIR (default /tmp) and is removed on exit.
set -euo pipefail
# What is measured is the download: no machine cache to link an earlier run's bytes from.
export MODELCTL_NO_CACHE=1

binary=target/release/modelctl
size_mib=1024
rate=""
runs=3
while getopts b:s:r:n:h opt; do
  case $opt in
    b) binary=$OPTARG ;;
    s) size_mib=$OPTARG ;;
    r) rate=$OPTARG ;;
    n) runs=$OPTARG ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
  esac
done
[[ $rate == none ]] && rate=""
binary=$(realpath "$binary")
[[ -x $binary ]] || { echo "no modelctl binary at $binary (cargo build --release --locked)" >&2; exit 1; }

missing=()
for tool in nginx curl aria2c bc; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if ((${#missing[@]})); then
  echo "== installing ${missing[*]}" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx curl aria2 bc >/dev/null
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/modelctl-download.XXXXXX")
stop() {
  if [[ -s $scratch/nginx.pid ]]; then kill "$(cat "$scratch/nginx.pid")" 2>/dev/null || true; fi
  rm -rf "$scratch"
}
trap stop EXIT
trap 'exit 130' INT TERM
chmod 755 "$scratch" # nginx's workers must read the served file
mkdir -p "$scratch/www" "$scratch/out" "$scratch/project"

head -c $((size_mib * 1024 * 1024)) /dev/urandom >"$scratch/www/model.bin"
sha256=$(sha256sum "$scratch/www/model.bin" | cut -d' ' -f1)

port=$((20000 + RANDOM % 20000))
cat >"$scratch/nginx.conf" <<NGINX
daemon on;
worker_processes 2;
pid $scratch/nginx.pid;
error_log $scratch/nginx-error.log;
events { worker_connections 512; }
http {
  access_log off;
  sendfile on;
  server {
    listen 127.0.0.1:$port;
    root $scratch/www;
    ${rate:+limit_rate $rate;}
  }
}
NGINX
nginx -c "$scratch/nginx.conf"
sleep 0.5
url=http://127.0.0.1:$port/model.bin

cat >"$scratch/project/models.yaml" <<YAML
version: 1
store: ./store
models:
  bench-model:
    type: llm
    source:
      url: $url
      sha256: $sha256
YAML

# A fresh start for every run: no earlier copy, no store, no lock, a cold page cache if allowed.
fresh() {
  rm -rf "$scratch/out"/* "$scratch/project/store" "$scratch/project/models.lock"
  sync
  (echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null || true
}

# seconds COMMAND...: runs it quietly and prints its wall time in seconds; fails if it fails.
seconds() {
  local start end
  start=$(date +%s.%N)
  if ! "$@" >/dev/null 2>&1; then
    echo "failed: $*" >&2
    return 1
  fi
  end=$(date +%s.%N)
  echo "$end - $start" | bc
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

fetch() {
  case $1 in
    curl) seconds curl -sf -o "$scratch/out/curl.bin" "$url" ;;
    curl+sync) seconds sh -c 'curl -sf -o "$1" "$2" && sync' sh "$scratch/out/curl.bin" "$url" ;;
    aria2c) seconds aria2c -q -x16 -s16 -k1M --file-allocation=none --allow-overwrite=true \
      -d "$scratch/out" -o aria2c.bin "$url" ;;
    modelctl) (cd "$scratch/project" && seconds sh -c '"$1" apply --yes && sync' sh "$binary") ;;
  esac
}

echo "== $(uptime)"
echo "== $size_mib MiB, rate limit ${rate:-none}, $runs runs per tool, $("$binary" --version)"
declare -A median_of
for tool in curl curl+sync aria2c modelctl; do
  times=()
  for ((run = 0; run < runs; run++)); do
    fresh
    times+=("$(fetch "$tool")")
  done
  median_of[$tool]=$(printf '%s\n' "${times[@]}" | median)
  printf '%-10s %8.3f s  (median of %d: %s)\n' "$tool" "${median_of[$tool]}" "$runs" "${times[*]}"
done
echo "== $(uptime)"

stored=$(find "$scratch/project/store/blobs" -type f -size +$((size_mib - 1))M -print -quit)
if [[ -z $stored || $(sha256sum "$stored" | cut -d' ' -f1) != "$sha256" ]]; then
  echo "modelctl did not store a verified copy of the file" >&2
  exit 1
fi

best=$(printf '%s\n' "${median_of[curl]}" "${median_of[aria2c]}" | sort -n | head -1)
echo "ratio modelctl / best of curl and aria2c: $(echo "scale=3; ${median_of[modelctl]} / $best" | bc)"
echo "ratio modelctl / curl+sync:               $(echo "scale=3; ${median_of[modelctl]} / ${median_of[curl+sync]}" | bc)"
