#!/usr/bin/env bash
# Runs the throughput driver over the C++ original's matrix (2- and 3-level,
# N = 1, 2, 4 threads, K = 0, 10, 1), the baselines on the 2-level tree, the
# readers mode and the fairness mode. Prints every RESULT line; feed the
# output to benches/plot.py.
#
#   benches/run_throughput.sh [SECONDS] [REPS] | tee throughput.log
#
# SECONDS: timed window per run (default 5, after the driver's 1 s warm-up);
# REPS: repetitions of each case (default 3; plot.py takes the median).
# IMPLS (env): implementations to run (default "kame rwlock arcswap fast-stm").
set -u
S=${1:-5}
REPS=${2:-3}
IMPLS=${IMPLS:-"kame rwlock arcswap fast-stm"}
M=256
cd "$(dirname "$0")/.."
cargo build -p kame-stm-bench --release --bin throughput >&2 || exit 1
T=${CARGO_TARGET_DIR:-target}/release/throughput

# Other CPU-heavy processes (compilers, TLC, test runs) before and after each
# run: plot.py --quiet-only drops runs that shared the machine with one.
foreign() {
    pgrep -fc 'rustc|tlc2.TLC|cargo (test|build|bench|clippy)' || true
}

run() {
    local before after
    before=$(foreign)
    # A failing or stuck run prints its own RESULT/FAIL line; keep going.
    timeout $((S + 40)) "$T" "$@" || echo "EXIT $? for: $*"
    after=$(foreign)
    echo "# foreign=$((before > after ? before : after)) load=$(cut -d' ' -f1 /proc/loadavg)"
}

echo "# $(date -u +%FT%TZ) $(nproc) cpus, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
echo "# git $(git rev-parse --short HEAD 2>/dev/null) S=$S REPS=$REPS"
for rep in $(seq "$REPS"); do
    echo "# load before rep $rep: $(cut -d' ' -f1-3 /proc/loadavg)"
    for impl in $IMPLS; do
        for levels in 2 3; do
            # Baselines have no levels: run them on the 2-level tree only.
            [ "$impl" != kame ] && [ "$levels" = 3 ] && continue
            for n in 1 2 4; do
                for k in 0 10 1; do
                    run "$S" "$n" "$M" "$k" --levels "$levels" --impl "$impl"
                done
            done
        done
        run "$S" 2 "$M" 10 --readers 2 --impl "$impl"
        run "$S" 2 "$M" 0 --readers 2 --impl "$impl"
        run "$S" 2 "$M" 0 --fairness --impl "$impl"
        run "$S" 4 "$M" 0 --fairness --impl "$impl"
    done
done
