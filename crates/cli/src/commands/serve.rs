//! `mixburn serve`: hosts this machine's device for `--workers` clients on Burn's remote
//! backend: a client's shard of the rows stays resident here for the whole fit and only
//! sufficient statistics go back.
//!
//! A token always, as Jupyter does: loopback is no boundary between the users of one machine.
//! With `--token-file` the server asks for that file's token; without it, it draws a 256-bit
//! token from the operating system and writes it to a new file only its owner can read
//! (`$XDG_RUNTIME_DIR/mixburn/serve-<port>.token`, `serve-<port>-iroh.token` for Iroh, or in
//! `~/.cache/mixburn/tokens/` where there is no runtime directory), named in its first JSON
//! line; a client presents it with `--token-file`. `--no-token` serves anyone on loopback, with
//! a warning.
//!
//! | transport | where | on the wire | the client knows it reached the server by |
//! |---|---|---|---|
//! | `websocket` (`ws://host:port`) | loopback only | clear text (TCP) | nothing: loopback only |
//! | `iroh` (`iroh://<id>@host:port`) | any address (the default beyond loopback) | QUIC, TLS 1.3 | the server's public key, `<id>` |
//!
//! Beyond loopback the server speaks only Iroh (Burn's own encrypted transport, relays off:
//! direct UDP on the bound address, nothing sent to outside relays or address lookups), so the
//! token and the shards never cross the network in clear text; a WebSocket client gets no
//! answer there. The server's key is drawn afresh at each start, or kept in `--identity-file`
//! (created only its owner can read) so its address stays the same across restarts.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use clap::Args;
use mixburn_gmm::GmmError;
use serde_json::Value;

use crate::options::BackendOption;
use crate::CliError;

/// `mixburn serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on (port 0: any free port, printed on start).
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub bind: SocketAddr,
    /// Backend of the hosted device.
    #[command(flatten)]
    pub backend: BackendOption,
    /// A file holding the token clients must present (--token-file on their side). Without it
    /// a random token is written to a new file only you can read, named in the first line
    /// (`token_file`): give that file to the clients, or to further servers of one fit.
    #[arg(long, conflicts_with = "no_token")]
    pub token_file: Option<PathBuf>,
    /// Serve any client without a token (loopback only, for throwaway use: every user of this
    /// machine can then use the device and see the rows sent to it).
    #[arg(long)]
    pub no_token: bool,
    /// How clients reach the server: `websocket` (clear text, loopback only) or `iroh`
    /// (encrypted, the server authenticated by its key). Default: websocket on loopback, iroh
    /// on any other address.
    #[arg(long, value_enum)]
    pub transport: Option<Transport>,
    /// The Iroh server's secret key (64 hexadecimal digits, or Burn's 32 raw bytes): created,
    /// readable by its owner only, where it does not exist, so the server keeps its address
    /// (`iroh://<id>@…`) across restarts. Without it a fresh key is drawn at each start.
    #[arg(long)]
    pub identity_file: Option<PathBuf>,
    /// Close an Iroh client's connection (its sessions and the tensors they hold) after this
    /// many seconds in which no data moved either way. A fit's pass exchanges data every few
    /// seconds; raise it for workers whose chunks take longer.
    #[arg(long, default_value_t = 600.0)]
    pub idle_timeout: f64,
}

/// How clients reach a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// WebSocket over TCP, clear text: loopback only.
    Websocket,
    /// Iroh: QUIC with TLS 1.3 over UDP, the server authenticated by its public key.
    Iroh,
}

/// Reads a token file: one line, not empty (a trailing newline is dropped).
pub(crate) fn read_token(path: &Path) -> Result<String, CliError> {
    let text = mixburn_data::read_input_text(path)?;
    let token = text.trim_end_matches(['\n', '\r']).to_string();
    if token.is_empty() || token.len() > 4096 {
        return Err(GmmError::invalid_setting(
            "token_file",
            format!(
                "{} must hold one non-empty token of at most 4096 bytes",
                path.display()
            ),
        )
        .into());
    }
    Ok(token)
}

/// The directory a generated token file goes in: `$XDG_RUNTIME_DIR/mixburn` where the
/// runtime directory is set and exists, else `${XDG_CACHE_HOME:-~/.cache}/mixburn/tokens`;
/// created (or checked) readable by this user only.
fn token_dir() -> Result<PathBuf, CliError> {
    let absolute_dir = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute() && p.is_dir())
    };
    let dir = match absolute_dir("XDG_RUNTIME_DIR") {
        Some(run) => run.join("mixburn"),
        None => absolute_dir("XDG_CACHE_HOME")
            .or_else(|| absolute_dir("HOME").map(|h| h.join(".cache")))
            .ok_or_else(|| {
                GmmError::invalid_setting(
                    "token_file",
                    "no XDG_RUNTIME_DIR, XDG_CACHE_HOME or HOME to keep a generated token in: \
                     give --token-file",
                )
            })?
            .join("mixburn")
            .join("tokens"),
    };
    Ok(mixburn_data::private_dir(&dir)?)
}

/// 32 bytes from the operating system's generator, for `what` (named in the refusal).
fn random_bytes(what: &'static str) -> Result<[u8; 32], CliError> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| {
            GmmError::invalid_setting(
                what,
                format!(
                    "cannot draw random bytes from /dev/urandom ({e}): give --{}",
                    what.replace('_', "-")
                ),
            )
        })?;
    Ok(bytes)
}

/// Lower-case hexadecimal digits of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Draws a 256-bit token from the operating system's generator, as 64 hexadecimal digits.
fn random_token() -> Result<String, CliError> {
    Ok(hex(&random_bytes("token_file")?))
}

/// The Iroh server's secret key: `path`'s (64 hexadecimal digits, or Burn's 32 raw bytes;
/// refused where other users may read it), or a new one written there readable by its owner
/// only (written once the server is bound: `true`); without a path, a fresh one.
fn server_key(path: Option<&Path>) -> Result<([u8; 32], bool), CliError> {
    let refuse = |p: &Path, why: String| -> CliError {
        GmmError::invalid_setting("identity_file", format!("{}: {why}", p.display())).into()
    };
    let Some(path) = path else {
        return Ok((random_bytes("identity_file")?, false));
    };
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok((random_bytes("identity_file")?, true))
        }
        Err(e) => Err(refuse(path, e.to_string())),
        Ok(_) => {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(path).map_err(|e| refuse(path, e.to_string()))?;
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(refuse(
                    path,
                    "other users may read this key (whoever holds it can pose as the server): \
                     chmod 600 it"
                        .into(),
                ));
            }
            let bytes = mixburn_data::read_input(path)?;
            let text = std::str::from_utf8(&bytes).map(|t| t.trim_end_matches(['\n', '\r']));
            let decoded = match text {
                Ok(t) if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) => (0..32)
                    .map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16).ok())
                    .collect::<Option<Vec<u8>>>(),
                _ if bytes.len() == 32 => Some(bytes.clone()),
                _ => None,
            };
            decoded
                .and_then(|k| <[u8; 32]>::try_from(k).ok())
                .map(|k| (k, false))
                .ok_or_else(|| {
                    refuse(
                        path,
                        "is not a key: it must hold 64 hexadecimal digits (or 32 raw bytes)".into(),
                    )
                })
        }
    }
}

/// The token the server asks for, and the file a client reads it from: `given` (the
/// `--token-file`'s, read before binding), or a new random one written to a private file named
/// by `port`; `None` under `--no-token`.
fn server_token(
    a: &ServeArgs,
    given: Option<String>,
    port: u16,
) -> Result<Option<(String, PathBuf)>, CliError> {
    if a.no_token {
        eprintln!(
            "warning: serving without a token (--no-token): any user of this machine can use \
             this device and see the rows sent to it"
        );
        return Ok(None);
    }
    if let (Some(token), Some(path)) = (given, &a.token_file) {
        return Ok(Some((token, path.clone())));
    }
    let token = random_token()?;
    // TCP (WebSocket) and UDP (Iroh) ports are separate: the same number may serve both.
    let name = match a.transport {
        Some(Transport::Iroh) => format!("serve-{port}-iroh.token"),
        _ if !a.bind.ip().is_loopback() => format!("serve-{port}-iroh.token"),
        _ => format!("serve-{port}.token"),
    };
    let path = token_dir()?.join(name);
    mixburn_data::write_atomic_private(&path, |w| writeln!(w, "{token}"))?;
    Ok(Some((token, path)))
}

/// Checks the address policy, binds, prints one JSON line (`{"serving": "ws://…"}` or
/// `"iroh://<id>@…"`) on stdout, then serves until SIGINT or SIGTERM.
pub fn run(a: ServeArgs) -> Result<Value, CliError> {
    if !cfg!(feature = "remote") {
        return Err(no_remote());
    }
    let loopback = a.bind.ip().is_loopback();
    let transport = a.transport.unwrap_or(if loopback {
        Transport::Websocket
    } else {
        Transport::Iroh
    });
    if !loopback && transport == Transport::Websocket {
        return Err(GmmError::invalid_setting(
            "transport",
            format!(
                "{} is not a loopback address and WebSocket is clear text (the token and the \
                 rows would cross the network unencrypted): serve over Iroh there (leave out \
                 --transport, or give --transport iroh)",
                a.bind
            ),
        )
        .into());
    }
    if !loopback && a.no_token {
        return Err(GmmError::invalid_setting(
            "no_token",
            "serving beyond this machine needs a token: leave out --no-token (a token is \
             generated) or give --token-file",
        )
        .into());
    }
    if !(a.idle_timeout.is_finite() && a.idle_timeout > 0.0) {
        return Err(GmmError::invalid_setting(
            "idle_timeout",
            format!("{} is not a positive number of seconds", a.idle_timeout),
        )
        .into());
    }
    if a.identity_file.is_some() && transport != Transport::Iroh {
        return Err(GmmError::invalid_setting(
            "identity_file",
            "is the Iroh server's key: give it with --transport iroh",
        )
        .into());
    }
    // A given token file and key are read (and checked) before anything is bound.
    let given = a.token_file.as_deref().map(read_token).transpose()?;
    let key = match transport {
        Transport::Iroh => Some(server_key(a.identity_file.as_deref())?),
        Transport::Websocket => None,
    };
    let backend = a.backend.backend;
    let device = backend.device()?;
    match key {
        Some(key) => serve_iroh(&a, given, key, device, &backend.to_string()),
        None => {
            let listener = TcpListener::bind(a.bind).map_err(|e| {
                GmmError::invalid_setting("bind", format!("cannot listen on {}: {e}", a.bind))
            })?;
            let addr = listener
                .local_addr()
                .map_err(|e| GmmError::invalid_setting("bind", e.to_string()))?;
            let token = server_token(&a, given, addr.port())?;
            serve_websocket(listener, device, token, addr, &backend.to_string())
        }
    }
}

/// The server's first line: where it serves, and the token file a client presents.
fn announce(url: &str, backend: &str, token: &Option<(String, PathBuf)>) {
    use std::io::Write;
    // The address first (a client or a test reads it), then the server's own session log.
    println!(
        "{}",
        serde_json::json!({
            "serving": url,
            "backend": backend,
            "token": token.is_some(),
            "token_file": token.as_ref().map(|(_, path)| path.display().to_string()),
        })
    );
    let _ = std::io::stdout().flush();
}

/// A server of `device` that asks for `token`, when there is one.
#[cfg(feature = "remote")]
fn remote_server(
    device: mixburn_gmm::burn::tensor::Device,
    token: &Option<(String, PathBuf)>,
) -> Result<mixburn_gmm::burn::server::RemoteServer, CliError> {
    use mixburn_gmm::burn::server::{RemoteServer, TokenAuthorizer};
    let server = RemoteServer::new([device]);
    Ok(match token {
        Some((t, _)) => server.with_authorizer(
            TokenAuthorizer::new(t.as_str())
                .map_err(|e| GmmError::invalid_setting("token_file", e.to_string()))?,
        ),
        None => server,
    })
}

#[cfg(feature = "remote")]
fn serve_websocket(
    listener: TcpListener,
    device: mixburn_gmm::burn::tensor::Device,
    token: Option<(String, PathBuf)>,
    addr: SocketAddr,
    backend: &str,
) -> Result<Value, CliError> {
    use mixburn_gmm::burn::server::WebSocketTransport;
    let url = format!("ws://{addr}");
    announce(&url, backend, &token);
    remote_server(device, &token)?
        .serve(WebSocketTransport::from_listener(listener))
        .map_err(|e| GmmError::invalid_setting("bind", format!("serving {url} failed: {e}")))?;
    Ok(serde_json::json!({ "stopped": url }))
}

/// Serves over Iroh on exactly `--bind` (UDP), relays, address lookups and port mapping off,
/// until SIGINT or SIGTERM. A new key is written to `--identity-file` once the address is
/// bound, so a failed start leaves no file behind.
#[cfg(feature = "remote")]
fn serve_iroh(
    a: &ServeArgs,
    given: Option<String>,
    (key, new_key): ([u8; 32], bool),
    device: mixburn_gmm::burn::tensor::Device,
    backend: &str,
) -> Result<Value, CliError> {
    use iroh::endpoint::{presets, PortmapperConfig, QuicTransportConfig};
    use mixburn_gmm::burn::server::BURN_REMOTE_ALPN;
    let fail = |what: String| -> CliError { GmmError::invalid_setting("bind", what).into() };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(format!("cannot start the runtime to serve on: {e}")))?;
    runtime.block_on(async {
        let cannot = |e: &dyn std::fmt::Display| fail(format!("cannot listen on {}: {e}", a.bind));
        let endpoint = iroh::Endpoint::builder(presets::Minimal)
            .secret_key(iroh::SecretKey::from_bytes(&key))
            .relay_mode(iroh::RelayMode::Disabled)
            .portmapper_config(PortmapperConfig::Disabled)
            // Burn's own setting: segmentation offload stalls connections (iroh#4555).
            .transport_config(
                QuicTransportConfig::builder()
                    .enable_segmentation_offload(false)
                    .build(),
            )
            .clear_ip_transports()
            .bind_addr(a.bind)
            .map_err(|e| cannot(&e))?
            .bind()
            .await
            .map_err(|e| cannot(&e))?;
        let addr = endpoint
            .bound_sockets()
            .into_iter()
            .next()
            .ok_or_else(|| cannot(&"no socket was bound"))?;
        if let (true, Some(path)) = (new_key, &a.identity_file) {
            mixburn_data::write_atomic_private(path, |w| writeln!(w, "{}", hex(&key)))?;
        }
        let token = server_token(a, given, addr.port())?;
        let url = format!("iroh://{}@{addr}", endpoint.id());
        let protocol = remote_server(device, &token)?
            .into_protocol(&endpoint)
            .map_err(|e| fail(format!("serving {url} failed: {e}")))?;
        let protocol = ClosingIdle {
            inner: protocol.into(),
            idle: std::time::Duration::from_secs_f64(a.idle_timeout),
        };
        let router = iroh::protocol::Router::builder(endpoint)
            .accept(BURN_REMOTE_ALPN, protocol)
            .spawn();
        announce(&url, backend, &token);
        let stop = shutdown_signal().await;
        let _ = router.shutdown().await;
        stop.map_err(|e| fail(format!("serving {url} failed: {e}")))?;
        Ok(serde_json::json!({ "stopped": url }))
    })
}

/// Burn's Iroh handler, with each client connection closed once no stream data has moved
/// either way for `idle` (the connection's QUIC frame counters, read every second; keep-alive
/// pings do not count). Closing the connection ends its sessions, which frees their tensors.
#[cfg(feature = "remote")]
#[derive(Debug)]
struct ClosingIdle {
    inner: Box<dyn iroh::protocol::DynProtocolHandler>,
    idle: std::time::Duration,
}

#[cfg(feature = "remote")]
impl iroh::protocol::ProtocolHandler for ClosingIdle {
    async fn accept(
        &self,
        connection: iroh::endpoint::Connection,
    ) -> Result<(), iroh::protocol::AcceptError> {
        let watched = connection.clone();
        let idle = self.idle;
        let watchdog = tokio::spawn(async move {
            let moved = |c: &iroh::endpoint::Connection| {
                let s = c.stats();
                s.frame_rx.stream + s.frame_tx.stream
            };
            let (mut last, mut since) = (moved(&watched), std::time::Instant::now());
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(1).min(idle)).await;
                if watched.close_reason().is_some() {
                    return;
                }
                let now = moved(&watched);
                if now != last {
                    (last, since) = (now, std::time::Instant::now());
                } else if since.elapsed() >= idle {
                    watched.close(0u32.into(), b"idle timeout");
                    return;
                }
            }
        });
        let served = self.inner.accept(connection).await;
        watchdog.abort();
        served
    }

    async fn shutdown(&self) {
        self.inner.shutdown().await
    }
}

/// SIGINT or SIGTERM.
#[cfg(feature = "remote")]
async fn shutdown_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}

/// The refusal of a build without the remote backend, before anything is bound or written.
fn no_remote() -> CliError {
    GmmError::invalid_setting(
        "serve",
        "this build has no remote backend: build with the `remote` feature \
         (cargo build --features remote)",
    )
    .into()
}

#[cfg(not(feature = "remote"))]
fn serve_websocket(
    _listener: TcpListener,
    _device: mixburn_gmm::burn::tensor::Device,
    _token: Option<(String, PathBuf)>,
    _addr: SocketAddr,
    _backend: &str,
) -> Result<Value, CliError> {
    Err(no_remote())
}

#[cfg(not(feature = "remote"))]
fn serve_iroh(
    _a: &ServeArgs,
    _given: Option<String>,
    _key: ([u8; 32], bool),
    _device: mixburn_gmm::burn::tensor::Device,
    _backend: &str,
) -> Result<Value, CliError> {
    Err(no_remote())
}
