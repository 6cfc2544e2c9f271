#!/usr/bin/env bash
# plan-scaling.sh: how `modelctl plan --offline` grows with the number of models.
#
# For each model count (default 100 and 1,000) it generates a project of that many models,
# each an url source with its sha256 and one small file (default 4,096 bytes), pinned in
# models.lock by `modelctl lock` (file:// URLs, resolved by a stat), and times
# `modelctl plan --offline` (median of RUNS runs after 3 warm-up runs) in three scenarios:
#   complete   locked, every file in the store, stat cache warm: the plan is "No changes"
#              (manifest + lock parsing, validation, store scan, planning)
#   empty      locked, empty store (`--store` elsewhere): the plan downloads every model
#   unlocked   no models.lock, https://example.invalid URLs, empty store: with --offline
#              every model is reported as needing resolution (no network is used)
# It prints the times and the ratio largest / smallest count for each scenario: linear
# growth gives a ratio equal to the ratio of the counts (10 for 100 → 1,000), or less
# because of the fixed start-up cost.
#
# hyperfine is used when installed (apt-get install hyperfine), else a loop timed with
# `date`. The scratch directory (a few MB under $TMPDIR, default /tmp) is deleted on exit.
#
# Usage: bench/plan-scaling.sh [-b BINARY] [-n COUNTS] [-s SIZE] [-r RUNS] [-k]
#   -b BINARY  modelctl release binary (default: cargo build --release, target/release/modelctl)
#   -n COUNTS  comma-separated model counts, smallest first (default 100,1000)
#   -s SIZE    bytes per model file (default 4096)
#   -r RUNS    timed runs per measurement (default 20)
#   -k         keep the scratch directory

set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BIN="" COUNTS=100,1000 SIZE=4096 RUNS=20 KEEP=0
while getopts "b:n:s:r:kh" opt; do
    case $opt in
        b) BIN=$OPTARG ;;
        n) COUNTS=$OPTARG ;;
        s) SIZE=$OPTARG ;;
        r) RUNS=$OPTARG ;;
        k) KEEP=1 ;;
        *) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 2 ;;
    esac
done
IFS=, read -r -a NS <<<"$COUNTS"
((${#NS[@]} >= 2)) || die "-n needs at least two counts"

resolve_binary "$BIN"
make_workdir

SCENARIOS=(complete empty unlocked)
declare -A MED

for n in "${NS[@]}"; do
    dir="$WORK/n$n"
    note "generating $n models"
    make_project "$dir" "$n" "$SIZE"

    # The unlocked variant: same models, https URLs nobody is asked about, no lock, no store.
    mkdir -p "$dir/unlocked"
    sed -E 's|url: file://.*/([0-9a-f]{64})$|url: https://example.invalid/\1|' \
        "$dir/models.yaml" >"$dir/unlocked/models.yaml"
    grep -q 'file://' "$dir/unlocked/models.yaml" && die "could not rewrite the URLs"

    sleep 2 # let the newest link age past the stat cache's racy window
    plan_says_no_changes "$dir" # also fills the stat cache

    base="'$MODELCTL' --color never"
    declare -A CMD=(
        [complete]="$base --manifest '$dir/models.yaml' plan --offline"
        [empty]="$base --manifest '$dir/models.yaml' --store '$dir/empty-store' plan --offline"
        [unlocked]="$base --manifest '$dir/unlocked/models.yaml' plan --offline"
    )
    # Sanity: what each scenario's plan says (exit codes must be 0 for the timing loop).
    out=$(bash -c "${CMD[empty]}" 2>&1) || { echo "$out" >&2; die "plan on an empty store failed"; }
    grep -q "No changes" <<<"$out" && die "plan on an empty store says no changes"
    out=$(bash -c "${CMD[unlocked]}" 2>&1) || { echo "$out" >&2; die "plan on an unlocked manifest failed"; }
    [[ -e "$dir/empty-store" || -e "$dir/unlocked/store" ]] && die "plan created a store"

    for s in "${SCENARIOS[@]}"; do
        note "$s, $n models"
        measure "$s, $n models" "$RUNS" 3 "" "${CMD[$s]}"
        MED[$s,$n]=$MEDIAN
    done
    plan_says_no_changes "$dir"
done

first=${NS[0]} last=${NS[-1]}
echo
echo "plan-scaling: modelctl plan --offline, median of $RUNS runs, $(nproc) cores, $("$MODELCTL" --version)"
printf '%-10s' "scenario"
for n in "${NS[@]}"; do printf ' %14s' "$n models"; done
printf ' %14s %14s\n' "ratio $last/$first" "per model*"
for s in "${SCENARIOS[@]}"; do
    printf '%-10s' "$s"
    for n in "${NS[@]}"; do printf ' %14s' "$(fmt_time "${MED[$s,$n]}")"; done
    per=$(awk -v a="${MED[$s,$last]}" -v b="${MED[$s,$first]}" -v m="$((last - first))" \
        'BEGIN { printf "%.1f µs", (a - b) / m * 1e6 }')
    printf ' %14s %14s\n' "$(ratio "${MED[$s,$last]}" "${MED[$s,$first]}")×" "$per"
done
echo "* (t($last) - t($first)) / $((last - first)): the marginal cost of one model."
echo "linear growth: ratio ≤ $(ratio "$last" "$first")×"
