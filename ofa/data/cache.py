"""Cache of decoded images: decode 60,000 JPEGs once, then load a tensor file in well under a second.

Each entry is a `torch.save`d dict of plain tensors plus a JSON sidecar with the metadata. The file
names carry a key derived from the data's content, so changed data gets a fresh entry. The sidecar
is written last and names the key and every tensor's shape: an entry whose files do not agree
(half-written, truncated, from another version) is treated as missing and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable

import torch

logger = logging.getLogger(__name__)

CACHE_VERSION = 1
CACHE_ENV_VAR = "OFA_DATA_CACHE"


def default_cache_dir() -> Path:
    """$OFA_DATA_CACHE, else ~/.cache/ofa-data."""
    override = os.environ.get(CACHE_ENV_VAR)
    return Path(override).expanduser() if override else Path.home() / ".cache" / "ofa-data"


def content_key(fields: dict[str, Any]) -> str:
    """A stable hash of JSON-able fields (data fingerprint, storage size, split settings)."""
    text = json.dumps({"cache_version": CACHE_VERSION, **fields}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# Up to this many bytes, data is identified by a hash of its contents, so a copy, a re-download or
# a remount (new modification times) is still the same dataset: same cache entry, resumable runs.
# Beyond it (ImageNet-sized folders), by names, sizes and modification times, which cost no reading.
HASH_CONTENT_UP_TO = 2 << 30


def _sha256_file(path: Path, digest: "hashlib._Hash | None" = None) -> "hashlib._Hash":
    digest = digest or hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest


def file_fingerprint(path: Path) -> dict[str, Any]:
    """Identify a file (a tarball): its size and content hash (size and mtime above the limit)."""
    stat = path.stat()
    if stat.st_size <= HASH_CONTENT_UP_TO:
        return {"size": stat.st_size, "sha256": _sha256_file(path).hexdigest()}
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def folder_fingerprint(root: Path, files: Iterable[tuple[str, Path]]) -> dict[str, Any]:
    """Identify a folder's images: a hash over (relative path, contents) of every file, or over
    (relative path, size, mtime) when the images total more than `HASH_CONTENT_UP_TO` bytes."""
    files = list(files)
    sizes = [path.stat().st_size for _, path in files]
    by_content = sum(sizes) <= HASH_CONTENT_UP_TO
    digest = hashlib.sha256()
    for (relpath, path), size in zip(files, sizes):
        if by_content:
            digest.update(f"{relpath}\0{size}\0".encode("utf-8"))
            _sha256_file(path, digest)
        else:
            digest.update(f"{relpath}\0{size}\0{path.stat().st_mtime_ns}\n".encode("utf-8"))
    ident = {"files": len(files), ("content_sha256" if by_content else "listing_sha256"): digest.hexdigest()}
    return ident if by_content else {"path": str(root.resolve()), **ident}


def entry_paths(cache_dir: Path, name: str, key: str) -> tuple[Path, Path]:
    """(tensor file, JSON sidecar) of one cache entry."""
    stem = f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)[:60] or 'data'}-{key[:24]}"
    return cache_dir / f"{stem}.pt", cache_dir / f"{stem}.json"


def load_entry(
    cache_dir: Path, name: str, key: str
) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The cached (tensors, metadata), or None when missing or damaged in any way."""
    tensor_path, meta_path = entry_paths(cache_dir, name, key)
    if not tensor_path.exists() or not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        tensors = torch.load(tensor_path, map_location="cpu", weights_only=True)
        _check_entry(tensors, meta, key)
    except Exception as exc:  # a damaged cache must never stop a run: rebuild it instead
        logger.warning("ignoring damaged data cache %s (%s); rebuilding it", tensor_path, exc)
        return None
    return tensors, meta


def _check_entry(tensors: Any, meta: Any, key: str) -> None:
    """Raise ValueError unless the tensors are exactly what the sidecar says."""
    if not isinstance(meta, dict) or meta.get("key") != key:
        raise ValueError("metadata key mismatch")
    shapes = meta.get("tensor_shapes")
    if not isinstance(tensors, dict) or not isinstance(shapes, dict) or set(tensors) != set(shapes):
        raise ValueError("tensor names do not match the metadata")
    for name, shape in shapes.items():
        tensor = tensors[name]
        if not isinstance(tensor, torch.Tensor) or list(tensor.shape) != list(shape):
            raise ValueError(f"tensor {name!r} does not have shape {shape}")


def save_entry(
    cache_dir: Path, name: str, key: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> Path | None:
    """Write an entry atomically (temp file + os.replace); on failure warn and carry on uncached."""
    tensor_path, meta_path = entry_paths(cache_dir, name, key)
    full_meta = {
        **meta,
        "key": key,
        "cache_version": CACHE_VERSION,
        "tensor_shapes": {k: list(v.shape) for k, v in tensors.items()},
    }
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(tensor_path, lambda f: torch.save(tensors, f))
        text = json.dumps(full_meta, indent=1, sort_keys=True)
        _atomic_write(meta_path, lambda f: f.write(text.encode("utf-8")))
    except OSError as exc:
        logger.warning("could not write data cache in %s (%s); continuing without it", cache_dir, exc)
        return None
    return tensor_path


def _atomic_write(path: Path, write) -> None:
    """Write through a temp file in the same folder, then rename over the target in one step."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp makes 0600; a shared cache should be readable
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
