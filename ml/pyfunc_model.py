"""MLflow "model from code": the registered version serves through the same artifact as Seldon."""

import mlflow
import pandas as pd


class ServingPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from seldon.artifact import ServingModel

        self.model = ServingModel(context.artifacts["serving"])

    def predict(self, context, model_input: pd.DataFrame, params=None):
        columns = {c: model_input[c].to_numpy() for c in model_input.columns}
        return self.model.score_columns(columns)


mlflow.models.set_model(ServingPyfunc())
