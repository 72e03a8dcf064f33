"""``labelaudit predict``: a model folder written by ``labelaudit train``, applied to images."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..audit.write import write_parquet
from ..errors import UsageError
from ..progress import Progress
from ..training.backbones import build_network, head_of
from .config import TrainConfig
from .data import load_data
from .fit import MODEL_FILE, MODEL_JSON


def load_model(model_dir: str | Path, device=None):
    """(network in eval mode, model.json as a dict) from a MODEL_DIR written by :func:`train`.
    Reads the weights with ``torch.load(..., weights_only=True)``."""
    import torch

    model_dir = Path(model_dir)
    info_path = model_dir / MODEL_JSON
    if not info_path.is_file() or not (model_dir / MODEL_FILE).is_file():
        raise UsageError(f"{model_dir}: not a model folder (no {MODEL_JSON} or {MODEL_FILE}); pass the --out of "
                         "`labelaudit train`")
    try:
        info = json.loads(info_path.read_text())
        state = torch.load(model_dir / MODEL_FILE, map_location="cpu", weights_only=True)
        model = build_network(info["model"], len(info["classes"]), torchvision=info.get("architecture") == "torchvision")
        head = head_of(model)
        if f"{head}.bias" in state and model.get_submodule(head).bias is None:  # a head trained on frozen embeddings
            model.set_submodule(head, torch.nn.Linear(*reversed(state[f"{head}.weight"].shape)))
        model.load_state_dict(state)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise UsageError(f"{model_dir}: cannot load the model ({str(exc).splitlines()[0]}); train it again") from None
    return model.to(device or "cpu").eval(), info


def predict(model_dir: str | Path, data: str | Path | None = None, *, manifest=None, root=None,
            out: str | Path | None = None, device: str = "auto", batch_size: int = 256, workers: int = 0,
            progress: Progress | None = None, allow_outside_root: bool = False) -> pd.DataFrame:
    """Predict every image of ``data`` (folder or manifest) with a trained model.

    Returns (and writes to ``out`` as Parquet, when given) path, given_label, predicted_label,
    confidence and one ``p_<class>`` column per class. Unreadable images are left out (as in scan).
    """
    import torch

    from ..training.device import resolve_device
    from ..training.loop import Normalise, autocast_for, batched_logits, device_images

    dev = resolve_device(device)
    model, info = load_model(model_dir, dev)
    ds = load_data(data, manifest, root, TrainConfig(workers=workers, allow_outside_root=allow_outside_root),
               int(info["image_size"]), progress)
    normalise = Normalise(torch.tensor(info["mean"], device=dev).view(1, 3, 1, 1),
                          torch.tensor(info["std"], device=dev).view(1, 3, 1, 1))
    logits = batched_logits(model, device_images(ds.images, dev), normalise, batch_size, autocast_for(dev))
    probs = torch.softmax(logits, dim=1).cpu().numpy()
    classes = [str(c) for c in info["classes"]]
    pred = probs.argmax(axis=1)
    df = pd.DataFrame({"path": ds.samples["path"], "given_label": ds.samples["given_label"],
                       "predicted_label": np.asarray(classes, dtype=object)[pred],
                       "confidence": probs[np.arange(len(pred)), pred].astype(np.float64)})
    for j, c in enumerate(classes):
        df[f"p_{c}"] = probs[:, j].astype(np.float64)
    if out is not None:
        write_parquet(df, Path(out))
    return df
