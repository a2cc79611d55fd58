#!/usr/bin/env bash
# The chaos soak of RELIABILITY.md: 20 meetings (MEETINGS) with 10 minutes of speech each
# (SECONDS_OF_SPEECH) through every meetbot service as its own process, real RabbitMQ, the
# MongoDB-wire store, real Janus and whisper tiny.en, while services, bots and the broker link are
# killed at random (about every KILL_GAP seconds). Prints the table and writes it to
# target/soak-report.md. Sets up what it needs like scripts/test.sh (which it calls).
#   bash scripts/soak.sh                 # 20 meetings, 600 s
#   MEETINGS=4 SECONDS_OF_SPEECH=120 bash scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export MEETBOT_TEST_SOAK_MEETINGS="${MEETINGS:-20}"
export MEETBOT_TEST_SOAK_SECONDS="${SECONDS_OF_SPEECH:-600}"
export MEETBOT_TEST_SOAK_KILL_GAP="${KILL_GAP:-20}"
export MEETBOT_TEST_SOAK_REPORT="$PWD/target/soak-report.md"
# Setup as for the tests (RabbitMQ, Janus, espeak-ng, the model); the test starts its own
# MongoDB-wire server. The services are the debug build the tests use (dependencies optimised).
bash scripts/test.sh --setup-only
ENV_DIR="$PWD/target/test-env"
export MEETBOT_TEST_WHISPER_MODEL="$ENV_DIR/models/ggml-tiny.en.bin"
export MEETBOT_TEST_PYTHON="$ENV_DIR/mongo/bin/python"
cargo nextest run -p meetbot --test e2e --no-capture \
    -E 'test(meetings_come_through_whole_while_services_bots_and_the_broker_link_are_killed_at_random)'
echo "[soak.sh] report: $MEETBOT_TEST_SOAK_REPORT" >&2
