"""MLflow "model from code": the registered version serves through the same artifact as Seldon."""

import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc.model import PythonModel


class ServingPyfunc(PythonModel):
    def load_context(self, context):
        from seldon.artifact import ServingModel

        self.model = ServingModel(context.artifacts["serving"])

    def predict(self, context, model_input: pd.DataFrame, params=None):
        columns = {c: model_input[c].to_numpy() for c in model_input.columns}
        return self.model.score_columns(columns)


set_model(ServingPyfunc())
