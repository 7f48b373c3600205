"""The training loop: every phase of progressive shrinking in one call, resumable, multi-process.

Determinism: every random choice is a function of (seed, phase, step) or of RNG states saved in the
checkpoint, and the data loader replays an epoch's batches from its seed, so a run resumed from
any checkpoint ends with the same weights as an uninterrupted one (CPU, same thread count).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn
import torch.nn.functional as F
from tqdm import tqdm

from ofa.costs import CostModel
from ofa.data import BatchLoader, DataSplits, load_dataset
from ofa.errors import OfaError
from ofa.evaluate import evaluate_arch
from ofa.io import atomic_torch_save, atomic_write_json, atomic_write_text
from ofa.layers import StaticNet, build_static
from ofa.space import Arch, SearchSpace
from ofa.supernet import Supernet
from ofa.train.budget import COST_SAMPLE_STEPS, PROBE_STEPS, PROBE_WARMUP_STEPS, BudgetError, fit_epoch_scale, probe_phase
from ofa.train.distill import subnet_loss
from ofa.train.distributed import DistContext, all_gather_objects, init_distributed
from ofa.train.optim import lr_at, make_optimizer
from ofa.train.samplers import SubnetSampler
from ofa.train.schedule import Phase, Schedule, top_choices
from ofa.train.state import (Progress, RunPaths, TrainStateError, capture_rng, check_run_dir, load_state, restore_rng, save_state,
                             start_run_dir)

__all__ = ["TrainConfig", "TrainOutcome", "TrainError", "train"]

log = logging.getLogger("ofa.train")


class TrainError(OfaError, ValueError):
    """Training cannot start with these inputs."""


@dataclass(frozen=True)
class TrainConfig:
    space: SearchSpace
    data: str
    schedule: Schedule
    out: Path
    sampler: str = "progressive"
    seed: int = 0
    checkpoint_every: int = 100  # optimizer steps between checkpoints (phase ends always checkpoint)
    device: str = "auto"
    resume: bool = False
    force: bool = False
    progress: bool = True
    data_cache: str | None = None
    threads: int | None = None  # torch CPU threads per process (default: torch's choice)


@dataclass(frozen=True)
class TrainOutcome:
    supernet_dir: Path
    report: dict[str, Any] = field(default_factory=dict)
    resumed: bool = False


def train(config: TrainConfig) -> TrainOutcome:
    """Run (or resume) every phase of `config.schedule`; only rank 0 writes files."""
    ctx = init_distributed(config.device)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    paths = RunPaths(Path(config.out))
    splits = _load_data(config, ctx)
    run_config = _run_config(config, splits, ctx)
    resume = check_run_dir(paths, run_config, resume=config.resume, force=config.force)
    resume = all_gather_objects(ctx, resume)[0]  # rank 0 decides (it may write run.json while others look)
    if ctx.is_main:
        start_run_dir(paths, run_config, fresh=not resume)
    ctx.barrier()

    torch.manual_seed(config.seed)
    net = Supernet(config.space, n_classes=splits.num_classes, dropout=config.schedule.dropout, class_names=splits.class_names)
    net.metadata["data"] = {
        "source": config.data,
        "mean": list(splits.info["mean"]),
        "std": list(splits.info["std"]),
        "hflip": bool(splits.info["hflip"]),
        "class_names": list(splits.class_names),
    }
    net.metadata["training"] = {"schedule": config.schedule.name, "sampler": config.sampler, "seed": config.seed}
    state = load_state(paths) if resume else None
    progress = Progress()
    if state is not None:
        net.load_tensors(state["model"], source=str(paths.state))
        progress = state["progress"]
    if progress.phase >= len(config.schedule.phases):
        log.info("the run in %s is already complete", paths.out)
        return TrainOutcome(paths.supernet, _read_report(paths), resumed=True)
    loop = _Loop(config, ctx, paths, splits, net, resumed=state is not None)
    loop.fit_budget(fresh=not resume)
    report = loop.run(progress, state)
    return TrainOutcome(paths.supernet, report, resumed=state is not None)


def _load_data(config: TrainConfig, ctx: DistContext) -> DataSplits:
    """Rank 0 loads first (it may fill the decode cache), then the others read the cache."""
    splits = None
    if ctx.is_main:
        splits = load_dataset(config.data, cache_dir=config.data_cache, progress=config.progress)
    ctx.barrier()
    if splits is None:
        splits = load_dataset(config.data, cache_dir=config.data_cache, progress=False)
    if splits.num_classes < 2:
        raise TrainError(
            f"dataset {config.data} has {splits.num_classes} class: a classifier needs at least 2 classes (one folder per class)"
        )
    if len(splits.val) == 0 or len(splits.test) == 0:
        raise TrainError(f"dataset {config.data} has an empty validation or test split: add images")
    return splits


def _run_config(config: TrainConfig, splits: DataSplits, ctx: DistContext) -> dict[str, Any]:
    """What a resume must match."""
    return {
        "space": {"name": config.space.name, "fingerprint": config.space.fingerprint()},
        "data": {"source": config.data, "content_key": splits.info.get("content_key"), "classes": splits.num_classes},
        "schedule": {**config.schedule.to_dict(), "phases": {p["name"]: p for p in config.schedule.to_dict()["phases"]}},
        "sampler": config.sampler,
        "seed": config.seed,
        "world_size": ctx.world_size,
    }


def _read_report(paths: RunPaths) -> dict[str, Any]:
    try:
        return json.loads(paths.report.read_text())
    except (OSError, ValueError):
        return {}


class _Loop:
    """The state of one training process across phases."""

    def __init__(self, config: TrainConfig, ctx: DistContext, paths: RunPaths, splits: DataSplits, net: Supernet, resumed: bool):
        self.config, self.ctx, self.paths, self.splits = config, ctx, paths, splits
        self.schedule = config.schedule
        self.net = net.to(ctx.device)
        self.cuda = ctx.device.type == "cuda"
        # channels_last lets oneDNN (CPU) and cuDNN use their fast depthwise kernels: 1.7x faster
        # training steps for the cifar space on 2 CPU cores (BENCHMARKS.md), same results to round-off
        self.net = self.net.to(memory_format=torch.channels_last)
        self.model: nn.Module = self.net
        if ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [ctx.device.index] if self.cuda else None
            self.model = DistributedDataParallel(self.net, device_ids=ids, find_unused_parameters=True)
        self.sampler = SubnetSampler(net.space, config.sampler, config.seed)
        self.teacher: StaticNet | None = None
        # the sizes the teacher phase (phase 0) trained at: smaller KD batches are upsampled to the largest
        self.teacher_resolutions = top_choices(self.net.space.resolutions, self.schedule.phases[0].resolutions)
        self.subnet_digest = hashlib.sha256()
        self.resumed = resumed  # from a checkpoint
        self.report = _read_report(paths) if resumed else {}
        self.report.setdefault("phases", {})

    # ------------------------------------------------------------------ phases
    def run(self, progress: Progress, state: dict[str, Any] | None) -> dict[str, Any]:
        if state is not None:
            restore_rng(state["rng"])
            self._truncate_log(progress)
        elapsed0, start = progress.elapsed_s, time.perf_counter()
        phases = self.schedule.phases
        for index in range(progress.phase, len(phases)):
            phase = phases[index]
            resume_step = progress.step if index == progress.phase else 0
            optimizer_state = state["optimizer"] if state is not None and index == progress.phase and resume_step > 0 else None
            elapsed = lambda: elapsed0 + time.perf_counter() - start  # noqa: E731
            self._run_phase(index, phase, resume_step, optimizer_state, elapsed)
        self.report["complete"] = True
        if self.ctx.is_main:
            atomic_write_json(self.paths.report, self.report)
        self.ctx.barrier()
        return self.report

    def _run_phase(self, index: int, phase: Phase, step: int, optimizer_state: Any, elapsed) -> None:
        net, schedule = self.net, self.schedule
        loader, per_epoch = self._phase_loader(index, phase)
        epochs, warmup_epochs = schedule.run_epochs(phase)
        total = int(math.ceil(epochs * per_epoch))
        warmup = int(round(warmup_epochs * per_epoch))
        if total == 0:
            self._end_phase(index, phase, elapsed, None)
            return
        if step == 0 and phase.sort_channels >= 0:
            net.sort_channels(phase.sort_channels)
        self.teacher = self._teacher(index, phase)
        optimizer = make_optimizer(net, phase.lr, schedule.momentum, schedule.weight_decay)
        if optimizer_state is not None:
            optimizer.load_state_dict(optimizer_state)
        net.train()
        bar = tqdm(total=total, initial=step, desc=f"{index + 1}/{len(schedule.phases)} {phase.name}", unit="step",
                   disable=not (self.config.progress and self.ctx.is_main), dynamic_ncols=True, leave=True)
        log_file = open(self.paths.log, "a") if self.ctx.is_main else None
        images, t0 = 0, time.perf_counter()
        try:
            for x, y, resolution, epoch in self._batches(loader, per_epoch, step, total):
                lr = lr_at(step, total, phase.lr * schedule.lr_scale, warmup)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                archs = self.sampler.sample(index, phase, step, resolution)
                loss = self._step(optimizer, phase, archs, x, y)
                step += 1
                images += x.shape[0] * self.ctx.world_size
                rate = images / max(time.perf_counter() - t0, 1e-9)
                self.subnet_digest.update("|".join(str(a) for a in archs).encode())
                if log_file is not None:
                    log_file.write(json.dumps({
                        "phase": phase.name, "phase_index": index, "step": step, "epoch": epoch, "loss": round(loss, 6),
                        "lr": lr, "resolution": resolution, "subnets": [str(a) for a in archs], "images_per_s": round(rate, 1),
                    }) + "\n")
                    log_file.flush()
                bar.set_postfix_str(f"ep {epoch + 1}/{math.ceil(total / per_epoch)} loss {loss:.3f} lr {lr:.3g} {rate:.0f} img/s")
                bar.update(1)
                if step < total and self.config.checkpoint_every > 0 and step % self.config.checkpoint_every == 0:
                    self._checkpoint(Progress(index, step, elapsed()), optimizer)
        finally:
            bar.close()
            if log_file is not None:
                log_file.close()
        seconds = time.perf_counter() - t0
        stats = {"steps": total, "seconds": round(seconds, 2), "images_per_s": round(images / max(seconds, 1e-9), 1)}
        self._end_phase(index, phase, elapsed, stats)

    def _phase_loader(self, index: int, phase: Phase) -> tuple[BatchLoader, int]:
        """The phase's training batches (seeded by run seed and phase) and its steps per epoch."""
        schedule = self.schedule
        loader = BatchLoader(
            self.splits.train, schedule.batch_size, train=True, resolutions=top_choices(self.net.space.resolutions, phase.resolutions),
            seed=self.config.seed * 1000 + index, rank=self.ctx.rank, world_size=self.ctx.world_size,
            mean=self.splits.info["mean"], std=self.splits.info["std"], hflip=self.splits.info["hflip"],
        )
        per_epoch = len(loader) if schedule.steps_per_epoch <= 0 else min(len(loader), schedule.steps_per_epoch)
        return loader, per_epoch

    # ------------------------------------------------------------------ time budget
    def fit_budget(self, fresh: bool) -> None:
        """`minutes` > 0: set epoch_scale from a probe of every phase (`ofa.train.budget`), once per run.

        The fit is kept in run/budget.json; a resumed run reads it back instead of probing again.
        """
        if self.schedule.minutes <= 0:
            return
        fit = None
        if self.ctx.is_main and not fresh and (self.resumed or self.paths.budget.is_file()):
            if not self.paths.budget.is_file():
                raise TrainStateError(f"{self.paths.budget} is missing: the run directory is incomplete; pass --force to start over")
            try:
                fit = json.loads(self.paths.budget.read_text())
                float(fit["epoch_scale"])
            except (OSError, ValueError, KeyError, TypeError):
                raise TrainStateError(f"{self.paths.budget} is corrupt: pass --force to start the run over") from None
        fit = all_gather_objects(self.ctx, fit)[0]
        if fit is None:
            try:
                fit = all_gather_objects(self.ctx, self._probe_budget())[0]  # rank 0's timing decides for all
            except BudgetError:
                if self.ctx.is_main and fresh:  # leave no half-started run: the same --out works with a longer budget
                    shutil.rmtree(self.paths.run, ignore_errors=True)
                raise
            if self.ctx.is_main:
                atomic_write_json(self.paths.budget, fit)
                log.info("time budget %g min: epoch_scale %.4g (predicted %.1f min)", fit["minutes"], fit["epoch_scale"],
                         fit["predicted_minutes"])
        self.schedule = replace(self.schedule, epoch_scale=float(fit["epoch_scale"]))
        self.report["budget"] = fit

    def _probe_budget(self) -> dict[str, Any]:
        """Time PROBE_STEPS steps of every phase and one evaluation, then put weights and RNGs back as they were."""
        saved, rng = {k: v.detach().clone() for k, v in self.net.state_dict().items()}, capture_rng()
        phases = [(i, p) for i, p in enumerate(self.schedule.phases) if p.epochs > 0]
        probes = []
        bar = tqdm(total=len(phases) + 1, desc=f"timing phases for a {self.schedule.minutes:g}-min budget", unit="phase",
                   disable=not (self.config.progress and self.ctx.is_main), dynamic_ncols=True, leave=False)
        try:
            for index, phase in phases:
                loader, per_epoch = self._phase_loader(index, phase)
                self.teacher = self._probe_teacher(index, phase)
                optimizer = make_optimizer(self.net, phase.lr, self.schedule.momentum, self.schedule.weight_decay)
                self.net.train()
                seconds, timed, mark = [], [], time.perf_counter()
                for step, (x, y, resolution, _) in enumerate(self._batches(loader, per_epoch, 0, PROBE_WARMUP_STEPS + PROBE_STEPS)):
                    archs = self.sampler.sample(index, phase, step, resolution)
                    self._step(optimizer, phase, archs, x, y)
                    now = time.perf_counter()
                    if step >= PROBE_WARMUP_STEPS:  # the step and the loading of its batch
                        seconds.append(now - mark)
                        timed.append(archs)
                    mark = now
                costs = [self._step_macs(archs) for archs in timed]
                mean_cost = self._phase_mean_macs(index, phase, loader, per_epoch)
                probes.append(probe_phase(phase.name, per_epoch, phase.epochs, seconds, costs, mean_cost))
                bar.update(1)
            t0 = time.perf_counter()
            self._accuracies()
            eval_seconds = time.perf_counter() - t0
            bar.update(1)
        finally:
            bar.close()
            self.teacher = None
            self.net.load_state_dict(saved)
            self.net.train()
            restore_rng(rng)
        return fit_epoch_scale(probes, eval_seconds, self.schedule.minutes)

    def _step_macs(self, archs: list[Arch]) -> float:
        """The MACs of one step's subnets per image: the cost its time is adjusted by."""
        return float(CostModel.for_space(self.net.space).count_many(archs)[1].sum())

    def _phase_mean_macs(self, index: int, phase: Phase, loader: BatchLoader, per_epoch: int) -> float:
        """The phase's average MACs per step over COST_SAMPLE_STEPS steps' subnets and resolutions
        (both pure functions of the step: nothing is trained or loaded)."""
        archs = [arch for step in range(COST_SAMPLE_STEPS)
                 for arch in self.sampler.sample(index, phase, step, loader.resolution_for(*divmod(step, per_epoch)))]
        return self._step_macs(archs) / COST_SAMPLE_STEPS

    def _distils(self, index: int, phase: Phase) -> bool:
        """Whether the phase distils from the frozen teacher (progressive shrinking after the teacher phase)."""
        return self.config.sampler == "progressive" and index > 0 and phase.distill and self.schedule.kd_ratio > 0

    def _probe_teacher(self, index: int, phase: Phase) -> StaticNet | None:
        """A stand-in teacher for the probe (the max subnet as it is now): same cost as the real one."""
        if not self._distils(index, phase):
            return None
        teacher = self.net.extract(self.net.space.max_arch()).to(self.ctx.device, memory_format=torch.channels_last).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        return teacher

    def _batches(
        self, loader: BatchLoader, per_epoch: int, start: int, total: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, int, int]]:
        """Batches for steps start..total-1; a resumed phase replays (without training) the epoch's earlier batches."""
        step = start
        while step < total:
            epoch, offset = divmod(step, per_epoch)
            loader.set_epoch(epoch)
            for i, (x, y, resolution) in enumerate(loader):
                if i >= per_epoch or step >= total:
                    break
                if i < offset:
                    continue
                x, y = x.to(self.ctx.device, non_blocking=True), y.to(self.ctx.device, non_blocking=True)
                x = x.contiguous(memory_format=torch.channels_last)
                yield x, y, resolution, epoch
                step += 1

    def _step(self, optimizer: torch.optim.Optimizer, phase: Phase, archs: list[Arch], x: torch.Tensor, y: torch.Tensor) -> float:
        """Forward/backward every subnet of the step, accumulating gradients, then one optimizer step."""
        schedule, ddp = self.schedule, self.model is not self.net
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.cuda else contextlib.nullcontext()
        teacher_logits = None
        if self.teacher is not None and phase.distill:
            with torch.no_grad(), autocast:
                teacher_logits = self.teacher(self._teacher_input(x))
        optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for i, arch in enumerate(archs):
            self.net.set_active(arch)
            sync = contextlib.nullcontext() if (not ddp or i == len(archs) - 1) else self.model.no_sync()
            with sync:
                with autocast:
                    logits = self.model(x)
                target = teacher_logits
                if self.config.sampler == "sandwich" and phase.distill and i > 0:
                    target = largest  # in-place distillation from the largest subnet
                kd = schedule.kd_ratio if target is not None else 0.0
                loss = subnet_loss(logits, y, target, kd, schedule.label_smoothing)
                loss.backward()
            if i == 0:
                largest = logits.detach()
            total += float(loss.detach())
        optimizer.step()
        return total / len(archs)

    def _teacher_input(self, x: torch.Tensor) -> torch.Tensor:
        """The batch at a resolution the teacher was trained at: a teacher trained at 32 px only is
        close to chance on 24-px inputs (its BatchNorm statistics and filters expect 32 px), so a
        smaller batch is upsampled to the teacher's largest training resolution."""
        if x.shape[-1] in self.teacher_resolutions:
            return x
        size = max(self.teacher_resolutions)
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).contiguous(memory_format=torch.channels_last)

    def _teacher(self, index: int, phase: Phase) -> StaticNet | None:
        """The frozen max subnet after the teacher phase (progressive only), read back on resume."""
        if not self._distils(index, phase):
            return None
        if self.teacher is not None:
            return self.teacher
        max_arch = self.net.space.max_arch()
        teacher = build_static(self.net.space, max_arch)
        if not self.paths.teacher.is_file():
            raise TrainStateError(f"{self.paths.teacher} is missing: the run directory is incomplete; pass --force to start over")
        try:
            teacher.load_state_dict(torch.load(self.paths.teacher, map_location="cpu", weights_only=True))
        except Exception as exc:
            raise TrainStateError(f"{self.paths.teacher} is unreadable ({type(exc).__name__}): pass --force to start over") from None
        teacher = teacher.to(self.ctx.device, memory_format=torch.channels_last).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        return teacher

    # ------------------------------------------------------------------ checkpoints and reports
    def _checkpoint(self, progress: Progress, optimizer: torch.optim.Optimizer | None) -> None:
        if self.ctx.is_main:
            save_state(self.paths, progress, self.net.state_dict(), optimizer.state_dict() if optimizer is not None else None)

    def _end_phase(self, index: int, phase: Phase, elapsed, stats: dict[str, Any] | None) -> None:
        """Teacher snapshot, accuracy of min/max, supernet and report, then the phase-end checkpoint."""
        space = self.net.space
        if index == 0 and self.config.sampler == "progressive" and self.ctx.is_main:
            teacher = self.net.extract(space.max_arch())
            atomic_torch_save(self.paths.teacher, {k: v.detach().cpu() for k, v in teacher.state_dict().items()})
        if self.ctx.distributed:  # BN statistics are per process: make every rank hold rank 0's, as saved
            for buffer in self.net.buffers():
                torch.distributed.broadcast(buffer, 0)
        digests = all_gather_objects(self.ctx, (self.subnet_digest.hexdigest(), _weights_digest(self.net, buffers=False)))
        entry: dict[str, Any] = {"index": index, "epochs": self.schedule.run_epochs(phase)[0], **(stats or {"steps": 0})}
        if self.ctx.distributed:
            entry["ranks_agree"] = {
                "subnets": len({d[0] for d in digests}) == 1,
                "weights": len({d[1] for d in digests}) == 1,
            }
        if self.ctx.is_main:
            if stats is not None:
                entry["accuracy"] = self._accuracies()
            self.report["phases"][phase.name] = entry
            self.report.update(
                space=space.name, fingerprint=space.fingerprint(), data=self.config.data, sampler=self.config.sampler,
                seed=self.config.seed, schedule=self.schedule.to_dict(), world_size=self.ctx.world_size,
                elapsed_s=round(elapsed(), 1), evaluation="BN re-calibrated on the val split, top-1 on the test split",
            )
            self.report["complete"] = index == len(self.schedule.phases) - 1
            self.net.save(self.paths.supernet, {"training": {**self.net.metadata.get("training", {}), "phases_done": index + 1}})
            atomic_write_json(self.paths.report, self.report)
            self._checkpoint(Progress(index + 1, 0, elapsed()), None)
        self.ctx.barrier()
        self.net.train()

    def _accuracies(self) -> dict[str, float]:
        space, schedule = self.net.space, self.schedule
        out = {}
        for name, arch in (("max", space.max_arch()), ("min", space.min_arch())):
            result = evaluate_arch(
                self.net, arch, self.splits.val, self.splits.test, n_calib=schedule.calib_images, batch_size=200,
                device=self.ctx.device, max_images=schedule.eval_images or None,
            )
            out[name] = round(result.top1, 5)
        self.net.train()
        return out

    def _truncate_log(self, progress: Progress) -> None:
        """Drop log lines of steps after the checkpoint (they will be run again) and any torn last line."""
        if not self.ctx.is_main or not self.paths.log.is_file():
            return
        kept = []
        for line in self.paths.log.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if (entry["phase_index"], entry["step"]) <= (progress.phase, progress.step):
                kept.append(line)
        atomic_write_text(self.paths.log, "".join(k + "\n" for k in kept))


def _weights_digest(net: nn.Module, buffers: bool = True) -> str:
    """A hash of the parameters (and buffers): equal on every rank when gradients were all-reduced."""
    h = hashlib.sha256()
    tensors = net.state_dict().items() if buffers else net.named_parameters()
    for name, tensor in tensors:
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
