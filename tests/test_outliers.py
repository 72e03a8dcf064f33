"""Flags at low noise (noise/outliers.py): Benjamini–Hochberg on hand-computed p-values, and the
outlier test on a synthetic score with a few known errors."""
from __future__ import annotations

import numpy as np
import pytest

from labelaudit.noise.mixture import NoiseFit
from labelaudit.noise.outliers import outlier_q_values, q_values, with_outliers


def test_benjamini_hochberg_by_hand():
    p = np.array([0.01, 0.04, 0.03, 0.5])
    # sorted 0.01, 0.03, 0.04, 0.5 → ·4/rank: 0.04, 0.06, 0.0533, 0.5 → running minimum from the end
    assert q_values(p) == pytest.approx([0.04, 0.0533333, 0.0533333, 0.5])


def test_a_few_clear_errors_in_a_clean_bulk_are_flagged_and_nothing_else():
    rng = np.random.default_rng(0)
    score = rng.normal(0.0, 1.0, 5000)
    errors = rng.choice(5000, 15, replace=False)
    score[errors] = rng.normal(7.0, 0.5, 15)  # 15 errors, far in the tail (the MNIST test set's share)
    fit = NoiseFit(np.zeros(5000), 0.0, "one component")
    out, info = with_outliers(fit, score, threshold=0.5)
    flagged = np.flatnonzero(out.p_mislabeled > 0.5)
    assert set(flagged) == set(errors) and info["n_flagged"] == 15
    assert (out.p_mislabeled[errors] >= 0.95).all() and out.noise_rate == pytest.approx(out.p_mislabeled.mean())
    assert "false-discovery rate of 5%" in out.method
    clean = with_outliers(fit, rng.normal(0.0, 1.0, 5000), threshold=0.5)[0]
    assert (clean.p_mislabeled <= 0.5).all()  # a clean normal bulk: at most a chance flag, here none


def test_the_test_stays_out_when_the_mixture_flags_or_it_is_off():
    score = np.r_[np.zeros(99), 50.0]
    flagged = NoiseFit(np.r_[np.zeros(99), 0.9], 0.009, "two components")
    assert with_outliers(flagged, score, threshold=0.5) == (flagged, None)
    off = NoiseFit(np.zeros(100), 0.0, "one component")
    assert with_outliers(off, score, threshold=0.5, fdr=0.0) == (off, None)
    assert outlier_q_values(np.ones(10))[0].tolist() == [1.0] * 10  # no spread: nothing stands out
