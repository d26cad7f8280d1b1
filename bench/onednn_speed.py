"""TensorFlow's oneDNN kernels on and off: bare batched forward and
end-to-end classify speed of the default model, each setting in fresh
processes, alternated. TensorFlow turns oneDNN on by itself only on CPUs
with AVX-512 VNNI/BF16 or AMX; a lab's i3 has AVX2 at most, so this says
what setting ``TF_ENABLE_ONEDNN_OPTS`` there would change.

    python -m bench.onednn_speed
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from .common import make_jpegs, run_child

CODE = """
import time
import numpy as np
from wbc_desktop import paths
from wbc_desktop.engine.infer.classify import Classifier
from pathlib import Path
clf = Classifier.open(paths.default_model_path())
x = np.random.default_rng(0).integers(0, 256, (256, clf.size, clf.size, 3)).astype(np.uint8)
clf.predict_arrays(x[:64])  # trace once
t0 = time.perf_counter(); clf.predict_arrays(x); RESULT['bare_ips'] = len(x) / (time.perf_counter() - t0)
files = sorted(Path({folder!r}).glob('*.jpg'))
list(clf.classify_files(files[:32]))
t0 = time.perf_counter(); n = sum(p.ok for p in clf.classify_files(files)); RESULT['e2e_ips'] = n / (time.perf_counter() - t0)
"""


def run(rounds: int = 2, n_images: int = 300) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="wbc-onednn-")) / "cells"
    make_jpegs(folder, n_images)
    got = {"0": [], "1": []}
    for _ in range(rounds):
        for flag in ("0", "1"):
            got[flag].append(run_child(CODE.format(folder=str(folder)), {"TF_ENABLE_ONEDNN_OPTS": flag}))
    best = {flag: {k: max(r[k] for r in rs) for k in ("bare_ips", "e2e_ips")} for flag, rs in got.items()}
    return {"off": best["0"], "on": best["1"],
            "bare_ratio": best["1"]["bare_ips"] / best["0"]["bare_ips"],
            "e2e_ratio": best["1"]["e2e_ips"] / best["0"]["e2e_ips"]}


if __name__ == "__main__":
    r = run()
    print(f"| oneDNN | bare forward | end-to-end classify |\n|---|---|---|\n"
          f"| off | {r['off']['bare_ips']:.1f} img/s | {r['off']['e2e_ips']:.1f} img/s |\n"
          f"| on | {r['on']['bare_ips']:.1f} img/s | {r['on']['e2e_ips']:.1f} img/s |\n"
          f"| on / off | {r['bare_ratio']:.2f}x | {r['e2e_ratio']:.2f}x |")
