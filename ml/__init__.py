"""Model code for the orchestration side: the network, its Lightning wrapper, metrics, export."""
