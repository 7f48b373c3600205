"""Elastic supernet semantics: extraction, elastic kernel/expand/depth, channel sorting, costs, checkpoints."""
from __future__ import annotations

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from ofa import Arch, ArchError, CheckpointError, SearchSpace, Supernet, build_static, recalibrate_bn
from ofa.costs import CostModel

from conftest import relative_error


def _perturbed(space: SearchSpace, seed: int = 0) -> Supernet:
    """A supernet whose BatchNorm statistics and kernel transforms are not at their defaults."""
    torch.manual_seed(seed)
    net = Supernet(space)
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if name.endswith("running_var"):
                tensor.uniform_(0.5, 2.0)
            elif name.endswith("running_mean") or (name.endswith(".bias") and ".bn." in name):
                tensor.normal_(0, 0.1)
            elif ".bn.weight" in name:
                tensor.uniform_(0.5, 1.5)
            elif "kernel_transforms" in name:
                tensor.add_(torch.randn_like(tensor) * 0.1)
    return net.eval()


@pytest.mark.parametrize("preset", ["tiny", "cifar"])
def test_extracted_subnet_matches_active_supernet(preset):
    space = SearchSpace.preset(preset)
    net = _perturbed(space)
    archs = [space.max_arch(), space.min_arch(), *space.sample_many(1, 4)]
    for arch in archs:
        net.set_active(arch)
        x = torch.randn(2, 3, arch.resolution, arch.resolution)
        with torch.no_grad():
            ref = net(x)
            out = net.extract(arch).eval()(x)
        assert relative_error(out, ref) < 1e-5, arch


def test_extracted_net_is_plain_pytorch():
    space = SearchSpace.preset("tiny")
    net = Supernet(space)
    static = net.extract(space.sample(0))
    allowed = {"StaticNet", "Sequential", "ConvBnAct", "Conv2d", "BatchNorm2d", "ReLU", "Hardswish", "Identity",
               "InvertedResidual", "SqueezeExcite", "Head", "Dropout", "Linear"}
    assert {type(m).__name__ for m in static.modules()} <= allowed
    assert not any("kernel_transforms" in name for name, _ in static.named_parameters())


@pytest.mark.parametrize("preset", ["tiny", "cifar", "ofa-mbv3-w1.0"])
def test_costs_equal_extracted_params_and_flop_counter(preset):
    space = SearchSpace.preset(preset)
    net = Supernet(space)
    archs = [space.max_arch(), space.min_arch(), *space.sample_many(2, 2 if preset == "ofa-mbv3-w1.0" else 5)]
    for arch in archs:
        static = net.extract(arch).eval()
        costs = space.count(arch)
        assert costs.params == sum(p.numel() for p in static.parameters())
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            static(torch.randn(1, 3, arch.resolution, arch.resolution))
        assert costs.macs * 2 == counter.get_total_flops(), arch


def test_vectorized_count_matches_single_count():
    space = SearchSpace.preset("ofa-mbv3-w1.0")
    archs = space.sample_many(5, 300)
    params, macs = space.count_many(archs)
    for i in (0, 17, 299):
        assert (params[i], macs[i]) == (space.count(archs[i]).params, space.count(archs[i]).macs)
    p2, m2 = CostModel.for_space(space).count_codes(space.encode(archs))
    assert (p2 == params).all() and (m2 == macs).all()


def test_published_headline_costs():
    space = SearchSpace.preset("ofa-mbv3-w1.0")
    assert space.count(space.max_arch()).params == 7_664_760  # the reference's extracted max net (fixture)


def test_elastic_kernel_uses_transformation_matrices():
    space = SearchSpace.preset("tiny")
    net = _perturbed(space)
    block = net.blocks()[0]
    for k in (3, 5, 7):
        w = block.depthwise_weight(k, block.max_mid)
        assert w.shape == (block.max_mid, 1, k, k)
    w7 = block.depthwise.conv.weight
    assert torch.equal(block.depthwise_weight(7, block.max_mid), w7)
    centre5 = w7[:, :, 1:6, 1:6].reshape(block.max_mid, 25)
    expected5 = (centre5 @ block.kernel_transforms["7to5"].T).reshape(block.max_mid, 1, 5, 5)
    assert torch.allclose(block.depthwise_weight(5, block.max_mid), expected5)
    centre3 = expected5[:, :, 1:4, 1:4].reshape(block.max_mid, 9)
    expected3 = (centre3 @ block.kernel_transforms["5to3"].T).reshape(block.max_mid, 1, 3, 3)
    assert torch.allclose(block.depthwise_weight(3, block.max_mid), expected3, atol=1e-6)
    # the transforms get gradients when a smaller kernel is trained
    net.train()
    arch = Arch((3,) * space.n_slots, (4.0,) * space.n_slots, (3,) * space.n_stages, 16)
    net.set_active(arch)
    net(torch.randn(2, 3, 16, 16)).sum().backward()
    assert block.kernel_transforms["5to3"].grad.abs().sum() > 0
    assert block.kernel_transforms["7to5"].grad.abs().sum() > 0


def test_elastic_depth_runs_only_the_first_blocks():
    space = SearchSpace.preset("tiny")
    net = _perturbed(space)
    arch = space.min_arch()
    net.set_active(arch)
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        before = net(x)
        for stage in net.stages:  # blocks past depth 1 must not matter
            for block in list(stage)[1:]:
                block.project.conv.weight.mul_(5.0)
        assert torch.equal(net(x), before)
        net.stages[0][0].project.conv.weight.mul_(5.0)
        assert not torch.equal(net(x), before)


def test_channel_sorting_preserves_the_max_net_and_orders_importance():
    space = SearchSpace.preset("tiny")
    net = _perturbed(space)
    net.set_active(space.max_arch())
    x = torch.randn(2, 3, 24, 24)
    with torch.no_grad():
        before = net(x)
        net.sort_channels()
        after = net(x)
    assert relative_error(after, before) < 1e-5
    for block in net.blocks():
        importance = block.project.conv.weight.abs().sum(dim=(0, 2, 3))
        assert torch.all(importance[:-1] >= importance[1:])


def test_protected_sorting_keeps_smaller_ratio_channels_in_their_band():
    space = SearchSpace.preset("tiny")
    net = _perturbed(space)
    block = net.blocks()[0]
    widths = sorted(space.mid_channels(block.in_ch, e) for e in space.expand_ratios)  # small..large
    with torch.no_grad():
        block.project.conv.weight[:, widths[1]:].mul_(100.0)  # outer channels look most important
        marker = block.project.conv.weight[:, : widths[1]].clone()
        block.sort_channels(protected_groups=1)
    inner = block.project.conv.weight[:, : widths[1]]
    assert torch.equal(torch.sort(inner.abs().sum(dim=(0, 2, 3))).values, torch.sort(marker.abs().sum(dim=(0, 2, 3))).values)


def test_set_active_rejects_invalid_arch():
    space = SearchSpace.preset("tiny")
    net = Supernet(space)
    bad = Arch(space.max_arch().kernel, space.max_arch().expand, (3, 3, 3, 3), 99)
    with pytest.raises(ArchError, match="resolution 99"):
        net.set_active(bad)


def test_save_load_round_trip_and_refusals(tmp_path):
    space = SearchSpace.preset("tiny")
    net = _perturbed(space)
    net.metadata["data"] = {"mean": [0.5] * 3}
    out = net.save(tmp_path / "sn")
    assert sorted(p.name for p in out.iterdir()) == ["supernet.json", "weights.pt"]
    info = json.loads((out / "supernet.json").read_text())
    assert info["fingerprint"] == space.fingerprint() and info["space"]["name"] == "tiny"
    loaded = Supernet.load(out, space).eval()
    arch = space.sample(3)
    net.set_active(arch), loaded.set_active(arch)
    x = torch.randn(2, 3, arch.resolution, arch.resolution)
    with torch.no_grad():
        assert torch.equal(net(x), loaded(x))
    assert loaded.metadata["data"]["mean"] == [0.5] * 3
    with pytest.raises(CheckpointError, match="built for space 'tiny'"):
        Supernet.load(out, SearchSpace.preset("cifar"))
    with pytest.raises(CheckpointError, match="does not exist"):
        Supernet.load(tmp_path / "missing")
    (out / "weights.pt").write_bytes((out / "weights.pt").read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt"):
        Supernet.load(out)
    (out / "supernet.json").write_text("{")
    with pytest.raises(CheckpointError, match="corrupt"):
        Supernet.load(out)


def test_save_is_atomic_when_interrupted(tmp_path, monkeypatch):
    space = SearchSpace.preset("tiny")
    net = Supernet(space)
    out = net.save(tmp_path / "sn")
    good = (out / "weights.pt").read_bytes()

    def broken_save(obj, path):
        open(path, "wb").write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        net.save(out)
    assert (out / "weights.pt").read_bytes() == good
    assert sorted(p.name for p in out.iterdir()) == ["supernet.json", "weights.pt"]


def test_recalibrate_bn_estimates_exact_statistics():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1, bias=False), torch.nn.BatchNorm2d(4))
    # batches with different means, as class-sorted data gives: averaging per-batch variances would
    # miss the spread between the batch means
    batches = [torch.randn(8, 3, 5, 5) * (1 + i) + 3 * i for i in range(4)]
    with torch.no_grad():
        feats = torch.cat([model[0](b) for b in batches])
    n = recalibrate_bn(model, [(b, None) for b in batches], n_images=32)
    assert n == 32 and not model.training
    assert torch.allclose(model[1].running_mean, feats.mean(dim=(0, 2, 3)), atol=1e-5)
    assert torch.allclose(model[1].running_var, feats.var(dim=(0, 2, 3)), rtol=1e-5)  # unbiased, as BatchNorm keeps it
    n = recalibrate_bn(model, [(b, None) for b in batches], n_images=20)  # stops mid-batch
    assert n == 20 and torch.allclose(model[1].running_var, feats[:20].var(dim=(0, 2, 3)), rtol=1e-5)
    assert model[1].momentum == 0.1
    with pytest.raises(ValueError, match="no images"):
        recalibrate_bn(model, [])


def test_recalibration_changes_subnet_statistics_only_on_the_copy():
    space = SearchSpace.preset("tiny")
    net = Supernet(space)
    arch = space.min_arch()
    static = net.extract(arch)
    before = net.state_dict()["stages.0.0.expand.bn.running_mean"].clone()
    recalibrate_bn(static, [torch.randn(16, 3, 16, 16) * 3 + 1], n_images=16)
    assert torch.equal(net.state_dict()["stages.0.0.expand.bn.running_mean"], before)
    assert not torch.equal(static.blocks[1].expand.bn.running_mean, before[: static.blocks[1].expand.bn.num_features])


def test_build_static_matches_extracted_structure():
    space = SearchSpace.preset("cifar")
    arch = space.sample(4)
    fresh, extracted = build_static(space, arch), Supernet(space).extract(arch)
    assert [(k, v.shape) for k, v in fresh.state_dict().items()] == [(k, v.shape) for k, v in extracted.state_dict().items()]


def test_supernet_trains_with_elastic_settings():
    space = SearchSpace.preset("tiny")
    net = Supernet(space).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = torch.randn(8, 3, 20, 20), torch.randint(0, 10, (8,))
    for arch in space.sample_many(0, 3):
        net.set_active(arch)
        loss = torch.nn.functional.cross_entropy(net(torch.nn.functional.interpolate(x, size=arch.resolution)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert torch.isfinite(loss)
