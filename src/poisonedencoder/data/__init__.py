"""Dataset layer: uint8 image arrays and labels, decoded once and cached on disk; datasets by name
in the registry :data:`DATASETS`."""
from .datasets import DATASETS, DatasetSource, ImageDataset, ImageSplit, check_dataset, dataset_names, load_dataset

__all__ = ["DATASETS", "DatasetSource", "ImageDataset", "ImageSplit", "check_dataset", "dataset_names", "load_dataset"]
