"""Export a trained network as the serving artifact (TorchScript + feature schema).

TorchScript rather than ONNX: it runs on the torch already in the serving image (no extra
runtime), and `make bench-train` measures it against the eager model at batch 1 and 1,024.
"""

from __future__ import annotations

from pathlib import Path

import torch

from seldon.artifact import MODEL_FILE, FeatureSchema, save_schema


def export_artifact(net: torch.nn.Module, schema: FeatureSchema, directory: str | Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    scripted = torch.jit.script(net.cpu().eval())
    scripted = torch.jit.freeze(scripted)
    scripted.save(str(directory / MODEL_FILE))
    save_schema(directory, schema)
    return directory
