"""ofa export: PyTorch files, ONNX parity, ONNX Runtime INT8, TensorRT guidance, the command line."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from export import (
    EngineSettings,
    ExportError,
    ParityError,
    TensorRTUnavailable,
    check_parity,
    export_onnx,
    finetune,
    load_exported,
    ort_session,
    parse_formats,
    quantize_int8,
    read_export_info,
    save_torch,
    tensorrt_available,
    time_interleaved,
    trtexec_command,
)
from export.onnx_export import ort_logits, torch_logits
from export.tensorrt_export import require_tensorrt
from export.torch_export import ExportInfo
from ofa.bn import recalibrate_bn
from ofa.cli import main
from ofa.data import BatchLoader, load_dataset
from ofa.evaluate import shuffled_subset
from ofa.space import Arch, SearchSpace
from ofa.supernet import Supernet

RES = 16


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One thread: steadier on a busy 2-core machine, and deterministic."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="module")
def splits():
    return load_dataset("digits", progress=False)


def _loader(splits, dataset, train=False):
    info = splits.info
    return BatchLoader(dataset, 64, train=train, resolutions=[RES], mean=info["mean"], std=info["std"], hflip=info["hflip"])


def _images(splits, dataset, n):
    return torch.cat([x for x, _, _ in _loader(splits, dataset.subset(range(min(n, len(dataset)))))])


@pytest.fixture(scope="module")
def space():
    return SearchSpace.preset("tiny").with_classes(10)


@pytest.fixture(scope="module")
def arch(space):
    sampled = space.sample(0)
    return space.validate(Arch(sampled.kernel, sampled.expand, sampled.depth, RES))


@pytest.fixture(scope="module")
def supernet(space):
    torch.manual_seed(0)
    return Supernet(space)


@pytest.fixture(scope="module")
def trained(splits, supernet, arch):
    """The subnet extracted and trained briefly on digits (so accuracy figures mean something)."""
    torch.manual_seed(0)
    model = supernet.extract(arch)
    finetune(model, _loader(splits, splits.train, train=True), 6, lr=0.1, progress=False)
    recalibrate_bn(model, _loader(splits, splits.train), n_images=1000)
    return model.eval()


@pytest.fixture(scope="module")
def info(space, arch, splits):
    return ExportInfo(space, arch, tuple(splits.info["mean"]), tuple(splits.info["std"]), tuple(splits.class_names))


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory, trained):
    return export_onnx(trained, tmp_path_factory.mktemp("onnx") / "model.onnx", RES)


def _top1(logits: np.ndarray, labels: torch.Tensor) -> float:
    return float((logits.argmax(1) == labels.numpy()).mean())


# ------------------------------------------------------------------ PyTorch files
def test_exported_model_loads_without_supernet_and_matches(tmp_path, trained, info, splits):
    save_torch(trained, info, tmp_path)
    loaded = load_exported(tmp_path)
    x = _images(splits, splits.val, 32)
    assert np.array_equal(torch_logits(loaded, x), torch_logits(trained, x))
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    back = read_export_info(tmp_path)
    assert back.arch == info.arch and back.space.fingerprint() == info.space.fingerprint() and back.mean == info.mean
    assert Arch.load(tmp_path / "arch.json", info.space) == info.arch  # arch.json doubles as an arch file


def test_load_exported_refuses_bad_directories(tmp_path, trained, info, space, arch):
    with pytest.raises(ExportError, match="does not exist"):
        load_exported(tmp_path / "nowhere")
    save_torch(trained, info, tmp_path)
    data = json.loads((tmp_path / "arch.json").read_text())
    edited = {**data, "space": {**data["space"], "head_width": data["space"]["head_width"] * 2}}
    (tmp_path / "arch.json").write_text(json.dumps(edited))
    with pytest.raises(ExportError, match="fingerprint"):
        load_exported(tmp_path)
    other = space.max_arch() if arch != space.max_arch() else space.min_arch()
    (tmp_path / "arch.json").write_text(json.dumps({**data, "arch": other.to_dict()}))
    with pytest.raises(ExportError, match="tensor .* re-run"):
        load_exported(tmp_path)
    (tmp_path / "arch.json").write_text(json.dumps(data))
    (tmp_path / "model.pt").write_bytes(b"not a zip file")
    with pytest.raises(ExportError, match="corrupt"):
        load_exported(tmp_path)


def test_save_torch_refuses_model_of_another_arch(tmp_path, supernet, info, space, arch):
    other = space.max_arch() if arch != space.max_arch() else space.min_arch()
    with pytest.raises(ExportError, match="tensor"):
        save_torch(supernet.extract(other), info, tmp_path)


# ------------------------------------------------------------------ ONNX
def test_onnx_file_is_checked_single_file_opset17_dynamic_batch(onnx_file):
    model = onnx.load(str(onnx_file))
    onnx.checker.check_model(model, full_check=True)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    assert not list(onnx_file.parent.glob("*.data")) and all(t.data_location != onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    ops = {n.op_type for n in model.graph.node}
    assert "ReduceMean" not in ops and "GlobalAveragePool" in ops  # squeeze-excite pools, int8-friendly


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_onnx_parity_on_validation_images(onnx_file, trained, splits, batch_size):
    x = _images(splits, splits.val, 100)
    parity = check_parity(onnx_file, trained, x, batch_size=batch_size)
    assert parity.n_images == 100 and parity.top1_agreement == 1.0
    assert parity.max_abs_diff <= 1e-4 * parity.max_abs_ref


def test_parity_failure_is_an_error(onnx_file, trained, splits):
    import copy

    broken = copy.deepcopy(trained)
    with torch.no_grad():
        broken.head.classifier.bias += torch.linspace(-1, 1, broken.head.classifier.bias.numel())
    with pytest.raises(ParityError, match="differs from PyTorch"):
        check_parity(onnx_file, broken, _images(splits, splits.val, 50))


def test_parity_leaves_out_ties_that_round_off_may_swap():
    from export.onnx_export import compare_logits

    reference = np.array([[5.0, 1.0, 0.0], [2.0, 2.0 + 1e-6, 0.0], [0.0, 3.0, 1.0]], dtype=np.float32)
    swapped_tie = reference.copy()
    swapped_tie[1] = [2.0 + 1e-6, 2.0, 0.0]  # a 1e-6 change, far inside 1e-4 x max |reference|
    parity = compare_logits(reference, swapped_tie)
    assert parity.ties == 1 and parity.top1_agreement == 1.0 and parity.passes()
    wrong = reference.copy()
    wrong[2] = [3.0, 0.0, 1.0]  # a decisive image changes class: a real failure
    parity = compare_logits(reference, wrong)
    assert parity.top1_agreement == 0.5 and not parity.passes()


def test_parity_needs_images(onnx_file, trained):
    with pytest.raises(ExportError, match="no images"):
        check_parity(onnx_file, trained, torch.empty(0, 3, RES, RES))


def test_export_onnx_refuses_old_opset(tmp_path, trained):
    with pytest.raises(ExportError, match="opset 13"):
        export_onnx(trained, tmp_path / "m.onnx", RES, opset=13)


# ------------------------------------------------------------------ ONNX Runtime INT8
def _calibration(splits, n=256):
    """Held-out training images in a seeded random order: the splits are stored class by class."""
    return torch.cat([x for x, _, _ in _loader(splits, shuffled_subset(splits.train, n, 0))])


def test_int8_keeps_accuracy_within_a_point_or_two(tmp_path, onnx_file, splits):
    calib = _calibration(splits)
    int8_path = quantize_int8(onnx_file, tmp_path / "model.int8.onnx", calib)
    ops = {n.op_type for n in onnx.load(str(int8_path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert int8_path.stat().st_size < onnx_file.stat().st_size  # int8 weights (per-channel scales add a little)
    x = _images(splits, splits.test, len(splits.test))
    labels = splits.test.labels
    fp32 = _top1(ort_logits(ort_session(onnx_file, 1), x), labels)
    int8 = _top1(ort_logits(ort_session(int8_path, 1), x), labels)
    assert fp32 > 0.8  # the briefly trained net is a meaningful reference
    assert fp32 - int8 <= 0.02


def test_int8_bias_correction_moves_only_biases_toward_the_float_outputs(tmp_path, onnx_file, splits):
    """Bias correction edits int32 biases, nothing else, and brings held-out logits' means closer to FP32's."""
    calib = _calibration(splits)
    plain = onnx.load(str(quantize_int8(onnx_file, tmp_path / "plain.onnx", calib, bias_correction=False)))
    corrected = onnx.load(str(quantize_int8(onnx_file, tmp_path / "corrected.onnx", calib)))
    assert [n.op_type for n in plain.graph.node] == [n.op_type for n in corrected.graph.node]
    before = {i.name: onnx.numpy_helper.to_array(i) for i in plain.graph.initializer}
    changed = [i for i in corrected.graph.initializer if not np.array_equal(onnx.numpy_helper.to_array(i), before[i.name])]
    assert changed and all(i.data_type == onnx.TensorProto.INT32 for i in changed)
    x = _images(splits, splits.test, len(splits.test))
    reference = ort_logits(ort_session(onnx_file, 1), x).mean(0)
    error = lambda path: np.abs(ort_logits(ort_session(path, 1), x).mean(0) - reference).mean()  # noqa: E731
    assert error(tmp_path / "corrected.onnx") < error(tmp_path / "plain.onnx")


def test_int8_for_tensorrt_is_symmetric_int8_with_float_biases(tmp_path, onnx_file, splits):
    """TensorRT's DequantizeLinear takes INT8 with zero point 0, not INT32: biases stay float, and bias correction moves them."""
    calib = _calibration(splits)
    plain = onnx.load(str(quantize_int8(onnx_file, tmp_path / "plain.onnx", calib, for_tensorrt=True, bias_correction=False)))
    corrected = onnx.load(str(quantize_int8(onnx_file, tmp_path / "trt.onnx", calib, for_tensorrt=True)))
    init = {i.name: i for i in corrected.graph.initializer}
    dequantized = [n for n in corrected.graph.node if n.op_type == "DequantizeLinear"]
    assert dequantized
    for node in dequantized:
        assert node.input[0] not in init or init[node.input[0]].data_type == onnx.TensorProto.INT8
        assert len(node.input) < 3 or not onnx.numpy_helper.to_array(init[node.input[2]]).any()
    before = {i.name: onnx.numpy_helper.to_array(i) for i in plain.graph.initializer}
    biases = [init[n.input[2]] for n in corrected.graph.node if n.op_type in ("Conv", "Gemm") and len(n.input) > 2]
    assert biases and all(b.data_type == onnx.TensorProto.FLOAT for b in biases)
    assert any(not np.array_equal(onnx.numpy_helper.to_array(b), before[b.name]) for b in biases)


def test_int8_takes_an_image_count_no_batch_size_divides(tmp_path, onnx_file, splits):
    """A small dataset gives, e.g., 37 calibration images: the last batch must not break the calibrator."""
    int8_path = quantize_int8(onnx_file, tmp_path / "q.onnx", _images(splits, splits.train, 37), batch_size=32)
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in onnx.load(str(int8_path)).graph.node}


def test_int8_needs_calibration_images_and_an_onnx_file(tmp_path, onnx_file):
    with pytest.raises(ExportError, match="no images"):
        quantize_int8(onnx_file, tmp_path / "q.onnx", torch.empty(0, 3, RES, RES))
    with pytest.raises(ExportError, match="does not exist"):
        quantize_int8(tmp_path / "missing.onnx", tmp_path / "q.onnx", torch.zeros(1, 3, RES, RES))


# ------------------------------------------------------------------ TensorRT
def test_trtexec_command_matches_settings(tmp_path):
    fp16 = trtexec_command("out/model.onnx", "out/model.fp16.engine", EngineSettings("fp16", 224, 1, 8, 64))
    assert fp16.startswith("trtexec --onnx=out/model.onnx --saveEngine=out/model.fp16.engine")
    assert "--minShapes=input:1x3x224x224" in fp16 and "--optShapes=input:8x3x224x224" in fp16 and "--maxShapes=input:64x3x224x224" in fp16
    assert "--fp16" in fp16 and "--int8" not in fp16
    fp32 = trtexec_command("m.onnx", "m.engine", EngineSettings("fp32", 32))
    assert "--fp16" not in fp32 and "--int8" not in fp32
    assert "--int8" in trtexec_command("q.onnx", "q.engine", EngineSettings("int8", 32))


def test_engine_settings_reject_bad_values():
    with pytest.raises(ExportError, match="precision 'bf8'"):
        EngineSettings("bf8", 224)
    with pytest.raises(ExportError, match="min <= opt <= max"):
        EngineSettings("fp16", 224, 8, 4, 64)


@pytest.mark.skipif(tensorrt_available(), reason="TensorRT is installed: the missing-library message cannot be shown")
def test_without_tensorrt_one_line_with_install_hint_and_trtexec(tmp_path):
    with pytest.raises(TensorRTUnavailable) as err:
        require_tensorrt(tmp_path / "model.onnx", tmp_path / "model.fp16.engine", EngineSettings("fp16", 24))
    message = str(err.value)
    assert "\n" not in message and "pip install tensorrt" in message
    assert f"trtexec --onnx={tmp_path / 'model.onnx'}" in message and "--fp16" in message


def _cuda_tensorrt() -> bool:
    return tensorrt_available() and torch.cuda.is_available()


@pytest.mark.skipif(not _cuda_tensorrt(), reason="needs the tensorrt package and a CUDA GPU (pip install tensorrt on an NVIDIA machine)")
def test_tensorrt_fp32_engine_matches_onnx_runtime(tmp_path, onnx_file, splits):
    from export.tensorrt_export import TensorRTRunner, build_engine

    record = build_engine(onnx_file, tmp_path / "model.fp32.engine", EngineSettings("fp32", RES, 1, 1, 64))
    assert json.loads((tmp_path / "model.fp32.json").read_text())["tensorrt_version"] == record["tensorrt_version"]
    x = _images(splits, splits.val, 64)
    runner = TensorRTRunner(tmp_path / "model.fp32.engine")
    parity = runner.parity(ort_logits(ort_session(onnx_file), x), x)
    assert parity.rel_diff < 1e-3 and parity.top1_agreement == 1.0
    assert runner.latency(1, RES, repeats=10).median_ms > 0


# ------------------------------------------------------------------ fine-tuning, timing, parsing
def test_distillation_pulls_student_closer_to_teacher_than_labels_alone(splits, supernet, space, trained):
    import torch.nn.functional as F

    x = _images(splits, splits.val, 144)
    with torch.no_grad():
        teacher_p = F.softmax(trained(x), 1)

    def kl_to_teacher(teacher):
        torch.manual_seed(0)
        student = supernet.extract(space.min_arch())
        result = finetune(student, _loader(splits, splits.train, train=True), 2, teacher=teacher, lr=0.05, progress=False)
        with torch.no_grad():
            log_q = F.log_softmax(student(x), 1)
        return result, float((teacher_p * (teacher_p.clamp_min(1e-12).log() - log_q)).sum(1).mean())

    distilled, kl_distilled = kl_to_teacher(trained)
    plain, kl_plain = kl_to_teacher(None)
    assert distilled.distilled and not plain.distilled and np.isfinite(distilled.final_loss)
    assert distilled.steps == 2 * len(_loader(splits, splits.train, train=True))
    assert kl_distilled < kl_plain


def test_finetune_rejects_zero_epochs(trained, splits):
    with pytest.raises(ValueError, match="at least 1 epoch"):
        finetune(trained, _loader(splits, splits.train, train=True), 0)


def test_time_interleaved_reports_each_runner():
    stats = time_interleaved({"a": lambda: sum(range(100)), "b": lambda: sum(range(1000))}, repeats=5, warmup=1)
    assert set(stats) == {"a", "b"} and all(0 < s.median_ms <= s.p90_ms and s.repeats == 5 for s in stats.values())
    with pytest.raises(ValueError, match="repeats"):
        time_interleaved({"a": lambda: None}, repeats=0)


def test_parse_formats_adds_what_a_format_is_built_from():
    assert parse_formats("ort-int8") == ("torch", "onnx", "ort-int8")
    assert parse_formats("tensorrt,torch") == ("torch", "onnx", "tensorrt")
    with pytest.raises(ExportError, match="unknown export format tflite"):
        parse_formats("onnx,tflite")


# ------------------------------------------------------------------ command line
@pytest.fixture(scope="module")
def work(tmp_path_factory, supernet, trained, arch, space):
    """A work directory with a supernet checkpoint and a specialize-style chosen.json."""
    root = tmp_path_factory.mktemp("work")
    supernet.save(root / "supernet", metadata={"data": {"source": "digits"}})
    chosen = root / "specialized" / "cpu-1ms" / "chosen.json"
    chosen.parent.mkdir(parents=True)
    chosen.write_text(json.dumps({"fingerprint": space.fingerprint(), "arch": arch.to_dict(), "metrics": {"latency_ms": 1.0}}))
    return root


def test_cli_export_writes_every_format_and_a_report(work, capsys, splits):
    rc = main(["export", "--work", str(work), "--arch", str(work / "specialized/cpu-1ms/chosen.json"), "--threads", "1",
               "--bn-images", "300", "--max-test", "120", "--latency-repeats", "3", "--parity-images", "64", "-q"])
    out = capsys.readouterr().out
    assert rc == 0
    target = work / "export" / "cpu-1ms"
    for name in ("model.pt", "arch.json", "model.onnx", "model.int8.onnx", "export_report.json"):
        assert (target / name).is_file(), name
    report = json.loads((target / "export_report.json").read_text())
    rows = {r["format"]: r for r in report["results"]}
    assert set(rows) == {"torch", "onnx", "ort-int8"} and report["test_images"] == 120 and report["threads"] == 1
    assert rows["onnx"]["parity"]["rel_diff"] <= 1e-4 and rows["onnx"]["parity"]["top1_agreement"] == 1.0
    assert all(r["latency_batch1"]["median_ms"] > 0 and r["size_bytes"] > 0 for r in rows.values())
    assert rows["torch"]["top1"] == rows["onnx"]["top1"]
    for fmt in ("torch", "onnx", "ort-int8"):
        assert fmt in out
    assert "ONNX Runtime INT8 vs FP32" in out
    int8_line = next(line for line in out.splitlines() if line.startswith("ONNX Runtime INT8 vs FP32"))
    speedup = report["summary"]["ort_int8_speedup_vs_fp32"]  # a slower INT8 model reads "slower", never "0.9x faster"
    assert f"{max(speedup, 1 / speedup):.2f}x {'faster' if speedup >= 1 else 'slower'}," in int8_line
    drop = report["summary"]["int8_top1_drop_points"]  # "top-1 0.84 points lower", never "drop -5.56"
    assert ("top-1 unchanged" if abs(drop) < 0.005 else f"top-1 {abs(drop):.2f} points {'lower' if drop > 0 else 'higher'}") in int8_line
    # the exported files work on their own: PyTorch loader and ONNX Runtime agree
    x = _images(splits, splits.val, 16)
    assert np.allclose(torch_logits(load_exported(target), x), ort_logits(ort_session(target / "model.onnx"), x), atol=1e-4)


def test_cli_tensorrt_without_library_fails_fast_with_trtexec(work, tmp_path, capsys):
    if tensorrt_available():
        pytest.skip("TensorRT is installed: the missing-library message cannot be shown")
    rc = main(["export", "--work", str(work), "--arch", "max", "--formats", "tensorrt", "--precision", "fp16", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and err[0].startswith("error: TensorRT is not installed")
    assert "trtexec --onnx=" in err[0] and "--fp16" in err[0]
    assert not (tmp_path / "o" / "model.pt").exists()  # refused before any work


@pytest.mark.parametrize(
    "argv, code, message",
    [
        (["--arch", "max", "--formats", "onnx,tflite"], 1, "unknown export format tflite"),
        (["--arch", "max", "--supernet", "/nonexistent/supernet"], 1, "does not exist"),
        (["--arch", "missing.json"], 1, "does not exist"),
        (["--arch", "max", "--data", "digits", "--bn-images", "0"], 2, "--bn-images must be at least 1"),
        (["--arch", "max", "--precision", "fp16"], 2, "add tensorrt to --formats"),
        (["--arch", "max", "--precision", "fp8", "--formats", "tensorrt"], 1, "unknown TensorRT precision fp8"),
        ([], 2, "--arch is required"),
    ],
)
def test_cli_bad_inputs(work, capsys, argv, code, message):
    try:
        rc = main(["export", "--work", str(work), *argv])
    except SystemExit as exc:  # argparse usage errors
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == code and message in err


def test_cli_refuses_arch_of_another_space(work, tmp_path, capsys, arch):
    path = tmp_path / "chosen.json"
    path.write_text(json.dumps({"fingerprint": "0123456789abcdef", "arch": arch.to_dict()}))
    assert main(["export", "--work", str(work), "--arch", str(path)]) == 1
    assert "was made for space 0123456789abcdef" in capsys.readouterr().err


def test_cli_refuses_dataset_with_other_classes(tmp_path, capsys):
    torch.manual_seed(0)
    Supernet(SearchSpace.preset("tiny").with_classes(3)).save(tmp_path / "supernet")
    assert main(["export", "--work", str(tmp_path), "--arch", "min", "--data", "digits"]) == 1
    assert "has 10 classes but the supernet has 3" in capsys.readouterr().err
