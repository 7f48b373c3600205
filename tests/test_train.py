"""`ofa train` / `ofa eval`: schedules, samplers, losses, resumable training, refusals, torchrun."""
from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ofa.cli import main
from ofa.space import Arch, SearchSpace
from ofa.supernet import Supernet
from ofa.train import ScheduleError, make_schedule
from ofa.train.budget import BudgetError, PhaseProbe, adjusted_seconds_per_step, fit_epoch_scale
from ofa.train.distill import soft_cross_entropy, subnet_loss
from ofa.train.optim import lr_at, make_optimizer
from ofa.train.samplers import SubnetSampler

TINY = SearchSpace.preset("tiny")
FAST = ["--space", "tiny", "--data", "digits", "--schedule", "smoke", "--set", "steps_per_epoch=3", "--set", "eval_images=100",
        "--set", "calib_images=100", "--threads", "1", "--device", "cpu", "-q"]  # bit-exact resume is a CPU promise
OFA = [sys.executable, "-m", "ofa"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> Path:
    """One uninterrupted smoke run, shared by the tests that read its outputs."""
    before = torch.get_num_threads()
    out = tmp_path_factory.mktemp("ref") / "work"
    assert main(["train", *FAST, "--out", str(out), "--checkpoint-every", "2"]) == 0
    torch.set_num_threads(before)
    return out


# ---------------------------------------------------------------------------------------- schedules
def test_schedules_have_all_phases_and_paper_numbers():
    paper = make_schedule("paper")
    assert [p.name for p in paper.phases] == ["teacher", "kernel", "depth1", "depth2", "expand1", "expand2"]
    assert [p.epochs for p in paper.phases] == [180, 125, 25, 125, 25, 125]
    assert [p.n_subnets for p in paper.phases] == [1, 1, 2, 2, 4, 4]
    assert make_schedule("smoke").phase("expand2").sort_channels == 1


def test_overrides_change_numbers_and_refuse_bad_keys():
    s = make_schedule("smoke", overrides=["teacher.epochs=3", "batch_size=16", "kernel.lr=0.5"])
    assert s.phase("teacher").epochs == 3 and s.batch_size == 16 and s.phase("kernel").lr == 0.5
    for bad in ["foo=1", "teacher.bogus=1", "nophase.epochs=1", "batch_size=abc", "teacher.epochs", "batch_size=0"]:
        with pytest.raises(ScheduleError):
            make_schedule("smoke", overrides=[bad])
    with pytest.raises(ScheduleError, match="unknown schedule"):
        make_schedule("imagenet-fast")


def test_epoch_scale_shortens_every_phase_of_a_run(tmp_path: Path, one_thread):
    """`epoch_scale` fits a schedule to a slower machine: every phase (and its warm-up) runs that share of its steps."""
    full = make_schedule("cifar-cpu", overrides=["epoch_scale=1"]).total_epochs
    assert make_schedule("cifar-cpu", overrides=["epoch_scale=0.5"]).total_epochs == pytest.approx(full / 2)
    with pytest.raises(ScheduleError, match="epoch_scale"):
        make_schedule("smoke", overrides=["epoch_scale=0"])
    out = tmp_path / "w"
    assert main(["train", *FAST, "--set", "steps_per_epoch=4", "--set", "epoch_scale=0.5", "--out", str(out)]) == 0
    report = json.loads((out / "train_report.json").read_text())
    assert [e["steps"] for e in report["phases"].values()] == [2] * 6
    assert [e["epochs"] for e in report["phases"].values()] == [0.5] * 6


def test_fit_epoch_scale_fills_the_budget_and_refuses_one_too_short():
    probes = [PhaseProbe("a", 100, 10.0, 0.1, 0.1, 1.0), PhaseProbe("b", 100, 10.0, 0.1, 0.1, 1.0)]  # 100 s of steps each at scale 1
    fit = fit_epoch_scale(probes, eval_seconds=5.0, minutes=2.0)  # 120 s = 10 s of evaluation + 110 s of steps
    assert fit["epoch_scale"] == pytest.approx(0.55)
    assert fit["phases"]["a"]["steps"] == 550 and fit["predicted_minutes"] == pytest.approx(2.0)
    with pytest.raises(BudgetError, match="a 6.0 s budget is too short.*about 10.0 s.*at least 12s"):
        fit_epoch_scale(probes, eval_seconds=5.0, minutes=0.1)


def test_step_time_is_adjusted_to_the_phase_average_cost_of_its_subnets():
    costs = [1.0, 2.0, 3.0, 2.0]
    seconds = [0.1 + 0.05 * c for c in costs]  # timed steps average cost 2.0; the phase averages 2.5
    assert adjusted_seconds_per_step(seconds, costs, mean_cost=2.5) == pytest.approx(0.1 + 0.05 * 2.5)
    assert adjusted_seconds_per_step([0.2, 0.3], [4.0, 4.0], mean_cost=9.0) == pytest.approx(0.25)  # one cost: the mean
    assert adjusted_seconds_per_step([0.3, 0.2], [1.0, 2.0], mean_cost=9.0) == pytest.approx(0.25)  # no positive slope
    assert adjusted_seconds_per_step(seconds, costs, mean_cost=100.0) == pytest.approx(0.2 * 1.25)  # capped at +25%
    with pytest.raises(ValueError, match="as many timed steps as costs"):
        adjusted_seconds_per_step([0.1], [1.0, 2.0], 1.0)


def test_a_budget_too_short_fails_in_one_line_and_leaves_no_half_started_run(tmp_path: Path, capsys, one_thread):
    out = tmp_path / "short"
    assert main(["train", *FAST, "--budget", "0.1s", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "budget is too short" in err[0] and "give at least" in err[0]
    assert not (out / "run").exists()  # the same --out then starts afresh with a longer budget


def test_budget_fits_the_run_to_the_time_and_a_repeat_with_its_scale_is_identical(tmp_path: Path, one_thread):
    """`--budget` probes every phase once, keeps the fitted epoch_scale for resumes, and leaves no trace in the weights:
    the same run with `--set epoch_scale=<fitted>` ends with bit-identical weights."""
    out = tmp_path / "budget"
    assert main(["train", *FAST, "--budget", "15s", "--out", str(out)]) == 0  # evaluations take ~4 s of it on a quiet 2-core VM
    fit = json.loads((out / "run" / "budget.json").read_text())
    report = json.loads((out / "train_report.json").read_text())
    assert report["budget"] == fit and report["schedule"]["epoch_scale"] == fit["epoch_scale"] and fit["minutes"] == pytest.approx(15 / 60)
    assert {n: e["steps"] for n, e in report["phases"].items()} == {n: p["steps"] for n, p in fit["phases"].items()}
    assert fit["predicted_minutes"] == pytest.approx(15 / 60, rel=0.1)
    for p in fit["phases"].values():  # step times adjusted to the MACs of the subnets each phase draws, within the cap
        assert p["cost_ratio"] > 0 and abs(p["seconds_per_step"] / p["timed_seconds_per_step"] - 1) <= 0.26  # (rounded to 5 digits)
    before = (out / "run" / "budget.json").read_bytes()
    assert main(["train", *FAST, "--budget", "15s", "--out", str(out)]) == 0  # complete: nothing to do, nothing re-fitted
    assert (out / "run" / "budget.json").read_bytes() == before
    repeat = tmp_path / "repeat"
    assert main(["train", *FAST, "--set", f"epoch_scale={fit['epoch_scale']}", "--out", str(repeat)]) == 0
    a, b = Supernet.load(out / "supernet").state_dict(), Supernet.load(repeat / "supernet").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("bad", [["--budget", "60"], ["--budget", "0m"], ["--set", "minutes=-1"]])
def test_budget_refuses_values_without_a_unit_or_below_zero(bad: list[str], tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", *FAST, *bad, "--out", str(tmp_path / "w")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "budget" in err or "minutes" in err


def test_a_phase_can_train_at_its_largest_resolutions_only(tmp_path: Path, one_thread):
    """`PHASE.resolutions=n` trains that phase at the space's n largest resolutions; other phases keep all of them."""
    with pytest.raises(ScheduleError, match="resolutions"):
        make_schedule("smoke", overrides=["teacher.resolutions=-1"])
    out = tmp_path / "w"
    assert main(["train", *FAST, "--set", "steps_per_epoch=8", "--set", "teacher.resolutions=1", "--out", str(out)]) == 0
    seen: dict[str, set[int]] = {}
    for line in (out / "train_log.jsonl").read_text().splitlines():
        record = json.loads(line)
        seen.setdefault(record["phase"], set()).add(record["resolution"])
    assert seen["teacher"] == {max(TINY.resolutions)}
    assert len(set().union(*(r for name, r in seen.items() if name != "teacher"))) > 1


def test_uniform_and_sandwich_get_the_same_budget_of_subnet_passes():
    progressive = make_schedule("cifar-cpu")
    passes = sum(p.epochs * p.n_subnets for p in progressive.phases)
    uniform = make_schedule("cifar-cpu", "uniform")
    sandwich = make_schedule("cifar-cpu", "sandwich", overrides=["sandwich.lr=0.01"])
    assert len(uniform.phases) == 1 and uniform.phases[0].epochs == pytest.approx(passes, abs=1e-3)
    assert sandwich.phases[0].epochs * sandwich.phases[0].n_subnets == pytest.approx(passes, abs=1e-3)
    assert sandwich.phases[0].lr == 0.01 and not uniform.phases[0].distill


# ---------------------------------------------------------------------------------------- samplers
def test_phases_open_only_their_choices():
    s = make_schedule("smoke")
    sampler = SubnetSampler(TINY, "progressive", seed=3)
    for step in range(20):
        (teacher,) = sampler.sample(0, s.phase("teacher"), step, 20)
        top = TINY.max_arch()
        assert teacher == Arch(top.kernel, top.expand, top.depth, 20)
        for arch in sampler.sample(2, s.phase("depth1"), step, 16):
            assert set(arch.depth) <= {2, 3} and set(arch.expand) == {4.0}
        archs = sampler.sample(4, s.phase("expand1"), step, 24)
        assert len(archs) == 4 and all(set(a.expand) <= {3.0, 4.0} for a in archs)
    seen = {d for step in range(30) for a in sampler.sample(3, s.phase("depth2"), step, 16) for d in a.depth}
    assert seen == set(TINY.depths)


def test_smallest_puts_the_phases_smallest_subnet_in_every_step():
    s = make_schedule("smoke", overrides=["expand1.smallest=true", "expand2.smallest=true"])
    sampler = SubnetSampler(TINY, "progressive", seed=3)
    n = len(TINY.stages)
    for step in range(5):
        first, *rest = sampler.sample(4, s.phase("expand1"), step, 16)
        assert first == Arch((3,) * TINY.n_slots, (3.0,) * TINY.n_slots, (1,) * n, 16)  # expand1 opens e3/e4 only
        assert len(rest) == 3
        first, *rest = sampler.sample(5, s.phase("expand2"), step, 20)
        smallest = TINY.min_arch()
        assert first == Arch(smallest.kernel, smallest.expand, smallest.depth, 20)
    assert all(len(sampler.sample(3, s.phase("depth2"), step, 16)) == 2 for step in range(3))


def test_smallest_every_puts_the_smallest_subnet_in_every_kth_step():
    s = make_schedule("smoke", overrides=["expand2.n_subnets=1", "expand2.smallest_every=3"])
    sampler = SubnetSampler(TINY, "progressive", seed=3)
    smallest = TINY.min_arch()
    smallest = Arch(smallest.kernel, smallest.expand, smallest.depth, 16)
    hits = [sampler.sample(5, s.phase("expand2"), step, 16) == [smallest] for step in range(12)]
    assert hits[0] and hits[3] and hits[6] and hits[9]
    assert sum(hits) <= 5  # the other steps are random draws (a random one may be the smallest by chance)
    with pytest.raises(ScheduleError, match="smallest_every and largest_every must be >= 0"):
        make_schedule("smoke", overrides=["expand2.smallest_every=-1"])


def test_largest_every_trains_the_largest_subnet_from_step_one_without_displacing_the_smallest():
    s = make_schedule("smoke", overrides=["expand2.n_subnets=1", "expand2.smallest_every=2", "expand2.largest_every=4"])
    sampler = SubnetSampler(TINY, "progressive", seed=3)
    lo, hi = TINY.min_arch(), TINY.max_arch()
    smallest, largest = Arch(lo.kernel, lo.expand, lo.depth, 16), Arch(hi.kernel, hi.expand, hi.depth, 16)
    draws = [sampler.sample(5, s.phase("expand2"), step, 16) for step in range(12)]
    assert all(draws[step] == [smallest] for step in range(0, 12, 2))
    assert all(draws[step] == [largest] for step in (1, 5, 9))
    assert sum(d == [largest] for d in draws) <= 4  # steps 3, 7 and 11 are random draws
    with pytest.raises(ScheduleError, match="largest_every must be >= 0"):
        make_schedule("smoke", overrides=["expand2.largest_every=-2"])


def test_sampler_draws_are_a_function_of_seed_phase_and_step():
    phase = make_schedule("smoke").phase("expand2")
    a, b = SubnetSampler(TINY, "progressive", 1), SubnetSampler(TINY, "progressive", 1)
    assert a.sample(5, phase, 7, 16) == b.sample(5, phase, 7, 16)
    assert a.sample(5, phase, 7, 16) != a.sample(5, phase, 8, 16)
    sandwich = SubnetSampler(TINY, "sandwich", 1).sample(0, make_schedule("smoke", "sandwich").phases[0], 0, 16)
    assert sandwich[0].depth == (3,) * 4 and sandwich[1].depth == (1,) * 4 and len(sandwich) == 4


# ---------------------------------------------------------------------------------------- losses, optimiser
def test_distillation_loss():
    logits, other = torch.randn(8, 10), torch.randn(8, 10)
    labels = torch.randint(0, 10, (8,))
    entropy = -(F.softmax(logits, 1) * F.log_softmax(logits, 1)).sum(1).mean()
    assert torch.allclose(soft_cross_entropy(logits, logits), entropy)
    assert soft_cross_entropy(logits, other) > soft_cross_entropy(other, other)
    plain = F.cross_entropy(logits, labels, label_smoothing=0.1)
    assert torch.allclose(subnet_loss(logits, labels, None, 1.0, 0.1), plain)
    assert torch.allclose(subnet_loss(logits, labels, other, 0.5, 0.1), plain + 0.5 * soft_cross_entropy(logits, other))


def test_cosine_with_warmup_and_no_decay_on_bn_and_bias():
    lrs = [lr_at(s, 100, 0.4, 10) for s in range(100)]
    assert lrs[0] == pytest.approx(0.04) and lrs[9] == pytest.approx(0.4)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[-1] < 0.001
    assert lr_at(55, 100, 0.4, 10) == pytest.approx(0.2)
    net = Supernet(TINY)
    opt = make_optimizer(net, 0.1, 0.9, 1e-4)
    decayed = {id(p) for p in opt.param_groups[0]["params"]}
    for name, p in net.named_parameters():
        assert (id(p) in decayed) == (p.ndim > 1), name
    assert opt.defaults["nesterov"]


# ---------------------------------------------------------------------------------------- end to end
def test_train_writes_supernet_report_and_log(reference_run: Path, capsys):
    report = json.loads((reference_run / "train_report.json").read_text())
    assert report["complete"] and list(report["phases"]) == ["teacher", "kernel", "depth1", "depth2", "expand1", "expand2"]
    for entry in report["phases"].values():
        assert 0.0 <= entry["accuracy"]["min"] <= 1.0 and 0.0 <= entry["accuracy"]["max"] <= 1.0
        assert entry["steps"] == 3 and entry["images_per_s"] > 0
    lines = [json.loads(line) for line in (reference_run / "train_log.jsonl").read_text().splitlines()]
    assert len(lines) == 18 and all(math.isfinite(e["loss"]) and e["lr"] > 0 for e in lines)
    assert [len(e["subnets"]) for e in lines[::3]] == [1, 1, 2, 2, 4, 4]
    net = Supernet.load(reference_run / "supernet")
    data = net.metadata["data"]
    assert data["source"] == "digits" and len(data["mean"]) == 3 and data["hflip"] is False and len(data["class_names"]) == 10
    capsys.readouterr()
    assert main(["eval", "--supernet", str(reference_run / "supernet"), "--arch", "min", "-q"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0.0 <= result["top1"] <= 1.0 and result["n"] > 0 and result["arch"] == str(TINY.min_arch())
    # a finished run re-run with the same command does nothing and reports the same
    assert main(["train", *FAST, "--out", str(reference_run)]) == 0
    assert json.loads(capsys.readouterr().out)["resumed"] is True


def test_sigkill_and_resume_gives_bit_identical_weights(reference_run: Path, tmp_path: Path):
    out = tmp_path / "work"
    cmd = [*OFA, "train", *FAST, "--out", str(out), "--checkpoint-every", "2"]
    kill_after = random.Random(1234).randint(5, 15)  # log lines (steps) seen before the kill
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = out / "train_log.jsonl"
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if log.is_file() and log.read_text().count("\n") >= kill_after:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before the kill: {proc.stderr.read().decode()[-500:]}"
    state = torch.load(out / "run" / "state.pt", weights_only=True)
    assert (state["progress"]["phase"], state["progress"]["step"]) < (6, 0)
    (out / "run" / ".state.pt.junk.tmp").write_bytes(b"half-written")  # what a kill during a write leaves
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-800:]
    assert json.loads(done.stdout)["resumed"] is True
    assert not (out / "run" / ".state.pt.junk.tmp").exists()
    resumed = torch.load(out / "supernet" / "weights.pt", weights_only=True)
    reference = torch.load(reference_run / "supernet" / "weights.pt", weights_only=True)
    assert resumed.keys() == reference.keys()
    different = [k for k in reference if not torch.equal(resumed[k], reference[k])]
    assert not different, f"resumed weights differ from the uninterrupted run: {different[:5]}"
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    assert len(steps) == 18  # replayed steps were not logged twice


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible to PyTorch)")
def test_trains_on_a_gpu_in_bf16_resumes_and_evaluates_on_cpu(tmp_path: Path, capsys, one_thread):
    gpu = [a if a != "cpu" else "cuda" for a in FAST]
    out = tmp_path / "work"
    assert main(["train", *gpu, "--out", str(out), "--checkpoint-every", "2"]) == 0
    report = json.loads((out / "train_report.json").read_text())
    assert report["complete"] and all(e["images_per_s"] > 0 for e in report["phases"].values())
    lines = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(lines) == 18 and all(math.isfinite(e["loss"]) for e in lines)
    weights = torch.load(out / "supernet" / "weights.pt", weights_only=True)
    assert all(t.device.type == "cpu" and t.dtype != torch.bfloat16 for t in weights.values())  # bf16 is compute only
    capsys.readouterr()
    assert main(["train", *gpu, "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["resumed"] is True
    assert main(["eval", "--supernet", str(out / "supernet"), "--arch", "max", "--device", "cpu", "-q"]) == 0
    assert 0.0 <= json.loads(capsys.readouterr().out)["top1"] <= 1.0


def test_refuses_other_space_other_settings_and_nothing_to_resume(reference_run: Path, tmp_path: Path, capsys, one_thread):
    copy = tmp_path / "copy"
    shutil.copytree(reference_run, copy)
    assert main(["train", *FAST, "--out", str(copy), "--set", "teacher.lr=0.3"]) == 1
    err = capsys.readouterr().err
    assert "settings differ" in err and "teacher.lr" in err
    assert main(["train", *FAST, "--out", str(copy), "--space", "cifar"]) == 1
    err = capsys.readouterr().err
    assert "another space" in err and "--force" in err and err.count("\n") == 1
    assert main(["train", *FAST, "--out", str(tmp_path / "empty"), "--resume"]) == 1
    assert "nothing to resume" in capsys.readouterr().err
    (copy / "run" / "state.pt").write_bytes(b"garbage")
    assert main(["train", *FAST, "--out", str(copy)]) == 1
    assert "unreadable" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:  # a bad override is a usage error: exit code 2
        main(["train", *FAST, "--out", str(copy), "--set", "teacher.nonsense=1"])
    assert usage.value.code == 2
    assert "unknown schedule field 'teacher.nonsense'" in capsys.readouterr().err


def test_refuses_a_dataset_with_one_class(tmp_path: Path, capsys, one_thread):
    from PIL import Image

    folder = tmp_path / "one" / "cat"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(10):
        Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    assert main(["train", *FAST, "--data", str(tmp_path / "one"), "--out", str(tmp_path / "w")]) == 1
    err = capsys.readouterr().err
    assert "class" in err and ("two" in err or "2" in err) and err.startswith("error:")


def test_eval_refuses_a_dataset_with_other_classes(reference_run: Path, tmp_path: Path, capsys):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / "two" / c).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(tmp_path / "two" / c / f"{i}.png")
    assert main(["eval", "--supernet", str(reference_run / "supernet"), "--data", str(tmp_path / "two"), "-q"]) == 1
    assert "2 classes" in capsys.readouterr().err


def test_torchrun_two_processes_agree_on_subnets_and_weights(tmp_path: Path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed beside this Python")
    out = tmp_path / "ddp"
    cmd = [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "ofa", "train", *FAST, "--set", "steps_per_epoch=2",
           "--device", "cpu", "--out", str(out)]
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-1500:]
    assert done.stdout.count('"supernet"') == 1  # only rank 0 reports
    report = json.loads((out / "train_report.json").read_text())
    assert report["world_size"] == 2 and report["complete"]
    for name, entry in report["phases"].items():
        assert entry["ranks_agree"] == {"subnets": True, "weights": True}, name
    Supernet.load(out / "supernet")


def test_trains_on_a_custom_image_folder_with_a_corrupt_image(tmp_path: Path, capsys, one_thread):
    """A user's ImageFolder: odd sizes, grayscale, RGBA, one corrupt file; trains end to end and says what it skipped."""
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "shapes"
    for c, name in enumerate(["circle", "square", "triangle"]):
        (root / name).mkdir(parents=True)
        for i in range(12):
            size = (17 + i, 23 + 2 * c)  # odd, varying sizes
            mode = ["RGB", "L", "RGBA"][i % 3]
            pixels = rng.integers(0, 255, (size[1], size[0], len(mode)), dtype=np.uint8).squeeze()
            Image.fromarray(pixels, mode).save(root / name / f"{i}.png")
    (root / "square" / "broken.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    out = tmp_path / "work"
    args = ["train", *FAST, "--out", str(out), "--data-cache", str(tmp_path / "cache")]
    args[args.index("--data") + 1] = str(root)
    assert main(args) == 0
    net = Supernet.load(out / "supernet")
    assert net.n_classes == 3 and net.class_names == ["circle", "square", "triangle"]
    report = json.loads((out / "train_report.json").read_text())
    assert set(report["phases"]) == {"teacher", "kernel", "depth1", "depth2", "expand1", "expand2"}
    assert "broken.jpg" in capsys.readouterr().err  # the skipped file is named in the log


def test_truncated_evaluation_samples_every_class():
    """Splits are stored class by class: the first n rows would hold only the first classes."""
    from ofa.data import ImageTensorDataset
    from ofa.evaluate import spread_subset

    labels = torch.arange(10).repeat_interleave(100)  # class-sorted, like an ImageFolder split
    data = ImageTensorDataset(torch.zeros(1000, 3, 4, 4, dtype=torch.uint8), labels)
    part = spread_subset(data, 300)
    assert len(part) == 300 and set(part.labels.tolist()) == set(range(10))
    assert torch.equal(spread_subset(data, 300).labels, part.labels)  # deterministic
    assert spread_subset(data, None) is data and spread_subset(data, 5000) is data


def test_calibration_batches_mix_classes():
    """A calibration batch of one class normalizes with that class's statistics: every batch must mix classes."""
    from ofa.data import ImageTensorDataset
    from ofa.evaluate import shuffled_subset

    labels = torch.arange(10).repeat_interleave(100)  # class-sorted, like an ImageFolder split
    data = ImageTensorDataset(torch.arange(1000).remainder(256).to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 3, 2, 2).contiguous(), labels)
    whole = shuffled_subset(data, None)
    assert sorted(whole.labels.tolist()) == labels.tolist()  # every row once
    assert all(len(set(whole.labels[i : i + 50].tolist())) >= 6 for i in range(0, 1000, 50))
    part = shuffled_subset(data, 200, seed=3)
    assert len(part) == 200 and torch.equal(part.labels, shuffled_subset(data, 200, seed=3).labels)  # deterministic
    assert not torch.equal(part.labels, shuffled_subset(data, 200, seed=4).labels)
