#!/usr/bin/env bash
# download-memory.sh: peak memory of `modelctl apply` while it downloads one large file.
#
# nginx on 127.0.0.1 serves one random file (default 1 GiB); a models.yaml has an `url` source
# with the file's sha256; `modelctl apply --yes` downloads it into an empty store under
# `/usr/bin/time -v`, and the "Maximum resident set size" is reported (median and maximum of
# RUNS runs, with the wall time and the CPU time of each run). The file's pages in the page cache
# are not part of the process's RSS: what is measured is modelctl's own memory (HTTP buffers,
# the hasher's read buffer, the runtime).
#
# Target: maximum resident set size <= 64 MB (64,000,000 bytes) for a 1 GiB file.
#
# Usage: bench/download-memory.sh -b BINARY [-s SIZE_MIB] [-n RUNS] [-c CONNECTIONS] [-r RATE]
#   -b  the modelctl binary (default: target/release/modelctl)
#   -s  file size in MiB (default 1024)
#   -n  runs (default 3)
#   -c  --connections for apply (default: modelctl's own default)
#   -r  nginx per-connection rate limit, e.g. 20m (default: none)
# Example: bash bench/download-memory.sh -b /tmp/mc-dl-target/release/modelctl
# Needs nginx, GNU time and bc (installed with apt-get when missing). Scratch data (SIZE MiB, twice)
# lives under /tmp and is removed on exit.
set -euo pipefail
# What is measured is the download: no machine cache to link an earlier run's bytes from.
export MODELCTL_NO_CACHE=1
bin=target/release/modelctl size=1024 runs=3 conns="" rate=""
while getopts b:s:n:c:r: o; do
  case $o in
    b) bin=$OPTARG ;; s) size=$OPTARG ;; n) runs=$OPTARG ;; c) conns=$OPTARG ;; r) rate=$OPTARG ;;
    *) exit 2 ;;
  esac
done
bin=$(realpath "$bin")
[[ -x $bin ]] || { echo "no modelctl binary at $bin" >&2; exit 1; }
target_kb=$((64000000 / 1024)) # 64 MB, in the KiB that time -v reports

need=()
command -v nginx >/dev/null || need+=(nginx)
[[ -x /usr/bin/time ]] || need+=(time)
command -v bc >/dev/null || need+=(bc)
if ((${#need[@]})); then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

work=$(mktemp -d /tmp/modelctl-mem.XXXXXX)
cleanup() {
  [[ -s $work/nginx.pid ]] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
chmod 755 "$work"
mkdir -p "$work/www" "$work/project"
head -c $((size * 1024 * 1024)) /dev/urandom >"$work/www/model.bin"
sum=$(sha256sum "$work/www/model.bin" | cut -d' ' -f1)
port=$((20000 + RANDOM % 20000))
cat >"$work/nginx.conf" <<CONF
worker_processes 2; pid $work/nginx.pid; error_log $work/error.log; daemon on;
events { worker_connections 512; }
http { access_log off; sendfile on; server { listen 127.0.0.1:$port; root $work/www; ${rate:+limit_rate $rate;} } }
CONF
nginx -c "$work/nginx.conf"
sleep 0.5
cat >"$work/project/models.yaml" <<YAML
version: 1
store: ./store
models:
  bench-model:
    type: llm
    source:
      url: http://127.0.0.1:$port/model.bin
      sha256: $sum
YAML

args=(apply --yes)
[[ -n $conns ]] && args+=(--connections "$conns")
echo "== $(uptime)"
echo "== $bin ${args[*]}: ${size} MiB, rate limit ${rate:-none}, $runs runs"
cd "$work/project"
rss=()
for ((i = 1; i <= runs; i++)); do
  rm -rf store models.lock
  /usr/bin/time -v -o "$work/time.txt" "$bin" "${args[@]}" >/dev/null 2>"$work/err.txt" ||
    { cat "$work/err.txt" >&2; echo "modelctl apply failed" >&2; exit 1; }
  kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
  wall=$(awk -F'): ' '/Elapsed \(wall clock\)/ {print $2}' "$work/time.txt")
  user=$(awk -F': ' '/User time/ {print $2}' "$work/time.txt")
  sys=$(awk -F': ' '/System time/ {print $2}' "$work/time.txt")
  found=$(find store/blobs -type f -size +$((size - 1))M -print -quit)
  [[ -n $found && $(sha256sum "$found" | cut -d' ' -f1) == "$sum" ]] ||
    { echo "modelctl did not store a verified copy" >&2; exit 1; }
  printf '  run %d: max RSS %6d KiB (%.1f MB), wall %s, user %s s, sys %s s\n' \
    "$i" "$kb" "$(echo "$kb * 1024 / 1000000" | bc -l)" "$wall" "$user" "$sys"
  rss+=("$kb")
done
echo "== $(uptime)"
median=$(printf '%s\n' "${rss[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
max=$(printf '%s\n' "${rss[@]}" | sort -n | tail -1)
printf 'max RSS: median %d KiB (%.1f MB), highest %d KiB (%.1f MB); target <= 64 MB: %s\n' \
  "$median" "$(echo "$median * 1024 / 1000000" | bc -l)" "$max" "$(echo "$max * 1024 / 1000000" | bc -l)" \
  "$( ((max <= target_kb)) && echo met || echo MISSED)"
