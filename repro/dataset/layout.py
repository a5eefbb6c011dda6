"""The ImageNet layout upstream's ``ImageNetDataset`` reads, and the canonical ILSVRC2012 counts.

Upstream joins ``image_root`` with the first space-separated field of each list line and takes the
second as an integer label (``line.strip().split(" ")``), so these names are the whole contract
between a dataset on disk and the training run.
"""

from __future__ import annotations

TRAIN_LIST = "train_list.txt"
VAL_LIST = "val_list.txt"
TRAIN_DIR = "train"
VAL_DIR = "val"

# (split name, list file, image directory): the four parts a dataset root must hold.
SPLITS: tuple[tuple[str, str, str], ...] = (
    ("train", TRAIN_LIST, TRAIN_DIR),
    ("val", VAL_LIST, VAL_DIR),
)

# Upstream splits on exactly one space (``delimiter`` defaults to " ").
DELIMITER = " "

DEFAULT_CLASS_NUM = 1000

# ILSVRC2012 as published: what `--expect imagenet-1k` insists on. A tree that differs trains on
# different data than the reference accuracy was measured on.
IMAGENET_1K_TRAIN = 1_281_167
IMAGENET_1K_VAL = 50_000
IMAGENET_1K_CLASSES = 1000

EXPECT_CHOICES = ("any", "imagenet-1k")
