"""The noise-transition matrix: Patrini's anchors on planted anchor points, the count estimate on
hand-computed arrays, the two views of per-class noise, and end to end on make_noisy's asym noise."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from labelaudit import scan
from labelaudit.noise.transition import (anchor_transition, count_joint, count_transition, estimate_transition,
    given_label_rates, top_flows, transition_frame, transition_matrix)

SHARED = Path(__file__).resolve().parents[2] / "shared"

T_TRUE = np.array([[0.8, 0.2, 0.0],
                   [0.0, 0.7, 0.3],
                   [0.1, 0.0, 0.9]])


def planted_probs(n: int = 3000, anchors_per_class: int = 150, seed: int = 0) -> np.ndarray:
    """p(ỹ | x) = p(y | x) · T with p(y | x) from a Dirichlet, plus perfect examples of each class."""
    rng = np.random.default_rng(seed)
    clean = rng.dirichlet(np.full(3, 0.7), size=n)
    clean[:3 * anchors_per_class] = np.repeat(np.eye(3), anchors_per_class, axis=0)
    return clean @ T_TRUE


@pytest.mark.parametrize("quantile", [1.0, 0.97])
def test_anchors_recover_a_planted_transition_matrix(quantile):
    probs = planted_probs()
    before = probs.copy()
    t, anchors = anchor_transition(probs, quantile)
    np.testing.assert_allclose(t, T_TRUE, atol=1e-9)
    np.testing.assert_allclose(t.sum(axis=1), 1.0)
    assert (anchors // 150 == np.arange(3)).all()  # each anchor is one of its class's perfect examples
    np.testing.assert_array_equal(probs, before)  # never edited in place


def test_anchor_quantile_excludes_outliers_above_it():
    """At α < 1 the anchor is the sample just under the α-quantile, not the column's maximum."""
    probs = np.array([[0.50, 0.50], [0.60, 0.40], [0.70, 0.30], [0.99, 0.01],
                      [0.20, 0.80], [0.10, 0.90], [0.40, 0.60], [0.30, 0.70]])
    t, anchors = anchor_transition(probs, 0.8)
    assert anchors.tolist() == [2, 4]  # class 0: 0.70 (below 0.99); class 1: 0.80 (below 0.90)
    np.testing.assert_allclose(t, [[0.7, 0.3], [0.2, 0.8]])
    with pytest.raises(ValueError, match="quantile=0.0"):
        anchor_transition(probs, 0.0)


def test_count_joint_by_hand():
    # three classes; sample 0 given 0 is surely clean; sample 1 given 0 is 50% mislabeled and most
    # likely class 2; sample 2 given 1 is surely mislabeled and most likely class 0.
    p = np.array([0.0, 0.5, 1.0])
    given = np.array([0, 0, 1])
    probs = np.array([[0.9, 0.05, 0.05], [0.4, 0.2, 0.4 + 1e-9], [0.7, 0.2, 0.1]])
    hard = count_joint(p, given, probs)
    np.testing.assert_allclose(hard, [[1.5, 1.0, 0.0], [0.0, 0.0, 0.0], [0.5, 0.0, 0.0]])
    soft = count_joint(p, given, probs, hard=False)  # sample 1's 0.5 spread 1/3 : 2/3 over classes 1, 2
    np.testing.assert_allclose(soft, [[1.5, 0.7 / 0.8, 0.0], [0.5 / 3, 0.0, 0.0], [1.0 / 3, 0.1 / 0.8, 0.0]],
                               atol=1e-8)
    t = count_transition(p, given, probs)
    np.testing.assert_allclose(t, [[0.6, 0.4, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # class 1: no mass → identity


def test_count_estimate_implies_the_mixture_rates():
    """Under ``counts`` the given-label view of T equals the mean posterior per given class."""
    rng = np.random.default_rng(1)
    n, k = 500, 4
    given = rng.integers(0, k, n)
    p = rng.uniform(0, 1, n) ** 3
    probs = rng.dirichlet(np.ones(k), n)
    joint = count_joint(p, given, probs)
    rates = given_label_rates(joint / joint.sum(axis=1, keepdims=True), joint.sum(axis=1) / n)
    np.testing.assert_allclose(rates, [p[given == j].mean() for j in range(k)], atol=1e-12)


def test_given_label_rates_by_hand():
    # π = (0.5, 0.5); T = [[0.8, 0.2], [0.4, 0.6]]: given 0 holds 0.4 true-0 and 0.2 true-1 → 1/3 wrong
    rates = given_label_rates(np.array([[0.8, 0.2], [0.4, 0.6]]), np.array([0.5, 0.5]))
    np.testing.assert_allclose(rates, [0.2 / 0.6, 0.1 / 0.4])


def test_flows_frame_and_dispatch():
    classes = ["cat", "dog", "fox"]
    flows = top_flows(T_TRUE, classes, limit=5, min_p=0.15)
    assert flows == [{"true": "dog", "noisy": "fox", "p": pytest.approx(0.3)},
                     {"true": "cat", "noisy": "dog", "p": pytest.approx(0.2)}]
    frame = transition_frame(T_TRUE, classes)
    assert frame.columns.tolist() == ["true_label", "noisy_label", "p"] and len(frame) == 9
    back, names = transition_matrix(frame.sample(frac=1.0, random_state=0))
    assert names == classes or sorted(names) == classes
    np.testing.assert_allclose(pd.DataFrame(back, names, names).loc[classes, classes], T_TRUE)
    t, source = estimate_transition("anchors", p_mislabeled=np.zeros(3000), given=np.zeros(3000, int),
                                    probs=planted_probs(), quantile=1.0)
    np.testing.assert_allclose(t, T_TRUE, atol=1e-9)
    assert source["estimator"] == "anchors" and len(source["anchor_sample_ids"]) == 3
    with pytest.raises(ValueError, match="name='em': unknown transition estimator"):
        estimate_transition("em", p_mislabeled=np.zeros(3), given=np.zeros(3, int), probs=np.ones((3, 3)) / 3)


@pytest.fixture(scope="module")
def asym_digits(tmp_path_factory):
    if not (SHARED / "bench" / "make_noisy.py").exists():
        pytest.skip("../shared/bench/make_noisy.py is not beside the repository")
    out = tmp_path_factory.mktemp("asym")
    subprocess.run([sys.executable, str(SHARED / "bench" / "make_noisy.py"), str(out), "--source", "digits",
                    "--noise", "asym:0.3", "--upscale", "2"], check=True, stdout=subprocess.DEVNULL)
    return out


@pytest.mark.slow
def test_asym_noise_flows_found_end_to_end(asym_digits, tmp_path):
    truth = pd.read_csv(asym_digits / "truth.csv", dtype=str)
    flips = truth[truth["is_noisy"].astype(str).str.lower().isin(["1", "true"])]
    true_flow = flips.groupby("clean_label")["noisy_label"].agg(lambda s: s.mode()[0]).to_dict()
    result = scan(asym_digits / "images", out=tmp_path / "audit", image_size=16, epochs=12, batch_size=64,
                  augment="crop", workers=1, cache_dir=str(tmp_path / "cache"))
    frame = pd.read_parquet(tmp_path / "audit" / "transition.parquet")
    t, classes = transition_matrix(frame)
    np.testing.assert_allclose(t.sum(axis=1), 1.0)
    off = t.copy()
    np.fill_diagonal(off, 0.0)
    found = {classes[i]: classes[int(off[i].argmax())] for i in range(len(classes))}
    assert found == true_flow  # every planted flow c → perm[c] is its row's largest off-diagonal entry
    assert np.diag(t).min() > 0.45 and np.diag(t).max() < 0.95  # ~0.7 each, not the identity
    assert result.run["transition_source"]["estimator"] == "counts"
    assert {(f["true"], f["noisy"]) for f in result.summary["top_flows"]} <= set(true_flow.items())
    noise = result.noise
    np.testing.assert_allclose(noise["transition_rate"], noise["noise_rate"], atol=1e-9)
