"""Suite-wide settings. Imports nothing from the workspace packages, so each package's tests run alone."""

import os

os.environ.setdefault("MM_NO_PROGRESS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
