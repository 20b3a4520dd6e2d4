//! # `/metrics`, `/healthz`, `/readyz`
//!
//! What it is: a minimal HTTP/1.1 server for the scraper and the orchestrator's probes, on a
//! thread of the control side ([`serve`]). One connection at a time (Prometheus scrapes
//! serially; probes are tiny), `Connection: close` after every answer.
//!
//! Bounds: a request head larger than [`MAX_REQUEST`] bytes gets 431; a client that sends
//! nothing for [`IO_TIMEOUT`] is dropped, and so is one that does not read the answer within
//! it; methods other than GET and HEAD get 405, other paths 404. A scrape reads cells and
//! kernel counters; it never waits for a worker, so neither a slow scraper nor a stuck one
//! can slow the fast path.
//!
//! Endpoints: `/metrics` (text format 0.0.4), `/healthz` (200 `ok` while the process works,
//! [`Registry::set_healthy`]), `/readyz` (200 `ready` once the service serves traffic,
//! [`Registry::set_ready`], 503 `not ready` before, and 503 `stalled: worker N (no heartbeat
//! for S s)` while a worker's loop is stuck, [`Registry::readiness`]), `/capture` (a pcap stream for `xdpos capture`, on a
//! thread of its own, see [`crate::capture`]).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::Registry;

/// Largest request head accepted.
pub const MAX_REQUEST: usize = 8 * 1024;
/// Longest wait for a client to send its request or read the answer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the accept loop looks at its stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(10);

/// A running endpoint; stops (and joins its thread) when dropped.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// The address it listens on (the port chosen by the kernel when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Listens on `addr` and serves `registry` until the returned [`Server`] is dropped.
pub fn serve(addr: SocketAddr, registry: Arc<Registry>) -> io::Result<Server> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new().name("xdpos-metrics".into()).spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((s, peer)) => {
                    if let Err(e) = handle(s, &registry) {
                        tracing::debug!(%peer, error = %e, "metrics: request failed");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(ACCEPT_POLL),
                Err(e) => {
                    tracing::debug!(error = %e, "metrics: accept failed");
                    std::thread::sleep(ACCEPT_POLL);
                }
            }
        }
    })?;
    Ok(Server { addr, stop, thread: Some(thread) })
}

fn handle(mut s: TcpStream, registry: &Arc<Registry>) -> io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut n = 0;
    loop {
        if n == buf.len() {
            respond(&mut s, 431, "text/plain", b"request head too large\n", false)?;
            // Read what the client already sent, so closing sends a FIN rather than a reset
            // that could destroy the answer before the client reads it.
            s.set_nonblocking(true)?;
            while matches!(s.read(&mut buf), Ok(k) if k > 0) {}
            return Ok(());
        }
        let k = s.read(&mut buf[n..])?;
        if k == 0 {
            return Ok(());
        }
        n += k;
        if buf[..n].windows(4).any(|w| w == b"\r\n\r\n")
            || buf[..n].windows(2).any(|w| w == b"\n\n")
        {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf[..n]);
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return respond(&mut s, 405, "text/plain", b"only GET and HEAD\n", false);
    }
    match path {
        "/metrics" => {
            let body = registry.render();
            respond(
                &mut s,
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                body.as_bytes(),
                head_only,
            )
        }
        "/healthz" => match registry.healthy() {
            true => respond(&mut s, 200, "text/plain", b"ok\n", head_only),
            false => respond(&mut s, 503, "text/plain", b"unhealthy\n", head_only),
        },
        "/readyz" => match registry.readiness() {
            Ok(()) => respond(&mut s, 200, "text/plain", b"ready\n", head_only),
            Err(why) => {
                respond(&mut s, 503, "text/plain", format!("{why}\n").as_bytes(), head_only)
            }
        },
        "/capture" => capture(s, registry, target.split_once('?').map_or("", |q| q.1)),
        "/" => respond(&mut s, 200, "text/plain", b"xdpos: /metrics /healthz /readyz\n", head_only),
        _ => respond(&mut s, 404, "text/plain", b"not found\n", head_only),
    }
}

/// `/capture`: streams a pcap from one worker on a thread of its own (the endpoint keeps
/// answering scrapes meanwhile); one capture at a time.
fn capture(mut s: TcpStream, registry: &Arc<Registry>, query: &str) -> io::Result<()> {
    let req = match crate::capture::Request::parse(query) {
        Ok(r) => r,
        Err(e) => return respond(&mut s, 400, "text/plain", format!("{e}\n").as_bytes(), false),
    };
    let Some(target) = registry.capture_target(&req.interface, req.queue) else {
        let msg = format!("no capture point on {} queue {}\n", req.interface, req.queue);
        return respond(&mut s, 404, "text/plain", msg.as_bytes(), false);
    };
    if registry.capturing.swap(true, Ordering::AcqRel) {
        return respond(&mut s, 503, "text/plain", b"a capture is already running\n", false);
    }
    let reg = registry.clone();
    let spawned = std::thread::Builder::new().name("xdpos-capture".into()).spawn(move || {
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.tcpdump.pcap\r\n\
                    Connection: close\r\n\r\n";
        let r =
            s.write_all(head.as_bytes()).and_then(|()| crate::capture::run(&target, &req, &mut s));
        match r {
            Ok((frames, missed)) => tracing::info!(
                interface = %req.interface, queue = req.queue, frames, missed, "capture done"
            ),
            Err(e) => tracing::warn!(interface = %req.interface, error = %e, "capture failed"),
        }
        reg.capturing.store(false, Ordering::Release);
    });
    if spawned.is_err() {
        registry.capturing.store(false, Ordering::Release);
    }
    Ok(())
}

fn respond(
    s: &mut TcpStream,
    code: u16,
    ctype: &str,
    body: &[u8],
    head_only: bool,
) -> io::Result<()> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    if !head_only {
        s.write_all(body)?;
    }
    s.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(addr: SocketAddr, req: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(req).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_metrics_and_probes_and_refuses_the_rest() {
        let r = Registry::new();
        let srv = serve("127.0.0.1:0".parse().unwrap(), r.clone()).unwrap();
        let a = srv.local_addr();
        let m = get(a, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(m.starts_with("HTTP/1.1 200 OK\r\n"), "{m}");
        assert!(m.contains("text/plain; version=0.0.4"), "{m}");
        assert!(m.contains("\r\n\r\n# HELP "), "{m}");
        assert!(get(a, b"GET /readyz HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 503"));
        r.set_ready(true);
        assert!(get(a, b"GET /readyz HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200"));
        assert!(get(a, b"GET /healthz HTTP/1.0\r\n\r\n").ends_with("\r\n\r\nok\n"));
        let h = get(a, b"HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(h.starts_with("HTTP/1.1 200") && h.ends_with("\r\n\r\n"), "{h}");
        assert!(get(a, b"GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get(a, b"POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        let big = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_REQUEST));
        assert!(get(a, big.as_bytes()).starts_with("HTTP/1.1 431"));
        // A client that connects and says nothing does not stop the next one (it is dropped
        // after the timeout; meanwhile the next connection waits in the backlog).
        drop(srv);
        assert!(
            TcpStream::connect(a).is_err(),
            "the listener is closed once the server is dropped"
        );
    }
}
