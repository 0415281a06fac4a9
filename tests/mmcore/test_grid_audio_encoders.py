"""Grid (visual) and audio encoders: shapes, input conventions, weight loading, bad weights files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mmcore.encoders.audio import LogMelEncoder, create_audio_encoder, n_audio_steps
from mmcore.encoders.grid import create_grid_encoder
from mmcore.errors import DataError, MMError

SR = 16000


def two_colour_frames(n: int = 2, h: int = 56, w: int = 56) -> np.ndarray:
    """Left half red, right half blue."""
    x = np.zeros((n, h, w, 3), np.uint8)
    x[:, :, : w // 2, 0] = 255
    x[:, :, w // 2:, 2] = 255
    return x


def test_pixels_grid_sees_colour_and_position():
    enc = create_grid_encoder("pixels")
    assert enc.grid == (14, 14) and enc.out_channels == 6
    y = enc(two_colour_frames())
    assert y.shape == (2, 6, 14, 14)
    assert torch.allclose(y[:, :3, :, 0], torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1).expand(2, 3, 14), atol=1e-5)
    assert torch.allclose(y[:, :3, :, -1], torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1).expand(2, 3, 14), atol=1e-5)
    assert float(y[:, 3:, :, 0].abs().max()) < 1e-3  # uniform cells have no spread
    # float [N,3,H,W] in [0,1] is the same input as uint8 [N,H,W,3]
    as_float = torch.from_numpy(two_colour_frames()).permute(0, 3, 1, 2).float() / 255
    assert torch.allclose(enc(as_float), y, atol=0.02)  # uint8 input is resized before float conversion
    assert create_grid_encoder("pixels:7")(two_colour_frames()).shape == (2, 6, 7, 7)


def _reference_layer4(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    net.eval()
    with torch.no_grad():
        x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        return net.layer4(net.layer3(net.layer2(net.layer1(x))))


def test_resnet18_random_is_seeded_and_stride1():
    a = create_grid_encoder("resnet18-random", image_size=64)
    b = create_grid_encoder("resnet18-random", image_size=64)
    assert a.grid == (4, 4) and a.out_channels == 512
    frames = np.random.default_rng(0).integers(0, 256, (2, 40, 50, 3), dtype=np.uint8)
    ya = a(frames)
    assert ya.shape == (2, 512, 4, 4)
    assert torch.equal(ya, b(frames))
    b.image_size = 224  # ST-AVQA's 224 px → 14x14 maps with the stride-1 layer 4
    assert b(frames[:1]).shape == (1, 512, 14, 14)


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
def test_resnet18_loads_local_weights(tmp_path, fmt):
    import torchvision
    from mmcore.encoders.grid import STAVQA_MEAN, STAVQA_STD, to_float_frames
    from mmcore.io import save_safetensors

    torch.manual_seed(123)
    net = torchvision.models.resnet18(weights=None)  # full model incl. fc, as torchvision checkpoints are
    path = tmp_path / f"r18.{fmt}"
    if fmt == "safetensors":
        save_safetensors(path, net.state_dict())
    else:
        torch.save(net.state_dict(), path)
    enc = create_grid_encoder(f"resnet18:{path}", image_size=64)
    frames = np.random.default_rng(1).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    net.layer4[0].conv1.stride = (1, 1)
    net.layer4[0].downsample[0].stride = (1, 1)
    x = to_float_frames(frames, 64)
    x = (x - torch.tensor(STAVQA_MEAN).view(1, 3, 1, 1)) / torch.tensor(STAVQA_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(enc(frames), _reference_layer4(net, x))


def test_resnet18_wrong_weights_file(tmp_path):
    from mmcore.io import save_safetensors

    wrong = tmp_path / "other.safetensors"
    save_safetensors(wrong, {"encoder.weight": torch.zeros(3, 3)})
    with pytest.raises(DataError, match="not ResNet-18 weights") as e:
        create_grid_encoder(f"resnet18:{wrong}")
    assert e.value.path == wrong
    with pytest.raises(DataError, match="not found"):
        create_grid_encoder(f"resnet18:{tmp_path / 'missing.pth'}")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x80\x04not a checkpoint")
    with pytest.raises(DataError):
        create_grid_encoder(f"resnet18:{garbage}")


def test_clip_patch_grid_from_saved_dir(tmp_path):
    from mmcore.encoders.clip import create_clip, save_clip

    torch.manual_seed(0)
    bundle = create_clip("mm-micro-clip")  # a ViT tower (mm-tiny-clip uses a ResNet)
    save_clip(bundle.model, tmp_path / "clip", bundle.model_name, bundle.model_cfg)
    enc = create_grid_encoder(f"clip:{tmp_path / 'clip'}")
    vcfg = bundle.model_cfg["vision_cfg"]
    g = vcfg["image_size"] // vcfg["patch_size"]
    d = bundle.model_cfg["embed_dim"]
    assert enc.grid == (g, g) and enc.out_channels == d and enc.image_size == vcfg["image_size"]
    frames = np.random.default_rng(0).integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)
    y = enc(frames)
    assert y.shape == (3, d, g, g)
    # same weights as the saved model, and the grid is its projected patch tokens in row-major order
    from mmcore.encoders.grid import _normalise, to_float_frames

    visual = bundle.model.visual.eval()
    visual.output_tokens = True
    with torch.no_grad():
        _, tokens = visual(_normalise(to_float_frames(frames, enc.image_size), enc.mean, enc.std))
    expected = (tokens @ visual.proj).transpose(1, 2).reshape(3, d, g, g)
    torch.testing.assert_close(y, expected)
    assert not torch.allclose(y[0], y[1])


def test_unknown_specs():
    for spec in ("vit", "resnet18", "clip:", "pixels:x"):
        with pytest.raises(MMError):
            create_grid_encoder(spec)
    for spec in ("mfcc", "vggish"):
        with pytest.raises(MMError):
            create_audio_encoder(spec)


def test_n_audio_steps_rounds_to_whole_seconds():
    assert n_audio_steps(3 * SR, SR) == 3
    assert n_audio_steps(int(3.4 * SR), SR) == 3
    assert n_audio_steps(int(3.6 * SR), SR) == 4
    assert n_audio_steps(100, SR) == 1
    assert n_audio_steps(3 * SR, SR, step_s=0.5) == 6


def test_logmel_encoder_per_second():
    enc = create_audio_encoder("logmel")
    assert isinstance(enc, LogMelEncoder) and enc.out_dim == 128
    t = np.arange(4 * SR) / SR
    wave = np.where(t >= 2.0, 0.5 * np.sin(2 * np.pi * 660 * t), 0.0).astype(np.float32)  # silent, then a tone
    y = enc(wave, SR)
    assert y.shape == (4, 128)
    mean = y[:, :64]
    assert float(mean[2:].mean()) > float(mean[:2].mean()) + 1  # the sounding seconds carry more energy
    assert float(y[0, 64:].abs().max()) < 1e-3  # a silent second has no spread over time
    # a different input sample rate is resampled to 16 kHz first
    t2 = np.arange(4 * 22050) / 22050
    wave2 = np.where(t2 >= 2.0, 0.5 * np.sin(2 * np.pi * 660 * t2), 0.0).astype(np.float32)
    y2 = enc(wave2, 22050)
    assert y2.shape == (4, 128)
    assert int(y2[3, :64].argmax()) == int(mean[3].argmax())  # same loudest band
    assert float((y2[3, :64] - mean[3]).abs().mean()) < 0.5  # resampling leaks a little into empty bands
    assert enc(wave, SR, step_s=0.5).shape == (8, 128)


def test_vggish_wrong_weights_file(tmp_path):
    from mmcore.io import save_safetensors

    wrong = tmp_path / "not_vggish.safetensors"
    save_safetensors(wrong, {"features.0.weight": torch.zeros(1)})
    with pytest.raises(DataError, match="not VGGish weights") as e:
        create_audio_encoder(f"vggish:{wrong}")
    assert e.value.path == wrong
    with pytest.raises(DataError, match="not found"):
        create_audio_encoder(f"vggish:{tmp_path / 'nope.pth'}")


@pytest.mark.slow
def test_vggish_from_local_weights(tmp_path):
    from mmcore.encoders.audio import save_random_vggish

    path = save_random_vggish(tmp_path / "vggish.safetensors")
    enc = create_audio_encoder(f"vggish:{path}")
    wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(3.2 * SR)) / SR)).astype(np.float32)
    import torch as _t

    x = _t.as_tensor(wave)
    ex = enc.examples(x, 3, 1.0)
    assert ex.shape == (3, 1, 96, 64)  # 0.96 s examples of 64 bands
    y = enc(wave, SR)
    assert y.shape == (3, 128) and bool(_t.isfinite(y).all())
