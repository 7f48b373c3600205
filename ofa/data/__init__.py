"""Datasets for once-for-all: bundled digits, the CIFAR-10 JPEG tarball, or any ImageFolder.

    splits = load_dataset("digits")                      # or "cifar10:PATH.tar.gz", or a folder
    loader = BatchLoader(splits.train, 128, train=True, resolutions=[28, 32],
                         mean=splits.info["mean"], std=splits.info["std"],
                         hflip=splits.info["hflip"])
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for x, y, resolution in loader: ...
"""

from ofa.data.dataset import DataSplits, ImageTensorDataset
from ofa.data.load import load_dataset
from ofa.data.loader import IMAGENET_MEAN, IMAGENET_STD, BatchLoader
from ofa.data.sources import DataError, parse_data_spec

__all__ = [
    "load_dataset",
    "DataSplits",
    "ImageTensorDataset",
    "BatchLoader",
    "DataError",
    "parse_data_spec",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]
