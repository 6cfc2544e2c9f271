#!/usr/bin/env bash
# download-connections.sh: `modelctl apply` download time against the number of connections
# (`--connections N`), with curl and aria2c as references measured in the same run.
#
# The logic is that of the download benchmark, bench/download.sh (nginx on
# 127.0.0.1 serving one random file, a models.yaml with a `url` source and the file's sha256,
# `modelctl apply --yes` into an empty store, page cache dropped before every run, median of
# RUNS), parameterised by a list of connection counts. Differences: the runs are interleaved
# (run 1 of every configuration, then run 2, ...) so that a change in the machine's load hits
# every configuration alike, and every run's time is printed. With -x it also times a baseline
# doing the same work as modelctl with standard tools: `curl | tee FILE | openssl dgst -sha256`
# (openssl uses the SHA instructions, as modelctl does; coreutils sha256sum may not), then
# `sync FILE`: download + sha256 + durable write, which curl -o alone does not do.
#
# Targets (docs/performance.md, as for bench/download.sh):
#   no rate limit (-r none):    modelctl / curl        <= 1.10
#   -s 256 -r 20m:              modelctl / aria2c -x16 <= 1.00
# The output says which --connections value is fastest, to choose the default for each case.
#
# Usage: bench/download-connections.sh -b BINARY [-s SIZE_MIB] [-r RATE] [-n RUNS] [-c LIST] [-x]
#   -b  the modelctl binary (default: target/release/modelctl)
#   -s  file size in MiB (default 1024)
#   -r  nginx per-connection rate limit, e.g. 20m (default: none)
#   -n  runs per configuration (default 3); the median is reported
#   -c  comma-separated --connections values (default 4,8,16)
#   -x  also time the curl | tee | openssl dgst -sha256 + sync baseline
# Examples:
#   bash bench/download-connections.sh -b /tmp/mc-dl-target/release/modelctl
#   bash bench/download-connections.sh -b /tmp/mc-dl-target/release/modelctl -s 256 -r 20m -c 4,8,16,32
# Needs nginx, curl, aria2c, bc (installed with apt-get when missing) and root to drop the page
# cache (skipped otherwise). Scratch data (SIZE MiB, twice) lives under /tmp and is removed on exit.
set -euo pipefail
# What is measured is the download: no machine cache to link an earlier run's bytes from.
export MODELCTL_NO_CACHE=1
bin=target/release/modelctl size=1024 rate="" runs=3 conns=4,8,16 extra=0
while getopts b:s:r:n:c:x o; do
  case $o in
    b) bin=$OPTARG ;; s) size=$OPTARG ;; r) rate=$OPTARG ;; n) runs=$OPTARG ;;
    c) conns=$OPTARG ;; x) extra=1 ;; *) exit 2 ;;
  esac
done
[[ $rate == none ]] && rate=""
bin=$(realpath "$bin")
[[ -x $bin ]] || { echo "no modelctl binary at $bin" >&2; exit 1; }

need=()
for t in nginx curl aria2c bc openssl; do command -v $t >/dev/null || need+=("$t"); done
if ((${#need[@]})); then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx curl aria2 bc openssl >/dev/null
fi

work=$(mktemp -d /tmp/modelctl-conns.XXXXXX)
cleanup() {
  [[ -s $work/nginx.pid ]] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
chmod 755 "$work"
mkdir -p "$work/www" "$work/dl" "$work/project"
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
url=http://127.0.0.1:$port/model.bin
cat >"$work/project/models.yaml" <<YAML
version: 1
store: ./store
models:
  bench-model:
    type: llm
    source:
      url: $url
      sha256: $sum
YAML

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
timeit() {
  local s e
  s=$(date +%s.%N)
  "$@" >/dev/null 2>&1 || { echo "FAILED: $*" >&2; return 1; }
  e=$(date +%s.%N)
  echo "$e - $s" | bc
}
fresh() {
  rm -rf "$work/dl"/* "$work/project/store" "$work/project/models.lock"
  sync
  echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
}
verified_curl() {
  local got
  got=$(curl -sf "$url" | tee "$work/dl/c.bin" | openssl dgst -sha256 -r | cut -d' ' -f1)
  sync "$work/dl/c.bin"
  [[ $got == "$sum" ]]
}

tools=(curl aria2c)
((extra)) && tools+=(curl+sha256+sync)
IFS=, read -r -a clist <<<"$conns"
for c in "${clist[@]}"; do tools+=("modelctl-c$c"); done

echo "== $(uptime)"
echo "== ${size} MiB, rate limit ${rate:-none}, $runs runs per configuration, interleaved"
declare -A vals
for ((i = 0; i < runs; i++)); do
  for tool in "${tools[@]}"; do
    fresh
    case $tool in
      curl) v=$(timeit curl -sf -o "$work/dl/a.bin" "$url") ;;
      aria2c) v=$(timeit aria2c -q -x16 -s16 -k1M --file-allocation=none --allow-overwrite=true -d "$work/dl" -o b.bin "$url") ;;
      curl+sha256+sync) v=$(timeit verified_curl) ;;
      modelctl-c*) v=$(cd "$work/project" && timeit "$bin" apply --yes --connections "${tool#modelctl-c}") ;;
    esac
    vals[$tool]+="$v "
    printf '  run %d  %-17s %8.3f s\n' $((i + 1)) "$tool" "$v"
    if [[ $tool == modelctl-c* ]]; then
      found=$(find "$work/project/store/blobs" -type f -size +$((size - 1))M -print -quit)
      [[ -n $found && $(sha256sum "$found" | cut -d' ' -f1) == "$sum" ]] ||
        { echo "modelctl did not store a verified copy" >&2; exit 1; }
    fi
  done
done
echo "== $(uptime)"

declare -A t
for tool in "${tools[@]}"; do
  t[$tool]=$(printf '%s\n' ${vals[$tool]} | median)
done
best=$(printf '%s\n' "${t[curl]}" "${t[aria2c]}" | sort -n | head -1)
printf '%-17s %8s  %12s  %14s  %16s\n' configuration median "/ curl" "/ aria2c -x16" "/ best of both"
for tool in "${tools[@]}"; do
  printf '%-17s %8.3f  %12.3f  %14.3f  %16.3f\n' "$tool" "${t[$tool]}" \
    "$(echo "scale=4; ${t[$tool]} / ${t[curl]}" | bc)" \
    "$(echo "scale=4; ${t[$tool]} / ${t[aria2c]}" | bc)" \
    "$(echo "scale=4; ${t[$tool]} / $best" | bc)"
done
fastest=""
for c in "${clist[@]}"; do
  v=${t[modelctl-c$c]}
  if [[ -z $fastest ]] || (($(echo "$v < ${t[modelctl-c$fastest]}" | bc))); then fastest=$c; fi
done
echo "fastest: --connections $fastest (${t[modelctl-c$fastest]} s)"
