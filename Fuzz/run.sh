#!/bin/sh
# Runs each libFuzzer harness for SECONDS seconds (default 60) over its seed corpus in
# corpus/<target>/, keeping what it learns in ../var/fuzz/<target>/ and any crashing input in
# crashes/<target>/, then prints executions and crashes per target. `make fuzz` builds the
# harnesses first; FUZZ_SECONDS and FUZZ_TARGETS pass through.
set -u
cd "$(dirname "$0")"
seconds=${FUZZ_SECONDS:-60}
targets=${FUZZ_TARGETS:-"codecs onnx config control"}
status=0
# Undefined behaviour stops a run like a crash, but for the dependencies' defects ubsan.supp lists.
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=$PWD/ubsan.supp"
# Leaks count as crashes too, but for the dependencies' that the test suite's list explains.
export LSAN_OPTIONS="suppressions=$PWD/../Tests/Sanitizers/lsan.supp:print_suppressions=0"
printf '%-8s %12s %10s %8s\n' target executions exec/s crashes
for target in $targets; do
    work=../var/fuzz/$target
    mkdir -p "$work" "crashes/$target"
    log=../var/fuzz/$target.log
    ./.build/debug/fuzz-$target -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="crashes/$target/" "$work" "corpus/$target" >"$log" 2>&1
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    crashes=$(find "crashes/$target" -type f | wc -l)
    printf '%-8s %12s %10s %8s\n' "$target" "${runs:-?}" "${rate:-?}" "$crashes"
    [ "$crashes" -eq 0 ] && [ -n "$runs" ] || status=1
done
exit $status
