"""Pipeline schedules: how per-rank micro-batch times compose into a step."""

from __future__ import annotations

from collections.abc import Sequence


def pipeline_time(rank_times_s: Sequence[float], microbatches: int, vpp: int) -> float:
    """Step time of a 1F1B (vpp=1) or interleaved (vpp>1) pipeline.

    Uniform ranks give (m + (p-1)/v)·t (Narayanan et al. 2021, eq. 1 and §2.2.1): the slowest rank
    paces the m micro-batches, and the fill/drain crosses the other ranks once, v times faster
    when each rank holds v chunks. Non-uniform ranks generalise the fill/drain to their sum.
    """
    assert microbatches >= 1 and vpp >= 1
    slowest = max(rank_times_s)
    fill_drain = (sum(rank_times_s) - slowest) / vpp
    return microbatches * slowest + fill_drain


def bubble_fraction(pp: int, microbatches: int, vpp: int = 1) -> float:
    """Idle share of a uniform pipeline: (p-1)/(v·m) over the ideal (Narayanan et al. 2021, eq. 1)."""
    return (pp - 1) / (vpp * microbatches)
