"""The noise rate from the confident joint of a head that models p(ỹ | x): the estimate with ``--weights``.

Northcutt, Jiang and Chuang, "Confident learning: estimating uncertainty in dataset labels" (JAIR
2021), Sec. 3.1: with p̂(ỹ = j | x) the head's probabilities,

- the per-class threshold t_j is the mean self-confidence of the samples given label j,
  ``t_j = mean of p̂(ỹ = j | x) over {x : ỹ = j}``;
- the confident joint counts each sample given label j under the class i it is confidently in: among
  the classes whose probability reaches their threshold, the most probable; a sample that reaches no
  threshold is not counted;
- the joint is calibrated so that each given label's counts sum to that label's size in the data,
  and the noise rate is its off-diagonal share.

The confident joint needs probabilities of the noisy labels from a model that has not fit them. With
a pretrained backbone (``--weights``) that model is a linear head on the backbone's embeddings (the
audit's own head with ``--freeze``; one more, trained on the embeddings taken before fine-tuning,
without it), read twice:

- on the head's own probabilities (trained on every sample). A linear head fits few wrong labels
  where the samples are many for the embedding's size, but more where they are few, and each one it
  fits is counted as clean: this reading is low, the more so the fewer the samples;
- on held-out probabilities (five heads, each trained without the fifth of the samples it predicts:
  the out-of-sample probabilities the paper asks for). Each has seen a fifth less data and none has
  fit the sample it predicts, so the hard clean images it gets wrong are counted as errors: this
  reading is high.

The rate is the mean of the two readings, and its interval holds both. In ``benchmarks/frozen_rate.py``
(14 development cases, 500 to 10,000 images) the mean is off by 0.022 on average (0.060 at most), the
own reading alone by 0.030 (0.130, on 1,000 images) and the held-out one by 0.042 (0.081);
docs/scores.md has the table. A network trained from scratch, or the fine-tuned network itself, fits
the wrong labels as it trains, so without a pretrained backbone the mixture's rate stands.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .mixture import BOOTSTRAP_LEVEL, BOOTSTRAP_ROUNDS, SELECT_SAMPLES, percentile_interval


@dataclass(frozen=True)
class ConfidentEstimate:
    """The confident joint's noise rate and its interval. With held-out probabilities the rate is the
    mean of the two readings (module docstring) and the interval holds both readings and the bootstrap
    interval of their mean."""

    rate: float
    interval: tuple[float, float]
    counted: float  # the share of samples that reached a threshold (only those are counted)
    draws: np.ndarray | None = None  # the bootstrap rounds' rates
    own: float | None = None  # the reading on the head's own probabilities
    held_out: float | None = None  # the reading on the held-out probabilities

    def as_dict(self) -> dict:
        return {"rate": self.rate, "interval": [float(v) for v in self.interval], "own": self.own,
                "held_out": self.held_out, "counted": self.counted}


CHUNK = 8192  # rows compared with the thresholds at a time: (CHUNK, K) at most in memory beside the input
BOOTSTRAP_CELLS = 20_000_000  # a bootstrap round reads at most this many probabilities (rows × classes)


def confident_joint(probs: np.ndarray, given: np.ndarray, rows: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Northcutt et al., Sec. 3.1: the calibrated confident joint ``C[true, given]`` of (N, K)
    probabilities and (N,) given labels (of the samples ``rows``, repeats allowed, when given), and
    the number of samples counted in it.

    A given label that no counted sample carries keeps its count on the diagonal: nothing says those
    labels are wrong. The probabilities are read a chunk of rows at a time, never copied whole.
    """
    given = np.asarray(given, dtype=np.int64)
    rows = np.arange(len(given)) if rows is None else np.asarray(rows, dtype=np.int64)
    k = probs.shape[1]
    labels = given[rows]
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    own = np.asarray(probs[rows, labels], dtype=np.float64)
    thresholds = np.full(k, np.inf)  # a class nobody is given can never be confidently chosen
    present = counts > 0
    thresholds[present] = np.bincount(labels, weights=own, minlength=k)[present] / counts[present]
    joint = np.zeros((k, k))
    counted = 0
    for start in range(0, len(rows), CHUNK):
        block = np.asarray(probs[rows[start:start + CHUNK]], dtype=np.float64)  # a chunk at a time
        above = block >= thresholds[None, :]
        hit = above.any(axis=1)
        confident = np.where(above, block, -1).argmax(axis=1)  # probabilities are ≥ 0: -1 is never chosen
        np.add.at(joint, (confident[hit], labels[start:start + CHUNK][hit]), 1.0)
        counted += int(hit.sum())
    column = joint.sum(axis=0)
    scale = np.divide(counts, column, out=np.zeros(k), where=column > 0)
    joint *= scale[None, :]
    empty = (column == 0) & present
    joint[empty, empty] = counts[empty]
    return joint, counted


def joint_rate(joint: np.ndarray) -> float:
    """The off-diagonal share of a joint: the dataset's noise rate."""
    total = float(joint.sum())
    return 0.0 if total <= 0 else float(1.0 - np.trace(joint) / total)


def confident_rate(probs: np.ndarray, given: np.ndarray, *, held_out: np.ndarray | None = None,
                   rounds: int = BOOTSTRAP_ROUNDS, level: float = BOOTSTRAP_LEVEL,
                   random_state: int = 0) -> ConfidentEstimate:
    """The confident joint's noise rate of ``probs`` (N, K), or with ``held_out`` (N, K) the mean of
    the two readings, with a percentile bootstrap over the samples (the same rows for both readings;
    the thresholds and the joints recomputed each round). A round draws at most ``SELECT_SAMPLES``
    rows, and at most ``BOOTSTRAP_CELLS`` probabilities (1,000 classes: 20,000 rows): m-out-of-n, as
    the mixture's bootstrap does above SELECT_SAMPLES, which widens the interval."""
    given = np.asarray(given, dtype=np.int64)
    sets = [probs] + ([] if held_out is None else [held_out])
    if any(np.ndim(p) != 2 or len(p) != len(given) or p.shape[1] != sets[0].shape[1] for p in sets):
        raise ValueError(f"probabilities {[np.shape(p) for p in sets]} and given {given.shape}: "
                         "expected (N, K) and (N,)")
    joint, counted = confident_joint(sets[0], given)
    readings = [joint_rate(joint)] + [joint_rate(confident_joint(p, given)[0]) for p in sets[1:]]
    rate = float(np.mean(readings))
    n, k = len(given), sets[0].shape[1]
    held = readings[1] if len(readings) > 1 else None
    if n == 0:
        return ConfidentEstimate(0.0, (0.0, 0.0), 0.0, np.zeros(0), readings[0], held)
    rng = np.random.default_rng(random_state)
    size = min(n, SELECT_SAMPLES, max(1000, BOOTSTRAP_CELLS // k))
    draws = np.empty(rounds)
    for r in range(rounds):
        rows = rng.integers(0, n, size)
        draws[r] = np.mean([joint_rate(confident_joint(p, given, rows)[0]) for p in sets])
    low, high = percentile_interval(draws, level)
    interval = (min(low, *readings), max(high, *readings))
    return ConfidentEstimate(rate, interval, counted / n, draws, readings[0], held)
