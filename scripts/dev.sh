#!/usr/bin/env bash
# Sets up and runs meetbot on one machine with embedded defaults (`meetbot dev`): SQLite store in
# ./data, a local key file, the in-process queue, bots as local processes.
#   1. cmake from Debian if missing (the opus crate builds libopus with it)
#   2. cargo run --release -p meetbot -- dev  (extra arguments go to meetbot)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cmake >/dev/null; then
    echo "[dev.sh] installing cmake (needed to build libopus)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends cmake >/dev/null
fi
exec cargo run --release -p meetbot -- "$@" dev
