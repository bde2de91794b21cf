"""How a dataset folder is laid out: split folder names, folders never read, the labels file.
Plain constants with no imports, so the CLI checks a folder with the same rules as discovery
before torch or pydicom load."""

SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
IGNORED_DIRS = {"masks", "__macosx"}
LABELS_CSV = "labels.csv"
