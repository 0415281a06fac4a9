"""Conceptual-12M style annotations: a JSON list (or JSON Lines) of ``{"img_name", "text"}`` plus an image
folder, parsed incrementally (:func:`iter_json_entries`), so a 12M-entry file is never held whole."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mmcore.data.checks import Skipper
from mmcore.data.image_text import find_images_dir, records_from_captions
from mmcore.data.records import ImageTextData
from mmcore.errors import DataError

_JSON_CHUNK = 1 << 20


def iter_json_entries(path: str | Path, *, chunk_size: int = _JSON_CHUNK) -> Iterator[Any]:
    """The entries of a JSON array file, or the values of a JSON Lines file (``.jsonl``), parsed
    one at a time from ``chunk_size``-character reads: memory holds one chunk and one entry, never
    the whole file. :class:`DataError` naming the file (and the entry) on malformed JSON."""
    path = Path(path)
    lines = path.suffix.lower() == ".jsonl"
    decoder = json.JSONDecoder()
    try:
        f = path.open(encoding="utf-8")
    except OSError as e:
        raise DataError(path, f"cannot read ({e})") from None
    with f:
        buf, pos, eof, k = "", 0, False, 0

        def fill() -> None:
            nonlocal buf, pos, eof
            more = f.read(chunk_size)
            eof = not more
            buf, pos = buf[pos:] + more, 0

        def skip_ws() -> None:
            nonlocal pos
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n":
                    pos += 1
                if pos < len(buf) or eof:
                    return
                fill()

        try:
            fill()
            skip_ws()
            if not lines:
                if buf[pos : pos + 1] != "[":
                    raise DataError(path, 'expected a JSON list of {"img_name": ..., "text": ...} objects')
                pos += 1
            while True:
                skip_ws()
                if pos >= len(buf):
                    if lines:
                        return
                    raise DataError(path, "truncated JSON: the list is not closed")
                if not lines and buf[pos] == "]":
                    return
                if not lines and k > 0:
                    if buf[pos] != ",":
                        raise DataError(path, f"malformed JSON after entry {k - 1}: expected ',' or ']'")
                    pos += 1
                    skip_ws()
                while True:
                    try:
                        value, end = decoder.raw_decode(buf, pos)
                    except json.JSONDecodeError as e:
                        if eof:
                            raise DataError(path, f"malformed JSON in entry {k} ({e.msg})") from None
                        fill()
                        continue
                    # a number cut by the chunk end ("1.5" of "1.5e3") decodes too: read on first
                    cut = end == len(buf) or (isinstance(value, int | float) and buf[end] not in ",] \t\r\n")
                    if cut and not eof:
                        fill()
                        continue
                    break
                pos = end
                yield value
                k += 1
        except UnicodeDecodeError as e:
            raise DataError(path, f"not UTF-8 text ({e})") from None


def load_cc12m_json(
    root: str | Path,
    split: str = "train",
    *,
    annotations: str | Path | None = None,
    images_dir: str | Path | None = None,
    skip_bad: bool = False,
    limit: int | None = None,
) -> ImageTextData:
    """A JSON list (or JSON Lines) of ``{"img_name", "text"}`` plus an image folder (CC12M as used by
    CLIPErase), parsed entry by entry (:func:`iter_json_entries`: the file is never loaded whole).

    ``root`` may be the annotation file itself or a folder holding ``{split}.json[l]``,
    ``cc12m.json[l]`` or a single ``*.json[l]``; images are in ``images_dir``, ``<folder>/images``
    or the folder itself. Entries naming the same image are merged into one record with several
    captions; with ``limit`` the file is read only up to the entry naming image ``limit + 1``
    (later entries of the first ``limit`` images are then not merged).
    """
    root = Path(root)
    if annotations is not None:
        ann = Path(annotations)
    elif root.is_file():
        ann, root = root, root.parent
    else:
        if not root.is_dir():
            raise DataError(root, "data root not found")
        cands = [root / f"{stem}.{ext}" for stem in (split, "cc12m") for ext in ("json", "jsonl")]
        ann = next((c for c in cands if c.is_file()), None)  # type: ignore[assignment]
        if ann is None:
            jsons = sorted([*root.glob("*.json"), *root.glob("*.jsonl")])
            if len(jsons) != 1:
                raise DataError(
                    root,
                    f"cannot pick the annotation file: expected {split}.json, cc12m.json (or .jsonl) or exactly one "
                    f"*.json / *.jsonl (found {len(jsons)}); give the JSON file itself as the data root",
                )
            ann = jsons[0]
    if not ann.is_file():
        raise DataError(ann, "annotation file not found")
    imgs = find_images_dir(root, images_dir, ("images",))
    skip = Skipper(skip_bad)
    grouped: dict[str, list[str]] = {}
    for k, item in enumerate(iter_json_entries(ann)):
        if not (
            isinstance(item, dict)
            and isinstance(item.get("img_name"), str)
            and isinstance(item.get("text"), str)
        ):
            skip.bad(ann, f'entry {k} is not an object with string "img_name" and "text"')
            continue
        name = item["img_name"]
        if limit is not None and name not in grouped and len(grouped) >= limit:
            break
        grouped.setdefault(name, []).append(item["text"].strip())
    records = records_from_captions(grouped, imgs, skip, skip_bad, split)
    return ImageTextData(
        name="cc12m",
        records=records,
        classnames=None,
        templates=["a photo of a {}."],
        skipped=skip.count,
        attrs={"annotations": str(ann)},
    )


__all__ = ["iter_json_entries", "load_cc12m_json"]
