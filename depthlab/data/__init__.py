"""Datasets: readers (MNIST idx files, CIFAR-10 batches and JPEGs), the registry, splits and batches."""

from . import cifar_jpeg  # noqa: F401  (registers the cifar10-jpeg dataset)
from .batches import Batches, kfold_indices, subset_indices, train_val_split
from .dataset import Dataset, resolve_data_root
from .registry import DATASETS, DatasetInfo, check_dataset_name, load_dataset, register_dataset

__all__ = [
    "DATASETS",
    "Batches",
    "Dataset",
    "DatasetInfo",
    "check_dataset_name",
    "kfold_indices",
    "load_dataset",
    "register_dataset",
    "resolve_data_root",
    "subset_indices",
    "train_val_split",
]
