"""GMMDetector against pyod's GMM (the same start gives the same scores, threshold and
labels) and MahalanobisDetector against the reference formula in NumPy."""

import numpy as np
import pytest
from scipy.linalg import pinvh

import mixburn


def test_gmm_detector_matches_pyod_from_the_same_start(blobs):
    pyod_gmm = pytest.importorskip("pyod.models.gmm")
    k, d = 3, blobs.shape[1]
    kw = dict(n_components=k, tol=1e-10, max_iter=50, contamination=0.05,
              weights_init=np.full(k, 1 / k), means_init=blobs[::100][:k].copy(),
              precisions_init=np.stack([np.eye(d)] * k))
    ours = mixburn.GMMDetector(**kw).fit(blobs)
    ref = pyod_gmm.GMM(**kw).fit(blobs)
    np.testing.assert_allclose(ours.decision_scores_, ref.decision_scores_, rtol=1e-8)
    np.testing.assert_allclose(ours.threshold_, ref.threshold_, rtol=1e-8)
    np.testing.assert_array_equal(ours.labels_, ref.labels_)
    Z = blobs[:50] + 3.0
    np.testing.assert_allclose(ours.decision_function(Z), ref.decision_function(Z), rtol=1e-8)
    np.testing.assert_array_equal(ours.predict(Z), ref.predict(Z))
    np.testing.assert_allclose(ours.predict_proba(Z), ref.predict_proba(Z), atol=1e-8)
    np.testing.assert_allclose(ours.predict_proba(Z, method="unify"),
                               ref.predict_proba(Z, method="unify"), atol=1e-8)
    np.testing.assert_allclose(ours.predict_confidence(Z), ref.predict_confidence(Z), atol=1e-8)
    np.testing.assert_allclose(ours.means_, ref.means_, rtol=1e-8)


def test_gmm_detector_flags_the_contamination_fraction(blobs):
    det = mixburn.GMMDetector(n_components=3, contamination=0.1, random_state=0).fit(blobs)
    assert abs(det.labels_.mean() - 0.1) < 0.02
    with pytest.raises(ValueError, match="contamination"):
        mixburn.GMMDetector(contamination=0.7).fit(blobs)


def test_gmm_detector_chooses_k_by_bic_among_candidates(blobs):
    from sklearn.mixture import GaussianMixture

    det = mixburn.GMMDetector(n_components=[1, 2, 3, 4], random_state=0).fit(blobs)
    bics = [GaussianMixture(k, random_state=0).fit(blobs).bic(blobs) for k in [1, 2, 3, 4]]
    assert det.n_components_ == 1 + int(np.argmin(bics)) == 3
    assert det.means_.shape == (3, 4)
    with pytest.raises(ValueError):
        mixburn.GMMDetector(n_components=[]).fit(blobs)


def test_gmm_detector_update_of_one_gaussian_equals_the_fit_on_all_rows(blobs):
    a, b = blobs[:200], blobs[200:]
    for cov in ["full", "diag"]:
        det = mixburn.GMMDetector(n_components=1, covariance_type=cov).fit(a).update(b)
        ref = mixburn.GMMDetector(n_components=1, covariance_type=cov).fit(blobs)
        np.testing.assert_allclose(det.decision_function(blobs), ref.decision_function(blobs),
                                   rtol=1e-9)
        np.testing.assert_allclose(det.means_, ref.means_, rtol=1e-9)
        # The threshold: contamination on the new rows' scores.
        assert det.threshold_ == np.quantile(det.decision_scores_, 0.9)
    with pytest.raises(ValueError, match="online EM"):
        mixburn.GMMDetector(n_components=2, random_state=0).fit(a).update(b)


def features_and_labels(rng, c=4, d=16, n=400):
    means = rng.normal(0, 3, size=(c, d))
    y = rng.integers(0, c, size=n)
    X = means[y] + rng.normal(size=(n, d)) @ rng.normal(scale=0.4, size=(d, d))
    return X, y


def reference_scores(X, y, Z):
    """Lee et al.'s reference: class means, tied covariance, pinvh, min_c ½ d_c²."""
    c = y.max() + 1
    mu = np.stack([X[y == j].mean(0) for j in range(c)])
    centred = X - mu[y]
    prec = pinvh(centred.T @ centred / len(X))
    diff = Z[:, None, :] - mu[None]
    d2 = np.einsum("nci,ij,ncj->nc", diff, prec, diff)
    return 0.5 * d2.min(1), d2


def test_mahalanobis_scores_match_the_reference_formula():
    rng = np.random.default_rng(3)
    X, y = features_and_labels(rng)
    Z = rng.normal(0, 4, size=(50, X.shape[1]))
    det = mixburn.MahalanobisDetector().fit(X, y)
    ref, d2 = reference_scores(X, y, Z)
    np.testing.assert_allclose(det.score(Z), ref, rtol=1e-8)
    np.testing.assert_allclose(det.sq_distances(Z), d2, rtol=1e-8)
    np.testing.assert_array_equal(det.predict_class(Z), d2.argmin(1))
    np.testing.assert_allclose(det.confidence(Z), -ref, rtol=1e-8)


def test_relative_and_plus_plus_variants_score():
    rng = np.random.default_rng(4)
    X, y = features_and_labels(rng)
    for method in ["relative", "mahalanobis++"]:
        s = mixburn.MahalanobisDetector(method=method).fit(X, y).score(X[:20])
        assert s.shape == (20,) and np.all(np.isfinite(s))


def test_an_update_equals_a_fit_on_all_rows():
    rng = np.random.default_rng(5)
    X, y = features_and_labels(rng)
    full = mixburn.MahalanobisDetector().fit(X, y)
    part = mixburn.MahalanobisDetector(updatable=True).fit(X[:200], y[:200])
    part.update(X[200:], y[200:])
    np.testing.assert_allclose(part.score(X[:30]), full.score(X[:30]), rtol=1e-7)
