#!/usr/bin/env bash
# `make docker-test`: builds the Dockerfile offline with local weights, runs the image, waits for
# /readyz, classifies a photo with curl, measures image size and resident memory, then stops the
# container with its STOPSIGNAL and checks for a clean exit (status 0); then runs it again under
# `--cpus 1` and checks that the server counts 1 CPU from the cgroup quota and starts 1 worker.
# There is no Docker engine here: ../shared/tools/container-check.sh builds and runs with podman.
# Not part of `make test` (the first build takes minutes). Prints "ok - / not ok - " lines.
#
# Environment: DOCKER_WEIGHTS (dir of *.safetensors, default ../shared/weights), DOCKER_TAG,
# DOCKER_PORT (host port, default 18080), DOCKER_PHOTO, DOCKER_PHOTO_LABEL (expected in the top 5 of
# every model; empty = only check that predictions come back, e.g. for random-weight files),
# DOCKER_RUN_ARGS (extra `podman run` flags, e.g. "--memory 1g --cpus 2"), CONTAINER_CHECK.
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
weights=${DOCKER_WEIGHTS:-$root/../shared/weights}
tag=${DOCKER_TAG:-localhost/cnnserve:check}
port=${DOCKER_PORT:-18080}
photo=${DOCKER_PHOTO:-$root/../shared/data/imagenet-sample/n01443537_goldfish.JPEG}
photo_label=${DOCKER_PHOTO_LABEL-goldfish}
read -r -a run_args <<<"${DOCKER_RUN_ARGS:-}"
cc=${CONTAINER_CHECK:-$root/../shared/tools/container-check.sh}
name=cnnserve-check-$$
ctx=$root/build/docker-context

n_fail=0
ok() { echo "ok - $1"; }
not_ok() { echo "not ok - $1"; n_fail=$((n_fail + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else not_ok "$what"; fi; }
finish() {
    echo "# $n_fail failed"
    exit $((n_fail ? 1 : 0))
}

[ -x "$cc" ] || [ -f "$cc" ] || { not_ok "container-check.sh at $cc"; finish; }
n_weights=$(find "$weights" -maxdepth 1 -name '*.safetensors' 2>/dev/null | wc -l)
[ "$n_weights" -gt 0 ] || { not_ok "weights: no *.safetensors in $weights"; finish; }
[ -f "$photo" ] || { not_ok "photo $photo missing"; finish; }

# Build context: the working tree's tracked and untracked-but-not-ignored files (as a clone plus local
# edits would have), with the weights as ./weights - the context cannot reach outside its directory.
rm -rf "$ctx" && mkdir -p "$ctx/weights"
git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done |
    tar -c --null -T - | tar -x -C "$ctx"
cp "$weights"/*.safetensors "$ctx/weights/"

t0=$SECONDS
# BUILDAH_FORMAT=docker keeps HEALTHCHECK (the OCI image format has no field for it).
if BUILDAH_FORMAT=docker bash "$cc" build "$ctx" "$tag" >"$root/build/docker-build.log" 2>&1; then
    ok "image builds offline with $n_weights local weight file(s) ($((SECONDS - t0)) s, log build/docker-build.log)"
else
    tail -30 "$root/build/docker-build.log" | sed 's/^/#   /'
    not_ok "image build (log build/docker-build.log)"
    finish
fi
size=$(podman image inspect --format '{{.Size}}' "$tag")
echo "# image size: $size bytes ($((size / 1000000)) MB)"
hc=$(podman image inspect --format '{{if .Config.Healthcheck}}{{.Config.Healthcheck.Test}}{{end}}' "$tag" 2>/dev/null ||
     podman image inspect --format '{{.Healthcheck.Test}}' "$tag")
check "image keeps its HEALTHCHECK on /readyz ($hc)" grep -q /readyz <<<"$hc"

cleanup() { podman rm -f "$name" >/dev/null 2>&1; }
trap cleanup EXIT
# --read-only as in the compose file and the k8s securityContext; the image's own USER.
if ! bash "$cc" run "$tag" -d --name "$name" --read-only -p "127.0.0.1:$port:8080" "${run_args[@]}" >/dev/null; then
    not_ok "container starts"
    finish
fi
pid=$(podman inspect --format '{{.State.Pid}}' "$name")
base=http://127.0.0.1:$port

ready=
for _ in $(seq 600); do # loading + warm-up; bounded so a broken image cannot hang the check
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")" = 200 ]; then ready=1; break; fi
    [ "$(podman inspect --format '{{.State.Running}}' "$name")" = true ] || break
    sleep 0.5
done
if [ -n "$ready" ]; then ok "/readyz turns 200 ($((SECONDS - t0)) s since the build started)"; else
    podman logs "$name" 2>&1 | tail -20 | sed 's/^/#   /'
    not_ok "/readyz never turned 200"
    finish
fi
rss_idle_kb=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")

check "HEALTHCHECK passes in the container" podman healthcheck run "$name"
uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")
check "server runs as non-root uid ($uid)" test "$uid" != 0
models=$(curl -sS "$base/v1/models")
echo "# GET /v1/models: $(head -c 300 <<<"$models")"
check "/v1/models answers" grep -q '"models"' <<<"$models"
check "/metrics answers" curl -fsS -o /dev/null "$base/metrics"

# Classify the photo once with each model the image serves (multipart upload, as in the README).
for w in "$weights"/*.safetensors; do
    model=$(basename "$w" .safetensors)
    out=$(curl -sS -F "image=@$photo" "$base/v1/classify?model=$model&top_k=5")
    echo "# $model: $(head -c 400 <<<"$out")"
    if [ -n "$photo_label" ]; then
        check "classify $(basename "$photo") with $model: '$photo_label' in the top 5" \
            grep -q "\"$photo_label\"" <<<"$out"
    else
        check "classify $(basename "$photo") with $model: 5 predictions" \
            test "$(grep -o '"label"' <<<"$out" | wc -l)" = 5
    fi
done
# A short burst on every model so the memory numbers include all activation arenas.
for _ in $(seq 10); do
    for w in "$weights"/*.safetensors; do
        curl -sS -o /dev/null -F "image=@$photo" "$base/v1/classify?model=$(basename "$w" .safetensors)" &
    done
    wait
done
rss_kb=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
hwm_kb=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
echo "# resident memory: ${rss_idle_kb} kB when ready, ${rss_kb} kB after 10 bursts, peak ${hwm_kb} kB"
podman stats --no-stream --format '# podman stats: {{.MemUsage}}' "$name" 2>/dev/null

# podman stop sends the image's STOPSIGNAL (SIGTERM) and kills only after the timeout (exit 137).
podman stop -t 40 "$name" >/dev/null
code=$(podman inspect --format '{{.State.ExitCode}}' "$name")
check "STOPSIGNAL (SIGTERM) stops the server with exit status 0 (got $code)" test "$code" = 0
podman logs "$name" 2>&1 | tail -3 | sed 's/^/#   log: /'

# The same image under a CPU quota of 1 (podman run --cpus 1, as `docker run --cpus 1`): the server
# must count 1 CPU from the cgroup quota (cpu.max, or cpu.cfs_quota_us on a cgroup v1 host), not the
# host's cores, and default to 1 worker.
cpu_name=$name-cpus1
cleanup() { podman rm -f "$name" "$cpu_name" >/dev/null 2>&1; }
if bash "$cc" run "$tag" -d --name "$cpu_name" --read-only --cpus 1 -p "127.0.0.1:$port:8080" >/dev/null; then
    ready=
    for _ in $(seq 600); do
        if [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")" = 200 ]; then ready=1; break; fi
        [ "$(podman inspect --format '{{.State.Running}}' "$cpu_name")" = true ] || break
        sleep 0.5
    done
    cpus_line=$(podman logs "$cpu_name" 2>&1 | grep -m1 '"event":"cpus"')
    echo "# --cpus 1 (host: $(nproc) CPUs online): ${cpus_line:-no cpus log line}"
    check "--cpus 1: the server counts 1 CPU from the cgroup quota" \
        grep -Eq '"cpus":1,"source":"cgroup_v[12]".*"quota_cpus":1(\.0)?,' <<<"$cpus_line"
    workers=$(curl -sS "$base/v1/models" | grep -o '"workers": *[0-9]*')
    check "--cpus 1: /readyz turns 200 and /v1/models reports 1 worker ($workers)" \
        test -n "$ready" -a "${workers//[^0-9]/}" = 1
    podman stop -t 40 "$cpu_name" >/dev/null
else
    not_ok "container starts with --cpus 1"
fi
finish
