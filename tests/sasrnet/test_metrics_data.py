"""Per-type accuracy and negative pairing, checked against brute-force references (hypothesis)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from sasrnet.metrics import AVG_GROUPS, REPORT_KEYS, type_accuracies

TYPES = ["A-Count", "A-Comp", "V-Count", "V-Loc", "AV-Ext", "AV-Count", "AV-Loc", "AV-Comp", "AV-Temp"]


@given(st.lists(st.tuples(st.sampled_from(TYPES), st.booleans()), min_size=1, max_size=60))
def test_type_accuracies_match_brute_force(pairs):
    keys, correct = [k for k, _ in pairs], [c for _, c in pairs]
    m = type_accuracies(keys, correct)
    groups = {**{t: (t,) for t in TYPES}, **AVG_GROUPS, "overall": tuple(TYPES)}
    for key in REPORT_KEYS:
        sel = [c for k, c in pairs if k in groups[key]]
        expected = None if not sel else round(100 * sum(sel) / len(sel), 4)
        assert m[key] == expected, key




def test_majority_answer_chance_level_per_type():
    from sasrnet.metrics import majority_answer_accuracy, majority_answers

    train = [("A-Count", "two"), ("A-Count", "two"), ("A-Count", "one"), ("V-Loc", "left")]
    maj = majority_answers(train)
    assert maj == {"A-Count": "two", "V-Loc": "left"}
    acc = majority_answer_accuracy(maj, [("A-Count", "two"), ("A-Count", "three"), ("V-Loc", "right"), ("AV-Ext", "yes")])
    assert acc["A-Count"] == 50.0 and acc["V-Loc"] == 0.0 and acc["AV-Ext"] == 0.0 and acc["overall"] == 25.0
    assert majority_answer_accuracy({"A-Count": "three"}, [("A-Count", "three")])["A-Count"] == 100.0
