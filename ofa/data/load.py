"""load_dataset: one entry point for the bundled digits, the CIFAR-10 JPEG tarball and ImageFolders."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ofa.data import cache, sources
from ofa.data.dataset import DataSplits, ImageTensorDataset
from ofa.data.sources import DataError, ImageFile, Layout, parse_data_spec

logger = logging.getLogger(__name__)

# The test split carved from a single-folder dataset uses this seed, never the run's seed, so runs
# with different seeds all hold out the same test images and none of them trains on another's test.
TEST_SPLIT_SEED = 0
DEFAULT_VAL_MAX = 2000
DEFAULT_VAL_FRACTION = 0.1


@dataclass
class _BaseSplits:
    """Train and test data before the validation carve, as cached."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    meta: dict[str, Any] = field(default_factory=dict)


def load_dataset(
    spec: str,
    *,
    cache_dir: str | Path | None = None,
    val_size: int | float | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    image_size: int | None = None,
    progress: bool = True,
) -> DataSplits:
    """Load a dataset as in-memory uint8 train/val/test splits.

    spec: "digits", "cifar10:PATH" (tarball or folder), or a path to an ImageFolder directory or
    tarball. val_size: images held out of train for validation, as a count (int) or a fraction of
    train (float); default min(2000, 10% of train). test_fraction: share of a single-folder
    dataset carved off (with a fixed seed) as test. seed: selects the validation images; keep it
    fixed across the stages of one pipeline. image_size: side of the stored square images
    (default: the most common size in the data). Decoded images are cached in cache_dir (default
    $OFA_DATA_CACHE or ~/.cache/ofa-data); digits is built in memory and never cached.
    """
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must be between 0 and 1, got {test_fraction}: pass e.g. 0.2")
    if image_size is not None and image_size < 1:
        raise DataError(f"image_size must be a positive number of pixels, got {image_size}")
    kind, path = parse_data_spec(spec)
    if kind == "digits":
        base = _digits_base(test_fraction, image_size)
    else:
        assert path is not None
        cache_root = Path(cache_dir).expanduser() if cache_dir is not None else cache.default_cache_dir()
        base = _image_base(kind, path, cache_root, test_fraction, image_size, progress)
    return _finish(base, spec, val_size, seed)


# ---------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------


def _digits_base(test_fraction: float, image_size: int | None) -> _BaseSplits:
    """scikit-learn's digits; small enough to need no cache."""
    images_np, labels_np, class_names = sources.load_digits_arrays()
    images = torch.from_numpy(images_np)
    if image_size is not None and image_size != images.shape[-1]:
        images = _resize_uint8(images, image_size)
    labels = torch.from_numpy(labels_np)
    n_test = _carve_count(len(labels), test_fraction, "digits")
    keep, held = stratified_holdout(labels, n_test, TEST_SPLIT_SEED)
    meta = {
        "kind": "digits",
        "path": None,
        "class_names": class_names,
        "image_size": int(images.shape[-1]),
        "channels": 1,
        "skipped": [],
        "test_split": _carved_description(test_fraction),
        "test_files": [f"digits:{i}" for i in held.tolist()],
        "content_key": cache.content_key({"kind": "digits", "image_size": image_size,
                                          "test_fraction": test_fraction}),
        "cache_hit": False,
        "cache_file": None,
        "hflip": False,  # mirrored digits are different (or no) digits
    }
    return _BaseSplits(images[keep], labels[keep], images[held], labels[held], meta)


def _image_base(
    kind: str, path: Path, cache_root: Path, test_fraction: float, image_size: int | None,
    progress: bool,
) -> _BaseSplits:
    """A folder or tarball in ImageFolder layout, decoded once and then served from the cache."""
    files: list[ImageFile] | None = None
    if path.is_dir():
        files = sources.list_folder_images(path)
        fingerprint = cache.folder_fingerprint(path, ((f.relpath, f.ref) for f in files))
    else:
        fingerprint = cache.file_fingerprint(path)
    key = cache.content_key({
        "data": fingerprint, "image_size": image_size,
        "test_fraction": test_fraction, "test_seed": TEST_SPLIT_SEED,
    })
    name = kind if kind == "cifar10" else _entry_name(path)
    cached = cache.load_entry(cache_root, name, key)
    if cached is not None:
        tensors, meta = cached
        meta.update(cache_hit=True, cache_file=str(cache.entry_paths(cache_root, name, key)[0]))
        if meta["skipped"]:
            logger.info("%d corrupt image file(s) were skipped when this cache was built", len(meta["skipped"]))
        return _BaseSplits(tensors["train_images"], tensors["train_labels"],
                           tensors["test_images"], tensors["test_labels"], meta)

    if files is None:
        files = sources.read_tar_images(path, progress)
    base = _decode_base(files, sources.find_layout([f.relpath for f in files], str(path)),
                        test_fraction, image_size, progress)
    base.meta.update(kind=kind, path=str(path), content_key=key, hflip=True)
    tensors = {"train_images": base.train_images, "train_labels": base.train_labels,
               "test_images": base.test_images, "test_labels": base.test_labels}
    written = cache.save_entry(cache_root, name, key, tensors, base.meta)
    base.meta.update(cache_hit=False, cache_file=str(written) if written else None)
    return base


def _entry_name(path: Path) -> str:
    """A readable cache file name for a folder or tarball."""
    name = path.resolve().name
    for suffix in sources.TAR_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _decode_base(
    files: list[ImageFile], layout: Layout, test_fraction: float, image_size: int | None,
    progress: bool,
) -> _BaseSplits:
    """Decode the files the layout uses; carve a test split when the data has no test folder."""
    entries = [(i, label, False) for i, label in layout.train] + [(i, label, True) for i, label in layout.test]
    decoded = sources.decode_images([files[i] for i, _, _ in entries], image_size, progress)
    images = torch.from_numpy(decoded.images)
    labels = torch.tensor([entries[k][1] for k in decoded.kept], dtype=torch.int64)
    is_test = torch.tensor([entries[k][2] for k in decoded.kept], dtype=torch.bool)
    relpaths = [files[entries[k][0]].relpath for k in decoded.kept]
    train_idx = torch.nonzero(~is_test).flatten()
    test_idx = torch.nonzero(is_test).flatten()
    if len(train_idx) == 0:
        raise DataError("no training image could be read: check the train/ images for corruption")

    if layout.test_dir is None:
        n_test = _carve_count(len(train_idx), test_fraction, "the data")
        keep, held = stratified_holdout(labels[train_idx], n_test, TEST_SPLIT_SEED)
        train_idx, test_idx = train_idx[keep], train_idx[held]
        test_split = _carved_description(test_fraction)
        test_files = [relpaths[i] for i in test_idx.tolist()]
    else:
        test_split = f"the data's own {layout.test_dir}/ folder"
        test_files = []
        if len(test_idx) == 0:
            logger.warning("the %s/ folder holds no readable images: the test split is empty", layout.test_dir)
    meta = {
        "class_names": layout.class_names,
        "image_size": int(images.shape[-1]),
        "channels": int(images.shape[1]),
        "skipped": decoded.skipped,
        "test_split": test_split,
        "test_files": test_files,
    }
    return _BaseSplits(images[train_idx], labels[train_idx], images[test_idx], labels[test_idx], meta)


# ---------------------------------------------------------------------------------------------
# Splitting and statistics
# ---------------------------------------------------------------------------------------------


def stratified_holdout(labels: torch.Tensor, n_holdout: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split positions 0..N-1 into sorted (keep, holdout), holdout drawn at random per class.

    Each class contributes in proportion to its size, so small datasets keep every class in
    both parts: after a seeded shuffle, an image's key is its rank within its class divided by
    the class size, and the n_holdout smallest keys are held out.
    """
    n = len(labels)
    generator = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=generator)
    shuffled = labels[perm]
    counts = torch.bincount(shuffled)
    by_class = torch.argsort(shuffled, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty(n, dtype=torch.float64)
    rank[by_class] = (torch.arange(n) - starts[shuffled[by_class]]).to(torch.float64)
    keys = (rank + 0.5) / counts[shuffled].to(torch.float64)
    chosen = perm[torch.argsort(keys, stable=True)[:n_holdout]]
    mask = torch.zeros(n, dtype=torch.bool)
    mask[chosen] = True
    return torch.nonzero(~mask).flatten(), torch.nonzero(mask).flatten()


def _carve_count(n: int, fraction: float, what: str) -> int:
    count = max(1, int(round(n * fraction)))
    if count >= n:
        raise DataError(f"{what} has only {n} readable image(s), too few to carve a test split: add images")
    return count


def _carved_description(test_fraction: float) -> str:
    return f"carved: {test_fraction:.0%} of each class, fixed seed {TEST_SPLIT_SEED}"


def _val_count(val_size: int | float | None, n_train: int) -> int:
    """Default min(2000, 10% of train); an int is a count, a float a fraction of train."""
    if val_size is None:
        count = min(DEFAULT_VAL_MAX, int(round(DEFAULT_VAL_FRACTION * n_train)))
    elif isinstance(val_size, float):
        if not 0.0 <= val_size < 1.0:
            raise DataError(f"val_size as a fraction must be in [0, 1), got {val_size}: pass e.g. 0.1")
        count = int(round(val_size * n_train))
    else:
        count = int(val_size)
    if not 0 <= count < n_train:
        raise DataError(f"val_size {val_size} leaves no training images out of {n_train}: pass a smaller val_size")
    return count


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in 0..1 units, via pixel histograms (exact, no float copy).

    Gray data gets its single value repeated three times, matching the 3-channel network input.
    """
    means, stds = [], []
    values = torch.arange(256, dtype=torch.float64) / 255.0
    for c in range(images.shape[1]):
        hist = torch.bincount(images[:, c].reshape(-1), minlength=256).to(torch.float64)
        total = hist.sum().clamp_min(1.0)
        mean = float((hist * values).sum() / total)
        var = float((hist * values.square()).sum() / total) - mean * mean
        means.append(mean)
        stds.append(max(var, 0.0) ** 0.5 or 1.0)
    if len(means) == 1:
        means, stds = means * 3, stds * 3
    return means, stds


def _resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    resized = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True,
                            align_corners=False)
    return resized.round_().clamp_(0, 255).to(torch.uint8)


def _finish(base: _BaseSplits, spec: str, val_size: int | float | None, seed: int) -> DataSplits:
    """Carve validation from train and assemble DataSplits with its info."""
    n_val = _val_count(val_size, len(base.train_labels))
    keep, held = stratified_holdout(base.train_labels, n_val, seed)
    train = ImageTensorDataset(base.train_images[keep], base.train_labels[keep])
    val = ImageTensorDataset(base.train_images[held], base.train_labels[held])
    test = ImageTensorDataset(base.test_images, base.test_labels)
    mean, std = channel_stats(train.images)
    meta = base.meta
    info = {
        "source": str(spec),
        "kind": meta["kind"],
        "path": meta["path"],
        "image_size": meta["image_size"],
        "channels": meta["channels"],
        "counts": {"train": len(train), "val": len(val), "test": len(test)},
        "num_skipped": len(meta["skipped"]),
        "skipped": list(meta["skipped"]),
        "test_split": meta["test_split"],
        "test_files": list(meta["test_files"]),
        "val_split": f"carved from train: {n_val} images, stratified, seed {seed}",
        "seed": seed,
        "content_key": meta["content_key"],
        "cache_hit": meta["cache_hit"],
        "cache_file": meta["cache_file"],
        "hflip": meta["hflip"],
        "mean": mean,
        "std": std,
    }
    return DataSplits(train, val, test, list(meta["class_names"]), info)


__all__ = ["load_dataset", "stratified_holdout", "channel_stats", "TEST_SPLIT_SEED"]
