"""The stated interval of the dataset's noise rate: where the rate could be, not only how far the
estimate moves when the samples are redrawn.

The bootstrap interval (mixture.py) holds the sampling error of the mixture's estimate, but not the
estimator's own error, which dominates on photos: a hard clean image and a mislabeled one leave
similar loss trajectories, and the mixture's line between them can sit far from the truth (CIFAR-10
with 4.9% noise: 15.7%, bootstrap interval [14.7%, 16.0%]). The stated interval is therefore the
smallest one that holds each of these (:func:`stated_interval`):

- the bootstrap interval, and the model range where a mixture component is undecided;
- the proxy's disagreement with the given labels, 1 − agreement (the share of samples whose
  prediction, the softmax averaged over every epoch, is another class), with its Jeffreys interval:
  a second estimate of the rate that fails differently (it counts hard clean images, and misses the
  errors the proxy memorised), and that needs no mixture, so a dataset whose mixture found no second
  component but whose proxy disagrees with 9% of the labels is not given [0, 0];
- the estimate ± the mixture's ambiguity A = mean over the samples of 2·min(p, 1 − p): the share of
  samples that the model itself cannot place on either side of its line; were they all on the other
  side, the rate would move by about that much.

On well-separated data (digits) every part is narrow and the interval stays a few points wide; where
the scores overlap (photos from a from-scratch proxy) it is wide, and says so. A review
(``labelaudit review``) replaces it with a verified one.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .calibration import clipped_logit, offset_for_sum, shift_posteriors
from .confident import STILL_FALLING, STILL_MOVING, TrajectoryReading, confident_rate, trajectory_rate
from .mixture import NoiseFit

LEVEL = 0.95


def disagreement(predicted: np.ndarray, given: np.ndarray, level: float = LEVEL) -> tuple[float, float, float]:
    """(share of samples whose predicted class is not the given label, and its Jeffreys interval)."""
    from scipy.stats import beta

    predicted, given = np.asarray(predicted), np.asarray(given)
    n, k = len(given), int((predicted != given).sum())
    if n == 0:
        return 0.0, 0.0, 1.0
    a = (1.0 - level) / 2.0
    low = 0.0 if k == 0 else float(beta.ppf(a, k + 0.5, n - k + 0.5))
    high = 1.0 if k == n else float(beta.ppf(1.0 - a, k + 0.5, n - k + 0.5))
    return k / n, low, high


def ambiguity(p_mislabeled: np.ndarray) -> float:
    """A = mean of 2·min(p, 1 − p): 0 when every sample is placed with certainty, 1 when none is."""
    p = np.clip(np.asarray(p_mislabeled, dtype=np.float64), 0.0, 1.0)
    return float(np.mean(2.0 * np.minimum(p, 1.0 - p))) if len(p) else 0.0


def stated_interval(fit: NoiseFit, predicted: np.ndarray, given: np.ndarray) -> tuple[NoiseFit, dict]:
    """The fit with ``interval`` the smallest range holding the bootstrap interval, the model range, the
    disagreement's interval and the estimate ± its ambiguity (module docstring); and run.json's
    account of the parts."""
    d, d_low, d_high = disagreement(predicted, given)
    a = ambiguity(fit.p_mislabeled)
    est = float(fit.noise_rate)
    lows, highs = [d_low, est - a, est], [d_high, est + a, est]
    for part in (fit.interval, fit.model_range):
        if part is not None:
            lows.append(float(part[0]))
            highs.append(float(part[1]))
    low, high = max(0.0, min(lows)), min(1.0, max(highs))
    parts = {"method": "the smallest range holding the bootstrap interval, the model range, the proxy's "
                       "disagreement with the given labels (Jeffreys interval) and the estimate ± the mixture's "
                       "ambiguity (mean of 2·min(p, 1 − p))",
             "bootstrap": None if fit.interval is None else [float(v) for v in fit.interval],
             "model_range": None if fit.model_range is None else [float(v) for v in fit.model_range],
             "disagreement": {"rate": d, "interval": [d_low, d_high]},
             "ambiguity": a}
    return dataclasses.replace(fit, interval=(low, high)), parts


def _shifted_to(fit: NoiseFit, target: float) -> tuple[np.ndarray, float]:
    """Every p(mislabeled) moved by one shift of its log-odds so that their mean is ``target`` (the
    ranking and the order of the p's kept): (the new p's, the shift)."""
    p = np.asarray(fit.p_mislabeled, dtype=np.float64)
    shift = offset_for_sum(clipped_logit(p), float(np.clip(target, 1e-6, 1.0 - 1e-6)) * len(p)) or 0.0
    return shift_posteriors(p, shift), shift


def settle_undecided(fit: NoiseFit, predicted: np.ndarray, given: np.ndarray) -> tuple[NoiseFit, dict | None]:
    """Where a mixture component is undecided (a model range), the rate the range leaves open is set
    by the second estimate: the proxy's disagreement with the given labels, held within the model
    range; every p(mislabeled) is moved by one shift of its log-odds so that their mean is that rate
    (the ranking and the order of the p's are kept). Without a model range the fit is returned as it
    is. In ``benchmarks/noise_rate.py``, on the development cases with a model range (CIFAR-10 10k
    uniform 5%, CIFAR-10N random_label1, 2 and 3), the mean absolute error is 0.021, where the
    mixture's own estimates were off by 0.089 on average (docs/scores.md); the others do not change. Returns (fit, run.json's account or None)."""
    if fit.model_range is None:
        return fit, None
    d = disagreement(predicted, given)[0]
    low, high = (float(v) for v in fit.model_range)
    target = float(np.clip(d, low, high))
    p, shift = _shifted_to(fit, target)
    info = {"method": "the proxy's disagreement with the given labels, held within the model range; p(mislabeled) "
                      "shifted on the log-odds scale to that mean", "disagreement": d, "model_range": [low, high],
            "rate_before": float(fit.noise_rate), "shift": shift}
    method = (f"{fit.method}; a component is undecided (the rate could be {low:.1%}–{high:.1%}): the rate is set "
              f"by the proxy's disagreement with the given labels, {target:.1%}")
    return dataclasses.replace(fit, p_mislabeled=p, noise_rate=float(p.mean()), method=method), info


def settle_rate(fit: NoiseFit, noise_model: str, readings: tuple | None, loss: np.ndarray, margin: np.ndarray,
                predicted: np.ndarray, given: np.ndarray, k: int, *, random_state: int = 0
                ) -> tuple[NoiseFit, dict | None, dict | None]:
    """The rate from another estimator than the mixture, where one applies: with a pretrained backbone,
    the confident joint of its linear heads' ``readings`` (``(probs, held_out)``: they model p(ỹ | x),
    :func:`settle_by_head`); from scratch under the margin mixture (``aul-gmm`` stays the AUL paper's
    recipe), that of the proxy's last epochs where it has settled (:func:`settle_by_trajectory`, on the
    recorded (E, N) ``loss`` and ``margin``, the run's ``predicted`` classes and the ``k`` classes). A run of
    ``--proxy-runs`` is settled as ``scan --seed random_state`` would settle it. Returns (fit, the head's
    account, the last epochs' account), None where not read."""
    given = np.asarray(given)
    if readings is not None:
        return (*settle_by_head(fit, *readings, given=given, random_state=random_state), None)
    if noise_model != "margin":
        return fit, None, None
    fit, trajectory = settle_by_trajectory(fit, loss, margin, predicted, given, k, random_state=random_state)
    return fit, None, trajectory


def settle_by_head(fit: NoiseFit, probs: np.ndarray, held_out: np.ndarray | None = None, *, given: np.ndarray,
                   random_state: int = 0) -> tuple[NoiseFit, dict]:
    """With a pretrained backbone (``--weights``, frozen or fine-tuned): the rate is the confident
    joint's (confident.py) of a linear head on the backbone's embeddings: of its own probabilities and,
    when given, of held-out ones (their mean). It replaces the mixture's rate and the head's
    disagreement, both of which count the hard clean images the head gets wrong, and a fine-tuned
    network's mixture, which misses the wrong labels it has learnt. Every p(mislabeled) is moved by one
    shift of its log-odds so that their mean is that rate (the ranking is kept), the interval is the
    confident joint's, and the mixture's model range, which no longer bounds the rate, is dropped
    (run.json keeps it as ``model_range_before``). Returns (fit, run.json's account)."""
    estimate = confident_rate(probs, given, held_out=held_out, random_state=random_state)
    read = "the mean of its readings on the head's own and on held-out probabilities" if held_out is not None \
        else "its reading on the head's own probabilities"
    info = {"method": f"the confident joint (Northcutt et al. 2021, Sec. 3.1), {read}; p(mislabeled) shifted "
                      "on the log-odds scale to that rate", **estimate.as_dict()}
    return _replaced_by(fit, estimate.rate, estimate.interval, estimate.draws, info,
                        f"the rate is the confident joint's of a linear head on the pretrained embeddings, "
                        f"{estimate.rate:.1%} (the mixture read {fit.noise_rate:.1%})")


def _replaced_by(fit: NoiseFit, rate: float, interval: tuple[float, float], draws: np.ndarray | None, info: dict,
                 why: str) -> tuple[NoiseFit, dict]:
    """The fit with its rate replaced by another estimator's ``rate``: every p(mislabeled) shifted on the
    log-odds scale to that mean (:func:`_shifted_to`), that estimator's ``interval`` and bootstrap ``draws``,
    and no model range (the mixture's no longer bounds the rate); ``why`` is added to the method.
    ``info`` (run.json's account) gains the mixture's rate, interval and model range before, and the shift."""
    p, shift = _shifted_to(fit, rate)
    info = {**info, "rate_before": float(fit.noise_rate),
            "interval_before": None if fit.interval is None else [float(v) for v in fit.interval],
            "model_range_before": None if fit.model_range is None else [float(v) for v in fit.model_range],
            "shift": shift}
    return dataclasses.replace(fit, p_mislabeled=p, noise_rate=float(p.mean()), method=f"{fit.method}; {why}",
                               interval=interval, draws=draws, model_range=None), info


def settle_by_trajectory(fit: NoiseFit, loss: np.ndarray, margin: np.ndarray, predicted: np.ndarray,
                         given: np.ndarray, k: int, *, random_state: int = 0
                         ) -> tuple[NoiseFit, dict | None]:
    """Without a pretrained backbone: where the confident joint of the proxy's last epochs has stopped
    falling (confident.py, :func:`~labelaudit.noise.confident.trajectory_rate`), it is the rate. The
    mixture's rate and the proxy's disagreement count the clean images the proxy still gets wrong, and
    a proxy that has stopped fitting the wrong labels still gets many wrong: CIFAR-10 50k images, 10%
    noise, 30 epochs: 13.7% of all images (``benchmarks/rate_terms.py``), the mixture 0.201, the reading
    0.105. Every p(mislabeled) is moved by one shift of its log-odds so that their mean is that rate (the
    ranking is kept), the interval is the reading's, and the mixture's model range is dropped, as with
    a backbone (:func:`settle_by_head`). Where the reading is still falling, or the mixture counts
    images of no class (which the proxy has fitted into their labels, so the joint cannot see them),
    the fit is returned as it is. Returns (fit, run.json's account of the reading, used or not; None
    with too few epochs)."""
    reading: TrajectoryReading | None = trajectory_rate(loss, margin, given, predicted, k, random_state=random_state)
    if reading is None:
        return fit, None
    info = {"method": f"the confident joint (Northcutt et al. 2021, Sec. 3.1) of the proxy's probabilities in epochs "
                      f"{reading.epochs[0]}-{reading.epochs[1]}, used when it fell by less than {STILL_FALLING:.0%} of "
                      f"itself and less than {STILL_MOVING:.2f} from the {reading.window} epochs before",
            **reading.as_dict()}
    if any((fit.details or {}).get("no_class") or []):
        info.update(used=False, why="the mixture counts images of no class, which the confident joint cannot see")
        return fit, info
    if not reading.settled:
        return fit, info
    first, last = reading.epochs
    return _replaced_by(fit, reading.rate, reading.interval, reading.draws, info,
                        f"the proxy had stopped fitting the wrong labels (the confident joint of its probabilities "
                        f"read {reading.previous:.1%} in epochs {first - reading.window}-{first - 1} and "
                        f"{reading.rate:.1%} in {first}-{last}), so the rate is {reading.rate:.1%} (the mixture read "
                        f"{fit.noise_rate:.1%})")
