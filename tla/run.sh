#!/usr/bin/env bash
# Runs TLC on the configs of tla/ and prints a table.
#
#   bash tla/run.sh                 the default set (< 10 min on 2 cores)
#   bash tla/run.sh --all           also the large configs (see tla/README.md)
#   bash tla/run.sh --ci            as the default set, but exit 0 with a
#                                   "TLC skipped" line when there is no jar/java
#   bash tla/run.sh NAME...         only these configs (NAME or NAME.cfg)
#   bash tla/run.sh --traces DIR    also write each counterexample as JSON to
#                                   DIR/<config>.json (read it with tla/trace.py)
#
# Each config states what TLC must report in a `\* EXPECT:` line ("pass",
# "Invariant X is violated", "Temporal properties were violated"); a config
# is OK when TLC reports exactly that (a temporal violation must be a real
# lasso: "Back to state N"). The exit status is non-zero if any config is
# not OK.
#
# Environment: TLA2TOOLS_JAR (default ~/.cache/tla2tools.jar), TLC_WORKERS
# (default 2), TLC_HEAP (default 6g), TLC_TIMEOUT seconds per config
# (default 1800), TLC_NICE (default 10).
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
jar="${TLA2TOOLS_JAR:-$HOME/.cache/tla2tools.jar}"
workers="${TLC_WORKERS:-2}"
heap="${TLC_HEAP:-6g}"
limit="${TLC_TIMEOUT:-1800}"
nicety="${TLC_NICE:-10}"

all=0 ci=0 traces="" names=()
while [ $# -gt 0 ]; do
    case "$1" in
        --all) all=1 ;;
        --ci) ci=1 ;;
        --traces) shift; traces="${1:?--traces needs a directory}" ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *) names+=("${1%.cfg}") ;;
    esac
    shift
done

skip() {
    if [ "$ci" = 1 ]; then
        echo "TLC skipped: $1 (set TLA2TOOLS_JAR or put it at ~/.cache/tla2tools.jar; see tla/README.md)"
        exit 0
    fi
    echo "error: $1" >&2
    echo "TLC is not in any package registry. Get tla2tools.jar (MIT licence) from" >&2
    echo "https://github.com/tlaplus/tlaplus/releases, e.g.:" >&2
    echo "  mkdir -p ~/.cache && curl -L -o ~/.cache/tla2tools.jar \\" >&2
    echo "    https://github.com/tlaplus/tlaplus/releases/download/v1.8.0/tla2tools.jar" >&2
    echo "or point TLA2TOOLS_JAR at a copy. Java 11 or later is needed (17 tested)." >&2
    exit 2
}
[ -f "$jar" ] || skip "no tla2tools.jar"
command -v java >/dev/null 2>&1 || skip "no java on PATH"

# The configs to run, in file order.
cfgs=()
if [ ${#names[@]} -gt 0 ]; then
    for n in "${names[@]}"; do
        [ -f "$here/$n.cfg" ] || { echo "no config $here/$n.cfg" >&2; exit 2; }
        cfgs+=("$n")
    done
else
    for f in "$here"/*.cfg; do
        set_line="$(sed -n 's/^\\\* SET: *//p' "$f" | head -1)"
        if [ "$set_line" = default ] || { [ "$all" = 1 ] && [ "$set_line" = all ]; }; then
            cfgs+=("$(basename "$f" .cfg)")
        fi
    done
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/kame-tla.XXXXXX")"
[ -n "$traces" ] && mkdir -p "$traces"
spec="$here/KameStm.tla"

printf '%-34s %12s %6s %9s  %-44s %s\n' config "distinct" depth time "result" verdict
printf '%s\n' "$(printf '%.0s-' {1..118})"
bad=0 total_start=$(date +%s)
for name in "${cfgs[@]}"; do
    cfg="$here/$name.cfg"
    expect="$(sed -n 's/^\\\* EXPECT: *//p' "$cfg" | head -1)"
    log="$work/$name.out"
    dump=()
    [ -n "$traces" ] && dump=(-dumpTrace json "$traces/$name.json")
    start=$(date +%s.%N)
    # Expected lassos are printed from a VIEW; TLC's reconstruction of such a
    # trace from fingerprints occasionally fails with several workers
    # ("Failed to recover the next state from its fingerprint"). Those
    # configs run on one worker, and a run that ends in that TLC exception
    # is repeated (at most twice); any other outcome counts as it is.
    w="$workers"
    case "$expect" in Temporal*) w=1 ;; esac
    for attempt in 1 2 3; do
        # TLC writes its trace-explorer files next to the spec: run in a scratch copy.
        rm -rf "$work/$name.dir"
        mkdir -p "$work/$name.dir"
        cp "$spec" "$work/$name.dir/"
        (cd "$work/$name.dir" && timeout "$limit" nice -n "$nicety" java -XX:+UseParallelGC -Xmx"$heap" \
            -cp "$jar" tlc2.TLC -workers "$w" -metadir "$work/$name.states" \
            "${dump[@]}" -config "$cfg" KameStm.tla) >"$log" 2>&1
        rc=$?
        rm -rf "$work/$name.states"        # TLC's fingerprint files can be large
        grep -q "Failed to recover the next state from its fingerprint" "$log" || break
        echo "  ($name: TLC could not rebuild the trace from fingerprints; attempt $attempt, retrying)" >&2
    done
    secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    distinct="$(sed -n 's/^[0-9,]* states generated, \([0-9,]*\) distinct states found.*/\1/p' "$log" | tail -1)"
    depth="$(sed -n 's/^The depth of the complete state graph search is \([0-9]*\).*/\1/p' "$log" | tail -1)"
    if grep -q "^Model checking completed. No error has been found." "$log"; then
        result="pass"
    elif r="$(grep -m1 -o '^Error: Invariant [A-Za-z0-9_]* is violated' "$log")"; then
        result="${r#Error: }"
    elif grep -q "^Error: Temporal properties were violated" "$log"; then
        result="Temporal properties were violated"
        grep -q "Back to state" "$log" || result="$result (no lasso)"
    elif grep -q "^Error: Deadlock reached" "$log"; then
        result="Deadlock reached"
    elif [ $rc = 124 ]; then
        result="timeout after ${limit}s"
    else
        result="TLC error rc=$rc (see log)"
    fi
    if [ "$result" = "$expect" ]; then verdict="OK"; else verdict="FAIL (expected: $expect)"; bad=$((bad + 1)); fi
    printf '%-34s %12s %6s %8.1fs  %-44s %s\n' "$name" "${distinct:--}" "${depth:--}" "$secs" "$result" "$verdict"
done
printf '%s\n' "$(printf '%.0s-' {1..118})"
echo "${#cfgs[@]} configs, $bad not as expected, $(( $(date +%s) - total_start ))s total; TLC logs in $work"
[ -n "$traces" ] && echo "counterexamples (JSON) in $traces; read one with: python3 $here/trace.py $traces/<config>.json"
[ "$bad" = 0 ]
