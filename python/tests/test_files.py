"""Files: what Python saves the command line reads, and what the command line writes Python
loads, with the same numbers; pickling keeps a fitted estimator exactly."""

import json
import pathlib
import pickle
import subprocess

import numpy as np

import mixburn


def run(cli, *args):
    out = subprocess.run([cli, *map(str, args)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_a_python_model_scores_the_same_in_the_cli(blobs, tmp_path, cli):
    gm = mixburn.GaussianMixture(n_components=3, covariance_type="diag", random_state=0)
    gm.fit(blobs)
    gm.save(tmp_path / "m.safetensors")
    np.save(tmp_path / "x.npy", blobs)
    run(cli, "score", "--model", tmp_path / "m.safetensors", "--input", tmp_path / "x.npy",
        "--output", tmp_path / "ll.npy")
    np.testing.assert_allclose(np.load(tmp_path / "ll.npy"), gm.score_samples(blobs),
                               rtol=1e-10)


def test_a_cli_model_loads_in_python(blobs, tmp_path, cli):
    np.save(tmp_path / "x.npy", blobs)
    run(cli, "fit", "--input", tmp_path / "x.npy", "--components", 3, "--dtype", "f64",
        "--output", tmp_path / "m.safetensors")
    run(cli, "score", "--model", tmp_path / "m.safetensors", "--input", tmp_path / "x.npy",
        "--output", tmp_path / "ll.npy")
    gm = mixburn.GaussianMixture.load(tmp_path / "m.safetensors")
    assert gm.n_components == 3 and gm.means_.shape == (3, 4)
    np.testing.assert_allclose(gm.score_samples(blobs), np.load(tmp_path / "ll.npy"),
                               rtol=1e-10)


def test_a_bayesian_model_round_trips_through_its_file(blobs, tmp_path):
    bgm = mixburn.BayesianGaussianMixture(n_components=4, random_state=0).fit(blobs)
    bgm.save(tmp_path / "b.safetensors")
    back = mixburn.BayesianGaussianMixture.load(tmp_path / "b.safetensors")
    np.testing.assert_array_equal(back.score_samples(blobs), bgm.score_samples(blobs))
    np.testing.assert_array_equal(back.weight_concentration_[0], bgm.weight_concentration_[0])


def test_detectors_exchange_files_with_the_cli(blobs, tmp_path, cli):
    det = mixburn.GMMDetector(n_components=3, random_state=0).fit(blobs)
    det.save(tmp_path / "a.safetensors")
    np.save(tmp_path / "x.npy", blobs)
    run(cli, "anomaly", "score", "--detector", tmp_path / "a.safetensors", "--input",
        tmp_path / "x.npy", "--output", tmp_path / "s.npy", "--flags", tmp_path / "f.npy")
    np.testing.assert_allclose(np.load(tmp_path / "s.npy"), det.decision_scores_, rtol=1e-10)
    np.testing.assert_array_equal(np.load(tmp_path / "f.npy"), det.labels_)
    back = mixburn.GMMDetector.load(tmp_path / "a.safetensors")
    assert back.threshold_ == det.threshold_

    y = np.repeat(np.arange(3), 100)
    ood = mixburn.MahalanobisDetector().fit(blobs, y)
    ood.save(tmp_path / "o.safetensors")
    run(cli, "ood", "score", "--detector", tmp_path / "o.safetensors", "--features",
        tmp_path / "x.npy", "--output", tmp_path / "o.npy")
    np.testing.assert_allclose(np.load(tmp_path / "o.npy"), ood.score(blobs), rtol=1e-10)
    again = mixburn.MahalanobisDetector.load(tmp_path / "o.safetensors")
    np.testing.assert_array_equal(again.score(blobs), ood.score(blobs))


def test_pickling_keeps_every_fitted_estimator(blobs):
    y = np.repeat(np.arange(3), 100)
    for est, args in [
        (mixburn.GaussianMixture(n_components=3, random_state=0), ()),
        (mixburn.BayesianGaussianMixture(n_components=3, random_state=0), ()),
        (mixburn.GMMDetector(n_components=2, random_state=0), ()),
        (mixburn.MahalanobisDetector(), (y,)),
    ]:
        est.fit(blobs, *args)
        back = pickle.loads(pickle.dumps(est))
        f = "score" if isinstance(est, mixburn.MahalanobisDetector) else (
            "decision_function" if isinstance(est, mixburn.GMMDetector) else "score_samples")
        np.testing.assert_array_equal(getattr(back, f)(blobs), getattr(est, f)(blobs))


class Server:
    """A `mixburn serve` worker on a free loopback port (killed by `close`)."""

    def __init__(self, cli, token_file=None):
        shared = [] if token_file is None else ["--token-file", token_file]
        self.proc = subprocess.Popen([cli, "serve", "--bind", "127.0.0.1:0", *shared],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        first = json.loads(self.proc.stdout.readline())
        self.url = first["serving"]
        self.token_file = first["token_file"]

    def close(self):
        self.proc.kill()
        self.proc.wait()


def test_a_fit_over_two_workers_equals_the_local_fit(blobs, cli):
    import pytest

    if not mixburn._native.remote_workers():
        pytest.skip("this build of the module has no `remote` feature (.ci/run's build has)")
    first = Server(cli)  # draws a token, in a file only this user reads
    servers = [first, Server(cli, first.token_file)]
    try:
        kw = dict(n_components=3, tol=1e-10, random_state=0, means_init=blobs[::100][:3].copy())
        local = mixburn.GaussianMixture(**kw).fit(blobs)
        with pytest.raises(ValueError, match=servers[0].url):
            mixburn.GaussianMixture(workers=[servers[0].url], **kw).fit(blobs)
        token = pathlib.Path(first.token_file)
        remote = mixburn.GaussianMixture(workers=[s.url for s in servers], worker_token=token,
                                         **kw).fit(blobs)
        np.testing.assert_allclose(remote.means_, local.means_, rtol=1e-9)
        np.testing.assert_allclose(remote.covariances_, local.covariances_, rtol=1e-9)
        assert remote.n_iter_ == local.n_iter_
        bgm = mixburn.BayesianGaussianMixture(n_components=3, random_state=0,
                                              workers=[servers[0].url],
                                              worker_token=token.read_text().strip()).fit(blobs)
        assert bgm.converged_
    finally:
        for s in servers:
            s.close()


def test_an_unreachable_worker_is_a_value_error_naming_it(blobs):
    import pytest

    with pytest.raises(ValueError, match="127.0.0.1:9"):
        mixburn.GaussianMixture(workers=["ws://127.0.0.1:9"]).fit(blobs)
