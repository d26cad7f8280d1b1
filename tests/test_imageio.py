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


def _tiff16(path, samples: np.ndarray, big_endian=False, planar=False, rows_per_strip=None, deflate=False):
    """A 16-bit RGB TIFF written by hand (PIL writes none): chunky or in
    planes, in strips, Intel or Motorola byte order, raw or deflated."""
    import struct
    import zlib

    h, w, _ = samples.shape
    order = ">" if big_endian else "<"
    rows = rows_per_strip or h
    planes = [samples[..., c] for c in range(3)] if planar else [samples]
    strips = [zlib.compress(p[y:y + rows].astype(order + "u2").tobytes()) if deflate else
              p[y:y + rows].astype(order + "u2").tobytes() for p in planes for y in range(0, h, rows)]
    tags = 11
    ifd_at = 8
    extra_at = ifd_at + 2 + tags * 12 + 4
    bits_at, offsets_at = extra_at, extra_at + 6
    counts_at = offsets_at + 4 * len(strips)
    data_at = counts_at + 4 * len(strips)
    offsets, at = [], data_at
    for strip in strips:
        offsets.append(at)
        at += len(strip)
    one = len(strips) == 1  # a single value is held in its entry, not pointed to
    entries = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 3, bits_at), (259, 3, 1, 8 if deflate else 1), (262, 3, 1, 2),
               (273, 4, len(strips), offsets[0] if one else offsets_at), (277, 3, 1, 3), (278, 4, 1, rows),
               (279, 4, len(strips), len(strips[0]) if one else counts_at), (284, 3, 1, 2 if planar else 1),
               (339, 3, 1, 1)]
    out = (b"MM\x00\x2a" if big_endian else b"II\x2a\x00") + struct.pack(order + "I", ifd_at)
    out += struct.pack(order + "H", tags)
    for tag, kind, count, value in entries:
        inline = count == 1 and kind == 3
        out += struct.pack(order + "HHI", tag, kind, count) + (struct.pack(order + "HH", value, 0) if inline else
                                                               struct.pack(order + "I", value))
    out += struct.pack(order + "I", 0) + struct.pack(order + "HHH", 16, 16, 16)
    out += struct.pack(order + f"{len(strips)}I", *offsets) + struct.pack(order + f"{len(strips)}I", *map(len, strips))
    path.write_bytes(out + b"".join(strips))
    return path


def test_16bit_rgb_tiffs_keep_their_low_bits(tmp_path):
    """A 12-bit camera saves 0-4095 in 16-bit samples, of which PIL keeps the
    high byte: the photo came out nearly black, in 16 levels. Read here at
    the bits the camera used; a full-range file reads as its 8-bit copy."""
    rgb = rgb_noise(40, 30)
    twelve = rgb.astype(np.uint16) * 16 + 7  # 12 bits, the low ones used
    for name, kw in {"chunky.tif": {}, "motorola.tif": {"big_endian": True}, "strips.tif": {"rows_per_strip": 7},
                     "planes.tif": {"planar": True, "big_endian": True, "rows_per_strip": 16}}.items():
        got = read_rgb(_tiff16(tmp_path / name, twelve, **kw))
        assert np.abs(got.astype(int) - rgb).max() <= 1, name
    full = read_rgb(_tiff16(tmp_path / "full.tif", rgb.astype(np.uint16) * 257))
    assert (full == rgb).all()


def test_a_compressed_12bit_tiff_is_refused_by_name_not_read_black(tmp_path):
    path = _tiff16(tmp_path / "camera 12-bit.tif", rgb_noise(40, 30).astype(np.uint16) * 16, deflate=True)
    with pytest.raises(ImageReadError, match="camera 12-bit.tif: a 16-bit TIFF whose values use only the low bits"):
        read_rgb(path)
    full = read_rgb(_tiff16(tmp_path / "deflated full.tif", rgb_noise(40, 30).astype(np.uint16) * 257, deflate=True))
    assert (full == rgb_noise(40, 30)).all()  # a full-range one reads right through PIL's own decode
