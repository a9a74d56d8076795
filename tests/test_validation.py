"""A regression guard on the estimator's accuracy: predicted step times against the measured
runs of public papers (`shared/validation/published_runs.json`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoplan.validation import Row, score, summary

RUNS = Path(__file__).resolve().parents[2] / "shared" / "validation" / "published_runs.json"


@pytest.fixture(scope="module")
def rows() -> list[Row]:
    scored, _ = score(RUNS)
    return scored


def test_summary_statistics():
    s = summary([0.1, -0.2, 0.05, -0.4, 0.3])
    assert s == {"n": 5, "median": 0.2, "p80": 0.3, "max": 0.4}
    assert summary([])["n"] == 0


def test_enough_records_are_scored(rows):
    dense = [r for r in rows if r.case.family == "dense"]
    assert len(dense) >= 30


def test_dense_accuracy(rows):
    s = summary([r.error for r in rows if r.case.family == "dense"])
    assert s["median"] <= 0.12, s
    assert s["p80"] <= 0.25, s


def korthikanti_pairs(rows: list[Row]) -> dict[str, dict[str, Row]]:
    pairs: dict[str, dict[str, Row]] = {}
    for r in rows:
        if r.case.pair:
            kind = "full" if r.case.id.endswith("full-recompute") else "selective"
            pairs.setdefault(r.case.pair, {})[kind] = r
    return pairs


def test_four_korthikanti_pairs_are_scored(rows):
    pairs = korthikanti_pairs(rows)
    assert len(pairs) == 4 and all(set(p) == {"full", "selective"} for p in pairs.values())


@pytest.mark.parametrize("pair", ["korthikanti-22b-a100-8", "korthikanti-175b-a100-64", "korthikanti-530b-a100-280",
                                  "korthikanti-1t-a100-512"])
def test_korthikanti_twins_ranked_and_ratio(rows, pair):
    """Selective recompute + SP against full recompute on the same model and cluster
    (Korthikanti et al. 2022, Table 4): the faster one is predicted faster, by the right margin."""
    twins = korthikanti_pairs(rows)[pair]
    full, selective = twins["full"], twins["selective"]
    measured = full.case.measured_step_s / selective.case.measured_step_s
    predicted = full.predicted_s / selective.predicted_s
    assert measured > 1 and predicted > 1
    assert predicted == pytest.approx(measured, rel=0.10)
