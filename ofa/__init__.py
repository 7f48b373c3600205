"""Once-for-all: train one supernet, specialize a subnet for each device without retraining."""
from ofa.bn import recalibrate_bn
from ofa.costs import Costs, CostModel
from ofa.layers import StaticNet, build_static
from ofa.mit import import_mit
from ofa.space import Arch, ArchError, SearchSpace, SpaceError
from ofa.supernet import CheckpointError, Supernet

__version__ = "0.1.0"

__all__ = [
    "Arch",
    "ArchError",
    "CheckpointError",
    "CostModel",
    "Costs",
    "SearchSpace",
    "SpaceError",
    "StaticNet",
    "Supernet",
    "build_static",
    "import_mit",
    "recalibrate_bn",
]
