//! `mixburn serve`: hosts this machine's device for `--workers` clients on Burn's remote
//! backend (WebSocket): a client's shard of the rows stays resident here for the whole fit and
//! only sufficient statistics go back.
//!
//! A token always, as Jupyter does: loopback is no boundary between the users of one machine.
//! With `--token-file` the server asks for that file's token; without it, it draws a 256-bit
//! token from the operating system and writes it to a new file only its owner can read
//! (`$XDG_RUNTIME_DIR/mixburn/serve-<port>.token`, or `~/.cache/mixburn/tokens/` where there
//! is no runtime directory), named in its first JSON line; a client presents it with
//! `--token-file`. `--no-token` serves anyone on loopback, with a warning. Another address
//! needs `--allow-remote` and a token: the transport itself is not encrypted, so use it on a
//! trusted network.

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
    /// Listen on an address other than loopback (with a token; the transport is not encrypted).
    #[arg(long)]
    pub allow_remote: bool,
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

/// Draws a 256-bit token from the operating system's generator, as 64 hexadecimal digits.
fn random_token() -> Result<String, CliError> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| {
            GmmError::invalid_setting(
                "token_file",
                format!("cannot draw a random token from /dev/urandom ({e}): give --token-file"),
            )
        })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
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
    let path = token_dir()?.join(format!("serve-{port}.token"));
    mixburn_data::write_atomic_private(&path, |w| writeln!(w, "{token}"))?;
    Ok(Some((token, path)))
}

/// Checks the address policy, binds, prints one JSON line (`{"serving": "ws://…"}`) on stdout,
/// then serves until SIGINT or SIGTERM.
pub fn run(a: ServeArgs) -> Result<Value, CliError> {
    if !cfg!(feature = "remote") {
        return Err(no_remote());
    }
    if !a.bind.ip().is_loopback() {
        if !a.allow_remote {
            return Err(GmmError::invalid_setting(
                "bind",
                format!(
                    "{} is not a loopback address: the transport is not encrypted, so serving \
                     beyond this machine needs --allow-remote (and a token)",
                    a.bind
                ),
            )
            .into());
        }
        if a.no_token {
            return Err(GmmError::invalid_setting(
                "no_token",
                "serving beyond this machine (--allow-remote) needs a token: leave out \
                 --no-token (a token is generated) or give --token-file",
            )
            .into());
        }
    }
    // A given token file is read (and checked) before anything is bound.
    let given = a.token_file.as_deref().map(read_token).transpose()?;
    let backend = a.backend.backend;
    let device = backend.device()?;
    let listener = TcpListener::bind(a.bind).map_err(|e| {
        GmmError::invalid_setting("bind", format!("cannot listen on {}: {e}", a.bind))
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| GmmError::invalid_setting("bind", e.to_string()))?;
    let token = server_token(&a, given, addr.port())?;
    serve(listener, device, token, addr, &backend.to_string())
}

#[cfg(feature = "remote")]
fn serve(
    listener: TcpListener,
    device: mixburn_gmm::burn::tensor::Device,
    token: Option<(String, PathBuf)>,
    addr: SocketAddr,
    backend: &str,
) -> Result<Value, CliError> {
    use std::io::Write;

    use mixburn_gmm::burn::server::{RemoteServer, TokenAuthorizer, WebSocketTransport};
    use serde_json::json;
    let url = format!("ws://{addr}");
    // The address first (a client or a test reads it), then the server's own session log.
    println!(
        "{}",
        json!({
            "serving": url,
            "backend": backend,
            "token": token.is_some(),
            "token_file": token.as_ref().map(|(_, path)| path.display().to_string()),
        })
    );
    let _ = std::io::stdout().flush();
    let server = RemoteServer::new([device]);
    let served = match token {
        Some((t, _)) => {
            let auth = TokenAuthorizer::new(t)
                .map_err(|e| GmmError::invalid_setting("token_file", format!("{e:?}")))?;
            server
                .with_authorizer(auth)
                .serve(WebSocketTransport::from_listener(listener))
        }
        None => server.serve(WebSocketTransport::from_listener(listener)),
    };
    served.map_err(|e| GmmError::invalid_setting("bind", format!("serving {url} failed: {e}")))?;
    Ok(json!({ "stopped": url }))
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
fn serve(
    _listener: TcpListener,
    _device: mixburn_gmm::burn::tensor::Device,
    _token: Option<(String, PathBuf)>,
    _addr: SocketAddr,
    _backend: &str,
) -> Result<Value, CliError> {
    Err(no_remote())
}
