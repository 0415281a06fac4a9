"""Real image–text datasets in their published on-disk formats.

- CIFAR-100: the official python-format pickles ``ROOT/cifar-100-python/{train,test,meta}``
  (torchvision's layout; Python 2 pickles, or Python 3 re-pickles with bytes keys).
- Flickr30K: Karpathy's ``dataset_flickr30k.json`` or the ``results.csv`` caption file
  (``image_name| comment_number| comment``), plus a folder of images.
- Conceptual-12M style: a JSON list (or JSON Lines) of ``{"img_name", "text"}`` plus an image
  folder, parsed incrementally (:mod:`mmcore.data.cc12m`); or webdataset tar shards (``KEY.jpg``/``KEY.png`` + ``KEY.txt``
  [+ ``KEY.json``], img2dataset's layout), read by :mod:`mmcore.data.wds` (``load_image_text("wds")``:
  :func:`mmcore.data.wds.records.load_wds`).

Every path taken from an annotation file or a tar member goes through :func:`mmcore.io.safe_join`.
With ``skip_bad=True`` unreadable items (missing/undecodable images, malformed lines) are dropped and
counted in ``ImageTextData.skipped``; otherwise the first one raises :class:`DataError`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mmcore.data.checks import Skipper, image_ok
from mmcore.data.records import ImageTextData, ImageTextRecord
from mmcore.errors import DataError, MMError
from mmcore.io import read_json, safe_join

# CLIP's CIFAR prompt ensemble (Radford et al. 2021, "Prompt Engineering and Ensembling").
CIFAR_TEMPLATES: list[str] = [
    "a photo of a {}.",
    "a blurry photo of a {}.",
    "a black and white photo of a {}.",
    "a low contrast photo of a {}.",
    "a high contrast photo of a {}.",
    "a bad photo of a {}.",
    "a good photo of a {}.",
    "a photo of a small {}.",
    "a photo of a big {}.",
    "a photo of the {}.",
    "a blurry photo of the {}.",
    "a black and white photo of the {}.",
    "a low contrast photo of the {}.",
    "a high contrast photo of the {}.",
    "a bad photo of the {}.",
    "a good photo of the {}.",
    "a photo of the small {}.",
    "a photo of the big {}.",
]


def _check_split(split: str, allowed: Iterable[str], dataset: str) -> None:
    allowed = tuple(allowed)
    if split not in allowed:
        raise MMError(f"{dataset}: unknown split {split!r}; choose one of {', '.join(allowed)}")


def _limit(records: list[ImageTextRecord], limit: int | None) -> list[ImageTextRecord]:
    return records if limit is None else records[:limit]


# ---------------------------------------------------------------- CIFAR-100


_CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
# MD5 of the official release's files (the values torchvision checks).
_CIFAR100_MD5 = {
    "train": "16019d7e3df5f24257cddd939b257f8d",
    "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
    "meta": "7973b15100ade9c7d40fb424638fde48",
}
# The only globals a CIFAR pickle needs: numpy's array and dtype reconstruction (numpy 1 and 2 names),
# and how Python 3 writes bytes / bytearray at pickle protocol 2 (_codecs.encode(str, "latin1")).
_CIFAR_PICKLE_GLOBALS = frozenset(
    (mod, name)
    for core in ("numpy.core", "numpy._core")
    for mod, name in (
        (f"{core}.multiarray", "_reconstruct"),
        (f"{core}.multiarray", "scalar"),
        (f"{core}.numeric", "_frombuffer"),
    )
) | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"), ("builtins", "bytearray")}


def _read_cifar_pickle(path: Path) -> dict[str, Any]:
    """One CIFAR python-format file as a dict with str keys.

    The release is a Python 2 pickle: read with ``encoding="latin1"`` (its str keys and the raw bytes
    of its numpy arrays were Python 2 byte strings). A file re-pickled by Python 3 after loading with
    ``encoding="bytes"`` has bytes keys (and bytes names): those are decoded too. Only numpy's array
    reconstruction may be called by the pickle; any other global is refused.
    """
    import pickle

    class _Restricted(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if (module, name) not in _CIFAR_PICKLE_GLOBALS:
                raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
            return super().find_class(module, name)

    try:
        with path.open("rb") as f:
            raw = _Restricted(f, encoding="latin1").load()
    except Exception as e:  # truncated / foreign / hostile pickles
        raise DataError(path, f"not a valid CIFAR-100 python-format file ({type(e).__name__}: {e})") from None
    if not isinstance(raw, dict):
        raise DataError(
            path, f"not a valid CIFAR-100 python-format file (a {type(raw).__name__}, not a dict)"
        )
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in raw.items()}


def _names(values: Any, path: Path, key: str) -> list[str]:
    if not isinstance(values, list | tuple):
        raise DataError(path, f"{key!r} must be a list of names, got {type(values).__name__}")
    return [v.decode("latin1") if isinstance(v, bytes) else str(v) for v in values]


def _cifar_field(entry: dict[str, Any], key: str, path: Path) -> Any:
    if key not in entry:
        raise DataError(path, f"not a CIFAR-100 file: no {key!r} entry (has {sorted(entry)})")
    return entry[key]


def load_cifar100(
    root: str | Path,
    split: str = "train",
    *,
    download: bool = False,
    verify_checksums: bool = False,
    limit: int | None = None,
) -> ImageTextData:
    """CIFAR-100 from the official python-format files ``ROOT/cifar-100-python/{train,test,meta}``
    (torchvision's layout); label = fine class, caption "a photo of a {classname}", templates =
    CLIP's CIFAR ensemble, ``attrs["filename"]`` = the file name the release gives the image.

    The files are pickles (Python 2's, or re-pickled by Python 3 with bytes keys: both are read);
    the reader only lets them rebuild numpy arrays. ``download=True`` fetches the archive through
    torchvision when the network allows. MD5 checksums against the official release are only
    verified with ``verify_checksums`` (hashing 160 MB on every load is slow).
    """
    _check_split(split, ("train", "test"), "cifar100")
    root = Path(root)
    folder = root / "cifar-100-python"
    wanted = ["meta", split]
    missing = [f for f in wanted if not (folder / f).is_file()]
    if missing and download:
        import torchvision

        try:
            torchvision.datasets.CIFAR100(str(root), train=split == "train", download=True)
        except Exception as e:  # URLError, timeouts, checksum mismatch
            raise DataError(
                root,
                f"CIFAR-100 download failed ({e}); download {_CIFAR100_URL} by hand and extract it under {root}",
            ) from None
        missing = [f for f in wanted if not (folder / f).is_file()]
    if missing:
        raise DataError(
            folder,
            f"CIFAR-100 not found (missing {', '.join(missing)}); download {_CIFAR100_URL} and extract it "
            f"under {root} (in Python, load_cifar100(..., download=True) fetches it where the network allows)",
        )
    if verify_checksums:
        import hashlib

        for name in wanted:
            digest = hashlib.md5((folder / name).read_bytes(), usedforsecurity=False).hexdigest()
            if digest != _CIFAR100_MD5[name]:
                raise DataError(
                    folder / name, f"MD5 {digest} does not match the official release's {_CIFAR100_MD5[name]}"
                )

    meta_path, split_path = folder / "meta", folder / split
    classnames = [
        c.replace("_", " ")
        for c in _names(
            _cifar_field(_read_cifar_pickle(meta_path), "fine_label_names", meta_path),
            meta_path,
            "fine_label_names",
        )
    ]
    entry = _read_cifar_pickle(split_path)
    data, labels = _cifar_field(entry, "data", split_path), _cifar_field(entry, "fine_labels", split_path)
    filenames = _names(entry.get("filenames", []), split_path, "filenames")
    import numpy as np

    if not (
        isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072
    ):
        what = (
            f"{data.dtype} array of shape {data.shape}"
            if isinstance(data, np.ndarray)
            else type(data).__name__
        )
        raise DataError(split_path, f"'data' must be a uint8 array of shape [N, 3072], got a {what}")
    if len(data) != len(labels):
        raise DataError(split_path, f"{len(data)} images but {len(labels)} labels in the {split} file")
    bad = next(
        (
            i
            for i, y in enumerate(labels)
            if not (isinstance(y, int | np.integer) and 0 <= y < len(classnames))
        ),
        None,
    )
    if bad is not None:
        raise DataError(
            split_path, f"fine_labels[{bad}] = {labels[bad]!r} is not a class index 0..{len(classnames) - 1}"
        )
    n = len(labels) if limit is None else min(limit, len(labels))
    images = data[:n].reshape(n, 3, 32, 32).transpose(0, 2, 3, 1)  # R, G, B planes -> HxWx3
    records = [
        ImageTextRecord(
            id=f"cifar100-{split}-{i:05d}",
            captions=[f"a photo of a {classnames[int(labels[i])]}"],
            label=int(labels[i]),
            image=images[i],
            attrs={"filename": filenames[i]} if i < len(filenames) else {},
        )
        for i in range(n)
    ]
    return ImageTextData(
        name="cifar100", records=records, classnames=classnames, templates=list(CIFAR_TEMPLATES)
    )


# ---------------------------------------------------------------- Flickr30K

_FLICKR_IMAGE_DIRS = ("flickr30k-images", "flickr30k_images", "images", "Images")
_KARPATHY_FILES = ("dataset_flickr30k.json",)
_CSV_FILES = ("results.csv", "flickr30k_images/results.csv")
#: ``load_flickr30k(caption_file=...)``: which caption file to read when both exist.
FLICKR_CAPTION_FILES = ("auto", "karpathy", "csv")
# A results.csv row whose comment number and comment lost their "|" (the public file has one:
# "2199200615.jpg| 4   A dog runs across the grass ."): the number, blanks, then the comment.
_FUSED_NUMBER = re.compile(r"^(\d+)\s+(\S.*)$")


def find_images_dir(root: Path, images_dir: str | Path | None, candidates: Iterable[str]) -> Path:
    if images_dir is not None:
        d = Path(images_dir)
        if not d.is_dir():
            raise DataError(d, "image folder not found")
        return d
    for c in candidates:
        if (root / c).is_dir():
            return root / c
    return root


def records_from_captions(
    grouped: dict[str, list[str]], images_dir: Path, skip: Skipper, verify: bool, split: str
) -> list[ImageTextRecord]:
    records = []
    for fname, caps in grouped.items():
        path = safe_join(images_dir, fname)
        problem = image_ok(path) if verify else (None if path.is_file() else "image file not found")
        if problem:
            skip.bad(path, problem)
            continue
        records.append(ImageTextRecord(id=fname, captions=caps, path=path, attrs={"split": split}))
    return records


def load_flickr30k(
    root: str | Path,
    split: str = "test",
    *,
    annotations: str | Path | None = None,
    images_dir: str | Path | None = None,
    skip_bad: bool = False,
    limit: int | None = None,
    caption_file: str = "auto",
) -> ImageTextData:
    """Flickr30K: one record per image with its (usually 5) captions, label None.

    The captions come from ``annotations`` (a path) if given, else from the file ``caption_file``
    picks in ROOT: ``"karpathy"`` = ``dataset_flickr30k.json`` (Karpathy split; ``split`` is
    train/val/test or all), ``"csv"`` = ``results.csv`` (or ``flickr30k_images/results.csv``; no split
    information: ``split="all"``, or train/val/test taken from ``ROOT/dataset_flickr30k.json`` when
    it exists), ``"auto"`` (default) = the Karpathy JSON when it exists, else results.csv.
    Images: ``images_dir`` or the first of ROOT/{flickr30k-images, flickr30k_images, images, Images}
    that exists, else ROOT. ``skip_bad`` also verifies every image header.
    """
    _check_split(split, ("train", "val", "test", "all"), "flickr30k")
    if caption_file not in FLICKR_CAPTION_FILES:
        raise MMError(
            f"flickr30k: unknown caption file {caption_file!r}; choose one of {', '.join(FLICKR_CAPTION_FILES)}"
        )
    root = Path(root)
    if annotations is None:
        cands = {"auto": _KARPATHY_FILES + _CSV_FILES, "karpathy": _KARPATHY_FILES, "csv": _CSV_FILES}[
            caption_file
        ]
        annotations = next((root / c for c in cands if (root / c).is_file()), None)
        if annotations is None:
            expected = {
                "auto": "dataset_flickr30k.json (Karpathy split) or results.csv",
                "karpathy": "dataset_flickr30k.json (Karpathy split; caption file 'karpathy' was asked for)",
                "csv": "results.csv or flickr30k_images/results.csv (caption file 'csv' was asked for)",
            }
            raise DataError(root, f"no Flickr30K annotations found: expected {expected[caption_file]}")
    ann = Path(annotations)
    if not ann.is_file():
        raise DataError(ann, "annotation file not found")
    imgs = find_images_dir(root, images_dir, _FLICKR_IMAGE_DIRS)
    skip = Skipper(skip_bad)

    if ann.suffix.lower() == ".json":
        grouped = _karpathy_captions(ann, split, skip)
    else:
        grouped = _flickr_csv_captions(ann, skip)
        if split != "all":
            karpathy = root / "dataset_flickr30k.json"
            if not karpathy.is_file():
                raise DataError(
                    ann,
                    f"results.csv has no train/val/test split; use split 'all' or put Karpathy's "
                    f"dataset_flickr30k.json in {root} to select split {split!r}",
                )
            keep = set(_karpathy_captions(karpathy, split, Skipper(True)))
            grouped = {k: v for k, v in grouped.items() if k in keep}
    if limit is not None:
        grouped = dict(list(grouped.items())[:limit])
    records = records_from_captions(grouped, imgs, skip, skip_bad, split)
    return ImageTextData(
        name="flickr30k",
        records=records,
        classnames=None,
        templates=["a photo of a {}."],
        skipped=skip.count,
        attrs={"annotations": str(ann), "split": split},
    )


def _karpathy_captions(path: Path, split: str, skip: Skipper) -> dict[str, list[str]]:
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(path, 'not a Karpathy-split file: expected {"images": [...]}')
    want = {"train": {"train", "restval"}, "val": {"val"}, "test": {"test"}}.get(split)
    grouped: dict[str, list[str]] = {}
    for k, im in enumerate(data["images"]):
        try:
            fname = im["filename"]
            sp = im["split"]
            caps = [s["raw"].strip() for s in im["sentences"]]
        except (KeyError, TypeError):
            skip.bad(path, f"images[{k}] lacks filename/split/sentences[].raw")
            continue
        if want is not None and sp not in want:
            continue
        if not isinstance(fname, str) or not caps:
            skip.bad(path, f"images[{k}] has no filename or no captions")
            continue
        grouped.setdefault(fname, []).extend(caps)
    return grouped


def _flickr_csv_captions(path: Path, skip: Skipper) -> dict[str, list[str]]:
    """``image_name| comment_number| comment`` lines (header first), grouped by image in
    comment-number order. A line whose number and comment lost their separator
    (``NAME.jpg| 4 A man ...``, as in the public file) is read as number 4, comment "A man ..."."""
    rows: dict[str, list[tuple[int, str]]] = {}
    with path.open(encoding="utf-8", newline="") as f:
        header = f.readline()
        cols = [c.strip() for c in header.split("|")]
        if cols[:3] != ["image_name", "comment_number", "comment"]:
            raise DataError(
                path, f"expected header 'image_name| comment_number| comment', got {header.strip()!r}"
            )
        for lineno, line in enumerate(f, start=2):
            if not line.strip():
                continue
            parts = [p.strip() for p in line.rstrip("\r\n").split("|", 2)]
            fused = _FUSED_NUMBER.match(parts[1]) if len(parts) == 2 else None
            if fused:
                parts = [parts[0], fused.group(1), fused.group(2)]
            if len(parts) != 3 or not parts[0] or not parts[2] or not parts[1].isdigit():
                skip.bad(path, f"line {lineno}: malformed caption line {line.strip()[:80]!r}")
                continue
            rows.setdefault(parts[0], []).append((int(parts[1]), parts[2]))
    return {k: [c for _, c in sorted(v)] for k, v in rows.items()}


__all__ = [
    "CIFAR_TEMPLATES",
    "FLICKR_CAPTION_FILES",
    "load_cifar100",
    "load_flickr30k",
]
