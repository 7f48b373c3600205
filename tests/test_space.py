"""SearchSpace presets, Arch validation, keys, serialisation, encoding."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ofa import Arch, ArchError, SearchSpace, SpaceError
from ofa.space import PRESETS


def test_published_mbv3_presets_have_the_published_shapes():
    w10 = SearchSpace.preset("ofa-mbv3-w1.0")
    assert [s.width for s in w10.stages] == [24, 40, 80, 112, 160]
    assert (w10.stem_width, w10.first_block.width, w10.final_width, w10.head_width) == (16, 16, 960, 1280)
    assert w10.resolutions == tuple(range(128, 225, 4)) and len(w10.resolutions) == 25
    assert (w10.kernel_sizes, w10.expand_ratios, w10.depths) == ((3, 5, 7), (3.0, 4.0, 6.0), (2, 3, 4))
    assert w10.n_slots == 20 and w10.max_depth == 4
    w12 = SearchSpace.preset("ofa-mbv3-w1.2")
    assert [w12.first_block.width] + [s.width for s in w12.stages] == [24, 32, 48, 96, 136, 192]
    assert (w12.final_width, w12.head_width) == (1152, 1536)
    assert [s.stride for s in w10.stages] == [2, 2, 2, 1, 2]
    assert [s.se for s in w10.stages] == [False, True, False, True, True]


def test_cifar_space_keeps_last_feature_map_at_least_2x2_and_a_few_million_params():
    space = SearchSpace.preset("cifar")
    for res in space.resolutions:
        size = -(-res // space.stem_stride)
        for stage in (space.first_block, *space.stages):
            size = -(-size // stage.stride)
        assert size >= 2, res
    params = space.count(space.max_arch()).params
    assert 1e6 < params < 10e6
    # cifar-cpu (about an hour of 2 cores) is sized for this cost: a heavier max subnet starves the teacher phase
    assert 15e6 < space.count(space.max_arch()).macs < 25e6
    assert space.count(space.min_arch()).macs < 5e6


def test_unknown_preset_names_the_choices():
    with pytest.raises(SpaceError, match="choose one of ofa-mbv3-w1.0"):
        SearchSpace.preset("mbv3")


def test_fingerprint_is_stable_and_sensitive_to_shapes_not_name(tmp_path):
    space = SearchSpace.preset("tiny")
    assert space.fingerprint() == SearchSpace.from_dict(space.to_dict()).fingerprint()
    renamed = SearchSpace.from_dict({**space.to_dict(), "name": "other"})
    assert renamed.fingerprint() == space.fingerprint()
    wider = SearchSpace.from_dict({**space.to_dict(), "head_width": 256})
    assert wider.fingerprint() != space.fingerprint()
    assert space.with_classes(7).fingerprint() != space.fingerprint()
    assert len({p.fingerprint() for p in PRESETS.values()}) == len(PRESETS)


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_space_from_file_round_trip(tmp_path, suffix):
    import yaml

    space = SearchSpace.preset("cifar")
    path = tmp_path / f"myspace{suffix}"
    data = space.to_dict()
    path.write_text(json.dumps(data) if suffix == ".json" else yaml.safe_dump(data))
    loaded = SearchSpace.resolve(path)
    assert loaded == space


def test_space_file_errors(tmp_path):
    with pytest.raises(SpaceError, match="does not exist"):
        SearchSpace.from_file(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SpaceError, match="not valid"):
        SearchSpace.from_file(bad)
    bad.write_text(json.dumps({"name": "x", "stem_width": 8}))
    with pytest.raises(SpaceError, match="invalid search space definition"):
        SearchSpace.from_file(bad)
    data = SearchSpace.preset("tiny").to_dict()
    data["kernel_sizes"] = [3, 4]
    bad.write_text(json.dumps(data))
    with pytest.raises(SpaceError, match="odd"):
        SearchSpace.from_file(bad)


def test_sample_is_deterministic_and_valid():
    space = SearchSpace.preset("ofa-mbv3-w1.0")
    a = space.sample_many(3, 50)
    b = space.sample_many(np.random.default_rng(3), 50)
    assert a == b
    for arch in a:
        assert space.validate(arch) is arch
        assert arch.resolution in space.resolutions
    assert space.sample(1) == space.sample(1)
    assert len({arch.key() for arch in space.sample_many(0, 200)}) == 200


def test_validate_gives_one_clear_message():
    space = SearchSpace.preset("ofa-mbv3-w1.0")
    arch = space.max_arch()
    with pytest.raises(ArchError, match=r"stage 3: depth 5 not in \{2, 3, 4\}"):
        Arch(arch.kernel, arch.expand, (4, 4, 5, 4, 4), 224).validate(space)
    with pytest.raises(ArchError, match=r"stage 3: depth 1 not in \{2, 3, 4\}"):
        space.validate(Arch(arch.kernel, arch.expand, (4, 4, 1, 4, 4), 224))
    kernel = list(arch.kernel)
    kernel[5] = 9
    with pytest.raises(ArchError, match=r"stage 2, block 2: kernel size 9 not in \{3, 5, 7\}"):
        space.validate(Arch(tuple(kernel), arch.expand, arch.depth, 224))
    with pytest.raises(ArchError, match=r"expand ratio 5 not in \{3, 4, 6\}"):
        space.validate(Arch(arch.kernel, (5.0,) * 20, arch.depth, 224))
    with pytest.raises(ArchError, match="resolution 100 not in"):
        space.validate(Arch(arch.kernel, arch.expand, arch.depth, 100))
    tiny = SearchSpace.preset("tiny")
    with pytest.raises(ArchError, match="4 stages"):
        tiny.validate(arch)


def test_inactive_slots_do_not_change_the_key_or_equality():
    space = SearchSpace.preset("ofa-mbv3-w1.0")
    base = space.min_arch()  # depth 2: slots 2, 3 of each stage inactive
    kernel = list(base.kernel)
    kernel[3] = 7  # inactive slot
    other = Arch(tuple(kernel), base.expand, base.depth, base.resolution)
    assert other == base and hash(other) == hash(base) and other.key() == base.key()
    kernel[1] = 7  # active slot
    assert Arch(tuple(kernel), base.expand, base.depth, base.resolution) != base


def test_json_round_trip_and_reference_format(tmp_path):
    space = SearchSpace.preset("ofa-mbv3-w1.0")
    arch = space.sample(7)
    assert Arch.from_json(arch.to_json(), space) == arch
    path = tmp_path / "arch.json"
    arch.save(path)
    assert Arch.load(path, space) == arch
    mit = {"ks": list(arch.kernel), "e": [int(e) for e in arch.expand], "d": list(arch.depth)}
    assert Arch.from_mit(mit, arch.resolution, space) == arch
    assert arch.to_mit() == mit
    assert Arch.from_json({"arch": arch.to_dict(), "accuracy": 0.7}, space) == arch
    with pytest.raises(ArchError, match="not valid JSON"):
        Arch.from_json("{", space)
    with pytest.raises(ArchError, match="missing or bad field"):
        Arch.from_json('{"kernel": [3]}', space)
    with pytest.raises(ArchError, match="does not exist"):
        Arch.load(tmp_path / "missing.json", space)
    SearchSpace.preset("tiny").sample(0).save(tmp_path / "tiny.json")  # another space's arch: the file and the fix
    with pytest.raises(ArchError, match=r"tiny.json: arch has 4 stage depths.*`ofa space sample --space ofa-mbv3-w1.0`"):
        Arch.load(tmp_path / "tiny.json", space)


def test_encode_decode_round_trip_canonicalizes_inactive_slots():
    space = SearchSpace.preset("tiny")
    archs = space.sample_many(0, 100)
    codes = space.encode(archs)
    assert codes.shape == (100, 2 * space.n_slots + space.n_stages + 1)
    decoded = space.decode(codes)
    assert decoded == archs
    assert np.array_equal(space.encode(decoded), codes)


def test_space_flag_takes_a_supernet_directory_with_its_class_count(tmp_path):
    from ofa import Supernet

    space = SearchSpace.preset("tiny").with_classes(3)
    Supernet(space).save(tmp_path / "supernet")
    assert SearchSpace.resolve(str(tmp_path / "supernet")).fingerprint() == space.fingerprint()
    with pytest.raises(SpaceError, match="directory without supernet.json"):
        SearchSpace.resolve(str(tmp_path))
    (tmp_path / "supernet" / "supernet.json").write_text("{")
    with pytest.raises(SpaceError, match="corrupt"):
        SearchSpace.resolve(str(tmp_path / "supernet"))
