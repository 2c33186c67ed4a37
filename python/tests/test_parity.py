"""Parity with scikit-learn: the same initial parameters give the same fit (f64 to 1e-8
relative, f32 to 1e-4); fitted attributes have scikit-learn's names and shapes."""

import numpy as np
import pytest
from sklearn import mixture as skm

import mixburn


def initial(X, k, covariance_type):
    """Deterministic initial parameters both libraries start from."""
    means = X[:: len(X) // k][:k].copy()
    weights = np.full(k, 1.0 / k)
    d = X.shape[1]
    prec = {
        "full": np.stack([np.eye(d)] * k),
        "tied": np.eye(d),
        "diag": np.ones((k, d)),
        "spherical": np.ones(k),
    }[covariance_type]
    return dict(weights_init=weights, means_init=means, precisions_init=prec)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_em_from_the_same_start_matches_sklearn_f64(blobs, covariance_type):
    kw = dict(n_components=3, covariance_type=covariance_type, tol=1e-10, max_iter=50,
              **initial(blobs, 3, covariance_type))
    ours = mixburn.GaussianMixture(**kw).fit(blobs)
    ref = skm.GaussianMixture(**kw).fit(blobs)
    for name in ["weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_"]:
        assert getattr(ours, name).shape == getattr(ref, name).shape, name
        np.testing.assert_allclose(getattr(ours, name), getattr(ref, name), rtol=1e-8,
                                   atol=1e-10, err_msg=name)
    assert ours.n_iter_ == ref.n_iter_
    assert ours.converged_ == ref.converged_
    np.testing.assert_allclose(ours.lower_bound_, ref.lower_bound_, rtol=1e-8)
    np.testing.assert_allclose(ours.score_samples(blobs), ref.score_samples(blobs), rtol=1e-8)
    np.testing.assert_allclose(ours.predict_proba(blobs), ref.predict_proba(blobs), atol=1e-8)
    np.testing.assert_array_equal(ours.predict(blobs), ref.predict(blobs))
    np.testing.assert_allclose(ours.bic(blobs), ref.bic(blobs), rtol=1e-8)
    np.testing.assert_allclose(ours.aic(blobs), ref.aic(blobs), rtol=1e-8)
    assert ours._n_parameters() == ref._n_parameters()


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_em_in_float32_keeps_float32_and_matches_sklearn(blobs, covariance_type):
    X = blobs.astype(np.float32)
    kw = dict(n_components=3, covariance_type=covariance_type, tol=1e-6, max_iter=30,
              **initial(blobs, 3, covariance_type))
    ours = mixburn.GaussianMixture(**kw).fit(X)
    ref = skm.GaussianMixture(**kw).fit(blobs)
    ll = ours.score_samples(X)
    assert ll.dtype == np.float32
    np.testing.assert_allclose(ll, ref.score_samples(blobs), rtol=1e-4)
    np.testing.assert_allclose(ours.means_, ref.means_, rtol=1e-4, atol=1e-4)


def matched(ours, ref):
    """Component order of `ours` matched to `ref`'s by the closest means."""
    order = [int(np.argmin(((ours.means_ - m) ** 2).sum(1))) for m in ref.means_]
    assert sorted(order) == list(range(len(order)))
    return order


def test_variational_fit_matches_sklearn_at_convergence(blobs):
    kw = dict(n_components=3, weight_concentration_prior_type="dirichlet_distribution",
              tol=1e-12, max_iter=500, random_state=0)
    ours = mixburn.BayesianGaussianMixture(**kw).fit(blobs)
    ref = skm.BayesianGaussianMixture(**kw).fit(blobs)
    o = matched(ours, ref)
    np.testing.assert_allclose(ours.means_[o], ref.means_, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours.weights_[o], ref.weights_, rtol=1e-6)
    np.testing.assert_allclose(ours.covariances_[o], ref.covariances_, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours.degrees_of_freedom_[o], ref.degrees_of_freedom_, rtol=1e-6)
    np.testing.assert_allclose(ours.mean_precision_[o], ref.mean_precision_, rtol=1e-6)
    np.testing.assert_allclose(ours.weight_concentration_[o], ref.weight_concentration_,
                               rtol=1e-6)
    np.testing.assert_allclose(ours.score_samples(blobs), ref.score_samples(blobs), rtol=1e-6)
    assert ours.weight_concentration_prior_ == ref.weight_concentration_prior_
    np.testing.assert_allclose(ours.mean_prior_, ref.mean_prior_, rtol=1e-12)
    np.testing.assert_allclose(ours.covariance_prior_, ref.covariance_prior_, rtol=1e-12)


def test_dirichlet_process_fit_finds_sklearns_components(blobs):
    """The stick-breaking prior is not symmetric in the components, so the weights depend on
    the order k-means happened to give them: compare what does not (the Rust tests compare
    every array to 1e-8 from fixed responsibilities)."""
    kw = dict(n_components=3, tol=1e-12, max_iter=500, random_state=0)
    ours = mixburn.BayesianGaussianMixture(**kw).fit(blobs)
    ref = skm.BayesianGaussianMixture(**kw).fit(blobs)
    o = matched(ours, ref)
    np.testing.assert_allclose(ours.means_[o], ref.means_, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ours.covariances_[o], ref.covariances_, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(ours.weights_[o], ref.weights_, rtol=2e-2)
    assert isinstance(ours.weight_concentration_, tuple)
    assert [a.shape for a in ours.weight_concentration_] == [(3,), (3,)]


def test_sample_weights_equal_repeated_rows(blobs):
    kw = dict(n_components=3, tol=1e-10, **initial(blobs, 3, "full"))
    w = np.random.default_rng(1).integers(1, 4, size=len(blobs))
    weighted = mixburn.GaussianMixture(**kw).fit(blobs, sample_weight=w)
    repeated = mixburn.GaussianMixture(**kw).fit(np.repeat(blobs, w, axis=0))
    np.testing.assert_allclose(weighted.means_, repeated.means_, rtol=1e-9)
    np.testing.assert_allclose(weighted.covariances_, repeated.covariances_, rtol=1e-9)


def test_fit_from_a_npy_path_streams_and_equals_the_array_fit(blobs, tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, blobs)
    kw = dict(n_components=3, tol=1e-10, **initial(blobs, 3, "full"))
    a = mixburn.GaussianMixture(**kw).fit(blobs)
    b = mixburn.GaussianMixture(max_memory="64KiB", **kw).fit(path)
    assert b.n_features_in_ == 4
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-9)


def test_warm_start_continues_from_the_previous_fit(blobs):
    from sklearn.exceptions import ConvergenceWarning

    gm = mixburn.GaussianMixture(n_components=3, max_iter=2, tol=0.0, warm_start=True,
                                 random_state=0)
    with pytest.warns(ConvergenceWarning):
        gm.fit(blobs)
    first = gm.lower_bounds_
    with pytest.warns(ConvergenceWarning):
        gm.fit(blobs)
    # The second fit starts where the first stopped: its first bound is not below the last.
    assert gm.lower_bounds_[0] >= first[-1] - 1e-12
    cold = mixburn.GaussianMixture(n_components=3, max_iter=2, tol=0.0, random_state=0)
    with pytest.warns(ConvergenceWarning):
        cold.fit(blobs)
    np.testing.assert_allclose(cold.lower_bounds_, first)


def test_sample_has_sklearn_shapes_and_is_seeded(blobs):
    gm = mixburn.GaussianMixture(n_components=3, random_state=0).fit(blobs)
    X, y = gm.sample(500)
    assert X.shape == (500, 4) and y.shape == (500,)
    assert set(np.unique(y)) <= {0, 1, 2}
    X2, _ = gm.sample(500)
    np.testing.assert_array_equal(X, X2)
    with pytest.raises(ValueError, match="n_samples"):
        gm.sample(0)


def test_partial_fit_steps_online_em_from_the_first_chunk(blobs):
    """Issue 30: the first ``partial_fit`` fits its chunk; each later one is a stepwise-EM step.
    With one component, ``step_exponent=1`` and ``step_offset=0``, equal chunks give the
    exact Gaussian of every row seen (NumPy's mean and biased covariance, 1e-9)."""
    chunks = np.array_split(blobs, 4)
    gm = mixburn.GaussianMixture(n_components=1, step_exponent=1.0, step_offset=0.0)
    gm.partial_fit(chunks[0])
    assert gm.n_steps_ == 0
    for c in chunks:
        gm.partial_fit(c)
    assert gm.n_steps_ == 4
    np.testing.assert_allclose(gm.means_[0], blobs.mean(axis=0), rtol=1e-9)
    cov = np.cov(blobs, rowvar=False, bias=True) + 1e-6 * np.eye(4)
    np.testing.assert_allclose(gm.covariances_[0], cov, rtol=1e-9)
    three = mixburn.GaussianMixture(n_components=3, random_state=0)
    for c in np.array_split(blobs, 6):
        three.partial_fit(c)
    assert three.n_steps_ == 5
    batch = mixburn.GaussianMixture(n_components=3, random_state=0).fit(blobs)
    assert three.score(blobs) > batch.score(blobs) - 0.1
    with pytest.raises(ValueError, match="step_exponent"):
        mixburn.GaussianMixture(n_components=3, step_exponent=0.3).fit(blobs).partial_fit(blobs)
