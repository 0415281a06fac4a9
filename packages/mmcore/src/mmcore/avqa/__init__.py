"""Audio-visual QA data shared by every AVQA method (SaSR-Net here; ST-AVQA reads the same layout).

- ``music_avqa`` / ``avqa_yang``: the two annotation formats; ``format``: which one a file is in;
- ``feature_extraction``: videos -> ST-AVQA's per-video ``audio/`` and ``visual/`` .npy features;
- ``feature_data``: datasets over those features (memory-mapped, read in DataLoader workers);
- ``synth``: the offline synthetic Music-AVQA-style world (clips + questions in the real format).
"""
