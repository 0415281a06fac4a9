"""D_f and D_r over webdataset shards (CC12M, LAION subsets in img2dataset's layout) without holding the
dataset: the split is a forget-id set plus per-shard counts, and unlearning streams both sets.

A keyword forget set on ``dataset="wds"`` goes this way (:func:`streams_apply`):

1. the held-out test shards are chosen by name (:func:`mmcore.data.wds.layout.split_shards`, or the
   dataset's own ``test_split``); the rest are the training shards;
2. one pass over the training captions (:func:`cliperase.forget_sets.stream_forget_ids`, no image decoded,
   resumable, in ``RUN/forget_pass/``) gives the forget ids and each shard's sample and match counts;
3. one pass over the tar headers (:func:`mmcore.data.wds.records.sample_wds_records`, no image decoded)
   keeps D_f as records (its tar offsets: one seek per image) and seeded uniform samples of at most
   ``eval_max_samples`` records of D_r, test-forget and test-retain for evaluation (zero-shot, retrieval,
   MIA, relearning, SLUG's gradients);
4. unlearning draws D_f batches by index, as for any record list, and D_r batches from a stream over every
   training shard's other samples (:func:`mmcore.data.wds.shard_sampler.shuffled_shard_batches`, decoded in
   DataLoader workers). D_f by index, not streamed: a concept is a small share of the samples, and a stream
   that filters for it reads 1 / share raw samples per forget image, so its speed would fall as the
   dataset grows (benchmarks/data_scale).

Memory: the forget set's records and ids and the evaluation samples, whatever the number of shards.
"""

from __future__ import annotations

from pathlib import Path

from mmcore.data.records import ImageTextRecord
from mmcore.errors import ConfigError, MMError

from cliperase.config import UnlearnConfig
from cliperase.forget_sets import (
    ForgetSplit,
    StreamedSets,
    keyword_pattern,
    record_matches_keyword,
    stream_forget_ids,
)


def streams_apply(cfg: UnlearnConfig) -> bool:
    """Whether ``cfg``'s forget and retain sets are streamed from shards (see the module docstring); other
    forget sets on shards (classes, ratios, id files) and ``limit`` runs read the records."""
    return cfg.dataset.lower() == "wds" and cfg.forget.keyword is not None and not cfg.limit


def train_test_shards(cfg: UnlearnConfig) -> tuple[list[Path], list[Path]]:
    """The training and held-out shards of ``cfg`` (the same rule as the record path's ``load_data``)."""
    from mmcore.data.wds.layout import resolve_shards, shard_name, shard_paths, split_shards

    if cfg.data_root is None:
        raise ConfigError("dataset wds needs data_root (--data-root): a folder, .tar, glob or brace pattern of shards")
    if cfg.test_split not in ("auto", "none"):
        return resolve_shards(cfg.data_root, "train")[0], resolve_shards(cfg.data_root, cfg.test_split)[0]
    if not 0.0 < cfg.holdout_fraction < 1.0:
        raise ConfigError(f"holdout_fraction must be in (0, 1) when there is no test split; got {cfg.holdout_fraction}")
    shards = shard_paths(cfg.data_root)
    names = split_shards(shards, cfg.holdout_fraction, cfg.seed)
    by_name = {shard_name(s): s for s in shards}
    return [by_name[n] for n in names["train"]], [by_name[n] for n in names["test"]]


def load_streamed_split(cfg: UnlearnConfig, run_dir: str | Path) -> ForgetSplit:
    """The :class:`ForgetSplit` of a streamed run (``stream`` set; ``forget`` / ``retain`` are evaluation
    samples). The caption pass writes ``run_dir/forget_pass/``."""
    from mmcore.data.wds.layout import shard_name
    from mmcore.data.wds.records import sample_wds_records

    keyword = cfg.forget.keyword
    assert keyword is not None
    train, test = train_test_shards(cfg)
    found = stream_forget_ids(train, keyword, run_dir)
    ids = frozenset(found.ids)
    what = f"keyword {keyword!r}"
    if not ids:
        raise MMError(f"forget set is empty: {what} matches no caption of the {len(train)} training shard(s) "
                      f"under {cfg.data_root}")
    if found.n_match == found.n:
        raise MMError(f"forget set is the whole training set ({what}); nothing would be retained")
    counts = {shard_name(s): found.counts[shard_name(s)] for s in train}
    k = cfg.eval_max_samples or None

    def in_forget(r: ImageTextRecord) -> bool:
        return r.id in ids

    pat = keyword_pattern(keyword)
    # D_f whole (records with tar offsets: one seek per image), D_r as an evaluation sample
    parts = sample_wds_records(cfg.data_root, train, {"forget": in_forget, "retain": lambda r: not in_forget(r)},
                               {"forget": None, "retain": k}, cfg.seed, skip_bad=cfg.skip_bad)
    held = (sample_wds_records(cfg.data_root, test, {"forget": lambda r: record_matches_keyword(r, pat),
                                                     "retain": lambda r: not record_matches_keyword(r, pat)},
                               k, cfg.seed + 1, skip_bad=cfg.skip_bad) if test else None)
    forget, retain = parts["forget"], parts["retain"]
    if held is None:
        from mmcore.data.records import ImageTextData

        held = {p: ImageTextData(name=f"wds-test-{p}", records=[], classnames=retain.classnames,
                                 templates=list(retain.templates)) for p in ("forget", "retain")}
    classnames = retain.classnames
    sets = StreamedSets(
        retain_shards=[str(s) for s in train if counts[shard_name(s)]["n"] > counts[shard_name(s)]["n_match"]],
        forget_ids=ids, n_forget=found.n_match, n_retain=found.n - found.n_match,
        n_classes=len(classnames) if classnames else None,
    )
    for data, name in ((forget, "wds-forget"), (retain, "wds-retain"), (held["forget"], "wds-holdout-forget"),
                       (held["retain"], "wds-holdout-retain")):
        data.name = name
    return ForgetSplit(forget=forget, retain=retain, test_forget=held["forget"], test_retain=held["retain"],
                       forget_classes=None, description=what, stream=sets)


__all__ = ["load_streamed_split", "streams_apply", "train_test_shards"]
