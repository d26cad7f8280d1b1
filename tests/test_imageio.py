import numpy as np
import pytest
from PIL import Image

from conftest import rgb_noise
from wbc_desktop.engine.io.imageio import ImageReadError, read_rgb
from wbc_desktop.engine.data.preprocess import fit_square


def test_truncated_jpeg_names_the_file(tmp_path):
    path = tmp_path / "cut.jpg"
    Image.fromarray(rgb_noise(64, 64)).save(path, quality=90)
    path.write_bytes(path.read_bytes()[:600])
    with pytest.raises(ImageReadError) as err:
        read_rgb(path)
    assert err.value.path == str(path)
    assert "truncated" in err.value.reason or "decode" in err.value.reason


def test_text_file_with_image_suffix(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not an image")
    with pytest.raises(ImageReadError, match="notes.png: not an image"):
        read_rgb(path)


def test_16bit_tiff_is_stretched_not_clipped(tmp_path):
    arr = (np.linspace(1000, 4000, 64 * 64).reshape(64, 64)).astype(np.uint16)
    path = tmp_path / "deep.tif"
    Image.fromarray(arr).save(path)
    rgb = read_rgb(path)
    assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8
    assert rgb.min() == 0 and rgb.max() == 255


def test_cmyk_grayscale_rgba_palette_become_rgb(tmp_path):
    base = Image.fromarray(rgb_noise(40, 50))
    variants = {
        "cmyk.jpg": base.convert("CMYK"),
        "grey.png": base.convert("L"),
        "alpha.png": base.convert("RGBA"),
        "palette.png": base.convert("P"),
        "plain.bmp": base,
    }
    for name, im in variants.items():
        im.save(tmp_path / name)
        rgb = read_rgb(tmp_path / name)
        assert rgb.shape == (40, 50, 3), name


def test_transparent_pixels_become_white(tmp_path):
    im = Image.new("RGBA", (20, 20), (255, 0, 0, 0))
    im.save(tmp_path / "clear.png")
    assert (read_rgb(tmp_path / "clear.png") == 255).all()


def test_multipage_tiff_reads_first_page(tmp_path):
    pages = [Image.new("RGB", (30, 30), c) for c in ((10, 20, 30), (200, 200, 200))]
    pages[0].save(tmp_path / "pages.tif", save_all=True, append_images=pages[1:])
    assert tuple(read_rgb(tmp_path / "pages.tif")[0, 0]) == (10, 20, 30)


def test_exif_orientation_is_applied(tmp_path):
    im = Image.fromarray(rgb_noise(20, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    im.save(tmp_path / "turned.jpg", exif=exif)
    assert read_rgb(tmp_path / "turned.jpg").shape == (40, 20, 3)


def test_huge_jpeg_decodes_reduced(tmp_path):
    path = tmp_path / "huge.jpg"
    Image.new("RGB", (10000, 10000), (200, 150, 180)).save(path, quality=50)
    rgb = read_rgb(path, max_side=128)
    assert max(rgb.shape[:2]) <= 512


def test_odd_path_names(tmp_path):
    folder = tmp_path / "Probe Nr. 7 – Zellen (ä)"
    folder.mkdir()
    path = folder / "zelle #1, 'a'.png"
    Image.fromarray(rgb_noise(16, 16)).save(path)
    assert read_rgb(path).shape == (16, 16, 3)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageReadError, match="not found"):
        read_rgb(tmp_path / "nope.png")
    with pytest.raises(ImageReadError, match="folder"):
        read_rgb(tmp_path)


def test_fit_square_keeps_aspect_and_pads_with_background():
    rgb = np.full((50, 100, 3), 240, np.uint8)
    rgb[20:30, 45:55] = 0
    out = fit_square(rgb, 64)
    assert out.shape == (64, 64, 3)
    assert (out[:10] == 240).all()  # padding has the border colour
    dark = np.argwhere(out.sum(axis=2) < 100)
    h, w = np.ptp(dark, axis=0) + 1
    assert abs(h - w) <= 1  # a square stays square
