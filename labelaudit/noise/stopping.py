"""The proxy's stopping rule for ``--epochs auto``: has the network begun to memorise the noisy labels?

A network fits the correctly labelled samples first and the mislabeled ones later (Arpit et al. 2017;
the AUL paper's premise, Sec. 3), so once it agrees with more given labels than the noise model
believes correct, further epochs only teach it the wrong labels. The proxy run (dynamics/proxy.py)
asks this rule before every epoch from ``stop_from`` on; it lives beside the noise model it consults.
"""
from __future__ import annotations

import numpy as np

from .mixture import early_agreement, fit_margin_mixture

CHECK_SAMPLES = 50_000  # the check fits its mixture on at most this many samples (a fixed draw)


def memorisation_check(margin: np.ndarray, given: np.ndarray | None = None) -> dict:
    """Has the network begun to memorise the noisy labels? ``margin`` (e, N): the margins of the e
    epochs trained so far; ``given`` (N,): the given labels (the noise model's no-class rule reads
    them). The noise model (the margin mixture on AUM so far, mixture.py) says which
    share of the given labels is correct, 1 − η̂; the last epoch's training pass agrees with the given
    label where its margin is positive. Agreement ≥ 1 − η̂ means the network fits as many labels as are
    right, and what it learns next is mostly the wrong ones. Returns ``{"epoch", "agreement",
    "noise_rate", "undecided", "memorising"}``.

    η̂ comes from the very run the check may stop, so an overestimate would stop it early, and an early
    stop keeps the overestimate (measured: CIFAR-10N worse_label, 50k images, stopped at 15 epochs
    with η̂ 0.674 for a true 0.402, its mixture's largest component straddling zero). So the check
    never fires while a component of the mixture is undecided (|mean| < mixture.UNDECIDED_Z · std):
    a large group of samples the network has not yet put on either side of zero is still being
    learned. Beyond CHECK_SAMPLES samples the mixture is fitted on a fixed random draw of that many
    (a 1-D mixture's share is as well estimated, and a fit on 10⁶ values every epoch would cost more
    than a GPU epoch).
    """
    agreement = float((margin[-1] > 0).mean())
    aum_so_far, early = margin.mean(axis=0), early_agreement(margin)
    if len(aum_so_far) > CHECK_SAMPLES:
        draw = np.random.default_rng(0).choice(len(aum_so_far), CHECK_SAMPLES, replace=False)
        aum_so_far, early, given = aum_so_far[draw], early[draw], (None if given is None else given[draw])
    fit = fit_margin_mixture(aum_so_far, given=given, early=early, interval=False)
    undecided = int(fit.details.get("undecided_components", 0))
    return {"epoch": int(margin.shape[0]), "agreement": agreement, "noise_rate": fit.noise_rate,
            "undecided": undecided, "memorising": undecided == 0 and agreement >= 1.0 - fit.noise_rate}
