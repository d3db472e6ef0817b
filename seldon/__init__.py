"""Code that runs in the serving environment (.venv-serving): numpy, torch and seldon-core only.

Nothing here may import dagster, mlflow, feast or lightning; the orchestration side imports
these modules (the artifact format and the feature encoding) so both sides share one definition.
"""
