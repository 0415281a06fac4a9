"""Video decoding for AVQA: mmcore.media.read_frames against raw decord, raw PyAV and torchcodec.

Every decoder gets the same files, the same frame indices (mmcore.media.sample_indices: one frame per
second at the second's centre, or every frame) and the same output size; frames/second is the number of
returned frames over the median wall time of a pass over all files, after a warm-up pass. The verdict is
mmcore's loader (backend "auto") over the fastest raw decoder, measured in the same process in interleaved
rounds (median of the per-round ratios; target >= 0.9).

    uv run python -m benchmarks video_decode [--quick] [--videos DIR] [--repeats N]

Without ``--videos`` it writes synthetic mp4s (moving coloured blocks over noise, h264 + AAC, like the
synthetic AVQA world) into a temporary folder; with it, it uses ``DIR/*.mp4`` (e.g. `mm avqa synth` output).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import random
import statistics
import tempfile
from pathlib import Path
from typing import Any

from benchmarks._common import parse_args, png_path, timed_median, write_result

NAME = "video_decode"


def make_videos(folder: Path, n: int, *, width: int = 128, height: int = 96, seconds: float = 10.0,
                fps: float = 8.0, seed: int = 0) -> list[Path]:
    """Synthetic clips: coloured blocks moving over a noisy background, with a tone as audio."""
    import numpy as np
    from mmcore.media import write_video

    rng = np.random.default_rng(seed)
    paths = []
    n_frames = int(round(seconds * fps))
    for v in range(n):
        bg = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
        frames = np.repeat(bg[None], n_frames, axis=0)
        for b in range(3):
            colour = rng.integers(80, 256, 3, dtype=np.uint8)
            x0, speed = rng.integers(0, width - 24), rng.integers(-3, 4)
            y0 = int(b * height / 3)
            for t in range(n_frames):
                x = int((x0 + speed * t) % (width - 24))
                frames[t, y0:y0 + 20, x:x + 24] = colour
        frames = np.clip(frames.astype(np.int16) + rng.integers(-8, 9, frames.shape), 0, 255).astype(np.uint8)
        sr = 16000
        tt = np.arange(int(seconds * sr)) / sr
        audio = 0.3 * np.sin(2 * np.pi * (220 + 55 * v) * tt)
        paths.append(write_video(folder / f"bench_{v:03d}.mp4", frames, fps, audio=audio, sample_rate=sr))
    return paths


def _raw_decord(paths: list[Path], req: dict[str, Any]) -> int:
    import decord
    from mmcore.media import sample_indices

    total = 0
    h_w = req["size"]
    for p in paths:
        kw = {} if h_w is None else {"height": h_w[0], "width": h_w[1]}
        vr = decord.VideoReader(str(p), ctx=decord.cpu(0), **kw)
        idx = sample_indices(len(vr), vr.get_avg_fps(), fps=req["fps"])
        total += len(vr.get_batch(idx).asnumpy())
    return total


def _raw_pyav(paths: list[Path], req: dict[str, Any]) -> int:
    import av
    import numpy as np
    from mmcore.media import sample_indices

    total = 0
    h_w = req["size"]
    kw: dict[str, Any] = {"format": "rgb24"} if h_w is None else {"format": "rgb24", "height": h_w[0], "width": h_w[1]}
    for p in paths:
        with av.open(str(p)) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            idx = sample_indices(s.frames, float(s.average_rate), fps=req["fps"])
            wanted, last, out = set(idx), max(idx), {}
            for i, f in enumerate(c.decode(s)):
                if i in wanted:
                    out[i] = f.to_ndarray(**kw)
                if i >= last:
                    break
        total += len(np.stack([out[i] for i in idx]))  # the same [N, H, W, 3] array the others return
    return total


def _torchcodec(paths: list[Path], req: dict[str, Any]) -> int:
    import torch.nn.functional as F
    from mmcore.media import sample_indices
    from torchcodec.decoders import VideoDecoder

    total = 0
    for p in paths:
        d = VideoDecoder(str(p))
        md = d.metadata
        idx = sample_indices(md.num_frames, md.average_fps, fps=req["fps"])
        x = d.get_frames_at(indices=idx).data  # [N, 3, H, W] uint8
        if req["size"] is not None:
            x = F.interpolate(x.float(), size=req["size"], mode="bilinear", antialias=True)
        total += len(x)
    return total


def _mmcore(backend: str):
    def run(paths: list[Path], req: dict[str, Any]) -> int:
        from mmcore.media import read_frames

        return sum(len(read_frames(p, fps=req["fps"], size=req["size"], backend=backend)) for p in paths)

    return run


def torchcodec_status() -> str:
    try:
        import torchcodec.decoders  # noqa: F401
    except Exception as e:  # not installed, or its FFmpeg libraries are missing
        return f"unavailable ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})"
    return "available " + importlib.metadata.version("torchcodec")


def check_same_frames(paths: list[Path]) -> dict[str, bool]:
    """mmcore's decord and PyAV paths, and raw decord, return identical pixels for the same request."""
    import decord
    import numpy as np
    from mmcore.media import read_frames, sample_indices

    same_backends, same_raw = True, True
    for p in paths:
        a = read_frames(p, fps=1.0, backend="decord")
        b = read_frames(p, fps=1.0, backend="pyav")
        vr = decord.VideoReader(str(p))
        raw = vr.get_batch(sample_indices(len(vr), vr.get_avg_fps(), fps=1.0)).asnumpy()
        same_backends &= a.shape == b.shape and bool(np.array_equal(a, b))
        same_raw &= a.shape == raw.shape and bool(np.array_equal(a, raw))
    return {"mmcore_decord_equals_mmcore_pyav": same_backends, "mmcore_equals_raw_decord": same_raw}


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.8), squeeze=False)
    for ax, r in zip(axes[0], results, strict=False):
        names = [k for k, v in r["decoders"].items() if "frames_per_s" in v]
        vals = [r["decoders"][k]["frames_per_s"] for k in names]
        colours = ["tab:blue" if k.startswith("mmcore") else "tab:gray" for k in names]
        ax.barh(names, vals, color=colours)
        ax.set_xlabel("frames / second (higher is better)")
        ax.set_title(f"{r['setting']}\nmmcore / fastest raw = {r['ratio_mmcore_to_fastest_raw']:.2f}x", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def synth_avqa_videos(folder: Path, n: int) -> list[Path]:
    """Clips from the synthetic AVQA world (`mm avqa synth`), if that module is present."""
    try:
        from mmcore.avqa.synth import synthesize
    except ImportError:
        return []
    synthesize(folder, n, seed=0, progress=False)
    return sorted((folder / "videos").glob("*.mp4"))


def measure(decoders: dict[str, Any], raw_names: list[str], paths: list[Path], s: dict[str, Any],
            repeats: int) -> dict[str, Any]:
    """Median frames/second of every decoder on one request, in interleaved rounds after a warm-up pass."""
    rows: dict[str, Any] = {}
    counts = {name: fn(paths, s) for name, fn in decoders.items()}  # warm-up pass
    # interleaved rounds: load changes on a shared machine hit every decoder alike
    times: dict[str, list[float]] = {name: [] for name in decoders}
    order = list(decoders.items())
    rng = random.Random(0)
    for _ in range(repeats):
        rng.shuffle(order)  # a seeded random order per round: no decoder always follows the same one
        for name, fn in order:
            times[name].append(timed_median(lambda fn=fn: fn(paths, s), repeats=1, warmup=0)["median_s"])
    for name, ts in times.items():
        med = statistics.median(ts)
        rows[name] = {"frames": counts[name], "median_s": med, "min_s": min(ts), "max_s": max(ts),
                      "repeats": repeats, "frames_per_s": counts[name] / med}
        print(f"{s['setting']:<40} {name:<16} {rows[name]['frames_per_s']:10.1f} frames/s")
    fastest = max(raw_names, key=lambda k: rows[k]["frames_per_s"])
    ratio_of_medians = rows["mmcore (auto)"]["frames_per_s"] / rows[fastest]["frames_per_s"]
    # paired: each round's speed ratio, so drifting load on the shared machine cancels out
    ratio = statistics.median(f / m for f, m in zip(times[fastest], times["mmcore (auto)"], strict=True))
    print(f"  -> mmcore / {fastest} = {ratio:.3f}x (paired rounds), {ratio_of_medians:.3f}x (ratio of medians)")
    return {**s, "decoders": rows, "fastest_raw": fastest, "ratio_mmcore_to_fastest_raw": ratio,
            "ratio_of_median_speeds": ratio_of_medians, "meets_target_0.9x": ratio >= 0.9}


def build_parser() -> argparse.ArgumentParser:
    """The options of `python -m benchmarks video_decode`: the keys of its --config YAML."""
    ap = argparse.ArgumentParser(prog=f"python -m benchmarks {NAME}", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer videos and repeats (CI)")
    ap.add_argument("--videos", type=Path, default=None, help="use DIR/*.mp4 instead of generated clips")
    ap.add_argument("--n-videos", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--no-write", action="store_true", help="print only (tests)")
    ap.add_argument("--out", type=Path, default=None, help="results directory (default benchmarks/results)")
    return ap


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(build_parser(), argv)
    from mmcore.media import video_info

    n_videos = args.n_videos or (4 if args.quick else 12)
    repeats = args.repeats or (3 if args.quick else 15)

    decoders: dict[str, Any] = {
        "mmcore (auto)": _mmcore("auto"),
        "mmcore (pyav)": _mmcore("pyav"),
        "raw decord": _raw_decord,
        "raw pyav": _raw_pyav,
    }
    raw_names = ["raw decord", "raw pyav"]
    tc = torchcodec_status()
    if tc.startswith("available"):
        decoders["torchcodec"] = _torchcodec
        raw_names.append("torchcodec")
    settings = [
        {"setting": "1 fps, native size (AVQA extraction)", "fps": 1.0, "size": None},
        {"setting": "every frame, native size", "fps": None, "size": None},
        {"setting": "1 fps, resized to 112x112", "fps": 1.0, "size": (112, 112)},
    ]
    with tempfile.TemporaryDirectory(prefix="mm-bench-video-") as tmp:
        sets: list[tuple[str, list[Path], list[dict[str, Any]]]] = []
        if args.videos is not None:
            paths = sorted(Path(args.videos).glob("*.mp4"))[:n_videos]
            if not paths:
                raise SystemExit(f"no mp4 files in {args.videos}")
            sets.append((f"{args.videos} ({len(paths)} mp4s)", paths, settings))
        else:
            paths = make_videos(Path(tmp) / "blocks", n_videos)
            sets.append((f"generated: {n_videos} clips, 128x96, 10 s, 8 fps, h264 + AAC", paths, settings))
            synth = synth_avqa_videos(Path(tmp) / "synth", n_videos)
            if synth:
                sets.append((f"`mm avqa synth` world: {len(synth)} clips (96x64, 10 s, 4 fps)", synth, settings[:1]))
        results, equal, infos = [], {}, {}
        for source, paths, todo in sets:
            infos[source] = video_info(paths[0])
            equal[source] = check_same_frames(paths)
            for s in todo:
                r = measure(decoders, raw_names, paths, s, repeats)
                r["source"] = source
                r["setting"] = f"{s['setting']}\n{source.split(':')[0]}"
                results.append(r)
    payload = {
        "description": "frames/second of mmcore.media.read_frames vs raw decoders, same indices and output size",
        "unit": "frames/second; ratio = mmcore (auto) / fastest raw decoder",
        "first_video": infos,
        "repeats": repeats,
        "seed": 0,
        "torchcodec": tc,
        "identical_frames": equal,
        "settings": results,
        "verdict": {r["setting"].replace("\n", " / "): round(r["ratio_mmcore_to_fastest_raw"], 3) for r in results},
    }
    if not args.no_write:
        plot(results, png_path(NAME, args.out))
        write_result(NAME, payload, args.out)
    return payload


if __name__ == "__main__":
    main()
