"""``--freeze``: a pretrained backbone's embeddings, computed once and cached, and the head that trains
on them.

The backbone (backbones.py: a torchvision model with its weights, or a network from a file) runs once
over every un-augmented image, in eval mode, with its classification head removed; its (N, D)
embeddings are cached on disk under a key of the decoded pixels (their digest, which follows the
files' contents), the backbone's name, the digest of its weights and the normalisation, so a re-scan
with the same backbone computes none. A linear head then trains on them through the one training
loop with the same recorders as any proxy, so AUL, AUM, the noise model, T and everything downstream
work unchanged. The embeddings also give the neighbourhood score (scores.py ``knn_disagreement``), with
``--freeze`` and, taken before the network trains, when it fine-tunes.
"""
from __future__ import annotations

import copy
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..atomic import write_atomic, write_text_atomic
from ..data.cache import array_digest, save_npy
from ..progress import Progress
from .backbones import Pretrained, head_of
from .loop import Normalise, autocast_for, model_device, to_device

EMBED_VERSION = 1  # bump when the way embeddings are computed changes


def without_head(net: nn.Module) -> nn.Module:
    """A copy of ``net`` whose classification head (its last linear layer) is the identity: its
    output is the embedding the head would have read."""
    body = copy.deepcopy(net)
    body.set_submodule(head_of(body), nn.Identity())
    return body


def weights_digest(pretrained: Pretrained) -> str:
    """BLAKE2b over the weights' names, shapes and bytes."""
    h = hashlib.blake2b(digest_size=16)
    for key in sorted(pretrained.state_dict):
        t = pretrained.state_dict[key].detach().cpu().contiguous()
        h.update(f"{key}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())  # any dtype, bfloat16 too
    return h.hexdigest()


def embedding_key(pixels: str, model: str, pretrained: Pretrained, mean, std) -> str:
    """The cache key of a dataset's embeddings (see the module docstring)."""
    parts = {"version": EMBED_VERSION, "pixels": pixels, "model": model, "weights": weights_digest(pretrained),
             "mean": [round(float(v), 6) for v in np.ravel(mean)], "std": [round(float(v), 6) for v in np.ravel(std)]}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


@torch.no_grad()
def embed(body: nn.Module, images: torch.Tensor, normalise, batch_size: int, autocast,
          progress: Progress | None = None) -> torch.Tensor:
    """(N, D) float32 embeddings of the uint8 images (N, 3, S, S), in eval mode, un-augmented."""
    body.eval()
    device = model_device(body)
    n, out = images.shape[0], []
    for start in range(0, n, batch_size):
        ids = torch.arange(start, min(start + batch_size, n), device=images.device)
        with autocast:
            out.append(body(normalise(to_device(images[ids], device))).float().flatten(1))
        if progress is not None:
            progress("embed", min(start + batch_size, n), n, {})
    return torch.cat(out)


def cached_embeddings(key: str, cache_dir: Path | None, compute) -> tuple[np.ndarray, bool]:
    """The embeddings under ``key`` in ``cache_dir``/embeddings, or ``compute()`` (stored there when
    there is a cache). Returns (embeddings (N, D) float32, whether they were computed now)."""
    folder = None if cache_dir is None else Path(cache_dir) / "embeddings"
    path = None if folder is None else folder / f"{key}.npy"
    if path is not None and path.is_file() and path.with_suffix(".json").is_file():
        try:  # checked as the image cache checks its packs: a damaged file is computed again, never trusted
            arr = np.load(path, allow_pickle=False)
            meta = json.loads(path.with_suffix(".json").read_text())
            if arr.dtype == np.float32 and list(arr.shape) == meta["shape"] and array_digest(arr) == meta["checksum"]:
                return arr, False
        except (OSError, ValueError, KeyError):
            pass
    arr = np.ascontiguousarray(compute(), dtype=np.float32)
    if path is not None:
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda tmp: save_npy(tmp, arr))
        write_text_atomic(path.with_suffix(".json"), json.dumps({"shape": list(arr.shape), "key": key,
                                                                 "checksum": array_digest(arr)}))
    return arr, True


def describe_backbone(model: str, pretrained: Pretrained, frozen: bool) -> dict:
    """What run.json and metrics.json say of the backbone (``backbone_embeddings`` adds its embeddings)."""
    return {"model": model, "weights": pretrained.source, "frozen": frozen, **({"head": "linear"} if frozen else {})}


def backbone_embeddings(net: nn.Module, model: str, pretrained: Pretrained, images: torch.Tensor, pixels: str,
                        normalise: Normalise, cache_dir: Path | None, batch_size: int,
                        progress: Progress | None = None) -> tuple[np.ndarray, dict]:
    """The embeddings of every image (``images`` (N, 3, S, S) uint8, ``pixels`` their digest) by ``net``
    without its head (``model`` started from ``pretrained``, inputs through ``normalise``), from the
    cache or computed once and cached: a frozen head's input, and the neighbourhood score's space.
    Returns (embeddings (N, D) float32, the facts of them that ``describe_backbone``'s block gains)."""
    key = embedding_key(pixels, model, pretrained, normalise.mean.cpu(), normalise.std.cpu())
    t = time.perf_counter()
    embeddings, computed = cached_embeddings(key, cache_dir, lambda: embed(
        without_head(net), images, normalise, max(batch_size, 256), autocast_for(model_device(net)),
        progress).cpu().numpy())
    info = {"embedding_dim": int(embeddings.shape[1]), "embeddings": "computed" if computed else "cached",
            "embeddings_key": key, "embed_s": time.perf_counter() - t}
    return embeddings, info


def with_frozen_head(net: nn.Module, head: nn.Linear, standardise: "Standardise") -> nn.Module:
    """``net`` (the backbone, on any device) with ``head`` — trained on standardised embeddings — as its
    classification head: one linear layer on the raw embedding, ``W / σ`` and ``b − (W / σ) · μ``, so
    that the network alone maps an image to the head's logits (what ``predict`` loads). The new head
    always has a bias, also where the network's own head had none."""
    w = head.weight.detach().float() / standardise.std.to(head.weight.device)  # (K, D)
    b = (head.bias.detach().float() if head.bias is not None else torch.zeros(w.shape[0], device=w.device)) \
        - w @ standardise.mean.to(w.device).reshape(-1)
    out = copy.deepcopy(net)
    folded = nn.Linear(w.shape[1], w.shape[0], bias=True)
    with torch.no_grad():
        folded.weight.copy_(w.cpu())
        folded.bias.copy_(b.cpu())
    out.set_submodule(head_of(out), folded.to(next(net.parameters()).device))
    return out


class Standardise:
    """Features (B, D) → (x − mean) / std, per dimension, with the statistics of the whole set."""

    def __init__(self, features: torch.Tensor):
        self.mean = features.mean(dim=0, keepdim=True)
        self.std = features.std(dim=0, keepdim=True).clamp_min(1e-6)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return (batch.float() - self.mean) / self.std


def linear_head(dim: int, num_classes: int, device: torch.device) -> nn.Module:
    """The head that trains on frozen embeddings (initialised from torch's global seed)."""
    return nn.Linear(dim, num_classes).to(device)
