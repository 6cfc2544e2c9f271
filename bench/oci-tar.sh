#!/usr/bin/env bash
# oci-tar.sh: what an `oci:` model packed as one uncompressed tar layer costs against the same
# files as raw layers (one per file, what `modelctl push` writes), and against the standard
# tools doing the same work by hand.
#
# Method, all on 127.0.0.1 with Debian's docker-registry:
#   1. FILES files of random bytes (SIZE MiB in all) are uploaded with curl through the
#      registry's API twice: as `bench/raw:v1`, one `…weight.v1.raw` layer per file annotated
#      with its path, and as `bench/tar:v1`, one `…weight.v1.tar` layer (`tar -cf` of the
#      files);
#   2. for each artifact, a project declaring it as an `oci:` source: `modelctl lock` timed once
#      (for the tar layer this downloads and lists it), then `modelctl apply --yes` timed RUNS
#      times, the store removed before each (median reported);
#   3. the references, timed the same way: for raw layers, `curl -o` of each blob then
#      `sha256sum` of the files; for the tar layer, `curl -o` of the layer, `sha256sum` of it,
#      `tar -xf` and `sha256sum` of the extracted files: what apply does (download, check the
#      layer, extract, check each file), by hand.
# Reported: both lock times; both apply medians; tar apply / raw apply; each apply / its
# reference; the load average before and after (the machine may be shared).
#
# Usage: bench/oci-tar.sh [-b BINARY] [-s SIZE_MIB] [-f FILES] [-n RUNS]
#   -b  the modelctl binary (default: target/release/modelctl; built when missing)
#   -s  total size of the files in MiB (default 512)
#   -f  number of files (default 4)
#   -n  timed applies of each kind (default 3)
# Needs /usr/bin/docker-registry (apt-get install docker-registry), curl, jq, openssl, tar and
# bc (installed with apt-get when missing, as root). Scratch data (about 6 × SIZE MiB) lives
# under $TMPDIR (default /tmp) and is removed on exit, with the registry stopped.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

binary="" size_mib=512 files=4 runs=3
while getopts b:s:f:n:h opt; do
  case $opt in
    b) binary=$OPTARG ;;
    s) size_mib=$OPTARG ;;
    f) files=$OPTARG ;;
    n) runs=$OPTARG ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
  esac
done
if [[ -z $binary && -x $REPO_ROOT/target/release/modelctl ]]; then
  binary=$REPO_ROOT/target/release/modelctl
fi
resolve_binary "$binary"

install_missing curl jq openssl tar bc docker-registry

make_workdir
stop_registry() {
  if [[ -n ${REGISTRY_PID:-} ]]; then
    kill "$REGISTRY_PID" 2>/dev/null || true
    wait "$REGISTRY_PID" 2>/dev/null || true
  fi
  cleanup
}
trap stop_registry EXIT
require_space "$WORK" $((6 * size_mib * 1048576 + 100000000))
start_registry "$WORK/registry" "$WORK/registry.log"
base=http://127.0.0.1:$REGISTRY_PORT

# --- the files and the two artifacts ------------------------------------------------------
each=$((size_mib * 1048576 / files))
mkdir -p "$WORK/files/weights"
for ((i = 0; i < files; i++)); do
  head -c "$each" /dev/zero |
    openssl enc -aes-128-ctr -K "$(openssl rand -hex 16)" -iv "$(openssl rand -hex 16)" \
      >"$WORK/files/weights/part$i.safetensors"
done
tar -cf "$WORK/layer.tar" -C "$WORK/files" weights
printf '{}' >"$WORK/config.json"

push_blob() { # REPO FILE: uploads FILE (monolithic) as a blob of REPO; prints its descriptor digest
  local repo=$1 file=$2 digest location sep
  digest=sha256:$(sha256sum "$file" | cut -d' ' -f1)
  location=$(curl -sf -X POST -D - -o /dev/null "$base/v2/$repo/blobs/uploads/" |
    tr -d '\r' | awk 'tolower($1) == "location:" { print $2 }')
  [[ $location == http* ]] || location=$base$location
  sep='?'
  [[ $location == *\?* ]] && sep='&'
  curl -sf -X PUT -H 'Content-Type: application/octet-stream' --data-binary @"$file" \
    "$location${sep}digest=$digest" >/dev/null || die "uploading $file to $repo failed"
  echo "$digest"
}

descriptor() { # REPO MEDIA_TYPE FILE [PATH]: FILE uploaded to REPO, as a descriptor annotated with PATH
  local digest
  digest=$(push_blob "$1" "$3")
  jq -n --arg m "$2" --arg d "$digest" --argjson s "$(stat -c %s "$3")" --arg p "${4:-}" \
    '{mediaType: $m, digest: $d, size: $s} + (if $p == "" then {} else {annotations: {"org.cncf.model.filepath": $p}} end)'
}

push_artifact() { # REPO LAYERS_JSON: the manifest of LAYERS under REPO:v1
  local config
  config=$(descriptor "$1" application/vnd.cncf.model.config.v1+json "$WORK/config.json")
  jq -n --argjson c "$config" --argjson l "$2" \
    '{schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
      artifactType: "application/vnd.cncf.model.manifest.v1+json", config: $c, layers: $l}' \
    >"$WORK/manifest.json"
  curl -sf -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
    --data-binary @"$WORK/manifest.json" "$base/v2/$1/manifests/v1" >/dev/null ||
    die "pushing the manifest of $1 failed"
}

layers=()
for ((i = 0; i < files; i++)); do
  layers+=("$(descriptor bench/raw application/vnd.cncf.model.weight.v1.raw \
    "$WORK/files/weights/part$i.safetensors" "weights/part$i.safetensors")")
done
push_artifact bench/raw "$(printf '%s\n' "${layers[@]}" | jq -s .)"
push_artifact bench/tar "[$(descriptor bench/tar application/vnd.cncf.model.weight.v1.tar "$WORK/layer.tar")]"
tar_digest=sha256:$(sha256sum "$WORK/layer.tar" | cut -d' ' -f1)

# --- the projects -------------------------------------------------------------------------
for kind in raw tar; do
  mkdir -p "$WORK/$kind"
  printf 'version: 1\nstore: ./store\nmodels:\n  m:\n    type: llm\n    source: { oci: "%s/bench/%s:v1" }\n' \
    "$base" "$kind" >"$WORK/$kind/models.yaml"
done

# --- the references -----------------------------------------------------------------------
cat >"$WORK/ref-raw.sh" <<SH
set -e
rm -rf "$WORK/ref" && mkdir -p "$WORK/ref"
for ((i = 0; i < $files; i++)); do
  d=\$(jq -r ".layers[\$i].digest" "$WORK/raw-manifest.json")
  curl -sf -o "$WORK/ref/part\$i" "$base/v2/bench/raw/blobs/\$d"
done
sha256sum "$WORK"/ref/part* >/dev/null
SH
curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$base/v2/bench/raw/manifests/v1" \
  >"$WORK/raw-manifest.json"
cat >"$WORK/ref-tar.sh" <<SH
set -e
rm -rf "$WORK/ref" && mkdir -p "$WORK/ref/out"
curl -sf -o "$WORK/ref/layer.tar" "$base/v2/bench/tar/blobs/$tar_digest"
sha256sum "$WORK/ref/layer.tar" >/dev/null
tar -xf "$WORK/ref/layer.tar" -C "$WORK/ref/out"
find "$WORK/ref/out" -type f -exec sha256sum {} + >/dev/null
SH


echo "== $(uptime)"
echo "== $("$MODELCTL" --version); $files files, $((each * files)) bytes; $runs runs"
declare -A lock_time apply_median ref_median
for kind in raw tar; do
  start=$(now)
  (cd "$WORK/$kind" && "$MODELCTL" --color never lock >"$WORK/$kind/lock.log" 2>&1) ||
    { tail -20 "$WORK/$kind/lock.log" >&2; die "lock of the $kind artifact failed"; }
  lock_time[$kind]=$(since "$start")
  measure "apply ($kind layers)" "$runs" 0 "rm -rf '$WORK/$kind/store'" \
    "$MODELCTL -C $WORK/$kind --color never -q apply --yes"
  apply_median[$kind]=$MEDIAN
  plan_says_no_changes "$WORK/$kind"
  measure "reference ($kind)" "$runs" 0 "" "bash $WORK/ref-$kind.sh"
  ref_median[$kind]=$MEDIAN
done

printf '\n%-6s %10s %12s %14s %17s\n' layers "lock s" "apply s" "reference s" "apply / reference"
for kind in raw tar; do
  printf '%-6s %10.2f %12.2f %14.2f %17s\n' "$kind" "${lock_time[$kind]}" "${apply_median[$kind]}" \
    "${ref_median[$kind]}" "$(ratio "${apply_median[$kind]}" "${ref_median[$kind]}")"
done
printf 'tar apply / raw apply: %s\n' "$(ratio "${apply_median[tar]}" "${apply_median[raw]}")"
echo "== $(uptime)"
