//! A fault-injecting TCP proxy in front of an S3 endpoint, in plain std.
//!
//! `start(target, probability)` listens on `127.0.0.1:0` and forwards every
//! accepted connection to `target`. HTTP clients keep connections alive, so a
//! decision made once per connection would dry up as soon as the client's pool
//! holds only healthy connections. The proxy therefore rolls the dice at the
//! start of every *request* it sees on a connection (the first bytes from the
//! client after the server has spoken, or the first bytes of a connection):
//! with `probability` it injects exactly one fault, chosen uniformly among
//!
//! * [`Fault::Close`]: close the connection at once, forwarding nothing;
//! * [`Fault::SlowDown`]: answer `503 Service Unavailable` with an S3
//!   `SlowDown` XML error (`Content-Length`, `Connection: close`) and close;
//! * [`Fault::Stall`]: swallow the request, send nothing for `stall`
//!   (3 s by default), then close;
//! * [`Fault::Cut`]: forward normally, but cut both directions after a random
//!   number of bytes (log-uniform, so the cut lands anywhere from the request
//!   headers to several requests later on a long-lived connection).
//!
//! Otherwise it pipes both ways. Randomness is a seeded xorshift (the crate's
//! `Rng`), one stream per connection derived from the proxy's seed; `start`
//! takes the seed from `LIFELINE_FAULT_SEED` or the clock and prints it.
//! [`Counters`] tell the test what really happened. Dropping the proxy stops
//! it and shuts down every connection still open.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::Rng;

const BUF: usize = 64 * 1024;

/// The body of the injected 503.
pub const SLOW_DOWN_BODY: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
    <Error><Code>SlowDown</Code><Message>injected</Message></Error>";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Close,
    SlowDown,
    Stall,
    Cut,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Chance that a request gets a fault, in 0.0..=1.0.
    pub probability: f64,
    pub seed: u64,
    /// How long a stalled request hangs before the connection is closed.
    pub stall: Duration,
    /// Range of the byte budget of a `Cut` (log-uniform, both directions together).
    pub cut_min: u64,
    pub cut_max: u64,
    /// Added before every request is forwarded, fault or not: slows a run down enough for a test
    /// to act in the middle of it.
    pub delay: Duration,
}

impl Config {
    pub fn new(probability: f64, seed: u64) -> Config {
        assert!(
            (0.0..=1.0).contains(&probability),
            "fault probability {probability} is not in 0..=1"
        );
        Config {
            probability,
            seed,
            stall: Duration::from_secs(3),
            cut_min: 64,
            cut_max: 4 << 20,
            delay: Duration::ZERO,
        }
    }
}

/// Live counters, updated by the proxy threads.
#[derive(Debug, Default)]
pub struct Counters {
    pub connections: AtomicU64,
    /// Request starts seen (see the module docs for how they are detected).
    pub requests: AtomicU64,
    pub closed: AtomicU64,
    pub slow_down: AtomicU64,
    pub stalled: AtomicU64,
    /// Cuts decided; `cuts_fired` counts those whose budget actually ran out.
    pub cuts_armed: AtomicU64,
    pub cuts_fired: AtomicU64,
    pub upstream_errors: AtomicU64,
    pub bytes_up: AtomicU64,
    pub bytes_down: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub connections: u64,
    pub requests: u64,
    pub closed: u64,
    pub slow_down: u64,
    pub stalled: u64,
    pub cuts_armed: u64,
    pub cuts_fired: u64,
    pub upstream_errors: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
}

impl Counters {
    pub fn snapshot(&self) -> Stats {
        let g = |a: &AtomicU64| a.load(Ordering::SeqCst);
        Stats {
            connections: g(&self.connections),
            requests: g(&self.requests),
            closed: g(&self.closed),
            slow_down: g(&self.slow_down),
            stalled: g(&self.stalled),
            cuts_armed: g(&self.cuts_armed),
            cuts_fired: g(&self.cuts_fired),
            upstream_errors: g(&self.upstream_errors),
            bytes_up: g(&self.bytes_up),
            bytes_down: g(&self.bytes_down),
        }
    }
}

impl Stats {
    /// Faults that really hit a client (armed cuts that never fired excluded).
    pub fn faults(&self) -> u64 {
        self.closed + self.slow_down + self.stalled + self.cuts_fired
    }

    /// Kinds of fault that happened at least once.
    pub fn kinds_seen(&self) -> usize {
        [self.closed, self.slow_down, self.stalled, self.cuts_fired]
            .iter()
            .filter(|&&n| n > 0)
            .count()
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Stats) -> Stats {
        Stats {
            connections: self.connections - earlier.connections,
            requests: self.requests - earlier.requests,
            closed: self.closed - earlier.closed,
            slow_down: self.slow_down - earlier.slow_down,
            stalled: self.stalled - earlier.stalled,
            cuts_armed: self.cuts_armed - earlier.cuts_armed,
            cuts_fired: self.cuts_fired - earlier.cuts_fired,
            upstream_errors: self.upstream_errors - earlier.upstream_errors,
            bytes_up: self.bytes_up - earlier.bytes_up,
            bytes_down: self.bytes_down - earlier.bytes_down,
        }
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} faults in {} requests over {} connections (closed {}, 503 SlowDown {}, \
             stalled {}, cut {} of {} armed; upstream errors {}; {} B up, {} B down)",
            self.faults(),
            self.requests,
            self.connections,
            self.closed,
            self.slow_down,
            self.stalled,
            self.cuts_fired,
            self.cuts_armed,
            self.upstream_errors,
            self.bytes_up,
            self.bytes_down
        )
    }
}

/// `http://127.0.0.1:3900` (or `host:port`, with or without a path) -> socket address.
#[track_caller]
pub fn endpoint_addr(url: &str) -> SocketAddr {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url);
    let hostport = rest.split('/').next().unwrap_or(rest);
    hostport
        .to_socket_addrs()
        .unwrap_or_else(|e| panic!("cannot resolve endpoint {url:?}: {e}"))
        .next()
        .unwrap_or_else(|| panic!("endpoint {url:?} resolves to no address"))
}

struct Shared {
    stop: AtomicBool,
    live: Mutex<HashMap<u64, Arc<Conn>>>,
    counters: Arc<Counters>,
    config: Config,
    target: SocketAddr,
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    pub counters: Arc<Counters>,
    pub seed: u64,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

/// A proxy to `target` injecting faults into `probability` of the requests.
/// The seed comes from `LIFELINE_FAULT_SEED` or the clock, and is printed.
pub fn start(target: SocketAddr, probability: f64) -> FaultProxy {
    let seed = match std::env::var("LIFELINE_FAULT_SEED") {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("LIFELINE_FAULT_SEED={s:?} is not a u64")),
        Err(_) => {
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            t.as_nanos() as u64 ^ (u64::from(std::process::id()) << 32)
        }
    };
    eprintln!(
        "fault proxy -> {target}: probability {probability}, seed {seed} \
         (set LIFELINE_FAULT_SEED={seed} to replay)"
    );
    start_with(target, Config::new(probability, seed))
}

pub fn start_with(target: SocketAddr, config: Config) -> FaultProxy {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind fault proxy");
    let addr = listener.local_addr().unwrap();
    let counters = Arc::new(Counters::default());
    let seed = config.seed;
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        live: Mutex::new(HashMap::new()),
        counters: counters.clone(),
        config,
        target,
    });
    let sh = shared.clone();
    let accept = thread::Builder::new()
        .name("fault-proxy-accept".into())
        .spawn(move || accept_loop(listener, sh))
        .expect("spawn fault proxy");
    FaultProxy {
        addr,
        counters,
        seed,
        shared,
        accept: Some(accept),
    }
}

impl FaultProxy {
    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stats(&self) -> Stats {
        self.counters.snapshot()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Unblock accept().
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        let live: Vec<Arc<Conn>> = self
            .shared
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, c)| c)
            .collect();
        for c in live {
            c.kill();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut next_id: u64 = 0;
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(client) = stream else {
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        next_id += 1;
        let id = next_id;
        shared.counters.connections.fetch_add(1, Ordering::SeqCst);
        let rng = Rng::new(shared.config.seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let sh = shared.clone();
        let spawned = thread::Builder::new()
            .name(format!("fault-proxy-{id}"))
            .spawn(move || handle(id, client, rng, sh));
        if spawned.is_err() {
            // Out of threads: the connection is dropped, which is a fault too.
            shared.counters.closed.fetch_add(1, Ordering::SeqCst);
        }
    }
}

enum Cut {
    Off,
    Armed(u64),
    Fired,
}

struct Conn {
    client: TcpStream,
    server: TcpStream,
    /// Set when the server sent bytes since the client last sent some.
    server_spoke: AtomicBool,
    cut: Mutex<Cut>,
    client_write: Mutex<()>,
    counters: Arc<Counters>,
}

impl Conn {
    fn kill(&self) {
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.server.shutdown(Shutdown::Both);
    }

    fn cut_pending(&self) -> bool {
        !matches!(
            *self.cut.lock().unwrap_or_else(|e| e.into_inner()),
            Cut::Off
        )
    }

    /// Forwards `data` (client -> server when `up`), honouring an armed cut.
    /// Returns false when the connection is finished.
    fn forward(&self, up: bool, data: &[u8]) -> bool {
        let (allowed, fire) = {
            let mut cut = self.cut.lock().unwrap_or_else(|e| e.into_inner());
            match *cut {
                Cut::Off => (data.len(), false),
                Cut::Fired => (0, true),
                Cut::Armed(left) => {
                    if (data.len() as u64) <= left {
                        *cut = Cut::Armed(left - data.len() as u64);
                        (data.len(), false)
                    } else {
                        *cut = Cut::Fired;
                        self.counters.cuts_fired.fetch_add(1, Ordering::SeqCst);
                        (left as usize, true)
                    }
                }
            }
        };
        let part = &data[..allowed];
        let ok = if up {
            self.counters
                .bytes_up
                .fetch_add(part.len() as u64, Ordering::SeqCst);
            (&self.server).write_all(part).is_ok()
        } else {
            self.counters
                .bytes_down
                .fetch_add(part.len() as u64, Ordering::SeqCst);
            let _w = self.client_write.lock().unwrap_or_else(|e| e.into_inner());
            (&self.client).write_all(part).is_ok()
        };
        if fire || !ok {
            self.kill();
            return false;
        }
        true
    }

    fn slow_down(&self) {
        let response = format!(
            "HTTP/1.1 503 Service Unavailable\r\n\
             Content-Type: application/xml\r\n\
             Content-Length: {}\r\n\
             Connection: close\r\n\
             \r\n\
             {}",
            SLOW_DOWN_BODY.len(),
            SLOW_DOWN_BODY
        );
        {
            let _w = self.client_write.lock().unwrap_or_else(|e| e.into_inner());
            let _ = (&self.client).write_all(response.as_bytes());
            let _ = self.client.shutdown(Shutdown::Write);
        }
        let _ = self.server.shutdown(Shutdown::Both);
        // Drain what the client still sends (a request body) so that closing
        // does not reset the connection before the client has read the 503.
        self.drain_client(Duration::from_secs(1));
        self.kill();
    }

    fn stall(&self, how_long: Duration) {
        // Nothing is forwarded and nothing answered; the server side stays
        // idle so its reader thread does not close the client early.
        self.drain_client(how_long);
        self.kill();
    }

    /// Reads and discards client bytes for up to `how_long`, or until EOF/error.
    fn drain_client(&self, how_long: Duration) {
        let deadline = Instant::now() + how_long;
        let mut buf = vec![0u8; BUF];
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let wait = (deadline - now).min(Duration::from_millis(200));
            if self.client.set_read_timeout(Some(wait)).is_err() {
                break;
            }
            match (&self.client).read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }
}

fn chance(rng: &mut Rng, p: f64) -> bool {
    let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    u < p
}

fn log_uniform(rng: &mut Rng, min: u64, max: u64) -> u64 {
    let (lo, hi) = ((min.max(1)) as f64, (max.max(min.max(1))) as f64);
    let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    (lo.ln() + u * (hi.ln() - lo.ln())).exp() as u64
}

fn handle(id: u64, client: TcpStream, mut rng: Rng, shared: Arc<Shared>) {
    let counters = shared.counters.clone();
    let server = match TcpStream::connect_timeout(&shared.target, Duration::from_secs(5)) {
        Ok(s) => s,
        Err(_) => {
            counters.upstream_errors.fetch_add(1, Ordering::SeqCst);
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let conn = Arc::new(Conn {
        client,
        server,
        server_spoke: AtomicBool::new(false),
        cut: Mutex::new(Cut::Off),
        client_write: Mutex::new(()),
        counters: counters.clone(),
    });
    shared
        .live
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, conn.clone());
    if shared.stop.load(Ordering::SeqCst) {
        conn.kill();
    }

    let down_conn = conn.clone();
    let down = thread::Builder::new()
        .name(format!("fault-proxy-{id}-down"))
        .spawn(move || pipe_down(&down_conn));
    match down {
        Ok(down) => {
            pipe_up(&conn, &mut rng, &shared.config);
            let _ = down.join();
        }
        Err(_) => {
            counters.closed.fetch_add(1, Ordering::SeqCst);
            conn.kill();
        }
    }
    shared
        .live
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id);
}

/// Client -> server, deciding faults at every request start.
fn pipe_up(conn: &Conn, rng: &mut Rng, config: &Config) {
    let counters = &conn.counters;
    let mut buf = vec![0u8; BUF];
    let mut first = true;
    loop {
        let n = match (&conn.client).read(&mut buf) {
            Ok(0) => {
                let _ = conn.server.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => {
                conn.kill();
                return;
            }
        };
        let new_request = first || conn.server_spoke.swap(false, Ordering::SeqCst);
        first = false;
        if new_request {
            counters.requests.fetch_add(1, Ordering::SeqCst);
            thread::sleep(config.delay);
            if !conn.cut_pending() && chance(rng, config.probability) {
                match rng.next_u64() % 4 {
                    0 => {
                        counters.closed.fetch_add(1, Ordering::SeqCst);
                        conn.kill();
                        return;
                    }
                    1 => {
                        counters.slow_down.fetch_add(1, Ordering::SeqCst);
                        conn.slow_down();
                        return;
                    }
                    2 => {
                        counters.stalled.fetch_add(1, Ordering::SeqCst);
                        conn.stall(config.stall);
                        return;
                    }
                    _ => {
                        counters.cuts_armed.fetch_add(1, Ordering::SeqCst);
                        let budget = log_uniform(rng, config.cut_min, config.cut_max);
                        *conn.cut.lock().unwrap_or_else(|e| e.into_inner()) = Cut::Armed(budget);
                    }
                }
            }
        }
        if !conn.forward(true, &buf[..n]) {
            return;
        }
    }
}

/// Server -> client.
fn pipe_down(conn: &Conn) {
    let mut buf = vec![0u8; BUF];
    loop {
        let n = match (&conn.server).read(&mut buf) {
            Ok(0) => {
                let _w = conn.client_write.lock().unwrap_or_else(|e| e.into_inner());
                let _ = conn.client.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => {
                conn.kill();
                return;
            }
        };
        // Before the client can see the response, so its next request is
        // recognised as one.
        conn.server_spoke.store(true, Ordering::SeqCst);
        if !conn.forward(false, &buf[..n]) {
            return;
        }
    }
}
