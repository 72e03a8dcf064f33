"""Decoding: every format and mode becomes (S, S, 3) uint8 RGB; failures are DecodeErrors with reasons."""
import io

import numpy as np
import pytest
from PIL import Image

from labelaudit.data.decode import content_hash, decode_files, decode_image
from labelaudit.errors import DecodeError

S = 16


def _save(path, im, **kw):
    im.save(path, **kw)
    return str(path)


@pytest.mark.parametrize("mode,fmt,suffix", [
    ("RGB", "JPEG", ".jpg"), ("L", "PNG", ".png"), ("LA", "PNG", ".png"), ("P", "PNG", ".png"),
    ("RGBA", "PNG", ".png"), ("CMYK", "JPEG", ".jpg"), ("RGB", "BMP", ".bmp"), ("RGB", "WEBP", ".webp"),
    ("RGB", "TIFF", ".tif"), ("P", "GIF", ".gif"),
])
def test_every_mode_and_format_becomes_rgb(tmp_path, mode, fmt, suffix):
    im = Image.new("RGB", (40, 30), (200, 100, 50)).convert(mode)
    arr = decode_image(_save(tmp_path / f"x{suffix}", im, format=fmt), S)
    assert arr.shape == (S, S, 3) and arr.dtype == np.uint8
    if mode in ("RGB", "RGBA", "CMYK"):
        assert abs(int(arr[..., 0].mean()) - 200) < 12 and abs(int(arr[..., 2].mean()) - 50) < 12


def test_16bit_grayscale_is_scaled_not_clipped(tmp_path):
    a = np.full((20, 20), 32768, dtype=np.uint16)  # half of the 16-bit range
    path = tmp_path / "x.tif"
    Image.fromarray(a).save(path)
    assert Image.open(path).mode.startswith("I;16")
    arr = decode_image(str(path), S)
    assert 120 <= arr.mean() <= 135  # 32768/257 ≈ 127.5, not 255


def test_gif_uses_first_frame(tmp_path):
    frames = [Image.new("RGB", (20, 20), c) for c in ((250, 0, 0), (0, 0, 250))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50)
    arr = decode_image(str(path), S)
    assert arr[..., 0].mean() > 200 and arr[..., 2].mean() < 50


def test_exif_orientation_is_applied(tmp_path):
    im = Image.new("RGB", (40, 20), (0, 0, 0))
    im.paste((255, 255, 255), (0, 0, 20, 20))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display: the white half goes to the top
    path = tmp_path / "rot.jpg"
    im.save(path, exif=exif, quality=95)
    arr = decode_image(str(path), S).mean(axis=2)
    assert arr[: S // 2].mean() > 200 and arr[S // 2:].mean() < 60


def test_large_jpeg_is_decoded_in_draft_mode(tmp_path, monkeypatch):
    path = tmp_path / "photo.jpg"
    Image.new("RGB", (4000, 3000), (10, 120, 240)).save(path, quality=80)
    sizes = []
    real_load = Image.Image.load

    def spy(self):
        out = real_load(self)
        sizes.append(self.size)
        return out

    monkeypatch.setattr(Image.Image, "load", spy)
    arr = decode_image(str(path), 32)
    assert arr.shape == (32, 32, 3)
    assert max(w for w, _ in sizes) <= 500  # draft scale 1/8: 500×375, never 4000×3000


@pytest.mark.parametrize("content,reason", [
    (b"", "empty file"),
    (b"hello, I am text\n", "not an image"),
])
def test_not_an_image(tmp_path, content, reason):
    path = tmp_path / "fake.jpg"
    path.write_bytes(content)
    with pytest.raises(DecodeError, match=reason):
        decode_image(str(path), S)


def test_truncated_jpeg(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buf, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[:300])
    with pytest.raises(DecodeError, match="truncated|cannot decode"):
        decode_image(str(path), S)


def test_missing_file_hash_and_decode(tmp_path):
    with pytest.raises(DecodeError, match="file not found"):
        content_hash(str(tmp_path / "gone.png"))
    with pytest.raises(DecodeError, match="file not found"):
        decode_image(str(tmp_path / "gone.png"), S)


def test_content_hash_depends_on_bytes_only(tmp_path):
    a, b, c = tmp_path / "a.bin", tmp_path / "b.bin", tmp_path / "c.bin"
    a.write_bytes(b"same"), b.write_bytes(b"same"), c.write_bytes(b"other")
    assert content_hash(str(a)) == content_hash(str(b)) != content_hash(str(c))


def test_decode_files_in_workers_matches_in_process(tmp_path):
    files = []
    rng = np.random.default_rng(0)
    for i in range(40):
        files.append(_save(tmp_path / f"{i}.png", Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8))))
    (tmp_path / "bad.png").write_bytes(b"nope")
    files.insert(7, str(tmp_path / "bad.png"))
    one, err1 = decode_files(files, S, workers=1)
    two, err2 = decode_files(files, S, workers=2)
    np.testing.assert_array_equal(one, two)
    assert err1 == err2 and err1[7] is not None and sum(e is not None for e in err1) == 1
    # into the caller's array, file i into row rows[i]; the failed file's row stays zeros
    rows = np.arange(len(files))[::-1] * 2
    into = np.zeros((2 * len(files), S, S, 3), dtype=np.uint8)
    got, err3 = decode_files(files, S, workers=2, out=into, rows=rows)
    assert got is into and err3 == err1
    np.testing.assert_array_equal(into[rows], one)
    assert not into[1::2].any() and not into[rows[7]].any()


def test_one_pixel_image_is_scaled_up_like_any_other(tmp_path):
    Image.new("RGB", (1, 1), (12, 200, 99)).save(tmp_path / "dot.png")
    arr = decode_image(str(tmp_path / "dot.png"), 16)
    assert arr.shape == (16, 16, 3) and arr.dtype == np.uint8
    assert (arr == np.array([12, 200, 99], dtype=np.uint8)).all()
