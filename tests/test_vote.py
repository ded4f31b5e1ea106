"""Majority vote: canonical keys, empty answers, ties, agreement."""
import pytest

from zeroplay.verifiers.vote import canonical_key, majority_vote


def test_canonical_key_merges_number_forms():
    keys = {canonical_key(a) for a in ("0.5", r"\frac{1}{2}", r"\dfrac12", "1/2", "$0.50$",
                                       "2/4")}
    assert keys == {"1/2"}
    assert canonical_key("72.0") == canonical_key("72") == "72"
    assert canonical_key("1,000") == "1000"
    assert canonical_key(r"\text{ Monday }") == "Monday"
    for empty in (None, "", "   ", "$$", r"\text{}"):
        assert canonical_key(empty) is None


def test_plurality_with_canonicalisation():
    v = majority_vote(["0.5", r"\frac{1}{2}", "3", "1/2", None, "3"])
    assert v.label == "0.5" and v.key == "1/2" and v.count == 3
    assert v.n_valid == 5 and v.n_total == 6 and not v.tie
    assert v.agreement == pytest.approx(3 / 5)
    assert v.matches == (True, True, False, True, False, False)
    assert v.counts == {"1/2": 3, "3": 2}


def test_empty_answers_ignored_or_counted():
    answers = ["7", None, "", "7", "  ", "8"]
    ignore = majority_vote(answers)
    count = majority_vote(answers, empty="count")
    assert ignore.label == count.label == "7"
    assert ignore.agreement == pytest.approx(2 / 3)
    assert count.agreement == pytest.approx(2 / 6)
    nothing = majority_vote([None, "", " "])
    assert nothing.label is None and nothing.agreement == 0.0 and nothing.matches == (False,) * 3
    assert majority_vote([]).label is None


def test_tie_policies():
    answers = ["b", "a", "a", "b", "c"]
    none = majority_vote(answers)
    assert none.label is None and none.tie and none.count == 2
    assert none.agreement == pytest.approx(2 / 5) and not any(none.matches)
    assert majority_vote(answers, tie="first").label == "b"
    assert majority_vote(answers, tie="smallest").label == "a"
    assert majority_vote(list(reversed(answers)), tie="smallest").label == "a"
    assert majority_vote(answers, tie=lambda tied: tied[-1]).label == "a"
    assert majority_vote(answers, tie=lambda tied: None).label is None
    with pytest.raises(ValueError):
        majority_vote(answers, tie="coin")
    with pytest.raises(ValueError):
        majority_vote(answers, empty="drop")


def test_math_equivalence_merges_forms_canonical_keys_miss():
    answers = ["x^2+2x+1", "(x+1)^2", "(x + 1)^{2}", "x^2+1", "x^2+1"]
    plain = majority_vote(answers, tie="none")
    assert plain.label == "x^2+1" and plain.count == 2
    merged = majority_vote(answers, equivalence="math")
    assert merged.key == "x^2+2x+1" and merged.count == 3
    assert merged.matches == (True, True, True, False, False)
    assert merged.agreement == pytest.approx(3 / 5)
