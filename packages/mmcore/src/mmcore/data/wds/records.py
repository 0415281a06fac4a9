"""Random access to webdataset shards: records holding tar member offsets (:func:`load_wds`, what
``load_image_text("wds")`` returns; :func:`load_wds_holdout`, :func:`sample_wds_records`), and writing records
as img2dataset-style shards (:func:`write_shards`). The streaming reader is :mod:`mmcore.data.wds.stream`, the
shard / split rules :mod:`mmcore.data.wds.layout`."""

from __future__ import annotations

import io
import json
import os
import random
import tarfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

from mmcore.data.checks import Skipper, bytes_ok
from mmcore.data.records import ImageTextData, ImageTextRecord
from mmcore.data.wds.layout import (
    CLASSNAMES_FILE,
    IMAGE_EXTENSIONS,
    TEMPLATES_FILE,
    WDS_KEY,
    class_info,
    meta_dir,
    parse_sample,
    resolve_shards,
    shard_name,
    shard_paths,
    split_shards,
)
from mmcore.errors import MMError
from mmcore.io import safe_join

# ---------------------------------------------------------------- random access (records with offsets)


def _open_seekable(shard: Path, skip: Skipper) -> tuple[tarfile.TarFile | None, bool]:
    """(tar, seekable): uncompressed tars are read in place, compressed ones as a stream."""
    try:
        return tarfile.open(shard, mode="r:"), True
    except tarfile.ReadError:
        pass
    except OSError as e:
        skip.bad(shard, f"not a readable tar file ({e})")
        return None, False
    try:
        return tarfile.open(shard, mode="r:*"), False
    except (tarfile.TarError, OSError) as e:
        skip.bad(shard, f"not a readable tar file ({e})")
        return None, False


def _scan_shard(shard: Path, skip: Skipper) -> Iterator[tuple[str, dict[str, bytes], dict[str, tuple[str, int, int]], tuple[str, str] | None]]:
    """Per sample of one shard: key, the small members' bytes by extension, the image members'
    (member name, data offset, size) by extension, and the problem found in its image (only looked
    for with ``skip.skip_bad``, which reads and verifies each image once and keeps nothing).
    Compressed shards cannot be read in place: their image bytes come in the first dict instead."""
    tf, seekable = _open_seekable(shard, skip)
    if tf is None:
        return
    small: dict[str, dict[str, bytes]] = {}
    images: dict[str, dict[str, tuple[str, int, int]]] = {}
    bad: dict[str, tuple[str, str]] = {}
    try:
        with tf:
            for m in tf:
                safe_join(shard.parent, m.name)  # refuses absolute / ../ names
                if m.isdir():
                    continue
                if not m.isfile():
                    skip.bad(shard, f"member {m.name!r} is not a regular file (links are not followed)")
                    continue
                match = WDS_KEY.match(m.name)
                if match is None:
                    skip.bad(shard, f"member {m.name!r} has no KEY.extension name")
                    continue
                key, ext = match.group(1), match.group(2).lower()
                small.setdefault(key, {})
                images.setdefault(key, {})
                if ext in IMAGE_EXTENSIONS and seekable:
                    images[key][ext] = (m.name, m.offset_data, m.size)
                    if skip.skip_bad:
                        f = tf.extractfile(m)
                        problem = bytes_ok(f.read() if f is not None else b"")
                        if problem:
                            bad[key] = (f"{shard}:{m.name}", problem)
                else:
                    f = tf.extractfile(m)
                    small[key][ext] = f.read() if f is not None else b""
    except (tarfile.TarError, OSError, EOFError) as e:
        skip.bad(shard, f"truncated or corrupt tar ({e})")  # keep the samples read before the damage
    for key, parts in small.items():
        yield key, parts, images[key], bad.get(key)


def _iter_records(shards: Sequence[Path], n_classes: int | None, skip: Skipper) -> Iterator[ImageTextRecord]:
    for shard in shards:
        for key, small, images, problem in _scan_shard(shard, skip):
            if problem is not None:
                skip.bad(*problem)
                continue
            parsed = parse_sample(key, {**small, **dict.fromkeys(images, b"")}, str(shard), n_classes)
            if isinstance(parsed, tuple):
                skip.bad(*parsed)
                continue
            ext = parsed.image_ext
            if ext in images:
                member, offset, size = images[ext]
                extra: dict[str, Any] = {"tar_member": (str(shard), offset, size)}
            else:  # a compressed shard: the bytes are all there is
                member, extra = f"{key}.{ext}", {"image_bytes": small[ext]}
                if skip.skip_bad and (bad := bytes_ok(small[ext])):
                    skip.bad(f"{shard}:{member}", bad)
                    continue
            yield ImageTextRecord(
                id=f"{shard_name(shard)}/{key}", captions=[parsed.caption], label=parsed.label,
                attrs={"source": f"{shard}:{member}", **({"json": parsed.meta} if parsed.meta else {})}, **extra,
            )


def _load_records(shards: Sequence[Path], meta: Path, skip_bad: bool, limit: int | None) -> ImageTextData:
    skip = Skipper(skip_bad)
    classnames, templates = class_info(meta)
    records = list(islice(_iter_records(shards, len(classnames) if classnames else None, skip), limit))
    return ImageTextData(name="wds", records=records, classnames=classnames, templates=templates,
                         skipped=skip.count, attrs={"shards": [shard_name(s) for s in shards],
                                                           "shard_paths": [str(s) for s in shards]})


def load_wds(root: str | Path, split: str = "train", *, skip_bad: bool = False,
             limit: int | None = None) -> ImageTextData:
    """The samples of ``split`` (:func:`resolve_shards`) as records that read their image from the
    shard when loaded (``tar_member``: one seek, no image bytes held). With ``skip_bad`` every image
    is verified once (and not kept); otherwise a bad image fails when its record is loaded.

    Ids are ``SHARD/KEY``; ``attrs["source"]`` names the member, ``attrs["json"]`` holds KEY.json.
    Labels (``KEY.cls`` / ``json["label"]``) when ``classnames.txt`` gives the classes."""
    shards, how = resolve_shards(root, split)
    data = _load_records(shards, meta_dir(root, shards), skip_bad, limit)
    data.attrs.update(root=str(root), split=split, shards_from=how)
    return data


def load_wds_holdout(root: str | Path, test_fraction: float = 0.1, seed: int = 0, *, skip_bad: bool = False,
                     limit: int | None = None) -> tuple[ImageTextData, ImageTextData]:
    """Train and held-out data from the shards of ``root`` split by :func:`split_shards`, for callers
    that hold out a share of a dataset without a test split: the held-out set is whole shards, named
    in ``attrs["shards"]``, the same for every run with the same shard names and seed."""
    shards = shard_paths(root)
    splits = split_shards(shards, test_fraction, seed)
    by_name = {shard_name(s): s for s in shards}
    out = []
    for part in ("train", "test"):
        data = _load_records([by_name[n] for n in splits[part]], meta_dir(root, shards), skip_bad, limit)
        data.name = "wds" if part == "train" else "wds-holdout"
        data.attrs.update(root=str(root), split=part,
                          shards_from=f"split_shards(test_fraction={test_fraction}, seed={seed})")
        out.append(data)
    return out[0], out[1]


def sample_wds_records(root: str | Path, shards: Sequence[Path], parts: dict[str, Callable[[ImageTextRecord], bool]],
                       k: int | None | dict[str, int | None], seed: int = 0, *,
                       skip_bad: bool = False) -> dict[str, ImageTextData]:
    """Per part, a uniform seeded sample of at most ``k`` of the records of ``shards`` that the part's
    predicate accepts (``k`` None: all of them; a dict: per part), from one pass over the tar headers (no
    image decoded): memory holds the ``k`` records of each part, whatever the number of samples (reservoir
    sampling). Each part keeps the shards' order; ``attrs["n_total"]`` is how many records the part had."""
    caps = k if isinstance(k, dict) else dict.fromkeys(parts, k)
    skip = Skipper(skip_bad)
    classnames, templates = class_info(meta_dir(root, shards))
    rng = random.Random(seed)
    kept: dict[str, list[tuple[int, ImageTextRecord]]] = {name: [] for name in parts}
    seen = dict.fromkeys(parts, 0)
    for pos, rec in enumerate(_iter_records(shards, len(classnames) if classnames else None, skip)):
        for name, accepts in parts.items():
            if not accepts(rec):
                continue
            seen[name] += 1
            cap = caps[name]
            if cap is None or len(kept[name]) < cap:
                kept[name].append((pos, rec))
            elif (j := rng.randrange(seen[name])) < cap:
                kept[name][j] = (pos, rec)
    return {name: ImageTextData(name=f"wds-{name}", records=[r for _, r in sorted(kept[name], key=lambda t: t[0])],
                                classnames=classnames, templates=templates, skipped=skip.count,
                                attrs={"n_total": seen[name], "shard_paths": [str(s) for s in shards]})
            for name in parts}


# ---------------------------------------------------------------- writing shards


def write_shards(
    records: Iterable[ImageTextRecord], out_dir: str | Path, *, per_shard: int = 1000,
    image_format: str = "jpg", quality: int = 90, classnames: Sequence[str] | None = None,
    templates: Sequence[str] | None = None,
) -> list[Path]:
    """Write records as img2dataset-style shards ``OUT/00000.tar, ...`` (``KEY.{jpg,png}``,
    ``KEY.txt`` = the first caption, ``KEY.json`` = ``{"key", "caption", "captions", ...attrs}``,
    ``KEY.cls`` when labelled), ``OUT/classnames.txt`` and ``OUT/zeroshot_classification_templates.txt``
    when ``classnames`` / ``templates`` are given. Records are
    consumed one at a time (a generator keeps memory to one record); each shard is written under a
    temporary name and renamed when complete."""
    import webdataset as wds

    if image_format not in ("jpg", "png"):
        raise MMError(f"image_format must be 'jpg' or 'png', got {image_format!r}")
    if per_shard < 1:
        raise MMError(f"per_shard must be at least 1, got {per_shard}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from mmcore.io import atomic_write_text

    for file, lines in ((CLASSNAMES_FILE, classnames), (TEMPLATES_FILE, templates)):
        if lines is not None:
            atomic_write_text(out / file, "".join(f"{ln}\n" for ln in lines))
    written: list[Path] = []
    writer, tmp, count = None, None, 0

    def close() -> None:
        if writer is not None:
            writer.close()
            final = out / f"{len(written):05d}.tar"
            os.replace(tmp, final)
            written.append(final)

    for rec in records:
        if writer is None or count == per_shard:
            close()
            tmp = out / f".{len(written):05d}.tar.tmp"
            writer, count = wds.TarWriter(str(tmp)), 0
        img = rec.load_image()
        buf = io.BytesIO()
        img.save(buf, format="JPEG" if image_format == "jpg" else "PNG", **({"quality": quality}
                 if image_format == "jpg" else {}))
        key = f"{len(written):05d}{count:05d}"
        meta = {"key": key, "id": rec.id, "caption": rec.captions[0] if rec.captions else "",
                "captions": list(rec.captions), **{k: v for k, v in rec.attrs.items() if isinstance(v, str | int)}}
        sample: dict[str, Any] = {"__key__": key, image_format: buf.getvalue(),
                                  "txt": meta["caption"], "json": json.dumps(meta).encode()}
        if rec.label is not None:
            sample["cls"] = str(int(rec.label)).encode()
        writer.write(sample)
        count += 1
    close()
    return written


__all__ = ["load_wds", "load_wds_holdout", "sample_wds_records", "write_shards"]
