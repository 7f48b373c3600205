"""Where images come from: parse a data spec, list a folder or tarball in ImageFolder layout, decode.

Everything here is about turning files into uint8 arrays; splitting, caching and batching live in
the other modules of `ofa.data`.
"""

from __future__ import annotations

import io
import logging
import os
import tarfile
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np
from PIL import Image
from tqdm import tqdm

from ofa.errors import OfaError

logger = logging.getLogger(__name__)

SPEC_HINT = "pass --data digits, cifar10:PATH.tar.gz, or an ImageFolder directory"
KNOWN_PREFIXES = ("cifar10", "folder", "imagefolder", "tar")
TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz")
IMAGE_EXTENSIONS = (
    ".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".pbm", ".bmp", ".gif", ".tif", ".tiff", ".webp",
)
SPLIT_DIRS = ("train", "test", "val")
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "F"})

ImageRef = Union[Path, bytes]  # what PIL opens: a file on disk or a tar member's bytes


class DataError(OfaError, ValueError):
    """A data problem the user can fix; the message is one line naming the problem and the fix."""


@dataclass(frozen=True)
class ImageFile:
    """One image file of a dataset, before decoding."""

    relpath: str  # '/'-separated path inside the folder or tarball; used in messages and metadata
    ref: ImageRef


@dataclass(frozen=True)
class Layout:
    """Which files are train/test images of which class, as read from the directory structure."""

    class_names: list[str]
    train: list[tuple[int, int]]  # (file index, label)
    test: list[tuple[int, int]]
    test_dir: str | None  # "test" or "val" when the data has its own test folder, else None


# ---------------------------------------------------------------------------------------------
# Spec parsing
# ---------------------------------------------------------------------------------------------


def parse_data_spec(spec: str) -> tuple[str, Path | None]:
    """Check a data spec early (before any decoding) and return (kind, path).

    kind is "digits" (path None), "cifar10" (a tarball or a folder), "tar" or "folder".
    Raises DataError with a one-line fix for unknown specs and missing or unusable paths.
    """
    text = str(spec).strip()
    if not text:
        raise DataError(f"empty data spec: {SPEC_HINT}")
    if text.lower() == "digits":
        return "digits", None
    if text.lower() in KNOWN_PREFIXES and not Path(text).exists():
        raise DataError(f"data spec '{text}' names no path: pass {text}:PATH")
    kind, path_text = _split_prefix(text)
    if not path_text:
        raise DataError(f"data spec '{text}' names no path: {SPEC_HINT}")
    path = Path(path_text).expanduser()
    if not path.exists():
        raise DataError(f"data path {path} does not exist: {SPEC_HINT}")
    if path.is_dir():
        return ("cifar10" if kind == "cifar10" else "folder"), path
    if not _is_tar_archive(path):
        if path.name.lower().endswith(TAR_SUFFIXES):
            raise DataError(
                f"data file {path} is not a valid tar archive: re-download it, or unpack it and "
                "pass the ImageFolder directory"
            )
        raise DataError(f"data path {path} is a file, not a folder or .tar.gz archive: {SPEC_HINT}")
    return ("cifar10" if kind == "cifar10" else "tar"), path


def _split_prefix(text: str) -> tuple[str | None, str]:
    """Split 'kind:path' into its parts; a plain path (even one holding ':') has no kind."""
    if ":" not in text or Path(text).expanduser().exists():
        return None, text
    prefix, rest = text.split(":", 1)
    if len(prefix) == 1:  # a Windows drive letter such as C:\data
        return None, text
    if prefix.lower() not in KNOWN_PREFIXES:
        raise DataError(f"unknown data spec '{text}' (prefix '{prefix}'): {SPEC_HINT}")
    return prefix.lower(), rest


def _is_tar_archive(path: Path) -> bool:
    """Whether a file opens as a (possibly compressed) tar archive; reads only its start."""
    try:
        return tarfile.is_tarfile(path)
    except (OSError, EOFError, zlib.error, tarfile.TarError):
        return False


# ---------------------------------------------------------------------------------------------
# Listing files
# ---------------------------------------------------------------------------------------------


def is_image_name(name: str) -> bool:
    """ImageFolder's rule: a known image extension, and not a hidden or macOS resource file."""
    base = name.rsplit("/", 1)[-1]
    return not base.startswith(".") and base.lower().endswith(IMAGE_EXTENSIONS)


def list_folder_images(root: Path) -> list[ImageFile]:
    """All image files under a folder, sorted by relative path, with their paths as refs."""
    files = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if is_image_name(name):
                full = Path(dirpath) / name
                files.append(ImageFile(full.relative_to(root).as_posix(), full))
    return sorted(files, key=lambda f: f.relpath)


def read_tar_images(path: Path, progress: bool = True) -> list[ImageFile]:
    """All image members of a tar archive with their bytes, read in one sequential pass.

    Reading sequentially is what makes a .tar.gz cheap (no random access into gzip), and a
    55 MB CIFAR archive fits in memory comfortably.
    """
    files = []
    try:
        with tarfile.open(path, "r:*") as archive:
            members = tqdm(archive, desc=f"reading {path.name}", unit=" files", disable=not progress)
            for member in members:
                if member.isfile() and is_image_name(member.name):
                    handle = archive.extractfile(member)
                    if handle is not None:
                        files.append(ImageFile(_clean_member_name(member.name), handle.read()))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"data file {path} is not a valid tar archive ({exc}): re-download it, or unpack it "
            "and pass the ImageFolder directory"
        ) from exc
    return sorted(files, key=lambda f: f.relpath)


def _clean_member_name(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name


# ---------------------------------------------------------------------------------------------
# Layout: which file is which split and class
# ---------------------------------------------------------------------------------------------


def find_layout(relpaths: Sequence[str], where: str) -> Layout:
    """Read ImageFolder structure from relative paths: root/{train,test|val}/<class>/... or root/<class>/...

    Leading folders shared by every file (such as a `cifar10/` wrapper in a tarball) are skipped.
    """
    if not relpaths:
        raise DataError(
            f"data folder {where} contains no images ({', '.join(IMAGE_EXTENSIONS[:4])}, ...): "
            f"put images in one subfolder per class, or {SPEC_HINT}"
        )
    parts = _strip_shared_prefix([p.split("/") for p in relpaths])
    top = {p[0] for p in parts if len(p) >= 3}
    if "train" in top:
        return _split_layout(parts, where, "test" if "test" in top else "val" if "val" in top else None)
    return _single_folder_layout(parts, where)


def _strip_shared_prefix(parts: list[list[str]]) -> list[list[str]]:
    """Drop leading folders that every file shares, stopping at split folders and class folders."""
    while all(len(p) >= 3 for p in parts):
        first = parts[0][0]
        if first in SPLIT_DIRS or any(p[0] != first for p in parts):
            break
        parts = [p[1:] for p in parts]
    return parts


def _split_layout(parts: list[list[str]], where: str, test_dir: str | None) -> Layout:
    """Layout with train/ and (optionally) test/ or val/ folders, each holding class folders."""
    train_classes = sorted({p[1] for p in parts if len(p) >= 3 and p[0] == "train"})
    class_names = _check_classes(train_classes, f"{where}/train")
    index = {name: i for i, name in enumerate(class_names)}
    train, test = [], []
    for i, p in enumerate(parts):
        if len(p) < 3:
            continue
        if p[0] == "train":
            train.append((i, index[p[1]]))
        elif p[0] == test_dir:
            if p[1] not in index:
                raise DataError(
                    f"data folder {where}/{test_dir} has class folder '{p[1]}' that {where}/train "
                    "lacks: give train/ and test/ the same class folders"
                )
            test.append((i, index[p[1]]))
    return Layout(class_names, train, test, test_dir)


def _single_folder_layout(parts: list[list[str]], where: str) -> Layout:
    """Layout of a single folder of class folders; the test split is carved off later."""
    classes = sorted({p[0] for p in parts if len(p) >= 2})
    if not classes:
        raise DataError(
            f"data folder {where} holds images but no class folders: put each class's images in "
            "its own subfolder (ImageFolder layout)"
        )
    class_names = _check_classes(classes, where)
    index = {name: i for i, name in enumerate(class_names)}
    train = [(i, index[p[0]]) for i, p in enumerate(parts) if len(p) >= 2]
    return Layout(class_names, train, [], None)


def _check_classes(classes: list[str], where: str) -> list[str]:
    """A classifier needs at least two classes."""
    if len(classes) < 2:
        found = f"only one class folder ('{classes[0]}')" if classes else "no class folders"
        raise DataError(
            f"data folder {where} has {found}: a classifier needs at least two class folders, "
            "one per class, each holding that class's images"
        )
    return classes


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------


def _open(ref: ImageRef) -> Image.Image:
    return Image.open(io.BytesIO(ref) if isinstance(ref, bytes) else ref)


def probe_image(ref: ImageRef) -> tuple[int, int, bool] | None:
    """(width, height, is_gray) from the image header, or None when it cannot be read."""
    try:
        with _open(ref) as image:
            width, height = image.size
            return width, height, image.mode in GRAY_MODES
    except Exception:  # PIL raises many types for bad files; any of them means "skip it"
        return None


def decode_image(ref: ImageRef, size: int, gray: bool) -> np.ndarray | None:
    """Decode one image to uint8 [size, size, C] (C=1 if gray else 3), or None when corrupt.

    Odd sizes are resized (bilinear, antialiased) straight to the square storage size; RGBA,
    palette and gray images are converted like torchvision's loader (alpha dropped).
    """
    mode = "L" if gray else "RGB"
    try:
        with _open(ref) as image:
            image.draft(mode, (size, size))  # JPEG: decode big images at reduced scale, cheaply
            image = image.convert(mode)
            if image.size != (size, size):
                image = image.resize((size, size), Image.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.uint8)
    except Exception:
        return None
    return array[:, :, None] if gray else array


def choose_storage_size(sizes: Sequence[tuple[int, int]]) -> int:
    """The most common side length (larger of width and height): 32 for CIFAR, 8 for digits."""
    counts = Counter(max(w, h) for w, h in sizes)
    return max(counts.items(), key=lambda item: (item[1], item[0]))[0]


@dataclass
class DecodedImages:
    """Decoded pixels of the readable files, in input order, and the files that were skipped."""

    images: np.ndarray  # uint8 [N, C, S, S]
    kept: list[int]  # index into the input file list of each decoded image
    skipped: list[str]


def decode_images(
    files: Sequence[ImageFile], image_size: int | None, progress: bool = True
) -> DecodedImages:
    """Decode files to one square storage size; unreadable files are skipped and named in a warning.

    A cheap header pass first fixes the storage size (when not given) and whether everything is
    gray (stored with 1 channel), so that the decode pass can write into one preallocated array.
    """
    probes = [probe_image(f.ref) for f in files]
    readable = [i for i, p in enumerate(probes) if p is not None]
    if not readable:
        raise DataError(f"none of the {len(files)} image files could be read: check the data")
    size = image_size or choose_storage_size([probes[i][:2] for i in readable])
    gray = all(probes[i][2] for i in readable)
    channels = 1 if gray else 3
    pixels = np.empty((len(readable), size, size, channels), dtype=np.uint8)
    kept: list[int] = []
    bar = tqdm(readable, desc="decoding images", unit=" img", disable=not progress)
    for i in bar:
        array = decode_image(files[i].ref, size, gray)
        if array is not None:
            pixels[len(kept)] = array
            kept.append(i)
    kept_set = set(kept)
    skipped = [files[i].relpath for i in range(len(files)) if i not in kept_set]
    if skipped:
        _warn_skipped(skipped)
    images = np.ascontiguousarray(pixels[: len(kept)].transpose(0, 3, 1, 2))
    return DecodedImages(images, kept, skipped)


def _warn_skipped(skipped: list[str]) -> None:
    shown = ", ".join(skipped[:10]) + (f" and {len(skipped) - 10} more" if len(skipped) > 10 else "")
    logger.warning("skipped %d unreadable or corrupt image file(s): %s", len(skipped), shown)


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """scikit-learn's bundled 8x8 digits as uint8 [N, 1, 8, 8] in 0..255, labels, class names."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.clip(np.rint(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    labels = digits.target.astype(np.int64)
    return images[:, None, :, :], labels, [str(i) for i in range(10)]
