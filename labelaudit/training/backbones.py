"""Networks with weights: torchvision's classification models by name, and pretrained weights from
torchvision's own weight names or from a local file.

- ``--model NAME``: labelaudit's own small networks (models.MODELS: tiny, small, medium, resnet18 with
  a 32-px stem), or any of torchvision's classification models
  (``torchvision.models.list_models(module=torchvision.models)``), built for the dataset's classes.
- ``--weights NAME``: a torchvision weights name of that model (``DEFAULT``, ``IMAGENET1K_V1``, ...).
  torchvision's file is read from torch's hub cache (``$TORCH_HOME/hub/checkpoints``, by default
  ``~/.cache/torch/hub/checkpoints``) under torchvision's own file name, and downloaded there (hash
  checked) only when it is missing, as torchvision does on a connected machine. The model is then
  torchvision's own architecture (for ``resnet18``: the 7×7 ImageNet stem, not the 32-px one), and its
  input size and normalisation come from the weights' transforms: the scan decodes at the weights'
  crop size unless ``--image-size`` says otherwise, and normalises with their mean and std.
- ``--weights FILE``: a state dict saved with ``torch.save`` (read with ``weights_only=True``: no
  pickled code runs), or a checkpoint holding one under ``state_dict`` or ``model``.

In both cases the classification head (the network's last linear layer) is kept when its shape fits
the dataset's classes and starts afresh when it does not (an ImageNet head of 1,000 classes); every
other weight must fit exactly: missing or unexpected keys and shapes that differ are one line
naming them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import UsageError
from .models import MODELS, build_model


@dataclass(frozen=True)
class Pretrained:
    """Weights to start from: the state dict, where it came from, and the input the weights expect
    (``image_size`` px, ``mean``/``std`` per channel in 0..1 units; None for a plain file)."""

    state_dict: dict
    source: str
    image_size: int | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    torchvision: bool = False  # a torchvision weights name: the model is torchvision's own architecture
    option: str = "--weights"  # the option that named them, for messages (train's is --pretrained)


def torchvision_models() -> list[str]:
    """torchvision's classification models, by name."""
    import torchvision

    return list(torchvision.models.list_models(module=torchvision.models))


def check_model(name: str) -> None:
    """UsageError unless ``name`` is one of labelaudit's networks or torchvision's classification models."""
    if name not in MODELS and name not in torchvision_models():
        raise UsageError(f"--model {name!r}: unknown model; choose one of {', '.join(MODELS)} or a torchvision "
                         "classification model (torchvision.models.list_models())")


def _hub_file(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def _torchvision_weights(model: str, name: str, option: str) -> Pretrained:
    from torchvision.models import get_model_weights

    try:
        enum = get_model_weights(model)
    except (ValueError, KeyError):
        raise UsageError(f"{option} {name}: torchvision has no weights for --model {model}; pass a local file "
                         "instead") from None
    try:
        weights = enum[name.split(".")[-1]]
    except KeyError:
        names = ["DEFAULT", *enum.__members__]
        raise UsageError(f"{option} {name!r}: not a weights name of {model} ({', '.join(dict.fromkeys(names))}) "
                         "and not a file") from None
    path = _hub_file(weights.url)
    if path.is_file():
        state = _read(path, f"{option} {name}")
    else:
        try:
            state = torch.hub.load_state_dict_from_url(weights.url, progress=False, check_hash=True,
                                                       map_location="cpu", weights_only=True)
        except Exception as exc:  # offline (URLError, socket errors), a refused or truncated download
            reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            raise UsageError(f"{option} {name}: {path.name} is not in torch's cache and could not be downloaded "
                             f"({reason}); put the file from {weights.url} at {path}, or pass a local file") from None
    t = weights.transforms()
    return Pretrained(state, f"torchvision {type(weights).__name__}.{weights.name} ({path})",
                      int(t.crop_size[0]), tuple(float(v) for v in t.mean), tuple(float(v) for v in t.std),
                      torchvision=True, option=option)


def _read(path: Path, what: str) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, or pickled objects weights_only refuses
        raise UsageError(f"{what}: {path} is not a readable state dict ({str(exc).splitlines()[0][:120]}); save "
                         "one with torch.save(model.state_dict(), path)") from None
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UsageError(f"{what}: {path} holds no state dict of tensors (nor one under 'state_dict' or 'model')")
    return {k.removeprefix("module."): v for k, v in state.items()}  # DataParallel/DDP saves prefix module.


def resolve_weights(model: str, spec: str | None, option: str = "--weights") -> Pretrained | None:
    """``spec`` (a file, or a torchvision weights name of ``model``) read into a :class:`Pretrained`;
    None without weights. UsageError for a file that is missing or unreadable, an unknown name, or
    weights that are neither cached nor downloadable; messages name ``option``."""
    if spec is None or spec == "":
        return None
    path = Path(spec).expanduser()
    if path.is_file():
        return Pretrained(_read(path, f"{option} {spec}"), str(path.resolve()), option=option)
    if model in torchvision_models() and "/" not in spec and not path.suffix:
        return _torchvision_weights(model, spec, option)
    raise UsageError(f"{option} {spec}: no such file" + (f", and not a torchvision weights name of {model}"
                                                           if model in torchvision_models() else ""))


def head_of(net: nn.Module) -> str:
    """The name of the network's classification head: its last linear layer."""
    names = [name for name, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise UsageError(f"{type(net).__name__}: no linear classification head to fit to the classes")
    return names[-1]


def torchvision_architecture(name: str, pretrained: Pretrained | None = None) -> bool:
    """Whether ``name`` is built as torchvision's own architecture: a model labelaudit has none of, or
    one started from torchvision's weights (``resnet18`` is otherwise labelaudit's 32-px variant)."""
    return bool(pretrained is not None and pretrained.torchvision) or name not in MODELS


def build_network(name: str, num_classes: int, pretrained: Pretrained | None = None, *,
                  torchvision: bool = False) -> nn.Module:
    """The network ``name`` for ``num_classes`` classes, started from ``pretrained`` when given (see the
    module docstring); ``torchvision=True`` asks for torchvision's architecture of a name both have (a
    saved model of one, ``predict``). Initialisation follows torch's global seed."""
    if torchvision or torchvision_architecture(name, pretrained):
        from torchvision.models import get_model

        check_model(name)
        net = get_model(name, weights=None, num_classes=num_classes)  # never downloads: weights=None
    else:
        net = build_model(name, num_classes)
    if pretrained is not None:
        load_weights(net, pretrained, name)
    return net


def load_weights(net: nn.Module, pretrained: Pretrained, name: str) -> None:
    """Copy ``pretrained`` into ``net``; the head is skipped when its shape does not fit."""
    own = net.state_dict()
    head = head_of(net) + "."
    state = {k: v for k, v in pretrained.state_dict.items()
             if not (k.startswith(head) and k in own and own[k].shape != v.shape)}
    missing = [k for k in own if k not in state and not k.startswith(head)]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} ≠ {tuple(own[k].shape)}" for k in state
              if k in own and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = [f"{label} {', '.join(items[:4])}" + (f" (+{len(items) - 4} more)" if len(items) > 4 else "")
                 for label, items in (("missing", missing), ("unexpected", unexpected), ("shapes differ:", shapes))
                 if items]
        raise UsageError(f"{pretrained.option} {pretrained.source}: does not fit --model {name}: {'; '.join(parts)}")
    net.load_state_dict(state, strict=False)
