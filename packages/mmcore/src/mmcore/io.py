"""File I/O that never leaves half-written files and never escapes a data root."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmcore.errors import DataError, MMError

#: The environment variable naming the cache folder (:func:`default_cache_dir`).
CACHE_ENV = "MM_CACHE"


def default_cache_dir() -> Path:
    """Where trained models and cached results are kept (`mm demo`'s tiny CLIP, `mm unlearn`'s
    unlearn-before metrics): $MM_CACHE, else ~/.cache/mm."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "mm"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temp_dir_beside(path: str | Path) -> Path:
    """A new empty folder next to ``path`` (to be renamed onto it), with the mode ``mkdir`` would give it
    (0777 less the umask), not mkdtemp's 0700."""
    path = Path(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp"))
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder and an atomic rename. The file
    gets the mode an ordinary ``open(path, "w")`` would give it (0666 less the umask), not mkstemp's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):  # numpy / torch scalars and arrays
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_json(path: str | Path, obj: Any) -> Path:
    """Atomically write ``obj`` as pretty JSON (numpy/torch values converted)."""
    return atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def read_json(path: str | Path) -> Any:
    """Read JSON, raising :class:`DataError` naming the file on a missing file or bad JSON."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(path, f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except UnicodeDecodeError:
        raise DataError(path, "not UTF-8 text") from None


def save_safetensors(path: str | Path, tensors: Mapping[str, Any], metadata: dict[str, str] | None = None) -> Path:
    """Atomically save a flat dict of tensors as safetensors (contiguous CPU copies)."""
    from safetensors.torch import save

    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    return atomic_write_bytes(path, save(flat, metadata=metadata))


def load_safetensors(path: str | Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "weights file not found")
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for truncated/corrupt headers
        raise DataError(path, f"not a valid safetensors file ({e})") from None


def torch_load_safe(path: str | Path) -> Any:
    """``torch.load`` restricted to tensors and plain containers (``weights_only=True``)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "checkpoint not found")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise DataError(path, f"cannot be loaded safely with weights_only=True ({e})") from None


def safe_join(root: str | Path, member: str) -> Path:
    """Join a manifest path onto ``root`` and refuse anything that escapes it (``..``, absolute paths)."""
    root_r = Path(root).resolve()
    target = (root_r / member).resolve()
    if target != root_r and root_r not in target.parents:
        raise DataError(root, f"manifest path {member!r} escapes the data root")
    return target


def prepare_output_dir(path: str | Path, overwrite: bool = False, resume: bool | None = None) -> Path:
    """Create an output directory; refuse to reuse a non-empty one unless ``overwrite`` or ``resume``.

    ``overwrite`` deletes the old contents; ``resume`` keeps them (a run continues from its checkpoint).
    Commands that can resume pass ``resume`` (True or False): only then does the refusal suggest
    ``--resume``; a command without that option leaves it None.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise MMError(f"{path}: output path exists and is not a directory")
    if path.is_dir() and any(path.iterdir()):
        if resume:
            return path
        if not overwrite:
            or_resume = "" if resume is None else " or --resume to continue"
            raise MMError(f"{path}: output directory is not empty; pass --overwrite to replace it{or_resume}")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def stable_hash(obj: Any) -> str:
    """SHA-256 hex digest of ``obj`` as canonical JSON (sorted keys; numpy/torch values, paths, dataclasses
    converted), so equal inputs give equal keys across processes and runs."""
    import hashlib

    blob = json.dumps(obj, sort_keys=True, default=_json_default, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


# Above this size a file is identified by its size and modification time: hashing gigabytes on every run
# would cost more than the evaluation a cache saves.
_HASH_LIMIT = 1 << 30


def file_fingerprint(path: str | Path) -> dict[str, Any]:
    """What identifies a file's content: its size and SHA-256 (files over 1 GiB: size and mtime)."""
    import hashlib

    path = Path(path)
    st = path.stat()
    if st.st_size > _HASH_LIMIT:
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "path": str(path.resolve())}
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return {"size": st.st_size, "sha256": h.hexdigest()}


class JsonCache:
    """Keyed JSON results under ``root`` (``root/<sha256 of the key>.json``), for results that are a pure
    function of their inputs. ``key`` is any JSON-able object naming exactly those inputs; an entry is used
    only when its stored key equals it (no hash collision can return another entry). ``root`` None: disabled.
    A corrupt or unreadable entry is a miss, never an error."""

    def __init__(self, root: str | Path | None):
        self.root = None if root is None else Path(root)

    def path(self, key: Any) -> Path | None:
        return None if self.root is None else self.root / f"{stable_hash(key)}.json"

    def get(self, key: Any) -> Any | None:
        path = self.path(key)
        if path is None or not path.is_file():
            return None
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        canonical = json.loads(json.dumps(key, default=_json_default))
        if not isinstance(entry, dict) or entry.get("key") != canonical:
            return None
        return entry.get("value")

    def put(self, key: Any, value: Any) -> Path | None:
        path = self.path(key)
        if path is None:
            return None
        try:
            return write_json(path, {"key": key, "value": value})
        except OSError:  # a read-only or full cache disk costs the reuse, not the run
            return None
