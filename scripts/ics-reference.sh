#!/usr/bin/env bash
# Calendar parsing, ours vs a reference library, in one run (BENCHMARKS.md "Calendar parsing"):
#   1. a venv in target/ics-reference/venv with python icalendar + recurring-ical-events (PyPI);
#   2. the reference reads every file of calendar-sync/tests/fixtures/ics (scripts/ics_reference.py);
#   3. our reader's fixture test runs with MEETBOT_ICS_REFERENCE_DIR set and scores both
#      against the expected instances, seen and blind apart (target/ics-reference/ours.json).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=target/ics-reference
VENV=$OUT/venv
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        icalendar==7.3.2 recurring-ical-events==3.8.2
fi
"$VENV/bin/python" -W ignore scripts/ics_reference.py calendar-sync/tests/fixtures/ics "$OUT/out"
MEETBOT_ICS_REFERENCE_DIR="$PWD/$OUT/out" cargo test -p meetbot-calendar-sync --test ics_fixtures \
    -- --nocapture every_real_ics_fixture
cat "$OUT/ours.json"
