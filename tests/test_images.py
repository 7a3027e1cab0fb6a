"""Image input handling: every odd format becomes upright RGB; bad input is a clear error."""
from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from captioning.images import MAX_IMAGE_PIXELS, ImageError, Preprocessing, load_image


def _encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.fixture
def rgb() -> Image.Image:
    arr = np.zeros((40, 60, 3), np.uint8)
    arr[:, :30] = (255, 0, 0)  # left half red, right half blue
    arr[:, 30:] = (0, 0, 255)
    return Image.fromarray(arr)


def test_exif_orientation_applied(rgb):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    out = load_image(_encode(rgb, "JPEG", exif=exif.tobytes()))
    assert out.size == (40, 60)  # width and height swapped
    top = np.asarray(out)[2, 20]
    assert top[0] > 200 and top[2] < 60  # red (the old left) is now on top


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "LA", "1"])
def test_modes_become_rgb(rgb, mode):
    out = load_image(rgb.convert(mode))
    assert out.mode == "RGB" and out.size == rgb.size


def test_transparent_pixels_composited_on_white(rgb):
    rgba = rgb.convert("RGBA")
    rgba.putalpha(0)
    assert np.asarray(load_image(rgba)).min() == 255


def test_16_bit_png(tmp_path):
    arr = (np.linspace(0, 65535, 32 * 32).reshape(32, 32)).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(arr).save(path)
    out = np.asarray(load_image(path))
    assert out.dtype == np.uint8 and out.shape == (32, 32, 3)
    assert out.max() >= 250 and out.min() <= 5  # full range kept, not clipped to white


@pytest.mark.parametrize("array", [
    np.full((8, 8), 128, np.uint8), np.full((8, 8, 3), 0.5, np.float32),
    np.full((8, 8, 4), 40000, np.uint16), np.full((8, 8, 1), 7, np.uint8)])
def test_numpy_inputs(array):
    out = load_image(array)
    assert out.mode == "RGB" and out.size == (8, 8)


def test_sources_agree(rgb, tmp_path):
    path = tmp_path / "a.png"
    rgb.save(path)
    ref = np.asarray(load_image(path))
    for src in (str(path), path.read_bytes(), rgb, np.asarray(rgb)):
        assert np.array_equal(np.asarray(load_image(src)), ref)


def test_bad_inputs_name_the_file(tmp_path, rgb):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image at all")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(_encode(rgb.resize((400, 300)), "JPEG")[:700])
    cases = {empty: "empty file", text: "not an image", truncated: "corrupt or truncated",
             tmp_path / "missing.png": "file not found", tmp_path: "is a directory"}
    for path, why in cases.items():
        with pytest.raises(ImageError) as e:
            load_image(path)
        msg = str(e.value)
        assert msg.startswith(str(path)) and why in msg and "\n" not in msg
    with pytest.raises(ImageError, match="empty input"):
        load_image(b"")
    with pytest.raises(ImageError, match="unsupported input type"):
        load_image(12345)
    with pytest.raises(ImageError, match="shape"):
        load_image(np.zeros((4, 4, 7), np.uint8))


def test_unreadable_file(tmp_path, rgb, monkeypatch):
    path = tmp_path / "secret.png"
    rgb.save(path)

    def denied(*a, **k):  # chmod 0 does not stop root, so simulate what open() raises
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(Image, "open", denied)
    with pytest.raises(ImageError, match="secret.png: permission denied"):
        load_image(path)


def test_decompression_bomb_refused(tmp_path):
    side = int(MAX_IMAGE_PIXELS ** 0.5) + 1024  # just above the limit; PNG of one colour is tiny
    path = tmp_path / "bomb.png"
    Image.new("1", (side, side)).save(path)
    with pytest.raises(ImageError, match="too large"):
        load_image(path)


def test_preprocessing_shape_and_range(rgb):
    x = Preprocessing().to_tensor([rgb, np.asarray(rgb)])
    assert x.shape == (2, 3, 224, 224)
    assert float(x.min()) >= -127 / 128 and float(x.max()) <= 128 / 128


def _camera_photo(width: int = 2000, height: int = 1500) -> Image.Image:
    """A smooth photo-like picture with some texture (a JPEG of it decodes like a camera's)."""
    yy, xx = np.mgrid[:height, :width]
    arr = np.stack([xx * 255 // width, yy * 255 // height, (xx // 50 + yy // 50) % 2 * 120 + 60], -1)
    return Image.fromarray(arr.astype(np.uint8))


def test_a_large_jpeg_decodes_reduced_for_the_encoder_and_keeps_its_full_size(tmp_path):
    """reduce_to: the smallest DCT scale still >= the input size on both sides; the record's size is the
    photo's upright full size; the encoder input barely differs from a full decode's."""
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned a quarter: 1500 x 2000 upright
    path = tmp_path / "camera.jpg"
    _camera_photo().save(path, quality=92, exif=exif.tobytes())
    pre = Preprocessing(size=260)
    full, reduced = load_image(path), pre.load(path)
    assert full.size == (1500, 2000) and full.info["full_size"] == (1500, 2000)
    assert reduced.size == (375, 500) and reduced.info["full_size"] == (1500, 2000)  # 1/4: 1/8 would be < 260
    diff = np.abs(pre.to_array(full).astype(int) - pre.to_array(reduced))
    assert diff.mean() < 2.0
    assert pre.load(path.read_bytes()).size == (375, 500)  # bytes too
    from pipelines.images.records import prepare_image

    prepared = prepare_image(str(path), pre)  # what caption-images records
    assert (prepared.width, prepared.height) == (1500, 2000) and prepared.pixels.shape == (260, 260, 3)


def test_only_jpegs_decode_reduced_and_small_ones_stay_whole(tmp_path):
    pre = Preprocessing(size=260)
    _camera_photo().save(tmp_path / "big.png")
    assert pre.load(tmp_path / "big.png").size == (2000, 1500)  # PNG has no reduced decode
    _camera_photo(500, 400).save(tmp_path / "small.jpg")
    assert pre.load(tmp_path / "small.jpg").size == (500, 400)  # 1/2 would be under 260
    image = _camera_photo(1200, 1200)
    assert pre.load(image) is not None and pre.load(image).size == (1200, 1200)  # an open PIL image is as it is


@pytest.mark.parametrize("suffix", [".heic", ".avif"])
def test_phone_formats_read_like_any_photo(tmp_path, rgb, suffix):
    """HEIC (iPhones' default, through pillow-heif) and AVIF (Pillow's own) open as RGB, from a path or bytes."""
    if suffix == ".heic":
        from pillow_heif import register_heif_opener

        register_heif_opener()  # to write one; load_image registers it for reading by itself
    big = rgb.resize((240, 160))
    big.save(tmp_path / f"photo{suffix}", quality=90)
    for src in (tmp_path / f"photo{suffix}", (tmp_path / f"photo{suffix}").read_bytes()):
        out = load_image(src)
        assert out.mode == "RGB" and out.size == (240, 160)
        left, right = np.asarray(out)[80, 40].astype(int), np.asarray(out)[80, 200].astype(int)
        assert left[0] > 180 and left[2] < 80 and right[2] > 180 and right[0] < 80  # red left, blue right
    from pipelines.files import IMAGE_EXTENSIONS

    assert suffix in IMAGE_EXTENSIONS  # caption-images finds them in folders
    fresh = subprocess.run([sys.executable, "-c", "import sys; from captioning.images import load_image; "
                            "print(*load_image(sys.argv[1]).size)", str(tmp_path / f"photo{suffix}")],
                           capture_output=True, text=True, timeout=120)
    assert fresh.stdout.split() == ["240", "160"], fresh.stderr  # no registration needed by the caller
