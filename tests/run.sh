#!/usr/bin/env bash
# Runs every test program of the Makefile's TEST_BINS list and every test script
# (tests/*/test_*.sh|.py), after printing the plan: what will run and which inputs are missing (the
# checks needing them report one "skip" line each). Aggregates the programs' "ok - / not ok - /
# skip - " lines into one final "N passed, M failed, K skipped" line.
# A program that exits non-zero without reporting a failing case (a crash) counts as one failure.
# `make test` passes TEST_BINS; run by hand, the list comes from `make print-test-bins`. Any other
# $BUILD/tests/test_* (left over from an older list) is not run.
set -u
cd "$(dirname "$0")/.."
export BUILD=${BUILD:-build} BIN=${BIN:-bin} PYTHON=${PYTHON:-/usr/bin/python3}
export CNN_CACHE=${CNN_CACHE:-$PWD/cache}
export CNN_SHARED=${CNN_SHARED:-$PWD/../shared}
mkdir -p "$CNN_CACHE"
log_dir=$BUILD/test-logs
mkdir -p "$log_dir"

TEST_BINS=${TEST_BINS:-$(make -s --no-print-directory BUILD="$BUILD" print-test-bins)}
scripts=()
for t in tests/*/test_*.sh tests/*/test_*.py; do
    [ -f "$t" ] && scripts+=("$t")
done

# ---- plan
echo "plan: $(echo $TEST_BINS | wc -w) test programs, ${#scripts[@]} test scripts"
for t in $TEST_BINS; do echo "    $t"; done
for t in "${scripts[@]}"; do echo "    $t"; done
stale=()
for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    case " $TEST_BINS " in *" $t "*) ;; *) stale+=("$t") ;; esac
done
[ "${#stale[@]}" -eq 0 ] || echo "not run (not in the Makefile's TEST_BINS, stale): ${stale[*]}"
if "$PYTHON" -c 'import torch, torchvision' >/dev/null 2>&1; then
    echo "PyTorch: $("$PYTHON" -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__)' 2>/dev/null)"
else
    echo "PyTorch: not importable by $PYTHON: the reference checks skip, one skip line each (make deps installs it)"
fi
[ -f "$CNN_CACHE/ref/manifest.json" ] && echo "reference data: $CNN_CACHE/ref" \
    || echo "reference data: none in $CNN_CACHE/ref (make ref; needs PyTorch): the checks on it skip"
[ -d "$CNN_SHARED/weights" ] && echo "shared weights and photos: $CNN_SHARED" \
    || echo "shared weights and photos: $CNN_SHARED absent: the real-weight and photo checks skip"
echo

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

for t in $TEST_BINS; do
    if [ -x "$t" ]; then
        run_one "$(basename "$t")" "$t"
    else
        run_one "$(basename "$t")" sh -c "echo 'not ok - $(basename "$t"): $t not built'; exit 1"
    fi
done
for t in "${scripts[@]}"; do
    case "$t" in
        *.sh) run_one "$(basename "$t")" bash "$t" ;;
        *.py) run_one "$(basename "$t")" "$PYTHON" "$t" ;;
    esac
done
echo "logs: $log_dir"
echo "$n_pass passed, $n_fail failed, $n_skip skipped"
[ "$n_fail" -eq 0 ]
