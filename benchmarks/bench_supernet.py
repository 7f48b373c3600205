"""Supernet training-step benchmark: elastic (max arch) vs extracted static vs the reference package.

Goals (foundation issue):
  * elastic / static training-step time <= 1.05 (weight sharing must not slow training at max arch);
  * ours / reference once-for-all (PyPI `ofa`, max subnet) <= 0.9 on the same step;
  * `CostModel.count_codes` >= 50,000 archs/s (vectorized).

A step is zero_grad + forward + cross-entropy + backward + SGD(momentum 0.9, nesterov) step in train
mode, on the same batch for every contender, torch.set_num_threads(2) in every process.  The
contenders run in interleaved rounds (the order rotates every round; the reference runs in a
persistent subprocess driven over stdin/stdout, see _ref_ofa_step.py), so machine noise hits all of
them alike; we report the median per-step time and two ratios: of the medians, and the median of the
per-round ratios.

    python benchmarks/bench_supernet.py                 # full run, ~5 min on 2 cores
    python benchmarks/bench_supernet.py --quick         # smoke run (few steps, no goals judged)
    python benchmarks/bench_supernet.py --no-reference  # without the reference venv
    python benchmarks/bench_supernet.py --cuda --no-reference   # on a CUDA GPU (224 px mbv3, 32 px cifar)

On a GPU (`--cuda`) a step is what `ofa train` runs there: channels_last, bf16 autocast, and the
timer waits for the GPU (torch.cuda.synchronize) after each step.

The reference venv comes from benchmarks/setup_reference_venv.sh (`$OFA_REF_VENV`, default
~/.cache/ofa-ref-venv).  Results: a table on stdout and benchmarks/results/bench_supernet.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

# OpenMP threads that busy-wait turn a 2-thread step on a shared, oversubscribed machine into a
# 3x-noisier one (measured: 19-39 s vs 7.4-10.6 s per step under load 10); passive waiting keeps
# the timings stable.  Set before torch loads OpenMP; the reference worker inherits it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from ofa.costs import CostModel  # noqa: E402
from ofa.io import atomic_torch_save, atomic_write_json  # noqa: E402
from ofa.space import SearchSpace  # noqa: E402
from ofa.supernet import Supernet  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
REF_SCRIPT = Path(__file__).resolve().parent / "_ref_ofa_step.py"
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "bench_supernet.json"
DEFAULT_REF_VENV = Path(os.environ.get("OFA_REF_VENV", Path.home() / ".cache" / "ofa-ref-venv"))

GOAL_ELASTIC_OVER_STATIC = 1.05
GOAL_OURS_OVER_REFERENCE = 0.9
GOAL_COUNT_PER_S = 50_000


@dataclass(frozen=True)
class Case:
    """One benchmark setting: a space at one input side and batch size."""

    name: str
    space: str
    resolution: int
    batch: int
    reference: bool  # the reference package only has the ImageNet MobileNetV3 supernet
    device: str = "cpu"


CASES = (
    Case("mbv3-128px-b32", "ofa-mbv3-w1.0", 128, 32, reference=True),
    Case("mbv3-32px-b128", "ofa-mbv3-w1.0", 32, 128, reference=True),
    Case("cifar-32px-b128", "cifar", 32, 128, reference=False),
)
# the training issue's GPU check: the ImageNet space at 224 px, and the CIFAR space at a GPU-sized batch
CUDA_CASES = (
    Case("mbv3-224px-b64-cuda", "ofa-mbv3-w1.0", 224, 64, reference=False, device="cuda"),
    Case("cifar-32px-b256-cuda", "cifar", 32, 256, reference=False, device="cuda"),
)


@dataclass(frozen=True)
class Timings:
    """Per-step wall-clock and process CPU times (ms) of one contender in one round."""

    wall_ms: list[float]
    cpu_ms: list[float]


@dataclass
class CaseResult:
    case: str
    space: str
    resolution: int
    batch: int
    n_classes: int
    params: int
    median_ms: dict[str, float] = field(default_factory=dict)  # contender -> median per-step wall ms
    median_cpu_ms: dict[str, float] = field(default_factory=dict)  # contender -> median per-step process CPU ms
    round_medians_ms: dict[str, list[float]] = field(default_factory=dict)
    ratios: dict[str, float] = field(default_factory=dict)  # "elastic/static" etc.: ratio of wall medians
    cpu_ratios: dict[str, float] = field(default_factory=dict)  # the same on CPU time
    round_ratios: dict[str, float] = field(default_factory=dict)  # median of per-round ratios
    reference_note: str | None = None


class TrainStep:
    """Times training steps of one in-process model on a fixed batch."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        self.model, self.x, self.y = model.train(), x, y
        self.cuda = x.is_cuda
        self.opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=3e-5)

    def step(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda):  # as ofa train does on a GPU
            loss = F.cross_entropy(self.model(self.x), self.y)
        loss.backward()
        self.opt.step()

    def run(self, n: int) -> Timings:
        wall, cpu = [], []
        for _ in range(n):
            t0, c0 = time.perf_counter(), time.process_time()
            self.step()
            if self.cuda:
                torch.cuda.synchronize()
            wall.append((time.perf_counter() - t0) * 1e3)
            cpu.append((time.process_time() - c0) * 1e3)
        return Timings(wall, cpu)


class ReferenceStep:
    """The reference supernet's training step, in a persistent subprocess of the reference venv."""

    def __init__(self, python: Path, batch_file: Path, n_classes: int, threads: int, warmup: int):
        cmd = [str(python), "-I", str(REF_SCRIPT), "--batch-file", str(batch_file), "--n-classes", str(n_classes)]
        cmd += ["--threads", str(threads), "--warmup", str(warmup), "--forbid-path", str(REPO)]
        # cwd=/ and -I: neither our repo nor PYTHONPATH can shadow the reference `ofa`
        self.proc = subprocess.Popen(cmd, cwd="/", stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"reference worker exited with code {self.proc.wait()} (see its stderr above)")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply

    def run(self, n: int) -> Timings:
        self.proc.stdin.write(f"run {n}\n")
        self.proc.stdin.flush()
        reply = self._read()
        return Timings(reply["times_ms"], reply["cpu_ms"])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


def make_batch(resolution: int, batch: int, n_classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, resolution, resolution, generator=gen)
    y = torch.randint(0, n_classes, (batch,), generator=gen)
    return x, y


def bench_case(case: Case, args: argparse.Namespace, ref_python: Path | None) -> CaseResult:
    """Interleaved rounds of elastic / static / (reference) steps on the same batch."""
    torch.manual_seed(args.seed)
    space = SearchSpace.preset(case.space)
    supernet = Supernet(space)
    arch = space.max_arch()
    supernet.set_active(arch)
    static = supernet.extract(arch)
    x, y = make_batch(case.resolution, case.batch, space.n_classes, args.seed)
    if case.device == "cuda":
        supernet, static = supernet.cuda(), static.cuda()
        x, y = x.cuda(), y.cuda()
    if args.channels_last or case.device == "cuda":
        supernet, static = supernet.to(memory_format=torch.channels_last), static.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    runners: dict[str, Callable[[int], Timings]] = {
        "elastic": TrainStep(supernet, x, y).run,
        "static": TrainStep(static, x, y).run,
    }
    result = CaseResult(case.name, case.space, case.resolution, case.batch, space.n_classes, sum(p.numel() for p in static.parameters()))
    ref: ReferenceStep | None = None
    with tempfile.TemporaryDirectory() as tmp:
        if case.reference and ref_python is not None:
            batch_file = atomic_torch_save(Path(tmp) / "batch.pt", {"x": x.contiguous(), "y": y})
            ref = ReferenceStep(ref_python, batch_file, space.n_classes, args.threads, args.warmup)
            if ref.info["params"] != sum(p.numel() for p in supernet.parameters()):
                result.reference_note = f"reference supernet has {ref.info['params']} parameters, ours {sum(p.numel() for p in supernet.parameters())}"
            runners["reference"] = ref.run
        elif case.reference:
            result.reference_note = "reference venv not available: run benchmarks/setup_reference_venv.sh"
        try:
            for name, run in runners.items():
                if name != "reference":  # the worker warms up before it says ready
                    run(args.warmup)
            rounds: dict[str, list[Timings]] = {name: [] for name in runners}
            names = list(runners)
            for r in range(args.rounds):
                order = names[r % len(names) :] + names[: r % len(names)]
                for name in order:
                    rounds[name].append(runners[name](args.steps))
                done = ", ".join(f"{n} {statistics.median(rounds[n][-1].wall_ms):.0f}" for n in names)
                print(f"  round {r + 1}/{args.rounds}: median ms {done}", file=sys.stderr, flush=True)
        finally:
            if ref is not None:
                ref.close()
    for name, per_round in rounds.items():
        result.median_ms[name] = statistics.median(t for times in per_round for t in times.wall_ms)
        result.median_cpu_ms[name] = statistics.median(t for times in per_round for t in times.cpu_ms)
        result.round_medians_ms[name] = [statistics.median(times.wall_ms) for times in per_round]
    for num, den in (("elastic", "static"), ("elastic", "reference"), ("static", "reference")):
        if num in rounds and den in rounds:
            key = f"{num}/{den}"
            result.ratios[key] = result.median_ms[num] / result.median_ms[den]
            result.cpu_ratios[key] = result.median_cpu_ms[num] / result.median_cpu_ms[den]
            result.round_ratios[key] = statistics.median(
                a / b for a, b in zip(result.round_medians_ms[num], result.round_medians_ms[den])
            )
    return result


def bench_count(space_name: str, n: int, repeats: int, seed: int) -> dict[str, float]:
    """Archs/s of `count_codes` on pre-encoded archs and of `count_many` (encoding included)."""
    space = SearchSpace.preset(space_name)
    model = CostModel.for_space(space)
    archs = space.sample_many(seed, n)
    codes = space.encode(archs)
    t_codes, t_many = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.count_codes(codes)
        t_codes.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        space.count_many(archs)
        t_many.append(time.perf_counter() - t0)
    return {
        "space": space_name,
        "n_archs": n,
        "count_codes_archs_per_s": n / statistics.median(t_codes),
        "count_many_archs_per_s": n / statistics.median(t_many),
    }


def find_reference_python(venv: Path) -> Path | None:
    python = venv / "bin" / "python"
    return python if python.is_file() else None


def print_table(results: list[CaseResult], counts: dict[str, float]) -> None:
    """Median per-step wall ms; ratios as `of medians [median of round ratios] (of CPU-time medians)`."""

    def ratio(r: CaseResult, key: str) -> str:
        if key not in r.ratios:
            return "-"
        return f"{r.ratios[key]:.3f} [{r.round_ratios[key]:.3f}] ({r.cpu_ratios[key]:.3f})"

    print()
    print("median wall ms per training step; ratios: of medians [median of per-round ratios] (of CPU-time medians)")
    print(f"{'case':20} {'elastic':>9} {'static':>9} {'reference':>9} {'elastic img/s':>13}  {'elastic/static':>27}  {'elastic/reference':>27}")
    for r in results:
        ref = f"{r.median_ms['reference']:9.1f}" if "reference" in r.median_ms else f"{'-':>9}"
        print(
            f"{r.case:20} {r.median_ms['elastic']:9.1f} {r.median_ms['static']:9.1f} {ref} {r.batch / r.median_ms['elastic'] * 1e3:13,.0f}  "
            f"{ratio(r, 'elastic/static'):>27}  {ratio(r, 'elastic/reference'):>27}"
        )
        if r.reference_note:
            print(f"  note: {r.reference_note}")
    print()
    print(
        f"count ({counts['space']}, {counts['n_archs']} archs): count_codes {counts['count_codes_archs_per_s']:,.0f} archs/s, "
        f"count_many (with encoding) {counts['count_many_archs_per_s']:,.0f} archs/s"
    )


def judge(results: list[CaseResult], counts: dict[str, float]) -> dict[str, bool]:
    goals = {}
    for r in results:
        goals[f"{r.case} elastic/static <= {GOAL_ELASTIC_OVER_STATIC}"] = r.ratios["elastic/static"] <= GOAL_ELASTIC_OVER_STATIC
        if "elastic/reference" in r.ratios:
            goals[f"{r.case} elastic/reference <= {GOAL_OURS_OVER_REFERENCE}"] = r.ratios["elastic/reference"] <= GOAL_OURS_OVER_REFERENCE
    goals[f"count_codes >= {GOAL_COUNT_PER_S} archs/s"] = counts["count_codes_archs_per_s"] >= GOAL_COUNT_PER_S
    return goals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per contender per round (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before the rounds (default 2)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cases", nargs="+", choices=[c.name for c in CASES + CUDA_CASES],
                        help="default: the CPU cases, or with --cuda the GPU cases")
    parser.add_argument("--cuda", action="store_true", help="run the GPU cases (channels_last, bf16 autocast) instead")
    parser.add_argument("--ref-venv", type=Path, default=DEFAULT_REF_VENV, help="reference venv ($OFA_REF_VENV)")
    parser.add_argument("--no-reference", action="store_true", help="skip the reference package")
    parser.add_argument("--channels-last", action="store_true", help="run our models in channels_last memory format")
    parser.add_argument("--count-archs", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 rounds of 2 steps, 10,000 archs")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    if args.cases is None:
        args.cases = [c.name for c in (CUDA_CASES if args.cuda else CASES)]
    if any(c.name in args.cases for c in CUDA_CASES) and not torch.cuda.is_available():
        parser.error("the GPU cases (--cuda, *-cuda) need a CUDA GPU visible to PyTorch; run without --cuda here")
    if args.quick:
        args.rounds, args.steps, args.warmup, args.count_archs = 2, 2, 1, 10_000
    torch.set_num_threads(args.threads)

    ref_python = None
    if not args.no_reference:
        ref_python = find_reference_python(args.ref_venv)
        if ref_python is None:
            print(f"warning: no reference venv at {args.ref_venv}: run benchmarks/setup_reference_venv.sh (or pass --no-reference)", file=sys.stderr)

    started = datetime.now(timezone.utc)
    results = []
    for case in (c for c in CASES + CUDA_CASES if c.name in args.cases):
        print(f"{case.name}: {case.space} at {case.resolution}px, batch {case.batch} ...", file=sys.stderr, flush=True)
        results.append(bench_case(case, args, ref_python))
    counts = bench_count("ofa-mbv3-w1.0", args.count_archs, repeats=5, seed=args.seed)
    print_table(results, counts)
    goals = judge(results, counts)
    for goal, ok in goals.items():
        print(f"  {'PASS' if ok else 'FAIL'}  {goal}")

    report = {
        "benchmark": "bench_supernet",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": started.isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "cases": [asdict(r) for r in results],
        "count": counts,
        "goals": goals if not args.quick else {},
    }
    atomic_write_json(args.output, report)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
