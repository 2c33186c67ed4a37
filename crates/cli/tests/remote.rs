//! Remote workers (`mixburn serve`, `--workers`): 2–3 servers started on loopback ports inside
//! the test; a fit over their shards equals the single-process fit (EM, the variational
//! mixture, `select`, the OOD detector; f64 to 1e-9, f32 to 1e-5 relative); a wrong token is
//! refused naming the worker; a worker killed during a fit ends it with an error naming the
//! worker, in bounded time, never a hang; over Iroh the same fit is encrypted and the client
//! verifies the server's key. The address policy of `serve` is checked in every build.

#[cfg(feature = "remote")]
use std::path::Path;

use serde_json::Value;

fn run(args: &[&str]) -> Result<Value, String> {
    let mut all = vec!["mixburn"];
    all.extend_from_slice(args);
    mixburn::run_args(all)
}

/// Issue 28: beyond loopback the server speaks only the encrypted transport (Iroh, the
/// default there) and always asks for a token; the Iroh key file is only for Iroh.
#[test]
fn serve_refuses_clear_text_or_no_token_beyond_loopback() {
    let e = run(&["serve", "--bind", "0.0.0.0:0", "--transport", "websocket"]).unwrap_err();
    assert!(
        e.contains("not a loopback address") && e.contains("clear text") && e.contains("iroh"),
        "{e}"
    );
    let e = run(&["serve", "--bind", "0.0.0.0:0", "--no-token"]).unwrap_err();
    assert!(e.contains("needs a token"), "{e}");
    let e = run(&["serve", "--identity-file", "/nonexistent/key"]).unwrap_err();
    assert!(
        e.contains("identity_file") && e.contains("--transport iroh"),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let e = run(&["serve", "--token-file", empty.to_str().unwrap()]).unwrap_err();
    assert!(e.contains("non-empty token"), "{e}");
}

/// Issue 29: `--retry-shards` is honoured by `fit` only; the other commands that take
/// `--workers` refuse it by name before any work (it used to be accepted and ignored).
#[test]
fn retry_shards_is_refused_by_the_commands_that_cannot_honour_it() {
    let faithful = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/faithful.csv");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.safetensors");
    let out = out.to_str().unwrap();
    let workers = ["--workers", "ws://127.0.0.1:9", "--retry-shards"];
    let labels = dir.path().join("y.npy");
    mixburn_data::write_labels_npy(&labels, &vec![0; 272]).unwrap();
    let labels = labels.to_str().unwrap();
    for (command, args) in [
        ("fit-bayesian", vec!["fit-bayesian", "--input", faithful]),
        (
            "select",
            vec!["select", "--input", faithful, "--components", "1..2"],
        ),
        (
            "anomaly fit",
            vec!["anomaly", "fit", "--input", faithful, "--components", "2"],
        ),
        (
            "ood fit",
            vec!["ood", "fit", "--features", faithful, "--labels", labels],
        ),
    ] {
        let mut a = args;
        a.extend(workers);
        a.extend(["--output", out]);
        let e = run(&a).unwrap_err();
        assert!(
            e.contains("retry_shards") && e.contains(command),
            "{command}: {e}"
        );
        assert!(!std::path::Path::new(out).exists());
    }
}

#[cfg(feature = "remote")]
mod remote_support {
    use std::io::{BufRead, BufReader};
    use std::path::Path;
    use std::process::{Child, Command, Stdio};

    use serde_json::Value;

    /// A `mixburn serve` child process on a free loopback port, killed when dropped (and the
    /// token file it generated removed).
    pub struct Server {
        pub child: Child,
        pub url: String,
        /// The token file clients present (`--token-file`); `None` under `--no-token`.
        pub token_file: Option<String>,
        /// Whether the server wrote `token_file` itself.
        generated: bool,
        /// Where the server's stderr goes.
        pub stderr: tempfile::NamedTempFile,
    }

    impl Server {
        /// A server asking for `token_file`'s token, or for a token of its own when `None`.
        pub fn start(token_file: Option<&Path>) -> Self {
            match token_file {
                Some(t) => Self::start_with(&["--token-file", t.to_str().unwrap()], &[]),
                None => Self::start_with(&[], &[]),
            }
        }

        /// A server started with `serve` and `args` (`--bind 127.0.0.1:0` unless they bind),
        /// and `env` set.
        pub fn start_with(args: &[&str], env: &[(&str, &Path)]) -> Self {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_mixburn"));
            cmd.arg("serve");
            if !args.contains(&"--bind") {
                cmd.args(["--bind", "127.0.0.1:0"]);
            }
            cmd.args(args);
            for (k, v) in env {
                cmd.env(k, v);
            }
            let stderr = tempfile::NamedTempFile::new().unwrap();
            let mut child = cmd
                .stdout(Stdio::piped())
                .stderr(stderr.reopen().unwrap())
                .spawn()
                .expect("start mixburn serve");
            let mut line = String::new();
            BufReader::new(child.stdout.take().expect("stdout"))
                .read_line(&mut line)
                .expect("the server's first line");
            let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
                let said = std::fs::read_to_string(stderr.path()).unwrap_or_default();
                panic!("a JSON line, not {line:?} ({e}); the server said: {said}")
            });
            let url = v["serving"].as_str().expect("serving").to_string();
            let token_file = v["token_file"].as_str().map(String::from);
            Self {
                child,
                url,
                token_file,
                generated: !args.contains(&"--token-file"),
                stderr,
            }
        }

        /// `n` servers sharing the first one's generated token, their addresses joined by
        /// commas, and that token's file.
        pub fn group(n: usize) -> (Vec<Self>, String, String) {
            let first = Self::start(None);
            let token = first.token_file.clone().expect("a generated token file");
            let mut servers = vec![first];
            servers.extend((1..n).map(|_| Self::start(Some(Path::new(&token)))));
            let urls = servers
                .iter()
                .map(|s| s.url.clone())
                .collect::<Vec<_>>()
                .join(",");
            (servers, urls, token)
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            if let (true, Some(t)) = (self.generated, &self.token_file) {
                let _ = std::fs::remove_file(t);
            }
        }
    }

    /// `n × d` rows from 3 clusters (deterministic), written as .npy.
    pub fn data(dir: &Path, n: usize, d: usize) -> String {
        let values: Vec<f64> = (0..n * d)
            .map(|i| {
                let (row, j) = (i / d, i % d);
                let c = (row % 3) as f64;
                // splitmix64 of the index: a uniform value in [-1, 1).
                let mut z = (i as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                let u = ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 52) as f64 - 1.0;
                5.0 * c + (j as f64) * 0.1 + u + 40.0
            })
            .collect();
        let path = dir.join("x.npy");
        let m = mixburn_data::Matrix::new(n, d, values, mixburn_data::ElemType::F64).unwrap();
        mixburn_data::write_matrix_npy(&path, &m).unwrap();
        path.display().to_string()
    }

    pub fn rel(a: f64, b: f64) -> f64 {
        (a - b).abs() / b.abs().max(1e-300)
    }
}

#[cfg(feature = "remote")]
mod remote {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use super::remote_support::{data, rel, Server};
    use super::*;

    #[test]
    fn fits_over_worker_shards_equal_the_single_process_fits() {
        let (_servers, workers, token) = Server::group(3);
        let remote_args = [
            "--workers",
            workers.as_str(),
            "--token-file",
            token.as_str(),
        ];
        let dir = tempfile::tempdir().unwrap();
        let x = data(dir.path(), 1500, 4);
        let out = dir.path().join("m.safetensors").display().to_string();
        for (cmd, dtype, tol) in [
            ("fit", "f64", 1e-9),
            ("fit", "f32", 1e-5),
            ("fit-bayesian", "f64", 1e-9),
        ] {
            let base = [
                cmd,
                "--input",
                &x,
                "--components",
                "3",
                "--dtype",
                dtype,
                "--n-init",
                "2",
                "--max-iter",
                "20",
                "--chunk-size",
                "200",
                "--output",
                &out,
            ];
            let local = run(&base).unwrap();
            let mut with_workers = base.to_vec();
            with_workers.extend(remote_args);
            let remote = run(&with_workers).unwrap();
            assert_eq!(
                remote["workers"].as_array().map(Vec::len),
                Some(3),
                "{remote}"
            );
            let lb = |v: &Value| v["lower_bound"].as_f64().unwrap();
            assert!(
                rel(lb(&remote), lb(&local)) < tol,
                "{cmd} {dtype}: {} over workers vs {} local",
                lb(&remote),
                lb(&local)
            );
        }
        // select: the same candidates' BIC.
        let sel = |extra: &[&str]| {
            let mut a = vec![
                "select",
                "--input",
                &x,
                "--components",
                "1..4",
                "--dtype",
                "f64",
                "--chunk-size",
                "200",
            ];
            a.extend_from_slice(extra);
            run(&a).unwrap()
        };
        let (local, remote) = (sel(&[]), sel(&remote_args));
        assert_eq!(local["best_n_components"], remote["best_n_components"]);
        for (a, b) in local["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .zip(remote["candidates"].as_array().unwrap())
        {
            let (x, y) = (a["bic"].as_f64().unwrap(), b["bic"].as_f64().unwrap());
            assert!(
                rel(y, x) < 1e-9,
                "BIC {y} over workers vs {x} local ({a} / {b})"
            );
        }
        // The anomaly detector: the mixture fitted over the workers, the same threshold.
        let anomaly = |extra: &[&str]| {
            let mut a = vec![
                "anomaly",
                "fit",
                "--input",
                &x,
                "--components",
                "3",
                "--dtype",
                "f64",
                "--chunk-size",
                "200",
                "--output",
                &out,
            ];
            a.extend_from_slice(extra);
            run(&a).unwrap()
        };
        let (local, remote) = (anomaly(&[]), anomaly(&remote_args));
        assert_eq!(
            remote["workers"].as_array().map(Vec::len),
            Some(3),
            "{remote}"
        );
        let t = |v: &Value| v["threshold"].as_f64().unwrap();
        assert!(rel(t(&remote), t(&local)) < 1e-9, "{remote} vs {local}");
        // The OOD detector: the same scores.
        let labels = dir.path().join("y.npy");
        mixburn_data::write_labels_npy(&labels, &(0..1500).map(|i| i % 3).collect::<Vec<i64>>())
            .unwrap();
        let labels = labels.display().to_string();
        let scores = |extra: &[&str], name: &str| {
            let det = dir
                .path()
                .join(format!("{name}.safetensors"))
                .display()
                .to_string();
            let mut a = vec![
                "ood",
                "fit",
                "--features",
                &x,
                "--labels",
                &labels,
                "--dtype",
                "f64",
                "--output",
                &det,
            ];
            a.extend_from_slice(extra);
            run(&a).unwrap();
            let s = dir.path().join(format!("{name}.npy"));
            run(&[
                "ood",
                "score",
                "--detector",
                &det,
                "--features",
                &x,
                "--output",
                s.to_str().unwrap(),
            ])
            .unwrap();
            mixburn_data::read_vector(&s).unwrap()
        };
        let a = scores(&[], "local");
        let b = scores(&remote_args, "remote");
        let err = a
            .iter()
            .zip(&b)
            .map(|(x, y)| rel(*y, *x))
            .fold(0.0, f64::max);
        assert!(err < 1e-9, "OOD scores differ by {err}");
    }

    #[test]
    fn a_wrong_token_is_refused_naming_the_worker() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good");
        let bad = dir.path().join("bad");
        std::fs::write(&good, "s3cret\n").unwrap();
        std::fs::write(&bad, "guess\n").unwrap();
        let server = Server::start(Some(&good));
        let x = data(dir.path(), 300, 2);
        let out = dir.path().join("m.safetensors").display().to_string();
        let fit = |token: &Path| {
            run(&[
                "fit",
                "--input",
                &x,
                "--components",
                "2",
                "--workers",
                &server.url,
                "--token-file",
                token.to_str().unwrap(),
                "--output",
                &out,
            ])
        };
        let started = Instant::now();
        let e = fit(&bad).unwrap_err();
        assert!(e.contains(&server.url), "{e}");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "took {:?}",
            started.elapsed()
        );
        assert!(!Path::new(&out).exists());
        let v = fit(&good).unwrap();
        assert_eq!(v["workers"].as_array().map(Vec::len), Some(1));
        // Shares of the rows by --worker-weights.
        let second = Server::start(Some(&good));
        let both = format!("{},{}", server.url, second.url);
        let v = run(&[
            "fit",
            "--input",
            &x,
            "--components",
            "2",
            "--workers",
            &both,
            "--worker-weights",
            "3,1",
            "--token-file",
            good.to_str().unwrap(),
            "--output",
            &out,
        ])
        .unwrap();
        let rows: Vec<u64> = v["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["rows"].as_u64().unwrap())
            .collect();
        assert_eq!(rows, vec![225, 75], "{v}");
    }

    /// Runs a long fit over `keep` and `lost`, does `to_lost` to `lost` after 4 s, and returns
    /// the fit's exit status and stderr once it ends (at most 90 s later).
    fn fit_losing_a_worker(
        keep: &Server,
        lost: &mut Server,
        timeout: &str,
        to_lost: impl FnOnce(&mut Server),
    ) -> (std::process::ExitStatus, String, bool) {
        let dir = tempfile::tempdir().unwrap();
        let x = data(dir.path(), 20_000, 8);
        let out = dir.path().join("m.safetensors");
        let workers = format!("{},{}", keep.url, lost.url);
        let token = keep.token_file.clone().expect("a token file");
        let mut fit = Command::new(env!("CARGO_BIN_EXE_mixburn"))
            .args([
                "fit",
                "--input",
                &x,
                "--components",
                "4",
                "--max-iter",
                "100000",
                "--tol",
                "0",
                "--worker-timeout",
                timeout,
                "--workers",
                &workers,
                "--token-file",
                &token,
                "--output",
            ])
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_secs(4));
        to_lost(lost);
        let started = Instant::now();
        let status = loop {
            if let Some(s) = fit.try_wait().unwrap() {
                break s;
            }
            if started.elapsed() > Duration::from_secs(90) {
                let _ = fit.kill();
                panic!("the fit did not end within 90 s of losing its worker");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut fit.stderr.take().unwrap(), &mut stderr).unwrap();
        (status, stderr, out.exists())
    }

    #[test]
    fn a_worker_that_stops_answering_ends_the_fit_after_the_timeout_naming_it() {
        let keep = Server::start(None);
        let mut lost = Server::start(keep.token_file.as_deref().map(Path::new));
        let (status, stderr, written) = fit_losing_a_worker(&keep, &mut lost, "3", |s| {
            let stopped = Command::new("kill")
                .args(["-STOP", &s.child.id().to_string()])
                .status()
                .unwrap();
            assert!(stopped.success());
        });
        assert!(!status.success());
        assert!(
            stderr.contains(&format!("worker {} stopped answering", lost.url)),
            "{stderr}"
        );
        assert!(!written);
    }

    #[test]
    fn a_worker_killed_during_a_fit_ends_it_with_an_error_naming_it() {
        let keep = Server::start(None);
        let mut lost = Server::start(keep.token_file.as_deref().map(Path::new));
        let url = lost.url.clone();
        let (status, stderr, written) = fit_losing_a_worker(&keep, &mut lost, "20", |s| {
            let _ = s.child.kill();
            let _ = s.child.wait();
        });
        assert!(!status.success());
        assert!(stderr.contains(&url), "{stderr}");
        assert!(stderr.contains("iteration"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!written);
    }

    /// `fit` of 2 components of `x` over the worker at `url`, written to `out`, with `extra`.
    fn fit_two_over(url: &str, x: &str, out: &str, extra: &[&str]) -> Result<Value, String> {
        let mut a = vec![
            "fit",
            "--input",
            x,
            "--components",
            "2",
            "--workers",
            url,
            "--output",
            out,
        ];
        a.extend_from_slice(extra);
        run(&a)
    }

    /// Issue 28: a server started without `--token-file` draws its own token and writes it to a
    /// new file only its owner can read, in `$XDG_RUNTIME_DIR/mixburn/` (mode 0700), named in
    /// its first line; a client without that token is refused naming the worker and writes
    /// nothing, one with it is served; another user cannot read the file (checked where the
    /// test runs as root, as `nobody`); two servers draw different tokens.
    #[test]
    fn a_server_without_a_token_file_draws_one_only_its_owner_can_read_and_asks_for_it() {
        use std::os::unix::fs::PermissionsExt;
        let runtime = tempfile::tempdir().unwrap();
        let env = [("XDG_RUNTIME_DIR", runtime.path())];
        let server = Server::start_with(&[], &env);
        let token_file = server
            .token_file
            .clone()
            .expect("token_file in the first line");
        let port = server.url.rsplit(':').next().unwrap();
        assert_eq!(
            Path::new(&token_file),
            runtime.path().join(format!("mixburn/serve-{port}.token"))
        );
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(Path::new(&token_file)), 0o600);
        assert_eq!(mode(&runtime.path().join("mixburn")), 0o700);
        let token = std::fs::read_to_string(&token_file).unwrap();
        let token = token.trim_end();
        assert!(
            token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()),
            "{token}"
        );
        let other = Server::start_with(&[], &env);
        let other_token = std::fs::read_to_string(other.token_file.as_ref().unwrap()).unwrap();
        assert_ne!(other_token.trim_end(), token);

        let dir = tempfile::tempdir().unwrap();
        let x = data(dir.path(), 300, 2);
        let out = dir.path().join("m.safetensors");
        let fit = |extra: &[&str]| fit_two_over(&server.url, &x, out.to_str().unwrap(), extra);
        let e = fit(&[]).unwrap_err();
        assert!(e.contains(&server.url) && !e.contains('\n'), "{e}");
        assert!(!out.exists());
        let v = fit(&["--token-file", &token_file]).unwrap();
        assert_eq!(v["workers"].as_array().map(Vec::len), Some(1), "{v}");

        // The owner of `/proc/self` is this process's effective user.
        let euid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap());
        if euid == 0 {
            use std::os::unix::process::CommandExt;
            let read = Command::new("cat")
                .arg(&token_file)
                .uid(65534)
                .gid(65534)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            assert!(!read.success(), "user nobody read {token_file}");
        }
        drop(server);
        assert!(!Path::new(&token_file).exists());
    }

    /// `--no-token` serves any local client, with a warning on stderr, and conflicts with
    /// `--token-file`.
    #[test]
    fn no_token_serves_loopback_clients_without_a_token_and_warns() {
        let server = Server::start_with(&["--no-token"], &[]);
        assert_eq!(server.token_file, None);
        let dir = tempfile::tempdir().unwrap();
        let x = data(dir.path(), 300, 2);
        let out = dir.path().join("m.safetensors").display().to_string();
        let v = fit_two_over(&server.url, &x, &out, &[]).unwrap();
        assert_eq!(v["workers"].as_array().map(Vec::len), Some(1), "{v}");
        let warned = std::fs::read_to_string(server.stderr.path()).unwrap();
        assert!(warned.contains("without a token"), "{warned}");
        let e = run(&["serve", "--no-token", "--token-file", &x]).unwrap_err();
        assert!(
            e.contains("--no-token") && e.contains("--token-file"),
            "{e}"
        );
    }

    /// Issue 28: over Iroh (QUIC, TLS 1.3) a fit equals the one over WebSocket; the client
    /// verifies the server (an address naming another key fails the handshake, naming the
    /// worker); a clear-text client gets no session from the encrypted server; a server on
    /// another address than loopback serves Iroh by default; `--identity-file` is created only
    /// its owner can read and keeps the server's address across restarts, and a key others may
    /// read is refused.
    #[test]
    fn iroh_serves_the_same_fit_encrypted_and_the_client_verifies_the_server() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("server.key");
        let key_arg = key.to_str().unwrap();
        let server = Server::start_with(&["--transport", "iroh", "--identity-file", key_arg], &[]);
        assert!(server.url.starts_with("iroh://"), "{}", server.url);
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let token = server.token_file.clone().unwrap();
        let plain = Server::start(Some(Path::new(&token)));

        let x = data(dir.path(), 600, 3);
        let out = dir.path().join("m.safetensors");
        let out = out.to_str().unwrap();
        let fit =
            |url: &str| fit_two_over(url, &x, out, &["--token-file", &token, "--dtype", "f64"]);
        let lb = |v: &Value| v["lower_bound"].as_f64().unwrap();
        let over_iroh = fit(&server.url).unwrap();
        let over_ws = fit(&plain.url).unwrap();
        assert!(
            rel(lb(&over_iroh), lb(&over_ws)) < 1e-12,
            "{over_iroh} vs {over_ws}"
        );

        // Another key at the same address: the handshake fails, naming the worker.
        let at = server.url.rsplit('@').next().unwrap();
        let impostor = format!("iroh://{}@{at}", "11".repeat(32));
        std::fs::remove_file(out).unwrap();
        let e = fit(&impostor).unwrap_err();
        assert!(e.contains(&impostor) && e.contains("handshake"), "{e}");
        // A clear-text client at the encrypted server's port gets nothing.
        let ws = format!("ws://{at}");
        let e = fit(&ws).unwrap_err();
        assert!(e.contains(&ws), "{e}");
        assert!(!Path::new(out).exists());
        let e = fit("iroh://not-a-key@127.0.0.1:9").unwrap_err();
        assert!(e.contains("server key"), "{e}");

        // Restarted with its key file, the server keeps its id.
        let id = |url: &str| {
            url["iroh://".len()..]
                .split('@')
                .next()
                .unwrap()
                .to_string()
        };
        let before = id(&server.url);
        drop(server);
        let again = Server::start_with(&["--transport", "iroh", "--identity-file", key_arg], &[]);
        assert_eq!(id(&again.url), before);
        drop(again);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = run(&["serve", "--transport", "iroh", "--identity-file", key_arg]).unwrap_err();
        assert!(e.contains("chmod 600"), "{e}");

        // Beyond loopback, Iroh without being asked.
        let wide = Server::start_with(&["--bind", "0.0.0.0:0"], &[]);
        assert!(wide.url.starts_with("iroh://"), "{}", wide.url);
    }

    /// Issue 28: hostile clients — random bytes on the socket, a WebSocket session opened and
    /// sent a frame that is not a message, a frame cut short, a frame claiming 2⁶² bytes, stray
    /// UDP datagrams at an Iroh server — end their own connection, never the server: each
    /// server then serves the next client's fit, and its process is still running.
    #[test]
    fn hostile_clients_leave_the_server_serving_the_next_one() {
        use std::io::{Read, Write};
        use std::net::{TcpStream, UdpSocket};
        let (mut servers, _, token) = Server::group(1);
        let mut server = servers.remove(0);
        let addr = server.url.trim_start_matches("ws://").to_string();
        let upgrade = |frames: &[&[u8]]| {
            let (mut s, reply) = ws_upgrade(&addr, 5);
            for f in frames {
                let _ = s.write_all(f);
            }
            let _ = s.shutdown(std::net::Shutdown::Write);
            let _ = s.read(&mut [0u8; 512]);
            reply
        };
        // A masked binary frame of `payload` (client frames are masked; mask 0 keeps bytes).
        let frame = |payload: &[u8]| {
            let mut f = vec![0x82, 0x80 | payload.len() as u8, 0, 0, 0, 0];
            f.extend_from_slice(payload);
            f
        };
        let mut cut = vec![0x82, 0x80 | 127];
        cut.extend_from_slice(&(1u64 << 20).to_be_bytes());
        cut.extend_from_slice(&[0; 4]);
        cut.extend_from_slice(b"0123456789");
        let mut huge = vec![0x82, 0x80 | 127];
        huge.extend_from_slice(&(1u64 << 62).to_be_bytes());
        huge.extend_from_slice(&[0; 4]);
        {
            let mut raw = TcpStream::connect(&addr).unwrap();
            let _ = raw.write_all(&[0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3, 255, 254]);
        }
        let reply = upgrade(&[&frame(b"\x93not msgpack\xc1\xc1\xc1")]);
        assert!(reply.contains("101"), "the upgrade was answered: {reply}");
        upgrade(&[&frame(&[0x91, 0x81, 0xa4, b'I', b'n', b'i', b't', 0xc0])]);
        upgrade(&[&cut]);
        upgrade(&[&huge]);

        let iroh = Server::start_with(&["--transport", "iroh", "--token-file", &token], &[]);
        let at = iroh.url.rsplit('@').next().unwrap().to_string();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        for len in [1usize, 17, 1200, 1500] {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 % 251) as u8).collect();
            let _ = udp.send_to(&junk, &at);
        }

        let dir = tempfile::tempdir().unwrap();
        let x = data(dir.path(), 300, 2);
        let out = dir.path().join("m.safetensors");
        for url in [&server.url, &iroh.url] {
            let v =
                fit_two_over(url, &x, out.to_str().unwrap(), &["--token-file", &token]).unwrap();
            assert_eq!(v["workers"].as_array().map(Vec::len), Some(1), "{v}");
        }
        assert!(
            server.child.try_wait().unwrap().is_none(),
            "the server exited"
        );
    }

    /// MessagePack as `rmp_serde::to_vec` writes Burn Remote's messages: structs as arrays,
    /// enum variants as one-entry maps keyed by their names (unit variants as their names).
    enum Mp {
        U(u64),
        S(&'static str),
        Bin(Vec<u8>),
        A(Vec<Mp>),
        V(&'static str, Box<Mp>),
    }

    impl Mp {
        fn bytes(&self) -> Vec<u8> {
            let mut out = vec![];
            self.write(&mut out);
            out
        }

        fn write(&self, out: &mut Vec<u8>) {
            match self {
                Mp::U(v) if *v < 128 => out.push(*v as u8),
                Mp::U(v) => {
                    out.push(0xcf);
                    out.extend_from_slice(&v.to_be_bytes());
                }
                Mp::S(s) => {
                    out.push(0xd9);
                    out.push(s.len() as u8);
                    out.extend_from_slice(s.as_bytes());
                }
                Mp::Bin(b) => {
                    out.push(0xc4);
                    out.push(b.len() as u8);
                    out.extend_from_slice(b);
                }
                Mp::A(items) => {
                    out.push(0x90 | items.len() as u8);
                    items.iter().for_each(|i| i.write(out));
                }
                Mp::V(name, payload) => {
                    out.push(0x81);
                    Mp::S(name).write(out);
                    payload.write(out);
                }
            }
        }
    }

    /// A WebSocket connection to `addr` upgraded by hand (reads time out after `timeout`
    /// seconds), and the server's answer to the upgrade.
    fn ws_upgrade(addr: &str, timeout: u64) -> (std::net::TcpStream, String) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(timeout)))
            .unwrap();
        let request = format!(
            "GET /session HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        s.write_all(request.as_bytes()).unwrap();
        let mut reply = vec![];
        let mut byte = [0u8; 1];
        while !reply.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
            reply.push(byte[0]);
        }
        (s, String::from_utf8_lossy(&reply).into_owned())
    }

    /// A client frame (masked with a zero key, which keeps the bytes) of `payload`.
    fn ws_frame(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x82];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        f.extend_from_slice(&[0; 4]);
        f.extend_from_slice(payload);
        f
    }

    /// The payload of the next server frame, or `None` once the connection ends.
    fn ws_read(s: &mut std::net::TcpStream) -> Option<Vec<u8>> {
        use std::io::Read;
        let mut head = [0u8; 2];
        s.read_exact(&mut head).ok()?;
        let len = match head[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                s.read_exact(&mut b).ok()?;
                u16::from_be_bytes(b) as usize
            }
            127 => {
                let mut b = [0u8; 8];
                s.read_exact(&mut b).ok()?;
                u64::from_be_bytes(b) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0u8; len.min(1 << 20)];
        s.read_exact(&mut payload).ok()?;
        Some(payload)
    }

    /// Issue 28: a client that presents the right token and then sends what no Burn client
    /// sends — garbage and truncated MessagePack, a second `Init`, a `Close` of another
    /// session, reads and aliases of tensors that do not exist, a tensor of an absurd shape —
    /// ends only its own session: the server keeps serving, and the next client's fit works.
    #[test]
    fn an_authenticated_client_sending_malformed_messages_ends_only_its_session() {
        use std::io::Write;
        use Mp::{Bin, A, S, U, V};
        let (mut servers, _, token_file) = Server::group(1);
        let mut server = servers.remove(0);
        let token = std::fs::read_to_string(&token_file).unwrap();
        let addr = server.url.trim_start_matches("ws://").to_string();
        let init = |session: u64| {
            A(vec![V(
                "Init",
                Box::new(A(vec![
                    U(2), // PROTOCOL_VERSION of Burn 0.22.1
                    A(vec![U(session)]),
                    U(0),
                    Bin(token.trim().as_bytes().to_vec()),
                ])),
            )])
            .bytes()
        };
        let task = |t: Mp| A(vec![V("Task", Box::new(t))]).bytes();
        let stream = || A(vec![U(1)]);
        let tensor = |id: u64, dims: Vec<Mp>| {
            A(vec![
                A(vec![U(id)]),
                A(vec![A(dims)]),
                S("ReadOnly"),
                S("F32"),
            ])
        };
        let hostile: Vec<Vec<u8>> = vec![
            b"\x93not msgpack\xc1\xc1\xc1".to_vec(),
            task(V("Seed", Box::new(U(7))))[..5].to_vec(),
            init(77),
            A(vec![V("Close", Box::new(A(vec![U(12345)])))]).bytes(),
            task(V(
                "ReadTensor",
                Box::new(A(vec![U(1), stream(), tensor(999_999, vec![U(2), U(2)])])),
            )),
            task(V(
                "ReadTensor",
                Box::new(A(vec![
                    U(2),
                    stream(),
                    tensor(999_998, vec![U(1 << 40), U(1 << 40)]),
                ])),
            )),
            task(V(
                "RegisterAlias",
                Box::new(A(vec![stream(), A(vec![U(5)]), A(vec![U(999_997)])])),
            )),
            task(V("SyncBackend", Box::new(A(vec![U(3), stream()])))),
        ];
        let mut sessions = 0;
        for (i, message) in hostile.iter().enumerate() {
            let (mut s, reply) = ws_upgrade(&addr, 10);
            assert!(reply.contains("101"), "the upgrade was answered: {reply}");
            s.write_all(&ws_frame(&init(1000 + i as u64))).unwrap();
            let info = ws_read(&mut s).expect("the session's first reply");
            // `[content, id]` with `content = {"Init": …}`: the token was accepted (a refusal
            // is `{"InitRefused": …}`).
            assert!(
                info.windows(5).any(|w| w == b"\xa4Init"),
                "message {i}: the session was not opened: {info:?}"
            );
            sessions += 1;
            let _ = s.write_all(&ws_frame(message));
            // The server answers what it can (a read's error) and ends the session; either
            // way the connection ends within the timeout.
            let started = std::time::Instant::now();
            while ws_read(&mut s).is_some() && started.elapsed() < Duration::from_secs(30) {}
            assert!(
                server.child.try_wait().unwrap().is_none(),
                "the server exited after message {i}"
            );
        }
        assert_eq!(sessions, hostile.len());

        let dir = tempfile::tempdir().unwrap();
        let x = data(dir.path(), 300, 2);
        let out = dir.path().join("m.safetensors");
        let v = fit_two_over(
            &server.url,
            &x,
            out.to_str().unwrap(),
            &["--token-file", &token_file],
        )
        .unwrap();
        assert_eq!(v["workers"].as_array().map(Vec::len), Some(1), "{v}");
        assert!(
            server.child.try_wait().unwrap().is_none(),
            "the server exited"
        );
    }

    /// Issue 28: an Iroh server closes a client's connection once no data has moved for
    /// `--idle-timeout` seconds (its sessions end, their tensors freed): the idle client's next
    /// operation fails, and a new client is served.
    #[test]
    fn an_idle_iroh_client_is_disconnected_and_the_next_one_is_served() {
        use mixburn_gmm::burn::tensor::Tensor;
        let server = Server::start_with(&["--transport", "iroh", "--idle-timeout", "2"], &[]);
        let token_file = server.token_file.clone().unwrap();
        let token = std::fs::read_to_string(&token_file).unwrap();
        let device = mixburn_gmm::shards::connect(&server.url, Some(token.trim_end())).unwrap();
        let held: Tensor<1> = Tensor::ones([4], &device);
        assert_eq!(held.clone().try_into_vec_as::<f32>().unwrap(), vec![1.0; 4]);
        std::thread::sleep(Duration::from_secs(5));
        let started = Instant::now();
        assert!(
            held.try_into_vec_as::<f32>().is_err(),
            "the idle connection still answered"
        );
        assert!(started.elapsed() < Duration::from_secs(60));
        let dir = tempfile::tempdir().unwrap();
        let x = data(dir.path(), 300, 2);
        let out = dir.path().join("m.safetensors");
        // Another client process (this one's remote client keeps the closed connection).
        let fit = Command::new(env!("CARGO_BIN_EXE_mixburn"))
            .args([
                "fit",
                "--input",
                &x,
                "--components",
                "2",
                "--workers",
                &server.url,
            ])
            .args([
                "--token-file",
                &token_file,
                "--output",
                out.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(
            fit.status.success(),
            "{}",
            String::from_utf8_lossy(&fit.stderr)
        );
        assert!(out.exists());
        let e = run(&["serve", "--idle-timeout", "0"]).unwrap_err();
        assert!(e.contains("idle_timeout"), "{e}");
    }
}

#[cfg(feature = "remote")]
mod retry {
    use std::process::{Command, Stdio};
    use std::time::Duration;

    use super::remote_support::{data, rel, Server};
    use super::*;

    #[test]
    fn with_retry_shards_a_lost_shard_goes_to_the_other_workers_and_the_result_is_the_same() {
        let (servers, workers, token) = Server::group(3);
        let dir = tempfile::tempdir().unwrap();
        let x = data(dir.path(), 20_000, 8);
        let out = dir.path().join("m.safetensors").display().to_string();
        let args = [
            "fit",
            "--input",
            &x,
            "--components",
            "4",
            "--max-iter",
            "500",
            "--tol",
            "0",
            "--dtype",
            "f64",
            "--output",
            &out,
        ];
        let local = run(&args).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_mixburn"))
            .args(args)
            .args([
                "--workers",
                &workers,
                "--token-file",
                &token,
                "--retry-shards",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_secs(2));
        let mut servers = servers;
        let lost = servers.remove(1);
        let lost_url = lost.url.clone();
        drop(lost);
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        let v: Value = serde_json::from_slice(&output.stdout).unwrap();
        let lost = v["lost_workers"].as_array().unwrap();
        assert_eq!(lost.len(), 1, "{v}");
        assert_eq!(lost[0]["worker"], lost_url.as_str());
        assert_eq!(v["workers"].as_array().map(Vec::len), Some(2), "{v}");
        let lb = |v: &Value| v["lower_bound"].as_f64().unwrap();
        assert!(
            rel(lb(&v), lb(&local)) < 1e-9,
            "{} vs {}",
            lb(&v),
            lb(&local)
        );
        assert_eq!(v["n_iter"], local["n_iter"]);
    }
}
