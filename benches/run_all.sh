#!/usr/bin/env bash
# The whole measurement behind docs/benchmarks.md, in one run: for each
# global allocator (system, then mimalloc; benches/common/alloc.rs) every
# criterion bench and the throughput matrix, then the tables and plots.
#
#   benches/run_all.sh [OUT]      # OUT default: bench-results/<date>
#
# Knobs (env): SECONDS_PER_RUN (3), REPS (3), WARMUP (1) and MEASURE (2):
# criterion's warm-up and measurement seconds per case. About 40 min on
# 2 cores (45 measured). Run it on a quiet machine: nothing else may use the CPUs.
set -eu
cd "$(dirname "$0")/.."
OUT=${1:-bench-results/$(date -u +%Y%m%dT%H%M)}
S=${SECONDS_PER_RUN:-3}
REPS=${REPS:-3}
WARMUP=${WARMUP:-1}
MEASURE=${MEASURE:-2}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cargo bench -p kame-stm-bench --no-run --bench single_node --bench tree16 --bench commit_scaling >&2
cargo build -p kame-stm-bench --release --bin throughput >&2
for alloc in system mimalloc; do
    export KAME_BENCH_ALLOC=$alloc
    echo "== $alloc: criterion" >&2
    CRITERION_HOME="$OUT/criterion-$alloc" cargo bench -p kame-stm-bench --bench single_node --bench tree16 \
        --bench commit_scaling -- --warm-up-time "$WARMUP" --measurement-time "$MEASURE" \
        > "$OUT/criterion-$alloc.log" 2>&1
    echo "== $alloc: throughput" >&2
    bash benches/run_throughput.sh "$S" "$REPS" > "$OUT/throughput-$alloc.log"
done
for alloc in system mimalloc; do
    cpp=glibc
    [ "$alloc" = mimalloc ] && cpp=pool
    python3 benches/plot.py --criterion "$OUT/criterion-$alloc" --throughput "$OUT/throughput-$alloc.log" \
        --cpp "$cpp" --suffix="-$alloc" --out "$OUT/plots" > "$OUT/tables-$alloc.md"
done
echo "tables: $OUT/tables-*.md, plots: $OUT/plots" >&2
