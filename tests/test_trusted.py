"""Trusted set (IEG, Patrini Sec. 5.3): meta coefficients on hand-built problems, T from pairs, the
pseudo-label formula, the audit check, and scan/train end to end on CPU."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
from typer.testing import CliRunner

from labelaudit import scan
from labelaudit.cli import app
from labelaudit.errors import UsageError
from labelaudit.robust.meta import WeightAverage, meta_coefficients
from labelaudit.robust import train
from labelaudit.noise import calibration as trusted_mod
from labelaudit.noise.calibration import (CONCENTRATIONS, calibrate, flag_check, combine_transition,
    concentration_loglik, pair_transition, prior_concentration, shift_posteriors)
from labelaudit.dynamics.pseudo import sharpen

from .conftest import FAST, FAST_ARGS, make_color_folder

runner = CliRunner()

A, C = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
X = torch.cat([A, A, C, C])  # each input twice; the second copy of A and of C carries a flipped label
GIVEN = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 0]), 2).float()
PROBE_X, PROBE_Y = torch.cat([A, C]), torch.tensor([0, 1])


def _linear():
    """Orthogonal inputs and no bias: the samples' gradients touch disjoint weights, so the answer is exact."""
    model = nn.Linear(2, 2, bias=False)
    nn.init.zeros_(model.weight)
    return model


def test_meta_weights_give_a_flipped_duplicate_weight_zero():
    # at W = 0: p = (½, ½); a sample's gradient agrees with the probe's exactly when its label is the probe's
    coef = meta_coefficients(_linear(), X, GIVEN, PROBE_X, PROBE_Y, lr=0.1)
    torch.testing.assert_close(coef.weights, torch.tensor([0.5, 0.0, 0.5, 0.0]))
    assert coef.keep_given is None


def test_meta_weights_on_audit_weighted_losses():
    # prior a = (1, 1, ½, 1). A's two copies cancel in the virtual step, so the probe sees p = (½, ½) on A and
    # −∂L_p/∂ω₀ = lr·a₀·½·½. C's copies no longer cancel: C's logits move by −lr·¼·(½·g₂ + g₃) = (+, −)·lr/16,
    # the probe's p on C is (q, 1 − q) with q = σ(lr/8), and −∂L_p/∂ω₂ = lr·a₂·q/2. The weights on the losses
    # are ω*ᵢ·aᵢ: (¼, 0, ½·½·q/2, 0), normalised.
    q = torch.sigmoid(torch.tensor(0.1 / 8))
    expect = torch.stack([torch.tensor(0.25), torch.tensor(0.0), q / 8, torch.tensor(0.0)])
    coef = meta_coefficients(_linear(), X, GIVEN, PROBE_X, PROBE_Y, lr=0.1, prior=torch.tensor([1.0, 1.0, 0.5, 1.0]))
    torch.testing.assert_close(coef.weights, expect / expect.sum())  # ≈ (0.799, 0, 0.201, 0)
    same = meta_coefficients(_linear(), X, GIVEN, PROBE_X, PROBE_Y, lr=0.1, prior=torch.ones(4))
    torch.testing.assert_close(same.weights, torch.tensor([0.5, 0.0, 0.5, 0.0]))  # all-ones prior: plain L2R
    vetoed = meta_coefficients(_linear(), X, GIVEN, PROBE_X, PROBE_Y, lr=0.1, prior=torch.tensor([0.0, 1, 1, 1]))
    torch.testing.assert_close(vetoed.weights, torch.tensor([0.0, 0.0, 1.0, 0.0]))  # the audit's veto holds


def test_meta_relabel_keeps_the_given_label_only_where_it_helps_the_probe():
    pseudo = torch.nn.functional.one_hot(torch.tensor([1, 0, 0, 1]), 2).float()  # wrong where the label is right
    coef = meta_coefficients(_linear(), X, GIVEN, PROBE_X, PROBE_Y, lr=0.1, pseudo=pseudo)
    assert coef.keep_given.tolist() == [True, False, True, False]  # Eq. 6–7
    torch.testing.assert_close(coef.weights, torch.tensor([0.5, 0.0, 0.5, 0.0]))


def test_averaged_meta_weights_follow_the_bias_corrected_average():
    avg = WeightAverage(4, decay=0.5)
    ids = torch.tensor([0, 1, 2])
    # first visit: the bias correction gives ω* back exactly
    torch.testing.assert_close(avg(ids, torch.tensor([0.5, 0.5, 0.0])), torch.tensor([0.5, 0.5, 0.0]))
    # second: m = ½·(¾, ¾, 0) + ½·3·(1, 0, 0) = (15/8, 3/8, 0); / (1 − ¼) = (5/2, ½, 0); normalised (5/6, 1/6, 0)
    torch.testing.assert_close(avg(ids, torch.tensor([1.0, 0.0, 0.0])), torch.tensor([5 / 6, 1 / 6, 0.0]))
    # sample 3's first visit, in a batch of two with sample 0 (its third): B·ω* = (0, 2) → m₀ = 15/16, m₃ = 1;
    # corrected 15/16 / (7/8) = 15/14 and 1 / ½ = 2
    torch.testing.assert_close(avg(torch.tensor([0, 3]), torch.tensor([0.0, 1.0])),
                               torch.tensor([15 / 14, 2.0]) / (15 / 14 + 2))
    assert avg.visits.tolist() == [3, 2, 2, 1]
    assert avg(torch.tensor([2]), torch.tensor([0.0])).tolist() == [0.0]  # never helped: weight 0, no 0/0


def test_averaged_meta_weights_keep_a_flipped_duplicate_at_zero():
    avg = WeightAverage(4, decay=0.8)
    model = _linear()
    for _ in range(3):  # three epochs of one batch; the model moves between them
        coef = meta_coefficients(model, X, GIVEN, PROBE_X, PROBE_Y, lr=0.1)
        w = avg(torch.arange(4), coef.weights)
        with torch.no_grad():
            model.weight -= 0.5 * torch.randn(2, 2, generator=torch.Generator().manual_seed(0)).abs()
    assert w[1] == 0 and w[3] == 0 and float(w.sum()) == pytest.approx(1.0)


def test_meta_average_needs_a_meta_method_and_a_decay_below_one():
    from labelaudit.robust import TrainConfig

    with pytest.raises(UsageError, match="--meta-average is part of the meta step's training"):
        TrainConfig(meta_average=0.8).validate()
    with pytest.raises(UsageError, match="--meta-average 1.0"):
        TrainConfig(meta_average=1.0, meta_reweight=True).validate()
    assert "averaged per sample (decay 0.8)" in " ".join(TrainConfig(meta_average=0.8, meta_reweight=True).methods())


def test_ieg_loss_options_need_a_meta_method_and_a_finite_weight():
    from labelaudit.robust import TrainConfig

    with pytest.raises(UsageError, match="--meta-kl is part of the meta step's training: add --meta-reweight"):
        TrainConfig(meta_kl=20).validate()
    with pytest.raises(UsageError, match="--meta-mixup is part of the meta step's training"):
        TrainConfig(meta_mixup=5).validate()
    with pytest.raises(UsageError, match="--meta-momentum is part of the meta step's training"):
        TrainConfig(meta_momentum=True).validate()
    assert "along the optimiser's momentum" in " ".join(TrainConfig(meta_reweight=True, meta_momentum=True).methods())
    for bad in ({"meta_kl": -1.0}, {"meta_mixup": float("nan")}):
        with pytest.raises(UsageError, match="expected a loss weight from 0"):
            TrainConfig(meta_relabel=True, **bad).validate()
    words = " ".join(TrainConfig(meta_relabel=True, meta_kl=20, meta_mixup=5).validate().methods())
    assert "consistency loss k=20 (IEG Eq. 4)" in words and "probe mixup p=5 (IEG Eq. 9)" in words


def test_kl_consistency_by_hand():
    from labelaudit.robust.meta import kl_consistency

    # Φ(x) = (¼, ¾), Φ(x̂) = (½, ½): KL = ¼·ln(½) + ¾·ln(3/2); a second row with equal views adds 0
    logits = torch.tensor([[0.0, float(np.log(3.0))], [1.0, 2.0]], requires_grad=True)
    hat = torch.tensor([[0.0, 0.0], [1.0, 2.0]], requires_grad=True)
    kl = kl_consistency(logits, hat)
    assert float(kl.detach()) == pytest.approx((0.25 * np.log(0.5) + 0.75 * np.log(1.5)) / 2, rel=1e-6)
    kl.backward()  # Eq. 4 minimises over Θ: both views get gradients, and none where the views agree
    assert logits.grad[0].abs().sum() > 0 and hat.grad[0].abs().sum() > 0
    torch.testing.assert_close(hat.grad[1], torch.zeros(2))


def test_mixup_factor_is_beta_half_half_and_mix_pairs_rows_by_hand():
    from scipy import stats

    from labelaudit.robust.meta import arcsine, mix

    gen = torch.Generator().manual_seed(0)
    draws = np.array([arcsine(gen) for _ in range(4000)])
    assert stats.kstest(draws, stats.beta(0.5, 0.5).cdf).pvalue > 0.01
    assert arcsine(torch.Generator().manual_seed(3)) == arcsine(torch.Generator().manual_seed(3))
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    mixed = mix(t, torch.tensor([1, 2, 0]), 0.25)  # row a with row perm[a]: ¼·t_a + ¾·t_perm[a]
    torch.testing.assert_close(mixed, torch.tensor([[0.25, 0.75], [0.375, 0.625], [0.875, 0.125]]))


def test_cutout_zeros_one_clipped_square_per_image():
    from labelaudit.training.augment import cutout_batch

    x = torch.ones(64, 3, 8, 8)
    out = cutout_batch(x, torch.Generator().manual_seed(0), size=4)
    holes = (out == 0).all(dim=1)  # (B, 8, 8): the same square in every channel
    assert ((out == 0) == holes[:, None]).all() and ((out == 0) | (out == 1)).all()
    counts = holes.flatten(1).sum(1)
    assert counts.max() == 16 and counts.min() >= 4  # whole inside, at least a corner quarter at the border
    for h in holes:  # each hole is one axis-aligned rectangle
        rows, cols = h.any(1).nonzero().flatten(), h.any(0).nonzero().flatten()
        assert h[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()
        assert int(h.sum()) == len(rows) * len(cols)
    torch.testing.assert_close(cutout_batch(x, torch.Generator().manual_seed(0), size=4), out)


def test_pseudo_label_counts_the_views_it_is_given():
    from labelaudit.dynamics.pseudo import pseudo_label

    def never(_):
        raise AssertionError("with K views given, no more forward passes")

    a, b = torch.tensor([[0.6, 0.4]]), torch.tensor([[0.2, 0.8]])
    g = pseudo_label(never, torch.zeros(1, 3, 4, 4), lambda x: x, "none", 2, None, first=[a, b])
    torch.testing.assert_close(g, sharpen((a + b) / 2))  # Eq. 3 with K = 2: the mean of the two, sharpened


def test_ieg_step_loss_adds_k_kl_and_p_mixup_linearly():
    # Algorithm 1 step 6: L = L_ω* + L_λ* + L_pβ + p·L_uβ + k·L_KL, so with the same draws the loss is affine in k
    # and in p, and the consistency and mixup terms are positive
    from labelaudit.robust import TrainConfig
    from labelaudit.robust.meta import meta_loss as _meta_loss

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 3))
    raw = torch.randint(0, 256, (6, 3, 4, 4), dtype=torch.uint8)
    probe = torch.randint(0, 256, (3, 3, 4, 4), dtype=torch.uint8)

    def loss(k, p, relabel=True):
        gen = torch.Generator().manual_seed(1)
        config = TrainConfig(meta_relabel=relabel, meta_reweight=not relabel, meta_kl=k, meta_mixup=p)
        x = raw.float() / 255
        target = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 0, 1, 2]), 3).float()
        return float(_meta_loss(model, x, target, raw, "crop", gen, probe, torch.tensor([0, 1, 2]),
                                lambda t: t.float() / 255, config, lr=0.1)[0].detach())

    for relabel in (True, False):
        base, kl1, kl2 = loss(0.01, 0, relabel), loss(1.01, 0, relabel), loss(2.01, 0, relabel)
        assert kl1 - base > 0 and kl2 - kl1 == pytest.approx(kl1 - base, rel=1e-4)
        m1, m2, m3 = loss(0, 1, relabel), loss(0, 2, relabel), loss(0, 3, relabel)
        assert m2 - m1 > 0 and m3 - m2 == pytest.approx(m2 - m1, rel=1e-4)


@pytest.mark.parametrize("nesterov", [True, False])
def test_virtual_step_follows_the_optimisers_own_step(nesterov):
    from labelaudit.robust.meta import sgd_lookahead

    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=nesterov, weight_decay=0.01)
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 1, 0, 1])
    for _ in range(3):  # the first step has no momentum buffer yet; the later ones do
        params = {n: p.detach().clone() for n, p in model.named_parameters()}
        grads = dict(zip(params, torch.autograd.grad(nn.functional.cross_entropy(model(x), y),
                                                     list(model.parameters()))))
        ahead = sgd_lookahead(model, params, grads, 0.1, sgd)
        sgd.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        sgd.step()
        for n, p in model.named_parameters():
            torch.testing.assert_close(ahead[n], p.detach())
    plain = sgd_lookahead(model, params, grads, 0.1)  # L2R: θ − lr·g
    for n in params:
        torch.testing.assert_close(plain[n], params[n] - 0.1 * grads[n])


def test_meta_log_by_hand():
    from labelaudit.robust.meta import MetaCoefficients, MetaLog

    log = MetaLog(4)
    log(torch.tensor([0, 1]), MetaCoefficients(torch.tensor([1.0, 0.0]), torch.tensor([True, False])))
    log(torch.tensor([1, 2]), MetaCoefficients(torch.tensor([0.5, 0.5]), torch.tensor([True, True])))
    # ESS/B: (Σw)²/Σw²/B = 1/1/2 and 1/0.5/2; zero share ½ and 0
    assert log.epoch() == pytest.approx({"meta_ess": 0.75, "meta_zero_share": 0.25})
    assert log.epoch() == {}  # per epoch: started anew
    cols = log.per_sample(relabel=True)  # B·ω*: sample 0 → 2; sample 1 → 0 then 1; sample 2 → 1; sample 3 unseen
    np.testing.assert_allclose(cols["meta_weight"], [2.0, 0.5, 1.0, np.nan])
    np.testing.assert_allclose(cols["meta_weight_last"], [2.0, 1.0, 1.0, np.nan])
    np.testing.assert_allclose(cols["given_label_kept"], [1.0, 0.5, 1.0, np.nan])
    assert "given_label_kept" not in log.per_sample(relabel=False)


def test_meta_step_never_moves_the_real_batchnorm_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    coef = meta_coefficients(model, X, GIVEN, PROBE_X, PROBE_Y, lr=0.1)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert float(coef.weights.sum()) == pytest.approx(1.0) and (coef.weights >= 0).all()


def test_transition_from_pairs_and_its_combination_with_the_audit():
    verified = np.array([0, 0, 0, 0, 1, 1, 2])
    given = np.array([0, 0, 1, -1, 1, 0, -1])  # −1: a trusted image that is not in the data
    t, n = pair_transition(verified, given, 3)
    np.testing.assert_allclose(n, [3, 2, 0])
    np.testing.assert_allclose(t[0], [2 / 3, 1 / 3, 0])
    np.testing.assert_allclose(t[1], [0.5, 0.5, 0])
    assert np.isnan(t[2]).all()
    audit = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.0, 0.3, 0.7]])
    combined, alpha = combine_transition(audit, t, n, prior=2.0)
    assert alpha == 2.0
    np.testing.assert_allclose(combined[0], (3 * t[0] + 2 * audit[0]) / 5)
    np.testing.assert_allclose(combined[1], (2 * t[1] + 2 * audit[1]) / 4)
    np.testing.assert_allclose(combined[2], audit[2])  # no pairs: the audit's row
    np.testing.assert_allclose(combined.sum(axis=1), 1.0)


def test_prior_strength_follows_how_well_the_pairs_agree_with_the_audit():
    audit = np.array([[0.8, 0.2], [0.1, 0.9]])
    agree = np.array([[80.0, 20.0], [10.0, 90.0]])  # pair counts in the audit's proportions
    disagree = np.array([[20.0, 80.0], [90.0, 10.0]])
    assert prior_concentration(audit, agree) == CONCENTRATIONS[-1]  # the audit is right: trust it fully
    assert prior_concentration(audit, disagree) < 10  # the audit is contradicted: the pairs decide
    t_pairs = disagree / disagree.sum(axis=1, keepdims=True)
    combined, alpha = combine_transition(audit, t_pairs, disagree.sum(axis=1))
    assert np.abs(combined - t_pairs).max() < 0.05


def test_combination_averages_over_the_posterior_of_alpha():
    audit = np.array([[0.8, 0.2], [0.1, 0.9]])
    counts = np.array([[6.0, 4.0], [1.0, 9.0]])  # 10 pairs a class, the first row a little off the audit
    n = counts.sum(axis=1)
    t_pairs = counts / n[:, None]
    loglik = concentration_loglik(audit, counts)
    # α's posterior under a log-uniform prior on the grid: the likelihood, normalised
    w = np.exp(loglik - loglik.max())
    w /= w.sum()
    expected = sum(wi * (n[:, None] * t_pairs + a * audit) / (n[:, None] + a) for wi, a in zip(w, CONCENTRATIONS))
    combined, alpha = combine_transition(audit, t_pairs, n)
    np.testing.assert_allclose(combined, expected)
    assert alpha == pytest.approx(np.exp(np.sum(w * np.log(CONCENTRATIONS))))
    # between the pairs and the audit, row by row; and no pairs at all: the audit unchanged
    assert audit[0, 0] > combined[0, 0] > t_pairs[0, 0]
    np.testing.assert_allclose(combine_transition(audit, np.full((2, 2), np.nan), np.zeros(2))[0], audit)


def test_pseudo_label_sharpening_formula():
    # IEG Eq. 3 with τ = 0.5: p² / Σ p²
    np.testing.assert_allclose(sharpen(np.array([[0.6, 0.4]])), [[0.36 / 0.52, 0.16 / 0.52]])
    torch.testing.assert_close(sharpen(torch.tensor([[0.5, 0.25, 0.25]]), 1.0), torch.tensor([[0.5, 0.25, 0.25]]))


def test_shift_posteriors_moves_the_prior_odds():
    # p = 0.2 is odds 1:4; times e^{ln 2} = 1:2, i.e. p = 1/3; p = 0.5 with shift 0 stays 0.5
    assert shift_posteriors(np.array([0.2, 0.5]), np.log(2.0)) == pytest.approx([1 / 3, 2 / 3])
    assert shift_posteriors(np.array([0.5]), 0.0) == pytest.approx([0.5])


def test_calibration_shift_solves_the_offset_regression_by_hand(monkeypatch):
    p = np.full(8, 0.5)
    rows, wrong = np.arange(4), np.array([True, True, True, False])
    # with a flat prior the offset MLE makes the mean posterior equal the share wrong: σ(a) = 3/4, a = ln 3
    monkeypatch.setattr(trusted_mod, "SHIFT_PRIOR_SD", 1e6)
    p_new, cal = calibrate(p, rows, wrong)
    assert cal.shift == pytest.approx(np.log(3.0), abs=1e-6)
    assert p_new == pytest.approx(np.full(8, 0.75)) and cal.noise_rate == pytest.approx(0.75)
    assert cal.se == pytest.approx(1 / np.sqrt(4 * 0.75 * 0.25), rel=1e-4)  # the offset's Fisher information
    assert (cal.n, cal.n_wrong, cal.noise_rate_before) == (4, 3, 0.5)
    # the N(0, 3²) prior pulls a toward 0: the root of 3 − 4σ(a) − a/9
    monkeypatch.setattr(trusted_mod, "SHIFT_PRIOR_SD", 3.0)
    _, cal = calibrate(p, rows, wrong)
    assert 3 - 4 / (1 + np.exp(-cal.shift)) - cal.shift / 9 == pytest.approx(0.0, abs=1e-9)
    assert 0 < cal.shift < np.log(3.0)
    # every verified label right: the shift stays finite and lowers the rate
    _, cal = calibrate(p, rows, np.zeros(4, dtype=bool))
    assert -40 < cal.shift < 0 and cal.noise_rate < 0.5
    lo, hi = cal.interval
    assert lo < cal.noise_rate < hi


def test_calibration_recovers_a_known_noise_rate_from_100_verified_samples():
    rng = np.random.default_rng(0)
    n, rate = 20000, 0.1
    wrong = rng.random(n) < rate
    score = rng.normal(np.where(wrong, 2.0, 0.0), 1.0)
    logit_true = np.log(rate / (1 - rate)) + 2.0 * score - 2.0  # exact posterior of the two Gaussians
    p_over = 1 / (1 + np.exp(-(logit_true + 1.5)))  # a mixture that overstates the noise odds by e^1.5
    assert p_over.mean() > 0.2  # what the audit alone would report
    errors, covered = [], 0
    for seed in range(20):
        pick = np.random.default_rng(seed).choice(n, 100, replace=False)
        p_new, cal = calibrate(p_over, pick, wrong[pick])
        errors.append(abs(p_new.mean() - wrong.mean()))
        covered += cal.interval[0] <= wrong.mean() <= cal.interval[1]
    # 100 verified labels carry a sampling error of their own (one draw here holds 16 wrong, not 10)
    assert np.median(errors) < 0.025 and np.mean(errors) < 0.035 and covered >= 16
    assert np.mean(errors) < abs(p_over.mean() - wrong.mean()) / 4


def test_flag_check_counts():
    verified = np.array([0, 0, 1, 1, 2, 2])
    given = np.array([0, 1, 1, 0, 2, -1])
    flagged = np.array([True, True, False, False, False, True])
    c = flag_check(verified, given, flagged)
    assert (c["n_in_data"], c["n_given_wrong"], c["n_given_right"]) == (5, 2, 3)
    assert c["recall"] == pytest.approx(0.5) and c["false_alarm_rate"] == pytest.approx(1 / 3)


def _trusted_csv(folder, truth, picks, path):
    rows = [(f"images/{rel}", colour) for rel, colour in truth.items() if rel.split("_")[-1] in picks]
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(path, index=False)
    return rows


@pytest.mark.slow
def test_scan_with_a_trusted_set_checks_the_audit_and_reports_both_transition_estimates(tmp_path):
    truth = make_color_folder(tmp_path / "images")
    # the first two images of every colour are filed under the next class: pick them and two right ones
    rows = _trusted_csv(tmp_path, truth, ("000.png", "001.png", "020.png", "021.png"), tmp_path / "trusted.csv")
    assert len(rows) == 12
    res = runner.invoke(app, ["scan", str(tmp_path / "images"), "--out", str(tmp_path / "audit"), *FAST_ARGS,
                              "--trusted", str(tmp_path / "trusted.csv"), "--pseudo-labels", "augment"])
    assert res.exit_code == 0, res.output
    assert "Trusted set: 12 verified samples, 12 in the data" in res.output
    run = json.loads((tmp_path / "audit" / "run.json").read_text())
    check = run["trusted"]["check"]
    assert (check["n_given_wrong"], check["n_given_right"]) == (6, 6)
    assert check["recall"] >= 5 / 6 and check["false_alarm_rate"] <= 1 / 6  # the colour set is easy
    assert run["pseudo_labels"] == {"method": "augment", "k": 8, "tau": 0.5, "equation": "IEG Eq. 3"}
    t = pd.read_parquet(tmp_path / "audit" / "transition.parquet")
    assert {"p", "p_audit", "p_trusted", "p_calibrated"} <= set(t.columns)
    cal = run["trusted"]["calibration"]
    assert cal["n"] == 12 and cal["n_wrong"] == 6
    assert run["summary"]["noise_rate"] == pytest.approx(cal["noise_rate"])
    assert "Calibrated on the trusted set" in res.output
    samples = pd.read_parquet(tmp_path / "audit" / "samples.parquet").set_index("path")
    for path, colour in rows:  # a verified sample says what was verified, whatever the audit thought
        rel = path.removeprefix("images/")
        wrong = colour != rel.split("/")[0]
        assert samples.loc[rel, "verified_label"] == colour and samples.loc[rel, "predicted_label"] == colour
        assert samples.loc[rel, "p_mislabeled"] == float(wrong) and samples.loc[rel, "is_label_issue"] == wrong
        assert samples.loc[rel, "weight"] == 1.0 - wrong
    assert samples["verified_label"].notna().sum() == 12
    red = t[t["true_label"] == "red"].set_index("noisy_label")
    assert red.loc["green", "p_trusted"] == pytest.approx(0.5)  # 2 of the 4 trusted reds were filed as green
    assert red["p"].sum() == pytest.approx(1.0)
    samples = pd.read_parquet(tmp_path / "audit" / "samples.parquet")
    flipped = samples[samples["path"].map(lambda p: truth[p] != p.split("/")[0])]
    assert (flipped["predicted_label"] == flipped["path"].map(truth)).mean() >= 0.8


def test_trusted_labels_must_be_classes_and_meta_methods_need_every_class(tmp_path):
    truth = make_color_folder(tmp_path / "images")
    bad = tmp_path / "bad.csv"
    pd.DataFrame([("images/red/red_010.png", "purple")], columns=["path", "label"]).to_csv(bad, index=False)
    with pytest.raises(UsageError, match="--trusted .*'purple' are not classes of the data"):
        scan(tmp_path / "images", out=None, trusted=str(bad), **FAST)
    def no_training(stage, *_):
        assert stage != "train", "a bad trusted file must stop the scan before training"

    with pytest.raises(UsageError, match=r"^--trusted \S*missing.csv: no such file$"):  # named as the user typed it
        scan(tmp_path / "images", out=None, trusted=str(tmp_path / "missing.csv"), progress=no_training, **FAST)
    reds = tmp_path / "reds.csv"
    _trusted_csv(tmp_path, {k: v for k, v in truth.items() if v == "red"}, ("010.png",), reds)
    with pytest.raises(UsageError, match="needs at least one trusted sample of every class; none for blue, green"):
        train(tmp_path / "images", out=None, trusted=reds, meta_reweight=True, epochs=1, image_size=16, workers=1)
    with pytest.raises(UsageError, match="need a trusted set"):
        train(tmp_path / "images", out=None, meta_relabel=True, epochs=1, image_size=16, workers=1)


# k = 4, not the paper's CIFAR k = 20: on these 72 images in 6 epochs k = 20 stalled at 2 of 3 colours on an
# AMD EPYC (eval 0.667 after 6 epochs, and after 10) while passing on other CPUs; k = 4, the
# paper's value for full WebVision (App. B, which warns that a large k "yields the convergence issue"),
# reached 1.0 by epoch 4 there. 10 epochs, not 6: on an Intel Xeon (torch 2.14.1) the k = 4 run's one-cycle
# schedule over 6 epochs ended at 0.667 too; over 10 epochs every method reaches 1.0 there (k = 0, 1, 4 alike).
@pytest.mark.parametrize("method", [["--meta-reweight"], ["--meta-relabel"], ["--weights", "--meta-reweight"],
                                    ["--meta-reweight", "--meta-average", "0.8"],
                                    ["--meta-relabel", "--meta-kl", "4", "--meta-mixup", "5"],
                                    ["--meta-reweight", "--meta-momentum"]])
@pytest.mark.slow
def test_train_with_one_trusted_sample_per_class_end_to_end(tmp_path, method):
    truth = make_color_folder(tmp_path / "images", flips_per_class=6)  # 25% of the labels are wrong
    make_color_folder(tmp_path / "heldout", n_per_class=10, flips_per_class=0, seed=1)
    _trusted_csv(tmp_path, truth, ("015.png",), tmp_path / "trusted.csv")  # one per class
    audit = []
    if "--weights" in method:
        assert runner.invoke(app, ["scan", str(tmp_path / "images"), "--out", str(tmp_path / "audit"), "--quiet",
                                   *FAST_ARGS]).exit_code == 0
        audit = ["--audit", str(tmp_path / "audit")]
    res = runner.invoke(app, ["train", str(tmp_path / "images"), "--out", str(tmp_path / "model"), "--eval",
                              str(tmp_path / "heldout"), "--trusted", str(tmp_path / "trusted.csv"), *method, *audit,
                              "--epochs", "10", "--image-size", "16", "--batch-size", "16", "--workers", "1",
                              "--model", "tiny", *([] if method == ["--meta-reweight"] else ["--quiet"])])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    if method == ["--meta-reweight"]:  # the summary names the meta step's file and its numbers
        never = f"{metrics['meta']['never_kept']:.1%} of the samples never kept"
        assert "Meta step:" in res.output and never in res.output.replace("\n", " ")
        assert "meta_weights.parquet" in res.output
    assert metrics["trusted"]["n"] == 3 and metrics["trusted"]["per_class_min"] == 1
    methods = " | ".join(metrics["methods"])
    assert "meta re-" in methods
    assert ("of the audit-weighted losses" in methods) == ("--weights" in method)
    assert ("averaged per sample" in methods) == ("--meta-average" in method)
    assert ("consistency loss k=4" in methods and "probe mixup p=5" in methods) == ("--meta-kl" in method)
    # what the meta step made of each sample: one row per trained sample, per-epoch statistics in metrics.json
    table = pd.read_parquet(tmp_path / "model" / "meta_weights.parquet")
    assert len(table) == metrics["data"]["n_trained"] and table["meta_weight"].notna().all()
    assert ("given_label_kept" in table) == ("--meta-relabel" in method)
    assert metrics["meta"]["file"] == "meta_weights.parquet"
    assert all(0 < e["meta_ess"] <= 1 and 0 <= e["meta_zero_share"] < 1 for e in metrics["epochs"])
    if method == ["--meta-reweight"]:  # L2R with the one trusted red, green, blue: the flipped weigh less
        flipped = table["path"].map(lambda p: truth[p] != p.split("/")[0])
        assert table.loc[flipped, "meta_weight"].mean() < 0.5 * table.loc[~flipped, "meta_weight"].mean()
        res = runner.invoke(app, ["train", str(tmp_path / "images"), "--out", str(tmp_path / "model"), "--epochs",
                                  "1", "--image-size", "16", "--workers", "1", "--model", "tiny", "--quiet"])
        assert res.exit_code == 0, res.output
        assert not (tmp_path / "model" / "meta_weights.parquet").exists()  # no stale file from the meta run
    assert metrics["final"]["eval_accuracy"] >= 0.9
