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
the wrong labels as it trains, so its probabilities are read only once its training has stopped
fitting them (:func:`trajectory_rate`); otherwise the mixture's rate stands.
"""
from __future__ import annotations

from dataclasses import dataclass, field

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


def class_thresholds(labels: np.ndarray, self_confidence: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Northcutt et al., Sec. 3.1: (each class's count among ``labels``, its threshold t_j = the mean
    ``self_confidence``, the probability of the given label, of the samples given j), both (k,); a class
    nobody is given has t = inf, so it can never be confidently chosen."""
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    thresholds = np.full(k, np.inf)
    present = counts > 0
    thresholds[present] = np.bincount(labels, weights=self_confidence, minlength=k)[present] / counts[present]
    return counts, thresholds


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
    counts, thresholds = class_thresholds(labels, np.asarray(probs[rows, labels], dtype=np.float64), k)
    present = counts > 0
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


# A from-scratch proxy's reading (trajectory_rate): the confident joint of the probabilities of the
# run's last WINDOW epochs, used when it fell by less than STILL_FALLING of itself and by less than
# STILL_MOVING (one point of the rate; the review's target is two) from the reading of the WINDOW
# epochs before. Falls at the last epoch of every development case (benchmarks/results/
# rate_terms_last.md): 6-9% and 0.005-0.008 where the proxy had stopped fitting the wrong labels
# (CIFAR, 50k images); where it was fitting them, 25-92% (CIFAR, 3k and 10k images) and on the digits
# 19% or more, or by 0.021 (60% noise; a two-process scan of 40% noisy digits fell 12%, by 0.043).
WINDOW = 5
STILL_FALLING = 0.15
STILL_MOVING = 0.01


@dataclass(frozen=True)
class TrajectoryReading:
    """The confident joint read from a from-scratch proxy's last epochs (:func:`trajectory_rate`)."""

    rate: float  # the reading of the last `window` epochs
    previous: float  # the reading of the `window` epochs before them
    interval: tuple[float, float]
    draws: np.ndarray = field(compare=False)  # the bootstrap rounds' readings of the last window
    epochs: tuple[int, int]  # the last window, 1-based and inclusive
    window: int

    @property
    def fall(self) -> float:
        """How much the reading fell over the last window, as a share of the one before (0 when that was 0)."""
        return 0.0 if self.previous <= 0 else (self.previous - self.rate) / self.previous

    @property
    def steady(self) -> bool:
        """The reading fell by less than STILL_FALLING of itself (and was above 0): the proxy is not fitting
        wrong labels into its probabilities fast. The stopping rule (stopping.py) reads it."""
        return self.previous > 0 and self.fall < STILL_FALLING

    @property
    def settled(self) -> bool:
        """The reading has stopped falling (:attr:`steady`, and by less than STILL_MOVING): the proxy no
        longer fits the wrong labels into its probabilities, and the scan takes the reading for the rate."""
        return self.steady and self.previous - self.rate < STILL_MOVING

    def as_dict(self) -> dict:
        return {"rate": self.rate, "interval": [float(v) for v in self.interval], "previous": self.previous,
                "fall": self.fall, "limits": {"share": STILL_FALLING, "points": STILL_MOVING}, "epochs": list(self.epochs),
                "used": self.settled}


def window_probabilities(loss: np.ndarray, margin: np.ndarray, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean over epochs ``start:stop`` of each sample's probability of its given label, exp(−loss), and of
    its most probable other class, exp(−loss − margin) (the margin is a difference of logits): (N,), (N,)."""
    lo = np.asarray(loss[start:stop], dtype=np.float64)
    return np.exp(-lo).mean(axis=0), np.exp(-lo - np.asarray(margin[start:stop], dtype=np.float64)).mean(axis=0)


def window_joint_rate(p_given: np.ndarray, p_other: np.ndarray, given: np.ndarray, predicted: np.ndarray,
                      k: int, rows: np.ndarray | None = None) -> float:
    """The confident joint's rate (Northcutt et al., Sec. 3.1, as :func:`confident_joint`) from two
    probabilities per sample: of its given label and of the most probable other class, which is taken
    to be ``predicted``, the class the whole run predicts. A sample counts under ``predicted`` ≠ its
    given label where that probability exceeds the given label's and reaches the class's threshold
    (:func:`class_thresholds`), else under its given label where that reaches its threshold; the
    joint is calibrated to the given labels' counts (the rate is Σ_j n_j/N · off_j / counted_j).
    ``rows`` (repeats allowed): the samples read, for the bootstrap."""
    rows = np.arange(len(given)) if rows is None else rows
    g, pr, pg, po = given[rows], predicted[rows], p_given[rows], p_other[rows]
    counts, thresholds = class_thresholds(g, pg, k)
    off = (pr != g) & (po > pg) & (po >= thresholds[pr])
    diagonal = ~off & (pg >= thresholds[g])
    n_off = np.bincount(g, weights=off, minlength=k)
    n_counted = n_off + np.bincount(g, weights=diagonal, minlength=k)
    share = np.divide(n_off, n_counted, out=np.zeros(k), where=n_counted > 0)
    return float((counts * share).sum() / max(counts.sum(), 1.0))


def trajectory_rate(loss: np.ndarray, margin: np.ndarray, given: np.ndarray, predicted: np.ndarray, k: int, *,
                    window: int = WINDOW, rounds: int = BOOTSTRAP_ROUNDS, level: float = BOOTSTRAP_LEVEL,
                    random_state: int = 0) -> TrajectoryReading | None:
    """The confident joint of a from-scratch proxy's probabilities in its last ``window`` epochs, and in
    the ``window`` before, from the recorded (E, N) ``loss`` and ``margin`` (:func:`window_probabilities`,
    :func:`window_joint_rate`); None with fewer than 2·window epochs.

    A network trained on noisy labels fits the clean ones first and the wrong ones later (Arpit et al.
    2017); every wrong label it fits leaves the joint's off-diagonal, so while it is fitting them the
    reading falls epoch after epoch and is too low (CIFAR-10 10k images, 10% noise: 0.035 then 0.009
    for 0.101). Where it has stopped falling (:attr:`TrajectoryReading.settled`), the proxy no longer
    moves wrong labels into its probabilities, which then read as held-out ones do (CIFAR-10 50k, 10%:
    0.112 then 0.105 for 0.100). The interval holds the percentile bootstrap of the last reading (rows
    redrawn, thresholds recomputed), the reading before it, and the last reading less one more
    window's fall (where the reading would be were it still falling as fast); ``rounds=0`` skips the
    bootstrap."""
    loss, margin = np.asarray(loss), np.asarray(margin)
    e = loss.shape[0]
    if e < 2 * window or loss.shape[1] == 0:
        return None
    given, predicted = np.asarray(given, dtype=np.int64), np.asarray(predicted, dtype=np.int64)
    last = window_probabilities(loss, margin, e - window, e)
    rate = window_joint_rate(*last, given, predicted, k)
    previous = window_joint_rate(*window_probabilities(loss, margin, e - 2 * window, e - window), given, predicted, k)
    rng = np.random.default_rng(random_state)
    n = len(given)
    size = min(n, SELECT_SAMPLES)
    draws = np.array([window_joint_rate(*last, given, predicted, k, rng.integers(0, n, size)) for _ in range(rounds)])
    low, high = percentile_interval(draws, level) if rounds else (rate, rate)
    low = max(0.0, min(low, rate - max(previous - rate, 0.0)))
    return TrajectoryReading(rate, previous, (low, max(high, previous, rate)), draws, (e - window + 1, e), window)
