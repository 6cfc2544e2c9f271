#!/usr/bin/env bash
# projects.sh: three projects on one machine that declare the same three models, with the
# machine cache and without it.
#
# Makes three files of SIZE MiB of random bytes, serves them over HTTP on 127.0.0.1 (Python's
# http.server), and lays out three projects, each with its own store, that declare the three
# files as url models pinned by sha256. Then, once with a machine cache of its own (in the
# scratch directory, never the user's) and once with MODELCTL_NO_CACHE=1, it runs
# `modelctl apply` in each project in turn and reports:
#   - the bytes on disk after the three applies, as a df delta and as `du` (which counts an
#     inode once), each divided by one set of the files (goal with the cache: <= 1.02;
#     3.0 without it);
#   - the second and third applies' wall time divided by the first's (goal with the cache:
#     <= 0.05: they link and download nothing);
#   - a `plan` in the first project afterwards: the others' links moved the shared files'
#     ctime, and the stat cache must still know them (it hashes nothing).
# The load average is printed before and after: the machine is shared.
#
# Usage: bench/projects.sh [-b BINARY] [-s SIZE_MIB] [-k]
#   -b BINARY    modelctl release binary (default: cargo build --release, target/release/modelctl)
#   -s SIZE_MIB  size of each of the three files (default 256)
#   -k           keep the scratch directory

set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BIN="" SIZE=256 KEEP=0
while getopts "b:s:kh" opt; do
    case $opt in
        b) BIN=$OPTARG ;;
        s) SIZE=$OPTARG ;;
        k) KEEP=1 ;;
        *) sed -n '2,21p' "$0"; exit 0 ;;
    esac
done

resolve_binary "$BIN"
make_workdir
require_space "$WORK" $((SIZE * 1048576 * 8))
command -v python3 >/dev/null || die "python3 is needed for the HTTP server"

files="$WORK/files"
mkdir -p "$files"
for i in 1 2 3; do
    head -c $((SIZE * 1048576)) /dev/zero |
        openssl enc -aes-128-ctr -K "$(openssl rand -hex 16)" -iv "$(openssl rand -hex 16)" \
            >"$files/model-$i.bin"
done
set_bytes=$((3 * SIZE * 1048576))
port=$(free_port)
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$files" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; cleanup' EXIT
for _ in $(seq 50); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/model-1.bin" -r 0-0 && break
    sleep 0.1
done

# make_projects DIR: three projects under DIR, each declaring the three files.
make_projects() {
    local dir=$1 p i
    for p in 1 2 3; do
        mkdir -p "$dir/p$p"
        {
            echo "version: 1"
            echo "models:"
            for i in 1 2 3; do
                echo "  model-$i:"
                echo "    type: image_gen"
                echo "    source:"
                echo "      url: http://127.0.0.1:$port/model-$i.bin"
                echo "      sha256: $(sha256sum "$files/model-$i.bin" | cut -d' ' -f1)"
            done
        } >"$dir/p$p/models.yaml"
    done
}

used() { sync; df -P -B1 "$WORK" | awk 'NR == 2 { print $3 }'; }

# run_mode NAME: the three applies, with the environment the caller set.
run_mode() {
    local name=$1 dir="$WORK/$1" before after t0 t1 t2 t3 du_bytes
    make_projects "$dir"
    before=$(used)
    t0=$(now)
    (cd "$dir/p1" && "$MODELCTL" apply -q)
    t1=$(since "$t0")
    t0=$(now)
    (cd "$dir/p2" && "$MODELCTL" apply -q)
    t2=$(since "$t0")
    t0=$(now)
    (cd "$dir/p3" && "$MODELCTL" apply -q)
    t3=$(since "$t0")
    after=$(used)
    du_bytes=$(du -s -B1 "$dir" | cut -f1)
    t0=$(now)
    (cd "$dir/p1" && "$MODELCTL" plan -q >/dev/null)
    tp=$(since "$t0")
    printf '%-9s  df: %5.2f x one set   du: %5.2f x   apply 1: %6.2f s   2: %6.3f s (%.3f x)   3: %6.3f s (%.3f x)   plan 1 after: %6.3f s\n' \
        "$name" "$(echo "($after - $before) / $set_bytes" | bc -l)" \
        "$(echo "$du_bytes / $set_bytes" | bc -l)" "$t1" \
        "$t2" "$(echo "$t2 / $t1" | bc -l)" "$t3" "$(echo "$t3 / $t1" | bc -l)" "$tp"
    rm -rf "$dir"
}

note "3 projects x 3 models x $SIZE MiB; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
unset MODELCTL_NO_CACHE
export MODELCTL_CACHE="$WORK/with-cache/machine-cache"
run_mode with-cache
unset MODELCTL_CACHE
export MODELCTL_NO_CACHE=1
run_mode no-cache
note "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
