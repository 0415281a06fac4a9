"""Real-format image–text loaders, each on a tiny fixture written here in the published format."""

from __future__ import annotations

import io
import json
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
from mmcore.data.cc12m import load_cc12m_json
from mmcore.data.image_text import load_cifar100, load_flickr30k
from mmcore.data.records import ImageTextDataset
from mmcore.data.registry import load_image_text
from mmcore.data.wds.records import load_wds
from mmcore.errors import DataError, MMError
from PIL import Image


def _png(path: Path, value: int, size: int = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)
    return path


def _png_bytes(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((6, 6, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------- CIFAR-100

FINE = ["apple", "aquarium_fish", "baby", "bear"]


class _Python2Pickler(pickle._Pickler):
    """Writes what Python 2's cPickle wrote for the CIFAR release (protocol 2): every str and bytes
    value as a Python 2 byte string (SHORT_BINSTRING / BINSTRING), numpy's globals under numpy 1's
    module names (numpy.core.multiarray._reconstruct, numpy.ndarray, numpy.dtype)."""

    dispatch = pickle._Pickler.dispatch.copy()

    def __init__(self, file):
        super().__init__(file, protocol=2)

    def _save_py2_str(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else bytes(obj)
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = _save_py2_str
    dispatch[bytes] = _save_py2_str

    def save_global(self, obj, name=None):
        module = obj.__module__.replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode("ascii"))
        self.memoize(obj)


def _python2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    _Python2Pickler(buf).dump(obj)
    return buf.getvalue()


def _write_cifar(
    root: Path, n_train: int = 6, n_test: int = 4, keys: str = "py2", protocol: int = 4
) -> dict[str, np.ndarray]:
    """The release's layout: cifar-100-python/{train,test,meta}, pickled dicts with a row-major
    ``data`` array of N×3072 uint8 (R plane, G plane, B plane), ``fine_labels``, ``filenames``, and
    ``meta`` with ``fine_label_names``. ``keys="py2"``: a Python 2 pickle as released; ``"bytes"``:
    re-pickled by Python 3 after loading with encoding="bytes" (bytes keys and names), at ``protocol``."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    b = (lambda x: x.encode()) if keys == "bytes" else (lambda x: x)
    dump = _python2_pickle if keys == "py2" else (lambda obj: pickle.dumps(obj, protocol=protocol))
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        entry = {
            b("filenames"): [b(f"img_{split}_{i}.png") for i in range(n)],
            b("batch_label"): b(f"{split} batch"),
            b("fine_labels"): [i % len(FINE) for i in range(n)],
            b("coarse_labels"): [0] * n,
            b("data"): data,
        }
        (folder / split).write_bytes(dump(entry))
        out[split] = data
    meta = {b("fine_label_names"): [b(c) for c in FINE], b("coarse_label_names"): [b("stuff")]}
    (folder / "meta").write_bytes(dump(meta))
    return out


@pytest.mark.parametrize(("keys", "protocol"), [("py2", 2), ("bytes", 4), ("bytes", 2)])
def test_cifar100_reads_the_release_pickles(tmp_path, keys, protocol):
    raw = _write_cifar(tmp_path, keys=keys, protocol=protocol)
    head = (tmp_path / "cifar-100-python" / "train").read_bytes()[:40]
    if keys == "py2":  # the fixture really is in Python 2's form: protocol 2, byte-string keys
        assert head.startswith(b"\x80\x02}") and b"U\x09filenames" in head
        assert (
            b"numpy.core.multiarray\n_reconstruct" in (tmp_path / "cifar-100-python" / "train").read_bytes()
        )
        with pytest.raises(UnicodeDecodeError):  # plain pickle.load (ASCII) fails on the raw pixel bytes
            pickle.loads((tmp_path / "cifar-100-python" / "train").read_bytes())
    else:
        assert b"\x8c\x04data" not in head and isinstance(
            next(iter(pickle.loads((tmp_path / "cifar-100-python" / "meta").read_bytes()))), bytes
        )
    data = load_cifar100(tmp_path, "train")
    assert data.classnames == ["apple", "aquarium fish", "baby", "bear"]
    assert len(data) == 6 and "{}" in data.templates[0]
    r = data.records[1]
    assert r.label == 1 and r.captions == ["a photo of a aquarium fish"]
    assert r.attrs["filename"] == "img_train_1.png"
    # pixel (y=0, x=2) of image 1: the R, G and B planes are 1024 values apart
    assert r.image.shape == (32, 32, 3)
    assert r.image[0, 2].tolist() == [
        raw["train"][1, 2],
        raw["train"][1, 1024 + 2],
        raw["train"][1, 2048 + 2],
    ]
    assert np.array_equal(np.asarray(r.load_image()), r.image)
    test = load_image_text("cifar100", tmp_path, split="test")
    assert len(test) == 4 and [x.label for x in test.records] == [0, 1, 2, 3]
    assert len(load_cifar100(tmp_path, "train", limit=2)) == 2


def test_cifar100_missing_unverified_or_not_cifar(tmp_path):
    with pytest.raises(DataError, match="cifar-100-python.*CIFAR-100 not found.*cifar-100-python.tar.gz"):
        load_cifar100(tmp_path / "nowhere", "train")
    folder = tmp_path / "cifar-100-python"
    _write_cifar(tmp_path)
    # the fixture is not the real archive, so the MD5 check against the release must reject it
    with pytest.raises(DataError, match="meta: MD5 .* does not match the official release"):
        load_cifar100(tmp_path, "test", verify_checksums=True)
    (folder / "test").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="test: not a valid CIFAR-100 python-format file"):
        load_cifar100(tmp_path, "test")
    # a pickle calling anything but numpy's array reconstruction is refused, not run
    (folder / "test").write_bytes(pickle.dumps({"data": Path("x")}))
    with pytest.raises(DataError, match="refusing to load global pathlib"):
        load_cifar100(tmp_path, "test")
    (folder / "test").write_bytes(pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1]}))
    with pytest.raises(DataError, match="test: not a CIFAR-100 file: no 'fine_labels' entry"):
        load_cifar100(tmp_path, "test")
    (folder / "test").write_bytes(
        pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "fine_labels": [0, 9]})
    )
    with pytest.raises(DataError, match=r"fine_labels\[1\] = 9 is not a class index 0..3"):
        load_cifar100(tmp_path, "test")
    (folder / "test").write_bytes(pickle.dumps({"data": np.zeros((2, 100), np.uint8), "fine_labels": [0, 1]}))
    with pytest.raises(
        DataError, match=r"uint8 array of shape \[N, 3072\], got a uint8 array of shape \(2, 100\)"
    ):
        load_cifar100(tmp_path, "test")


# ---------------------------------------------------------------- Flickr30K


def _karpathy(root: Path, images: list[tuple[str, str]]) -> Path:
    doc = {
        "images": [
            {
                "filename": fname,
                "split": split,
                "imgid": i,
                "sentids": list(range(5 * i, 5 * i + 5)),
                "sentences": [
                    {
                        "raw": f"caption {j} of {fname}",
                        "tokens": ["caption", str(j)],
                        "imgid": i,
                        "sentid": 5 * i + j,
                    }
                    for j in range(5)
                ],
            }
            for i, (fname, split) in enumerate(images)
        ],
        "dataset": "flickr30k",
    }
    path = root / "dataset_flickr30k.json"
    path.write_text(json.dumps(doc))
    return path


def test_flickr30k_karpathy_json(tmp_path):
    names = [("100.jpg", "train"), ("200.jpg", "val"), ("300.jpg", "test"), ("400.jpg", "test")]
    _karpathy(tmp_path, names)
    for i, (fname, _) in enumerate(names):
        _png(tmp_path / "flickr30k-images" / fname, 10 * i)
    test = load_flickr30k(tmp_path, "test")
    assert [r.id for r in test.records] == ["300.jpg", "400.jpg"]
    r = test.records[0]
    assert len(r.captions) == 5 and r.captions[2] == "caption 2 of 300.jpg" and r.label is None
    assert r.path == (tmp_path / "flickr30k-images" / "300.jpg").resolve()
    assert np.asarray(r.load_image())[0, 0].tolist() == [20, 20, 20]
    assert [r.id for r in load_image_text("flickr30k", tmp_path, split="train").records] == ["100.jpg"]
    assert len(load_flickr30k(tmp_path, "all")) == 4
    item = ImageTextDataset(test, caption="first")[1]
    assert item["text"] == "caption 0 of 400.jpg" and item["label"] == -1


def test_flickr30k_missing_image_and_escape(tmp_path):
    _karpathy(tmp_path, [("1.jpg", "test"), ("2.jpg", "test")])
    _png(tmp_path / "images" / "1.jpg", 5)
    with pytest.raises(DataError, match="2.jpg.*image file not found"):
        load_flickr30k(tmp_path, "test")
    data = load_flickr30k(tmp_path, "test", skip_bad=True)
    assert [r.id for r in data.records] == ["1.jpg"] and data.skipped == 1
    _karpathy(tmp_path, [("../../secret.jpg", "test")])
    with pytest.raises(DataError, match="escapes the data root"):
        load_flickr30k(tmp_path, "test")


# The public results.csv's layout: "|"-separated with a blank after each "|", header first. Its row
# for 2199200615.jpg #4 lost the "|" between the comment number and the comment (copied as it is).
RESULTS_CSV = """image_name| comment_number| comment
1000092795.jpg| 0| Two young guys with shaggy hair look at their hands .
1000092795.jpg| 2| Two men in green shirts are standing in a yard .
1000092795.jpg| 1| Two young , White males are outside near many bushes .
10002456.jpg| 0| Several men in hard hats are operating a giant pulley system .
10002456.jpg| 1| Workers look down from up above on a piece of equipment .
2199200615.jpg| 3| A black and white dog is running in a grassy garden surrounded by a white fence .
2199200615.jpg| 4   A dog runs across the grass .
"""


def test_flickr30k_results_csv(tmp_path):
    root = tmp_path / "flickr30k_images"
    (root).mkdir()
    (root / "results.csv").write_text(RESULTS_CSV)
    for i, f in enumerate(["1000092795.jpg", "10002456.jpg", "2199200615.jpg"]):
        _png(root / "flickr30k_images" / f, i)
    data = load_flickr30k(root, "all")  # the row without its second "|" is read, not rejected
    assert data.skipped == 0
    assert [r.id for r in data.records] == ["1000092795.jpg", "10002456.jpg", "2199200615.jpg"]
    assert data.records[0].captions == [
        "Two young guys with shaggy hair look at their hands .",
        "Two young , White males are outside near many bushes .",
        "Two men in green shirts are standing in a yard .",
    ]
    assert data.records[2].captions == [
        "A black and white dog is running in a grassy garden surrounded by a white fence .",
        "A dog runs across the grass .",
    ]
    assert data.records[1].load_image().size == (8, 8)
    with pytest.raises(DataError, match="no train/val/test split"):
        load_flickr30k(root, "test", annotations=root / "results.csv")
    _karpathy(root, [("1000092795.jpg", "train"), ("10002456.jpg", "test")])
    test = load_flickr30k(root, "test", annotations=root / "results.csv")
    assert [r.id for r in test.records] == ["10002456.jpg"] and test.records[0].captions[0].startswith(
        "Several"
    )
    # a line that really is malformed (no comment number at all) is still an error unless skipped
    (root / "results.csv").write_text(RESULTS_CSV + "3000.jpg| A dog without its number .\n")
    with pytest.raises(DataError, match="results.csv: line 9: malformed"):
        load_flickr30k(root, "all", annotations=root / "results.csv")
    assert load_flickr30k(root, "all", annotations=root / "results.csv", skip_bad=True).skipped == 1
    (root / "results.csv").write_text("name,caption\nx.jpg,hello\n")
    with pytest.raises(DataError, match="expected header"):
        load_flickr30k(root, "all", annotations=root / "results.csv")


def test_flickr30k_caption_file_picks_karpathy_or_csv(tmp_path):
    (tmp_path / "results.csv").write_text(RESULTS_CSV)
    _karpathy(tmp_path, [("1000092795.jpg", "train"), ("10002456.jpg", "test"), ("2199200615.jpg", "test")])
    for i, f in enumerate(["1000092795.jpg", "10002456.jpg", "2199200615.jpg"]):
        _png(tmp_path / "flickr30k-images" / f, i)
    default = load_flickr30k(tmp_path, "test")  # both exist: the Karpathy JSON, as before
    assert default.attrs["annotations"].endswith("dataset_flickr30k.json")
    assert (
        load_flickr30k(tmp_path, "test", caption_file="karpathy").records[0].captions
        == default.records[0].captions
    )
    assert (
        default.records[0].captions[0] == "caption 0 of 10002456.jpg"
        and len(default.records[0].captions) == 5
    )
    csv = load_flickr30k(
        tmp_path, "test", caption_file="csv"
    )  # captions from results.csv, split from the JSON
    assert csv.attrs["annotations"].endswith("results.csv")
    assert [r.id for r in csv.records] == ["10002456.jpg", "2199200615.jpg"]
    assert csv.records[1].captions[-1] == "A dog runs across the grass ."
    via_registry = load_image_text("flickr30k", tmp_path, split="all", caption_file="csv")
    assert sum(len(r.captions) for r in via_registry.records) == 7
    with pytest.raises(MMError, match="unknown caption file 'json'.*auto, karpathy, csv"):
        load_flickr30k(tmp_path, "test", caption_file="json")
    (tmp_path / "results.csv").unlink()
    with pytest.raises(DataError, match="results.csv.*caption file 'csv' was asked for"):
        load_flickr30k(tmp_path, "test", caption_file="csv")
    (tmp_path / "dataset_flickr30k.json").unlink()
    (tmp_path / "results.csv").write_text(RESULTS_CSV)
    with pytest.raises(DataError, match="dataset_flickr30k.json.*caption file 'karpathy' was asked for"):
        load_flickr30k(tmp_path, "test", caption_file="karpathy")
    assert len(load_flickr30k(tmp_path, "all")) == 3  # auto falls back to results.csv, as before
    # every dataset accepts caption_file="auto" (configs carry it); another value is for flickr30k only
    assert len(load_image_text("shapes", split="test", n=3, caption_file="auto")) == 3
    with pytest.raises(MMError, match="caption file 'csv' applies to flickr30k only"):
        load_image_text("shapes", split="test", n=3, caption_file="csv")


def test_flickr30k_no_annotations(tmp_path):
    with pytest.raises(DataError, match="no Flickr30K annotations found"):
        load_flickr30k(tmp_path, "test")


# ---------------------------------------------------------------- CC12M JSON + folder


def test_cc12m_json_and_images(tmp_path):
    items = [
        {"img_name": "a.png", "text": "a woman riding a bike"},
        {"img_name": "b.png", "text": "a red car"},
        {"img_name": "a.png", "text": "women on bicycles"},
        {"img_name": "c.png", "text": "a broken file"},
    ]
    (tmp_path / "cc12m.json").write_text(json.dumps(items))
    _png(tmp_path / "images" / "a.png", 1)
    _png(tmp_path / "images" / "b.png", 2)
    (tmp_path / "images" / "c.png").write_bytes(b"definitely not a png")
    data = load_cc12m_json(tmp_path)  # c.png exists, so without skip_bad it is only found when read
    assert [r.id for r in data.records] == ["a.png", "b.png", "c.png"]
    assert data.records[0].captions == ["a woman riding a bike", "women on bicycles"]
    with pytest.raises(DataError, match="c.png.*cannot read image"):
        data.records[2].load_image()
    checked = load_image_text("cc12m", tmp_path / "cc12m.json", skip_bad=True)
    assert [r.id for r in checked.records] == ["a.png", "b.png"] and checked.skipped == 1
    (tmp_path / "cc12m.json").write_text(json.dumps({"img_name": "a.png"}))
    with pytest.raises(DataError, match="cc12m.json: expected a JSON list"):
        load_cc12m_json(tmp_path)
    (tmp_path / "cc12m.json").write_text(json.dumps([{"img_name": "/etc/passwd", "text": "x"}]))
    with pytest.raises(DataError, match="escapes the data root"):
        load_cc12m_json(tmp_path)


@pytest.mark.parametrize("chunk_size", [1, 3, 64, 1 << 20])
def test_json_entries_are_parsed_incrementally(tmp_path, chunk_size):
    from mmcore.data.cc12m import iter_json_entries

    entries = [{"img_name": f"{i}.png", "text": "]}[, \"tricky\" " * (i % 3)} for i in range(40)]
    entries += [15000000000.0, -1.5e-3, 123, "s", None, True, [], {}]
    (tmp_path / "a.json").write_text(json.dumps(entries, indent=1))
    assert list(iter_json_entries(tmp_path / "a.json", chunk_size=chunk_size)) == entries
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    assert list(iter_json_entries(tmp_path / "a.jsonl", chunk_size=chunk_size)) == entries
    for bad, problem in [('[{"a": 1}', "not closed"), ('[{"a": 1} {"b": 2}]', "expected ','"),
                         ('[1, ]', "malformed JSON in entry 1"), ('{"a": 1}', "expected a JSON list")]:
        (tmp_path / "b.json").write_text(bad)
        with pytest.raises(DataError, match=problem):
            list(iter_json_entries(tmp_path / "b.json", chunk_size=chunk_size))


def test_cc12m_json_lines_and_limit(tmp_path):
    items = [{"img_name": n, "text": t} for n, t in [("a.png", "one"), ("b.png", "two"), ("a.png", "uno"),
                                                      ("c.png", "three")]]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    for name, v in (("a.png", 1), ("b.png", 2), ("c.png", 3)):
        _png(tmp_path / "images" / name, v)
    data = load_cc12m_json(tmp_path, "train")
    assert [(r.id, r.captions) for r in data.records] == [("a.png", ["one", "uno"]), ("b.png", ["two"]),
                                                          ("c.png", ["three"])]
    assert [r.id for r in load_cc12m_json(tmp_path / "train.jsonl", limit=2).records] == ["a.png", "b.png"]


# ---------------------------------------------------------------- webdataset shards


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_wds_shards(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    _tar(
        shards / "00000.tar",
        {
            "000001.jpg": _png_bytes(11),  # PNG bytes under .jpg: decoded by content, as webdataset does
            "000001.txt": b"a dog on a beach",
            "000001.json": json.dumps({"url": "http://x", "width": 6}).encode(),
            "sub/000002.png": _png_bytes(22),
            "sub/000002.txt": "une tasse de café".encode(),
            "000003.txt": b"caption without an image",
        },
    )
    _tar(
        shards / "00001.tar",
        {
            "000004.png": b"corrupt",
            "000004.txt": b"broken",
            "000005.png": _png_bytes(55),
            "000005.json": b'{"caption": "from json"}',
        },
    )
    with pytest.raises(DataError, match="000003.*lacks an image"):
        load_wds(shards)
    data = load_wds(shards, skip_bad=True)
    assert [r.id for r in data.records] == ["00000/000001", "00000/sub/000002", "00001/000005"]
    assert data.skipped == 2  # the caption-only sample and the corrupt image
    r0, r1, r2 = data.records
    assert r0.captions == ["a dog on a beach"] and r0.attrs["json"]["width"] == 6 and r0.path is None
    assert r1.captions == ["une tasse de café"] and r2.captions == ["from json"]
    assert np.asarray(r1.load_image())[0, 0].tolist() == [22, 22, 22]
    assert len(load_image_text("wds", shards / "0000[1].tar", skip_bad=True)) == 1  # glob
    assert len(load_wds(shards / "00000.tar", skip_bad=True, limit=1)) == 1


def test_wds_refuses_escaping_members_and_reports_bad_images(tmp_path):
    _tar(tmp_path / "evil.tar", {"../../evil.txt": b"x", "../../evil.png": _png_bytes(1)})
    with pytest.raises(DataError, match="escapes the data root"):
        load_wds(tmp_path / "evil.tar")
    _tar(tmp_path / "ok.tar", {"k.png": b"corrupt", "k.txt": b"caption"})
    rec = load_wds(tmp_path / "ok.tar").records[0]  # not verified up front without skip_bad ...
    with pytest.raises(DataError, match=r"ok.tar:k.png: cannot read image"):
        rec.load_image()  # ... but reading names the shard member
    with pytest.raises(DataError, match="no tar shards"):
        load_wds(tmp_path / "missing-*.tar")
