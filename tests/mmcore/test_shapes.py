"""Synthetic shapes and the image–text records / dataset."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from mmcore.data.records import ImageTextData, ImageTextDataset, ImageTextRecord
from mmcore.data.registry import image_text_datasets, load_image_text
from mmcore.data.shapes import COLORS, POSITIONS, SHAPES, make_shapes, render_shape
from mmcore.errors import DataError, MMError

GREY = (128, 128, 128)


def _mask(img: np.ndarray, bg=GREY) -> np.ndarray:
    """Pixels the shape covers (more than half coverage) on a plain background."""
    return np.abs(img.astype(int) - np.asarray(bg)).sum(-1) > 60


def test_shape_vocabulary():
    assert len(SHAPES) == 10 and len(set(SHAPES)) == 10 and "circle" in SHAPES
    assert all(len(rgb) == 3 and all(0 <= c <= 255 for c in rgb) for rgb in COLORS.values())


def test_make_shapes_is_deterministic_and_seed_dependent():
    a, b, c = make_shapes(120, seed=3), make_shapes(120, seed=3), make_shapes(120, seed=4)
    for ra, rb in zip(a.records, b.records, strict=True):
        assert np.array_equal(ra.image, rb.image) and ra.captions == rb.captions and ra.label == rb.label
    assert not all(np.array_equal(ra.image, rc.image) for ra, rc in zip(a.records, c.records, strict=True))


def test_make_shapes_records_are_consistent():
    data = make_shapes(200, seed=0)
    assert data.classnames == list(SHAPES)
    assert data.templates[0] == "a photo of a {}" and all("{}" in t for t in data.templates)
    counts = np.bincount([r.label for r in data.records], minlength=10)
    assert counts.tolist() == [20] * 10  # balanced classes
    for r in data.records:
        assert r.image.shape == (32, 32, 3) and r.image.dtype == np.uint8
        a = r.attrs
        assert set(a) == {"shape", "color", "size", "position"}
        assert SHAPES[r.label] == a["shape"]
        assert len(r.captions) >= 3 and len(set(r.captions)) == len(r.captions)
        assert all(a["shape"] in cap for cap in r.captions)
        assert f"a photo of a {a['shape']}" in r.captions
        assert any(a["color"] in cap and a["size"] in cap for cap in r.captions)
    # every attribute value occurs
    assert {r.attrs["position"] for r in data.records} == set(POSITIONS)
    assert {r.attrs["size"] for r in data.records} == {"small", "large"}
    assert {r.attrs["color"] for r in data.records} == set(COLORS)
    # the captions use correct articles
    assert not any("a orange" in cap for r in data.records for cap in r.captions)


def test_render_places_and_sizes_shapes():
    s = 32
    for pos, (axis, side) in {"left": (1, -1), "right": (1, 1), "top": (0, -1), "bottom": (0, 1)}.items():
        m = _mask(render_shape("square", "red", "small", pos, s))
        centre = np.argwhere(m).mean(0)[axis]
        assert (centre - s / 2) * side > 4, pos
    centred = np.argwhere(_mask(render_shape("circle", "blue", "large", "left", s, centred=True))).mean(0)
    assert np.allclose(centred, [s / 2 - 0.5, s / 2 - 0.5], atol=0.6)
    small = _mask(render_shape("circle", "red", "small", "center", s)).sum()
    large = _mask(render_shape("circle", "red", "large", "center", s)).sum()
    assert large > 2 * small
    img = render_shape("star", (10, 200, 30), "large", "center", s, background=(0, 0, 0))
    assert img[0, 0].tolist() == [0, 0, 0] and img[16, 16].tolist() == [10, 200, 30]


@pytest.mark.parametrize("size", ["small", "large"])
def test_shapes_are_pairwise_distinguishable(size):
    masks = {sh: _mask(render_shape(sh, "white", size, "center", 32)) for sh in SHAPES}
    for a, b in itertools.combinations(SHAPES, 2):
        differ = int((masks[a] ^ masks[b]).sum())
        assert differ >= (12 if size == "small" else 40), (a, b, differ)


def test_variants_for_generation():
    data = make_shapes(60, seed=1, centred=True, fixed_size=True, background="plain")
    assert {r.attrs["position"] for r in data.records} == {"center"}
    assert {r.attrs["size"] for r in data.records} == {"large"}
    for r in data.records[:10]:
        assert r.image[0, 0].tolist() == list(GREY)
    # identical attributes → identical pixels (no jitter, no noise)
    same = [
        r
        for r in data.records
        if (r.attrs["shape"], r.attrs["color"])
        == (data.records[0].attrs["shape"], data.records[0].attrs["color"])
    ]
    assert all(np.array_equal(r.image, same[0].image) for r in same)


def test_subset_of_shapes_relabels():
    data = make_shapes(30, seed=0, shapes=("heart", "circle"))
    assert data.classnames == ["heart", "circle"]
    assert all(data.classnames[r.label] == r.attrs["shape"] for r in data.records)


def test_bad_arguments_raise_user_errors():
    with pytest.raises(MMError, match="unknown shape 'blob'"):
        make_shapes(4, 0, shapes=("circle", "blob"))
    with pytest.raises(MMError, match="unknown colour"):
        render_shape("circle", "mauve", "small", "center")
    with pytest.raises(MMError, match="unknown position"):
        render_shape("circle", "red", "small", "middle")


def test_dataset_caption_choice_depends_only_on_seed_index_epoch():
    recs = [
        ImageTextRecord(
            id=str(i), captions=[f"c{i}-{j}" for j in range(6)], image=np.zeros((4, 4, 3), np.uint8)
        )
        for i in range(30)
    ]
    a, b = ImageTextDataset(recs, seed=1), ImageTextDataset(recs, seed=1)
    b.set_epoch(0)
    first = [a[i]["text"] for i in range(30)]
    assert first == [b[i]["text"] for i in reversed(range(30))][::-1]  # order of access does not matter
    a.set_epoch(1)
    assert [a[i]["text"] for i in range(30)] != first
    a.set_epoch(0)
    assert [a[i]["text"] for i in range(30)] == first
    assert [ImageTextDataset(recs, seed=2)[i]["text"] for i in range(30)] != first
    assert len(set(first)) > 20 and all(t.startswith(f"c{i}-") for i, t in enumerate(first))
    assert [ImageTextDataset(recs, caption="first")[i]["text"] for i in range(3)] == ["c0-0", "c1-0", "c2-0"]


def test_dataset_items_and_collation():
    data = make_shapes(10, seed=0)
    data.records[0].label = None
    ds = ImageTextDataset(
        data, transform=lambda im: torch.from_numpy(np.array(im)).permute(2, 0, 1).float() / 255
    )
    item = ds[3]
    assert (
        item["image"].shape == (3, 32, 32) and item["label"] == data.records[3].label and item["index"] == 3
    )
    assert item["text"] in data.records[3].captions
    assert ds[0]["label"] == -1
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 3, 32, 32) and len(batch["text"]) == 4
    assert torch.equal(ImageTextDataset(data)[3]["image"], item["image"])  # default transform: [0, 1] CHW


def test_load_image_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.jpg"
    with pytest.raises(DataError, match="nope.jpg.*not found"):
        ImageTextRecord(id="x", captions=["a"], path=missing).load_image()
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match="bad.png.*cannot read image"):
        ImageTextRecord(id="x", captions=["a"], path=bad).load_image()


def test_registry_shapes_splits_and_unknown_names():
    assert set(image_text_datasets()) == {"shapes", "cifar100", "flickr30k", "cc12m", "wds"}
    train = load_image_text("shapes", split="train", n=20, seed=0)
    test = load_image_text("shapes", split="test", n=20, seed=0)
    assert isinstance(train, ImageTextData) and len(train) == 20
    assert not any(np.array_equal(a.image, b.image) for a in train.records for b in test.records)
    again = load_image_text("shapes", split="test", n=20, seed=0)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(test.records, again.records, strict=True))
    with pytest.raises(MMError, match="unknown image-text dataset 'imagenet'.*shapes.*cifar100"):
        load_image_text("imagenet")
    with pytest.raises(MMError, match="needs a data root"):
        load_image_text("flickr30k")
    with pytest.raises(MMError, match="unexpected keyword"):
        load_image_text("shapes", n=2, colour="red")


def _digest(data: ImageTextData) -> str:
    import hashlib

    h = hashlib.sha256()
    for r in data.records:
        h.update(r.image.tobytes())
        h.update(repr((r.id, r.label, r.captions, sorted(r.attrs.items()))).encode())
    h.update(repr(data.classnames).encode())
    return h.hexdigest()


def test_default_ten_class_world_is_bit_identical_to_before_the_class_option():
    # digests of the images, ids, labels, captions and attrs drawn by make_shapes before `classes=` existed
    assert _digest(make_shapes(300, seed=5, image_size=24)) == (
        "b2046b22f283e5f8a56f4d0920edca0e91fb75f33d443c249dec4db3ed06b410")
    assert _digest(make_shapes(50, seed=0)) == "e02b9c0bef8a39fee7ad09c1655f41f4f9ffd94aa46e4df14c638c3ebaff66ed"
    assert _digest(make_shapes(50, seed=0, classes="shape")) == _digest(make_shapes(50, seed=0))


def test_shape_color_world_has_100_named_classes():
    from mmcore.data.shapes import class_names

    data = make_shapes(400, seed=2, classes="shape_color")
    assert len(data.classnames) == 100 and len(set(data.classnames)) == 100
    assert data.classnames == class_names(SHAPES, list(COLORS), "shape_color") and data.classnames[0] == "red circle"
    labels = [r.label for r in data.records]
    assert sorted(set(labels)) == list(range(100)) and all(labels.count(k) == 4 for k in range(100))  # balanced
    for r in data.records:
        name = data.classnames[r.label]
        assert name == f"{r.attrs['color']} {r.attrs['shape']}"
        assert any(name in c for c in r.captions)  # "a red circle", "a small red circle on the left", ...
    assert _digest(make_shapes(400, seed=2, classes="shape_color")) == _digest(data)  # deterministic
    reg = load_image_text("shapes", split="test", n=200, seed=0, classes="shape_color")
    assert len(reg.classnames) == 100
    with pytest.raises(MMError, match="class scheme"):
        make_shapes(10, 0, classes="colour")


def test_attribute_prompts_are_caption_phrasings():
    from mmcore.data.shapes import ATTRIBUTE_TEMPLATES, CAPTION_TEMPLATES, attribute_prompts

    assert all(t in CAPTION_TEMPLATES for ts in ATTRIBUTE_TEMPLATES.values() for t in ts)
    assert attribute_prompts("color", "orange", ["circle"]) == ["an orange circle", "a photo of an orange circle"]
    assert attribute_prompts("position", "left", ["star", "ring"]) == ["a star on the left", "a ring on the left"]
    caps = set(make_shapes(200, seed=0).records[0].captions)
    r = make_shapes(200, seed=0).records[0]
    assert set(attribute_prompts("color", r.attrs["color"], [r.attrs["shape"]])) <= caps
