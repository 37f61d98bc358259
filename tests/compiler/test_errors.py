"""The one "did you mean" (compiler.errors.suggest), used by every stage that names things."""
from __future__ import annotations

import difflib

from hypothesis import given
from hypothesis import strategies as st

from compiler.errors import SUGGEST_CUTOFF, suggest

names = st.text("abkw12_", min_size=1, max_size=6)


def test_a_two_letter_name_with_one_letter_wrong_is_offered():
    assert suggest("kl", ["b1", "k1", "b2"]) == "k1"  # ratio 0.5: the cutoff itself
    assert suggest("W2", ["w1", "w2"]) == "w2"


def test_the_first_given_wins_a_tie():
    assert suggest("k", ["k2", "k1"]) == "k2"
    assert suggest("k", ["k1", "k2"]) == "k1"


def test_nothing_alike_is_no_suggestion():
    assert suggest("zzz", ["loss", "yhat"]) is None
    assert suggest("loss", []) is None
    assert suggest("abc", ["xbyz"]) is None  # ratio 2/7


@given(names, st.lists(names, max_size=8))
def test_the_best_candidate_by_difflibs_ratio_above_the_cutoff(word, candidates):
    ratio = {c: difflib.SequenceMatcher(None, c, word).ratio() for c in candidates}
    got = suggest(word, candidates)
    if got is None:
        assert all(r < SUGGEST_CUTOFF for r in ratio.values())
    else:
        assert ratio[got] >= SUGGEST_CUTOFF and ratio[got] == max(ratio.values())
        assert got == next(c for c in candidates if ratio[c] == ratio[got])
    assert (got is None) == (not difflib.get_close_matches(word, candidates, n=1,
                                                             cutoff=SUGGEST_CUTOFF))
