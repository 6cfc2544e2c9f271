#!/usr/bin/env bash
# download-resume.sh: how many bytes a download killed half-way costs in total once resumed.
#
# nginx on 127.0.0.1 serves one random file (default 1 GiB) and logs `$body_bytes_sent` of every
# request. Each run:
#   1. `modelctl apply --yes` starts with a per-connection rate limit (nginx `limit_rate`, on while
#      a flag file exists; the URL does not change), so the download takes ~10 s;
#   2. the script polls the resume state `<store>/.modelctl/tmp/*.part.json` (its `done` list of
#      completed chunk indices) and sends `kill -9` once the completed chunks cover half the file;
#   3. once nginx has logged the aborted requests, the limit is lifted and `modelctl apply --yes`
#      runs again to completion (the stored blob is checked against the file's sha256);
#   4. the body bytes nginx sent over both runs are summed from the access log.
# Reported per run: the done chunks at the kill, bytes sent in the first run (and how many of
# them were in chunks not recorded as done, i.e. thrown away), bytes sent in the second run, and
# total / file size. The median over RUNS runs is the result; the worst run is shown too.
#
# Target: total bytes sent over both runs <= 1.05 x file size.
#
# Usage: bench/download-resume.sh -b BINARY [-s SIZE_MIB] [-r RATE] [-n RUNS] [-c CONNECTIONS] [-f FRACTION]
#                                  [-k SENDFILE_MAX_CHUNK] [-d DELAY]
#   -b  the modelctl binary (default: target/release/modelctl)
#   -s  file size in MiB (default 1024)
#   -r  nginx limit_rate for the first run (default 2400k: with 16 connections and 4 MiB
#       chunks, ~10 s for 1 GiB; nginx lets every request send one second's worth at once,
#       so a 4 MiB request goes faster than the rate says)
#   -n  runs (default 3)
#   -c  --connections for both applies (default: modelctl's own default)
#   -f  kill once this fraction of the file is in done chunks (default 0.5)
#   -k  nginx sendfile_max_chunk (default: nginx's, 2m). Under limit_rate nginx sends in steps of
#       this size, so with 2m every in-flight 4 MiB request has sent 0, 2 or 4 MiB: the
#       connections move in lockstep and the kill always lands at the same phase. A small value
#       (64k) makes the rate smooth, closer to a CDN's.
#   -d  after the threshold, wait a random time in [0, DELAY] s before the kill (default 0), to
#       sample the phase of the in-flight chunks
# Example: bash bench/download-resume.sh -b /tmp/mc-dl-target/release/modelctl
# Needs nginx, bc and ss (installed with apt-get when missing). Scratch data (SIZE MiB, twice)
# lives under /tmp and is removed on exit.
set -euo pipefail
# What is measured is the download: no machine cache to link an earlier run's bytes from.
export MODELCTL_NO_CACHE=1
bin=target/release/modelctl size=1024 rate=2400k runs=3 conns="" fraction=0.5 maxchunk="" delay=0
while getopts b:s:r:n:c:f:k:d: o; do
  case $o in
    b) bin=$OPTARG ;; s) size=$OPTARG ;; r) rate=$OPTARG ;; n) runs=$OPTARG ;;
    c) conns=$OPTARG ;; f) fraction=$OPTARG ;; k) maxchunk=$OPTARG ;; d) delay=$OPTARG ;;
    *) exit 2 ;;
  esac
done
bin=$(realpath "$bin")
[[ -x $bin ]] || { echo "no modelctl binary at $bin" >&2; exit 1; }

need=()
command -v nginx >/dev/null || need+=(nginx)
command -v bc >/dev/null || need+=(bc)
command -v ss >/dev/null || need+=(iproute2)
if ((${#need[@]})); then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

work=$(mktemp -d /tmp/modelctl-resume.XXXXXX)
apply_pid=""
cleanup() {
  [[ -n $apply_pid ]] && kill -9 "$apply_pid" 2>/dev/null || true
  [[ -s $work/nginx.pid ]] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
chmod 755 "$work"
mkdir -p "$work/www" "$work/project"
bytes=$((size * 1024 * 1024))
head -c "$bytes" /dev/urandom >"$work/www/model.bin"
sum=$(sha256sum "$work/www/model.bin" | cut -d' ' -f1)
port=$((20000 + RANDOM % 20000))
log=$work/access.log
cat >"$work/nginx.conf" <<CONF
worker_processes 2; pid $work/nginx.pid; error_log $work/error.log; daemon on;
events { worker_connections 512; }
http {
  log_format bytes '\$body_bytes_sent \$status \$request_method "\$http_range" \$request_time';
  access_log $log bytes;
  sendfile on;
  ${maxchunk:+sendfile_max_chunk $maxchunk;}
  server {
    listen 127.0.0.1:$port;
    root $work/www;
    set \$rl 0;
    if (-f $work/slow) { set \$rl $rate; }
    limit_rate \$rl;
  }
}
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
chunk=$((4 << 20)) # the engine's chunk size; read back from the state file below
sent_bytes() { awk -v from="$1" -v to="$2" 'NR > from && NR <= to { s += $1 } END { print s + 0 }' "$log"; }
lines() { wc -l <"$log"; }
done_chunks() { # number of indices in the state file's "done" list
  local f
  f=$(ls "$work"/project/store/.modelctl/tmp/*.part.json 2>/dev/null | head -1) || true
  [[ -n $f ]] || { echo 0; return; }
  tr -d ' \n' <"$f" | sed -n 's/.*"done":\[\([^]]*\)\].*/\1/p' | tr ',' '\n' | grep -c . || true
}
connections_open() { ss -Htn state established "( sport = :$port )" 2>/dev/null | wc -l; }

echo "== $(uptime)"
echo "== $bin ${args[*]}: ${size} MiB, first run limited to $rate per connection (sendfile_max_chunk ${maxchunk:-2m}), kill at $fraction (+ up to $delay s), $runs runs"
cd "$work/project"
ratios=()
for ((i = 1; i <= runs; i++)); do
  rm -rf store models.lock
  touch "$log"
  l0=$(lines)
  touch "$work/slow"
  t0=$(date +%s.%N)
  "$bin" "${args[@]}" >"$work/run1.log" 2>&1 &
  apply_pid=$!
  want=$(echo "$bytes * $fraction" | bc)
  while kill -0 "$apply_pid" 2>/dev/null; do
    f=$(ls store/.modelctl/tmp/*.part.json 2>/dev/null | head -1) || true
    if [[ -n $f ]]; then
      chunk=$(tr -d ' \n' <"$f" | sed -n 's/.*"chunk_size":\([0-9]*\).*/\1/p')
      chunk=${chunk:-$((4 << 20))}
      n=$(done_chunks)
      (($(echo "$n * $chunk >= $want" | bc))) && break
    fi
    sleep 0.02
  done
  if [[ $delay != 0 ]]; then sleep "$(echo "scale=3; $delay * $RANDOM / 32767" | bc)"; fi
  kill -0 "$apply_pid" 2>/dev/null || { cat "$work/run1.log" >&2; echo "the first apply ended before it could be killed; lower -r" >&2; exit 1; }
  kill -9 "$apply_pid"
  wait "$apply_pid" 2>/dev/null || true
  apply_pid=""
  t1=$(date +%s.%N)
  killed_done=$(done_chunks)
  # nginx logs an aborted request when it next tries to send: wait for its connections to close
  for ((w = 0; w < 100; w++)); do
    (($(connections_open) == 0)) && break
    sleep 0.1
  done
  sleep 0.3
  l1=$(lines)
  rm -f "$work/slow"
  t2=$(date +%s.%N)
  "$bin" "${args[@]}" >"$work/run2.log" 2>&1 || { cat "$work/run2.log" >&2; echo "the resumed apply failed" >&2; exit 1; }
  t3=$(date +%s.%N)
  sleep 0.3
  l2=$(lines)
  found=$(find store/blobs -type f -size +$((size - 1))M -print -quit)
  [[ -n $found && $(sha256sum "$found" | cut -d' ' -f1) == "$sum" ]] ||
    { echo "modelctl did not store a verified copy" >&2; exit 1; }
  s1=$(sent_bytes "$l0" "$l1")
  s2=$(sent_bytes "$l1" "$l2")
  total=$((s1 + s2))
  kept=$((killed_done * chunk))
  ratio=$(echo "scale=4; $total / $bytes" | bc)
  ratios+=("$ratio")
  printf '  run %d: killed after %.1f s with %d/%d chunks done (%.1f%%)\n' "$i" "$(echo "$t1 - $t0" | bc)" \
    "$killed_done" $(((bytes + chunk - 1) / chunk)) "$(echo "100 * $kept / $bytes" | bc -l)"
  printf '         first run:  %11d bytes sent in %d requests, %d of them (%.1f MiB) outside done chunks\n' \
    "$s1" $((l1 - l0)) $((s1 - kept)) "$(echo "($s1 - $kept) / 1048576" | bc -l)"
  printf '         second run: %11d bytes sent in %d requests (%.2f s); file %d bytes, %d not in done chunks\n' \
    "$s2" $((l2 - l1)) "$(echo "$t3 - $t2" | bc)" "$bytes" $((bytes - kept))
  printf '         total:      %11d bytes = %.4f x file size\n' "$total" "$ratio"
done
echo "== $(uptime)"
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
worst=$(printf '%s\n' "${ratios[@]}" | sort -n | tail -1)
verdict() { (($(echo "$1 <= 1.05" | bc))) && echo met || echo MISSED; }
printf 'total sent / file size: median %.4f (target <= 1.05: %s), worst %.4f (%s); all: %s\n' \
  "$median" "$(verdict "$median")" "$worst" "$(verdict "$worst")" "${ratios[*]}"
