//! Rows split over several devices, local or remote (Burn's remote backend: a device on a
//! `mixburn serve` server is a [`Device`] like a local one): each device holds one shard, a
//! contiguous range of rows uploaded once, for the whole fit.
//!
//! [`ShardedRows`] is a [`RowSource`], so every pass of every fit (the data checks, k-means++
//! seeding and Lloyd, EM and the variational mixture, `select`, the OOD detector's class
//! statistics, scoring) runs on it unchanged: a pass takes each chunk on the device that holds
//! it, moves the pass's parameters (the E-step operand, centres) to each device once, computes
//! the chunk's sufficient statistics there, and brings only the statistics back to the client
//! (`K·D²` numbers per shard and pass for full covariances), where they are merged and the
//! M-step runs. The E-step runs on every shard concurrently (one thread per shard). Since the
//! statistics are additive, the fit equals the single-process fit up to the order of the sums.
//!
//! Shards are row ranges proportional to a weight per device (equal by default). Rows from a
//! file ([`crate::FileRows`]) are uploaded a chunk at a time, straight to their shard's
//! device: the client never holds more than one chunk.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use burn::tensor::{DType, Device, Tensor};

use crate::error::{GmmError, Result};
use crate::source::{on_device, RowSource};
use mixburn_backend::host::chunks;

/// One shard: rows `[start, start + len)` on `device`.
struct Shard {
    device: Device,
    name: String,
    start: usize,
    len: usize,
    rows: Tensor<2>,
}

/// Rows split over several devices (module docs).
pub struct ShardedRows {
    client: Device,
    dtype: DType,
    d: usize,
    n: usize,
    shards: Vec<Shard>,
    /// Per shard: whether a pass is working on it, and when it last asked for rows (a
    /// watchdog's clue to the worker that stopped answering).
    busy: Vec<AtomicBool>,
    touched: Vec<AtomicUsize>,
    started: Instant,
    max_chunk_rows: usize,
}

impl ShardedRows {
    /// Splits the rows of `source` over `devices` (each with a name for messages, such as its
    /// server's address) by row ranges proportional to `weights` (equal when `None`), and
    /// uploads each shard once, `chunk_rows` rows at a time. The client keeps `source`'s
    /// device and dtype.
    pub fn upload(
        source: &dyn RowSource,
        devices: &[(Device, String)],
        weights: Option<&[f64]>,
        chunk_rows: usize,
    ) -> Result<Self> {
        let [n, d] = source.dims();
        if devices.is_empty() {
            return Err(GmmError::invalid_setting(
                "workers",
                "give at least one device",
            ));
        }
        let w: Vec<f64> = match weights {
            Some(w) if w.len() == devices.len() => w.to_vec(),
            Some(w) => {
                return Err(GmmError::invalid_setting(
                    "workers",
                    format!("{} weights for {} devices", w.len(), devices.len()),
                ))
            }
            None => vec![1.0; devices.len()],
        };
        if w.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
            return Err(GmmError::invalid_setting(
                "workers",
                "device weights must be finite and > 0",
            ));
        }
        let total: f64 = w.iter().sum();
        let mut shards = vec![];
        let mut start = 0;
        let mut acc = 0.0;
        for (i, ((device, name), wi)) in devices.iter().zip(&w).enumerate() {
            acc += wi;
            let end = if i + 1 == devices.len() {
                n
            } else {
                ((n as f64 * acc / total).round() as usize).clamp(start, n)
            };
            let len = end - start;
            if len > 0 {
                let mut parts = vec![];
                for (s, l) in chunks(len, chunk_rows.max(1)) {
                    parts.push(source.rows_on(start + s, l, device).map_err(|e| {
                        GmmError::Worker {
                            worker: name.clone(),
                            iteration: None,
                            reason: format!("uploading its shard failed: {e}"),
                        }
                    })?);
                }
                let rows = if parts.len() == 1 {
                    parts.pop().expect("one part")
                } else {
                    Tensor::cat(parts, 0)
                };
                shards.push(Shard {
                    device: device.clone(),
                    name: name.clone(),
                    start,
                    len,
                    rows,
                });
            }
            start = end;
        }
        Ok(Self {
            client: source.device(),
            dtype: source.dtype(),
            d,
            n,
            busy: shards.iter().map(|_| AtomicBool::new(false)).collect(),
            touched: shards.iter().map(|_| AtomicUsize::new(0)).collect(),
            started: Instant::now(),
            max_chunk_rows: crate::budget::MAX_CHUNK_ROWS,
            shards,
        })
    }

    /// Rows per chunk where the budget allows more (default
    /// [`crate::budget::MAX_CHUNK_ROWS`]). Every chunk's operations travel to its worker, so
    /// larger chunks cut the traffic and the client's work; on CPU workers they can cost
    /// compute (docs/scale.md: 16 384-row chunks halved the bytes and took 1.4× the time on
    /// loopback CPU servers).
    pub fn with_max_chunk_rows(mut self, rows: usize) -> Self {
        self.max_chunk_rows = rows.max(1);
        self
    }

    /// `(name, first row, rows)` of every shard.
    pub fn layout(&self) -> Vec<(String, usize, usize)> {
        self.shards
            .iter()
            .map(|s| (s.name.clone(), s.start, s.len))
            .collect()
    }

    /// The worker most likely to have stopped answering: of the shards a pass is still
    /// working on, the one that asked for rows longest ago (else the one idle longest).
    pub fn stalled_worker(&self) -> String {
        let at = |i: usize| self.touched[i].load(Ordering::Relaxed);
        let busy: Vec<usize> = (0..self.shards.len())
            .filter(|&i| self.busy[i].load(Ordering::Relaxed))
            .collect();
        let pool: Vec<usize> = if busy.is_empty() {
            (0..self.shards.len()).collect()
        } else {
            busy
        };
        pool.into_iter()
            .min_by_key(|&i| at(i))
            .map_or_else(String::new, |i| self.shards[i].name.clone())
    }

    fn shard_of(&self, row: usize) -> usize {
        self.shards
            .partition_point(|s| s.start + s.len <= row)
            .min(self.shards.len().saturating_sub(1))
    }

    fn touch(&self, shard: usize) {
        self.busy[shard].store(true, Ordering::Relaxed);
        self.touched[shard].store(
            self.started.elapsed().as_millis() as usize,
            Ordering::Relaxed,
        );
    }
}

impl RowSource for ShardedRows {
    fn dims(&self) -> [usize; 2] {
        [self.n, self.d]
    }
    fn device(&self) -> Device {
        self.client.clone()
    }
    fn dtype(&self) -> DType {
        self.dtype
    }
    /// Rows on their shard's device (a range across shards is gathered on the first one's).
    fn rows(&self, start: usize, len: usize) -> Result<Tensor<2>> {
        let i = self.shard_of(start);
        self.touch(i);
        let s = &self.shards[i];
        let local = start - s.start;
        if local + len <= s.len {
            return Ok(s.rows.clone().slice([local..local + len, 0..self.d]));
        }
        let mut parts = vec![];
        let mut row = start;
        while row < start + len {
            let j = self.shard_of(row);
            let sj = &self.shards[j];
            let l = (sj.start + sj.len).min(start + len) - row;
            let part = sj
                .rows
                .clone()
                .slice([row - sj.start..row - sj.start + l, 0..self.d]);
            parts.push(on_device(&part, &s.device));
            row += l;
        }
        Ok(Tensor::cat(parts, 0))
    }
    /// Rows `idx` gathered on the client.
    fn select(&self, idx: &[usize]) -> Result<Tensor<2>> {
        let parts: Vec<Tensor<2>> = idx
            .iter()
            .map(|&i| {
                let j = self.shard_of(i);
                self.touch(j);
                let s = &self.shards[j];
                let r = s
                    .rows
                    .clone()
                    .slice([i - s.start..i - s.start + 1, 0..self.d]);
                on_device(&r, &self.client)
            })
            .collect();
        if parts.is_empty() {
            return Ok(Tensor::zeros([0, self.d], (&self.client, self.dtype)));
        }
        Ok(Tensor::cat(parts, 0))
    }
    fn device_of(&self, row: usize) -> Device {
        self.shards[self.shard_of(row)].device.clone()
    }
    fn chunk_ranges(&self, chunk: usize) -> Vec<(usize, usize)> {
        self.shards
            .iter()
            .flat_map(|s| chunks(s.len, chunk).map(move |(a, l)| (s.start + a, l)))
            .collect()
    }
    fn shards(&self) -> Vec<(Device, usize, usize)> {
        self.shards
            .iter()
            .map(|s| (s.device.clone(), s.start, s.len))
            .collect()
    }
    fn describe(&self, row: usize) -> String {
        self.shards[self.shard_of(row)].name.clone()
    }
    fn max_chunk_rows(&self) -> usize {
        self.max_chunk_rows
    }
    fn finished(&self, row: usize) {
        self.busy[self.shard_of(row)].store(false, Ordering::Relaxed);
    }
}

/// Whether the WebSocket server at `url` (`ws://host:port`) answers an HTTP request on a new
/// connection within 3 seconds (a stopped or hung server accepts the connection, through the
/// kernel, but never replies). An Iroh worker (`iroh://…`) answers nothing short of a QUIC
/// handshake, so it counts as answering (the watchdog then names the pass's stalled worker).
pub fn worker_answers(url: &str) -> bool {
    use std::io::{Read, Write};
    use std::net::{TcpStream, ToSocketAddrs};
    use std::time::Duration;
    let Some(hostport) = url.strip_prefix("ws://").map(|h| h.trim_end_matches('/')) else {
        return true;
    };
    let Some(addr) = hostport.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
        return false;
    };
    let wait = Duration::from_secs(3);
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, wait) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(wait));
    let _ = stream.set_write_timeout(Some(wait));
    let request = format!("GET / HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte), Ok(1))
}

/// Connects the `mixburn serve` worker at `url`, with `token` when its server asks for one:
/// `ws://host:port` (clear text, for a server on loopback) or `iroh://<id>@host:port` (QUIC
/// with TLS 1.3, direct, no relays: the connection fails unless the server holds the secret
/// key of the public key `<id>`). Fails, naming the worker, when it cannot be reached, is not
/// the server named, or refuses the token.
#[cfg(feature = "remote")]
pub fn connect(url: &str, token: Option<&str>) -> Result<Device> {
    use burn::remote::RemoteHost;
    let worker_err = |reason: String| GmmError::Worker {
        worker: url.to_string(),
        iteration: None,
        reason,
    };
    let mut host = if url.starts_with("ws://") || url.starts_with("wss://") {
        RemoteHost::websocket(url)
    } else if let Some(rest) = url.strip_prefix("iroh://") {
        RemoteHost::iroh(iroh_host(rest).map_err(worker_err)?)
    } else {
        return Err(worker_err(
            "is not a worker address: write it as ws://host:port (loopback) or \
             iroh://<id>@host:port (as `mixburn serve` prints it)"
                .into(),
        ));
    };
    if let Some(t) = token {
        host = host.with_credential(t);
    }
    let device = Device::remote_options(&host)
        .init()
        .map_err(|e| worker_err(format!("cannot connect: {e}")))?;
    // A first round trip, so that a refused token or a dead server fails here, by name.
    let probe: Tensor<1> = Tensor::zeros([1], &device);
    probe
        .try_into_vec_as::<f32>()
        .map_err(|e| worker_err(format!("does not answer: {e}")))?;
    Ok(device)
}

/// `<id>@host:port`: the server's public key and every address `host` resolves to, dialled
/// directly (relays off).
#[cfg(feature = "remote")]
fn iroh_host(rest: &str) -> std::result::Result<burn::remote::IrohHost, String> {
    use burn::remote::{EndpointId, IrohHost, IrohRelays};
    use std::net::ToSocketAddrs;
    let (id, at) = rest
        .split_once('@')
        .ok_or("names no server key: write it as iroh://<id>@host:port")?;
    let id: EndpointId = id
        .parse()
        .map_err(|e| format!("has no valid server key before `@` ({e})"))?;
    let addrs: Vec<_> = at
        .to_socket_addrs()
        .map_err(|e| format!("has no address `host:port` after `@` ({e})"))?
        .collect();
    if addrs.is_empty() {
        return Err("has a host that resolves to no address".into());
    }
    Ok(addrs.into_iter().fold(
        IrohHost::new(id).with_relays(IrohRelays::Disabled),
        IrohHost::with_address,
    ))
}

/// Connecting needs Burn's remote backend (the `remote` feature).
#[cfg(not(feature = "remote"))]
pub fn connect(url: &str, _token: Option<&str>) -> Result<Device> {
    Err(GmmError::Worker {
        worker: url.to_string(),
        iteration: None,
        reason: "this build has no remote workers: build with the `remote` feature \
                 (cargo build --features remote)"
            .into(),
    })
}
