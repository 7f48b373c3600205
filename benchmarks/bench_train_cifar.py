"""The training issue's CIFAR-10 benchmark under its own name: `bench_train.py cifar` with the same options.

    python benchmarks/bench_train_cifar.py --data cifar10:../shared/data/cifar10-jpeg.tar.gz --static-minutes match

progressive vs uniform (and sandwich) on the `cifar-cpu` schedule, inherited vs from-scratch accuracy of the
min, mid and max subnets, Kendall tau, and a time-matched static MobileNetV3-small; `--help` lists the options.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train import main  # noqa: E402

if __name__ == "__main__":
    main(["cifar", *sys.argv[1:]])
