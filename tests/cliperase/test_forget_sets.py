import numpy as np
import pytest
from cliperase.config import ForgetSpec, UnlearnConfig
from cliperase.forget_sets import keyword_pattern, split_forget_retain
from hypothesis import given, settings
from hypothesis import strategies as st
from mmcore.data.records import ImageTextData, ImageTextRecord
from mmcore.errors import ConfigError, DataError, MMError

CLASSES = ["circle", "square", "star"]


def _data(captions_per_record, labels=None, name="toy"):
    recs = [
        ImageTextRecord(id=f"r{i}", captions=list(caps), label=None if labels is None else labels[i],
                        image=np.zeros((4, 4, 3), np.uint8))
        for i, caps in enumerate(captions_per_record)
    ]
    return ImageTextData(name=name, records=recs, classnames=CLASSES if labels is not None else None,
                         templates=["a {}"])


def _shapes(n=30):
    labels = [i % 3 for i in range(n)]
    return _data([[f"a red {CLASSES[label]}"] for label in labels], labels)


def test_split_by_class_sizes_and_test_split():
    train, test = _shapes(30), _shapes(9)
    sp = split_forget_retain(train, test, ForgetSpec(classes=["circle"]))
    assert sp.sizes() == {"forget": 10, "retain": 20, "test": 9, "test_forget": 3, "test_retain": 6}
    assert all(r.label == 0 for r in sp.forget.records) and all(r.label != 0 for r in sp.retain.records)
    assert sp.forget_classes == ["circle"]
    # case-insensitive class names
    assert split_forget_retain(train, test, ForgetSpec(classes=["Circle"])).forget_classes == ["circle"]


def test_unknown_class_lists_valid_ones():
    with pytest.raises(MMError, match="valid classes: circle, square, star"):
        split_forget_retain(_shapes(), None, ForgetSpec(classes=["hexagon"]))


def test_empty_forget_set_is_an_error():
    with pytest.raises(MMError, match="forget set is empty"):
        split_forget_retain(_shapes(), None, ForgetSpec(keyword="banana"))
    data = _data([["x"], ["y"]], [0, 1])  # class 'star' exists but has no samples
    with pytest.raises(MMError, match="empty"):
        split_forget_retain(data, None, ForgetSpec(classes=["star"]))


def test_forgetting_everything_is_an_error():
    with pytest.raises(MMError, match="whole training set"):
        split_forget_retain(_shapes(), None, ForgetSpec(keyword="red"))


def test_exactly_one_spec():
    with pytest.raises(ConfigError):
        split_forget_retain(_shapes(), None, ForgetSpec())
    with pytest.raises(ConfigError):
        split_forget_retain(_shapes(), None, ForgetSpec(classes=["circle"], keyword="red"))
    with pytest.raises(ConfigError):
        UnlearnConfig(forget=ForgetSpec()).validate()


def test_ratio_is_seeded():
    d = _data([[f"c{i}"] for i in range(30)], [i % 3 for i in range(30)])
    a = split_forget_retain(d, None, ForgetSpec(ratio=0.34, seed=1))
    b = split_forget_retain(d, None, ForgetSpec(ratio=0.34, seed=1))
    assert a.forget_classes == b.forget_classes and len(a.forget_classes) == 1
    assert {tuple(split_forget_retain(d, None, ForgetSpec(ratio=0.34, seed=s)).forget_classes) for s in range(20)} \
        != {tuple(a.forget_classes)}


def test_keyword_whole_word_and_all_captions_go():
    d = _data([["a woman rides", "a person"], ["the womanizer"], ["Women walk"], ["a dog"]])
    sp = split_forget_retain(d, None, ForgetSpec(keyword="woman,women"))
    assert [r.id for r in sp.forget.records] == ["r0", "r2"]
    assert sp.forget.records[0].captions == ["a woman rides", "a person"]  # all captions of the image
    assert sp.forget_classes is None
    assert keyword_pattern("WOMAN").search("a woman.")


def test_ids_file(tmp_path):
    d = _shapes(6)
    f = tmp_path / "ids.txt"
    f.write_text("# forget these\nr1\n\nr4  # comment\n")
    sp = split_forget_retain(d, _shapes(3), ForgetSpec(ids_file=str(f)))
    assert [r.id for r in sp.forget.records] == ["r1", "r4"] and sp.sizes()["test_forget"] == 0
    f.write_text("r1\nnope\n")
    with pytest.raises(DataError, match="ids.txt.*not in dataset"):
        split_forget_retain(d, None, ForgetSpec(ids_file=str(f)))
    with pytest.raises(DataError, match="not found"):
        split_forget_retain(d, None, ForgetSpec(ids_file=str(tmp_path / "missing.txt")))


def test_classes_need_labels():
    with pytest.raises(MMError, match="no class labels"):
        split_forget_retain(_data([["a"], ["b"]]), None, ForgetSpec(classes=["a"]))


WORDS = ["cat", "dog", "Cat", "cats", "bird", "a", "the", "dog!"]


@settings(max_examples=60, deadline=None)
@given(caps=st.lists(st.lists(st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(" ".join),
                              min_size=1, max_size=3), min_size=2, max_size=12),
       kw=st.sampled_from(["cat", "dog", "bird"]))
def test_keyword_split_property(caps, kw):
    d = _data(caps)

    def brute(record):  # whole word, case-insensitive: tokens after stripping punctuation
        return any(kw in [w.strip("!").lower() for w in c.split()] for c in record.captions)

    expected = [brute(r) for r in d.records]
    if not any(expected):
        with pytest.raises(MMError):
            split_forget_retain(d, None, ForgetSpec(keyword=kw))
        return
    if all(expected):
        with pytest.raises(MMError):
            split_forget_retain(d, None, ForgetSpec(keyword=kw))
        return
    sp = split_forget_retain(d, None, ForgetSpec(keyword=kw))
    f_ids = {r.id for r in sp.forget.records}
    r_ids = {r.id for r in sp.retain.records}
    assert f_ids.isdisjoint(r_ids) and f_ids | r_ids == {r.id for r in d.records}
    assert f_ids == {r.id for r, e in zip(d.records, expected, strict=True) if e}


def test_load_data_reads_the_flickr30k_caption_file_the_config_picks(tmp_path):
    import json

    from cliperase.recipes.runner import load_data
    from PIL import Image

    names = {"1.jpg": "train", "2.jpg": "train", "3.jpg": "test"}
    (tmp_path / "flickr30k-images").mkdir()
    for n in names:
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "flickr30k-images" / n, format="PNG")
    images = [{"filename": n, "split": sp, "sentences": [{"raw": f"karpathy caption of {n}"}]}
              for n, sp in names.items()]
    (tmp_path / "dataset_flickr30k.json").write_text(json.dumps({"images": images, "dataset": "flickr30k"}))
    csv = "image_name| comment_number| comment\n" + "".join(f"{n}| 0| csv caption of {n}\n" for n in names)
    (tmp_path / "results.csv").write_text(csv + "3.jpg| 1   a dog on grass\n")  # the public file's fused row
    cfg = UnlearnConfig(dataset="flickr30k", data_root=str(tmp_path), forget=ForgetSpec(keyword="dog"))
    train, test = load_data(cfg)
    assert [r.captions for r in test.records] == [["karpathy caption of 3.jpg"]]  # default: the JSON
    cfg.caption_file = "csv"
    cfg.validate()
    train, test = load_data(cfg)
    assert [r.id for r in train.records] == ["1.jpg", "2.jpg"]  # the split still from the Karpathy JSON
    assert [r.captions for r in test.records] == [["csv caption of 3.jpg", "a dog on grass"]]
    cfg.caption_file = "json"
    with pytest.raises(ConfigError, match="caption_file must be one of auto, karpathy, csv"):
        cfg.validate()


def test_keyword_forget_set_over_shards_equals_the_record_split(tmp_path):
    from cliperase.forget_sets import FORGET_PASS_DIR, run_forget_ids, split_forget_retain
    from mmcore.data.shapes import make_shapes
    from mmcore.data.wds.records import load_wds, write_shards

    data = make_shapes(40, 0, image_size=16)
    root = tmp_path / "shards"
    write_shards(data.records, root, per_shard=10, classnames=data.classnames)
    train = load_wds(root, "all")
    spec = ForgetSpec(keyword="circle")
    ids = run_forget_ids("wds", spec, train, tmp_path / "run")
    assert (tmp_path / "run" / FORGET_PASS_DIR / "shards.jsonl").is_file()
    a, b = split_forget_retain(train, None, spec, ids), split_forget_retain(train, None, spec)
    assert [r.id for r in a.forget.records] == [r.id for r in b.forget.records] and len(a.forget) > 0
    assert len(a.retain) == len(b.retain) == 40 - len(a.forget)
    assert run_forget_ids("shapes", spec, train, tmp_path / "run") is None
