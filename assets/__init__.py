"""Software-defined assets, one module per stage."""

import warnings

import dagster as dg

# Deliberate uses of beta parameters (single-run backfills, lookback partition mappings).
warnings.filterwarnings("ignore", category=dg.BetaWarning)
