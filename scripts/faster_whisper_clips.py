"""The real-speech benchmark's peer and normaliser (tests/benches/real_speech.rs).

`transcribe MODEL_DIR CLIPS_DIR THREADS BEAM`: reads clip file names on stdin (one per line),
transcribes each with faster-whisper (CTranslate2, int8, the given threads and beam, English,
no VAD filter) and prints one JSON line per clip: {"clip", "text", "seconds"}; the model's load
time first as {"load_seconds"}.
`normalise`: reads JSON strings on stdin (one per line) and prints each through Whisper's
English text normaliser (PyPI whisper-normalizer), as JSON strings.
"""

import json
import os
import sys
import time


def transcribe(model_dir, clips, threads, beam):
    from faster_whisper import WhisperModel

    t = time.perf_counter()
    model = WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=threads)
    print(json.dumps({"load_seconds": time.perf_counter() - t}), flush=True)
    for line in sys.stdin:
        clip = line.strip()
        if not clip:
            continue
        t = time.perf_counter()
        segments, _ = model.transcribe(
            os.path.join(clips, clip), beam_size=beam, language="en", vad_filter=False
        )
        text = " ".join(s.text.strip() for s in segments)
        print(json.dumps({"clip": clip, "text": text, "seconds": time.perf_counter() - t}), flush=True)


def normalise():
    from whisper_normalizer.english import EnglishTextNormalizer

    n = EnglishTextNormalizer()
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(n(json.loads(line))), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "transcribe":
        transcribe(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    elif sys.argv[1] == "normalise":
        normalise()
    else:
        sys.exit(f"unknown mode {sys.argv[1]}")
