#!/usr/bin/env bash
# verify-speed.sh: hashing speed of `modelctl verify` against `openssl dgst -sha256`, warm cache.
#
# Two stores are generated with bench/lib.sh's make_project (incompressible content, pinned in
# models.lock): ONE holds one model of one 1 GiB file, FOUR holds four 1 GiB files (four models of
# one file each: verify hashes per file, one file per thread, so this is the same work as one
# model of four files). After one untimed warm-up run of each command (the files stay in the
# page cache), RUNS interleaved runs time, under GNU time:
#   modelctl verify                           (ONE: one thread; FOUR: one thread per core)
#   openssl dgst -sha256 FILE...              (one process, one core)
#   xargs -P NPROC openssl dgst -sha256       (FOUR only: one process per core, like verify)
# and it reports, per command, the median wall time, GB/s (bytes / wall) and GB/s per core
# (bytes / (user + sys) CPU seconds, which does not depend on how busy the other core is), and
# the ratio modelctl / openssl per core.
# It also checks whether the CPU has SHA instructions (`sha_ni` in /proc/cpuinfo), measures
# `openssl speed` with and without them (OPENSSL_ia32cap masks SHA), and, when perf is installed,
# shows which sha2 backend modelctl's samples land in (`x86_sha::compress` is the SHA-NI one,
# `soft::...::compress` the portable one).
#
# Target: modelctl verify GB/s per core >= 0.9 x openssl's, for ONE and FOUR.
#
# Usage: bench/verify-speed.sh [-b BINARY] [-n RUNS] [-s SIZE_MIB] [-k]
#   -b  the modelctl binary (default: cargo build --release, target/release/modelctl)
#   -n  timed runs per command (default 3)
#   -s  size of each file in MiB (default 1024)
#   -k  keep the scratch directory
# Example: bash bench/verify-speed.sh -b /tmp/mc-dl-target/release/modelctl
# Needs openssl, GNU time and bc (installed with apt-get when missing); perf is optional. Needs
# 5 x SIZE MiB under $TMPDIR (default /tmp) and as much free memory to keep it cached; the
# scratch directory is removed on exit.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BIN="" RUNS=3 SIZE_MIB=1024 KEEP=0
while getopts b:n:s:k o; do
  case $o in
    b) BIN=$OPTARG ;; n) RUNS=$OPTARG ;; s) SIZE_MIB=$OPTARG ;; k) KEEP=1 ;;
    *) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 2 ;;
  esac
done

need=()
command -v openssl >/dev/null || need+=(openssl)
command -v bc >/dev/null || need+=(bc)
[[ -x /usr/bin/time ]] || need+=(time)
if ((${#need[@]})); then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

resolve_binary "$BIN"
make_workdir
size=$((SIZE_MIB * 1024 * 1024))
require_space "${TMPDIR:-/tmp}" $((5 * size + 100000000))
ncpu=$(nproc)

note "generating the stores (1 + 4 files of $SIZE_MIB MiB)"
make_project "$WORK/one" 1 "$size"
ONE_FILES=$(cat "$BLOB_LIST")
make_project "$WORK/four" 4 "$size"
FOUR_FILES=$(cat "$BLOB_LIST")

# run NAME BYTES COMMAND...: one timed run; appends "wall cpu" to $WORK/NAME.times
run() {
  local name=$1 bytes=$2
  shift 2
  /usr/bin/time -f '%e %U %S' -o "$WORK/t" "$@" >"$WORK/out" 2>&1 ||
    { cat "$WORK/out" >&2; die "$name failed"; }
  awk '{ printf "%s %.3f\n", $1, $2 + $3 }' "$WORK/t" >>"$WORK/$name.times"
  echo "$bytes" >"$WORK/$name.bytes"
}
# shellcheck disable=SC2086
cmds=(
  "modelctl-one|$size|$MODELCTL --manifest $WORK/one/models.yaml --color never verify"
  "openssl-one|$size|openssl dgst -sha256 $ONE_FILES"
  "modelctl-four|$((4 * size))|$MODELCTL --manifest $WORK/four/models.yaml --color never verify"
  "openssl-four-1proc|$((4 * size))|openssl dgst -sha256 $(echo $FOUR_FILES)"
  "openssl-four-${ncpu}proc|$((4 * size))|xargs -P $ncpu -n 1 openssl dgst -sha256 -- $(echo $FOUR_FILES)"
)

note "warm-up (fills the page cache)"
for c in "${cmds[@]}"; do
  IFS='|' read -r name bytes cmd <<<"$c"
  case $name in
    openssl-four-*proc) printf '%s\n' $FOUR_FILES | xargs -P "$ncpu" -n 1 openssl dgst -sha256 >/dev/null ;;
    *) $cmd >/dev/null 2>&1 || die "$name failed in the warm-up" ;;
  esac
done
rm -f "$WORK"/*.times

echo "== $(uptime)"
for ((i = 1; i <= RUNS; i++)); do
  for c in "${cmds[@]}"; do
    IFS='|' read -r name bytes cmd <<<"$c"
    case $name in
      openssl-four-*proc) run "$name" "$bytes" bash -c "printf '%s\n' $(echo $FOUR_FILES) | xargs -P $ncpu -n 1 openssl dgst -sha256" ;;
      *) read -r -a argv <<<"$cmd"; run "$name" "$bytes" "${argv[@]}" ;;
    esac
  done
done
echo "== $(uptime)"

median_col() { awk -v c="$2" '{print $c}' "$1" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A per_core
printf '%-20s %9s %9s %10s %14s\n' command "wall (s)" "cpu (s)" "GB/s" "GB/s per core"
for c in "${cmds[@]}"; do
  IFS='|' read -r name bytes _ <<<"$c"
  wall=$(median_col "$WORK/$name.times" 1)
  cpu=$(median_col "$WORK/$name.times" 2)
  per_core[$name]=$(echo "scale=4; $bytes / $cpu / 1000000000" | bc)
  printf '%-20s %9.3f %9.3f %10.3f %14.3f\n' "$name" "$wall" "$cpu" \
    "$(echo "scale=4; $bytes / $wall / 1000000000" | bc)" "${per_core[$name]}"
done
r1=$(echo "scale=4; ${per_core[modelctl-one]} / ${per_core[openssl-one]}" | bc)
r4=$(echo "scale=4; ${per_core[modelctl-four]} / ${per_core[openssl-four-1proc]}" | bc)
ok() { (($(echo "$1 >= 0.9" | bc))) && echo met || echo MISSED; }
printf 'per core, modelctl / openssl: one file %.3f (%s), four files %.3f (%s); target >= 0.9\n' \
  "$r1" "$(ok "$r1")" "$r4" "$(ok "$r4")"

echo
echo "SHA instructions: $(grep -q -w sha_ni /proc/cpuinfo && echo "sha_ni present in /proc/cpuinfo" || echo "no sha_ni in /proc/cpuinfo")"
speed() { openssl speed -seconds 2 -bytes 1048576 -evp sha256 2>/dev/null | awk '/^sha256/ {printf "%.3f", $2 / 1000000}'; }
# The k in `openssl speed` output is 1000 bytes: the figure / 1e6 is GB/s.
echo "openssl speed sha256 (1 MiB blocks, one core): $(speed) GB/s as detected," \
  "$(OPENSSL_ia32cap=':~0x20000000' speed) GB/s with SHA-NI masked (OPENSSL_ia32cap)"
if command -v perf >/dev/null && perf record -q -o "$WORK/perf.data" -F 999 true >/dev/null 2>&1; then
  perf record -q -o "$WORK/perf.data" -F 999 "$MODELCTL" --manifest "$WORK/one/models.yaml" --color never verify >/dev/null 2>&1
  echo "modelctl verify, top symbols (perf):"
  perf report -i "$WORK/perf.data" --no-children --sort sym --stdio 2>/dev/null |
    grep -E '^ +[0-9]' | head -5
else
  echo "perf not available: cannot tell which sha2 backend modelctl runs"
fi
