"""A synthetic Music-AVQA-style world: small real mp4 clips plus questions in the real JSON format.

Each clip shows 1–3 instruments (the real 22 names) at left / middle / right over an indoor or
outdoor background. Every instrument has its own LOOK (one of 8 shapes × one of 11 colours; no two
instruments share both) and its own TIMBRE (fundamental, harmonic tilt, odd-only harmonics,
noise, vibrato, note decay). Each instrument in a clip sounds during one interval of whole seconds
(or stays silent) at its own loudness and note rate; an off-screen instrument may be heard, and a
voiceover may speak. Questions are drawn from the 33 real Music-AVQA templates (exact
``question_content`` strings) with answers computed from the world state, so answering needs
the audio, the video, or both. Yes/no questions pick the wanted answer first (balanced), and
comparisons keep only clear differences (loudness ratio ≥ 1.4, different note rates, durations
≥ 2 s apart).

How the templates are read: "heard" / "sound" (audio questions, "types ... sound") count every
sounding instrument, off-screen ones included; "in the video" counts visible ones only; "did not
sound from beginning to end" = visible but silent the whole clip; "always playing" = sounding
from 0 s to the end; <FL> first/last and <TH> order by onset; <LL> "lowest" = quietest; "on the
<LR> of X" = the nearest visible instrument on that side; "Is this sound from the instrument in
the video?" = no off-screen instrument is heard (a voiceover is not an instrument); "Which <Object>
makes the sound <FL>?" is asked about two of the same instrument (answer: its position, or
"simultaneously" when they start together).

Output (``synthesize``): ``DIR/videos/<id>.mp4`` (H.264 video + AAC 16 kHz mono audio, written
with PyAV), ``DIR/annotations/avqa-{train,val,test}.json`` and ``DIR/world.json`` (ground truth).
Everything is deterministic from the seed (the mp4 bytes are too, for a given PyAV/FFmpeg build).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmcore.data.music_avqa import INSTRUMENTS, TYPE_KEY
from mmcore.errors import MMError
from mmcore.io import atomic_write_text, write_json

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


# -- question generators -------------------------------------------------------------------
# Each takes (world, rng) and returns (template values, answer) or None when the world cannot
# answer it unambiguously.
Gen = Callable[[World, np.random.Generator], "tuple[list[str], str] | None"]


def _yes(b: bool) -> str:
    return "yes" if b else "no"


def _num(n: int) -> str:
    return NUMBERS[n] if n < 10 else ("ten" if n == 10 else "more than ten")


def _pick(rng: np.random.Generator, items: list[Any]) -> Any:
    return items[int(rng.integers(len(items)))]


def _unique_types(sources: list[Source]) -> list[Source]:
    """Sources whose instrument occurs once among ``sources`` (so naming it is unambiguous)."""
    c = Counter(s.instrument for s in sources)
    return [s for s in sources if c[s.instrument] == 1]


def _neighbour(w: World, s: Source, side: str) -> Source | None:
    """The nearest visible instrument on ``side`` (left/right) of ``s``."""
    i = POSITIONS.index(s.position)  # type: ignore[arg-type]
    rng_ = range(i - 1, -1, -1) if side == "left" else range(i + 1, 3)
    for j in rng_:
        t = w.at(POSITIONS[j])
        if t is not None:
            return t
    return None


def _exists(pool: set[str], rng: np.random.Generator) -> tuple[list[str], str] | None:
    if rng.random() < 0.5:  # the world decides nothing here: pick the answer first (balanced)
        return ([_pick(rng, sorted(pool))], "yes") if pool else None
    return [_pick(rng, [n for n in INSTRUMENTS if n not in pool])], "no"


def _exists2(pool: set[str], rng: np.random.Generator) -> tuple[list[str], str] | None:
    if len(pool) < 2:
        return None  # asking only where "yes" is possible keeps yes/no balanced
    if rng.random() < 0.5:
        a, b = rng.choice(sorted(pool), size=2, replace=False)
        return [str(a), str(b)], "yes"
    absent = [n for n in INSTRUMENTS if n not in pool]
    if pool and rng.random() < 0.7:  # one present, one absent: needs both checked
        vals = [_pick(rng, sorted(pool)), _pick(rng, absent)]
    else:
        a, b = rng.choice(absent, size=2, replace=False)
        vals = [str(a), str(b)]
    if rng.random() < 0.5:
        vals.reverse()
    return vals, "no"


def _compare(
    rng: np.random.Generator, cands: list[Source], key: Callable[[Source], float], clear: Callable[[float, float], bool]
) -> tuple[Source, Source, bool] | None:
    """A random pair (x, y) with a clear difference in ``key``; ``x`` beats ``y`` with probability 1/2."""
    pairs = [(a, b) for i, a in enumerate(cands) for b in cands[i + 1 :] if clear(key(a), key(b))]
    if not pairs:
        return None
    a, b = _pick(rng, pairs)
    hi, lo = (a, b) if key(a) > key(b) else (b, a)
    return (hi, lo, True) if rng.random() < 0.5 else (lo, hi, False)


def _louder(x: float, y: float) -> bool:
    return max(x, y) >= LOUDNESS_RATIO * min(x, y)


def _differ(x: float, y: float) -> bool:
    return x != y


def _longer(x: float, y: float) -> bool:
    return abs(x - y) >= MIN_DURATION_GAP


def _loud(s: Source) -> float:
    return s.loudness


def _rate(s: Source) -> float:
    return float(s.rate)


def _dur(s: Source) -> float:
    return float(s.duration)


def _ordered_by_onset(sources: list[Source]) -> list[Source] | None:
    """Sources sorted by onset, or None if two start together (order undefined)."""
    if len({s.onset for s in sources}) != len(sources):
        return None
    return sorted(sources, key=lambda s: s.onset)


# Audio
def g_a_sound(w, rng):
    return _exists({s.instrument for s in w.heard}, rng)


def g_a_two_sound(w, rng):
    return _exists2({s.instrument for s in w.heard}, rng)


def g_a_heard(w, rng):
    return [], _num(len(w.heard))


def _a_comp(key, clear):
    def gen(w, rng):
        r = _compare(rng, _unique_types(w.heard), key, clear)
        return None if r is None else ([r[0].instrument, r[1].instrument], _yes(r[2]))

    return gen


# Visual
def g_v_is(w, rng):
    return _exists({s.instrument for s in w.visible}, rng)


def g_v_two(w, rng):
    return _exists2({s.instrument for s in w.visible}, rng)


def g_v_how_many(w, rng):
    names = [s.instrument for s in w.visible]
    x = _pick(rng, names) if rng.random() < 0.85 else _pick(rng, [n for n in INSTRUMENTS if n not in names])
    return [x], _num(names.count(x))


def g_v_types(w, rng):
    return [], _num(len({s.instrument for s in w.visible}))


def g_v_lr_of(w, rng):
    opts = [(s, side, t) for s in _unique_types(w.visible) for side in ("left", "right")
            if (t := _neighbour(w, s, side)) is not None]  # fmt: skip
    if not opts:
        return None
    s, side, t = _pick(rng, opts)
    return [side, s.instrument], t.instrument


def g_v_lrer(w, rng):
    vis = w.visible
    if len(vis) < 2:
        return None
    which = _pick(rng, ["leftest", "rightest"])
    return [which], (vis[0] if which == "leftest" else vis[-1]).instrument


def g_v_kind(w, rng):
    return None if len(w.visible) != 1 else ([], w.visible[0].instrument)


def g_v_where(w, rng):
    return [], w.scene


# Audio-visual existential
def g_av_always(w, rng):
    cands = _unique_types(w.visible)
    if not cands:
        return None
    s = _pick(rng, cands)
    return [s.instrument], _yes(s.onset == 0 and s.offset == w.duration)


def g_av_voice(w, rng):
    return [], _yes(w.voiceover is not None)


def g_av_this(w, rng):
    return [], _yes(all(s.position for s in w.heard))


# Audio-visual counting
def g_av_sounding(w, rng):
    return [], _num(len(w.visible_sounding))


def g_av_silent(w, rng):
    return [], _num(sum(not s.sounding for s in w.visible))


def g_av_sounding_obj(w, rng):
    x = _pick(rng, [s.instrument for s in w.visible])
    return [x], _num(sum(s.instrument == x for s in w.visible_sounding))


def g_av_sound_types(w, rng):
    return [], _num(len({s.instrument for s in w.heard}))


# Audio-visual location
def _first_last(w: World, rng: np.random.Generator) -> tuple[str, Source] | None:
    snd = w.visible_sounding
    if len(snd) < 2:
        return None
    fl = _pick(rng, ["first", "last"])
    onsets = sorted(s.onset for s in snd)
    if (fl == "first" and onsets[0] == onsets[1]) or (fl == "last" and onsets[-1] == onsets[-2]):
        return None
    return fl, (min if fl == "first" else max)(snd, key=lambda s: s.onset)


def g_av_fl_from(w, rng):
    r = _first_last(w, rng)
    if r is None:
        return None
    fl, s = r
    want = rng.random() < 0.5
    pos = s.position if want else _pick(rng, [p for p in POSITIONS if p != s.position])
    return [fl, pos], _yes(want)


def g_av_lr_of_fl(w, rng):
    r = _first_last(w, rng)
    if r is None:
        return None
    fl, s = r
    sides = [(side, t) for side in ("left", "right") if (t := _neighbour(w, s, side)) is not None]
    if not sides:
        return None
    side, t = _pick(rng, sides)
    return [side, fl], t.instrument


def g_av_ll(w, rng):
    snd = sorted(w.visible_sounding, key=_loud)
    if len(snd) < 2:
        return None
    ll = _pick(rng, ["loudest", "lowest"])
    a, b = (snd[-1], snd[-2]) if ll == "loudest" else (snd[0], snd[1])
    if not _louder(a.loudness, b.loudness):
        return None
    return [ll], a.position


def g_av_same_time(w, rng):
    opts = []
    for x in _unique_types(w.heard):
        over = {s.instrument for s in w.heard
                if s is not x and s.onset < x.offset and x.onset < s.offset and s.instrument != x.instrument}  # fmt: skip
        if len(over) == 1:
            opts.append((x.instrument, over.pop()))
    if not opts:
        return None
    x, y = _pick(rng, opts)
    return [x], y


# Audio-visual comparative
def _av_comp_obj(key, clear):
    def gen(w, rng):
        r = _compare(rng, w.visible_sounding, key, clear)
        return None if r is None else ([r[0].instrument, r[0].position, r[1].instrument, r[1].position], _yes(r[2]))

    return gen


def _av_comp_pos(key, clear):
    def gen(w, rng):
        r = _compare(rng, w.visible_sounding, key, clear)
        return None if r is None else ([r[0].position, r[1].position], _yes(r[2]))

    return gen


# Audio-visual temporal
def g_av_th(w, rng):
    order = _ordered_by_onset(w.visible_sounding)
    if not order:
        return None
    k = int(rng.integers(len(order)))
    return [ORDINALS[k]], order[k].instrument


def g_av_where_fl(w, rng):
    r = _first_last(w, rng)
    return None if r is None else ([r[0]], r[1].position)


def g_av_which_obj_fl(w, rng):
    c = Counter(s.instrument for s in w.visible_sounding)
    dup = [n for n, k in c.items() if k == 2]
    if not dup:
        return None
    x = dup[0]
    a, b = (s for s in w.visible_sounding if s.instrument == x)
    fl = _pick(rng, ["first", "last"])
    if a.onset == b.onset:
        return [x, fl], "simultaneously"
    first, last = (a, b) if a.onset < b.onset else (b, a)
    return [x, fl], (first if fl == "first" else last).position


def g_av_ba(w, rng):
    order = _ordered_by_onset(w.visible_sounding)
    if not order or len(order) < 2:
        return None
    names = [s.instrument for s in order]
    opts = [(ba, i) for i in range(len(order)) if names.count(names[i]) == 1 for ba in ("before", "after")
            if (0 <= (i - 1 if ba == "before" else i + 1) < len(order))]  # fmt: skip
    if not opts:
        return None
    ba, i = _pick(rng, opts)
    return [ba, names[i]], names[i - 1 if ba == "before" else i + 1]


#: (type, exact real template string, generator) for all 33 Music-AVQA templates.
TEMPLATES: tuple[tuple[tuple[str, str], str, Gen], ...] = (
    (("Audio", "Counting"), "Is there a <Object> sound?", g_a_sound),
    (("Audio", "Counting"), "Are there <Object> and <Object> sound? ", g_a_two_sound),
    (("Audio", "Counting"), "How many musical instruments were heard throughout the video?", g_a_heard),
    (("Audio", "Comparative"), "Is the <Object> louder than the <Object>?", _a_comp(_loud, _louder)),
    (("Audio", "Comparative"), "Is the <Object> more rhythmic than the <Object>?", _a_comp(_rate, _differ)),
    (("Audio", "Comparative"), "Is the <Object> playing longer than the <Object>?", _a_comp(_dur, _longer)),
    (("Visual", "Counting"), "Is there a <Object> in the entire video?", g_v_is),
    (("Visual", "Counting"), "Are there <Object> and <Object> instruments in the video?", g_v_two),
    (("Visual", "Counting"), "How many <Object> are in the entire video?", g_v_how_many),
    (("Visual", "Counting"), "How many types of musical instruments appeared in the entire video?", g_v_types),
    (("Visual", "Location"), "What is the instrument on the <LR> of <Object>?", g_v_lr_of),
    (("Visual", "Location"), "What kind of instrument is the <LRer> instrument? ", g_v_lrer),
    (("Visual", "Location"), "What kind of musical instrument is it?", g_v_kind),
    (("Visual", "Location"), "Where is the performance?", g_v_where),
    (("Audio-Visual", "Existential"), "Is the <Object> in the video always playing?", g_av_always),
    (("Audio-Visual", "Existential"), "Is there a voiceover?", g_av_voice),
    (("Audio-Visual", "Existential"), "Is this sound from the instrument in the video?", g_av_this),
    (("Audio-Visual", "Counting"), "How many instruments are sounding in the video?", g_av_sounding),
    (("Audio-Visual", "Counting"), "How many instruments in the video did not sound from beginning to end?",
     g_av_silent),
    (("Audio-Visual", "Counting"), "How many sounding <Object> in the video？", g_av_sounding_obj),
    (("Audio-Visual", "Counting"), "How many types of musical instruments sound in the video?", g_av_sound_types),
    (("Audio-Visual", "Location"), "Is the <FL> sound coming from the <LR> instrument?", g_av_fl_from),
    (("Audio-Visual", "Location"), "What is the <LR> instrument of the <FL> sounding instrument?", g_av_lr_of_fl),
    (("Audio-Visual", "Location"), "Where is the <LL> instrument?", g_av_ll),
    (("Audio-Visual", "Location"), "Which is the musical instrument that sounds at the same time as the <Object>?",
     g_av_same_time),
    (("Audio-Visual", "Comparative"), "Is the <Object> on the <LR> louder than the <Object> on the <LR>?",
     _av_comp_obj(_loud, _louder)),
    (("Audio-Visual", "Comparative"), "Is the <Object> on the <LR> more rhythmic than the <Object> on the <LR>?",
     _av_comp_obj(_rate, _differ)),
    (("Audio-Visual", "Comparative"), "Is the instrument on the <LR> louder than the instrument on the <LR>?",
     _av_comp_pos(_loud, _louder)),
    (("Audio-Visual", "Comparative"), "Is the instrument on the <LR> more rhythmic than the instrument on the <LR>?",
     _av_comp_pos(_rate, _differ)),
    (("Audio-Visual", "Temporal"), "What is the <TH> instrument that comes in?", g_av_th),
    (("Audio-Visual", "Temporal"), "Where is the <FL> sounding instrument?", g_av_where_fl),
    (("Audio-Visual", "Temporal"), "Which <Object> makes the sound <FL>?", g_av_which_obj_fl),
    (("Audio-Visual", "Temporal"), "Which instrument makes sounds <BA> the <Object>?", g_av_ba),
)  # fmt: skip


def _draw_questions(w: World, rng: np.random.Generator, n: int) -> list[tuple[tuple[str, str], str, list[str], str]]:
    """Up to ``n`` distinct-template questions, cycling over the 9 types in a random order."""
    by_type: dict[tuple[str, str], list[tuple[str, list[str], str]]] = {}
    for qtype, template, gen in TEMPLATES:
        r = gen(w, rng)
        if r is not None:
            by_type.setdefault(qtype, []).append((template, r[0], r[1]))
    for lst in by_type.values():
        rng.shuffle(lst)  # type: ignore[arg-type]
    types = [t for t in TYPE_KEY if t in by_type]
    rng.shuffle(types)  # type: ignore[arg-type]
    out: list[tuple[tuple[str, str], str, list[str], str]] = []
    while len(out) < n and any(by_type[t] for t in types):
        for t in types:
            if by_type[t] and len(out) < n:
                template, values, answer = by_type[t].pop()
                out.append((t, template, values, answer))
    return out


# -- rendering -----------------------------------------------------------------------------
def _shape_mask(shape: str, h: int, w: int) -> np.ndarray:
    """Boolean [h, w] mask of ``shape`` filling a box."""
    y, x = np.mgrid[0:h, 0:w]
    u, v = (x + 0.5) / w * 2 - 1, (y + 0.5) / h * 2 - 1  # [-1, 1]
    if shape == "disc":
        return u**2 + v**2 <= 1
    if shape == "square":
        return (abs(u) <= 0.85) & (abs(v) <= 0.85)
    if shape == "triangle":
        return (v >= -0.95) & (v <= 0.95) & (abs(u) <= (v + 0.95) / 1.9)
    if shape == "diamond":
        return abs(u) + abs(v) <= 1
    if shape == "ring":
        r2 = u**2 + v**2
        return (r2 <= 1) & (r2 >= 0.3)
    if shape == "cross":
        return ((abs(u) <= 0.3) | (abs(v) <= 0.3)) & (abs(u) <= 0.95) & (abs(v) <= 0.95)
    if shape == "hstripes":
        return (abs(u) <= 0.85) & (abs(v) <= 0.95) & ((y * 4 // h) % 2 == 0)
    if shape == "vstripes":
        return (abs(u) <= 0.95) & (abs(v) <= 0.85) & ((x * 4 // w) % 2 == 0)
    raise ValueError(shape)


def render_frame(w: World, size: tuple[int, int]) -> np.ndarray:
    """The clip's (static) RGB frame [H, W, 3]: background scene plus each visible instrument's look."""
    width, height = size
    img = np.empty((height, width, 3), np.uint8)
    horizon = int(height * 0.6)
    top, bottom = ((200, 180, 150), (110, 80, 55)) if w.scene == "indoor" else ((135, 190, 235), (80, 150, 70))
    img[:horizon], img[horizon:] = top, bottom
    slot = width // 3
    bw, bh = int(slot * 0.75), int(height * 0.6)
    for s in w.visible:
        i = INSTRUMENTS.index(s.instrument)
        shape, color = instrument_look(i)
        x0 = POSITIONS.index(s.position) * slot + (slot - bw) // 2  # type: ignore[arg-type]
        y0 = (height - bh) // 2 + height // 10
        # A grey plate behind the shape keeps it readable on any background colour.
        img[y0 - 1 : y0 + bh + 1, x0 - 1 : x0 + bw + 1] = (128, 128, 128)
        m = _shape_mask(shape, bh, bw)
        img[y0 : y0 + bh, x0 : x0 + bw][m] = color
    return img


def _band_noise(rng: np.random.Generator, n: int, sr: int, lo: float, hi: float) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / sr)
    spec[(f < lo) | (f > hi)] = 0
    return np.fft.irfft(spec, n)


def _source_signal(s: Source, sr: int, rng: np.random.Generator) -> tuple[int, np.ndarray]:
    """(start sample, waveform over the sounding interval) with RMS = ``s.loudness``."""
    tb = TIMBRES[s.instrument]
    a, b = s.onset * sr, s.offset * sr
    t = np.arange(b - a) / sr
    freq_t = 1 + tb.vibrato * np.sin(2 * np.pi * 5.5 * t)
    phase = 2 * np.pi * tb.f0 * np.cumsum(freq_t) / sr
    tone = np.zeros_like(t)
    # sin(k·φ) by the recurrence sin(kφ) = 2cos(φ)·sin((k-1)φ) - sin((k-2)φ): one sin/cos in all.
    two_cos, prev, cur = 2 * np.cos(phase), np.zeros_like(t), np.sin(phase)
    for k in range(1, 13):
        if k * tb.f0 >= sr / 2 * 0.9:
            break
        if not (tb.odd_only and k % 2 == 0):
            tone += k ** (-tb.tilt) * cur
        prev, cur = cur, two_cos * cur - prev
    tone /= np.sqrt(np.mean(tone**2)) + 1e-9
    if tb.noise:
        nz = _band_noise(rng, len(t), sr, tb.f0, min(8 * tb.f0 + 500, sr / 2))
        tone = (1 - tb.noise) * tone + tb.noise * nz / (np.sqrt(np.mean(nz**2)) + 1e-9)
    attack = np.minimum(1.0, t / 0.02)
    release = np.minimum(1.0, (t[-1] - t) / 0.05 + 1e-3)
    if s.rate == 0:
        env = attack * release
    else:
        tau = min(tb.decay, 0.6 / s.rate)
        since = (t % (1.0 / s.rate))  # time since the last note onset
        env = np.minimum(1.0, since / 0.005) * np.exp(-since / tau) * release
    sig = tone * env
    sig *= s.loudness / (np.sqrt(np.mean(sig**2)) + 1e-9)
    return a, sig


def _voice_signal(onoff: tuple[int, int], sr: int, rng: np.random.Generator) -> tuple[int, np.ndarray]:
    """A speech-like voiceover: a 120 Hz buzz through changing vowel formants, in syllables."""
    a, b = onoff[0] * sr, onoff[1] * sr
    n = b - a
    t = np.arange(n) / sr
    f0 = 120 * (1 + 0.08 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    vowels = ((700, 1200), (300, 2300), (500, 900))
    out = np.zeros(n)
    pos = 0
    while pos < n:
        syl = int(sr * rng.uniform(0.15, 0.3))
        gap = int(sr * rng.uniform(0.03, 0.12))
        f1, f2 = vowels[int(rng.integers(3))]
        seg = slice(pos, min(pos + syl, n))
        for k in range(1, 30):
            fk = k * 120
            amp = np.exp(-(((fk - f1) / 150) ** 2)) + 0.6 * np.exp(-(((fk - f2) / 200) ** 2)) + 0.02
            out[seg] += amp * np.sin(k * phase[seg])
        m = seg.stop - seg.start
        out[seg] *= np.sin(np.pi * np.arange(m) / max(m, 1))  # syllable envelope
        pos += syl + gap
    out *= 0.35 / (np.sqrt(np.mean(out**2)) + 1e-9)
    return a, out


def render_audio(w: World, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Mono float32 mixture of all heard sources (and the voiceover) over the whole clip."""
    mix = np.zeros(w.duration * sr)
    parts = [_source_signal(s, sr, rng) for s in w.heard]
    if w.voiceover is not None:
        parts.append(_voice_signal(w.voiceover, sr, rng))
    for a, sig in parts:
        mix[a : a + len(sig)] += sig
    mix = 0.25 * mix + 0.002 * rng.standard_normal(len(mix))  # fixed scale keeps relative loudness
    return np.clip(mix, -1, 1).astype(np.float32)


def write_mp4(path: Path, frame: np.ndarray, audio: np.ndarray, *, fps: int, n_frames: int, sample_rate: int) -> None:
    """Write an mp4 with an H.264 video stream (``n_frames`` copies of ``frame``) and AAC mono audio."""
    import av

    # The temporary name does not end in .mp4, so a killed run leaves nothing a video lister would pick up.
    tmp = path.with_name(f".{path.name}.part")
    height, width = frame.shape[:2]
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"  # FFmpeg builds without x264
    with av.open(str(tmp), "w", format="mp4") as c:
        vs = c.add_stream(codec, rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.options = {"preset": "ultrafast", "crf": "18"} if codec == "libx264" else {"qscale": "3"}
        vs.thread_count = 1  # the machine is shared; tiny frames gain nothing from threads
        aus = c.add_stream("aac", rate=sample_rate, layout="mono")
        aus.options = {"aac_coder": "fast"}  # ~2x faster than the default two-loop search
        vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
        for i in range(n_frames):
            vf.pts = i
            for p in vs.encode(vf):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        chunk = 1024  # the AAC encoder's frame size
        for k in range(0, len(audio), chunk):
            af = av.AudioFrame.from_ndarray(audio[None, k : k + chunk], format="fltp", layout="mono")
            af.sample_rate, af.pts = sample_rate, k
            for p in aus.encode(af):
                c.mux(p)
        for p in aus.encode():
            c.mux(p)
    tmp.replace(path)  # a killed run never leaves a half-written mp4 under the final name


# -- top level -----------------------------------------------------------------------------
def _split_of(n_videos: int, seed: int, val_fraction: float, test_fraction: float) -> list[str]:
    n_test, n_val = round(n_videos * test_fraction), round(n_videos * val_fraction)
    if n_videos - n_test - n_val < 1:
        raise MMError(f"{n_videos} videos leave no training videos with val_fraction={val_fraction}, "
                      f"test_fraction={test_fraction}")  # fmt: skip
    order = np.random.default_rng([seed, 1 << 30]).permutation(n_videos)
    split = ["train"] * n_videos
    for i in order[:n_test]:
        split[i] = "test"
    for i in order[n_test : n_test + n_val]:
        split[i] = "val"
    return split


def _world_json(w: World) -> dict[str, Any]:
    return {
        "split": w.split,
        "scene": w.scene,
        "duration": w.duration,
        "voiceover": list(w.voiceover) if w.voiceover else None,
        "sources": [asdict(s) | {"visible": s.position is not None} for s in w.sources],
    }


def synthesize(
    out_dir: str | Path,
    n_videos: int,
    seed: int,
    *,
    duration_s: int = 10,
    fps: int = 4,
    size: tuple[int, int] = (96, 64),
    sample_rate: int = 16000,
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
    questions_per_video: int = 12,
    progress: bool = True,
) -> dict[str, Any]:
    """Render ``n_videos`` synthetic clips with questions into ``out_dir``; returns a summary dict.

    ``size`` is (width, height), both even. Evaluation questions whose answer never occurs in the
    training split are dropped (a model cannot answer them; counted in the summary).
    """
    if n_videos < 1:
        raise MMError(f"--videos must be at least 1, got {n_videos}")
    if duration_s < 3:
        raise MMError(f"duration_s must be at least 3 seconds, got {duration_s}")
    width, height = size
    if width % 6 or height % 2 or width < 48 or height < 32:
        raise MMError(f"size must be (width, height) with width a multiple of 6 (>= 48) and even height "
                      f"(>= 32), got {size}")  # fmt: skip
    t0 = time.perf_counter()
    splits = _split_of(n_videos, seed, val_fraction, test_fraction)  # validates before writing anything
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)

    worlds: list[World] = []
    it: Any = range(n_videos)
    if progress:
        from mmcore.distributed import track

        it = track(it, description="synthesizing videos")
    for i in it:
        rng = np.random.default_rng([seed, i])
        w = _sample_world(rng, f"{i + 1:08d}", splits[i], duration_s)
        w.questions = [
            {"type": t, "template": tpl, "values": vals, "answer": ans}
            for t, tpl, vals, ans in _draw_questions(w, rng, questions_per_video)
        ]
        audio = render_audio(w, sample_rate, rng)
        write_mp4(out / "videos" / f"{w.video_id}.mp4", render_frame(w, size), audio,
                  fps=fps, n_frames=duration_s * fps, sample_rate=sample_rate)  # fmt: skip
        worlds.append(w)

    train_answers = {q["answer"] for w in worlds if w.split == "train" for q in w.questions}
    per_split: dict[str, list[dict[str, Any]]] = {"train": [], "val": [], "test": []}
    dropped = 0
    qid = 0
    for w in worlds:
        for q in w.questions:
            if w.split != "train" and q["answer"] not in train_answers:
                dropped += 1
                continue
            per_split[w.split].append({
                "video_id": w.video_id,
                "question_id": qid,
                "type": json.dumps(list(q["type"])),
                "question_content": q["template"],
                "templ_values": json.dumps(q["values"]),
                "question_deleted": 0,
                "anser": q["answer"],
            })  # fmt: skip
            qid += 1
    for split, items in per_split.items():
        atomic_write_text(out / "annotations" / f"avqa-{split}.json", json.dumps(items, indent=1) + "\n")

    all_q = [q for qs in per_split.values() for q in qs]
    summary = {
        "seed": seed,
        "videos": n_videos,
        "videos_per_split": dict(Counter(splits)),
        "questions": len(all_q),
        "questions_per_split": {k: len(v) for k, v in per_split.items()},
        "per_type": dict(Counter(TYPE_KEY[tuple(json.loads(q["type"]))] for q in all_q)),
        "templates_used": len({q["question_content"] for q in all_q}),
        "answers": len({q["anser"] for q in all_q}),
        "dropped_unseen_answers": dropped,
        "duration_s": duration_s,
        "fps": fps,
        "size": list(size),
        "sample_rate": sample_rate,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    write_json(out / "world.json", {
        "summary": summary,
        "instruments": {n: {"look": instrument_look(i), "timbre": asdict(TIMBRES[n])} for i, n in enumerate(INSTRUMENTS)},
        "videos": {w.video_id: _world_json(w) for w in worlds},
    })  # fmt: skip
    return summary
