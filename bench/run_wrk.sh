#!/usr/bin/env bash
# Service under load: starts `cnnserve serve` on 127.0.0.1 (a free port chosen by the server), then
# for each model, image and connection count runs wrk for a fixed, bounded time with
# bench/classify.lua, and appends one JSON line per case to OUT (requests/s, latency percentiles,
# non-2xx count, socket errors, the server's own per-stage timings averaged over the responses, and
# /proc/loadavg before the case). Stops the server (SIGTERM) on exit.
#
# usage: run_wrk.sh --bin BIN --weights-dir DIR --models a,b --images A.jpg,B.jpg --out FILE.jsonl
#                   [--connections 1,4,16,64] [--duration 10] [--log FILE]
#                   [--server-flags "FLAGS"] [--tag NAME]
# --server-flags: more `serve` flags (split on spaces), e.g. "--batch-max 1"; --tag: a "config" field
# of each line (the batching comparison runs the script once per configuration).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bin= weights= models= images= out= conns=1,4,16,64 duration=10 log= server_flags= tag=
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) bin=$2 ;;
        --weights-dir) weights=$2 ;;
        --models) models=$2 ;;
        --images) images=$2 ;;
        --out) out=$2 ;;
        --connections) conns=$2 ;;
        --duration) duration=$2 ;;
        --log) log=$2 ;;
        --server-flags) server_flags=$2 ;;
        --tag) tag=$2 ;;
        *) echo "run_wrk: unknown flag $1" >&2; exit 2 ;;
    esac
    shift 2
done
if [ -z "$bin" ] || [ -z "$weights" ] || [ -z "$models" ] || [ -z "$images" ] || [ -z "$out" ]; then
    echo "usage: run_wrk.sh --bin BIN --weights-dir DIR --models a,b --images A.jpg,B.jpg --out FILE.jsonl" >&2
    exit 2
fi
for tool in wrk curl; do
    if ! command -v "$tool" >/dev/null; then
        echo "run_wrk: skipped: $tool is not installed (apt-get install $tool)" >&2
        exit 3
    fi
done
log=${log:-$(dirname "$out")/server.log}
: >"$out"

# Bodies of up to 64 x a 12-megapixel JPEG queue at once: raise the queue and buffer limits so the
# load test measures throughput, not the (separately tested) 503 back-pressure.
"$bin" serve --host 127.0.0.1 --port 0 --weights-dir "$weights" --models "$models" --queue 256 \
    --max-buffered-bytes 2G --timeout 60 --drain-timeout 10 --log-format json $server_flags >"$log" 2>&1 &
server_pid=$!
stop_server() {
    if kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 1 150); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    wait "$server_pid" 2>/dev/null || true
}
trap stop_server EXIT

port=
for _ in $(seq 1 1200); do # up to 120 s to load and warm up every model
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "run_wrk: the server exited during start-up; its log ($log):" >&2
        tail -n 20 "$log" >&2
        exit 1
    fi
    if grep -q '"event":"ready"' "$log"; then
        port=$(grep -o '"event":"listening".*' "$log" | grep -o '"port":[0-9]*' | head -n 1 | cut -d: -f2)
        break
    fi
    sleep 0.1
done
if [ -z "$port" ]; then
    echo "run_wrk: the server was not ready within 120 s; its log ($log):" >&2
    tail -n 20 "$log" >&2
    exit 1
fi
workers=$(grep -o '"event":"listening".*' "$log" | grep -o '"workers":[0-9]*' | head -n 1 | cut -d: -f2)
echo "run_wrk: server pid $server_pid on 127.0.0.1:$port, $workers workers"

IFS=, read -r -a model_list <<<"$models"
IFS=, read -r -a image_list <<<"$images"
IFS=, read -r -a conn_list <<<"$conns"
for model in "${model_list[@]}"; do
    for image in "${image_list[@]}"; do
        url="http://127.0.0.1:$port/v1/classify?model=$model"
        # One request first: checks the case works and warms the model's worker contexts.
        status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 60 -H 'Content-Type: image/jpeg' \
            --data-binary "@$image" "$url" || true)
        for c in "${conn_list[@]}"; do
            load=$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' ,)
            case_json="\"model\":\"$model\",\"image\":\"$(basename "$image")\",\"connections\":$c,\"duration_s\":$duration,\"workers\":${workers:-0},\"loadavg_before\":[$load]${tag:+,\"config\":\"$tag\"}"
            if [ "$status" != 200 ]; then
                echo "{$case_json,\"error\":\"probe request answered HTTP $status\"}" >>"$out"
                echo "run_wrk: $model $(basename "$image") c=$c: skipped, probe request answered HTTP $status" >&2
                continue
            fi
            result=$(timeout $((duration + 60)) wrk -t1 -c"$c" -d"${duration}s" --timeout 30s \
                -s "$here/classify.lua" "$url" -- "$image" 2>&1 | grep '^WRK_JSON ' | cut -d' ' -f2- || true)
            if [ -z "$result" ]; then
                echo "{$case_json,\"error\":\"wrk gave no result\"}" >>"$out"
                echo "run_wrk: $model $(basename "$image") c=$c: wrk gave no result" >&2
                continue
            fi
            echo "{$case_json,\"wrk\":$result}" >>"$out"
            echo "run_wrk: $model $(basename "$image") c=$c: $(echo "$result" | grep -o '"requests_per_s":[0-9.]*'), $(echo "$result" | grep -o '"non_2xx":[0-9]*')"
        done
    done
done
