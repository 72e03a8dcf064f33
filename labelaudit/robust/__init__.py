"""``labelaudit train`` and ``predict``: the second, noise-robust training run that uses an audit, and
the model it keeps. Settings: :class:`TrainConfig`; methods: weights, drop/relabel, loss correction
(Patrini), SLN with a momentum model and label correction, IEG's meta step with a trusted set."""
from .config import TrainConfig
from .fit import META_WEIGHTS, METRICS_JSON, MODEL_FILE, MODEL_JSON, TrainResult, train
from .predict import load_model, predict

__all__ = ["TrainConfig", "TrainResult", "train", "predict", "load_model", "MODEL_FILE", "MODEL_JSON",
           "METRICS_JSON", "META_WEIGHTS"]
