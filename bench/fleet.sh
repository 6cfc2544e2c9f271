#!/usr/bin/env bash
# fleet.sh: a fleet of nodes fed by an OCI registry, measured. What the origin sends when N
# nodes apply the same models.lock with MODELCTL_MIRROR set, what the registry serves, how the
# wall time grows with N, and what a push costs against a plain copy of the same bytes.
#
# Method, all on 127.0.0.1:
#   1. nginx is the origin: it serves MODELS files of random bytes (SIZE MiB in all) and logs
#      `$request_method $uri $status $body_bytes_sent` of every request;
#   2. Debian's docker-registry (the CNCF distribution server, configured as
#      tests/cli/oci_registry.rs does, plus a JSON log of every response) is the mirror;
#   3. a seed project declares the files as `url` models with their sha256, runs `modelctl lock`
#      and `modelctl apply --yes` (from the origin: the only origin bytes meant to be sent;
#      models.lock records each file's sha256 then, which the nodes ask the mirror for), then `modelctl push --to http://127.0.0.1:PORT/fleet`, timed, against
#      `cp -r` of the seed's blobs to a fresh directory, timed;
#   4. for each N of NODES: N fresh project directories, each with a copy of models.yaml and
#      models.lock and its own store, run `modelctl apply --frozen --yes` at once with
#      MODELCTL_MIRROR=http://127.0.0.1:PORT/fleet; every store is then checked complete
#      (`modelctl plan --offline` says "No changes") and removed.
# Reported per N: the origin's requests and body bytes during the phase (from nginx's access
# log; target 0), the registry's blob GETs and bytes served (the sum of
# `http.response.written` of its `GET /v2/.../blobs/sha256:...` responses in its own log;
# ranged GETs, so more than one per file) against N x SIZE, the wall time of the N applies,
# its ratio to the first N (1 by default), the bytes the N nodes got per second, and the load
# average after the phase. Once: both push times, the cp time, push / cp, and push / (cp +
# sha256sum of the blobs): the registry hashes every byte it receives, so a copy plus a hash is
# the least a push costs on one machine. The load average is printed before and after: the
# machine may be shared, and on 2 cores N nodes hashing at once share the same 2 cores.
#
# Targets: origin bytes during the node phases = 0; registry blob bytes = N x SIZE.
#
# Usage: bench/fleet.sh [-b BINARY] [-s SIZE_MIB] [-m MODELS] [-n "NODES"]
#   -b  the modelctl binary (default: target/release/modelctl; built when missing)
#   -s  total size of the models in MiB (default 300), split evenly between them
#   -m  number of models (default 3)
#   -n  node counts, space-separated (default "1 4 8")
# Needs nginx, /usr/bin/docker-registry (apt-get install docker-registry), jq and bc (installed
# with apt-get when missing, as root). Scratch data (SIZE MiB x (3 + the largest N)) lives under
# $TMPDIR (default /tmp) and is removed on exit, with both servers stopped.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

binary="" size_mib=300 models=3 nodes="1 4 8"
while getopts b:s:m:n:h opt; do
  case $opt in
    b) binary=$OPTARG ;;
    s) size_mib=$OPTARG ;;
    m) models=$OPTARG ;;
    n) nodes=$OPTARG ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
  esac
done
if [[ -z $binary && -x $REPO_ROOT/target/release/modelctl ]]; then
  binary=$REPO_ROOT/target/release/modelctl
fi
resolve_binary "$binary"

install_missing nginx jq bc docker-registry

make_workdir
pids=()
stop_servers() {
  # Applies still running (an interrupted phase), then the two servers, then the scratch data.
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ -s $WORK/nginx.pid ]]; then kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true; fi
  if [[ -n ${registry_pid:-} ]]; then
    kill "$registry_pid" 2>/dev/null || true
    wait "$registry_pid" 2>/dev/null || true
  fi
  cleanup
}
trap stop_servers EXIT
largest=$(tr ' ' '\n' <<<"$nodes" | sort -n | tail -1)
require_space "$WORK" $(((3 + largest) * size_mib * 1048576 + 200000000))
chmod 755 "$WORK" # nginx's workers must read the served files
mkdir -p "$WORK/www" "$WORK/seed" "$WORK/registry"

# --- the origin ---------------------------------------------------------------------------
origin_port=$(free_port)
cat >"$WORK/nginx.conf" <<NGINX
daemon on;
worker_processes 2;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 1024; }
http {
  log_format bytes '\$request_method \$uri \$status \$body_bytes_sent';
  access_log $WORK/origin.log bytes;
  sendfile on;
  server {
    listen 127.0.0.1:$origin_port;
    root $WORK/www;
  }
}
NGINX
nginx -c "$WORK/nginx.conf"

# --- the registry -------------------------------------------------------------------------
start_registry "$WORK/registry" "$WORK/registry.log"
registry_pid=$REGISTRY_PID
mirror=http://127.0.0.1:$REGISTRY_PORT/fleet

# --- the models ---------------------------------------------------------------------------
each=$((size_mib * 1048576 / models))
total=$((each * models))
note "$models models of $((each / 1048576)) MiB ($(awk -v b="$total" 'BEGIN { printf "%.0f", b / 1048576 }') MiB in all)"
{
  echo "version: 1"
  echo "store: ./store"
  echo "models:"
  for ((i = 0; i < models; i++)); do
    head -c "$each" /dev/zero |
      openssl enc -aes-128-ctr -K "$(openssl rand -hex 16)" -iv "$(openssl rand -hex 16)" \
        >"$WORK/www/m$i.safetensors"
    printf '  m%d:\n    type: llm\n    source:\n      url: http://127.0.0.1:%d/m%d.safetensors\n      sha256: %s\n' \
      "$i" "$origin_port" "$i" "$(sha256sum "$WORK/www/m$i.safetensors" | cut -d' ' -f1)"
  done
} >"$WORK/seed/models.yaml"

run_in() { # DIR ARGS...: modelctl in DIR, output to DIR/out.log; fails with the log shown
  local dir=$1
  shift
  (cd "$dir" && "$MODELCTL" --color never "$@" >"$dir/out.log" 2>&1) || {
    tail -30 "$dir/out.log" >&2
    die "\`modelctl $*\` failed in $dir"
  }
}


# origin_sent FROM_LINE: "requests bytes" nginx logged after line FROM_LINE.
origin_sent() {
  tail -n +"$(($1 + 1))" "$WORK/origin.log" | awk '{ n++; b += $4 } END { printf "%.0f %.0f\n", n, b }'
}
lines() { wc -l <"$1"; }

# registry_blob_bytes FROM_LINE: body bytes of the blob GETs the registry logged after FROM_LINE.
registry_blob_bytes() {
  tail -n +"$(($1 + 1))" "$WORK/registry.log" |
    jq -r 'select(.msg == "response completed" and .["http.request.method"] == "GET"
                  and (.["http.request.uri"] | test("/blobs/sha256:")))
           | .["http.response.written"]' 2>/dev/null |
    awk '{ b += $1; n++ } END { printf "%.0f %.0f\n", n, b }'
}

echo "== $(uptime)"
echo "== $("$MODELCTL" --version); $models models, $total bytes; nodes: $nodes"

run_in "$WORK/seed" lock
start=$(now)
run_in "$WORK/seed" apply --yes # not --frozen: models.lock learns each file's sha256 here
seed_time=$(since "$start")
read -r seed_requests seed_bytes < <(origin_sent 0)
printf 'seed apply from the origin: %.2f s, %d requests, %d bytes\n' "$seed_time" "$seed_requests" "$seed_bytes"

sync
start=$(now)
run_in "$WORK/seed" push --to "$mirror"
push_time=$(since "$start")
# The same blobs whole (one PUT each) to another namespace, for what the chunks cost.
start=$(now)
(cd "$WORK/seed" && MODELCTL_PUSH_CHUNK_MIB=0 "$MODELCTL" --color never push --to "$mirror-whole" \
  >"$WORK/seed/whole.log" 2>&1) || { tail -20 "$WORK/seed/whole.log" >&2; die "the whole-blob push failed"; }
whole_time=$(since "$start")
start=$(now)
cp -r "$WORK/seed/store/blobs" "$WORK/cp-copy"
cp_time=$(since "$start")
rm -rf "$WORK/cp-copy"
# What the registry must do to each byte at least: hash it (it checks every digest).
start=$(now)
find "$WORK/seed/store/blobs" -type f -exec sha256sum {} + >/dev/null
hash_time=$(since "$start")
printf 'push: %.2f s (chunked, the default)   %.2f s (whole, MODELCTL_PUSH_CHUNK_MIB=0)   cp -r of the same blobs: %.2f s\n' \
  "$push_time" "$whole_time" "$cp_time"
printf 'sha256sum of the same blobs: %.2f s\n' "$hash_time"
printf 'push / cp: %s (chunked), %s (whole); push / (cp + sha256sum): %s\n' "$(ratio "$push_time" "$cp_time")" \
  "$(ratio "$whole_time" "$cp_time")" "$(echo "$push_time / ($cp_time + $hash_time)" | bc -l | xargs printf '%.3g')"

printf '\n%3s %11s %13s %9s %14s %9s %8s %10s %7s  %s\n' N "origin reqs" "origin bytes" \
  "blob GETs" "registry bytes" "/ N×size" "wall s" "wall / N=1" "MiB/s" "load average after"
one=""
for n in $nodes; do
  for ((k = 0; k < n; k++)); do
    mkdir -p "$WORK/node$k"
    cp "$WORK/seed/models.yaml" "$WORK/seed/models.lock" "$WORK/node$k/"
  done
  origin_from=$(lines "$WORK/origin.log")
  registry_from=$(lines "$WORK/registry.log")
  start=$(now)
  pids=()
  for ((k = 0; k < n; k++)); do
    (cd "$WORK/node$k" && MODELCTL_MIRROR=$mirror "$MODELCTL" --color never apply --frozen --yes \
      >"$WORK/node$k/out.log" 2>&1) &
    pids+=($!)
  done
  failed=0
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
  pids=() # all reaped: nothing for the exit trap to stop
  wall=$(since "$start")
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  if ((failed)); then
    for ((k = 0; k < n; k++)); do tail -5 "$WORK/node$k/out.log" >&2; done
    die "an apply of N = $n failed"
  fi
  sleep 0.3 # let nginx and the registry flush their last log lines
  read -r origin_requests origin_bytes < <(origin_sent "$origin_from")
  read -r registry_gets registry_bytes < <(registry_blob_bytes "$registry_from")
  for ((k = 0; k < n; k++)); do
    plan_says_no_changes "$WORK/node$k"
    rm -rf "$WORK/node$k"
  done
  [[ -n $one ]] || one=$wall
  printf '%3d %11s %13s %9s %14s %9s %8.2f %10s %7.0f  %s\n' "$n" "$origin_requests" "$origin_bytes" \
    "$registry_gets" "$registry_bytes" "$(ratio "$registry_bytes" $((n * total)))" "$wall" "$(ratio "$wall" "$one")" \
    "$(echo "$n * $total / 1048576 / $wall" | bc -l)" "$load"
done
echo "== $(uptime)"
