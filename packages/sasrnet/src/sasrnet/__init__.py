"""sasrnet: SaSR-Net (source-aware semantic representations, EMNLP 2024 Findings) for audio-visual
question answering, with the AVST (ST-AVQA) and question-only baselines on the same input pipeline.

    from sasrnet.config import TrainConfig
    from sasrnet.train import train, evaluate, predict

    metrics = train(TrainConfig(model="sasrnet", size="cpu-small", epochs=10), "DATA_DIR", "runs/sasrnet")
    evaluate("runs/sasrnet", "DATA_DIR", "runs/sasrnet-eval")          # per-type accuracies
    predict("runs/sasrnet", "clip.mp4", "How many instruments are sounding?")

Modules: ``config`` (ModelConfig with the paper default + CPU presets, TrainConfig), ``sasr`` (the SaSR
module as the authors' public code computes it), ``model`` (the networks and the four-term loss),
``official`` (checkpoints of the public code: load_official, official_outputs, import_official),
``data`` (data dirs, batching, negatives), ``train``
(train / evaluate / predict), ``metrics`` (per-type accuracy, bar chart), ``video`` (on-the-fly
features for predict). Nothing heavy is imported here.
"""
