"""The synthetic world: instrument looks and timbres, sources and one clip's state (:func:`sample_world`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmcore.avqa.music_avqa import INSTRUMENTS

POSITIONS = ("left", "middle", "right")
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ORDINALS = ("first", "second", "third", "fourth", "fifth")
LOUDNESS_RATIO = 1.4  # loudness comparisons are asked only when this clear
MIN_DURATION_GAP = 2  # seconds, for "playing longer"

# -- looks ---------------------------------------------------------------------------------
SHAPES = ("disc", "square", "triangle", "diamond", "ring", "cross", "hstripes", "vstripes")
COLORS = (
    (220, 40, 40), (245, 140, 20), (240, 220, 40), (30, 150, 50), (40, 200, 210), (40, 70, 220),
    (140, 50, 200), (240, 110, 180), (120, 70, 30), (250, 250, 250), (20, 20, 20),
)  # fmt: skip


def instrument_look(i: int) -> tuple[str, tuple[int, int, int]]:
    """(shape, RGB colour) of instrument ``i``; unique per instrument since 8 and 11 are coprime."""
    return SHAPES[i % len(SHAPES)], COLORS[(3 * i) % len(COLORS)]


# -- timbres -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Timbre:
    f0: float  # fundamental, Hz
    tilt: float  # harmonic k has amplitude k**-tilt
    odd_only: bool = False
    noise: float = 0.0  # share of band-passed noise (percussion, breath)
    vibrato: float = 0.0  # relative frequency deviation at 5.5 Hz
    decay: float = 2.0  # note decay time constant, seconds (plucked / struck instruments are short)


TIMBRES: dict[str, Timbre] = {
    "accordion": Timbre(220, 0.6, vibrato=0.002, decay=3.0),
    "acoustic_guitar": Timbre(196, 1.2, decay=0.5),
    "bagpipe": Timbre(466, 0.5, odd_only=True, decay=3.0),
    "banjo": Timbre(294, 0.9, decay=0.25),
    "bassoon": Timbre(117, 1.0, decay=2.0),
    "cello": Timbre(131, 1.1, vibrato=0.006, decay=2.0),
    "clarinet": Timbre(233, 1.0, odd_only=True, decay=2.0),
    "congas": Timbre(180, 2.0, noise=0.6, decay=0.12),
    "drum": Timbre(62, 2.0, noise=0.8, decay=0.15),
    "electric_bass": Timbre(49, 1.5, decay=0.8),
    "erhu": Timbre(587, 1.0, vibrato=0.012, decay=2.0),
    "flute": Timbre(784, 2.5, noise=0.1, vibrato=0.004, decay=2.0),
    "guzheng": Timbre(392, 1.0, decay=0.6),
    "piano": Timbre(262, 1.3, decay=0.8),
    "pipa": Timbre(440, 1.0, decay=0.3),
    "saxophone": Timbre(349, 0.8, vibrato=0.004, decay=2.0),
    "suona": Timbre(698, 0.4, decay=2.0),
    "trumpet": Timbre(523, 0.7, decay=2.0),
    "tuba": Timbre(87, 1.2, decay=2.0),
    "ukulele": Timbre(659, 1.1, decay=0.3),
    "violin": Timbre(988, 1.0, vibrato=0.01, decay=2.0),
    "xylophone": Timbre(1319, 3.0, decay=0.2),
}
NOTE_RATES = (0, 1, 2, 4)  # notes per second; 0 = one sustained tone


# -- world ---------------------------------------------------------------------------------
@dataclass
class Source:
    """One instrument in a clip. ``position`` is None for an off-screen instrument."""

    instrument: str
    position: str | None
    onset: int  # seconds; onset == offset means silent
    offset: int
    loudness: float  # RMS while sounding (linear)
    rate: int  # notes per second (0 = sustained)

    @property
    def sounding(self) -> bool:
        return self.offset > self.onset

    @property
    def duration(self) -> int:
        return self.offset - self.onset


@dataclass
class World:
    video_id: str
    split: str
    scene: str  # indoor / outdoor
    duration: int
    sources: list[Source]
    voiceover: tuple[int, int] | None = None  # (onset, offset) seconds
    questions: list[dict[str, Any]] = field(default_factory=list)

    # Views used by the question generators.
    @property
    def visible(self) -> list[Source]:
        return sorted((s for s in self.sources if s.position), key=lambda s: POSITIONS.index(s.position))

    @property
    def visible_sounding(self) -> list[Source]:
        return [s for s in self.visible if s.sounding]

    @property
    def heard(self) -> list[Source]:
        return [s for s in self.sources if s.sounding]

    def at(self, position: str) -> Source | None:
        return next((s for s in self.sources if s.position == position), None)


def _sample_world(rng: np.random.Generator, video_id: str, split: str, duration: int) -> World:
    n_visible = int(rng.choice([1, 2, 3], p=[0.3, 0.35, 0.35]))
    positions = sorted(rng.choice(3, size=n_visible, replace=False).tolist())
    names = [str(n) for n in rng.choice(INSTRUMENTS, size=n_visible, replace=False)]
    if n_visible >= 2 and rng.random() < 0.3:  # two of the same instrument (counts, "which violin")
        names[int(rng.integers(1, n_visible))] = names[0]
    sources: list[Source] = []
    for p, name in zip(positions, names, strict=True):
        sources.append(Source(name, POSITIONS[p], 0, 0, 0.0, 0))
    if rng.random() < 0.45:  # an instrument heard but not seen
        off = [n for n in INSTRUMENTS if n not in names]
        sources.append(Source(str(rng.choice(off)), None, 0, 0, 0.0, 0))
    for s in sources:
        if s.position is not None and rng.random() < 0.3:
            continue  # visible but silent
        if rng.random() < 0.5:
            s.onset, s.offset = 0, duration
        else:
            s.onset = int(rng.integers(0, duration - 2))
            s.offset = int(rng.integers(s.onset + 2, duration + 1))
        s.loudness = float(np.exp(rng.uniform(np.log(0.15), np.log(1.0))))
        s.rate = int(rng.choice(NOTE_RATES))
    if not any(s.sounding for s in sources if s.position):  # every clip has a sounding visible instrument
        s = sources[0]
        s.onset, s.offset = 0, duration
        s.loudness, s.rate = float(rng.uniform(0.3, 1.0)), int(rng.choice(NOTE_RATES))
    dups = [s for s in sources if s.position and s.sounding and names.count(s.instrument) > 1]
    if len(dups) == 2 and rng.random() < 0.4:  # the same instrument starting together → "simultaneously"
        dups[1].onset = dups[0].onset
        dups[1].offset = max(dups[1].offset, dups[1].onset + 2)
    voice = None
    if rng.random() < 0.5:
        a = int(rng.integers(0, duration - 2))
        voice = (a, int(rng.integers(a + 2, duration + 1)))
    scene = "indoor" if rng.random() < 0.5 else "outdoor"
    return World(video_id, split, scene, duration, sources, voice)


