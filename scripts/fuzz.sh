#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ with cargo-fuzz (libFuzzer, AddressSanitizer) for a set time
# each, growing the corpus kept in the repository (fuzz/corpus/<target>), and prints a table:
# target, seconds, runs, corpus files, crashes. A crash stops the script with its input in
# fuzz/artifacts/<target>/ (turn it into a regression test, then fix it).
#   bash scripts/fuzz.sh                  # 60 s per target
#   bash scripts/fuzz.sh 600              # 10 minutes per target
#   bash scripts/fuzz.sh 30 ics_feed room # only these targets
# Installs cargo-fuzz (crates.io) if missing. The stable toolchain builds with RUSTC_BOOTSTRAP=1
# (cargo-fuzz needs -Z flags); no other toolchain is fetched.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECONDS_EACH=${1:-60}
shift || true
log() { echo "[fuzz.sh] $*" >&2; }

if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz"
    cargo install --locked cargo-fuzz@0.13.2
fi
export RUSTC_BOOTSTRAP=1

TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
    mapfile -t TARGETS < <(cd fuzz && cargo fuzz list)
fi

# Seeds from what the project already holds: real ICS files for the feed reader, the calendar
# payload fixtures, the room's test WAVs are made at run time (none kept).
seed() {
    local target=$1 dir="fuzz/corpus/$1"
    mkdir -p "$dir"
    [ -n "$(ls -A "$dir" 2>/dev/null)" ] && return 0
    case $target in
        ics_feed) cp calendar-sync/tests/fixtures/ics/*.ics "$dir"/ 2>/dev/null || true ;;
        calendar_payload) cp calendar-sync/tests/fixtures/*.json "$dir"/ 2>/dev/null || true ;;
    esac
}

log "building ${#TARGETS[@]} targets (release, debug assertions, AddressSanitizer)"
(cd fuzz && cargo fuzz build "${TARGETS[@]:0:1}" >/dev/null)
for t in "${TARGETS[@]}"; do
    (cd fuzz && cargo fuzz build "$t")
done

printf '| target | seconds | runs | corpus files | crashes |\n| --- | --- | --- | --- | --- |\n' >"$ROOT/target/fuzz-table.md"
for t in "${TARGETS[@]}"; do
    seed "$t"
    log "$t: ${SECONDS_EACH}s"
    out=$(mktemp)
    set +e
    (cd fuzz && cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 \
        -timeout=10 -print_final_stats=1) >"$out" 2>&1
    rc=$?
    set -e
    runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$out" | grep -oE '[0-9]+$' | tail -1)
    files=$(find "fuzz/corpus/$t" -type f | wc -l)
    crashes=$(find "fuzz/artifacts/$t" -type f 2>/dev/null | wc -l)
    printf '| %s | %s | %s | %s | %s |\n' "$t" "$SECONDS_EACH" "${runs:-?}" "$files" "$crashes" >>"$ROOT/target/fuzz-table.md"
    if [ "$rc" -ne 0 ]; then
        tail -40 "$out" >&2
        log "$t failed (exit $rc); its input is in fuzz/artifacts/$t/"
        cat "$ROOT/target/fuzz-table.md"
        rm -f "$out"
        exit 1
    fi
    rm -f "$out"
done
cat "$ROOT/target/fuzz-table.md"
