#!/usr/bin/env bash
# plan-stat-cache.sh: how much the stat cache saves `modelctl plan` on a large, complete store.
#
# Builds a project whose store holds COUNT models of one SIZE-byte file each (default 1,000 ×
# 10,000,000 bytes = 10 GB; an url source has exactly one file, hence one file per model),
# laid out as modelctl expects (blobs/sha256/<2>/<64> hardlinked at models/<type>/<id>/
# weights.bin), pinned by `modelctl lock`, and checks that `modelctl plan --offline` says
# "No changes". Then it times:
#   (a) sha256sum over every file, single process, with a cold and a warm page cache
#       (plus `xargs -P <cores>` as a parallel reference);
#   (b) the first `modelctl plan --offline`, with store/.modelctl/stat-cache.json deleted
#       (every file is hashed), cold and warm page cache;
#   (c) the second `modelctl plan --offline`, stat cache warm (nothing is hashed);
# and prints the ratio (c) / (a). The target is ≤ 1 %.
#
# Cold-page-cache figures need root (they write /proc/sys/vm/drop_caches); without it they
# are skipped. hyperfine is used when installed (apt-get install hyperfine), else a loop
# timed with `date` (medians either way). Needs COUNT × SIZE bytes free under $TMPDIR
# (default /tmp); the scratch directory is deleted on exit.
#
# Usage: bench/plan-stat-cache.sh [-b BINARY] [-n COUNT] [-s SIZE] [-r RUNS] [-c SLOW_RUNS] [-k]
#   -b BINARY    modelctl release binary (default: cargo build --release, target/release/modelctl)
#   -n COUNT     number of models/files (default 1000)
#   -s SIZE      bytes per file (default 10000000)
#   -r RUNS      timed runs of the fast measurements (default 20)
#   -c SLOW_RUNS timed runs of the measurements that read every byte (default 3)
#   -k           keep the scratch directory

set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BIN="" COUNT=1000 SIZE=10000000 RUNS=20 SLOW_RUNS=3 KEEP=0
while getopts "b:n:s:r:c:kh" opt; do
    case $opt in
        b) BIN=$OPTARG ;;
        n) COUNT=$OPTARG ;;
        s) SIZE=$OPTARG ;;
        r) RUNS=$OPTARG ;;
        c) SLOW_RUNS=$OPTARG ;;
        k) KEEP=1 ;;
        *) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 2 ;;
    esac
done

resolve_binary "$BIN"
make_workdir
require_space "$WORK" "$((COUNT * SIZE + COUNT * SIZE / 20 + 100000000))"

PROJECT="$WORK/project"
STORE="$PROJECT/store"
CACHE="$STORE/.modelctl/stat-cache.json"
TOTAL=$((COUNT * SIZE))

note "generating $COUNT files × $SIZE bytes ($(awk -v b=$TOTAL 'BEGIN { printf "%.2f GB", b / 1e9 }')) in $PROJECT"
t0=$(date +%s)
make_project "$PROJECT" "$COUNT" "$SIZE"
note "generated in $(($(date +%s) - t0)) s"

# A file changed within a second of being hashed is not remembered (the racy-git rule), so
# let the newest link age before the first plan.
sleep 2

note "checking that plan reports no changes (cold stat cache, then warm)"
rm -f "$CACHE"
plan_says_no_changes "$PROJECT"
entries=$(grep -o '"stamp"' "$CACHE" | wc -l)
[[ $entries -eq $((2 * COUNT)) ]] ||
    die "the stat cache holds $entries entries after the first plan; expected $((2 * COUNT)) (a blob and a model path per file)"
before=$(stat -c '%y' "$CACHE")
plan_says_no_changes "$PROJECT"
[[ $(stat -c '%y' "$CACHE") == "$before" ]] || note "warning: a plan with a warm stat cache rewrote the cache file"

PLAN="'$MODELCTL' --manifest '$PROJECT/models.yaml' --color never plan --offline"
# The baselines, as scripts (measure runs commands without a shell).
printf "xargs -d '\\n' sha256sum < '%s' > /dev/null\n" "$BLOB_LIST" >"$WORK/sha-seq.sh"
printf "xargs -d '\\n' -P %s -n 16 sha256sum < '%s' > /dev/null\n" "$(nproc)" "$BLOB_LIST" >"$WORK/sha-par.sh"
SHA_SEQ="bash '$WORK/sha-seq.sh'"
SHA_PAR="bash '$WORK/sha-par.sh'"
DROP="sync; echo 3 > /proc/sys/vm/drop_caches"

COLD=0
if can_drop_caches; then
    COLD=1
else
    note "cannot write /proc/sys/vm/drop_caches (not root?): skipping cold-page-cache figures"
fi

declare -A MED MN MX NRUNS
run() { # KEY RUNS WARMUP PREPARE CMD
    note "$1"
    measure "$1" "$2" "$3" "$4" "$5"
    MED[$1]=$MEDIAN MN[$1]=$MIN MX[$1]=$MAX NRUNS[$1]=$2
}

ORDER=()
if ((COLD)); then
    run "sha256sum, cold" "$SLOW_RUNS" 0 "$DROP" "$SHA_SEQ"
    run "first plan, cold" "$SLOW_RUNS" 0 "rm -f '$CACHE'; $DROP" "$PLAN"
    ORDER+=("sha256sum, cold" "first plan, cold")
fi
run "sha256sum, warm" "$SLOW_RUNS" 1 "" "$SHA_SEQ"
run "sha256sum -P$(nproc), warm" "$SLOW_RUNS" 1 "" "$SHA_PAR"
run "first plan, warm" "$SLOW_RUNS" 1 "rm -f '$CACHE'" "$PLAN"
ORDER+=("sha256sum, warm" "sha256sum -P$(nproc), warm" "first plan, warm")

# The last first-plan run left a complete cache; make sure of it before timing second plans.
plan_says_no_changes "$PROJECT"
[[ $(grep -o '"stamp"' "$CACHE" | wc -l) -eq $((2 * COUNT)) ]] || die "the stat cache is incomplete"
if ((COLD)); then
    run "second plan, cold" "$SLOW_RUNS" 0 "$DROP" "$PLAN"
    ORDER+=("second plan, cold")
fi
run "second plan, warm" "$RUNS" 3 "" "$PLAN"
ORDER+=("second plan, warm")
plan_says_no_changes "$PROJECT"

echo
echo "plan-stat-cache: $COUNT models × 1 file × $SIZE bytes = $(awk -v b=$TOTAL 'BEGIN { printf "%.2f GB", b / 1e9 }'), $(nproc) cores, $("$MODELCTL" --version)"
echo "stat cache: $(stat -c %s "$CACHE") bytes, $((2 * COUNT)) entries"
printf '%-26s %12s %12s %12s %6s %12s\n' "measurement" "median" "min" "max" "runs" "throughput"
for k in "${ORDER[@]}"; do
    tp=$(awk -v b=$TOTAL -v t="${MED[$k]}" 'BEGIN { printf "%.2f GB/s", b / t / 1e9 }')
    [[ $k == second* ]] && tp="-"
    printf '%-26s %12s %12s %12s %6s %12s\n' "$k" "$(fmt_time "${MED[$k]}")" \
        "$(fmt_time "${MN[$k]}")" "$(fmt_time "${MX[$k]}")" "${NRUNS[$k]}" "$tp"
done
echo
second=${MED["second plan, warm"]}
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f %%", 100 * a / b }'; }
if ((COLD)); then
    echo "second plan (warm) / sha256sum (cold): $(pct "$second" "${MED["sha256sum, cold"]}")"
fi
echo "second plan (warm) / sha256sum (warm): $(pct "$second" "${MED["sha256sum, warm"]}")"
echo "first plan (warm) / sha256sum (warm):  $(pct "${MED["first plan, warm"]}" "${MED["sha256sum, warm"]}")"
verdict=$(awk -v a="$second" -v b="${MED["sha256sum, warm"]}" 'BEGIN { print (a / b <= 0.01) ? "PASS" : "FAIL" }')
echo "target: second plan ≤ 1 % of sha256sum (warm page cache, the stricter baseline): $verdict"
