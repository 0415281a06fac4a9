"""Brute-force Recall@K with texts owned by several images: the reference the blocked computation is tested against."""

from __future__ import annotations

import numpy as np


def reference_recall_multi(sim: np.ndarray, owners: list[set[int]], ks) -> dict[str, float]:
    """Sort-based reference with several owners per text: ties broken against the query."""
    n_img, n_txt = sim.shape
    i2t_first, t2i_first = [], []
    for i in range(n_img):
        mine = {t for t in range(n_txt) if i in owners[t]}
        if not mine:
            continue
        order = sorted(range(n_txt), key=lambda t: (-sim[i, t], t in mine))
        i2t_first.append(next(pos for pos, t in enumerate(order) if t in mine))
    for t in range(n_txt):
        order = sorted(range(n_img), key=lambda i: (-sim[i, t], i in owners[t]))
        t2i_first.append(next(pos for pos, i in enumerate(order) if i in owners[t]))
    out = {f"i2t_R@{k}": 100.0 * sum(p < k for p in i2t_first) / len(i2t_first) for k in ks}
    out |= {f"t2i_R@{k}": 100.0 * sum(p < k for p in t2i_first) / len(t2i_first) for k in ks}
    return out
