"""One pass over the captions of webdataset shards, no image decoded: which samples match a rule.

For each shard the captions come from img2dataset's ``SHARD.parquet`` (columns ``key`` and
``caption``; rows whose ``status`` is not ``success`` have no image in the tar and are left out)
when it exists and pyarrow is installed, else from the tar's ``KEY.txt`` members (``KEY.json``'s
``caption`` / ``text`` when a sample has no .txt); image members are skipped by their headers, never
read. Ids are ``SHARD/KEY``, as :func:`~mmcore.data.wds.records.load_wds` and the stream give them.

The result is written to a folder as it goes: ``rule.json`` (what was matched, so a restart with
another rule fails instead of mixing results) and ``shards.jsonl``, one line per finished shard
(``{"shard", "n", "n_match", "ids", "from"}``). A restarted pass reads the finished shards back and
skips them. Memory: one shard's captions at a time, plus the matching ids.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmcore.data.wds.layout import WDS_KEY, shard_name
from mmcore.errors import DataError
from mmcore.io import atomic_write_text, read_json, write_json

SHARDS_FILE = "shards.jsonl"
RULE_FILE = "rule.json"


@dataclass
class CaptionPass:
    """Per-shard sample and match counts (shard order) and the matching ids."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    ids: list[str] = field(default_factory=list)
    resumed: int = 0  # shards read back from an earlier, interrupted pass
    sources: dict[str, str] = field(default_factory=dict)  # shard -> "parquet" | "tar"

    @property
    def n(self) -> int:
        return sum(c["n"] for c in self.counts.values())

    @property
    def n_match(self) -> int:
        return len(self.ids)


def _parquet_captions(path: Path) -> list[tuple[str, str]] | None:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        return None
    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises its own error types for damaged files
        raise DataError(path, f"not a readable parquet file ({type(e).__name__}: {e})") from None
    cols = table.column_names
    if "key" not in cols or "caption" not in cols:
        raise DataError(path, f"expected img2dataset's columns key and caption, got {cols}")
    keys, caps = table.column("key").to_pylist(), table.column("caption").to_pylist()
    status = table.column("status").to_pylist() if "status" in cols else [None] * len(keys)
    return [(str(k), str(c or "")) for k, c, s in zip(keys, caps, status, strict=True) if s in (None, "success")]


def _tar_captions(shard: Path) -> list[tuple[str, str]]:
    txt: dict[str, str] = {}
    meta: dict[str, str] = {}
    order: list[str] = []
    try:
        with tarfile.open(shard, mode="r:*") as tf:
            for m in tf:
                match = WDS_KEY.match(m.name) if m.isfile() else None
                if match is None:
                    continue
                key, ext = match.group(1), match.group(2).lower()
                if ext not in ("txt", "json"):
                    continue  # images: the header is read, the data skipped
                f = tf.extractfile(m)
                raw = f.read() if f is not None else b""
                if key not in txt and key not in meta:
                    order.append(key)
                if ext == "txt":
                    txt[key] = raw.decode("utf-8", "replace").strip()
                else:
                    try:
                        loaded = json.loads(raw.decode("utf-8"))
                    except (UnicodeDecodeError, json.JSONDecodeError):
                        loaded = {}
                    if isinstance(loaded, dict):
                        meta[key] = str(loaded.get("caption") or loaded.get("text") or "")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(shard, f"truncated or corrupt tar ({e})") from None
    return [(k, txt.get(k) or meta.get(k, "")) for k in order]


def _read_done(path: Path) -> list[dict[str, Any]]:
    done: list[dict[str, Any]] = []
    if not path.is_file():
        return done
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            done.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut by an interruption: that shard is done again
    return done


def caption_pass(
    shards: Sequence[str | Path],
    matches: Callable[[str], bool],
    out_dir: str | Path,
    *,
    rule: dict[str, Any],
    desc: str = "captions",
) -> CaptionPass:
    """Match every caption of ``shards`` with ``matches``; results in ``out_dir`` (see the module
    docstring). ``rule`` describes ``matches`` (e.g. ``{"keyword": "cat"}``) and must equal the one
    of an earlier pass in ``out_dir`` to resume it."""
    from mmcore.distributed import progress_bar

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rule_path, lines_path = out / RULE_FILE, out / SHARDS_FILE
    if rule_path.is_file():
        old = read_json(rule_path)
        if old != rule:
            raise DataError(rule_path, f"an earlier caption pass here matched {old}, not {rule}; use another folder")
    else:
        write_json(rule_path, rule)
    wanted = [Path(s) for s in shards]
    names = [shard_name(s) for s in wanted]
    done = {d["shard"]: d for d in _read_done(lines_path) if d.get("shard") in set(names)}
    # rewrite without a cut last line, so appends start on a fresh line
    atomic_write_text(lines_path, "".join(json.dumps(d) + "\n" for d in done.values()))
    res = CaptionPass(resumed=len(done))
    with progress_bar(len(wanted), desc) as advance, lines_path.open("a", encoding="utf-8") as log:
        for shard, name in zip(wanted, names, strict=True):
            if name not in done:
                parquet = shard.with_name(name + ".parquet")
                rows = _parquet_captions(parquet) if parquet.is_file() else None
                source = "parquet" if rows is not None else "tar"
                if rows is None:
                    rows = _tar_captions(shard)
                ids = [f"{name}/{k}" for k, c in rows if c and matches(c)]
                done[name] = {"shard": name, "n": len(rows), "n_match": len(ids), "ids": ids, "from": source}
                log.write(json.dumps(done[name]) + "\n")
                log.flush()
            d = done[name]
            res.counts[name] = {"n": int(d["n"]), "n_match": int(d["n_match"])}
            res.sources[name] = str(d.get("from", "tar"))
            res.ids.extend(d["ids"])
            advance(1)
    return res


__all__ = ["RULE_FILE", "SHARDS_FILE", "CaptionPass", "caption_pass"]
