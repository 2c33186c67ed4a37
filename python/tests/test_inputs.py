"""Arrays in and bad input: float32 stays float32, DLPack tensors are accepted, every bad
input is a Python exception with a one-line message (never a crash)."""

import numpy as np
import pytest

import mixburn


class DLPackOnly:
    """An object that offers its data only through DLPack (as a torch tensor does)."""

    def __init__(self, a):
        self._a = a

    def __dlpack__(self, **kw):
        return self._a.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


def test_dlpack_tensors_are_accepted(blobs):
    gm = mixburn.GaussianMixture(n_components=2, random_state=0).fit(DLPackOnly(blobs))
    np.testing.assert_array_equal(gm.score_samples(DLPackOnly(blobs)), gm.score_samples(blobs))


def test_torch_tensors_are_accepted(blobs):
    torch = pytest.importorskip("torch")
    t = torch.tensor(blobs, dtype=torch.float32, requires_grad=True)
    gm = mixburn.GaussianMixture(n_components=2, random_state=0).fit(t)
    assert gm.score_samples(t).dtype == np.float32


def test_float32_stays_float32_where_sklearn_keeps_it(blobs):
    from sklearn.mixture import GaussianMixture

    X = blobs.astype(np.float32)
    gm = mixburn.GaussianMixture(n_components=2, random_state=0).fit(X)
    ref = GaussianMixture(n_components=2, random_state=0).fit(X)
    for name in ["weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_"]:
        assert getattr(gm, name).dtype == getattr(ref, name).dtype, name
    for method in ["score_samples", "predict_proba"]:
        assert getattr(gm, method)(X).dtype == getattr(ref, method)(X).dtype, method
    gm64 = mixburn.GaussianMixture(n_components=2, random_state=0, dtype="float64")
    assert gm64.fit(blobs.astype(np.float32)).score_samples(blobs).dtype == np.float64


def test_non_contiguous_arrays_score_as_their_copies(blobs):
    gm = mixburn.GaussianMixture(n_components=2, random_state=0).fit(blobs)
    F = np.asfortranarray(blobs)
    np.testing.assert_array_equal(gm.score_samples(F), gm.score_samples(blobs))
    np.testing.assert_array_equal(gm.score_samples(blobs[::2]), gm.score_samples(blobs)[::2])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_rows_are_refused(blobs, bad):
    X = blobs.copy()
    X[5, 1] = bad
    with pytest.raises(ValueError):
        mixburn.GaussianMixture(n_components=2).fit(X)


def test_wrong_width_is_a_value_error(blobs):
    gm = mixburn.GaussianMixture(n_components=2, random_state=0).fit(blobs)
    with pytest.raises(ValueError, match="features"):
        gm.score_samples(blobs[:, :3])


def test_bad_settings_are_value_errors(blobs):
    for kw in [dict(covariance_type="banana"), dict(n_components=0), dict(tol=-1.0),
               dict(init_params="nope"), dict(backend="nope"), dict(max_memory="lots"),
               dict(dtype="int8")]:
        with pytest.raises(ValueError):
            mixburn.GaussianMixture(**kw).fit(blobs)
    with pytest.raises(ValueError):
        mixburn.GaussianMixture(n_components=2, means_init=np.zeros((3, 4))).fit(blobs)


def test_files_that_are_missing_or_hostile_raise(tmp_path):
    with pytest.raises(OSError):
        mixburn.GaussianMixture.load(tmp_path / "missing.safetensors")
    with pytest.raises(OSError):
        mixburn.GaussianMixture(n_components=2).fit(tmp_path / "missing.npy")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\xff" * 64)
    with pytest.raises(ValueError):
        mixburn.GaussianMixture.load(junk)
    with pytest.raises(ValueError):
        mixburn.MahalanobisDetector.load(junk)
    with pytest.raises(ValueError):
        mixburn.GMMDetector.load(junk)
    big = tmp_path / "big.safetensors"
    big.write_bytes((2**62).to_bytes(8, "little") + b"{}")
    with pytest.raises(ValueError):
        mixburn.GaussianMixture.load(big)


def test_a_detector_file_is_not_a_mixture(blobs, tmp_path):
    det = mixburn.GMMDetector(n_components=2, random_state=0).fit(blobs)
    det.save(tmp_path / "a.safetensors")
    with pytest.raises(ValueError):
        mixburn.BayesianGaussianMixture.load(tmp_path / "a.safetensors")


def test_mahalanobis_labels_are_checked(blobs):
    with pytest.raises(ValueError):
        mixburn.MahalanobisDetector().fit(blobs, np.full(len(blobs), 0.5))
    with pytest.raises(ValueError):
        mixburn.MahalanobisDetector().fit(blobs, np.zeros(len(blobs) - 1, dtype=int))


def test_the_gil_is_released_during_a_fit(blobs):
    # The fit runs in a thread; this thread counts while it runs. With the GIL
    # held through the native call this thread could not count at all (a few
    # ticks at most, from the Python-side checks). The fit is long enough
    # (tol = 0: every iteration runs) that the count does not depend on the
    # machine's speed: at 1 ms a tick, 20 ticks need 20 ms without the GIL.
    import threading
    import warnings

    X = np.tile(blobs, (400, 1))
    done = threading.Event()
    failure = []

    def fit():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mixburn.GaussianMixture(
                    n_components=3, random_state=0, max_iter=20, tol=0.0
                ).fit(X)
        except Exception as e:  # pragma: no cover - reported below
            failure.append(e)
        finally:
            done.set()

    t = threading.Thread(target=fit)
    t.start()
    ticks = 0
    while not done.is_set():
        ticks += 1
        done.wait(0.001)
    t.join()
    assert not failure, failure
    assert ticks >= 20, ticks
