"""--epochs auto: the proxy stops at the onset of memorisation (noise/stopping.py's memorisation_check)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from labelaudit.dynamics import proxy
from labelaudit.noise import stopping
from labelaudit.errors import UsageError
from labelaudit.config import parse_epochs
from labelaudit.dynamics.proxy import ProxySettings, train_proxy
from labelaudit.noise.confident import STILL_FALLING
from labelaudit.noise.stopping import memorisation_check


def _margins(epochs: int, memorised_from: int | None, n: int = 2000, noisy_share: float = 0.2, seed: int = 0):
    """(E, N) margins: clean samples ~ N(2, 1.5) every epoch (91% positive); the first
    ``noisy_share`` are mislabeled, ~ N(-3, 1) until epoch ``memorised_from``, like clean after it."""
    rng = np.random.default_rng(seed)
    m = rng.normal(2.0, 1.5, (epochs, n))
    n_noisy = int(noisy_share * n)
    last = epochs if memorised_from is None else memorised_from
    m[:last, :n_noisy] = rng.normal(-3.0, 1.0, (last, n_noisy))
    return m


@pytest.mark.slow
def test_check_fires_on_the_first_epoch_that_fits_more_labels_than_are_right():
    m = _margins(10, memorised_from=6)
    for e in range(2, 7):  # agreement ≈ 0.8 × 0.91 = 0.73 < 1 − η̂ ≈ 0.8
        check = memorisation_check(m[:e])
        assert check["epoch"] == e and not check["memorising"]
        assert check["noise_rate"] == pytest.approx(0.2, abs=0.01)
        assert check["agreement"] == pytest.approx(0.8 * 0.909 + 0.2 * 0.0013, abs=0.02)
    check = memorisation_check(m[:7])  # epoch 7: the mislabeled samples fit their labels
    assert check["memorising"]
    assert check["agreement"] == pytest.approx(0.909, abs=0.02)
    assert check["noise_rate"] == pytest.approx(0.2, abs=0.01)  # the mean margin is still far below 0


@pytest.mark.slow
def test_clean_data_never_stops_early():
    m = _margins(12, memorised_from=None, noisy_share=0.0)
    checks = [memorisation_check(m[:e]) for e in range(1, 13)]
    assert all(c["noise_rate"] == 0.0 and not c["memorising"] for c in checks)


def test_check_waits_while_a_component_straddles_zero():
    """40% of the samples sit around a margin of 0 (per-sample AUM ~ N(−0.3, 1)): the mixture counts them
    mislabeled (η̂ ≈ 0.6), so agreement ≈ 0.56 ≥ 1 − η̂ would stop the run; the check waits instead."""
    rng = np.random.default_rng(3)
    base = np.concatenate([rng.normal(-3.0, 0.7, 400), rng.normal(-0.3, 1.0, 800), rng.normal(3.5, 0.8, 800)])
    check = memorisation_check(base + rng.normal(0.0, 0.3, (20, 2000)))
    assert check["undecided"] == 1 and not check["memorising"]
    assert check["agreement"] >= 1.0 - check["noise_rate"]  # the rule without the wait would have fired
    settled = memorisation_check(np.concatenate([base[:400], base[400:] + 3.0]) + rng.normal(0.0, 0.3, (20, 2000)))
    assert settled["undecided"] == 0  # once the group has moved off zero the check is free to fire


def _probabilities(epochs: int = 15, n: int = 3000, memorised_from: int | None = None, seed: int = 0):
    """(margin, given, loss, predicted, kind) of 3 classes over ``epochs``: 60% easy clean samples
    (p(given) ≈ 0.95), 15% hard clean ones the proxy gets wrong but not confidently (0.2 given, 0.55 the
    next class) and 25% mislabeled ones confidently in the next class (0.04, 0.92); from epoch
    ``memorised_from`` half the mislabeled ones fit their given label (0.9)."""
    rng = np.random.default_rng(seed)
    given, kind = np.arange(n) % 3, np.zeros(n, int)
    kind[: n // 4], kind[n // 4: n // 4 + 3 * n // 20] = 2, 1  # 2: mislabeled, 1: hard clean, 0: easy clean
    jitter = lambda: np.exp(rng.normal(0.0, 0.05, (epochs, n)))  # noqa: E731
    p_given = np.array([0.95, 0.2, 0.04])[kind] * jitter()
    p_other = np.array([0.03, 0.55, 0.92])[kind] * jitter()
    if memorised_from is not None:
        learnt = (kind == 2) & (np.arange(n) % 2 == 0)
        p_given[memorised_from:, learnt], p_other[memorised_from:, learnt] = 0.9, 0.05
    p_given = np.minimum(p_given, 0.96)
    p_other = np.minimum(p_other, 0.99 - p_given)
    predicted = np.where(kind == 0, given, (given + 1) % 3)
    return np.log(p_given / p_other), given, -np.log(p_given), predicted, kind


def test_a_steady_reading_of_the_last_epochs_keeps_an_underfit_proxy_training():
    """The mixture counts the 15% hard clean samples mislabeled (η̂ 0.40), so 60% agreement would stop
    the run; the confident joint of the last epochs, steady, counts only the confident ones
    (0.25 / 0.85 = 0.294, Σ_j n_j/N · off_j / counted_j) and says 70.6% are right: train on."""
    margin, given, loss, predicted, _ = _probabilities()
    mixture_only = memorisation_check(margin, given)
    assert mixture_only["memorising"] and mixture_only["reading"] is None
    assert mixture_only["noise_rate"] == pytest.approx(0.40, abs=0.01) and mixture_only["agreement"] == 0.6
    check = memorisation_check(margin, given, loss, predicted)
    assert check["reading"]["rate"] == pytest.approx(0.25 / 0.85, abs=1e-9) and check["reading"]["fall"] == 0.0
    assert check["noise_rate"] == check["reading"]["rate"] and check["mixture_rate"] == mixture_only["noise_rate"]
    assert check["undecided"] == 0 and not check["memorising"]


def test_a_falling_reading_is_a_proxy_fitting_wrong_labels_and_the_mixture_decides():
    """From epoch 11 half the mislabeled samples fit their labels: the reading halves (0.294 → 0.147:
    a fall of 50%, above STILL_FALLING) and the mixture's η̂ (their AUM is still negative) stops the run."""
    margin, given, loss, predicted, _ = _probabilities(memorised_from=10)
    check = memorisation_check(margin, given, loss, predicted)
    assert check["reading"]["fall"] == pytest.approx(0.5, abs=0.01) and STILL_FALLING < 0.5
    assert check["noise_rate"] == check["mixture_rate"] == pytest.approx(0.40, abs=0.01)
    assert check["agreement"] == pytest.approx(0.725) and check["memorising"]
    few = memorisation_check(margin[:9], given, loss[:9], predicted)  # under two windows: no reading
    assert few["reading"] is None and few["noise_rate"] == few["mixture_rate"]


def test_parse_epochs():
    assert parse_epochs("auto") == (30, 15) == (proxy.AUTO_EPOCHS[1], proxy.AUTO_EPOCHS[0])
    assert parse_epochs("AUTO") == (30, 15)
    assert parse_epochs("7") == (7, None)
    assert parse_epochs(3) == (3, None)
    for bad in ("0", "-2", "banana", 2.5, ""):
        with pytest.raises(UsageError, match=r"^--epochs .*expected auto or a whole number"):
            parse_epochs(bad)


def _tiny(n: int = 24, k: int = 2):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=g), torch.arange(n) % k


def test_training_stops_where_the_check_says_and_reports_it():
    seen = []

    def fake_check(margin, given, loss, predicted):
        seen.append(margin.shape[0])
        assert loss.shape == margin.shape and predicted.shape == given.shape == (24,)
        assert not np.isnan(margin).any() and not np.isnan(loss).any()  # only finished epochs are handed over
        return {"epoch": margin.shape[0], "agreement": 1.0, "noise_rate": 0.0, "memorising": margin.shape[0] >= 4}

    images, labels = _tiny()
    calls = []
    dyn = train_proxy(images, labels, 2, ProxySettings(model="tiny", epochs=9, stop_from=2, batch_size=8),
                      device=torch.device("cpu"), progress=lambda *a: calls.append(a), stop_rule=fake_check)
    assert seen == [2, 3, 4]  # checked before epochs 3, 4 and 5; the third check stops it
    assert dyn.loss.shape == dyn.margin.shape == (4, 24)
    assert dyn.stopped == {"epoch": 4, "agreement": 1.0, "noise_rate": 0.0, "memorising": True}
    stage, completed, total, info = calls[-1]
    assert stage == "train" and completed == total == 4 * 3 and info["epochs"] == 4  # the bar ends full


def test_fixed_epochs_never_check():
    images, labels = _tiny()
    dyn = train_proxy(images, labels, 2, ProxySettings(model="tiny", epochs=3, stop_from=None, batch_size=8),
                      device=torch.device("cpu"), stop_rule=lambda *a: pytest.fail("checked with a fixed --epochs"))
    assert dyn.margin.shape == (3, 24) and dyn.stopped is None


def test_a_stopping_run_without_a_rule_is_refused():
    images, labels = _tiny()
    with pytest.raises(ValueError, match="stop_from=2 needs a stop_rule"):
        train_proxy(images, labels, 2, ProxySettings(model="tiny", epochs=3, stop_from=2, batch_size=8),
                    device=torch.device("cpu"))


@pytest.mark.slow
def test_auto_scan_records_its_stop_and_the_summary_says_it(color_folder, monkeypatch):
    """End to end with --epochs auto: the stop lands in run.json and the terminal summary."""
    from rich.console import Console

    from labelaudit import scan
    from labelaudit.cli.summary import render_overview

    from .conftest import FAST

    stop_at = 3
    real = stopping.memorisation_check

    def check(*args):  # the real check, forced to say yes from epoch 3 on (a tiny set never memorises)
        return {**real(*args), "memorising": args[0].shape[0] >= stop_at}

    monkeypatch.setattr("labelaudit.pipeline.memorisation_check", check)
    monkeypatch.setattr(proxy, "AUTO_EPOCHS", (2, 6))
    monkeypatch.setattr("labelaudit.config.AUTO_EPOCHS", (2, 6))
    root, _ = color_folder
    result = scan(root, out=None, **{**FAST, "epochs": "auto"})
    run = result.run
    assert run["config"]["epochs"] == "auto" and run["epochs_run"] == stop_at
    assert run["early_stop"]["epoch"] == stop_at and run["early_stop"]["memorising"]
    assert 0.0 <= run["early_stop"]["agreement"] <= 1.0 and 0.0 <= run["early_stop"]["noise_rate"] <= 1.0
    assert result.trajectories["epoch"].max() == stop_at
    console = Console(record=True, width=200)
    render_overview(console, run)
    text = console.export_text()
    assert f"Proxy stopped after epoch {stop_at}: it agreed with" in text
    assert "the share the noise model believes right" in text  # under 10 epochs: no reading
    def summary_with(reading: dict) -> str:
        console = Console(record=True, width=200)
        render_overview(console, {**run, "early_stop": {**run["early_stop"], "reading": reading}})
        return console.export_text()

    rate = run["early_stop"]["noise_rate"]
    assert "the share the confident joint of its last epochs believes right" in summary_with(
        {"rate": rate, "fall": 0.05, "used": True})
    # a reading equal to the mixture's rate but not used (clean digits: both 0, the reading not steady)
    assert "the share the noise model believes right" in summary_with({"rate": rate, "fall": 1.0, "used": False})
    fixed = scan(root, out=None, **FAST)
    assert fixed.run["epochs_run"] == FAST["epochs"] and fixed.run["early_stop"] is None


def test_a_large_set_is_checked_on_a_fixed_draw(monkeypatch):
    monkeypatch.setattr(stopping, "CHECK_SAMPLES", 500)
    m = _margins(8, memorised_from=None, n=3000)
    a, b = memorisation_check(m), memorisation_check(m)
    assert a == b  # the same draw every time: same seed, same outputs
    assert a["noise_rate"] == pytest.approx(0.2, abs=0.05) and a["agreement"] == pytest.approx(0.8 * 0.909, abs=0.02)
