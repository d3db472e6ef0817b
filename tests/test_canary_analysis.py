"""The canary's judgement on given figures (no processes): the score-distribution check needs
enough canary scores to mean anything."""

from __future__ import annotations

from resources.canary_policy import CanaryPolicy
from sensors.canary import Stats, analyze

BOUNDS = ["0.1", "0.2", "0.5", "+Inf"]


def _stats(requests: int, shares: list[float]) -> Stats:
    """`requests` rows scored, spread over the buckets by `shares` (cumulative histogram)."""
    cumulative, total = {}, 0.0
    for le, share in zip(BOUNDS, shares, strict=True):
        total += requests * share
        cumulative[le] = total
    return Stats(requests=requests, latency={"0.05": requests, "+Inf": requests}, scores=cumulative)


def test_a_shifted_score_distribution_fails_only_with_enough_canary_scores():
    policy = CanaryPolicy(min_requests=20, min_score_rows=100)
    main = _stats(2_000, [0.7, 0.2, 0.08, 0.02])
    shifted = [0.3, 0.3, 0.3, 0.1]
    passed, reason, figures = analyze(_stats(30, shifted), main, policy)
    assert passed and figures["score_psi"] > policy.max_score_psi and figures["canary_scores"] == 30
    passed, reason, _ = analyze(_stats(300, shifted), main, policy)
    assert passed is False and reason.startswith("score PSI")
    passed, _, _ = analyze(_stats(300, [0.7, 0.2, 0.08, 0.02]), main, policy)
    assert passed
