import os

import pytest
import torch
from mmcore.errors import DataError, MMError
from mmcore.io import (
    atomic_write_text,
    load_safetensors,
    prepare_output_dir,
    read_json,
    safe_join,
    save_safetensors,
    torch_load_safe,
    write_json,
)


def test_atomic_write_leaves_no_temp_files(tmp_path):
    write_json(tmp_path / "m.json", {"a": torch.tensor(1.5)})
    assert read_json(tmp_path / "m.json") == {"a": 1.5}
    assert os.listdir(tmp_path) == ["m.json"]


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path):
    p = tmp_path / "m.json"
    atomic_write_text(p, "old")

    class Boom:
        def encode(self, *_):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write_text(p, Boom())  # type: ignore[arg-type]
    assert p.read_text() == "old" and os.listdir(tmp_path) == ["m.json"]


def test_read_json_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="missing.json: file not found"):
        read_json(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 1,')
    with pytest.raises(DataError, match="bad.json: malformed JSON"):
        read_json(bad)


def test_safetensors_roundtrip_and_corrupt_file(tmp_path):
    save_safetensors(tmp_path / "w.safetensors", {"x": torch.arange(6.0).view(2, 3)})
    assert torch.equal(load_safetensors(tmp_path / "w.safetensors")["x"], torch.arange(6.0).view(2, 3))
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00garbage")
    with pytest.raises(DataError, match="bad.safetensors"):
        load_safetensors(tmp_path / "bad.safetensors")


class Evil:
    """Any non-tensor object: unpickling it could run code, so weights_only loading must refuse it."""


def test_torch_load_safe_refuses_pickled_objects(tmp_path):
    torch.save({"w": torch.ones(2)}, tmp_path / "ok.pt")
    assert torch.equal(torch_load_safe(tmp_path / "ok.pt")["w"], torch.ones(2))
    torch.save({"obj": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(DataError, match="weights_only"):
        torch_load_safe(tmp_path / "evil.pt")


@pytest.mark.parametrize("member", ["../x.jpg", "/etc/passwd", "a/../../x"])
def test_safe_join_refuses_escapes(tmp_path, member):
    with pytest.raises(DataError, match="escapes"):
        safe_join(tmp_path, member)


def test_safe_join_allows_inside(tmp_path):
    assert safe_join(tmp_path, "a/b/../c.jpg") == (tmp_path / "a" / "c.jpg").resolve()


def test_prepare_output_dir_never_overwrites_silently(tmp_path):
    out = tmp_path / "run"
    prepare_output_dir(out)
    (out / "metrics.json").write_text("{}")
    with pytest.raises(MMError, match="--overwrite"):
        prepare_output_dir(out)
    # --resume is suggested only by a command that has it (one that passes resume at all)
    with pytest.raises(MMError, match="not empty; pass --overwrite to replace it$"):
        prepare_output_dir(out)
    with pytest.raises(MMError, match="pass --overwrite to replace it or --resume to continue$"):
        prepare_output_dir(out, resume=False)
    assert prepare_output_dir(out, resume=True) == out and (out / "metrics.json").exists()
    prepare_output_dir(out, overwrite=True)
    assert not (out / "metrics.json").exists()


def test_atomic_writes_get_the_umask_mode_not_0600(tmp_path):
    import os
    import stat

    from mmcore.io import atomic_write_text, save_safetensors

    old = os.umask(0o022)
    try:
        a = atomic_write_text(tmp_path / "a.json", "{}")
        import torch

        b = save_safetensors(tmp_path / "w.safetensors", {"x": torch.zeros(2)})
        assert stat.S_IMODE(a.stat().st_mode) == stat.S_IMODE(b.stat().st_mode) == 0o644
        from mmcore.checkpoint import save_training_state

        ckpt = save_training_state(tmp_path / "checkpoint", torch.nn.Linear(2, 2), step=3)
        assert stat.S_IMODE(ckpt.stat().st_mode) == 0o755  # a folder as mkdir makes it, not mkdtemp's 0700
        os.umask(0o077)
        assert stat.S_IMODE(atomic_write_text(tmp_path / "c.txt", "x").stat().st_mode) == 0o600
    finally:
        os.umask(old)
