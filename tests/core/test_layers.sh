#!/usr/bin/env bash
# core/ depends downward only: from the symbols each object of $BUILD/core defines and uses (nm),
# the call graph between core's files has no cycle, and each kernel file calls only files listed
# before it in LAYERS (the order of the README's map of core/).
BUILD=${BUILD:-build}
LAYERS="cpu status kernels kernels_train kernels_bn kernels_gemm kernels_dwcb kernels_dw512 kernels_pool512 kernels_stem kernels_linear
        kernels_wino kernels_dw kernels_pwdw kernels_pool kernels_conv"

objs=("$BUILD"/core/*.o)
if [ ! -e "${objs[0]}" ] || ! command -v nm >/dev/null; then
    echo "skip - core layering: no objects in $BUILD/core or no nm (build first)"
    exit 0
fi

# edges "a b": file a calls a function or reads a variable that file b defines
declare -A def
for o in "${objs[@]}"; do
    for s in $(nm --defined-only -g "$o" | awk '{print $3}'); do def[$s]=$(basename "$o" .o); done
done
edges=$(for o in "${objs[@]}"; do
    a=$(basename "$o" .o)
    for s in $(nm -u "$o" | awk '{print $2}'); do
        b=${def[$s]:-}
        [ -n "$b" ] && [ "$b" != "$a" ] && echo "$a $b"
    done
done | sort -u)

# cycles: tsort reports them on stderr
cycle=$(printf '%s\n' "$edges" | tsort 2>&1 >/dev/null)
if [ -z "$cycle" ]; then
    echo "ok - core/ call graph between files has no cycle ($(printf '%s\n' "$edges" | grep -c .) edges)"
else
    echo "not ok - core/ call graph has a cycle: $(echo $cycle)"
fi

rank() { local i=0 l; for l in $LAYERS; do [ "$l" = "$1" ] && { echo $i; return; }; i=$((i + 1)); done; echo -1; }
bad=""
while read -r a b; do
    [ -z "$a" ] && continue
    ra=$(rank "$a") rb=$(rank "$b")
    if [ "$ra" -ge 0 ] && [ "$rb" -ge 0 ] && [ "$rb" -ge "$ra" ]; then bad="$bad $a->$b"; fi
done <<< "$edges"
if [ -z "$bad" ]; then
    echo "ok - kernel files call only the files listed before them"
else
    echo "not ok - kernel files calling a file at or above their own layer:$bad"
fi
