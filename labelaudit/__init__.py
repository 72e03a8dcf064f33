"""labelaudit: find mislabeled samples in image-classification datasets.

    from labelaudit import scan
    result = scan("data/train", out="audit/")
    result.suspects.head()

The package reads as its pipeline; each layer imports only from the ones before it
(tests/test_layers.py):

    data/        sources (folder, manifest), decode, cache, dataset, the trusted set    stages 1-2
    training/    device, models, augment, checkpoints, the one training loop
    dynamics/    recorders, LIMIT, pseudo labels, the proxy run                       stage 3
    scores.py    AUL, AUM, LIMIT distance, fusion                                     stage 4
    noise/       mixture, transition, calibration on verified labels, stopping rule   stage 5
    decisions.py p -> flags, ranks, weights, suggested labels                         stage 6
    audit/       the run record (run.json) and the audit folder, written and read     stage 7
    report.py    report.html
    config.py    the scan's settings, parsed once; settings files
    pipeline.py  scan(): the stages in order
    gate.py, export.py, robust/ (train, predict), demo.py: what uses an audit
    cli/         one thin file per command

The public API is imported lazily so that ``import labelaudit`` (and the decode worker processes,
which import :mod:`labelaudit.data.decode`) does not pay for importing torch.
"""
from __future__ import annotations

from ._version import __version__

_LAZY = {
    "scan": "pipeline", "ScanResult": "pipeline", "ScanConfig": "config",
    "Audit": "audit.read", "load_audit": "audit.read", "RunRecord": "audit.record",
    "train": "robust", "predict": "robust", "TrainConfig": "robust",
    "check_audit": "gate", "Thresholds": "gate",
    "LabelauditError": "errors", "UsageError": "errors", "DataError": "errors", "TrainingError": "errors",
    "DeviceMemoryError": "errors",
}
__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'labelaudit' has no attribute {name!r}")
