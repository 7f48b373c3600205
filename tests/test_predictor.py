"""Accuracy predictor: encoding, stratified collection with resume, selection, safe save/load, CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ofa.cli import main
from ofa.data import load_dataset
from ofa.evaluate import evaluate_arch
from ofa.space import Arch, SearchSpace
from ofa.supernet import Supernet
from predictors import AccuracyPredictor, Encoding, PredictorError, SamplesError, read_samples
from predictors.collect import SubnetEvaluator, collect_samples, stratified_archs, supernet_fingerprint
from predictors.fit import fit_predictor, write_fit
from predictors.models import make_candidate
from predictors.samples import Sample, SamplesHeader, append_line, create_file

TINY = SearchSpace.preset("tiny")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny networks run fastest on one thread (and the suite shares 2 cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
CIFAR = SearchSpace.preset("cifar")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", progress=False)


@pytest.fixture(scope="module")
def tiny_net():
    torch.manual_seed(0)
    return Supernet(TINY, n_classes=10).eval()


def _synthetic_file(path: Path, space: SearchSpace, n: int, noise: float = 0.002, seed: int = 0, supernet: str = "a" * 16) -> list[Arch]:
    """A samples file whose accuracy is a known function of the encoding (log-MACs + per-choice effects) plus noise."""
    archs = stratified_archs(space, n, seed)
    params, macs = space.count_many(archs)
    rng = np.random.default_rng(seed)
    X = Encoding.for_space(space).features(space.encode(archs))
    weights = rng.normal(size=X.shape[1]) * 0.003
    top1 = 0.7 + 0.04 * np.log(macs / macs.mean()) + X @ weights + rng.normal(size=n) * noise
    create_file(path, SamplesHeader(space, supernet, "synthetic", 2000, "val", "val", 5000))
    for arch, t, p, m in zip(archs, top1, params, macs):
        append_line(path, Sample(arch, float(t), 1.0, int(p), int(m), 0.01, supernet).to_dict())
    return archs


# ---------------------------------------------------------------------------------------------- features
def test_encoding_masks_inactive_slots_and_is_one_hot():
    enc = Encoding.for_space(TINY)
    a = Arch((3, 5, 7) * 4, (2.0, 3.0, 4.0) * 4, (1, 2, 3, 1), 20)
    inactive = set(range(TINY.n_slots)) - set(a.active_slots(TINY.max_depth))
    b = Arch(tuple(7 if i in inactive else k for i, k in enumerate(a.kernel)),
             tuple(4.0 if i in inactive else e for i, e in enumerate(a.expand)), a.depth, 20)  # other inactive slots
    assert a.kernel != b.kernel
    fa, fb = enc.features(TINY.encode([a, b]))
    assert fa.shape == (enc.n_features,)
    np.testing.assert_array_equal(fa, fb)
    s, nk, ne = TINY.n_slots, 3, 3
    kernel = fa[: s * nk].reshape(s, nk)
    expand = fa[s * nk : s * (nk + ne)].reshape(s, ne)
    active = np.zeros(s, bool)
    active[a.active_slots(TINY.max_depth)] = True
    assert (kernel.sum(1) == active).all() and (expand.sum(1) == active).all()
    assert kernel[0].argmax() == 0 and kernel[4].argmax() == 1 and expand[8].argmax() == 2 and expand[5].sum() == 0
    depth_res = fa[s * (nk + ne) :]
    assert depth_res.sum() == TINY.n_stages + 1 and depth_res[-2] == 1  # resolution 20 is index 1 of 3
    with pytest.raises(ValueError, match="codes must have shape"):
        enc.features(np.zeros((2, 5), dtype=np.int64))


def test_stratified_plan_is_deterministic_even_over_resolution_and_wider_than_uniform():
    plan = stratified_archs(CIFAR, 300, seed=3)
    assert plan == stratified_archs(CIFAR, 300, seed=3)
    assert len({a.key() for a in plan}) == 300
    counts = [sum(a.resolution == r for a in plan) for r in CIFAR.resolutions]
    assert max(counts) - min(counts) <= 1
    at = [Arch(a.kernel, a.expand, a.depth, 32) for a in plan]
    uniform = [Arch(a.kernel, a.expand, a.depth, 32) for a in CIFAR.sample_many(3, 300)]
    log_strat = np.log(CIFAR.count_many(at)[1])
    log_uni = np.log(CIFAR.count_many(uniform)[1])
    assert log_strat.std() > 1.3 * log_uni.std()  # covers small and large subnets, not just the middle
    assert log_strat.min() < log_uni.min() and log_strat.max() > log_uni.max()


# ---------------------------------------------------------------------------------------------- collection
def test_evaluator_reusing_batches_matches_evaluate_arch(tiny_net, digits):
    evaluator = SubnetEvaluator(tiny_net, digits.val, digits.val, n_calib=100, batch_size=64)
    for arch in [TINY.max_arch(), TINY.min_arch(), stratified_archs(TINY, 1, seed=5)[0]]:
        got = evaluator(arch)
        want = evaluate_arch(tiny_net, arch, digits.val, digits.val, n_calib=100, batch_size=64)
        assert got.top1 == want.top1 and got.n == len(digits.val)
        assert got.loss == pytest.approx(want.loss, rel=1e-5)


def test_collect_appends_resumes_without_duplicates_and_refuses_other_supernet(tiny_net, digits, tmp_path, caplog):
    out = tmp_path / "samples.jsonl"
    kw = dict(data="digits", n_calib=40, batch_size=64, progress=False)
    first = collect_samples(tiny_net, digits, out, n=4, **kw)
    assert (first.total, first.added) == (4, 4)
    lines = out.read_text().splitlines()
    assert len(lines) == 5 and json.loads(lines[0])["supernet"] == supernet_fingerprint(tiny_net)
    record = json.loads(lines[1])
    assert {"arch", "resolution", "top1", "loss", "params", "macs", "supernet"} <= set(record)
    # an interrupted write leaves a torn line: it is dropped, and resuming tops the file up to --n
    with open(out, "a") as fh:
        fh.write('{"arch": {"resol')
    second = collect_samples(tiny_net, digits, out, n=7, **kw)
    assert (second.total, second.added) == (7, 3)
    third = collect_samples(tiny_net, digits, out, n=7, **kw)
    assert third.added == 0
    samples = read_samples(out).samples
    keys = [s.arch.key() for s in samples]
    assert len(keys) == len(set(keys)) == 7
    assert {s.arch.key() for s in samples} == {a.key() for a in stratified_archs(TINY, 7, 0)}
    # same space, other weights: refused, nothing appended
    torch.manual_seed(1)
    other = Supernet(TINY, n_classes=10)
    with pytest.raises(SamplesError, match="another supernet"):
        collect_samples(other, digits, out, n=9, **kw)
    with pytest.raises(SamplesError, match="n_calib"):
        collect_samples(tiny_net, digits, out, n=9, **{**kw, "n_calib": 41})
    assert len(read_samples(out).samples) == 7


def test_worker_processes_measure_the_same_as_one_process(tiny_net, digits, tmp_path):
    archs = stratified_archs(TINY, 4, seed=11)
    kw = dict(data="digits", n=4, n_calib=40, batch_size=64, progress=False, archs=archs)
    collect_samples(tiny_net, digits, tmp_path / "one.jsonl", workers=1, **kw)
    collect_samples(tiny_net, digits, tmp_path / "two.jsonl", workers=2, **kw)
    one = {s.arch.key(): s.top1 for s in read_samples(tmp_path / "one.jsonl").samples}
    two = {s.arch.key(): s.top1 for s in read_samples(tmp_path / "two.jsonl").samples}
    assert one == two and len(one) == 4


def test_read_samples_refuses_mixed_supernets_and_corrupt_lines(tmp_path):
    path = tmp_path / "s.jsonl"
    _synthetic_file(path, TINY, 5)
    text = path.read_text().splitlines()
    line = json.loads(text[2])
    line["supernet"] = "b" * 16
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("\n".join(text[:2] + [json.dumps(line)]) + "\n")
    with pytest.raises(SamplesError, match="line 3: sample from supernet b+"):
        read_samples(mixed)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(text[:2] + ["not json"] + text[3:]) + "\n")
    with pytest.raises(SamplesError, match="line 3 is not valid JSON"):
        read_samples(bad)
    with pytest.raises(SamplesError, match="does not exist"):
        read_samples(tmp_path / "missing.jsonl")


# ---------------------------------------------------------------------------------------------- fitting
def test_fit_selects_and_reaches_high_held_out_tau_and_round_trips(tmp_path):
    path = tmp_path / "samples.jsonl"
    archs = _synthetic_file(path, CIFAR, 300)
    samples = read_samples(path)
    result = fit_predictor(samples, folds=3, candidates=["ridge", "mlp"], mlp_steps=150, progress=False)
    assert [s.name for s in result.selection] == ["ridge", "mlp"]
    assert result.test.n == 60 and result.n_fit == 240
    assert result.test.kendall_tau >= 0.8
    assert result.test.kendall_tau > result.macs_baseline.kendall_tau
    out = write_fit(result, tmp_path / "predictor")
    meta = json.loads((out / "predictor.json").read_text())
    assert meta["space_fingerprint"] == CIFAR.fingerprint() and meta["selection"]["chosen"] == result.predictor.model_name
    assert meta["test"]["kendall_tau"] == pytest.approx(result.test.kendall_tau)
    assert (out / "predicted_vs_measured.png").read_bytes()[:4] == b"\x89PNG"
    loaded = AccuracyPredictor.load(out, CIFAR)
    np.testing.assert_allclose(loaded.predict(archs[:50]), result.predictor.predict(archs[:50]), rtol=1e-6)
    np.testing.assert_allclose(loaded.predict_codes(CIFAR.encode(archs[:50])), loaded.predict(archs[:50]))
    with pytest.raises(PredictorError, match="fitted for space 'cifar'"):
        AccuracyPredictor.load(out, TINY)


@pytest.mark.parametrize("name", ["mlp", "random-forest", "ridge"])
def test_each_model_kind_saves_without_pickle_and_loads_identically(name, tmp_path):
    path = tmp_path / "s.jsonl"
    archs = _synthetic_file(path, TINY, 60)
    samples = read_samples(path)
    space = samples.space
    X = Encoding.for_space(space).features(space.encode(archs))
    y = np.array([s.top1 for s in samples.samples])
    model = make_candidate(name, seed=0, mlp_steps=20).fit(X, y)
    AccuracyPredictor(space, model, {"note": "x"}).save(tmp_path / "p")
    files = sorted(p.name for p in (tmp_path / "p").iterdir())
    assert files == ["model.pt" if name == "mlp" else "model.skops", "predictor.json"]
    loaded = AccuracyPredictor.load(tmp_path / "p")
    assert loaded.model_name == name and loaded.metadata["note"] == "x"
    np.testing.assert_allclose(loaded.predict(archs), model.predict(X), rtol=1e-6)


def test_load_refuses_unexpected_types_and_missing_files(tmp_path):
    import skops.io as sio
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline

    path = tmp_path / "s.jsonl"
    archs = _synthetic_file(path, TINY, 30)
    X = Encoding.for_space(TINY).features(TINY.encode(archs))
    model = make_candidate("ridge").fit(X, np.linspace(0, 1, 30))
    AccuracyPredictor(TINY, model).save(tmp_path / "p")
    sio.dump(Pipeline([("r", Ridge())]), tmp_path / "p" / "model.skops")  # a type a predictor never holds
    with pytest.raises(PredictorError, match="holds a Pipeline, not the RidgeCV"):
        AccuracyPredictor.load(tmp_path / "p")
    (tmp_path / "p" / "model.skops").unlink()
    with pytest.raises(PredictorError, match="missing"):
        AccuracyPredictor.load(tmp_path / "p")
    with pytest.raises(PredictorError, match="no predictor.json"):
        AccuracyPredictor.load(tmp_path / "nothing")
    with pytest.raises(PredictorError, match="do not belong to space"):
        AccuracyPredictor(TINY, model).predict_codes(np.zeros((3, 7), dtype=np.int64))


def test_fit_refuses_fewer_samples_than_folds(tmp_path):
    path = tmp_path / "s.jsonl"
    _synthetic_file(path, TINY, 8)
    with pytest.raises(SamplesError, match="too few for 5-fold selection"):
        fit_predictor(read_samples(path), folds=5, candidates=["ridge"], progress=False)
    with pytest.raises(SamplesError, match="unknown predictor model"):
        fit_predictor(read_samples(path), folds=2, candidates=["svm"], progress=False)


def _coarse_file(path: Path, levels: int, n: int = 24) -> None:
    """Samples whose top-1 takes only `levels` values, as on a validation split of a few images."""
    archs = stratified_archs(TINY, n, 0)
    params, macs = TINY.count_many(archs)
    create_file(path, SamplesHeader(TINY, "a" * 16, "synthetic", 9, "val", "val", 9))
    for i, (arch, p, m) in enumerate(zip(archs, params, macs)):
        top1 = (6 + i % levels) / 9
        append_line(path, Sample(arch, top1, 1.0, int(p), int(m), 0.01, "a" * 16).to_dict())


@pytest.mark.parametrize("levels, message", [(1, "all 24 samples measured the same top-1"), (3, "only 3 distinct accuracies")])
def test_fit_on_tied_accuracies_warns_and_reports_no_ranking_without_scipy_warnings(levels, message, tmp_path, caplog, recwarn):
    path = tmp_path / "s.jsonl"
    _coarse_file(path, levels)
    with caplog.at_level("WARNING"):
        result = fit_predictor(read_samples(path), folds=2, candidates=["ridge"], progress=False)
    assert message in caplog.text
    assert not [w for w in recwarn if "constant" in str(w.message).lower()]  # no raw scipy ConstantInputWarning
    if levels == 1:  # nothing to rank: correlations are 0, not NaN
        assert result.test.kendall_tau == 0.0 and result.test.spearman == 0.0
    assert np.isfinite(result.test.kendall_tau) and np.isfinite(result.test.rmse)


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_collect_and_fit(tiny_net, tmp_path, capsys):
    tiny_net.save(tmp_path / "supernet", metadata={"data": {"source": "digits"}})
    out = tmp_path / "samples.jsonl"
    code = main(["predictor", "collect", "--supernet", str(tmp_path / "supernet"), "--n", "3", "--n-calib", "30",
                 "--workers", "1", "--device", "cpu", "--out", str(out), "-q"])
    assert code == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["total"] == 3
    assert len(read_samples(out).samples) == 3

    synthetic = tmp_path / "synthetic.jsonl"
    _synthetic_file(synthetic, TINY, 60)
    code = main(["predictor", "fit", "--samples", str(synthetic), "--out", str(tmp_path / "pred"), "--models", "ridge",
                 "--folds", "3", "-q"])
    assert code == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["model"] == "ridge" and report["n_test"] == 12
    assert AccuracyPredictor.load(tmp_path / "pred", TINY).predict([TINY.max_arch()]).shape == (1,)

    assert main(["predictor", "fit", "--samples", str(tmp_path / "nope.jsonl"), "-q"]) == 1
    assert "error: samples file" in capsys.readouterr().err
    assert main(["predictor", "fit", "--samples", str(out), "--out", str(tmp_path / "p2"), "-q"]) == 1
    assert "too few" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["predictor", "fit", "--samples", str(synthetic), "--folds", "1"])
    assert exc.value.code == 2
