# Shared helpers for the scripts in bench/. Sourced, not run.
#
# Provides: option parsing for -b (binary), a scratch directory removed on exit, timing with
# hyperfine (or a fallback loop), page-cache dropping, and `make_project`, which lays out a
# complete modelctl project (models.yaml, models.lock, store) exactly as modelctl expects.

# shellcheck shell=bash

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$BENCH_DIR/.." && pwd)

# The settings must come from the generated project, never from the caller's environment.
unset MODELCTL_MANIFEST MODELCTL_STORE MODELCTL_CACHE
# No script links an earlier run's bytes from the user's machine cache: each measures its own
# downloads and stores. bench/projects.sh, which measures the cache, points it at its scratch
# directory instead.
export MODELCTL_NO_CACHE=1

die() {
    echo "error: $*" >&2
    exit 1
}

note() {
    echo "== $*" >&2
}

# resolve_binary [PATH]: sets MODELCTL to an absolute path of a release binary. Without PATH,
# builds the repository with `cargo build --release` and takes target/release/modelctl.
resolve_binary() {
    if [[ -n "${1:-}" ]]; then
        [[ -x "$1" ]] || die "\`$1\` is not an executable file"
        MODELCTL=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
    else
        note "building the release binary in $REPO_ROOT"
        (cd "$REPO_ROOT" && cargo build --release --quiet)
        MODELCTL="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/modelctl"
        [[ -x "$MODELCTL" ]] || die "no binary at $MODELCTL after the build"
    fi
    note "modelctl: $MODELCTL ($("$MODELCTL" --version))"
}

# make_workdir: sets WORK to a new scratch directory under $TMPDIR (default /tmp), removed on
# exit unless KEEP=1.
make_workdir() {
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/modelctl-bench.XXXXXX")
    trap cleanup EXIT
    trap 'exit 130' INT TERM
}

cleanup() {
    if [[ -n "${WORK:-}" && -d "$WORK" ]]; then
        if [[ "${KEEP:-0}" == 1 ]]; then
            note "kept $WORK"
        else
            rm -rf "$WORK"
        fi
    fi
}

# require_space DIR BYTES: refuses to start when DIR's filesystem has less than BYTES free.
require_space() {
    local avail
    avail=$(df -P -B1 "$1" | awk 'NR == 2 { print $4 }')
    if ((avail < $2)); then
        die "$1 has $((avail / 1000000)) MB free; this run needs $(($2 / 1000000)) MB"
    fi
}

# drop_caches: empties the kernel page cache; fails (returns 1) when not permitted.
drop_caches() {
    sync
    (echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null
}

can_drop_caches() {
    drop_caches
}

# install_missing PACKAGE...: installs with apt-get (as root) the Debian packages whose
# command of the same name is not on PATH (docker-registry's is /usr/bin/docker-registry).
install_missing() {
    local missing=() tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || [[ -x /usr/bin/$tool ]] || missing+=("$tool")
    done
    ((${#missing[@]})) || return 0
    note "installing ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# now: seconds since the epoch, to the nanosecond; since T: seconds elapsed since `now` gave T
# (needs bc).
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }

# free_port: a TCP port of 127.0.0.1 free at the time of asking.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null ||
        echo $((20000 + RANDOM % 20000))
}

# start_registry DIR LOG: Debian's docker-registry (the CNCF distribution server) on a free
# port of 127.0.0.1, storing under DIR and writing its JSON log (every response, with
# `http.response.written`) to LOG, configured as tests/cli/oci_registry.rs does. Sets
# REGISTRY_PORT and REGISTRY_PID (the caller stops it); fails when it does not answer.
start_registry() {
    local dir=$1 log=$2
    mkdir -p "$dir"
    REGISTRY_PORT=$(free_port)
    cat >"$dir.yml" <<YAML
version: 0.1
log: { level: info, formatter: json, accesslog: { disabled: true } }
storage:
  filesystem:
    rootdirectory: $dir
http:
  addr: 127.0.0.1:$REGISTRY_PORT
YAML
    /usr/bin/docker-registry serve "$dir.yml" >/dev/null 2>"$log" &
    REGISTRY_PID=$!
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$REGISTRY_PORT/v2/" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "docker-registry did not start (see $log)"
}

# BENCH_NO_HYPERFINE=1 forces the fallback loop.
HAVE_HYPERFINE=0
if [[ "${BENCH_NO_HYPERFINE:-0}" != 1 ]] && command -v hyperfine >/dev/null 2>&1; then
    HAVE_HYPERFINE=1
fi

# measure NAME RUNS WARMUP PREPARE COMMAND
#   Times COMMAND RUNS times after WARMUP untimed runs, running PREPARE before every run.
#   COMMAND is a plain command line (words, single quotes; no pipes or redirections: it runs
#   without a shell, so the ms-scale figures are not blurred by shell start-up); PREPARE is
#   shell text, may be empty. Output is discarded. Sets MEDIAN, MIN and MAX, in seconds.
#   Uses hyperfine when installed, otherwise a loop timed with `date +%s%N`.
measure() {
    local name=$1 runs=$2 warmup=$3 prepare=$4 cmd=$5
    local prep_script="$WORK/prepare.sh"
    printf '%s\n' "$prepare" >"$prep_script"
    if ((HAVE_HYPERFINE)); then
        local csv="$WORK/hyperfine.csv"
        local args=(--shell=none --style basic --runs "$runs" --warmup "$warmup" --export-csv "$csv" -n "$name")
        [[ -n "$prepare" ]] && args+=(--prepare "bash '$prep_script'")
        hyperfine "${args[@]}" "$cmd" >&2
        # command,mean,stddev,median,user,system,min,max; the name may hold commas, so count
        # fields from the end.
        read -r MEDIAN MIN MAX < <(awk -F, 'NR == 2 { print $(NF - 4), $(NF - 1), $NF }' "$csv")
        rm -f "$csv"
    else
        local i t0 t1 times=()
        for ((i = 0; i < warmup + runs; i++)); do
            if [[ -n "$prepare" ]]; then bash "$prep_script"; fi
            t0=$(date +%s%N)
            eval "$cmd" >/dev/null 2>&1
            t1=$(date +%s%N)
            if ((i >= warmup)); then times+=("$((t1 - t0))"); fi
        done
        read -r MEDIAN MIN MAX < <(printf '%s\n' "${times[@]}" | sort -n | awk '
            { t[NR] = $1 / 1e9 }
            END {
                m = (NR % 2) ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2
                print m, t[1], t[NR]
            }')
        echo "  $name: median $(fmt_time "$MEDIAN") (min $(fmt_time "$MIN"), max $(fmt_time "$MAX"), $runs runs)" >&2
    fi
    rm -f "$prep_script"
}

# fmt_time SECONDS: human-readable.
fmt_time() {
    awk -v t="$1" 'BEGIN {
        if (t >= 1) printf "%.2f s", t
        else if (t >= 0.001) printf "%.1f ms", t * 1000
        else printf "%.0f µs", t * 1e6
    }'
}

# ratio A B: A / B with 4 significant digits.
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4g", a / b }'
}

# make_project DIR COUNT SIZE
#   Creates DIR/models.yaml, DIR/models.lock and DIR/store/ holding COUNT models, each one
#   file of SIZE bytes with distinct content, as modelctl lays them out:
#     store/blobs/sha256/<2 hex>/<64 hex>       the bytes, named by their sha256
#     store/models/<type>/<id>/weights.bin      a hardlink to the blob
#   Every model has an url source with its sha256 (`url: file://<its blob>`), so
#   `modelctl lock` pins it from a stat alone: no network, no hashing. The content is an
#   AES-128-CTR keystream (fast, incompressible, distinct per file), cut into SIZE chunks.
#   Sets BLOB_LIST to a file listing the blob paths, one per line.
make_project() {
    local dir=$1 count=$2 size=$3
    local store="$dir/store" stage="$dir/stage" width=4
    ((${#count} > width)) && width=${#count}
    mkdir -p "$store/blobs/sha256" "$store/models" "$stage"

    local key iv
    key=$(openssl rand -hex 16)
    iv=$(openssl rand -hex 16)
    head -c "$((count * size))" /dev/zero |
        openssl enc -aes-128-ctr -K "$key" -iv "$iv" |
        split -b "$size" -d -a "$width" - "$stage/c"

    # sha256 of every chunk, on every core; "hash  name" sorted by name.
    (cd "$stage" && printf '%s\0' c* | xargs -0 -P "$(nproc)" -n 32 sha256sum) |
        sort -k2 >"$dir/sums"
    [[ $(wc -l <"$dir/sums") -eq $count ]] || die "expected $count chunks"
    [[ $(cut -d' ' -f1 "$dir/sums" | sort -u | wc -l) -eq $count ]] ||
        die "two chunks have the same content"

    local types=(llm image_gen tts music)
    cut -c1-2 "$dir/sums" | sort -u | sed "s|^|$store/blobs/sha256/|" | xargs mkdir -p
    for ((i = 0; i < count; i++)); do
        printf '%s/models/%s/m%0*d\n' "$store" "${types[i % 4]}" "$width" "$i"
    done | xargs mkdir -p

    BLOB_LIST="$dir/blobs.txt"
    : >"$BLOB_LIST"
    {
        echo "version: 1"
        echo "store: ./store"
        echo "models:"
        local i=0 hash name id type blob
        while read -r hash name; do
            printf -v id 'm%0*d' "$width" "$i"
            type=${types[i % 4]}
            blob="$store/blobs/sha256/${hash:0:2}/$hash"
            mv "$stage/$name" "$blob"
            ln "$blob" "$store/models/$type/$id/weights.bin"
            echo "$blob" >>"$BLOB_LIST"
            printf '  %s:\n    type: %s\n    source:\n      url: file://%s\n      sha256: %s\n      file: weights.bin\n' \
                "$id" "$type" "$blob" "$hash"
            i=$((i + 1))
        done <"$dir/sums"
    } >"$dir/models.yaml"
    rmdir "$stage"
    rm -f "$dir/sums"

    "$MODELCTL" --manifest "$dir/models.yaml" --color never lock --offline >"$dir/lock.log" 2>&1 ||
        { cat "$dir/lock.log" >&2; die "modelctl lock failed"; }
    [[ -s "$dir/models.lock" ]] || die "modelctl lock wrote no models.lock"
}

# plan_says_no_changes DIR [ARGS...]: runs `modelctl plan --offline` on DIR's project and
# fails, showing the output, unless it reports no changes.
plan_says_no_changes() {
    local dir=$1
    shift
    local out
    if ! out=$("$MODELCTL" --manifest "$dir/models.yaml" --color never "$@" plan --offline --detailed-exitcode 2>&1); then
        printf '%s\n' "$out" | head -40 >&2
        die "\`modelctl plan --offline\` did not report \"No changes\" on a complete store"
    fi
    grep -q "No changes" <<<"$out" || {
        printf '%s\n' "$out" | head -40 >&2
        die "\`modelctl plan --offline\` exited 0 but did not say \"No changes\""
    }
}
