#!/usr/bin/env bash
# Runs every test program ($BUILD/tests/test_*) and test script (tests/*/test_*.sh|.py) and
# aggregates their "ok - / not ok - / skip - " lines into one final "N passed, M failed" line.
# A program that exits non-zero without reporting a failing case (a crash) counts as one failure.
set -u
cd "$(dirname "$0")/.."
export BUILD=${BUILD:-build} BIN=${BIN:-bin} PYTHON=${PYTHON:-/usr/bin/python3}
export CNN_CACHE=${CNN_CACHE:-$PWD/cache}
export CNN_SHARED=${CNN_SHARED:-$PWD/../shared}
mkdir -p "$CNN_CACHE"
log_dir=$BUILD/test-logs
mkdir -p "$log_dir"

n_pass=0 n_fail=0 n_skip=0
run_one() {
    local name=$1; shift
    local log="$log_dir/$name.log"
    local t0=$SECONDS
    "$@" >"$log" 2>&1
    local rc=$?
    local p f s
    p=$(grep -c '^ok - ' "$log")
    f=$(grep -c '^not ok - ' "$log")
    s=$(grep -c '^skip - ' "$log")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "not ok - $name: exited with status $rc without reporting a failed case" >>"$log"
        f=1
    fi
    n_pass=$((n_pass + p)); n_fail=$((n_fail + f)); n_skip=$((n_skip + s))
    printf '%-28s %4d passed %3d failed %3d skipped  (%ds)\n' "$name" "$p" "$f" "$s" $((SECONDS - t0))
    grep -E '^(not ok|skip) - ' "$log" | sed 's/^/    /'
    if [ "$f" -ne 0 ]; then
        grep -E '^#   ' "$log" | head -20 | sed 's/^/    /'
        tail -5 "$log" | sed 's/^/    | /'
    fi
}

for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    run_one "$(basename "$t")" "$t"
done
for t in tests/*/test_*.sh tests/*/test_*.py; do
    [ -f "$t" ] || continue
    case "$t" in
        *.sh) run_one "$(basename "$t")" bash "$t" ;;
        *.py) run_one "$(basename "$t")" "$PYTHON" "$t" ;;
    esac
done
echo "logs: $log_dir"
echo "$n_pass passed, $n_fail failed, $n_skip skipped"
[ "$n_fail" -eq 0 ]
