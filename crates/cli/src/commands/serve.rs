//! `mixburn serve`: hosts this machine's device for `--workers` clients on Burn's remote
//! backend (WebSocket): a client's shard of the rows stays resident here for the whole fit and
//! only sufficient statistics go back. Loopback by default; another address needs
//! `--allow-remote` and a token (`--token-file`), since WebSocket itself is unauthenticated and
//! unencrypted: use it on a trusted network.

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
    /// A file holding the token clients must present (--token-file on their side).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Listen on an address other than loopback (requires --token-file).
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

/// Checks the address policy, binds, prints one JSON line (`{"serving": "ws://…"}`) on stdout,
/// then serves until SIGINT or SIGTERM.
pub fn run(a: ServeArgs) -> Result<Value, CliError> {
    if !a.bind.ip().is_loopback() {
        if !a.allow_remote {
            return Err(GmmError::invalid_setting(
                "bind",
                format!(
                    "{} is not a loopback address: WebSocket is unauthenticated, so serving \
                     beyond this machine needs --allow-remote and --token-file",
                    a.bind
                ),
            )
            .into());
        }
        if a.token_file.is_none() {
            return Err(GmmError::invalid_setting(
                "token_file",
                "serving beyond this machine (--allow-remote) needs a token: give --token-file",
            )
            .into());
        }
    }
    let token = a.token_file.as_deref().map(read_token).transpose()?;
    let backend = a.backend.backend;
    let device = backend.device()?;
    let listener = TcpListener::bind(a.bind).map_err(|e| {
        GmmError::invalid_setting("bind", format!("cannot listen on {}: {e}", a.bind))
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| GmmError::invalid_setting("bind", e.to_string()))?;
    serve(listener, device, token, addr, &backend.to_string())
}

#[cfg(feature = "remote")]
fn serve(
    listener: TcpListener,
    device: mixburn_gmm::burn::tensor::Device,
    token: Option<String>,
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
        json!({ "serving": url, "backend": backend, "token": token.is_some() })
    );
    let _ = std::io::stdout().flush();
    let server = RemoteServer::new([device]);
    let served = match token {
        Some(t) => {
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

#[cfg(not(feature = "remote"))]
fn serve(
    _listener: TcpListener,
    _device: mixburn_gmm::burn::tensor::Device,
    _token: Option<String>,
    _addr: SocketAddr,
    _backend: &str,
) -> Result<Value, CliError> {
    Err(GmmError::invalid_setting(
        "serve",
        "this build has no remote backend: build with the `remote` feature \
         (cargo build --features remote)",
    )
    .into())
}
