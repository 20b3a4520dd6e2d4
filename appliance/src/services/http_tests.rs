//! The HTTP responder against libos's simulated peer: the services on node 1 (10.0.0.2) with
//! an `http` listener, a scripted client ([`libos::sim::tcp::Peer`]) on node 0 that writes raw
//! request bytes and collects the raw response stream, which [`responses`] splits by
//! `Content-Length` (so a wrong length shows up as a broken split).

use std::cell::RefCell;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::rc::Rc;
use std::time::Duration;

use libos::sim::tcp::{attach, Peer, PeerConfig, SharedPeer};
use libos::sim::{ip, LinkConfig, Sim};
use libos::StackConfig;

use crate::services::http::{self, HttpConfig, HttpStats};
use crate::services::{pattern_byte, Services, ServicesConfig};
use crate::worker::App;

const HTTP: u16 = 80;

fn quiet(c: &mut StackConfig) {
    c.arp.announce_count = 0;
    c.tcp.max_connections = 64;
    c.tcp.rx_buffer = 64 * 1024;
    c.tcp.tx_buffer = 64 * 1024;
}

fn served(link: LinkConfig, seed: u64, http: HttpConfig) -> (Sim, Rc<RefCell<Services>>) {
    let mut sim = Sim::pair_with(link, seed, quiet);
    let cfg =
        ServicesConfig { http: Some(HTTP), http_cfg: http, backlog: 16, ..Default::default() };
    let svc = Rc::new(RefCell::new(Services::new(&cfg, sim.stack(1)).unwrap()));
    let s = Rc::clone(&svc);
    sim.set_app(1, Box::new(move |now, stack| s.borrow_mut().poll(now, stack)));
    (sim, svc)
}

fn client(sim: &mut Sim, data: &[u8], cfg: PeerConfig) -> SharedPeer {
    client_to(sim, HTTP, data, cfg)
}

fn client_to(sim: &mut Sim, port: u16, data: &[u8], cfg: PeerConfig) -> SharedPeer {
    let peer = Peer::new(cfg);
    let now = sim.now();
    let h = sim.stack(0).tcp_connect(now, SocketAddrV4::new(ip(2), port), None).unwrap();
    peer.borrow_mut().add(h, data.to_vec());
    attach(sim, 0, &peer);
    peer
}

/// One response of the stream.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Splits a response stream; `head_only[i]` says the i-th response answers a HEAD. Panics on
/// anything that is not a well-formed response with a Content-Length; returns the responses
/// and the bytes left over.
fn responses(mut s: &[u8], head_only: &[bool]) -> (Vec<Resp>, usize) {
    let mut out = Vec::new();
    while let Some(end) = s.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = std::str::from_utf8(&s[..end]).expect("header is ASCII");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        assert!(status_line.starts_with("HTTP/1.1 "), "{status_line:?}");
        let status: u16 = status_line[9..12].parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(": ").unwrap_or_else(|| panic!("field {l:?}"));
                (n.to_string(), v.to_string())
            })
            .collect();
        let len: usize = headers
            .iter()
            .find(|(n, _)| n == "Content-Length")
            .unwrap_or_else(|| panic!("no Content-Length in {head:?}"))
            .1
            .parse()
            .unwrap();
        let body_len = if head_only.get(out.len()).copied().unwrap_or(false) { 0 } else { len };
        if s.len() < end + 4 + body_len {
            break;
        }
        let body = s[end + 4..end + 4 + body_len].to_vec();
        s = &s[end + 4 + body_len..];
        out.push(Resp { status, headers, body });
    }
    (out, s.len())
}

const GET: &str = "GET / HTTP/1.1\r\nHost: sim\r\n\r\n";

#[test]
fn pipelined_requests_are_answered_in_order_over_a_lossy_link() {
    let (mut sim, svc) = served(LinkConfig::lossy(0.03), 11, HttpConfig::default());
    let reqs = [
        GET,
        "HEAD / HTTP/1.1\r\nHost: sim\r\n\r\n",
        "GET /nope HTTP/1.1\r\nHost: sim\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: sim\r\nContent-Length: 5\r\n\r\nhello",
        "GET /?q=1 HTTP/1.1\r\nHost: sim\r\nUser-Agent: t\r\n\r\n",
    ];
    let mut up = Vec::new();
    for _ in 0..40 {
        for r in reqs {
            up.extend_from_slice(r.as_bytes());
        }
    }
    let c = client(&mut sim, &up, PeerConfig::default());
    sim.run_for(Duration::from_secs(30));
    let p = c.borrow();
    let e = &p.conns[0];
    let heads: Vec<bool> = (0..200).map(|i| i % 5 == 1).collect();
    let (rs, left) = responses(&e.received, &heads);
    assert_eq!(left, 0);
    let codes: Vec<u16> = rs.iter().map(|r| r.status).collect();
    assert_eq!(codes, [200, 200, 404, 405, 200].repeat(40));
    for (i, r) in rs.iter().enumerate() {
        match i % 5 {
            0 | 4 => assert_eq!(r.body, http::DEFAULT_BODY),
            1 => {
                assert!(r.body.is_empty());
                assert_eq!(r.header("Content-Length"), Some("17"));
            }
            3 => assert_eq!(r.header("Allow"), Some("GET, HEAD")),
            _ => {}
        }
        assert!(r.header("Connection").is_none(), "HTTP/1.1 persists by default");
        assert_eq!(r.header("Date").map(str::len), Some(29));
    }
    // The client's FIN after its last request closes the connection once all is answered.
    assert!(e.eof && e.error.is_none());
    let st = svc.borrow().stats();
    assert_eq!(
        st.http,
        HttpStats {
            requests: 200,
            ok: 120,
            not_found: 40,
            method_not_allowed: 40,
            ..HttpStats::default()
        }
    );
    assert_eq!((st.accepted, st.closed, st.failed), (1, 1, 0));
}

#[test]
fn a_request_trickling_in_a_few_bytes_at_a_time_is_answered_once_complete() {
    let (mut sim, svc) = served(LinkConfig::perfect(), 12, HttpConfig::default());
    let cfg = PeerConfig { shutdown_when_sent: false, ..PeerConfig::default() };
    let c = client(&mut sim, b"", cfg);
    sim.run_for(Duration::from_millis(50));
    let text = format!("{GET}GET /x HTTP/1.1\r\nHost: sim\r\n\r\n");
    for piece in text.as_bytes().chunks(3) {
        c.borrow_mut().conns[0].to_send.extend_from_slice(piece);
        sim.run_for(Duration::from_millis(5));
    }
    sim.run_for(Duration::from_secs(1));
    let p = c.borrow();
    let (rs, left) = responses(&p.conns[0].received, &[]);
    assert_eq!((rs.len(), left), (2, 0));
    assert_eq!((rs[0].status, rs[1].status), (200, 404));
    // Keep-alive: still open.
    assert!(!p.conns[0].eof);
    assert_eq!(svc.borrow().open(), 1);
}

#[test]
fn connection_close_and_http10_are_honoured() {
    let (mut sim, svc) = served(LinkConfig::perfect(), 13, HttpConfig::default());
    let cfg = PeerConfig { shutdown_when_sent: false, ..PeerConfig::default() };
    // The request after `Connection: close` is never answered; the server closes (FIN).
    let up = format!("GET / HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\r\n{GET}");
    let c = client(&mut sim, up.as_bytes(), cfg.clone());
    sim.run_for(Duration::from_secs(2));
    {
        let p = c.borrow();
        let (rs, left) = responses(&p.conns[0].received, &[]);
        assert_eq!((rs.len(), left), (1, 0));
        assert_eq!(rs[0].header("Connection"), Some("close"));
        assert!(p.conns[0].eof, "the server closed after the response");
        assert!(p.conns[0].error.is_none(), "closed with FIN, not reset");
    }
    // HTTP/1.0: closed after one response unless it asks for keep-alive.
    let c10 = client(&mut sim, b"GET / HTTP/1.0\r\n\r\n", cfg.clone());
    sim.run_for(Duration::from_secs(2));
    let (rs, _) = responses(&c10.borrow().conns[0].received, &[]);
    assert_eq!(rs.len(), 1);
    assert_eq!((rs[0].status, rs[0].header("Connection")), (200, Some("close")));
    assert!(c10.borrow().conns[0].eof);
    let ka = b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n";
    let c2 = client(&mut sim, ka, cfg);
    sim.run_for(Duration::from_secs(2));
    let p = c2.borrow();
    let e = p.conns.last().unwrap();
    let (rs, _) = responses(&e.received, &[]);
    assert_eq!(rs.len(), 2);
    assert_eq!(rs[0].header("Connection"), Some("keep-alive"));
    assert_eq!(rs[1].header("Connection"), Some("close"));
    assert!(e.eof);
    let st = svc.borrow().stats();
    assert_eq!(st.http.requests, 4);
    assert_eq!(svc.borrow().open(), 0);
}

#[test]
fn malformed_requests_get_400_and_the_connection_closes() {
    let (mut sim, svc) = served(LinkConfig::perfect(), 14, HttpConfig::default());
    let cfg = PeerConfig { shutdown_when_sent: false, ..PeerConfig::default() };
    let cases: [(&[u8], u16); 5] = [
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGARBAGE\x00\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 501),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),
    ];
    for (i, (text, code)) in cases.iter().enumerate() {
        let c = client(&mut sim, text, cfg.clone());
        sim.run_for(Duration::from_secs(2));
        let p = c.borrow();
        let e = &p.conns[0];
        let (rs, left) = responses(&e.received, &[]);
        assert_eq!(left, 0, "case {i}");
        let last = rs.last().unwrap_or_else(|| panic!("case {i}: no response"));
        assert_eq!(last.status, *code, "case {i}");
        assert_eq!(last.header("Connection"), Some("close"), "case {i}");
        assert!(e.eof && e.error.is_none(), "case {i}: closed with FIN after the answer");
    }
    let st = svc.borrow().stats();
    assert_eq!((st.http.ok, st.http.bad_requests), (1, 5));
    assert_eq!(svc.borrow().open(), 0);
}

#[test]
fn a_body_larger_than_the_send_buffer_streams_and_the_next_request_follows() {
    let body = 300_000;
    let (mut sim, _svc) = served(LinkConfig::lossy(0.01), 15, HttpConfig::pattern_body(body));
    let up = format!("{GET}HEAD / HTTP/1.1\r\nHost: sim\r\n\r\n{GET}");
    let c = client(&mut sim, up.as_bytes(), PeerConfig::default());
    sim.run_for(Duration::from_secs(30));
    let p = c.borrow();
    let (rs, left) = responses(&p.conns[0].received, &[false, true, false]);
    assert_eq!((rs.len(), left), (3, 0));
    for r in [&rs[0], &rs[2]] {
        assert_eq!(r.body.len(), body);
        assert!(r.body.iter().enumerate().all(|(i, &b)| b == pattern_byte(i)), "body broken");
        assert_eq!(r.header("Content-Type"), Some("application/octet-stream"));
    }
    assert_eq!(rs[1].header("Content-Length"), Some("300000"));
    assert!(rs[1].body.is_empty());
}

#[test]
fn a_client_that_pipelines_without_reading_is_held_by_the_buffers() {
    let (mut sim, svc) = served(LinkConfig::perfect(), 16, HttpConfig::pattern_body(2_000));
    let up = GET.repeat(8_000);
    let cfg = PeerConfig { read: false, shutdown_when_sent: false, ..PeerConfig::default() };
    let c = client(&mut sim, up.as_bytes(), cfg);
    sim.run_for(Duration::from_secs(5));
    // What the server wrote is bounded by its send buffer, the client's receive buffer and
    // what is in flight; the rest of the requests wait unread.
    let st = svc.borrow().stats();
    assert!(st.bytes_out <= 3 * 64 * 1024 + 2_300, "wrote {} bytes", st.bytes_out);
    assert!(st.http.requests < 110, "answered {} requests", st.http.requests);
    assert!(c.borrow().conns[0].sent < up.len());
    // Once the client reads, everything is answered.
    c.borrow_mut().cfg.read = true;
    sim.run_for(Duration::from_secs(60));
    let p = c.borrow();
    let (rs, left) = responses(&p.conns[0].received, &[]);
    assert_eq!((rs.len(), left), (8_000, 0));
}

#[test]
fn each_http_listener_serves_its_own_configuration() {
    let (mut sim, svc) = served(LinkConfig::perfect(), 17, HttpConfig::default());
    let big = HttpConfig { path: "/big".into(), ..HttpConfig::pattern_body(5_000) };
    let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 8080);
    svc.borrow_mut().listen_http(sim.stack(1), any, &big, 16).unwrap();
    let up = "GET /big HTTP/1.1\r\nHost: sim\r\n\r\nGET / HTTP/1.1\r\nHost: sim\r\n\r\n";
    let c = client_to(&mut sim, 8080, up.as_bytes(), PeerConfig::default());
    sim.run_for(Duration::from_secs(2));
    let (rs, _) = responses(&c.borrow().conns[0].received, &[]);
    assert_eq!((rs.len(), rs[0].status, rs[0].body.len(), rs[1].status), (2, 200, 5_000, 404));
    let c = client(&mut sim, GET.as_bytes(), PeerConfig::default());
    sim.run_for(Duration::from_secs(2));
    let (rs, _) = responses(&c.borrow().conns[0].received, &[]);
    assert_eq!((rs.len(), rs[0].body.as_slice()), (1, http::DEFAULT_BODY));
    // The same configuration again shares the server; the counters sum over listeners.
    let any2 = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 8081);
    svc.borrow_mut().listen_http(sim.stack(1), any2, &big, 16).unwrap();
    assert_eq!(svc.borrow().http.len(), 2);
    assert_eq!(svc.borrow().stats().http.requests, 3);
}

#[test]
fn idle_and_trickling_connections_are_closed_after_the_timeout() {
    let cfg = HttpConfig { idle_timeout: Duration::from_secs(3), ..HttpConfig::default() };
    let (mut sim, svc) = served(LinkConfig::perfect(), 18, cfg);
    let keep = PeerConfig { shutdown_when_sent: false, ..PeerConfig::default() };
    // One answered and then idle; one that sent half a request.
    // The simulator calls the app on events only; a worker also polls while idle (at least
    // every `idle_wait`): so does this.
    let ticking = |sim: &mut Sim, d: Duration| {
        let end = sim.now() + d;
        while sim.now() < end {
            sim.run_for(Duration::from_millis(100));
            let now = sim.now();
            svc.borrow_mut().poll(now, sim.stack(1));
        }
    };
    let idle = client(&mut sim, GET.as_bytes(), keep.clone());
    ticking(&mut sim, Duration::from_secs(1));
    assert_eq!(svc.borrow().open(), 1);
    let half = client(&mut sim, b"GET / HTTP/1.1\r\nHo", keep);
    ticking(&mut sim, Duration::from_millis(1500));
    assert_eq!(svc.borrow().open(), 2, "nothing is closed before the timeout");
    ticking(&mut sim, Duration::from_secs(5));
    assert_eq!(svc.borrow().open(), 0);
    assert_eq!(svc.borrow().stats().http.idle_closed, 2);
    assert_eq!(responses(&idle.borrow().conns[0].received, &[]).0.len(), 1);
    assert!(half.borrow().conns[0].received.is_empty(), "no answer to half a request");
}
