"""What ``labelaudit train`` trains on: the data through the scan's stages, aligned with the audit and
changed by the chosen methods, the held-out and trusted sets, all on the device."""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..audit.read import load_audit
from ..data.cache import array_digest, cache_dir_for
from ..data.dataset import Dataset, fingerprint
from ..data.trusted import TrustedSet, load_trusted
from ..errors import UsageError
from ..progress import Progress
from ..training.checkpoint import checkpoint_key
from ..training.device import resolve_device
from ..training.distributed import current
from ..training.backbones import Pretrained, resolve_weights
from ..training.embeddings import Standardise, backbone_embeddings, describe_backbone
from ..training.loop import Normalise, device_images, device_labels, device_model
from ..training.models import DEFAULT_IMAGE_SIZE
from .config import TrainConfig
from .data import correction_matrix, load_data, training_set

_NOT_IN_KEY = ("resume", "workers", "cache", "cache_dir")  # settings a resumed run may change freely


@dataclass
class TrainInputs:
    """The training set (after the audit's changes) and everything else a run reads, on ``device``."""

    ds: Dataset
    keep: np.ndarray  # (n,) rows of ds trained on
    train_labels: np.ndarray  # (n,) class indices after --relabel
    changes: dict  # what the audit changed, for metrics.json
    t_info: dict  # the correction's matrix, described
    eval_ds: Dataset | None
    trust: TrustedSet | None
    audit_path: str | None
    image_size: int
    augment: str
    device: torch.device
    images: torch.Tensor  # (n, 3, S, S) uint8
    labels: torch.Tensor  # (n,) int64
    weights: torch.Tensor  # (n,) float32, the audit's with --weights, else ones
    normalise: Normalise | Standardise  # what a batch of ``images`` goes through before the network
    matrix: torch.Tensor | None = None  # T (forward) or its conditioned inverse (backward), (K, K)
    eval_images: torch.Tensor | None = None
    eval_labels: torch.Tensor | None = None
    probe_images: torch.Tensor | None = None  # the trusted set's images, for the meta step
    probe_labels: torch.Tensor | None = None
    pretrained: Pretrained | None = None  # --pretrained: the weights the network starts from
    pixels: Normalise | None = None  # the pixel normalisation of the whole network (model.json's mean and std)
    backbone: dict | None = None  # metrics.json's backbone block
    # --freeze: ``images``/``eval_images`` are the backbone's (n, D) embeddings, ``normalise`` standardises
    # them, and the head trained on them is folded into ``frozen_net`` for the model saved
    frozen_net: torch.nn.Module | None = None

    @property
    def n(self) -> int:
        return int(self.images.shape[0])

    def checkpoint_key(self, config: TrainConfig) -> str:
        """The digest a checkpoint must carry to be resumed: the settings, the device type and every
        array the run reads."""
        h = hashlib.blake2b(digest_size=16)
        for array in (self.train_labels, self.weights.cpu().numpy(),
                      None if self.matrix is None else self.matrix.cpu().numpy(),
                      None if self.trust is None else self.trust.labels):
            h.update(b"-" if array is None else np.ascontiguousarray(array).tobytes())
        settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in _NOT_IN_KEY}
        return checkpoint_key(settings=settings, image_size=self.image_size, augment=self.augment,
                              device=self.device.type, world_size=current().size, classes=self.ds.classes, listing=fingerprint(self.ds.samples),
                              pixels=array_digest(self.ds.images), arrays=h.hexdigest(),
                              eval=None if self.eval_ds is None else fingerprint(self.eval_ds.samples))


def prepare(data, config: TrainConfig, *, audit=None, manifest=None, root=None, eval_data=None, eval_manifest=None,
            eval_root=None, trusted=None, trusted_root=None, progress: Progress | None = None) -> TrainInputs:
    """Load and check everything a training run reads; UsageError for a method without what it needs."""
    if config.needs_trusted and trusted is None:
        raise UsageError("--meta-reweight/--meta-relabel need a trusted set: pass --trusted FILE (path,label rows "
                         "whose labels were verified by hand)")
    if config.needs_audit and audit is None:
        raise UsageError(f"{', '.join(config.methods())} need(s) an audit: pass --audit AUDIT_DIR (the --out of "
                         "`labelaudit scan` on this data)")
    aud = load_audit(audit) if audit is not None else None
    pretrained = resolve_weights(config.model, config.pretrained, "--pretrained")  # a bad file or name stops at once
    scan_config = aud.run.config if aud is not None else {}
    image_size = (config.image_size or (pretrained.image_size if pretrained is not None else None)
                  or int(scan_config.get("image_size") or DEFAULT_IMAGE_SIZE))
    augment = "none" if config.freeze else config.augment or scan_config.get("augment", "crop+flip")
    device = resolve_device(config.device)  # under torchrun: this process's own GPU

    ds = load_data(data, manifest, root, config, image_size, progress)
    keep, train_labels, train_weights, changes = training_set(ds, aud, config)
    t_matrix, t_info = correction_matrix(aud, ds.classes, config) if aud is not None else (None, {})
    eval_ds = None
    if eval_data is not None or eval_manifest is not None:
        eval_ds = load_data(eval_data, eval_manifest, eval_root, config, image_size, None)
        unknown_classes = sorted(set(eval_ds.classes) - set(ds.classes))
        if unknown_classes:
            raise UsageError(f"--eval: label(s) {', '.join(unknown_classes[:5])} are not classes of the training "
                             f"data ({', '.join(ds.classes[:8])}…); the held-out set must use the same classes")
    trust = None
    if trusted is not None:
        trust = load_trusted(trusted, classes=ds.classes, data_files=ds.files, data_labels=ds.labels,
                             image_size=image_size, workers=config.decode_workers,
                             cache_dir=cache_dir_for(config.cache, config.cache_dir), root=trusted_root,
                             allow_outside_root=config.allow_outside_root)
        if config.needs_trusted:
            trust.require_every_class(ds.classes, "--meta-reweight" if not config.meta_relabel else "--meta-relabel")

    decoded = ds.images[keep]
    images = device_images(decoded, device)  # (n, 3, S, S) uint8, augmented and normalised per batch
    pixels = Normalise.for_network(images, pretrained, device)
    inputs = TrainInputs(ds, keep, train_labels, changes, t_info, eval_ds, trust,
                         str(Path(audit).resolve()) if audit is not None else None, image_size, augment, device,
                         images, device_labels(train_labels, device), torch.from_numpy(train_weights).to(device),
                         pixels, None if t_matrix is None else torch.from_numpy(t_matrix).to(device),
                         pretrained=pretrained, pixels=pixels)
    if pretrained is not None:
        inputs.backbone = describe_backbone(config.model, pretrained, config.freeze)
    if eval_ds is not None:
        inputs.eval_images = device_images(eval_ds.images, device)
        inputs.eval_labels = device_labels(
            eval_ds.samples["given_label"].map({c: k for k, c in enumerate(ds.classes)}), device)
    if trust is not None:
        inputs.probe_images = device_images(trust.images, device)  # (M, 3, S, S) uint8
        inputs.probe_labels = device_labels(trust.labels, device)
    if config.freeze:
        _to_embeddings(inputs, config, decoded, progress)
    return inputs


def _to_embeddings(inputs: TrainInputs, config: TrainConfig, decoded: np.ndarray, progress: Progress | None) -> None:
    """--freeze: the training and held-out images (``decoded``: the training rows as decoded) replaced
    by the backbone's embeddings (cached as scan caches them, training/embeddings.py), standardised
    with the training set's statistics; the backbone, built once, is kept to fold the head into."""
    cache_dir = cache_dir_for(config.cache, config.cache_dir)
    torch.manual_seed(config.seed)
    net = device_model(config.model, len(inputs.ds.classes), inputs.device, inputs.pretrained)

    def embeddings_of(images: torch.Tensor, pixels: np.ndarray, stage_progress) -> tuple[torch.Tensor, dict]:
        arr, info = backbone_embeddings(net, config.model, inputs.pretrained, images, array_digest(pixels),
                                        inputs.pixels, cache_dir, config.batch_size, stage_progress)
        return torch.from_numpy(arr).to(inputs.device), info

    inputs.images, info = embeddings_of(inputs.images, decoded, progress)
    if inputs.eval_images is not None:
        inputs.eval_images, _ = embeddings_of(inputs.eval_images, inputs.eval_ds.images, None)
    inputs.backbone = {**inputs.backbone, **info}
    inputs.normalise = Standardise(inputs.images)
    inputs.frozen_net = net
