"""Dataset layer: uint8 image arrays and labels, decoded once and cached on disk."""
from .datasets import DATASETS, ImageDataset, ImageSplit, load_dataset

__all__ = ["DATASETS", "ImageDataset", "ImageSplit", "load_dataset"]
