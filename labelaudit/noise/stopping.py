"""The proxy's stopping rule for ``--epochs auto``: has the network begun to memorise the noisy labels?

A network fits the correctly labelled samples first and the mislabeled ones later (Arpit et al. 2017;
the AUL paper's premise, Sec. 3), so once it agrees with more given labels than are correct, further
epochs only teach it the wrong labels. How many are correct comes from the noise model, or from the
confident joint of the last epochs while that reading is steady (:func:`memorisation_check`). The
proxy run (dynamics/proxy.py) asks this rule before every epoch from ``stop_from`` on; it lives
beside the noise models it consults.
"""
from __future__ import annotations

import numpy as np

from .confident import trajectory_rate
from .mixture import early_agreement, fit_margin_mixture

CHECK_SAMPLES = 50_000  # the check fits its mixture on at most this many samples (a fixed draw)


def memorisation_check(margin: np.ndarray, given: np.ndarray | None = None, loss: np.ndarray | None = None,
                       predicted: np.ndarray | None = None) -> dict:
    """Has the network begun to memorise the noisy labels? ``margin`` (e, N): the margins of the e
    epochs trained so far; ``given`` (N,): the given labels; ``loss`` (e, N) and ``predicted`` (N,),
    the class the run predicts so far, for the last epochs' reading. The share of given labels that
    are correct is 1 − η; the last epoch's training pass agrees with the given label where its margin
    is positive. Agreement ≥ 1 − η means the network fits as many labels as are right, and what it
    learns next is mostly the wrong ones. Returns ``{"epoch", "agreement", "noise_rate" (the η
    compared), "mixture_rate", "reading", "undecided", "memorising"}``.

    η is the noise model's (the margin mixture on AUM so far, mixture.py), unless the confident joint
    of the last five epochs (confident.trajectory_rate, with ``loss`` and ``predicted``) is steady: it
    fell by less than confident.STILL_FALLING of itself from the five epochs before
    (:attr:`~labelaudit.noise.confident.TrajectoryReading.steady`). A steady reading
    means the proxy is not fitting wrong labels into its probabilities, which then read as held-out
    ones do, while the mixture still counts every hard clean image the proxy gets wrong (measured:
    CIFAR-10 pair 30% on 50k images, epoch 15: mixture 0.475, reading 0.350 falling 5%, true 0.300;
    the mixture stopped the proxy with 58% agreement where 70% of the labels are right). A reading
    that falls faster (the digits: 19% or more at epoch 15), or of 0, is a proxy fitting wrong labels,
    and the mixture's η stands. ``reading`` is ``{"rate", "fall", "used"}`` (``used``: it was the η
    compared), or None with fewer than ten epochs.

    η̂ comes from the very run the check may stop, so an overestimate would stop it early, and an early
    stop keeps the overestimate (measured: CIFAR-10N worse_label, 50k images, stopped at 15 epochs
    with η̂ 0.674 for a true 0.402, its mixture's largest component straddling zero). So the check
    never fires while a component of the mixture is undecided (|mean| < mixture.UNDECIDED_Z · std):
    a large group of samples the network has not yet put on either side of zero is still being
    learned. Beyond CHECK_SAMPLES samples the check reads a fixed random draw of that many (a share
    is as well estimated, and a fit on 10⁶ values every epoch would cost more than a GPU epoch).
    """
    agreement = float((margin[-1] > 0).mean())
    if margin.shape[1] > CHECK_SAMPLES:
        draw = np.random.default_rng(0).choice(margin.shape[1], CHECK_SAMPLES, replace=False)
        margin, loss = margin[:, draw], (None if loss is None else loss[:, draw])
        given, predicted = (None if given is None else given[draw]), (None if predicted is None else predicted[draw])
    fit = fit_margin_mixture(margin.mean(axis=0), given=given, early=early_agreement(margin), interval=False)
    undecided = int(fit.details.get("undecided_components", 0))
    reading = None
    if loss is not None and given is not None and predicted is not None:
        k = int(max(np.max(given), np.max(predicted))) + 1
        reading = trajectory_rate(loss, margin, given, predicted, k, rounds=0)
    steady = reading is not None and reading.steady
    rate = reading.rate if steady else fit.noise_rate
    return {"epoch": int(margin.shape[0]), "agreement": agreement, "noise_rate": rate,
            "mixture_rate": fit.noise_rate,
            "reading": None if reading is None else {"rate": reading.rate, "fall": reading.fall, "used": steady},
            "undecided": undecided, "memorising": undecided == 0 and agreement >= 1.0 - rate}
