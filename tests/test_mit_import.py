"""Importing published once-for-all checkpoints reproduces the reference's outputs."""
from __future__ import annotations

import pytest
import torch

from ofa import Arch, CheckpointError, SearchSpace, Supernet, import_mit
from ofa.mit import mit_name

from conftest import relative_error, shared_path


@pytest.fixture(scope="module")
def mit_fixture():
    root = shared_path("fixtures", "mit-ofa-mbv3-w1.0")
    net = import_mit(root / "init.pt").eval()
    cases = torch.load(root / "cases.pt", weights_only=True)
    return net, cases


def test_imported_supernet_reproduces_reference_logits(mit_fixture):
    net, cases = mit_fixture
    assert net.space.name == "ofa-mbv3-w1.0" and net.n_classes == 1000
    assert len(cases) == 8
    for case in cases:
        arch = Arch.from_mit(case["arch"], case["resolution"], net.space)
        net.set_active(arch)
        with torch.no_grad():
            elastic = net(case["input"])
            static_net = net.extract(arch).eval()
            static = static_net(case["input"])
        assert relative_error(elastic, case["logits_elastic"]) < 1e-4, arch
        assert relative_error(static, case["logits_static"]) < 1e-4, arch
        assert sum(p.numel() for p in static_net.parameters()) == case["params_static"]
        assert net.space.count(arch).params == case["params_static"]


def _mit_state(space: SearchSpace, n_classes: int = 1000) -> dict[str, torch.Tensor]:
    net = Supernet(space, n_classes)
    return {mit_name(k, space.max_depth): v for k, v in net.state_dict().items()}


def test_w12_is_detected_from_shapes(tmp_path):
    state = _mit_state(SearchSpace.preset("ofa-mbv3-w1.2"))
    torch.save({"state_dict": state}, tmp_path / "w12.pth")
    net = import_mit(tmp_path / "w12.pth")
    assert net.space.name == "ofa-mbv3-w1.2"
    bare = {f"module.{k}": v for k, v in state.items()}  # DataParallel prefix, bare state dict
    torch.save(bare, tmp_path / "bare.pth")
    assert import_mit(tmp_path / "bare.pth").space.name == "ofa-mbv3-w1.2"


def test_other_layouts_fail_naming_the_first_bad_tensor(tmp_path):
    state = _mit_state(SearchSpace.preset("ofa-mbv3-w1.0"), n_classes=10)
    missing = dict(state)
    del missing["blocks.3.conv.depth_conv.conv.7to5_matrix"]
    torch.save({"state_dict": missing}, tmp_path / "m.pth")
    with pytest.raises(CheckpointError, match=r"missing tensor blocks\.3\.conv\.depth_conv\.conv\.7to5_matrix \(25, 25\)"):
        import_mit(tmp_path / "m.pth")
    extra = {**state, "blocks.21.conv.point_linear.conv.conv.weight": torch.zeros(3, 3, 1, 1)}
    torch.save({"state_dict": extra}, tmp_path / "e.pth")
    with pytest.raises(CheckpointError, match=r"unexpected tensor blocks\.21\.conv\.point_linear\.conv\.conv\.weight \(3, 3, 1, 1\)"):
        import_mit(tmp_path / "e.pth")
    shaped = {**state, "blocks.2.conv.point_linear.conv.conv.weight": torch.zeros(24, 100, 1, 1)}
    torch.save({"state_dict": shaped}, tmp_path / "s.pth")
    with pytest.raises(CheckpointError, match=r"blocks\.2\.conv\.point_linear\.conv\.conv\.weight has shape \(24, 100, 1, 1\)"):
        import_mit(tmp_path / "s.pth")
    torch.save({"state_dict": {"features.0.weight": torch.zeros(3)}}, tmp_path / "resnet.pth")
    with pytest.raises(CheckpointError, match="not an OFA MobileNetV3 checkpoint"):
        import_mit(tmp_path / "resnet.pth")


def test_corrupt_or_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        import_mit(tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(CheckpointError, match="not a readable PyTorch tensor checkpoint"):
        import_mit(tmp_path / "junk.pth")


def test_import_mit_command_writes_our_checkpoint(tmp_path, mit_fixture):
    from ofa.cli import main

    root = shared_path("fixtures", "mit-ofa-mbv3-w1.0")
    out = tmp_path / "supernet"
    assert main(["import-mit", str(root / "init.pt"), "--out", str(out), "-q"]) == 0
    net = Supernet.load(out).eval()
    ref, cases = mit_fixture
    case = cases[2]
    arch = Arch.from_mit(case["arch"], case["resolution"], net.space)
    net.set_active(arch)
    with torch.no_grad():
        assert relative_error(net(case["input"]), case["logits_elastic"]) < 1e-4
    assert main(["import-mit", str(tmp_path / "missing.pth"), "--out", str(out), "-q"]) == 1
