//! A small TCP proxy on 127.0.0.1 that can cut every connection through it on demand.
//!
//! Point a client at [`TcpProxy::addr`] instead of the server; every accepted
//! connection opens its own connection to the target and bytes are copied both ways
//! by two plain threads (so the proxy keeps working while the test's async runtime is
//! busy or blocked). [`TcpProxy::cut`] shuts down both sockets of every live
//! connection: each side sees its peer close the connection (FIN, not a silent
//! black hole). New connections are accepted as before right after a cut. If the
//! target refuses a connection, the client's connection is closed at once.
//! [`TcpProxy::retarget`] moves it to another server, as a virtual IP or a DNS name
//! moves to a promoted standby.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};

/// How long the proxy waits for the target to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A TCP proxy from a free loopback port to `target`. Dropping it stops accepting and
/// cuts every connection.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    /// Where new connections go.
    target: Mutex<SocketAddr>,
    /// Both sockets of every live connection, by connection number.
    live: Mutex<HashMap<u64, [TcpStream; 2]>>,
    next_id: AtomicU64,
    accepted: AtomicU64,
    cut: AtomicU64,
    stopping: AtomicBool,
}

impl Shared {
    fn target(&self) -> SocketAddr {
        *self.target.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn live(&self) -> MutexGuard<'_, HashMap<u64, [TcpStream; 2]>> {
        // A panicking copy thread cannot leave the map inconsistent.
        self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl TcpProxy {
    /// Listens on `127.0.0.1:0` and forwards to `target`.
    pub fn start(target: SocketAddr) -> Result<TcpProxy> {
        let listener =
            TcpListener::bind(("127.0.0.1", 0)).context("binding the proxy's listener")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            target: Mutex::new(target),
            live: Mutex::default(),
            next_id: AtomicU64::default(),
            accepted: AtomicU64::default(),
            cut: AtomicU64::default(),
            stopping: AtomicBool::default(),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("proxy-{}", addr.port()))
                .spawn(move || accept_loop(&listener, &shared))
                .context("spawning the proxy's accept thread")?
        };
        Ok(TcpProxy { addr, shared, acceptor: Some(acceptor) })
    }

    /// [`TcpProxy::start`] towards `127.0.0.1:port`.
    pub fn to_local_port(port: u16) -> Result<TcpProxy> {
        TcpProxy::start(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn target(&self) -> SocketAddr {
        self.shared.target()
    }

    /// Sends new connections to `target` from now on and cuts the live ones (which
    /// went to the old target), as a virtual IP that moves does; returns how many were
    /// cut.
    pub fn retarget(&self, target: SocketAddr) -> usize {
        *self.shared.target.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = target;
        self.cut()
    }

    /// Cuts every live connection (both sides see the connection closed) and returns
    /// how many there were.
    pub fn cut(&self) -> usize {
        let live: Vec<[TcpStream; 2]> = self.shared.live().drain().map(|(_, s)| s).collect();
        for [client, upstream] in &live {
            let _ = client.shutdown(Shutdown::Both);
            let _ = upstream.shutdown(Shutdown::Both);
        }
        self.shared.cut.fetch_add(live.len() as u64, Ordering::Relaxed);
        live.len()
    }

    /// Connections open through the proxy now.
    pub fn live_connections(&self) -> usize {
        self.shared.live().len()
    }

    /// Connections accepted (and forwarded) so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// Connections cut by [`TcpProxy::cut`] so far.
    pub fn cut_total(&self) -> u64 {
        self.shared.cut.load(Ordering::Relaxed)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the blocking accept().
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        self.cut();
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let client = match client {
            Ok(client) => client,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("tailbox-e2e proxy: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if let Err(e) = forward(client, shared.target(), shared) {
            eprintln!("tailbox-e2e proxy: {e:#}");
        }
    }
}

/// Connects to `target` for `client` and starts copying both ways. A refused target
/// closes `client` (by dropping it).
fn forward(client: TcpStream, target: SocketAddr, shared: &Arc<Shared>) -> Result<()> {
    let Ok(upstream) = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT) else {
        return Ok(());
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    shared.live().insert(id, [client.try_clone()?, upstream.try_clone()?]);
    shared.accepted.fetch_add(1, Ordering::Relaxed);

    let halves = Arc::new(AtomicU64::new(2));
    for (from, to, name) in
        [(client.try_clone()?, upstream.try_clone()?, "up"), (upstream, client, "down")]
    {
        let shared = Arc::clone(shared);
        let halves = Arc::clone(&halves);
        std::thread::Builder::new()
            .name(format!("proxy-{id}-{name}"))
            .spawn(move || {
                copy(from, to);
                // The last direction to finish forgets the connection.
                if halves.fetch_sub(1, Ordering::SeqCst) == 1 {
                    shared.live().remove(&id);
                }
            })
            .context("spawning a proxy copy thread")?;
    }
    Ok(())
}

/// Copies until EOF or an error. EOF passes on as a half close; an error (the other
/// side reset, or a cut) closes both sockets.
fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
