//! # TCP services on a worker
//!
//! What it is: [`Services`], an [`App`] that serves TCP on one worker's stack, driven only by
//! the stack's edge-triggered [`TcpEvent`]s: a connection is visited when something happened
//! to it, never in a scan over all connections. The services, one module each:
//! - [`sink`]: reads and discards everything (netperf's TCP_STREAM receiver);
//! - [`source`]: writes a repeating test pattern until the peer closes (or a byte limit);
//! - [`echo`]: echoes every byte, and the sockperf variant that answers only messages that ask
//!   for a reply (sockperf's 14-byte header, see TESTING.md);
//! - [`iperf3`]: an iperf3 server (control connection, JSON parameters, data streams on the
//!   same port, forward and `-R` reverse, results exchange), so the stock `iperf3 -c` measures
//!   an xdpos server;
//! - [`http`]: an HTTP/1.1 responder with a static body (keep-alive, pipelining,
//!   `Content-Length` always), what `curl` and `wrk` talk to.
//!
//! Servers listen on the ports of [`ServicesConfig`]; a worker can also open client
//! connections with a [`Role`] ([`Services::connect`]): the benchmarks' xdpos senders, tests'
//! sources and sinks. The daemon builds the same [`ServicesConfig`] from its configuration.
//! Every HTTP listener has its [`http::Server`] (the responses' fixed parts, built once, the
//! `Date` line, brought up to date on every poll), shared by its connections.
//!
//! What it owns: its listeners, a table of per-connection state indexed by the stack's
//! connection slot ([`TcpHandle::index`], sized to the stack's `max_connections` at
//! construction), one shared scratch buffer for copies, the iperf3 test in progress, and
//! its counters.
//!
//! What it never does: allocate, log or block per segment or per event on the data path
//! (sink, source, echo, sockperf and iperf3 data streams move bytes between the stack's
//! buffers and the fixed scratch buffer; only iperf3's control messages, a few per test,
//! allocate), hold more than the stack's bounded buffers (back-pressure: echo reads only as
//! much as the send buffer can take, so a peer that does not read its echoes sees a closed
//! window, not a growing queue), or scan connections (the HTTP idle timeout looks at a fixed 8
//! slots per poll, a clock hand over the table).
//!
//! Invariants: a table entry is `Some` exactly while its handle is open (accepted or
//! connected and not yet closed); every error ends the connection with `close` (or `abort`),
//! which invalidates the handle, and frees the entry.
//!
//! References: RFC 9293 §3.9 (the user interface this drives), iperf3's protocol
//! (`iperf_api.c`, `iperf_server_api.c`), sockperf's message format (TESTING.md).

pub mod echo;
pub mod http;
pub mod iperf3;
pub mod sink;
pub mod source;

use std::net::{Ipv4Addr, SocketAddrV4};

use libos::tcp::{ListenHandle, Ready, TcpError, TcpEvent, TcpHandle};
use libos::{Instant, Stack};

use crate::worker::App;

/// Size of the shared copy buffer (echo, sockperf).
pub const SCRATCH: usize = 64 * 1024;

/// Connection slots the HTTP idle sweep looks at per poll.
const SWEEP_PER_POLL: usize = 8;

/// Which TCP services listen where (all optional); what `xdpos echo --tcp-* PORT` sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServicesConfig {
    /// TCP echo port.
    pub echo: Option<u16>,
    /// TCP sink (discard) port.
    pub sink: Option<u16>,
    /// TCP source (chargen-like) port.
    pub source: Option<u16>,
    /// sockperf server port (TCP framing).
    pub sockperf: Option<u16>,
    /// iperf3 server port.
    pub iperf3: Option<u16>,
    /// HTTP/1.1 responder port.
    pub http: Option<u16>,
    /// What the HTTP responder on `http` serves (more HTTP listeners, each with its own
    /// configuration: [`Services::listen_http`]).
    pub http_cfg: http::HttpConfig,
    /// Accept queue of each listener.
    pub backlog: usize,
}

impl ServicesConfig {
    /// Whether any service listens.
    pub fn any(&self) -> bool {
        self.listeners().next().is_some()
    }

    /// The (port, service) pairs to listen on.
    pub fn listeners(&self) -> impl Iterator<Item = (u16, Service)> + '_ {
        [
            (self.echo, Service::Echo),
            (self.sink, Service::Sink),
            (self.source, Service::Source),
            (self.sockperf, Service::Sockperf),
            (self.iperf3, Service::Iperf3),
            (self.http, Service::Http(0)),
        ]
        .into_iter()
        .filter_map(|(p, s)| p.map(|p| (p, s)))
    }
}

/// A service behind a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Echo every byte.
    Echo,
    /// Discard every byte.
    Sink,
    /// Send the test pattern until the peer closes.
    Source,
    /// sockperf server.
    Sockperf,
    /// iperf3 server.
    Iperf3,
    /// HTTP/1.1 responder: the index of its [`http::Server`] (what it serves).
    Http(u16),
}

/// What a client connection opened by [`Services::connect`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Read and discard until the peer closes, then close.
    Sink,
    /// Write the test pattern in writes of `write` bytes (at most [`SCRATCH`]); after `limit`
    /// bytes (if any) shut down the sending side, then read until the peer closes.
    Source {
        /// Bytes per `write` call (netperf's send size).
        write: usize,
        /// Total bytes to send (`None`: until the peer closes or the worker stops).
        limit: Option<u64>,
    },
    /// Echo every byte.
    Echo,
}

/// Counters of the services of one worker (single writer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServiceStats {
    /// Connections accepted on the listeners.
    pub accepted: u64,
    /// Client connections opened.
    pub connected: u64,
    /// Connections closed normally (both sides done).
    pub closed: u64,
    /// Connections that ended in a reset, a timeout or a protocol error.
    pub failed: u64,
    /// Bytes read (every service).
    pub bytes_in: u64,
    /// Bytes written (every service).
    pub bytes_out: u64,
    /// sockperf messages answered.
    pub sockperf_replies: u64,
    /// iperf3 tests completed (results exchanged).
    pub iperf3_tests: u64,
    /// iperf3 connections refused (a test was running, or a bad cookie or parameters).
    pub iperf3_refused: u64,
    /// The HTTP responders' counters (every listener's).
    pub http: http::HttpStats,
}

/// Per-connection state.
#[derive(Debug)]
pub(crate) enum State {
    Sink,
    Source(source::Source),
    Echo(echo::Echo),
    Sockperf(echo::Sockperf),
    Iperf(iperf3::Conn),
    Http(http::Conn),
}

/// One open connection.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) h: TcpHandle,
    pub(crate) state: State,
    /// Bytes read from and written to this connection.
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
}

/// What a handler wants done with its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Keep it open.
    Keep,
    /// Both directions are done: close it gracefully.
    Close,
    /// It failed (reset, timeout, protocol error): close it and count a failure.
    Fail,
}

/// The TCP services of one worker (see the module documentation).
#[derive(Debug)]
pub struct Services {
    listeners: Vec<(ListenHandle, Service)>,
    conns: Vec<Option<Entry>>,
    scratch: Box<[u8]>,
    iperf: iperf3::Server,
    /// One per HTTP configuration served (index 0: `ServicesConfig::http_cfg`).
    http: Vec<http::Server>,
    /// The next connection slot the idle sweep looks at.
    hand: usize,
    stats: ServiceStats,
}

impl Services {
    /// Opens a listener for every service of `cfg` on `stack` (port on every interface
    /// address) and sizes the connection table to the stack's TCP configuration.
    pub fn new(cfg: &ServicesConfig, stack: &mut Stack) -> Result<Services, TcpError> {
        let mut listeners = Vec::new();
        let backlog = if cfg.backlog == 0 { 1024 } else { cfg.backlog };
        for (port, service) in cfg.listeners() {
            let at = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port);
            listeners.push((stack.tcp_listen(at, backlog)?, service));
        }
        let n = stack.tcp().config().max_connections;
        Ok(Services {
            listeners,
            conns: (0..n).map(|_| None).collect(),
            scratch: vec![0u8; SCRATCH].into_boxed_slice(),
            iperf: iperf3::Server::default(),
            http: vec![http::Server::new(&cfg.http_cfg)],
            hand: 0,
            stats: ServiceStats::default(),
        })
    }

    /// Opens one more listener, for `service` on `at` (`0.0.0.0`: every address of the stack);
    /// the daemon adds services this way, on start and on reload, between batches.
    pub fn listen(
        &mut self,
        stack: &mut Stack,
        at: SocketAddrV4,
        service: Service,
        backlog: usize,
    ) -> Result<ListenHandle, TcpError> {
        let l = stack.tcp_listen(at, if backlog == 0 { 1024 } else { backlog })?;
        self.listeners.push((l, service));
        Ok(l)
    }

    /// Closes listener `l`: connections not yet accepted are reset; accepted connections are
    /// served until they end (a reload that removes a service drops no established
    /// connection).
    pub fn unlisten(
        &mut self,
        now: Instant,
        stack: &mut Stack,
        l: ListenHandle,
    ) -> Result<(), TcpError> {
        self.listeners.retain(|(x, _)| *x != l);
        stack.tcp_mut().close_listener(now, l)
    }

    /// Opens one more HTTP listener on `at`, serving `cfg` (the daemon's `[[services]]` of
    /// kind `http`, on start and on reload). Listeners with the same configuration share one
    /// [`http::Server`]; a server stays while connections may use it (a reload that changes a
    /// body serves the old body to the connections already open, the new one to new ones).
    pub fn listen_http(
        &mut self,
        stack: &mut Stack,
        at: SocketAddrV4,
        cfg: &http::HttpConfig,
        backlog: usize,
    ) -> Result<ListenHandle, TcpError> {
        let i = match self.http.iter().position(|s| s.serves(cfg)) {
            Some(i) => i,
            None => {
                self.http.push(http::Server::new(cfg));
                self.http.len() - 1
            }
        };
        let l = stack.tcp_listen(at, if backlog == 0 { 1024 } else { backlog })?;
        self.listeners.push((l, Service::Http(i as u16)));
        Ok(l)
    }

    /// Counters so far.
    pub fn stats(&self) -> ServiceStats {
        let mut http = http::HttpStats::default();
        for s in &self.http {
            http.add(&s.stats());
        }
        ServiceStats { http, ..self.stats }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.conns.iter().filter(|c| c.is_some()).count()
    }

    /// Bytes read from and written to connection `h` so far (`None` once it is closed).
    pub fn bytes(&self, h: TcpHandle) -> Option<(u64, u64)> {
        let e = self.conns.get(h.index())?.as_ref()?;
        (e.h == h).then_some((e.bytes_in, e.bytes_out))
    }

    /// The iperf3 server's record of its tests (bytes per stream of the last one).
    pub fn iperf3(&self) -> &iperf3::Server {
        &self.iperf
    }

    /// Opens a client connection to `remote` that plays `role` (the SYN leaves with the next
    /// `poll_tx`).
    pub fn connect(
        &mut self,
        now: Instant,
        stack: &mut Stack,
        remote: SocketAddrV4,
        role: Role,
    ) -> Result<TcpHandle, TcpError> {
        let h = stack.tcp_connect(now, remote, None)?;
        let state = match role {
            Role::Sink => State::Sink,
            Role::Echo => State::Echo(echo::Echo),
            Role::Source { write, limit } => State::Source(source::Source::new(write, limit)),
        };
        self.stats.connected += 1;
        self.insert(h, state);
        Ok(h)
    }

    fn insert(&mut self, h: TcpHandle, state: State) {
        if let Some(slot) = self.conns.get_mut(h.index()) {
            *slot = Some(Entry { h, state, bytes_in: 0, bytes_out: 0 });
        }
    }

    /// Accepts everything waiting on listener `l`.
    fn accept(&mut self, now: Instant, stack: &mut Stack, l: ListenHandle) {
        let Some(&(_, service)) = self.listeners.iter().find(|(x, _)| *x == l) else { return };
        while let Ok(h) = stack.tcp_mut().accept(l) {
            self.stats.accepted += 1;
            let state = match service {
                Service::Sink => State::Sink,
                Service::Source => State::Source(source::Source::new(SCRATCH, None)),
                Service::Echo => State::Echo(echo::Echo),
                Service::Sockperf => State::Sockperf(echo::Sockperf::default()),
                Service::Iperf3 => State::Iperf(iperf3::Conn::default()),
                Service::Http(server) => State::Http(http::Conn::new(server, now)),
            };
            self.insert(h, state);
            // Whatever arrived with the handshake (and a source's first writes).
            self.visit(now, stack, h, Ready::READABLE | Ready::WRITABLE);
        }
    }

    /// Runs connection `h`'s handler for `ready` and applies its verdict.
    fn visit(&mut self, now: Instant, stack: &mut Stack, h: TcpHandle, ready: Ready) {
        let Some(Some(e)) = self.conns.get_mut(h.index()) else { return };
        if e.h != h {
            return;
        }
        if let State::Iperf(_) = e.state {
            let next = self.iperf.on_event(now, stack, &mut self.conns, h, ready);
            self.apply(now, stack, h, next);
            self.iperf_housekeeping(now, stack);
            return;
        }
        let (bi, bo) = (e.bytes_in, e.bytes_out);
        let tcp = stack.tcp_mut();
        let next = match &mut e.state {
            State::Sink => sink::on_event(tcp, e.h, ready, &mut e.bytes_in),
            State::Source(s) => s.on_event(tcp, e.h, ready, &mut e.bytes_in, &mut e.bytes_out),
            State::Echo(s) => {
                s.on_event(tcp, e.h, ready, &mut self.scratch, &mut e.bytes_in, &mut e.bytes_out)
            }
            State::Sockperf(s) => {
                let (next, replies) = s.on_event(
                    tcp,
                    e.h,
                    ready,
                    &mut self.scratch,
                    &mut e.bytes_in,
                    &mut e.bytes_out,
                );
                self.stats.sockperf_replies += replies;
                next
            }
            State::Http(c) => match self.http.get_mut(usize::from(c.server)) {
                Some(srv) => {
                    c.on_event(now, tcp, e.h, ready, srv, &mut e.bytes_in, &mut e.bytes_out)
                }
                None => Next::Fail,
            },
            State::Iperf(_) => Next::Keep,
        };
        self.stats.bytes_in += e.bytes_in - bi;
        self.stats.bytes_out += e.bytes_out - bo;
        self.apply(now, stack, h, next);
    }

    fn apply(&mut self, now: Instant, stack: &mut Stack, h: TcpHandle, next: Next) {
        match next {
            Next::Keep => {}
            Next::Close => self.end(now, stack, h, false),
            Next::Fail => self.end(now, stack, h, true),
        }
    }

    /// Closes `h` and frees its entry.
    fn end(&mut self, now: Instant, stack: &mut Stack, h: TcpHandle, failed: bool) {
        let tcp = stack.tcp_mut();
        let readable = tcp.readable(h).unwrap_or(0);
        // A close with unread data is an abort (RST); a failed connection is closed as it is.
        let _ = if failed && readable > 0 { tcp.abort(now, h) } else { tcp.close(now, h) };
        if let Some(slot) = self.conns.get_mut(h.index()) {
            if slot.as_ref().is_some_and(|e| e.h == h) {
                *slot = None;
            }
        }
        if failed {
            self.stats.failed += 1;
        } else {
            self.stats.closed += 1;
        }
    }

    /// Looks at the next [`SWEEP_PER_POLL`] connection slots (a clock hand over the table, so
    /// a poll costs the same however many connections are open) and closes HTTP connections
    /// idle past their timeout. Every slot is seen once per `max_connections / SWEEP_PER_POLL`
    /// polls, well within a timeout of seconds.
    fn sweep_idle(&mut self, now: Instant, stack: &mut Stack) {
        let n = self.conns.len();
        for _ in 0..SWEEP_PER_POLL.min(n) {
            let i = self.hand;
            self.hand = (i + 1) % n;
            let Some(Some(e)) = self.conns.get(i) else { continue };
            let State::Http(c) = &e.state else { continue };
            let Some(srv) = self.http.get_mut(usize::from(c.server)) else { continue };
            if c.expired(now, srv) {
                srv.count_idle();
                let h = e.h;
                self.end(now, stack, h, false);
            }
        }
    }

    /// Closes the connections of a finished or abandoned iperf3 test.
    fn iperf_housekeeping(&mut self, now: Instant, stack: &mut Stack) {
        let t = self.iperf.take_totals();
        self.stats.iperf3_tests += t.tests;
        self.stats.iperf3_refused += t.refused;
        self.stats.bytes_in += t.bytes_in;
        self.stats.bytes_out += t.bytes_out;
        while let Some((h, failed)) = self.iperf.pop_close() {
            self.end(now, stack, h, failed);
        }
    }
}

impl App for Services {
    fn poll(&mut self, now: Instant, stack: &mut Stack) {
        if self.listeners.iter().any(|(_, s)| matches!(s, Service::Http(_))) {
            for s in &mut self.http {
                s.tick();
            }
            self.sweep_idle(now, stack);
        }
        while let Some(ev) = stack.tcp_mut().poll_event() {
            match ev {
                TcpEvent::Acceptable(l) => self.accept(now, stack, l),
                TcpEvent::Conn { socket, ready } => self.visit(now, stack, socket, ready),
            }
        }
        if self.iperf.busy() {
            self.iperf.on_poll(now, stack, &mut self.conns);
            self.iperf_housekeeping(now, stack);
        }
    }
}

/// The test pattern: byte `i` of a stream is `PATTERN[i % PATTERN_PERIOD]`, a period of 251
/// (prime, so it never lines up with segment or buffer sizes). [`pattern_at`] lends a slice
/// that continues the stream at any offset.
pub const PATTERN_PERIOD: usize = 251;

/// `SCRATCH + PATTERN_PERIOD` bytes of the pattern, so a slice of up to [`SCRATCH`] bytes
/// starts at every phase.
fn pattern_table() -> &'static [u8] {
    static TABLE: std::sync::OnceLock<Box<[u8]>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| (0..SCRATCH + PATTERN_PERIOD).map(pattern_byte).collect())
}

/// Byte `i` of the test pattern.
pub fn pattern_byte(i: usize) -> u8 {
    let k = (i % PATTERN_PERIOD) as u32;
    (k.wrapping_mul(167).wrapping_add(13) % 256) as u8
}

/// `len` (at most [`SCRATCH`]) bytes of the pattern starting at stream offset `offset`.
pub fn pattern_at(offset: u64, len: usize) -> &'static [u8] {
    let phase = (offset % PATTERN_PERIOD as u64) as usize;
    &pattern_table()[phase..phase + len.min(SCRATCH)]
}

#[cfg(test)]
mod tests;
