"""Collect (arch, accuracy) samples: stratified archs, BN re-calibration, top-1 on the validation split.

Archs are drawn to cover the space evenly: the same number per resolution, and within each
resolution evenly over model size (MACs), not only uniformly per slot (which piles subnets up
in the middle of the size range and leaves the small and large ends, where the search ends up,
nearly unsampled).  Each subnet is extracted, its BatchNorm statistics re-estimated on
`n_calib` validation images, and its top-1 measured on the validation split.  The normalized
image batches of a resolution are computed once and reused for every subnet at that resolution.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from ofa.bn import recalibrate_bn
from ofa.evaluate import evaluate, normalization, shuffled_subset
from ofa.space import Arch, SearchSpace
from ofa.supernet import Supernet
from predictors.samples import Sample, SamplesError, SamplesHeader, append_line, create_file, read_samples, repair_tail

__all__ = ["supernet_fingerprint", "stratified_archs", "SubnetEvaluator", "CollectResult", "collect_samples", "plan_remaining"]

log = logging.getLogger(__name__)


def supernet_fingerprint(net: Supernet) -> str:
    """Hash of the space and every weight: samples measured on other weights are not comparable."""
    digest = hashlib.sha256(net.space.fingerprint().encode())
    for name, tensor in sorted(net.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def _size_biased_archs(space: SearchSpace, rng: np.random.Generator, n: int, resolution: int) -> list[Arch]:
    """Archs whose choices lean small or large together (a random size level per arch), at `resolution`."""
    level = rng.uniform(0.0, 1.0, size=(n, 1))

    def draw(values: Sequence, width: int) -> np.ndarray:
        m = len(values)
        pos = np.arange(m) / max(m - 1, 1)
        logits = -((pos[None, :] - level) ** 2) / (2 * 0.25**2)
        probs = np.exp(logits)
        probs /= probs.sum(1, keepdims=True)
        cum = probs.cumsum(1)
        u = rng.uniform(size=(n, width))
        return np.minimum((u[:, :, None] > cum[:, None, :]).sum(2), m - 1)

    k = np.asarray(space.kernel_sizes)[draw(space.kernel_sizes, space.n_slots)]
    e = np.asarray(space.expand_ratios, dtype=float)[draw(space.expand_ratios, space.n_slots)]
    d = np.asarray(space.depths)[draw(space.depths, space.n_stages)]
    return [Arch(tuple(k[i]), tuple(e[i]), tuple(d[i]), resolution).canonical(space.max_depth) for i in range(n)]


def stratified_archs(space: SearchSpace, n: int, seed: int = 0, size_bins: int = 10) -> list[Arch]:
    """`n` distinct archs: equal shares per resolution, and within one, even over `size_bins` MAC bins.

    Deterministic in (space, n, seed), so a resumed collection plans the same archs.  Returned in
    resolution order (batches of one resolution are reused across consecutive subnets).
    """
    if n < 1:
        raise ValueError(f"number of archs must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    resolutions = list(space.resolutions)
    share = [n // len(resolutions) + (1 if i < n % len(resolutions) else 0) for i in range(len(resolutions))]
    order = rng.permutation(len(resolutions))  # which resolutions get the remainder
    share = [share[int(np.where(order == i)[0][0])] for i in range(len(resolutions))]
    out: list[Arch] = []
    seen: set[str] = set()
    for resolution, count in zip(resolutions, share):
        if count == 0:
            continue
        pool = _size_biased_archs(space, rng, max(20 * count, 200), resolution)
        pool = list({a.key(): a for a in pool if a.key() not in seen}.values())
        _, macs = space.count_many(pool)
        logm = np.log(np.asarray(macs, dtype=float))
        edges = np.linspace(logm.min(), logm.max() + 1e-9, size_bins + 1)
        bins = [list(rng.permutation(np.where((logm >= lo) & (logm < hi))[0])) for lo, hi in zip(edges[:-1], edges[1:])]
        picked = 0
        while picked < count and any(bins):
            for b in bins:
                if b and picked < count:
                    arch = pool[int(b.pop())]
                    seen.add(arch.key())
                    out.append(arch)
                    picked += 1
        while picked < count:  # tiny spaces: fall back to uniform draws for the remainder
            arch = space.sample(rng)
            arch = Arch(arch.kernel, arch.expand, arch.depth, resolution).canonical(space.max_depth)
            if arch.key() not in seen:
                seen.add(arch.key())
                out.append(arch)
                picked += 1
    return out


class SubnetEvaluator:
    """Re-calibrates and evaluates subnets of one supernet, reusing normalized batches per resolution.

    Equivalent to `ofa.evaluate.evaluate_arch`, but the batches of the most recent resolution are
    kept, so consecutive subnets at one resolution skip the gather, resize and normalization.
    """

    def __init__(self, supernet: Supernet, calib_dataset, eval_dataset, *, n_calib: int = 2000, batch_size: int = 200,
                 device: str | torch.device = "cpu") -> None:
        if n_calib < 1:
            raise ValueError(f"n_calib must be >= 1, got {n_calib}")
        self.supernet = supernet
        self.calib_dataset, self.eval_dataset = calib_dataset, eval_dataset
        self.n_calib, self.batch_size, self.device = int(n_calib), int(batch_size), torch.device(device)
        self.mean, self.std = normalization(supernet)
        self._resolution: int | None = None
        self._calib: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._eval: list[tuple[torch.Tensor, torch.Tensor]] = []

    def _batches(self, dataset, resolution: int, limit: int | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        from ofa.data import BatchLoader

        loader = BatchLoader(dataset, self.batch_size, train=False, resolutions=[resolution], mean=self.mean, std=self.std)
        out, seen = [], 0
        for x, y, _ in loader:
            out.append((x.to(self.device), y.to(self.device)))
            seen += len(y)
            if limit is not None and seen >= limit:
                break
        return out

    def _prepare(self, resolution: int) -> None:
        if resolution != self._resolution:
            self._calib = self._batches(shuffled_subset(self.calib_dataset, self.n_calib), resolution, self.n_calib)
            self._eval = self._batches(self.eval_dataset, resolution, None)
            self._resolution = resolution

    def __call__(self, arch: Arch):
        self._prepare(arch.resolution)
        net = self.supernet.extract(arch).to(self.device)
        recalibrate_bn(net, self._calib, n_images=self.n_calib, device=self.device)
        return evaluate(net, self._eval, self.device)


@dataclass(frozen=True)
class CollectResult:
    path: Path
    total: int  # samples in the file now
    added: int  # samples this call evaluated
    seconds_per_sample: float  # median wall time of one evaluation (0 when none was added)


def plan_remaining(space: SearchSpace, n: int, seed: int, done: set[str]) -> list[Arch]:
    """The archs still to evaluate so the file holds `n`: the seeded plan minus those already there."""
    need = n - len(done)
    if need <= 0:
        return []
    plan = [a for a in stratified_archs(space, n, seed) if a.key() not in done]
    if len(plan) < need:  # the file holds archs from another plan (other seed): top up from a wider plan
        planned = done | {a.key() for a in plan}
        plan += [a for a in stratified_archs(space, 2 * n + len(done), seed + 1) if a.key() not in planned]
    return plan[:need]


def _torchrun() -> tuple[int, int, int]:
    """(rank, world size, local rank) when launched by torchrun, else (0, 1, 0)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def collect_samples(
    supernet: Supernet,
    splits,
    out: str | Path,
    *,
    n: int,
    data: str,
    seed: int = 0,
    n_calib: int = 2000,
    calib_split: str = "val",
    batch_size: int = 200,
    workers: int = 1,
    device: str | None = None,
    progress: bool = True,
    archs: Sequence[Arch] | None = None,
) -> CollectResult:
    """Evaluate stratified archs of `supernet` on `splits.val` and append them to the JSONL file `out`.

    Resumes: archs already in `out` are skipped, never evaluated twice; the file must come from the
    same supernet and protocol.  `workers` > 1 runs CPU worker processes; under `torchrun` each rank
    takes its share of the archs (on `cuda:LOCAL_RANK` when available).  `archs` overrides the plan.
    """
    if calib_split not in ("val", "train"):
        raise SamplesError(f"calib split must be 'val' or 'train', got {calib_split!r}")
    if len(splits.val) == 0:
        raise SamplesError(f"dataset {data} has an empty validation split: pass a larger --val-size")
    space = supernet.space
    out = Path(out)
    header = SamplesHeader(space, supernet_fingerprint(supernet), data, int(n_calib), calib_split, "val", len(splits.val))
    rank, world, local_rank = _torchrun()
    if world > 1:
        return _collect_distributed(supernet, splits, out, header, n=n, seed=seed, batch_size=batch_size,
                                    device=device, progress=progress, archs=archs, rank=rank, world=world, local_rank=local_rank)
    done = _open_file(out, header)
    todo = [a for a in archs if a.key() not in done] if archs is not None else plan_remaining(space, n, seed, done)
    todo = list({a.key(): space.validate(a) for a in todo}.values())
    todo.sort(key=lambda a: a.resolution)
    calib = splits.val if calib_split == "val" else splits.train
    times = _run(supernet, calib, splits.val, todo, out, header, n_calib=n_calib, batch_size=batch_size,
                 workers=workers, device=device or "cpu", progress=progress)
    return CollectResult(out, len(done) + len(times), len(times), float(np.median(times)) if times else 0.0)


def _open_file(out: Path, header: SamplesHeader) -> set[str]:
    """Create `out` with its header, or check the existing one matches; the keys already there."""
    if create_file(out, header):
        return set()
    repair_tail(out)
    existing = read_samples(out)
    problem = existing.header.mismatch(header)
    if problem:
        raise SamplesError(
            f"{out} holds samples from another supernet or protocol ({problem}); "
            "pass a new --out file (or the matching --supernet/--data/--n-calib) instead of mixing them"
        )
    return existing.keys()


def _record(arch: Arch, space: SearchSpace, result, seconds: float, fingerprint: str) -> dict:
    costs = space.count(arch)
    return Sample(arch, result.top1, result.loss, costs.params, costs.macs, seconds, fingerprint).to_dict()


def _progress(total: int, enabled: bool, desc: str = "collect"):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="arch", disable=not enabled, dynamic_ncols=True)


def _run(supernet, calib, val, todo, out, header, *, n_calib, batch_size, workers, device, progress) -> list[float]:
    if not todo:
        return []
    workers = max(1, min(int(workers), len(todo)))
    times: list[float] = []
    bar = _progress(len(todo), progress)
    try:
        if workers == 1:
            evaluator = SubnetEvaluator(supernet, calib, val, n_calib=n_calib, batch_size=batch_size, device=device)
            for arch in todo:
                start = time.perf_counter()
                result = evaluator(arch)
                seconds = time.perf_counter() - start
                append_line(out, _record(arch, header.space, result, seconds, header.supernet))
                times.append(seconds)
                bar.update(1)
        else:
            for record in _run_workers(supernet, calib, val, todo, n_calib, batch_size, workers):
                append_line(out, record)
                times.append(record["seconds"])
                bar.update(1)
    finally:
        bar.close()
    return times


def _run_workers(supernet, calib, val, todo, n_calib, batch_size, workers) -> Iterator[dict]:
    """CPU worker processes, each with its share of the cores; the parent alone writes the file."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    # contiguous chunks keep one worker on one resolution (its batch cache stays valid)
    for chunk in np.array_split(np.arange(len(todo)), workers * 4):
        if len(chunk):
            tasks.put([todo[i].to_dict() for i in chunk])
    threads = max(1, torch.get_num_threads() // workers)
    procs = [ctx.Process(target=_worker, args=(supernet, calib, val, n_calib, batch_size, threads, tasks, results), daemon=True)
             for _ in range(workers)]
    for _ in procs:
        tasks.put(None)
    for p in procs:
        p.start()
    try:
        finished, received = 0, 0
        while finished < workers:
            kind, payload = results.get()
            if kind == "done":
                finished += 1
            elif kind == "error":
                raise SamplesError(f"a collection worker failed: {payload}")
            else:
                received += 1
                yield payload
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join()


def _worker(supernet, calib, val, n_calib, batch_size, threads, tasks, results) -> None:
    torch.set_num_threads(threads)
    space = supernet.space
    fingerprint = supernet_fingerprint(supernet)
    try:
        evaluator = SubnetEvaluator(supernet, calib, val, n_calib=n_calib, batch_size=batch_size)
        while (chunk := tasks.get()) is not None:
            for data in chunk:
                arch = Arch.from_dict(data, space)
                start = time.perf_counter()
                result = evaluator(arch)
                results.put(("sample", _record(arch, space, result, time.perf_counter() - start, fingerprint)))
    except Exception as exc:  # reported to the parent as one line
        results.put(("error", f"{type(exc).__name__}: {exc}"))
        return
    results.put(("done", None))


def _collect_distributed(supernet, splits, out, header, *, n, seed, batch_size, device, progress, archs, rank, world, local_rank) -> CollectResult:
    """One process per GPU under torchrun: rank 0 prepares the file, every rank appends its share."""
    import torch.distributed as dist

    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    initialized = dist.is_available() and dist.is_initialized()
    if not initialized:
        dist.init_process_group("gloo")
    try:
        error = [None]
        if rank == 0:
            try:
                _open_file(out, header)
            except SamplesError as exc:
                error = [str(exc)]
        dist.broadcast_object_list(error, src=0)
        if error[0]:
            raise SamplesError(error[0])
        done = read_samples(out).keys()
        todo = [a for a in archs if a.key() not in done] if archs is not None else plan_remaining(header.space, n, seed, done)
        todo = sorted(todo, key=lambda a: a.resolution)[rank::world]
        calib = splits.val if header.calib_split == "val" else splits.train
        times = _run(supernet, calib, splits.val, todo, out, header, n_calib=header.n_calib, batch_size=batch_size,
                     workers=1, device=device, progress=progress and rank == 0)
        dist.barrier()
        total = len(read_samples(out).samples)
    finally:
        if not initialized:
            dist.destroy_process_group()
    return CollectResult(out, total, len(times), float(np.median(times)) if times else 0.0)
