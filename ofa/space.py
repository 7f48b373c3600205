"""Search space and architecture value types.

A `SearchSpace` describes a once-for-all MobileNetV3-style supernet: a fixed stem and first block,
then stages of elastic inverted-residual blocks whose kernel size, expand ratio and depth can vary,
then a fixed head.  An `Arch` picks one value per elastic choice plus the input resolution.
Both are immutable so they can be shared, hashed and used as dictionary keys.
"""
from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ofa.errors import OfaError

__all__ = ["StageSpec", "SearchSpace", "Arch", "ArchError", "SpaceError", "make_divisible", "PRESETS"]

ACTIVATIONS = ("relu", "hswish")


class SpaceError(OfaError, ValueError):
    """A search space definition (preset name, file, field) is invalid."""


class ArchError(OfaError, ValueError):
    """An architecture does not belong to the search space it is used with."""


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of `divisor`, never dropping more than 10%.

    Same rule as MobileNet/once-for-all, so channel counts match published checkpoints.
    """
    min_value = divisor if min_value is None else min_value
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def _fmt_num(x: float) -> str:
    return f"{x:g}"


@dataclass(frozen=True)
class StageSpec:
    """One stage of elastic blocks: output width, stride of its first block, activation, SE."""

    width: int
    stride: int
    act: str
    se: bool

    def __post_init__(self) -> None:
        if self.act not in ACTIVATIONS:
            raise SpaceError(f"stage activation {self.act!r} not in {ACTIVATIONS}")
        if self.width <= 0 or self.stride not in (1, 2):
            raise SpaceError(f"stage width must be > 0 and stride 1 or 2, got {self.width}, {self.stride}")


@dataclass(frozen=True)
class SearchSpace:
    """Everything that fixes the shapes of a supernet and the set of its subnets."""

    name: str
    stem_width: int
    stem_stride: int
    first_block: StageSpec  # fixed block: kernel 3, expand 1, depth 1
    stages: tuple[StageSpec, ...]
    kernel_sizes: tuple[int, ...]
    expand_ratios: tuple[float, ...]
    depths: tuple[int, ...]
    resolutions: tuple[int, ...]
    final_width: int  # 1x1 conv after the last stage
    head_width: int  # 1x1 conv after global pooling ("feature mix")
    n_classes: int = 1000
    in_channels: int = 3
    se_reduction: int = 4
    divisor: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(self.stages))
        for attr in ("kernel_sizes", "expand_ratios", "depths", "resolutions"):
            values = tuple(sorted(set(getattr(self, attr))))
            if not values:
                raise SpaceError(f"search space {self.name!r}: {attr} is empty")
            object.__setattr__(self, attr, values)
        if any(k % 2 == 0 or k < 1 for k in self.kernel_sizes):
            raise SpaceError(f"search space {self.name!r}: kernel sizes must be odd, got {self.kernel_sizes}")
        if any(d < 1 for d in self.depths):
            raise SpaceError(f"search space {self.name!r}: depths must be >= 1, got {self.depths}")
        if any(e <= 0 for e in self.expand_ratios):
            raise SpaceError(f"search space {self.name!r}: expand ratios must be > 0")
        if not self.stages:
            raise SpaceError(f"search space {self.name!r} has no stages")
        if self.n_classes < 1:
            raise SpaceError(f"search space {self.name!r}: n_classes must be >= 1")

    # ----------------------------------------------------------------- construction
    @staticmethod
    def preset(name: str) -> "SearchSpace":
        """One of the built-in spaces: see `PRESETS`."""
        if name not in PRESETS:
            raise SpaceError(f"unknown search space preset {name!r}: choose one of {', '.join(PRESETS)} or pass a .yaml/.json file")
        return PRESETS[name]

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "SearchSpace":
        try:
            d = dict(data)
            d.pop("fingerprint", None)
            d["first_block"] = StageSpec(**d["first_block"])
            d["stages"] = tuple(StageSpec(**s) for s in d["stages"])
            for attr in ("kernel_sizes", "depths", "resolutions"):
                d[attr] = tuple(int(v) for v in d[attr])
            d["expand_ratios"] = tuple(float(v) for v in d["expand_ratios"])
            return SearchSpace(**d)
        except SpaceError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise SpaceError(f"invalid search space definition: {exc!r}; see the fields of ofa.SearchSpace") from None

    @staticmethod
    def from_file(path: str | Path) -> "SearchSpace":
        """Read a user-defined space from YAML or JSON (the fields of `to_dict`)."""
        path = Path(path)
        if not path.is_file():
            raise SpaceError(f"search space file {path} does not exist: pass a preset ({', '.join(PRESETS)}) or a .yaml/.json file")
        text = path.read_text()
        try:
            if path.suffix.lower() in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text)
            else:
                data = json.loads(text)
        except Exception as exc:  # yaml and json raise many types
            raise SpaceError(f"search space file {path} is not valid {path.suffix[1:] or 'JSON'}: {exc}") from None
        if not isinstance(data, dict):
            raise SpaceError(f"search space file {path} must hold a mapping of fields")
        data.setdefault("name", path.stem)
        return SearchSpace.from_dict(data)

    @staticmethod
    def resolve(name_or_path: "str | Path | SearchSpace") -> "SearchSpace":
        """A preset name, a space file, a supernet directory (its space, class count included), or a
        space (returned as is): what a `--space` flag accepts."""
        if isinstance(name_or_path, SearchSpace):
            return name_or_path
        if str(name_or_path) in PRESETS:
            return PRESETS[str(name_or_path)]
        if Path(name_or_path).is_dir():
            meta = Path(name_or_path) / "supernet.json"
            if not meta.is_file():
                raise SpaceError(f"{name_or_path} is a directory without supernet.json: pass a preset, a space file or a supernet directory")
            try:
                return SearchSpace.from_dict(json.loads(meta.read_text())["space"])
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise SpaceError(f"{meta} is corrupt ({exc!r}); re-save or re-import the checkpoint") from None
        if Path(name_or_path).suffix.lower() in (".yaml", ".yml", ".json"):
            return SearchSpace.from_file(name_or_path)
        return SearchSpace.preset(str(name_or_path))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["kernel_sizes"] = list(self.kernel_sizes)
        d["expand_ratios"] = [float(e) for e in self.expand_ratios]
        d["depths"] = list(self.depths)
        d["resolutions"] = list(self.resolutions)
        d["stages"] = [asdict(s) for s in self.stages]
        return d

    def fingerprint(self) -> str:
        """Stable hash of everything that changes weights or shapes (not the name)."""
        d = self.to_dict()
        d.pop("name")
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    # ----------------------------------------------------------------- derived sizes
    @property
    def n_stages(self) -> int:
        return len(self.stages)

    @property
    def max_depth(self) -> int:
        """Block slots per stage."""
        return max(self.depths)

    @property
    def n_slots(self) -> int:
        return self.n_stages * self.max_depth

    def mid_channels(self, in_channels: int, expand: float) -> int:
        """Hidden width of an inverted-residual block (once-for-all's rounding rule)."""
        return make_divisible(round(in_channels * expand), self.divisor)

    def se_channels(self, channels: int) -> int:
        return make_divisible(channels // self.se_reduction, self.divisor)

    def slot_in_channels(self, stage: int, slot: int) -> int:
        if slot > 0:
            return self.stages[stage].width
        return self.stages[stage - 1].width if stage > 0 else self.first_block.width

    # ----------------------------------------------------------------- archs
    def max_arch(self) -> "Arch":
        return self._uniform_arch(max(self.kernel_sizes), max(self.expand_ratios), max(self.depths), max(self.resolutions))

    def min_arch(self) -> "Arch":
        return self._uniform_arch(min(self.kernel_sizes), min(self.expand_ratios), min(self.depths), min(self.resolutions))

    def _uniform_arch(self, k: int, e: float, d: int, r: int) -> "Arch":
        return Arch((k,) * self.n_slots, (e,) * self.n_slots, (d,) * self.n_stages, r)

    def sample(self, rng: "np.random.Generator | int | None" = None) -> "Arch":
        """A uniformly random subnet (each choice independent), as once-for-all samples."""
        return self.sample_many(rng, 1)[0]

    def sample_many(self, rng: "np.random.Generator | int | None", n: int) -> list["Arch"]:
        rng = np.random.default_rng(rng)
        ks = rng.choice(np.array(self.kernel_sizes), size=(n, self.n_slots))
        es = rng.choice(np.array(self.expand_ratios, dtype=float), size=(n, self.n_slots))
        ds = rng.choice(np.array(self.depths), size=(n, self.n_stages))
        rs = rng.choice(np.array(self.resolutions), size=n)
        return [
            Arch(tuple(int(v) for v in ks[i]), tuple(float(v) for v in es[i]), tuple(int(v) for v in ds[i]), int(rs[i]))
            for i in range(n)
        ]

    def validate(self, arch: "Arch") -> "Arch":
        """Return `arch` if it belongs to this space, else raise one clear `ArchError`."""
        if len(arch.depth) != self.n_stages:
            raise ArchError(f"arch has {len(arch.depth)} stage depths, space {self.name!r} has {self.n_stages} stages")
        if len(arch.kernel) != self.n_slots or len(arch.expand) != self.n_slots:
            raise ArchError(
                f"arch has {len(arch.kernel)} kernel and {len(arch.expand)} expand values, "
                f"space {self.name!r} has {self.n_slots} block slots ({self.n_stages} stages x {self.max_depth})"
            )
        choices = lambda vals: "{" + ", ".join(_fmt_num(v) for v in vals) + "}"  # noqa: E731
        for s, d in enumerate(arch.depth):
            if d not in self.depths:
                raise ArchError(f"stage {s + 1}: depth {d} not in {choices(self.depths)}")
        for i in arch.active_slots(self.max_depth):
            where = f"stage {i // self.max_depth + 1}, block {i % self.max_depth + 1}"
            if arch.kernel[i] not in self.kernel_sizes:
                raise ArchError(f"{where}: kernel size {arch.kernel[i]} not in {choices(self.kernel_sizes)}")
            if not any(abs(arch.expand[i] - e) < 1e-9 for e in self.expand_ratios):
                raise ArchError(f"{where}: expand ratio {_fmt_num(arch.expand[i])} not in {choices(self.expand_ratios)}")
        if arch.resolution not in self.resolutions:
            raise ArchError(
                f"resolution {arch.resolution} not in the space's resolutions "
                f"({self.resolutions[0]}..{self.resolutions[-1]}, {len(self.resolutions)} values)"
            )
        return arch

    # ----------------------------------------------------------------- encoding
    def encode(self, archs: Sequence["Arch"]) -> np.ndarray:
        """Integer choice indices [N, 2*slots + stages + 1]: kernel idx, expand idx per slot, depth idx, res idx.

        Inactive slots are set to index 0, so equal subnets get equal codes.  Vectorized (numpy
        lookups), since the search, the predictor and the latency tables encode many archs at once.
        """
        n, s = len(archs), self.n_slots
        out = np.zeros((n, 2 * s + self.n_stages + 1), dtype=np.int64)
        if n == 0:
            return out
        if any(len(a.kernel) != s or len(a.expand) != s or len(a.depth) != self.n_stages for a in archs):
            for arch in archs:
                self.validate(arch)  # raises for the first arch of another shape
        chain = itertools.chain.from_iterable
        kernel = np.fromiter(chain(a.kernel for a in archs), np.int64, n * s).reshape(n, s)
        expand = np.fromiter(chain(a.expand for a in archs), np.float64, n * s).reshape(n, s)
        depth = np.fromiter(chain(a.depth for a in archs), np.int64, n * self.n_stages).reshape(n, self.n_stages)
        resolution = np.fromiter((a.resolution for a in archs), np.int64, n)
        columns = []
        for values, choices in (
            (kernel, self.kernel_sizes),
            (expand, self.expand_ratios),
            (depth, self.depths),
            (resolution, self.resolutions),
        ):
            table = np.asarray(choices, dtype=values.dtype)
            idx = np.clip(np.searchsorted(table, values), 0, len(table) - 1)
            columns.append((idx, np.isclose(table[idx], values)))
        (k_idx, k_ok), (e_idx, e_ok), (d_idx, d_ok), (r_idx, r_ok) = columns
        active = np.arange(s)[None, :] % self.max_depth < depth[:, np.arange(s) // self.max_depth]
        bad = ~d_ok.all(1) | ~r_ok | ~(k_ok | ~active).all(1) | ~(e_ok | ~active).all(1)
        if bad.any():
            self.validate(archs[int(np.argmax(bad))])  # raises the precise ArchError
        out[:, :s] = np.where(active, k_idx, 0)
        out[:, s : 2 * s] = np.where(active, e_idx, 0)
        out[:, 2 * s : 2 * s + self.n_stages] = d_idx
        out[:, -1] = r_idx
        return out

    def decode(self, codes: np.ndarray) -> list["Arch"]:
        """Inverse of `encode` (inactive slots come back as the first choice)."""
        codes = np.asarray(codes, dtype=np.int64).reshape(-1, 2 * self.n_slots + self.n_stages + 1)
        s = self.n_slots
        ks, es = np.array(self.kernel_sizes), np.array(self.expand_ratios, dtype=float)
        ds, rs = np.array(self.depths), np.array(self.resolutions)
        archs = []
        for row in codes:
            archs.append(
                Arch(
                    tuple(int(v) for v in ks[row[:s]]),
                    tuple(float(v) for v in es[row[s : 2 * s]]),
                    tuple(int(v) for v in ds[row[2 * s : 2 * s + self.n_stages]]),
                    int(rs[row[-1]]),
                ).canonical(self.max_depth, self.kernel_sizes[0], float(self.expand_ratios[0]))
            )
        return archs

    def count(self, arch: "Arch"):
        """Parameters and multiply-accumulates of the subnet (see `ofa.costs`)."""
        from ofa.costs import CostModel

        return CostModel.for_space(self).count(arch)

    def count_many(self, archs: Sequence["Arch"]):
        from ofa.costs import CostModel

        return CostModel.for_space(self).count_many(archs)

    def with_classes(self, n_classes: int) -> "SearchSpace":
        """The same space with another classifier size (a different fingerprint: weights differ)."""
        return self if n_classes == self.n_classes else replace(self, n_classes=int(n_classes))

    def describe(self) -> str:
        stages = ", ".join(f"{s.width}{'/s2' if s.stride == 2 else ''}{'+se' if s.se else ''}" for s in self.stages)
        return (
            f"{self.name}: stem {self.stem_width}, stages [{stages}], head {self.final_width}/{self.head_width}, "
            f"k{list(self.kernel_sizes)} e[{', '.join(_fmt_num(e) for e in self.expand_ratios)}] d{list(self.depths)}, "
            f"res {self.resolutions[0]}..{self.resolutions[-1]}"
        )


@dataclass(frozen=True, eq=False)
class Arch:
    """One subnet: kernel and expand per block slot (stage-major), depth per stage, input resolution.

    Values in slots past a stage's depth are kept (so MIT-format archs round-trip) but ignored by
    equality, hashing and `key()`.
    """

    kernel: tuple[int, ...]
    expand: tuple[float, ...]
    depth: tuple[int, ...]
    resolution: int
    _key: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kernel", tuple(int(k) for k in self.kernel))
        object.__setattr__(self, "expand", tuple(float(e) for e in self.expand))
        object.__setattr__(self, "depth", tuple(int(d) for d in self.depth))
        object.__setattr__(self, "resolution", int(self.resolution))
        if not self.depth or len(self.kernel) != len(self.expand) or len(self.kernel) % len(self.depth):
            raise ArchError(
                f"arch needs as many kernel as expand values, a multiple of the {len(self.depth)} stages; "
                f"got {len(self.kernel)} and {len(self.expand)}"
            )
        slots = len(self.kernel) // len(self.depth)
        stages = []  # depths outside 1..slots are reported by SearchSpace.validate
        for s, d in enumerate(self.depth):
            blocks = [f"{self.kernel[s * slots + b]}x{_fmt_num(self.expand[s * slots + b])}" for b in range(min(max(d, 0), slots))]
            stages.append(",".join(blocks))
        object.__setattr__(self, "_key", f"r{self.resolution}:" + "/".join(stages))

    @property
    def slots_per_stage(self) -> int:
        return len(self.kernel) // len(self.depth)

    def active_slots(self, max_depth: int | None = None) -> list[int]:
        slots = max_depth or self.slots_per_stage
        return [s * slots + b for s, d in enumerate(self.depth) for b in range(min(d, slots))]

    def key(self) -> str:
        """Canonical string: equal for equal subnets, whatever the inactive slots hold."""
        return self._key

    def __str__(self) -> str:
        return self._key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Arch) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def canonical(self, max_depth: int | None = None, fill_kernel: int | None = None, fill_expand: float | None = None) -> "Arch":
        """The same subnet with inactive slots set to fixed values (default: the first block's)."""
        slots = max_depth or self.slots_per_stage
        kernel, expand = list(self.kernel), list(self.expand)
        for s, d in enumerate(self.depth):
            for b in range(d, slots):
                kernel[s * slots + b] = fill_kernel if fill_kernel is not None else self.kernel[s * slots]
                expand[s * slots + b] = fill_expand if fill_expand is not None else self.expand[s * slots]
        return Arch(tuple(kernel), tuple(expand), self.depth, self.resolution)

    def validate(self, space: SearchSpace) -> "Arch":
        return space.validate(self)

    # ----------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        return {
            "resolution": self.resolution,
            "depth": list(self.depth),
            "kernel": list(self.kernel),
            "expand": [int(e) if float(e).is_integer() else e for e in self.expand],
            "key": self._key,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @staticmethod
    def from_dict(data: dict[str, Any], space: SearchSpace | None = None) -> "Arch":
        """Our JSON form, or the reference's {"ks", "e", "d"} with "resolution"/"r"; validated if `space`."""
        if isinstance(data.get("arch"), dict):  # e.g. chosen.json: metrics beside the arch
            data = data["arch"]
        try:
            if "ks" in data:
                res = data.get("resolution", data.get("r", data.get("image_size")))
                if isinstance(res, (list, tuple)):
                    res = res[0]
                arch = Arch(tuple(data["ks"]), tuple(data["e"]), tuple(data["d"]), int(res))
            else:
                arch = Arch(tuple(data["kernel"]), tuple(data["expand"]), tuple(data["depth"]), int(data["resolution"]))
        except ArchError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ArchError(
                f"not an arch: missing or bad field {exc}; expected keys resolution, depth, kernel, expand "
                "(or the reference's ks, e, d)"
            ) from None
        return space.validate(arch) if space is not None else arch

    @staticmethod
    def from_json(text: "str | dict[str, Any]", space: SearchSpace | None = None) -> "Arch":
        if isinstance(text, dict):
            return Arch.from_dict(text, space)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArchError(f"arch is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ArchError("arch JSON must be an object with resolution, depth, kernel, expand")
        return Arch.from_dict(data, space)

    @staticmethod
    def load(path: str | Path, space: SearchSpace | None = None) -> "Arch":
        path = Path(path)
        if not path.is_file():
            raise ArchError(f"arch file {path} does not exist")
        try:
            return Arch.from_json(path.read_text(), space)
        except ArchError as exc:  # name the file, and where valid archs come from
            name = space.name if space is not None and space.name in PRESETS else "SPACE"
            hint = f" (`ofa space sample --space {name}` prints archs of this space)" if space is not None else ""
            raise ArchError(f"{path}: {exc}{hint}") from None

    def save(self, path: str | Path) -> None:
        from ofa.io import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @staticmethod
    def from_mit(config: dict[str, Any], resolution: int, space: SearchSpace) -> "Arch":
        """The reference's {"ks": [...], "e": [...], "d": [...]} (stage-major slots) at `resolution`."""
        return Arch.from_dict({"ks": config["ks"], "e": config["e"], "d": config["d"], "resolution": resolution}, space)

    def to_mit(self) -> dict[str, list]:
        return {
            "ks": list(self.kernel),
            "e": [int(e) if float(e).is_integer() else e for e in self.expand],
            "d": list(self.depth),
        }


def _mbv3(name: str, width_mult: float) -> SearchSpace:
    w = lambda c: make_divisible(c * width_mult, 8)  # noqa: E731
    return SearchSpace(
        name=name,
        stem_width=w(16),
        stem_stride=2,
        first_block=StageSpec(w(16), 1, "relu", False),
        stages=(
            StageSpec(w(24), 2, "relu", False),
            StageSpec(w(40), 2, "relu", True),
            StageSpec(w(80), 2, "hswish", False),
            StageSpec(w(112), 1, "hswish", True),
            StageSpec(w(160), 2, "hswish", True),
        ),
        kernel_sizes=(3, 5, 7),
        expand_ratios=(3.0, 4.0, 6.0),
        depths=(2, 3, 4),
        resolutions=tuple(range(128, 225, 4)),
        final_width=w(960),
        head_width=w(1280),
    )


PRESETS: dict[str, SearchSpace] = {
    # the published ofa_mbv3_d234_e346_k357_w1.0 / _w1.2 supernets
    "ofa-mbv3-w1.0": _mbv3("ofa-mbv3-w1.0", 1.0),
    "ofa-mbv3-w1.2": _mbv3("ofa-mbv3-w1.2", 1.2),
    # The same family for 32x32 inputs, with MobileNetV3-small's spatial plan for CIFAR (stride-1
    # stem, stride-2 first block): 32 px runs at 16, 8, 4, 2, 2, 2 through the stages.  Why: with a
    # stride-1 first block (and a stride-2 last stage) the max subnet cost 48.8 M MACs and trained at
    # 190 images/s on 2 cores, so a 60-minute schedule saw the full network for only 5 epochs; this
    # plan costs 18.8 M MACs (min 3.9 M) and trains 2.7x faster with the same widths and choices.
    # Kernels {3, 5} and 28/32 px since 2026-12-07: at 32 px the last three stages run at 2x2 and the
    # one before at 4x4, where a 7x7 depthwise kernel is mostly padding.  At a 60-minute cifar-cpu budget
    # (seed 0 each) min / mid / max went 77.6 / 80.9 / 80.6% -> 79.8 / 80.3 / 81.6% (BENCHMARKS.md, "BatchNorm
    # re-calibration on class-sorted batches"); 4.3 M..16.9 M MACs.
    "cifar": SearchSpace(
        name="cifar",
        stem_width=16,
        stem_stride=1,
        first_block=StageSpec(16, 2, "relu", False),
        stages=(
            StageSpec(24, 2, "relu", False),
            StageSpec(40, 2, "relu", True),
            StageSpec(80, 2, "hswish", False),
            StageSpec(112, 1, "hswish", True),
            StageSpec(160, 1, "hswish", True),
        ),
        kernel_sizes=(3, 5),
        expand_ratios=(3.0, 4.0, 6.0),
        depths=(2, 3, 4),
        resolutions=(28, 32),
        final_width=640,
        head_width=1024,
        n_classes=10,
    ),
    # very small, for tests and the bundled digits demo
    "tiny": SearchSpace(
        name="tiny",
        stem_width=8,
        stem_stride=1,
        first_block=StageSpec(8, 1, "relu", False),
        stages=(
            StageSpec(12, 2, "relu", False),
            StageSpec(16, 2, "relu", True),
            StageSpec(24, 1, "hswish", True),
            StageSpec(32, 2, "hswish", True),
        ),
        kernel_sizes=(3, 5, 7),
        expand_ratios=(2.0, 3.0, 4.0),
        depths=(1, 2, 3),
        resolutions=(16, 20, 24),
        final_width=64,
        head_width=128,
        n_classes=10,
    ),
}


def iter_block_slots(space: SearchSpace) -> Iterable[tuple[int, int, int, int, int, StageSpec]]:
    """(slot index, stage, block, in channels, stride, stage spec) for every elastic slot."""
    for s, stage in enumerate(space.stages):
        for b in range(space.max_depth):
            yield s * space.max_depth + b, s, b, space.slot_in_channels(s, b), (stage.stride if b == 0 else 1), stage
