"""The 33 Music-AVQA question templates, each a generator answering from the world state."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from mmcore.avqa.music_avqa import INSTRUMENTS, TYPE_KEY
from mmcore.avqa.synth.world import (
    LOUDNESS_RATIO,
    MIN_DURATION_GAP,
    NUMBERS,
    ORDINALS,
    POSITIONS,
    Source,
    World,
)

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


# What answering each template needs, read off the world facts its generator uses (decided before any
# model was trained on the lit world). "audio": the soundtrack alone determines the answer (timbres,
# loudness, note rates, onsets of every heard instrument, off-screen ones and the voiceover included);
# "vision": the frames alone do (looks, positions, scene, and in the lit world when each visible
# instrument sounds); "both": neither alone does (a sound must be matched to a place or a look).
# LIT_ONLY_VISION: vision alone suffices only because plates light up; in the static world these need both.
NEEDS: dict[str, str] = {tpl: need for tpl, need in zip((t[1] for t in TEMPLATES), (
    "audio", "audio", "audio", "audio", "audio", "audio",  # A-Count, A-Comp: heard instruments incl. off-screen
    "vision", "vision", "vision", "vision",  # V-Count
    "vision", "vision", "vision", "vision",  # V-Loc
    "vision", "audio", "both",  # AV-Ext: always playing (lit plate), voiceover, sound from the shown instrument
    "vision", "vision", "vision", "audio",  # AV-Count: sounding / silent / sounding X (lit plates); heard types
    "vision", "vision", "both", "audio",  # AV-Loc: first/last lit, loudest position, what sounds with X
    "both", "both", "both", "both",  # AV-Comp: loudness / rhythm of instruments picked by place
    "vision", "vision", "vision", "vision",  # AV-Temp: the order in which plates light up
), strict=True)}
LIT_ONLY_VISION = frozenset(TEMPLATES[i][1] for i in (14, 17, 18, 19, 21, 22, 29, 30, 31, 32))


def template_needs(frames: str = "lit") -> dict[str, str]:
    """Template -> "audio" | "vision" | "both" for a world rendered with ``frames`` ("lit" | "static")."""
    if frames == "lit":
        return dict(NEEDS)
    return {t: "both" if t in LIT_ONLY_VISION else n for t, n in NEEDS.items()}


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


