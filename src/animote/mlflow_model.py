"""An animote model as an MLflow pyfunc, logged as "models from code": MLflow runs this file to
load the model (nothing is unpickled), and the model's own checkpoint, an artifact, holds the
weights (loaded with ``torch.load(weights_only=True)``).

Input: per-frame features, (frames, D) float32, each role's raw features side by side in the
model's role order (what the feature backends write; :class:`animote.predict.Predictor` z-scores
them). Output: mesh offsets from the neutral mesh, (frames, 468 x 3) float32, in mesh units.
"""

from __future__ import annotations

import mlflow
import numpy as np

ENTRY = "animote.mlflow_model:AnimoteModel"  # what animote.tracking logs (stagecode follows it here)


class AnimoteModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from animote.predict import Predictor

        self.predictor = Predictor.load(context.artifacts["model"])

    def predict(self, context, model_input, params=None) -> np.ndarray:
        x = np.asarray(model_input, np.float32)
        p = self.predictor
        features, at = {}, 0
        for role in p.roles:
            dim = int(p.features[role]["dim"])
            features[role] = x[:, at:at + dim]
            at += dim
        if at != x.shape[1]:
            dims = ", ".join(f"{r} {p.features[r]['dim']}" for r in p.roles)
            raise ValueError(f"the input has {x.shape[1]} columns; the model takes {at} ({dims})")
        offsets = p.predict(features)
        return offsets.reshape(len(offsets), -1)


mlflow.models.set_model(AnimoteModel())
