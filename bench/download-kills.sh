#!/usr/bin/env bash
# download-kills.sh: bytes sent / bytes needed when an apply of several models is killed
# (`kill -9`) at random moments, again and again, and resumed each time.
#
# nginx on 127.0.0.1 serves the files and logs `$body_bytes_sent` of every request. The run is
# made of rounds; each round:
#   1. writes MODELS new random files (fresh content: nothing of an earlier round can be
#      reused) of SIZE MiB each and a models.yaml with a `url` source for each, with its sha256
#      (or, with -u, without: the lock then learns the sha256 from the download);
#   2. runs `modelctl apply --yes` and sends `kill -9` after a random time in [0, WINDOW] s,
#      up to KILLS_PER_ROUND times (an apply that ends before its kill ends the round early);
#   3. runs `modelctl apply --yes` once more to completion and checks every stored blob against
#      its file's sha256.
# Rounds go on until KILLS kills have landed. Bytes needed are the sizes of the files of all
# rounds (each needed once); bytes sent are the body bytes nginx logged over all requests.
# nginx's `limit_rate` caps every connection (-r) so that kills land in the middle of
# transfers; modelctl's defaults are used (4 files at once, 16 connections, 4 MiB chunks).
#
# Target: bytes sent / bytes needed <= 1.10.
#
# Usage: bench/download-kills.sh [-b BINARY] [-n KILLS] [-k KILLS_PER_ROUND] [-m MODELS]
#                                [-s SIZE_MIB] [-r RATE] [-w WINDOW] [-u]
#   -b  the modelctl binary (default: target/release/modelctl)
#   -n  kills in all (default 100)
#   -k  kills per round before the apply is let finish (default 5)
#   -m  models per round, one file each (default 4)
#   -s  file size in MiB (default 24: above the 16 MiB threshold, so fetched in ranged chunks)
#   -r  nginx limit_rate per connection (default 2m)
#   -w  each kill comes after a random time in [0, WINDOW] s from the apply's start (default 2)
#   -u  no sha256 in models.yaml (the lock pins size and ETag; apply learns the sha256)
# Example: bash bench/download-kills.sh -b target/release/modelctl -n 100 -r 1m
# Needs nginx and bc (installed with apt-get when missing). Scratch data lives under /tmp and
# is removed on exit (kept with KEEP=1, the access log with it).
set -euo pipefail
# What is measured is the download: no machine cache to link an earlier run's bytes from.
export MODELCTL_NO_CACHE=1
bin=target/release/modelctl kills=100 per_round=5 models=4 size=24 rate=2m window=2 pinned=1
while getopts b:n:k:m:s:r:w:u o; do
  case $o in
    b) bin=$OPTARG ;; n) kills=$OPTARG ;; k) per_round=$OPTARG ;; m) models=$OPTARG ;;
    s) size=$OPTARG ;; r) rate=$OPTARG ;; w) window=$OPTARG ;; u) pinned=0 ;;
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

work=$(mktemp -d /tmp/modelctl-kills.XXXXXX)
apply_pid=""
cleanup() {
  [[ -n $apply_pid ]] && kill -9 "$apply_pid" 2>/dev/null || true
  [[ -s $work/nginx.pid ]] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  if [[ ${KEEP:-0} == 1 ]]; then echo "== kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
chmod 755 "$work"
mkdir -p "$work/www" "$work/project"
port=$((20000 + RANDOM % 20000))
log=$work/access.log
cat >"$work/nginx.conf" <<CONF
worker_processes 2; pid $work/nginx.pid; error_log $work/error.log; daemon on;
events { worker_connections 512; }
http {
  log_format bytes '\$body_bytes_sent \$status \$request_method \$uri "\$http_range"';
  access_log $log bytes;
  sendfile on;
  sendfile_max_chunk 64k;
  server { listen 127.0.0.1:$port; root $work/www; limit_rate $rate; }
}
CONF
nginx -c "$work/nginx.conf"
sleep 0.5
touch "$log"

connections_open() { ss -Htn state established "( sport = :$port )" 2>/dev/null | wc -l; }
# nginx logs an aborted request when it next tries to send: wait for its connections to close.
settle() {
  local w
  for ((w = 0; w < 100; w++)); do
    (($(connections_open) == 0)) && break
    sleep 0.1
  done
  sleep 0.2
}
# (%.0f: mawk's %d stops at 2^31.)
sent() { awk '{ s += $1 } END { printf "%.0f\n", s }' "$log"; }

bytes=$((size * 1024 * 1024))
echo "== $(uptime)"
echo "== $bin apply --yes: $models models of $size MiB per round, ${rate}/connection, kill -9 at a random time in [0, $window] s, up to $per_round kills a round, $kills kills, sha256 $( ((pinned)) && echo pinned || echo learned)"
cd "$work/project"
landed=0 round=0 needed=0 early=0
declare -A sums
while ((landed < kills)); do
  round=$((round + 1))
  rm -f "$work"/www/*
  {
    echo "version: 1"
    echo "store: ./store"
    echo "models:"
    for ((m = 0; m < models; m++)); do
      name=r${round}m$m.bin
      head -c "$bytes" /dev/urandom >"$work/www/$name"
      sums[$name]=$(sha256sum "$work/www/$name" | cut -d' ' -f1)
      printf '  r%dm%d:\n    type: llm\n    source:\n      url: http://127.0.0.1:%d/%s\n' "$round" "$m" "$port" "$name"
      ((pinned)) && printf '      sha256: %s\n' "${sums[$name]}"
    done
  } >models.yaml
  needed=$((needed + models * bytes))
  s0=$(sent)
  for ((k = 0; k < per_round && landed < kills; k++)); do
    "$bin" --color never apply --yes >"$work/apply.log" 2>&1 &
    apply_pid=$!
    sleep "$(echo "scale=3; $window * $RANDOM / 32767" | bc)"
    if kill -9 "$apply_pid" 2>/dev/null; then
      landed=$((landed + 1))
    fi
    wait "$apply_pid" 2>/dev/null && { early=$((early + 1)); apply_pid=""; break; }
    apply_pid=""
    settle
  done
  "$bin" --color never apply --yes >"$work/apply.log" 2>&1 || { cat "$work/apply.log" >&2; echo "the final apply of round $round failed" >&2; exit 1; }
  for ((m = 0; m < models; m++)); do
    want=${sums[r${round}m$m.bin]}
    [[ -f store/blobs/sha256/${want:0:2}/$want && $(sha256sum "store/blobs/sha256/${want:0:2}/$want" | cut -d' ' -f1) == "$want" ]] ||
      { echo "round $round: no verified blob for r${round}m$m" >&2; exit 1; }
  done
  settle
  s1=$(sent)
  printf '  round %d: %d kills so far, %d bytes sent for %d needed (%.4f)\n' "$round" "$landed" \
    $((s1 - s0)) $((models * bytes)) "$(echo "($s1 - $s0) / ($models * $bytes)" | bc -l)"
  # Keep the scratch space bounded: the next round's files are new, nothing here is reused.
  rm -rf store models.lock
done
echo "== $(uptime)"
total=$(sent)
ratio=$(echo "scale=4; $total / $needed" | bc)
verdict=$( (($(echo "$ratio <= 1.10" | bc))) && echo met || echo MISSED)
requests=$(wc -l <"$log")
printf 'bytes sent / bytes needed over %d kills (%d rounds, %d applies ended before their kill): %s (target <= 1.10: %s); %d bytes sent for %d needed in %d requests, %.1f MiB more than needed per kill\n' \
  "$landed" "$round" "$early" "$ratio" "$verdict" "$total" "$needed" "$requests" \
  "$(echo "($total - $needed) / $landed / 1048576" | bc -l)"
