"""Data-quality policy, configurable per environment."""

import dagster as dg


class DataQuality(dg.ConfigurableResource):
    """`max_quarantine_share`: above this share of rejected rows, the blocking check fails and
    the partition does not flow downstream."""

    max_quarantine_share: float = 0.02
