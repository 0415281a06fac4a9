"""Image–text webdataset shards (the layout img2dataset writes), read without holding the data.

- :mod:`~mmcore.data.wds.layout`: the shards a root names, their names and splits, the class and template
  files, one sample's fields (the one sample rule both readers share);
- :mod:`~mmcore.data.wds.stream`: :class:`~mmcore.data.wds.stream.ShardStream` (``open_wds_stream``), one
  pass of batches decoded in DataLoader workers (evaluation);
- :mod:`~mmcore.data.wds.records`: ``load_wds`` (what ``load_image_text("wds")`` returns, for callers that
  need random access: CLIP pretraining, unlearning): one record per sample holding its caption and the byte
  offset of its image member inside the shard (``ImageTextRecord.tar_member``), the image read with one seek
  when the record is loaded; ``sample_wds_records`` (seeded reservoir samples, one header pass);
  ``write_shards``;
- :mod:`~mmcore.data.wds.caption_pass`: which samples match a caption rule, one resumable pass, no image read;
- :mod:`~mmcore.data.wds.shard_sampler`: endless shuffled training batches with an id filter.

Why webdataset's streaming pipeline and not its ``wids`` indexed reader: evaluation and the caption
pass visit every sample once, where sequential whole-shard reads are the fastest access (and the
only one on object stores or ``pipe:`` URLs), need no per-shard index or sample counts up front, and
read img2dataset's output as it is. wids is built for shuffled random access during training; the
random-access case here (``load_wds``) needs only member offsets, which the stdlib ``tarfile``
gives without a second index format.
"""
