"""Suite-wide settings. Imports nothing from the workspace packages, so each package's tests run alone."""

import os
from pathlib import Path

os.environ.setdefault("MM_NO_PROGRESS", "1")
# The real Music-AVQA annotation files (tests skip what needs them when absent): shared/ beside the checkout,
# else the workplace's copy; set MM_MUSIC_AVQA_DIR to use others.
_beside = Path(__file__).resolve().parents[2] / "shared" / "data" / "music-avqa"
os.environ.setdefault("MM_MUSIC_AVQA_DIR", str(_beside if _beside.is_dir() else Path("/work/shared/data/music-avqa")))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
