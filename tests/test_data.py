"""Tests for ofa.data: sources, splits, cache, errors and the batch loader."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ofa.data import (
    BatchLoader,
    DataError,
    DataSplits,
    ImageTensorDataset,
    load_dataset,
    parse_data_spec,
)
from ofa.data import sources
from ofa.data.load import stratified_holdout

CIFAR_TARBALL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _rows(images: torch.Tensor) -> list[bytes]:
    """Images as a sorted list of byte strings: compares datasets as multisets of images."""
    return sorted(bytes(row.numpy().tobytes()) for row in images.reshape(len(images), -1))


def _save_noise(path: Path, size: tuple[int, int], mode: str, rng: np.random.Generator) -> None:
    """A random (hence unique) image of the given (width, height) and PIL mode."""
    width, height = size
    channels = {"L": 1, "RGB": 3, "RGBA": 4}
    if mode == "P":
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).convert("P")
    else:
        array = rng.integers(0, 256, (height, width, channels[mode]), dtype=np.uint8)
        image = Image.fromarray(array[:, :, 0] if mode == "L" else array, mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def make_class_folders(root: Path, classes=("cat", "dog", "eel"), per_class: int = 6, seed: int = 0,
                       odd: bool = True) -> None:
    """Class folders of mostly 20x20 PNGs, plus odd sizes, gray, RGBA, palette and a corrupt file."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        for i in range(per_class):
            _save_noise(root / name / f"{i:03d}.png", (20, 20), "RGB", rng)
    if odd:
        _save_noise(root / classes[0] / "odd_a.png", (17, 23), "RGB", rng)
        _save_noise(root / classes[1] / "odd_b.png", (40, 31), "RGB", rng)
        _save_noise(root / classes[0] / "gray.png", (20, 20), "L", rng)
        _save_noise(root / classes[1] / "alpha.png", (20, 20), "RGBA", rng)
        _save_noise(root / classes[2] / "palette.png", (20, 20), "P", rng)
        (root / classes[2] / "broken.jpg").write_bytes(rng.integers(0, 256, 500, dtype=np.uint8).tobytes())
        (root / classes[2] / "notes.txt").write_text("not an image, ignored")


@pytest.fixture(autouse=True)
def _no_default_cache(tmp_path, monkeypatch):
    """Tests other than the CIFAR one never touch the user's cache."""
    monkeypatch.setenv("OFA_DATA_CACHE", str(tmp_path / "default-cache"))


# ---------------------------------------------------------------------------------------------
# digits
# ---------------------------------------------------------------------------------------------


def test_digits_loads_partitioned_and_deterministic(tmp_path):
    splits = load_dataset("digits", cache_dir=tmp_path, progress=False)
    assert isinstance(splits, DataSplits)
    assert splits.class_names == [str(i) for i in range(10)]
    counts = splits.info["counts"]
    assert counts == {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)}
    assert sum(counts.values()) == 1797
    assert abs(len(splits.val) - 0.1 * (1797 - len(splits.test))) <= 1
    assert splits.train.images.dtype == torch.uint8 and splits.train.images.shape[1:] == (1, 8, 8)
    assert splits.train.labels.dtype == torch.int64
    assert splits.train.images.max() == 255  # 0..16 scaled to 0..255
    assert splits.info["hflip"] is False and len(splits.info["mean"]) == 3

    # Every original image lands in exactly one split.
    original = torch.from_numpy(sources.load_digits_arrays()[0])
    together = torch.cat([splits.train.images, splits.val.images, splits.test.images])
    assert _rows(together) == _rows(original)
    assert set(torch.unique(splits.val.labels).tolist()) == set(range(10))  # stratified

    again = load_dataset("digits", cache_dir=tmp_path, progress=False)
    assert torch.equal(again.val.images, splits.val.images)
    assert torch.equal(again.train.labels, splits.train.labels)
    other_seed = load_dataset("digits", seed=1, progress=False)
    assert torch.equal(other_seed.test.images, splits.test.images)  # the test split never moves
    assert not torch.equal(other_seed.val.images, splits.val.images)


def test_val_size_count_and_fraction():
    assert len(load_dataset("digits", val_size=100, progress=False).val) == 100
    splits = load_dataset("digits", val_size=0.25, progress=False)
    assert len(splits.val) == round(0.25 * (len(splits.train) + len(splits.val)))
    with pytest.raises(DataError):
        load_dataset("digits", val_size=10_000, progress=False)


def test_stratified_holdout_is_a_disjoint_proportional_split():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    keep, held = stratified_holdout(labels, 10, seed=3)
    assert len(keep) + len(held) == 100
    assert not set(keep.tolist()) & set(held.tolist())
    assert torch.bincount(labels[held]).tolist() == [5, 3, 2]
    assert torch.equal(held, stratified_holdout(labels, 10, seed=3)[1])


# ---------------------------------------------------------------------------------------------
# ImageFolder and tarballs
# ---------------------------------------------------------------------------------------------


def test_single_folder_skips_corrupt_and_records_test_split(tmp_path, caplog):
    root = tmp_path / "pets"
    make_class_folders(root, per_class=10)
    splits = load_dataset(str(root), cache_dir=tmp_path / "cache", progress=False)
    info = splits.info
    assert splits.class_names == ["cat", "dog", "eel"]
    assert info["num_skipped"] == 1 and info["skipped"] == ["eel/broken.jpg"]
    assert "eel/broken.jpg" in caplog.text
    assert info["image_size"] == 20 and info["channels"] == 3  # most common size; mixed -> RGB
    assert splits.train.images.shape[1:] == (3, 20, 20)
    total = 3 * 10 + 5
    assert sum(info["counts"].values()) == total
    assert info["counts"]["test"] == round(0.2 * total) == len(info["test_files"])
    assert "carved" in info["test_split"]
    assert not any(name in info["test_files"] for name in info["skipped"])
    # The recorded test files really are the test images, and none of them is in train or val.
    decoded = [
        torch.from_numpy(np.array(sources.decode_image(root / name, 20, False))).permute(2, 0, 1)
        for name in info["test_files"]
    ]
    assert _rows(torch.stack(decoded)) == _rows(splits.test.images)
    train_rows = set(_rows(torch.cat([splits.train.images, splits.val.images])))
    assert not train_rows & set(_rows(splits.test.images))


def test_gray_only_folder_stored_with_one_channel_and_image_size(tmp_path):
    rng = np.random.default_rng(1)
    for name in ("a", "b"):
        for i in range(5):
            _save_noise(tmp_path / "g" / name / f"{i}.png", (12, 12), "L", rng)
    splits = load_dataset(str(tmp_path / "g"), cache_dir=tmp_path / "c", image_size=16, progress=False)
    assert splits.train.images.shape[1:] == (1, 16, 16)
    assert splits.info["channels"] == 1 and splits.info["image_size"] == 16


def test_train_test_layout_and_tarball(tmp_path):
    root = tmp_path / "data"
    make_class_folders(root / "train", per_class=8, seed=0, odd=False)
    make_class_folders(root / "test", per_class=3, seed=1, odd=False)
    splits = load_dataset(str(root), cache_dir=tmp_path / "cache", progress=False)
    assert splits.class_names == ["cat", "dog", "eel"]
    assert len(splits.test) == 9 and len(splits.train) + len(splits.val) == 24
    assert splits.info["test_files"] == [] and "test/" in splits.info["test_split"]

    tarball = tmp_path / "data.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(root, arcname="wrapped")  # a wrapper folder is skipped
    from_tar = load_dataset(str(tarball), cache_dir=tmp_path / "cache", progress=False)
    assert from_tar.class_names == splits.class_names
    assert torch.equal(from_tar.test.images, splits.test.images)
    assert torch.equal(from_tar.train.images, splits.train.images)
    assert load_dataset(f"cifar10:{tarball}", cache_dir=tmp_path / "cache", progress=False).info["kind"] == "cifar10"


def test_val_folder_serves_as_test(tmp_path):
    make_class_folders(tmp_path / "d" / "train", per_class=5, odd=False)
    make_class_folders(tmp_path / "d" / "val", per_class=2, seed=2, odd=False)
    splits = load_dataset(str(tmp_path / "d"), cache_dir=tmp_path / "c", progress=False)
    assert len(splits.test) == 6 and "val/" in splits.info["test_split"]


# ---------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------


def test_cache_hit_invalidation_and_damage(tmp_path, monkeypatch):
    root, cache_dir = tmp_path / "pets", tmp_path / "cache"
    make_class_folders(root, per_class=6)
    first = load_dataset(str(root), cache_dir=cache_dir, progress=False)
    assert first.info["cache_hit"] is False and Path(first.info["cache_file"]).exists()

    real_decode = sources.decode_images

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again despite a valid cache")

    monkeypatch.setattr(sources, "decode_images", no_decoding)
    second = load_dataset(str(root), cache_dir=cache_dir, progress=False)
    assert second.info["cache_hit"] is True
    assert torch.equal(second.train.images, first.train.images)
    assert second.info["skipped"] == first.info["skipped"]
    assert second.info["test_files"] == first.info["test_files"]
    monkeypatch.setattr(sources, "decode_images", real_decode)

    _save_noise(root / "dog" / "new.png", (20, 20), "RGB", np.random.default_rng(9))
    third = load_dataset(str(root), cache_dir=cache_dir, progress=False)
    assert third.info["cache_hit"] is False
    assert sum(third.info["counts"].values()) == sum(first.info["counts"].values()) + 1

    cache_file = Path(third.info["cache_file"])
    cache_file.write_bytes(cache_file.read_bytes()[: cache_file.stat().st_size // 2])
    rebuilt = load_dataset(str(root), cache_dir=cache_dir, progress=False)
    assert rebuilt.info["cache_hit"] is False
    assert torch.equal(rebuilt.train.images, third.train.images)
    cache_file.with_suffix(".json").write_text("{ not json")
    assert load_dataset(str(root), cache_dir=cache_dir, progress=False).info["cache_hit"] is False
    assert load_dataset(str(root), cache_dir=cache_dir, progress=False).info["cache_hit"] is True
    assert not list(cache_dir.glob("*.tmp"))


def test_data_identity_survives_copies_and_new_mtimes_but_not_new_content(tmp_path):
    """A copied, re-downloaded or remounted dataset is the same data: cached and resumable."""
    import os
    import shutil

    root = tmp_path / "pets"
    make_class_folders(root, per_class=4, odd=False)
    tarball = tmp_path / "pets.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(root, arcname="pets")

    def key(spec: Path) -> str:
        return load_dataset(str(spec), cache_dir=tmp_path / "cache", progress=False).info["content_key"]

    folder_key, tar_key = key(root), key(tarball)
    copy, tar_copy = tmp_path / "elsewhere" / "pets", tmp_path / "elsewhere" / "pets.tar.gz"
    shutil.copytree(root, copy)
    shutil.copy(tarball, tar_copy)
    for path in [tar_copy, *copy.rglob("*")]:
        os.utime(path, (1_000_000, 1_000_000))
    assert key(copy) == folder_key and key(tar_copy) == tar_key
    image = next(p for p in sorted(copy.rglob("*.png")))
    data = bytearray(image.read_bytes())
    data[-20] ^= 0xFF  # same size, other content
    image.write_bytes(bytes(data))
    assert key(copy) != folder_key


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    make_class_folders(tmp_path / "pets", per_class=4, odd=False)
    monkeypatch.setenv("OFA_DATA_CACHE", str(tmp_path / "env-cache"))
    splits = load_dataset(str(tmp_path / "pets"), progress=False)
    assert Path(splits.info["cache_file"]).parent == tmp_path / "env-cache"


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


def _error_for(spec: str, tmp_path: Path) -> str:
    with pytest.raises(DataError) as caught:
        load_dataset(spec, cache_dir=tmp_path / "cache", progress=False)
    message = str(caught.value)
    assert isinstance(caught.value, ValueError) and "\n" not in message
    return message


def test_errors_are_one_line_and_helpful(tmp_path):
    missing = tmp_path / "nowhere"
    assert str(missing) in _error_for(str(missing), tmp_path) and "does not exist" in _error_for(
        f"cifar10:{missing}", tmp_path)

    (tmp_path / "empty").mkdir()
    assert "contains no images" in _error_for(str(tmp_path / "empty"), tmp_path)

    _save_noise(tmp_path / "one" / "only" / "a.png", (8, 8), "RGB", np.random.default_rng(0))
    assert "only one class" in _error_for(str(tmp_path / "one"), tmp_path)

    _save_noise(tmp_path / "loose" / "a.png", (8, 8), "RGB", np.random.default_rng(0))
    assert "no class folders" in _error_for(str(tmp_path / "loose"), tmp_path)

    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"this is not a tarball" * 50)
    assert "not a valid tar archive" in _error_for(str(bad), tmp_path)

    assert "unknown data spec" in _error_for("foo:bar", tmp_path)


def test_truncated_tarball_is_a_data_error(tmp_path):
    make_class_folders(tmp_path / "d", per_class=30, odd=False)
    tarball = tmp_path / "d.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(tmp_path / "d", arcname="d")
    tarball.write_bytes(tarball.read_bytes()[: tarball.stat().st_size // 2])
    assert "not a valid tar archive" in _error_for(str(tarball), tmp_path)


def test_parse_data_spec(tmp_path):
    assert parse_data_spec("digits") == ("digits", None)
    assert parse_data_spec(str(tmp_path)) == ("folder", tmp_path)
    assert parse_data_spec(f"cifar10:{tmp_path}") == ("cifar10", tmp_path)
    with pytest.raises(DataError, match="unknown data spec"):
        parse_data_spec("imagenet:/x")
    with pytest.raises(DataError, match="does not exist"):
        parse_data_spec("/definitely/not/here")


# ---------------------------------------------------------------------------------------------
# BatchLoader
# ---------------------------------------------------------------------------------------------


def _toy_dataset(n: int = 50, channels: int = 3, size: int = 16) -> ImageTensorDataset:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, channels, size, size), generator=generator, dtype=torch.uint8)
    return ImageTensorDataset(images, torch.arange(n) % 5)


def test_loader_shapes_and_one_resolution_per_batch():
    loader = BatchLoader(_toy_dataset(), 8, train=True, resolutions=[8, 12, 16])
    assert len(loader) == 50 // 8
    seen = set()
    for epoch in range(3):
        loader.set_epoch(epoch)
        for step, (x, y, resolution) in enumerate(loader):
            assert x.dtype == torch.float32 and x.shape == (8, 3, resolution, resolution)
            assert y.dtype == torch.int64 and y.shape == (8,)
            assert resolution == loader.resolution_for(epoch, step)
            seen.add(resolution)
    assert seen == {8, 12, 16}


def test_loader_ranks_agree_on_resolution_and_split_the_data():
    dataset = _toy_dataset(n=53)
    ranks = [BatchLoader(dataset, 4, train=True, resolutions=[8, 12, 16], seed=5, rank=r, world_size=2)
             for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == (53 // 2) // 4
    for loader in ranks:
        loader.set_epoch(3)
    runs = [list(loader) for loader in ranks]
    assert [r for _, _, r in runs[0]] == [r for _, _, r in runs[1]]
    first, second = (set(loader.indices().tolist()) for loader in ranks)
    assert not first & second and len(first) == len(second) == len(ranks[0]) * 4

    padded = [BatchLoader(dataset, 4, train=True, resolutions=[16], rank=r, world_size=2, drop_last=False)
              for r in range(2)]
    assert len(padded[0]) == len(padded[1]) == 7
    assert set(padded[0].indices().tolist()) | set(padded[1].indices().tolist()) == set(range(53))


def test_set_epoch_reshuffles_deterministically():
    loader = BatchLoader(_toy_dataset(), 10, train=True, resolutions=[16], seed=1)
    epoch0 = loader.indices()
    loader.set_epoch(1)
    epoch1 = loader.indices()
    assert not torch.equal(epoch0, epoch1)
    assert torch.equal(epoch1, BatchLoader(_toy_dataset(), 10, train=True, resolutions=[16], seed=1).indices(1))
    loader.set_epoch(1)
    a = [x for x, _, _ in loader]
    b = [x for x, _, _ in loader]
    assert all(torch.equal(p, q) for p, q in zip(a, b))  # augmentation is reproducible too


def test_eval_loader_is_ordered_and_normalised():
    dataset = _toy_dataset(n=21, channels=1)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)
    loader = BatchLoader(dataset, 8, train=False, resolutions=[12, 16], mean=mean, std=std)
    batches = list(loader)
    assert len(loader) == len(batches) == 3 and [len(y) for _, y, _ in batches] == [8, 8, 5]
    x = torch.cat([b[0] for b in batches])
    assert {r for _, _, r in batches} == {16}  # eval uses one (the largest) resolution
    expected = (dataset.images.float().expand(-1, 3, -1, -1) / 255 - torch.tensor(mean).view(1, 3, 1, 1)) \
        / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(x, expected, atol=1e-5)
    assert torch.equal(torch.cat([b[1] for b in batches]), dataset.labels)


@pytest.mark.parametrize("pad_mode", ["reflect", "zeros"])
@pytest.mark.parametrize("hflip", [True, False])
def test_augmentation_is_a_padded_crop_with_optional_flip(pad_mode, hflip):
    dataset = _toy_dataset(n=12, size=16)
    loader = BatchLoader(dataset, 12, train=True, resolutions=[16], hflip=hflip, pad_mode=pad_mode,
                         mean=(0, 0, 0), std=(1 / 255, 1 / 255, 1 / 255))
    order = loader.indices()
    x, _, _ = next(iter(loader))
    pad = 2
    padded = torch.nn.functional.pad(dataset.images.float(), (pad,) * 4,
                                     mode="reflect" if pad_mode == "reflect" else "constant")
    flipped_any = False
    for image, index in zip(x, order.tolist()):
        candidates = {}
        for dy in range(2 * pad + 1):
            for dx in range(2 * pad + 1):
                crop = padded[index, :, dy:dy + 16, dx:dx + 16]
                candidates[(dy, dx, False)] = crop
                candidates[(dy, dx, True)] = crop.flip(-1)
        matches = [k for k, c in candidates.items() if torch.allclose(image, c, atol=1e-3)]
        assert matches, "augmented image is not a crop of the padded original"
        flipped_any |= all(k[2] for k in matches)
    assert flipped_any == hflip


# ---------------------------------------------------------------------------------------------
# CIFAR-10 (JPEG copy), when present
# ---------------------------------------------------------------------------------------------


@pytest.mark.skipif(not CIFAR_TARBALL.exists(), reason=f"CIFAR-10 tarball not found at {CIFAR_TARBALL}")
def test_cifar10_tarball(monkeypatch):
    monkeypatch.delenv("OFA_DATA_CACHE")  # the default cache, so that later runs are fast
    splits = load_dataset(f"cifar10:{CIFAR_TARBALL}", progress=False)
    assert splits.class_names == CIFAR_CLASSES
    assert len(splits.train) + len(splits.val) == 50_000 and len(splits.test) == 10_000
    assert len(splits.val) == 2000 and splits.info["num_skipped"] == 0
    assert splits.train.images.shape[1:] == (3, 32, 32)
    assert torch.bincount(splits.test.labels).tolist() == [1000] * 10
    x, y, r = next(iter(BatchLoader(splits.train, 64, train=True, resolutions=[24, 32],
                                    mean=splits.info["mean"], std=splits.info["std"])))
    assert x.shape == (64, 3, r, r) and abs(float(x.mean())) < 0.5
