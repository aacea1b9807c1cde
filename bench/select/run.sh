#!/usr/bin/env bash
# Selection benchmark: release `cpeal select` next to scikit-activeml 1.0.1 and plain NumPy, in the same run.
# Writes bench/results/select-<date>.md. Environment:
#   DATA=/tmp/cpeal-bench-select   where the generated inputs live (~5.5 GB)
#   SLOW_TIMEOUT=600               seconds allowed to each slow Python case (scikit-activeml, NumPy BADGE)
#   SKIP_SLOW=1                    skip scikit-activeml K=1000 and the NumPy BADGE cases
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DATA=${DATA:-/tmp/cpeal-bench-select}
SLOW_TIMEOUT=${SLOW_TIMEOUT:-600}
SKIP_SLOW=${SKIP_SLOW:-0}
DATE=$(date -u +%Y-%m-%d)
OUT_MD="$ROOT/bench/results/select-$DATE.md"
WORK="$DATA/runs"
mkdir -p "$WORK" "$ROOT/bench/results"

[ -x /usr/bin/time ] || apt-get install -y time >/dev/null
if [ ! -x "$HERE/.venv/bin/python" ]; then python3 -m venv "$HERE/.venv"; fi
"$HERE/.venv/bin/pip" install -q numpy scikit-activeml==1.0.1
PY="$HERE/.venv/bin/python"

(cd "$ROOT" && cargo build --release --bin cpeal)
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/cpeal"

"$PY" "$HERE/gen.py" "$DATA"

ROWS=()
# measure LABEL TIMEOUT CMD... : wall time and peak RSS via /usr/bin/time -v; the inputs are read once first so
# that every tool starts from a warm page cache.
measure() {
    local label=$1 limit=$2
    shift 2
    local log="$WORK/$(echo "$label" | tr -c 'A-Za-z0-9' _).log"
    local rc=0
    /usr/bin/time -v -o "$log.time" timeout "$limit" "$@" >"$log" 2>&1 || rc=$?
    local wall rss cpu
    cpu=$(awk -F': ' '/User time|System time/ {s+=$2} END {printf "%.2f", s}' "$log.time")
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$log.time")
    rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.2f", $2/1048576}' "$log.time")
    local status=ok
    if [ "$rc" = 124 ]; then status="timeout ${limit}s"; elif [ "$rc" != 0 ]; then status="failed (rc $rc)"; fi
    echo "$label: ${wall}s (cpu ${cpu}s) ${rss} GB $status" >&2
    LAST_WALL=$wall
    ROWS+=("| $label | $wall | $cpu | $rss | $status |")
}
warm() { cat "$@" >/dev/null; }

warm "$DATA/features.npy" "$DATA/gauss.npy" "$DATA/logits_c10.npy" "$DATA/logits_c100.npy"
for K in 100 1000; do
    measure "coreset K=$K: cpeal (clustered features)" 600 \
        "$BIN" select --strategy coreset --budget $K --features "$DATA/features.npy" --seed 0 --out "$WORK/cpeal_coreset_$K.txt"
    FIRST=$(head -n1 "$WORK/cpeal_coreset_$K.txt")
    measure "coreset K=$K: cpeal (i.i.d. Gaussian features)" 600 \
        "$BIN" select --strategy coreset --budget $K --features "$DATA/gauss.npy" --seed 0 --out "$WORK/cpeal_gauss_$K.txt"
    export FIRST
    measure "coreset K=$K: NumPy f64 greedy (same first centre)" "$SLOW_TIMEOUT" \
        "$PY" "$HERE/py_bench.py" np-coreset "$DATA" $K "$WORK/np_coreset_$K.txt"
    if cmp -s "$WORK/cpeal_coreset_$K.txt" "$WORK/np_coreset_$K.txt"; then SAME="identical"; else SAME="differs"; fi
    ROWS+=("| coreset K=$K: cpeal order vs NumPy f64 greedy | | | | $SAME |")
    if [ "$K" = 100 ] || [ "$SKIP_SLOW" = 0 ]; then
        measure "coreset K=$K: scikit-activeml CoreSet" "$SLOW_TIMEOUT" \
            "$PY" "$HERE/py_bench.py" skal-coreset "$DATA" $K "$WORK/skal_coreset_$K.txt"
    fi
done
for C in 10 100; do
    for K in 100 1000; do
        measure "badge C=$C K=$K: cpeal" 600 "$BIN" select --strategy badge --budget $K --logits "$DATA/logits_c$C.npy" \
            --features "$DATA/features.npy" --seed 0 --out "$WORK/cpeal_badge_${C}_$K.txt"
    done
    if [ "$SKIP_SLOW" = 0 ] && [ "$C" = 10 ]; then
        measure "badge C=$C K=100: NumPy dense embeddings" "$SLOW_TIMEOUT" \
            "$PY" "$HERE/py_bench.py" np-badge "$DATA" 100 $C "$WORK/np_badge_$C.txt"
        measure "badge C=$C K=100: scikit-activeml Badge" "$SLOW_TIMEOUT" \
            "$PY" "$HERE/py_bench.py" skal-badge "$DATA" 100 $C "$WORK/skal_badge_$C.txt"
    fi
done
warm "$DATA/logits_1m.npy"
BYTES=$(stat -c %s "$DATA/logits_1m.npy")
measure "entropy top-1000 of 1M x 1000 f32: cpeal" 600 \
    "$BIN" select --strategy entropy --budget 1000 --logits "$DATA/logits_1m.npy" --out "$WORK/cpeal_entropy.txt"
ROWS+=("| entropy: cpeal throughput (file bytes / wall) | | | | $(awk -v b="$BYTES" -v t="$LAST_WALL" 'BEGIN{printf "%.1f GB/s", b/t/1e9}') |")
measure "entropy top-1000 of 1M x 1000 f32: NumPy chunked" "$SLOW_TIMEOUT" \
    "$PY" "$HERE/py_bench.py" np-entropy "$DATA" 1000 "$WORK/np_entropy.txt"
ROWS+=("| entropy: NumPy throughput (file bytes / wall) | | | | $(awk -v b="$BYTES" -v t="$LAST_WALL" 'BEGIN{printf "%.1f GB/s", b/t/1e9}') |")
if cmp -s <(sort "$WORK/cpeal_entropy.txt") <(sort "$WORK/np_entropy.txt"); then SAME="identical"; else SAME="differs"; fi
ROWS+=("| entropy: cpeal top-1000 set vs NumPy | | | | $SAME |")

{
    echo "# Selection benchmark ($DATE)"
    echo
    echo "- machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores visible; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- cpeal $(git -C "$ROOT" rev-parse --short HEAD), release build; scikit-activeml 1.0.1, NumPy $("$PY" -c 'import numpy; print(numpy.__version__)')"
    echo "- N = 100,000, D = 768 (f32 .npy, clustered: 100 classes + noise, unless noted); wall time and peak RSS from /usr/bin/time -v"
    echo "  (RSS includes the memory-mapped input pages a tool touched); inputs warm in the page cache"
    echo "- the machine is shared: other jobs compete for the 2 cores, so wall time exceeds CPU time / 2"
    echo
    echo "| case | wall (s) | CPU user+sys (s) | peak RSS (GB) | status / note |"
    echo "|---|---:|---:|---:|---|"
    printf '%s\n' "${ROWS[@]}"
} >"$OUT_MD"
echo "wrote $OUT_MD"
