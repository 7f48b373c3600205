"""Search (ofa.search) and the `ofa specialize` / `ofa-specialize` command, on the tiny space."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ofa.cli import main
from ofa.commands.specialize import specialize_main
from ofa.costs import CostModel
from ofa.search import Constraint, Metric, SearchError, SubnetProblem, canonicalize, hypervolume, minimum_of, run_evolution, run_nsga2, run_random
from ofa.search.operators import CanonicalDuplicates, crossover_codes, mutate_codes, random_codes
from ofa.search.problem import code_bounds, inactive_mask
from ofa.space import Arch, SearchSpace

TINY = SearchSpace.preset("tiny")
COST = CostModel.for_space(TINY)


def _metrics() -> list[Metric]:
    """Accuracy proxy (log MACs), a synthetic additive latency, exact params and MACs."""
    rng = np.random.default_rng(1)
    weights = rng.uniform(0.5, 1.5, size=TINY.n_slots)

    def latency(codes: np.ndarray) -> np.ndarray:
        s = TINY.n_slots
        active = ~inactive_mask(TINY, codes)
        k = np.asarray(TINY.kernel_sizes)[codes[:, :s]]
        e = np.asarray(TINY.expand_ratios)[codes[:, s : 2 * s]]
        r = np.asarray(TINY.resolutions)[codes[:, -1]]
        return 0.2 + (active * weights * k * e).sum(axis=1) * (r / 24.0) ** 2 * 0.01

    return [
        Metric("accuracy", lambda c: np.log(COST.count_codes(c)[1]), maximize=True),
        Metric("latency:dev", latency, unit="ms"),
        Metric("params", lambda c: COST.count_codes(c)[0]),
        Metric("macs", lambda c: COST.count_codes(c)[1]),
    ]


def _problem(latency_ms: float = 0.6, params: float = 60e3) -> SubnetProblem:
    return SubnetProblem(
        TINY, _metrics(), ["accuracy", "latency:dev", "params"], [Constraint("latency:dev", latency_ms), Constraint("params", params)]
    )


# ----------------------------------------------------------------------------- encoding and operators
def test_canonical_codes_make_equal_subnets_equal_rows():
    rng = np.random.default_rng(0)
    raw = rng.integers(0, code_bounds(TINY)[None, :], size=(200, len(code_bounds(TINY))))
    canon = canonicalize(TINY, raw)
    assert [str(a) for a in TINY.decode(raw)] == [str(a) for a in TINY.decode(canon)]
    assert np.array_equal(TINY.encode(TINY.decode(raw)), canon)
    assert (canon[:, : 2 * TINY.n_slots][np.tile(inactive_mask(TINY, canon), 2)] == 0).all()


def test_operators_produce_valid_canonical_subnets():
    rng = np.random.default_rng(0)
    a, b = random_codes(TINY, rng, 300), random_codes(TINY, rng, 300)
    child = crossover_codes(TINY, a, b, rng)
    mutant = mutate_codes(TINY, a, rng, 0.3)
    for codes in (a, child, mutant):
        assert np.array_equal(codes, canonicalize(TINY, codes))
        assert ((codes >= 0) & (codes < code_bounds(TINY))).all()
        for arch in TINY.decode(codes[:20]):
            TINY.validate(arch)
    # every active block of a child comes from a parent where that slot was active
    s = TINY.n_slots
    child_active = ~inactive_mask(TINY, child)
    a_act, b_act = ~inactive_mask(TINY, a), ~inactive_mask(TINY, b)
    same_a = (child[:, :s] == a[:, :s]) & (child[:, s : 2 * s] == a[:, s : 2 * s]) & a_act
    same_b = (child[:, :s] == b[:, :s]) & (child[:, s : 2 * s] == b[:, s : 2 * s]) & b_act
    assert (same_a | same_b)[child_active].all()
    # mutation with probability 0 changes nothing; with 1 it changes every gene that has a choice
    assert np.array_equal(mutate_codes(TINY, a, rng, 0.0), a)
    assert (mutate_codes(TINY, a, rng, 1.0)[:, 2 * s :] != a[:, 2 * s :]).all()


def test_duplicate_elimination_treats_inactive_slots_as_equal():
    from pymoo.core.population import Population

    from ofa.search.operators import CanonicalRepair

    rng = np.random.default_rng(3)
    codes = random_codes(TINY, rng, 50)
    junk = codes.copy()  # the same subnets with random values in their inactive slots
    s = TINY.n_slots
    mask = inactive_mask(TINY, codes)
    junk[:, :s] = np.where(mask, rng.integers(0, 3, size=mask.shape), codes[:, :s])
    junk[:, s : 2 * s] = np.where(mask, rng.integers(0, 3, size=mask.shape), codes[:, s : 2 * s])
    assert not np.array_equal(junk, codes)
    pop = CanonicalRepair(TINY).do(None, Population.new("X", np.concatenate([codes, junk])))
    kept = CanonicalDuplicates().do(pop)
    assert len(kept) == len({str(a) for a in TINY.decode(codes)})
    against = CanonicalDuplicates().do(Population.new("X", codes[:10]), Population.new("X", codes[5:]))
    assert len(against) == 5


def test_minimum_of_finds_the_cheapest_subnet():
    lowest = minimum_of(TINY, lambda c: COST.count_codes(c)[1])
    assert lowest.value == TINY.count(TINY.min_arch()).macs
    assert lowest.arch == TINY.min_arch()
    # an additive cost whose cheapest choice differs per slot and per resolution
    latency = _metrics()[1]
    found = minimum_of(TINY, latency.fn)
    sampled = latency(random_codes(TINY, np.random.default_rng(0), 5000))
    assert found.value <= sampled.min()
    assert found.value == pytest.approx(float(latency(TINY.encode([found.arch]))[0]))
    assert found.arch.depth == (min(TINY.depths),) * TINY.n_stages and found.arch.resolution == min(TINY.resolutions)


# ----------------------------------------------------------------------------- search
def _assert_front(result, problem: SubnetProblem):
    assert len(result.codes) > 0
    archs = result.archs
    assert len({str(a) for a in archs}) == len(archs)
    params = np.array([TINY.count(a).params for a in archs])
    assert (params <= 60e3).all() and np.array_equal(params, result.column("params"))
    assert (result.column("latency:dev") <= 0.6 + 1e-12).all()
    F = result.objective_matrix()
    for i in range(len(F)):  # no member dominates another
        dominated = (F <= F[i]).all(axis=1) & (F < F[i]).any(axis=1)
        assert not dominated.any()


def test_nsga2_front_is_feasible_non_dominated_and_reproducible():
    problem = _problem()
    result = run_nsga2(problem, pop_size=30, generations=15, seed=0)
    assert result.n_evaluations == 30 * 15
    _assert_front(result, problem)
    again = run_nsga2(_problem(), pop_size=30, generations=15, seed=0)
    assert np.array_equal(result.codes, again.codes)
    other = run_nsga2(_problem(), pop_size=30, generations=15, seed=1)
    assert not np.array_equal(result.codes, other.codes)


def test_nsga2_beats_random_at_equal_evaluations():
    ideal, nadir = np.array([-np.log(3e6), 0.2, 2e4]), np.array([-np.log(2e5), 0.6, 6e4])
    nsga = run_nsga2(_problem(), pop_size=40, generations=20, seed=0)
    rand = run_random(_problem(), nsga.n_evaluations, seed=0)
    assert rand.n_evaluations == nsga.n_evaluations
    _assert_front(rand, _problem())
    assert hypervolume(nsga, ideal, nadir) > hypervolume(rand, ideal, nadir)
    assert nsga.column("accuracy").max() >= rand.column("accuracy").max()


def test_evolution_stays_within_budget_and_evaluation_cap():
    problem = _problem()
    result = run_evolution(problem, population=20, generations=50, seed=0, max_evaluations=400)
    assert result.n_evaluations <= 400
    _assert_front(result, problem)


def test_problem_rejects_bad_setup():
    with pytest.raises(SearchError, match="unknown metric 'latency'"):
        SubnetProblem(TINY, _metrics(), ["accuracy", "latency"])
    with pytest.raises(SearchError, match="positive"):
        Constraint("params", 0)
    broken = SubnetProblem(TINY, [Metric("accuracy", lambda c: np.zeros(3), maximize=True)], ["accuracy"])
    with pytest.raises(SearchError, match="returned 3 values for 5 archs"):
        broken.measure(random_codes(TINY, np.random.default_rng(0), 5))


# ----------------------------------------------------------------------------- command
def _write_table(work: Path, device: str, space: SearchSpace = TINY, resolutions=None, host=None, runtime="ort-cpu") -> Path:
    """A real latency table file (synthetic per-layer numbers, proportional to each layer's MACs)."""
    from latency.keys import slot_layer_grid
    from latency.table import Entry, LatencyTable

    resolutions = tuple(resolutions or space.resolutions)
    entries = {}
    for res in resolutions:
        fixed, grid = slot_layer_grid(space, res)
        layers = fixed + [layer for per_k in grid for per_e in per_k for layer in per_e]
        for layer in layers:
            c, h, w = layer.input_chw
            entries.setdefault(layer.key, Entry(0.01 + 2e-6 * c * h * w * (1 + len(layer.key) % 7), 0.0, 5))
    table = LatencyTable(space, device, runtime, "test", 1, 1, "fp32", resolutions, entries, 0.005, host=host or {})
    return table.save(work / "latency" / f"{device}.json")


def _run(capsys, argv, console: bool = False) -> tuple[int, str, str]:
    code = specialize_main(argv) if console else main(["specialize", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_specialize_writes_front_and_chosen_arch_within_budgets(tmp_path, capsys):
    _write_table(tmp_path, "cpu")
    argv = ["--work", str(tmp_path), "--space", "tiny", "--device", "cpu", "--latency", "1ms", "--params", "60k",
            "--objectives", "accuracy,latency,params", "--accuracy-proxy", "macs", "--pop", "24", "--generations", "10", "-q"]
    code, out, err = _run(capsys, argv, console=True)
    assert code == 0, err
    folder = tmp_path / "specialized" / "cpu-1ms_params-60k"
    assert {p.name for p in folder.iterdir()} >= {"pareto.json", "chosen.json", "pareto.png", "report.md"}
    from latency.table import LatencyTable

    table = LatencyTable.load(tmp_path / "latency" / "cpu.json", TINY)
    chosen = Arch.load(folder / "chosen.json", TINY)
    assert table.predict([chosen])[0] <= 1.0 and TINY.count(chosen).params <= 60e3
    pareto = json.loads((folder / "pareto.json").read_text())
    assert pareto["fingerprint"] == TINY.fingerprint() and pareto["budgets"] == {"latency:cpu": 1.0, "params": 60000.0}
    front = [Arch.from_dict(row["arch"], TINY) for row in pareto["archs"]]
    assert all(TINY.count(a).params <= 60e3 for a in front)
    assert np.all(table.predict(front) <= 1.0 + 1e-9)
    macs = [TINY.count(a).macs for a in front]
    assert TINY.count(chosen).macs == max(macs)  # the proxy ranks more MACs as more accurate
    assert (folder / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (folder / "report.md").read_text()
    assert str(chosen) in report and "cpu.json" in report
    assert str(chosen) in out


def test_specialize_refuses_infeasible_budget_with_minimum(tmp_path, capsys):
    _write_table(tmp_path, "cpu")
    from latency.table import LatencyTable

    table = LatencyTable.load(tmp_path / "latency" / "cpu.json")
    # brute force: every subnet of minimal depth (9^4 choices x 3 resolutions); more blocks only add time
    grid = np.stack(np.meshgrid(*[np.arange(3)] * 8, np.arange(3), indexing="ij"), -1).reshape(-1, 9)
    codes = np.zeros((len(grid), 2 * TINY.n_slots + TINY.n_stages + 1), dtype=np.int64)
    first = [st * TINY.max_depth for st in range(TINY.n_stages)]
    codes[:, first] = grid[:, 0:4]
    codes[:, [TINY.n_slots + f for f in first]] = grid[:, 4:8]
    codes[:, -1] = grid[:, 8]
    fastest = float(table.predict_codes(codes).min())
    assert fastest < float(table.predict([TINY.min_arch()])[0])  # the fastest is not simply the smallest choices
    code, _, err = _run(capsys, ["--work", str(tmp_path), "--space", "tiny", "--latency", f"cpu={fastest * 0.9:.4f}ms", "--accuracy-proxy", "macs"])
    assert code == 1
    assert "is below the fastest subnet of this space" in err and f"{fastest:.3g} ms at 16 px" in err
    assert not (tmp_path / "specialized").exists()
    code, _, err = _run(capsys, ["--work", str(tmp_path), "--space", "tiny", "--params", "5k", "--accuracy-proxy", "macs"])
    assert code == 1 and "params budget 5.00k is below the smallest subnet" in err


def test_specialize_usage_errors_exit_2(tmp_path, capsys):
    base = ["--work", str(tmp_path), "--space", "tiny", "--accuracy-proxy", "macs"]
    with pytest.raises(SystemExit) as exc:
        _run(capsys, [*base, "--latency", "20 parsecs"])
    assert exc.value.code == 2 and "20ms, 1.5s, 500us" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        _run(capsys, [*base, "--macs", "lots"])
    assert exc.value.code == 2 and "300M" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        _run(capsys, [*base, "--latency", "20ms"])
    assert exc.value.code == 2 and "--latency DEVICE=TIME" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        _run(capsys, [*base, "--params", "1M", "--objectives", "accuracy,energy"])
    assert exc.value.code == 2 and "unknown objective 'energy'" in capsys.readouterr().err


def test_specialize_refuses_missing_or_foreign_inputs(tmp_path, capsys):
    _write_table(tmp_path, "cpu")
    code, _, err = _run(capsys, ["--work", str(tmp_path), "--space", "tiny", "--latency", "jetson=20ms", "--accuracy-proxy", "macs"])
    assert code == 1 and "no latency table for device 'jetson'" in err and "cpu" in err
    code, _, err = _run(capsys, ["--work", str(tmp_path), "--space", "tiny", "--latency", "cpu=20ms"])
    assert code == 1 and "ofa predictor fit" in err and "--accuracy-proxy macs" in err
    code, _, err = _run(capsys, ["--work", str(tmp_path), "--space", "cifar", "--latency", "cpu=20ms", "--accuracy-proxy", "macs"])
    assert code == 1 and "was built for space tiny" in err


def test_specialize_searches_only_resolutions_every_table_covers(tmp_path, capsys):
    _write_table(tmp_path, "a", resolutions=(20, 24))
    _write_table(tmp_path, "b", resolutions=(16, 20))
    argv = ["--work", str(tmp_path), "--space", "tiny", "--latency", "a=5ms", "--latency", "b=5ms",
            "--accuracy-proxy", "macs", "--pop", "16", "--generations", "5", "--name", "both", "-q"]
    code, _, err = _run(capsys, argv)
    assert code == 0, err
    pareto = json.loads((tmp_path / "specialized" / "both" / "pareto.json").read_text())
    assert {row["arch"]["resolution"] for row in pareto["archs"]} == {20}
    assert set(pareto["archs"][0]["metrics"]) == {"accuracy", "latency:a", "latency:b", "params", "macs"}


def test_specialize_config_file_and_baseline_algorithms(tmp_path, capsys):
    config = tmp_path / "spec.yaml"
    config.write_text(f"work: {tmp_path}\nspace: tiny\nmacs: 1M\naccuracy_proxy: macs\npop: 16\ngenerations: 5\nquiet: true\n")
    for algorithm in ("random", "evolution"):
        code, out, err = _run(capsys, ["--config", str(config), "--algorithm", algorithm, "--name", algorithm])
        assert code == 0, err
        chosen = Arch.load(tmp_path / "specialized" / algorithm / "chosen.json", TINY)
        assert TINY.count(chosen).macs <= 1e6


def test_specialize_verify_measures_accuracy_and_local_latency(tmp_path, capsys):
    import torch

    from latency.runtimes import host_description
    from ofa.supernet import Supernet

    torch.manual_seed(0)
    Supernet(TINY).save(tmp_path / "supernet", metadata={"data": {"source": "digits"}})
    _write_table(tmp_path, "here", resolutions=(16,), host=host_description(), runtime="torch-cpu")
    _write_table(tmp_path, "far", resolutions=(16,), host={"cpu": "some phone"})
    argv = ["--work", str(tmp_path), "--latency", "here=50ms", "--latency", "far=50ms", "--accuracy-proxy", "macs", "--pop", "12", "--generations", "3",
            "--verify", "--top-k", "2", "--n-calib", "64", "--name", "v", "-q"]
    code, out, err = _run(capsys, argv)
    assert code == 0, err
    folder = tmp_path / "specialized" / "v"
    chosen = json.loads((folder / "chosen.json").read_text())
    verified = chosen["verified"]
    assert 0.0 <= verified["measured_top1"] <= 1.0 and verified["measured_latency_ms"]["here"] > 0
    assert "far" not in verified["measured_latency_ms"]
    assert "latency on far not measured" in out and "top-1..top-2.json" in out
    assert (folder / "candidates" / "top-2.json").is_file()
    report = (folder / "report.md").read_text()
    assert "predicted vs measured" in report


def _save_predictor(directory: Path, space: SearchSpace) -> None:
    """A real (small) MLP accuracy predictor fitted on a smooth function of MACs."""
    from predictors import AccuracyPredictor
    from predictors.features import Encoding
    from predictors.models import MlpRegressor

    codes = random_codes(space, np.random.default_rng(0), 300)
    macs = CostModel.for_space(space).count_codes(codes)[1]
    y = 0.5 + 0.05 * np.log(macs / macs.min())
    model = MlpRegressor(hidden=(32,), steps=40, seed=0).fit(Encoding.for_space(space).features(codes), y)
    AccuracyPredictor(space, model).save(directory)


def test_specialize_with_accuracy_predictor(tmp_path, capsys):
    from predictors import AccuracyPredictor

    _write_table(tmp_path, "cpu")
    _save_predictor(tmp_path / "predictor", TINY)
    argv = ["--work", str(tmp_path), "--space", "tiny", "--latency", "cpu=1ms", "--pop", "16", "--generations", "5", "--name", "p", "-q"]
    code, out, err = _run(capsys, argv)
    assert code == 0, err
    chosen = json.loads((tmp_path / "specialized" / "p" / "chosen.json").read_text())
    predictor = AccuracyPredictor.load(tmp_path / "predictor")
    arch = Arch.from_json(chosen, TINY)
    assert chosen["metrics"]["accuracy"] == pytest.approx(float(predictor.predict([arch])[0]))
    pareto = json.loads((tmp_path / "specialized" / "p" / "pareto.json").read_text())
    assert chosen["metrics"]["accuracy"] == max(row["metrics"]["accuracy"] for row in pareto["archs"])
    assert "predictor" in (tmp_path / "specialized" / "p" / "report.md").read_text()
    # a predictor fitted for another space is refused
    _save_predictor(tmp_path / "other", SearchSpace.preset("cifar"))
    code, _, err = _run(capsys, [*argv[:6], "--predictor", str(tmp_path / "other")])
    assert code == 1 and "was fitted for space 'cifar'" in err


def test_specialize_model_size_budget_in_bytes(tmp_path, capsys):
    _write_table(tmp_path, "cpu")
    argv = ["--work", str(tmp_path), "--space", "tiny", "--device", "cpu", "--latency", "1ms", "--size", "200KB",
            "--accuracy-proxy", "macs", "--pop", "16", "--generations", "5", "-q"]
    code, _, err = _run(capsys, argv)
    assert code == 0, err
    chosen = Arch.load(tmp_path / "specialized" / "cpu-1ms_size-200kB" / "chosen.json", TINY)
    assert 4 * TINY.count(chosen).params <= 200_000
    code, _, err = _run(capsys, ["--work", str(tmp_path), "--space", "tiny", "--size", "20KB", "--accuracy-proxy", "macs"])
    assert code == 1 and "size budget 20.00kB is below the smallest subnet" in err and "--size" in err
    with pytest.raises(SystemExit) as exc:
        _run(capsys, ["--work", str(tmp_path), "--space", "tiny", "--size", "5 parsecs", "--accuracy-proxy", "macs"])
    assert exc.value.code == 2 and "5MB" in capsys.readouterr().err
