"""The README's library snippet for sasrnet, run as written (tiny sizes)."""

from __future__ import annotations

import subprocess
import sys


def test_importing_sasrnet_imports_no_torch():
    code = "import sys, sasrnet; print('torch' in sys.modules, sorted(sasrnet.__all__)[:2])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("False")


def test_build_train_evaluate_in_five_lines(avqa_dir, tmp_path):
    import sasrnet
    import torch

    model = sasrnet.build_model(sasrnet.model_config("sasrnet", "cpu-tiny", {"visual_channels": 6}))
    assert isinstance(model, torch.nn.Module) and model.sasr is not None
    cfg = sasrnet.TrainConfig(model="avst", size="cpu-tiny", epochs=1, batch_size=4, checkpoint_every_steps=0)
    metrics = sasrnet.train(cfg, avqa_dir, tmp_path / "run")
    ev = sasrnet.evaluate(tmp_path / "run", avqa_dir, tmp_path / "eval")
    assert metrics["steps"] > 0 and ev["n_questions"] == metrics["test"]["n_questions"]
    assert ev["overall"] == metrics["test"]["overall"]
    trained, info, qv, av = sasrnet.load_trained(tmp_path / "run")
    assert info["kind"] == "avst" and len(av) == trained.cfg.n_answers
