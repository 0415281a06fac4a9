"""Images decoded in DataLoader workers (mmcore.data.loading): the same tensors as in-process decoding,
data errors raised as themselves, a stream evaluated like its records, unlearning steps fed per step."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mmcore.data.loading import image_batches
from mmcore.data.shapes import make_shapes
from mmcore.data.wds.records import load_wds, write_shards
from mmcore.data.wds.stream import open_wds_stream
from mmcore.encoders.clip import create_clip
from mmcore.errors import ImageReadError
from mmcore.eval.retrieval import encode_images, retrieval_eval
from mmcore.eval.stream import stream_eval
from mmcore.eval.zeroshot import zero_shot_eval


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """48 shapes images as 3 JPEG shards of 16 (img2dataset layout, class files)."""
    root = tmp_path_factory.mktemp("jpg_shards")
    data = make_shapes(48, 0, image_size=16)
    write_shards(data.records, root, per_shard=16, classnames=data.classnames, templates=data.templates)
    return root


@pytest.fixture(scope="module")
def bundle():
    torch.manual_seed(0)
    return create_clip("mm-micro-clip")


def test_worker_batches_equal_in_process_batches(shards, bundle):
    recs = load_wds(shards, "all").records
    plan = [[5, 1, 40], [7], list(range(20, 36))]
    a = list(image_batches(recs, bundle.preprocess_eval, plan, num_workers=0))
    b = list(image_batches(recs, bundle.preprocess_eval, plan, num_workers=2))
    assert [x.shape[0] for x in b] == [3, 1, 16]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    f0 = encode_images(bundle.model, recs, bundle.preprocess_eval, batch_size=8, num_workers=0, desc="w0")
    f2 = encode_images(bundle.model, recs, bundle.preprocess_eval, batch_size=8, num_workers=2)
    assert f0.shape == (48, f0.shape[1]) and torch.allclose(f0, f2, atol=1e-6)


def test_an_unreadable_image_in_a_worker_raises_image_read_error_naming_it(tmp_path, bundle):
    recs = make_shapes(4, 0, image_size=16).records
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    recs[2].image, recs[2].path = None, bad
    with pytest.raises(ImageReadError, match="broken.jpg"):
        list(image_batches(recs, bundle.preprocess_eval, [[0, 1], [2, 3]], num_workers=2))


def test_stream_eval_equals_the_records_evaluation(shards, bundle):
    data = load_wds(shards, "all")
    zs = zero_shot_eval(bundle.model, bundle.tokenizer, data, bundle.preprocess_eval, num_workers=0)
    rt = retrieval_eval(bundle.model, bundle.tokenizer, data, bundle.preprocess_eval, num_workers=0)
    got = stream_eval(bundle.model, bundle.tokenizer, open_wds_stream(shards, "all"), bundle.preprocess_eval,
                      batch_size=8, num_workers=2)
    assert got["n"] == 48 and got["n_images"] == 48
    assert got["zero_shot_accuracy"] == pytest.approx(zs["accuracy"])
    assert got["per_class"] == pytest.approx(zs["per_class"])
    for k in ("i2t_R@1", "i2t_R@5", "t2i_R@1", "t2i_R@10", "n_texts"):
        assert got[k] == pytest.approx(rt[k]), k
    # the metrics move with the model
    other = create_clip("mm-micro-clip")
    with torch.no_grad():
        for p in other.model.parameters():
            p.add_(torch.randn_like(p))
    moved = stream_eval(other.model, other.tokenizer, open_wds_stream(shards, "all"), other.preprocess_eval,
                        batch_size=8, num_workers=0)
    assert (moved["i2t_R@1"], moved["t2i_R@5"]) != (got["i2t_R@1"], got["t2i_R@5"])


def test_step_images_give_each_steps_batches_in_order(bundle):
    from cliperase.trainer import StepImages
    from cliperase.training import ImageBank
    from mmcore.distributed import StepBatches

    data = make_shapes(40, 1, image_size=16)
    f, r = data.records[:12], data.records[12:]
    sf, sr = StepBatches.for_processes(len(f), 4, 0, 2, "forget"), StepBatches.for_processes(len(r), 6, 1, 2, "retain")
    for rank in (0, 1):
        si = StepImages([(f, sf), (r, sr)], bundle.preprocess_eval, rank, 2, num_workers=2)
        got = list(si.steps(3, 9))
        assert len(got) == 6
        for step, images in zip(range(3, 9), got, strict=True):
            lf, lr = si.local(step)
            want = torch.cat([ImageBank(f, bundle.preprocess_eval)(lf), ImageBank(r, bundle.preprocess_eval)(lr)])
            assert torch.equal(images, want)


@pytest.mark.parametrize("workers", [0, 2])
def test_reading_batches_leaves_the_global_rng_alone(shards, bundle, workers):
    """A DataLoader without a generator of its own draws its base seed from the global RNG on every
    iteration; reading data mid-run would then shift a model's later dropout draws."""
    from mmcore.data.wds.layout import shard_paths
    from mmcore.data.wds.shard_sampler import shuffled_shard_batches

    recs = load_wds(shards, "all").records
    torch.manual_seed(123)
    before = torch.get_rng_state()
    assert len(list(image_batches(recs, bundle.preprocess_eval, [[0, 1], [2, 3], [4]], num_workers=workers))) == 3
    assert sum(len(b["id"]) for b in open_wds_stream(shards, "all").batches(bundle.preprocess_eval, 16,
                                                                              num_workers=workers)) == 48
    drawn = shuffled_shard_batches(shard_paths(shards), bundle.preprocess_eval, 8, seed=0, num_workers=workers)
    assert len(next(drawn)["id"]) == 8
    drawn.close()
    assert torch.equal(torch.get_rng_state(), before)


def test_in_memory_arrays_are_read_in_process_by_default(shards, bundle, monkeypatch):
    """Nothing to decode: the default starts no worker for arrays under the tensor transform, while
    file-backed records (and an explicit worker count) still go through the DataLoader."""
    monkeypatch.setenv("MM_NUM_WORKERS", "1")
    made = []
    real = torch.utils.data.DataLoader

    def counting(*args, **kwargs):
        made.append(kwargs.get("num_workers"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.utils.data, "DataLoader", counting)
    arrays = make_shapes(600, 0, image_size=16).records
    plan = [list(range(i, min(i + 200, 600))) for i in range(0, 600, 200)]
    in_process = list(image_batches(arrays, bundle.preprocess_eval, plan))
    assert made == []
    assert all(torch.equal(a, b) for a, b in zip(in_process, image_batches(arrays, bundle.preprocess_eval, plan,
                                                                             num_workers=1), strict=True))
    assert made == [1]
    files = load_wds(shards, "all").records * 13  # 624 records: over MIN_IMAGES_FOR_WORKERS
    next(iter(image_batches(files, bundle.preprocess_eval, [list(range(624))])))
    assert made == [1, 1]
