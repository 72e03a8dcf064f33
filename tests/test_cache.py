"""The decoded-image cache: a re-scan of unchanged data decodes nothing; corruption is rebuilt."""
import numpy as np

from labelaudit.data import dataset as dataset_module
from labelaudit.data.cache import ImageCache
from labelaudit.data.dataset import load_dataset
from labelaudit.data.sources import list_folder


def _spy_decode(monkeypatch):
    calls = []
    real = dataset_module.decode_files

    def spy(files, size, **kw):
        calls.append(len(files))
        return real(files, size, **kw)

    monkeypatch.setattr(dataset_module, "decode_files", spy)
    return calls


def test_second_load_hits_the_cache_and_decodes_nothing(color_folder, tmp_path, monkeypatch):
    root, _ = color_folder
    calls = _spy_decode(monkeypatch)
    first = load_dataset(list_folder(root), image_size=16, workers=1, cache_dir=tmp_path / "c")
    second = load_dataset(list_folder(root), image_size=16, workers=1, cache_dir=tmp_path / "c")
    assert calls == [72]  # decoded once
    assert first.stats["n_decoded"] == 72 and second.stats == {**second.stats, "n_cached": 72, "n_decoded": 0}
    np.testing.assert_array_equal(first.images, second.images)


def test_cache_is_keyed_by_content_and_size(color_folder, tmp_path, monkeypatch):
    root, _ = color_folder
    load_dataset(list_folder(root), image_size=16, workers=1, cache_dir=tmp_path / "c")
    calls = _spy_decode(monkeypatch)
    # a changed file is decoded again, the others are not
    target = sorted(root.glob("red/*.png"))[5]
    target.write_bytes((root / "blue" / "blue_010.png").read_bytes())
    ds = load_dataset(list_folder(root), image_size=16, workers=1, cache_dir=tmp_path / "c")
    assert calls == [] and ds.stats["n_cached"] == 72  # same bytes as a cached file: a hit by content
    (root / "red" / "new.png").write_bytes(b"")  # new, unreadable
    seen = []
    load_dataset(list_folder(root), image_size=16, workers=1, cache_dir=tmp_path / "c",
                 progress=lambda stage, done, total, info: seen.append((stage, done, total, dict(info))))
    assert calls == [1]
    # the decode bar counts the one file to decode and names the 72 the cache holds
    assert [s for s in seen if s[0] == "decode"][-1] == ("decode", 1, 1, {"n_cached": 72})
    load_dataset(list_folder(root), image_size=20, workers=1, cache_dir=tmp_path / "c")
    assert calls == [1, 73]  # other size: nothing reused


def test_corrupted_pack_is_rebuilt_not_trusted(color_folder, tmp_path, monkeypatch):
    root, _ = color_folder
    good = load_dataset(list_folder(root), image_size=16, workers=1, cache_dir=tmp_path / "c")
    cache = ImageCache(tmp_path / "c", 16)
    (pack,) = list(cache.dir.glob("*.npy"))
    raw = bytearray(pack.read_bytes())
    raw[-100] ^= 0xFF  # flip bits inside the pixel data
    pack.write_bytes(bytes(raw))
    calls = _spy_decode(monkeypatch)
    again = load_dataset(list_folder(root), image_size=16, workers=1, cache_dir=tmp_path / "c")
    assert calls == [72]
    np.testing.assert_array_equal(good.images, again.images)
    assert not pack.exists()  # the bad pack was removed


def test_no_cache_dir_means_no_cache(color_folder, monkeypatch):
    root, _ = color_folder
    calls = _spy_decode(monkeypatch)
    load_dataset(list_folder(root), image_size=16, workers=1, cache_dir=None)
    load_dataset(list_folder(root), image_size=16, workers=1, cache_dir=None)
    assert calls == [72, 72]
