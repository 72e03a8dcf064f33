"""Noise models on synthetic scores with known truth (no training)."""
import numpy as np
import pytest

from labelaudit.noise.mixture import early_agreement, fit_aul_gmm, fit_margin_mixture, fit_noise, noise_table


def _clean_margins(rng, n):
    """A skewed clean AUM distribution: most samples easy (margin ~4), a long tail of hard ones."""
    easy = rng.normal(4.0, 1.0, int(n * 0.75))
    hard = rng.gamma(2.0, 0.6, n - len(easy)) + 0.3  # positive, long-tailed toward 0
    return np.concatenate([easy, hard])


@pytest.mark.parametrize("rate", [0.05, 0.2, 0.4, 0.6])
def test_margin_mixture_recovers_the_noise_rate(rate):
    rng = np.random.default_rng(1)
    n = 4000
    n_noisy = int(rate * n)
    aum = np.concatenate([_clean_margins(rng, n - n_noisy), rng.normal(-2.5, 1.0, n_noisy)])
    truth = np.r_[np.zeros(n - n_noisy), np.ones(n_noisy)]
    fit = fit_margin_mixture(aum)
    assert abs(fit.noise_rate - rate) < 0.02
    assert fit.noise_rate == pytest.approx(fit.p_mislabeled.mean())
    # the posterior separates the two groups
    assert fit.p_mislabeled[truth == 1].mean() > 0.9 and fit.p_mislabeled[truth == 0].mean() < 0.05


@pytest.mark.parametrize("draw", range(11))
def test_a_few_errors_among_classes_learned_at_different_margins(draw):
    """One margin mode per class (a small set, classes the proxy learns unequally sure): the modes take
    a component each, and 3 components leave none for the mislabeled samples (measured: 0 on a
    180-image folder with 5 clear errors, docs/scores.md "More components"). 3 to 10 classes at random
    margins, 1-5% errors at -2.5; the default budget of 10 counts them on every draw (8 missed 2)."""
    rng = np.random.default_rng(draw)
    k = int(rng.integers(3, 11))
    clean = np.concatenate([rng.normal(m, 0.15 * m, 200) for m in rng.uniform(2, 25, k)])
    n_noisy = int(rng.uniform(0.01, 0.05) * len(clean))
    aum = np.concatenate([clean, rng.normal(-2.5, 0.5, n_noisy)])
    fit = fit_margin_mixture(aum, interval=False)
    assert fit.noise_rate == pytest.approx(n_noisy / len(aum), abs=2e-3)
    assert (fit.p_mislabeled[-n_noisy:] > 0.9).mean() > 0.95 and fit.p_mislabeled[:-n_noisy].max() < 0.5


def test_three_components_miss_them():
    """The same margins with the former cap of 3: the class modes use up the components."""
    rng = np.random.default_rng(0)
    modes = [2.5, 6.0, 11.0, 17.0, 24.0]
    aum = np.concatenate([np.concatenate([rng.normal(m, 0.15 * m, 120) for m in modes]), rng.normal(-2.4, 0.2, 9)])
    assert fit_margin_mixture(aum, max_components=3, interval=False).noise_rate == 0.0
    assert fit_margin_mixture(aum, interval=False).noise_rate == pytest.approx(9 / len(aum), abs=1e-3)


def _low_group(rng, labels_of_low):
    """1,800 clean samples (10 classes, AUM ~ 9) and 270 in a low positive group (AUM ~ 2), whose
    given labels ``labels_of_low(rng, 270)`` decides."""
    clean_labels = np.repeat(np.arange(10), 180)
    aum = np.concatenate([rng.normal(9.0, 1.8, 1800), rng.normal(2.0, 0.8, 270)])
    return aum, np.concatenate([clean_labels, labels_of_low(rng, 270)])


def test_images_of_no_class_count_as_mislabeled():
    """Junk memorised into random labels: positive margins far below the bulk, labels spread like the
    dataset's. With the given labels the rule counts them (the junk digits: 0 → 0.140 for 0.131)."""
    rng = np.random.default_rng(4)
    aum, given = _low_group(rng, lambda r, n: r.integers(0, 10, n))
    assert fit_margin_mixture(aum, interval=False).noise_rate == 0.0  # the sign rule alone: none
    fit = fit_margin_mixture(aum, given=given, interval=False)
    assert fit.noise_rate == pytest.approx(270 / 2070, abs=0.01)
    assert fit.p_mislabeled[-270:].mean() > 0.95 and fit.p_mislabeled[:1800].mean() < 0.01
    assert fit.details["no_class_components"] == 1 and "no class" in fit.method
    assert fit_noise("margin", aul_scores=-aum, aum_scores=aum, given=given).noise_rate == fit.noise_rate


def test_hard_clean_images_agreed_with_early_are_not_no_class():
    """The same low group, labels spread over every class. Junk is agreed with in the first two epochs at
    about chance (1/10 here; limit 0.1 + 0.1 · 0.9 = 0.19): counted. Hard clean images, agreed with
    early a third of the time (0.25–0.33 on CIFAR-10 at 50k), are not; without the early agreement
    the labels-only rule counts both."""
    rng = np.random.default_rng(4)
    aum, given = _low_group(rng, lambda r, n: r.integers(0, 10, n))
    bulk_early = rng.binomial(2, 0.8, 1800) / 2

    def fit(p_early):
        early = np.concatenate([bulk_early, rng.binomial(2, p_early, 270) / 2])
        return fit_margin_mixture(aum, given=given, early=early, interval=False)

    junk, hard = fit(0.12), fit(0.30)
    assert junk.noise_rate == pytest.approx(270 / 2070, abs=0.01) and junk.details["no_class_components"] == 1
    assert "early" in junk.method
    assert hard.noise_rate == 0.0 and hard.details["no_class_components"] == 0
    assert fit_margin_mixture(aum, given=given, interval=False).details["no_class_components"] == 1
    margins = np.where(rng.random((5, 6)) < 0.5, -1.0, 1.0)
    assert early_agreement(margins) == pytest.approx((margins[:2] > 0).mean(axis=0))  # epochs 1–2 only


@pytest.mark.parametrize("n_classes", [10, 2])
def test_a_class_learned_less_surely_is_not_no_class(n_classes):
    """The same low group, all of one label: a hard class (its own mode), not junk — counted clean."""
    rng = np.random.default_rng(4)
    aum, given = _low_group(rng, lambda r, n: np.zeros(n, dtype=np.int64))
    if n_classes == 2:
        given = np.where(given[:1800] % 2 == 0, 0, 1).tolist() + [1] * 270
    fit = fit_margin_mixture(aum, given=np.asarray(given), interval=False)
    assert fit.noise_rate == 0.0 and fit.details["no_class_components"] == 0


def test_the_hard_part_of_a_large_class_is_not_no_class():
    """Imbalanced data: class 0 holds 80% of the samples and its 270 hard ones form a low group, all of
    label 0. Its total variation from the prior is 1 − 0.8 = 0.2, under an absolute limit of 0.3, so the
    limit is relative to 1 − the largest prior (0.2 / 3): counted clean. Junk in the same set, labelled
    like the rest, still counts."""
    rng = np.random.default_rng(4)
    bulk = np.concatenate([np.zeros(1330, dtype=np.int64), np.repeat(np.arange(1, 5), 100)])
    aum = np.concatenate([rng.normal(9.0, 1.8, len(bulk)), rng.normal(2.0, 0.8, 270)])
    hard = fit_margin_mixture(aum, given=np.concatenate([bulk, np.zeros(270, dtype=np.int64)]), interval=False)
    assert hard.noise_rate == 0.0 and hard.details["no_class_components"] == 0
    junk_labels = rng.choice(5, 270, p=[0.8, 0.05, 0.05, 0.05, 0.05])
    junk = fit_margin_mixture(aum, given=np.concatenate([bulk, junk_labels]), interval=False)
    assert junk.noise_rate == pytest.approx(270 / len(aum), abs=0.01) and junk.details["no_class_components"] == 1


def test_margin_mixture_says_zero_on_clean_skewed_scores():
    aum = _clean_margins(np.random.default_rng(2), 4000)
    fit = fit_margin_mixture(aum)
    assert fit.noise_rate <= 0.01
    # the paper's plain 2-component mixture on the same (AUL-like, flipped) scores is fooled by the skew
    assert fit_aul_gmm(-aum).noise_rate > 0.15


def test_the_rate_is_that_of_ems_best_optimum_not_its_first(monkeypatch):
    """120 mislabeled margins spread flat over [−5, −0.5] under two clean modes: from the 2 starts every
    candidate gets, EM's 3-component fit ends in a worse optimum that calls 19% mislabeled; the chosen
    k refitted from REFIT_INITS starts finds the better one, at the true 12%."""
    from sklearn.mixture import GaussianMixture

    from labelaudit.noise import mixture

    rng = np.random.default_rng(134)
    aum = np.concatenate([rng.uniform(-5, -0.5, 120), rng.normal(0.8, 1.2, 500), rng.normal(3.0, 1.5, 380)])
    fit = fit_margin_mixture(aum, interval=False)
    assert fit.details["n_components"] == 3 and abs(fit.noise_rate - 0.12) < 0.01
    x = aum.reshape(-1, 1)
    two = GaussianMixture(3, random_state=0, n_init=2, reg_covar=1e-6).fit(x)
    best, _ = mixture._fit_best(x, 10, 0)
    assert best.score(x) > two.score(x) + 1e-3
    monkeypatch.setattr(mixture, "REFIT_INITS", 2)  # without the refit: the first optimum, 0.19
    assert fit_margin_mixture(aum, interval=False).noise_rate > 0.18


def test_a_component_straddling_zero_gives_a_model_range():
    """20% clearly mislabeled (−3), 40% undecided around 0 (mean −0.1, sd 1: 46% of it above zero), 40% clean."""
    rng = np.random.default_rng(3)
    aum = np.concatenate([rng.normal(-3.0, 0.7, 800), rng.normal(-0.1, 1.0, 1600), rng.normal(3.5, 0.8, 1600)])
    fit = fit_margin_mixture(aum)
    assert fit.details["undecided"] == [False, True, False] and fit.details["undecided_components"] == 1
    lo, hi = fit.model_range
    assert lo == pytest.approx(0.2, abs=0.03) and hi == pytest.approx(0.6, abs=0.03)
    # the estimate itself still follows the side of zero the component's mean is on
    assert fit.noise_rate == pytest.approx(lo if fit.details["means"][1] >= 0 else hi)
    assert "straddle zero" in fit.method


@pytest.mark.parametrize("z, undecided", [(-0.8, True), (-1.4, False)])
def test_undecided_means_within_one_standard_deviation_of_zero(z, undecided):
    """A middle component at −0.8 sd (as CIFAR-10 with 40% uniform noise at 15 epochs: −0.40 for sd 0.44,
    mostly clean images not yet learned) is undecided; at −1.4 sd (8% of it above zero) it is decided."""
    rng = np.random.default_rng(4)
    aum = np.concatenate([rng.normal(-4.0, 0.5, 1000), rng.normal(z * 0.6, 0.6, 1600), rng.normal(3.0, 0.6, 1400)])
    fit = fit_margin_mixture(aum, interval=False)
    assert fit.details["n_components"] == 3 and fit.details["mislabeled"] == [True, True, False]
    assert fit.details["undecided"] == [False, undecided, False]
    assert (fit.model_range is not None) == undecided
    assert fit.noise_rate == pytest.approx(0.65, abs=0.02)


def test_the_summary_warns_about_a_model_range():
    from rich.console import Console

    from labelaudit.cli.summary import render_overview

    run = {"summary": {"noise_rate": 0.6, "noise_rate_interval": [0.59, 0.61], "noise_rate_model_range": [0.2, 0.6],
                       "n_samples": 4000, "n_classes": 2, "n_label_issues": 2400, "n_errors": 0},
           "noise_model": {"method": "margin mixture"}}
    console = Console(record=True, width=300)
    render_overview(console, run)
    text = console.export_text()
    assert "Uncertain estimate" in text and "anywhere from 20.0% to 60.0%" in text
    assert "--mode verify" in text and "--trusted verify.csv" in text  # and how to settle it
    run["summary"]["noise_rate_model_range"] = None
    console = Console(record=True, width=300)
    render_overview(console, run)
    assert "Uncertain" not in console.export_text()


def test_the_summary_says_how_many_look_like_images_of_no_class():
    from rich.console import Console

    from labelaudit.cli.summary import render_overview

    run = {"summary": {"noise_rate": 0.14, "noise_rate_interval": [0.13, 0.15], "n_samples": 2067, "n_classes": 10,
                       "n_label_issues": 292, "n_errors": 0},
           "noise_model": {"method": "margin mixture", "weights": [0.1355, 0.8645], "no_class": [True, False]}}
    console = Console(record=True, width=400)
    render_overview(console, run)
    text = console.export_text()
    assert "About 280 of them look like images of no class" in text and "remove rather than relabel" in text
    run["noise_model"]["no_class"] = [False, False]
    console = Console(record=True, width=400)
    render_overview(console, run)
    assert "no class" not in console.export_text()


def test_well_separated_components_have_no_model_range():
    rng = np.random.default_rng(1)
    aum = np.concatenate([_clean_margins(rng, 3000), rng.normal(-2.5, 1.0, 1000)])
    fit = fit_margin_mixture(aum)
    assert fit.model_range is None and fit.details["undecided_components"] == 0
    assert fit.noise_rate == pytest.approx(0.25, abs=0.02)


def test_aul_gmm_is_the_papers_recipe_on_bimodal_scores():
    rng = np.random.default_rng(3)
    aul = np.concatenate([rng.normal(2.0, 0.5, 3000), rng.normal(8.0, 1.0, 1000)])
    fit = fit_aul_gmm(aul)
    assert abs(fit.noise_rate - 0.25) < 0.01
    assert fit.p_mislabeled[-1000:].min() > 0.99
    assert fit.details["bic"][1] < fit.details["bic"][0]


def test_unimodal_gaussian_gives_no_mislabeled_mode():
    aul = np.random.default_rng(4).normal(5.0, 1.0, 3000)
    assert fit_aul_gmm(aul).noise_rate == 0.0


def test_degenerate_inputs():
    assert fit_margin_mixture(np.array([1.0, -1.0])).noise_rate == 0.5  # too few: the sign decides
    assert fit_margin_mixture(np.full(50, 3.0)).noise_rate == 0.0
    with pytest.raises(ValueError, match="name='magic': unknown noise model; choose one of margin, aul-gmm"):
        fit_noise("magic", aul_scores=np.zeros(3), aum_scores=np.zeros(3))


def test_noise_table_rates_are_mean_posteriors_per_given_class():
    p = np.array([0.0, 1.0, 0.5, 0.5, 0.0])
    given = np.array([0, 0, 1, 1, 2])
    df = noise_table(p, given, ["a", "b", "c"])
    assert df["scope"].tolist() == ["dataset", "class", "class", "class"]
    assert df["label"].isna().tolist() == [True, False, False, False]  # null for the dataset row
    assert df["label"].tolist()[1:] == ["a", "b", "c"]
    np.testing.assert_allclose(df["noise_rate"], [0.4, 0.5, 0.5, 0.0])
    np.testing.assert_allclose(df["n_mislabeled"], [2.0, 1.0, 1.0, 0.0])
    assert df["n_samples"].tolist() == [5, 2, 2, 1]


@pytest.mark.slow
def test_bootstrap_interval_covers_the_truth_and_narrows_with_n():
    rng = np.random.default_rng(3)
    widths = []
    for n in (1000, 10000):
        x = np.concatenate([rng.normal(3.0, 1.0, int(0.8 * n)), rng.normal(-2.0, 1.0, int(0.2 * n))])
        fit = fit_margin_mixture(x, random_state=0)
        lo, hi = fit.interval
        assert lo <= fit.noise_rate <= hi and lo <= 0.2 <= hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 2  # ~1/sqrt(n): 10× the samples, ~3× narrower
    clean = fit_margin_mixture(rng.normal(3.0, 1.0, 2000))
    assert clean.noise_rate == 0.0 and clean.interval == (0.0, 0.0)


@pytest.mark.slow
def test_many_values_select_on_a_draw_and_bootstrap_m_out_of_n(monkeypatch):
    """Above SELECT_SAMPLES, BIC picks the number of components on a fixed draw and the bootstrap
    resamples SELECT_SAMPLES values, scaling by √(m/N): the rate and the interval stay those of the
    full computation (here SELECT_SAMPLES lowered to 2,000 for 40,000 values, 8% at −2.5)."""
    from labelaudit.noise import mixture

    rng = np.random.default_rng(5)
    n = 40_000
    noisy = rng.random(n) < 0.08
    x = np.where(noisy, rng.normal(-2.5, 1.0, n), rng.gamma(4.0, 1.5, n) - 0.5)
    full = fit_margin_mixture(x)
    monkeypatch.setattr(mixture, "SELECT_SAMPLES", 2_000)
    drawn = fit_margin_mixture(x)
    assert drawn.noise_rate == pytest.approx(full.noise_rate, abs=0.005)  # 0.0804 and 0.0821
    assert drawn.noise_rate == pytest.approx(noisy.mean(), abs=0.005)
    assert len(drawn.p_mislabeled) == n  # the chosen mixture is refitted on, and scores, every value
    (lo_f, hi_f), (lo_d, hi_d) = full.interval, drawn.interval
    assert lo_d <= drawn.noise_rate <= hi_d and lo_d <= 0.08 <= hi_d
    assert 0.5 < (hi_d - lo_d) / (hi_f - lo_f) < 2.0  # √(m/N)-scaled, not the draw's own, 4.5× wider
    assert fit_margin_mixture(x).noise_rate == drawn.noise_rate  # a fixed draw: same input, same output


def test_side_by_side_fits_equal_fits_one_after_another(monkeypatch):
    """_fit_all runs the candidate mixtures on parallel threads; each is seeded and single-threaded, so
    the fitted parameters are bit-for-bit those of fitting them one by one (and on one core)."""
    from sklearn.mixture import GaussianMixture

    from labelaudit.noise import mixture

    rng = np.random.default_rng(6)
    x = np.concatenate([rng.normal(-2.0, 1.0, 800), rng.gamma(4.0, 1.5, 7200)]).reshape(-1, 1)
    make = lambda: [GaussianMixture(k, random_state=0, n_init=2, reg_covar=1e-6) for k in range(1, 6)]  # noqa: E731
    together = mixture._fit_all(make(), [x] * 5)
    alone = [mixture._fit_all([g], [x])[0] for g in make()]
    monkeypatch.setattr(mixture.os, "cpu_count", lambda: 1)
    one_core = mixture._fit_all(make(), [x] * 5)
    for a, b, c in zip(together, alone, one_core):
        assert np.array_equal(a.means_, b.means_) and np.array_equal(a.covariances_, c.covariances_)
        assert np.array_equal(a.weights_, b.weights_)
