"""Decoding and validation of every kind of upload a person may send."""
import io

import numpy as np
import pytest
from PIL import Image

from core.images import ImageError, decode_image, image_id


def _encode(image, fmt, **kwargs):
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


@pytest.fixture
def rgb():
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8))


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF", "WEBP"])
def test_lossless_formats_round_trip_exactly(rgb, fmt):
    kwargs = {"lossless": True} if fmt == "WEBP" else {}
    out = decode_image(_encode(rgb, fmt, **kwargs))
    assert out.mode == "RGB" and out.size == (60, 40)
    assert np.array_equal(np.asarray(out), np.asarray(rgb))


def test_jpeg_decodes_close_to_the_original(rgb):
    smooth = rgb.resize((15, 10)).resize((60, 40), Image.BILINEAR)
    out = np.asarray(decode_image(_encode(smooth, "JPEG", quality=95)), dtype=float)
    assert np.abs(out - np.asarray(smooth, dtype=float)).mean() < 4


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    out = np.asarray(decode_image(buf.getvalue()))
    assert tuple(out[16, 16]) == (255, 0, 0)


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 20, 20))  # white left half
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    out = decode_image(_encode(image, "JPEG", exif=exif, quality=100))
    assert out.size == (20, 40)
    arr = np.asarray(out, dtype=float).mean(axis=(1, 2))
    assert arr[:20].mean() > 200 and arr[20:].mean() < 50  # the white half is now on top


def test_sixteen_bit_grayscale_is_rescaled_not_clipped():
    ramp = (np.linspace(0, 65535, 64 * 32).reshape(32, 64)).astype(np.uint16)
    out = np.asarray(decode_image(_encode(Image.fromarray(ramp), "PNG")))
    assert out.shape == (32, 64, 3)
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255
    assert abs(int(out[16, 0, 0]) - round(ramp[16, 0] / 65535 * 255)) <= 1


def test_cmyk_palette_grayscale_become_rgb(rgb):
    for image in (rgb.convert("CMYK"), rgb.convert("P"), rgb.convert("L")):
        fmt = "JPEG" if image.mode == "CMYK" else "PNG"
        out = decode_image(_encode(image, fmt))
        assert out.mode == "RGB" and out.size == (60, 40)
    gray = np.asarray(decode_image(_encode(rgb.convert("L"), "PNG")))
    assert np.array_equal(gray[..., 0], np.asarray(rgb.convert("L"))) and np.array_equal(gray[..., 0], gray[..., 2])


def test_transparency_is_composited_on_white():
    image = Image.new("RGBA", (20, 20), (255, 0, 0, 0))  # fully transparent red
    image.putpixel((0, 0), (255, 0, 0, 255))
    out = np.asarray(decode_image(_encode(image, "PNG")))
    assert tuple(out[5, 5]) == (255, 255, 255) and tuple(out[0, 0]) == (255, 0, 0)


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"%PDF-1.4 not an image at all", "not an image"),
])
def test_unusable_bytes_are_refused_clearly(data, message):
    with pytest.raises(ImageError, match=message):
        decode_image(data)


def test_truncated_file_is_refused(rgb):
    data = _encode(rgb.resize((200, 200)), "PNG")
    with pytest.raises(ImageError, match="truncated or corrupt"):
        decode_image(data[: len(data) // 2])


def test_size_cap_pixel_cap_and_tiny_images(rgb):
    data = _encode(rgb, "PNG")
    with pytest.raises(ImageError, match="limit is"):
        decode_image(data, max_bytes=len(data) - 1)
    bomb = _encode(Image.new("L", (5000, 5000)), "PNG")  # 25 MP of zeros compresses to a few KB
    assert len(bomb) < 100_000
    with pytest.raises(ImageError, match="megapixels"):
        decode_image(bomb, max_pixels=20_000_000)
    with pytest.raises(ImageError, match="at least 16 px"):
        decode_image(_encode(rgb.resize((15, 40)), "PNG"))


def test_image_id_is_a_content_hash(rgb):
    same = decode_image(_encode(rgb, "PNG"))
    assert image_id(same) == image_id(rgb)
    other = rgb.copy()
    other.putpixel((0, 0), (0, 0, 0) if rgb.getpixel((0, 0)) != (0, 0, 0) else (1, 1, 1))
    assert image_id(other) != image_id(rgb)


def _eps() -> bytes:
    """A small EPS file (what a Ghostscript-backed plugin would render)."""
    return (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 32 32\n"
            b"newpath 0 0 moveto 32 0 lineto 32 32 lineto closepath fill\nshowpage\n%%EOF\n")


@pytest.mark.parametrize("data, kind", [
    (_eps(), "PostScript/EPS"),
    (b"%PDF-1.4\n1 0 obj << >> endobj\n%%EOF\n", "PDF"),
    (b"<svg xmlns='http://www.w3.org/2000/svg' width='32' height='32'/>", "SVG"),
])
def test_other_formats_are_refused_before_any_plugin_parses_them(data, kind, monkeypatch):
    from PIL import EpsImagePlugin
    opened = []
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", lambda self: opened.append(1))
    with pytest.raises(ImageError, match=rf"not a supported image format \({kind}\)"):
        decode_image(data)
    assert opened == []  # the EPS plugin never saw the bytes


def test_formats_pillow_can_read_but_we_do_not_are_refused(rgb):
    for fmt in ("ICO", "PPM", "TGA"):
        with pytest.raises(ImageError, match="not a supported image format"):
            decode_image(_encode(rgb.resize((32, 32)), fmt))


def test_huge_images_are_fitted_to_twice_the_models_longest_edge(rgb):
    from core.images import fit_for_model
    big = rgb.resize((3000, 2000))
    out = fit_for_model(big, 800)
    assert out.size == (1600, 1067)  # 2000 * 1600 / 3000 = 1066.7
    small = rgb.resize((1600, 900))
    assert fit_for_model(small, 800) is small  # already within: not resampled
    assert fit_for_model(rgb.resize((900, 3300)), 1333).size == (727, 2666)  # 900 * 2666 / 3300 = 727.1
