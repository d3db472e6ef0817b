"""How a canary rollout proceeds: the traffic steps and the checks of each step.

One object, held by the `SeldonTarget` resource (`seldon_target.canary`), so the
`seldon_deployment` asset (the first step's weight, the steps recorded in the manifest) and the
canary sensor (the next step, promote, roll back) read the same policy; definitions.py sets it.
"""

from __future__ import annotations

import dagster as dg


class CanaryPolicy(dg.Config):
    steps: list[int] = [10, 25, 50, 100]  # noqa: RUF012  # canary traffic %, in order; reaching 100 promotes (a pydantic field: copied per instance)
    min_requests: int = 20  # canary requests per interval before it is judged
    max_error_rate: float = 0.01  # 5xx share
    max_p99_ratio: float = 1.5  # canary p99 vs main p99 ...
    p99_slack_s: float = 0.05  # ... plus this much (tiny p99s are noisy)
    max_score_psi: float = 0.25  # population stability index, canary scores vs main's ...
    min_score_rows: int = 100  # ... judged from this many canary scores in the interval (fewer: too noisy)
    max_failed_checks: int = 2
