//! The HTTP/1.1 responder (`xdpos echo --http`) against real kernel clients in namespace A:
//! the stock `curl` (status codes, HEAD, HTTP/1.0, keep-alive reuse of one connection), `wrk`
//! with keep-alive and with 16-deep pipelining (a Lua script), and a raw kernel TCP client that
//! pipelines a thousand requests in odd-sized writes and checks every response in order, then
//! sends garbage and expects a 400 and a close.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use rustix::process::Signal;
use xdpos::rig::{Pair, PairOpts};
use xdpos_tests::*;

const PORT: u16 = 80;
const BODY: &str = "served by xdpos over kernel veth\n";

fn start(pair: &Pair, extra: &[&str]) -> Child {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", pair.ns_b.name()])
        .arg(xdpos_bin())
        .args(["echo", "--interface", &pair.b.ifname, "--addr", &pair.b.ip.to_string()])
        .args(["--http", &PORT.to_string(), "--tcp-buffer", "65536"])
        .args(extra);
    let mut child = Child::spawn(cmd);
    assert!(
        child.wait_line("ready:", DEADLINE).is_some(),
        "xdpos echo did not become ready: {:?}",
        child.seen
    );
    child
}

/// SIGTERM, exit 0, nothing attached; returns the exit lines.
fn finish(pair: &Pair, mut child: Child) -> Vec<String> {
    child.signal(Signal::TERM);
    let st = child.wait(DEADLINE).expect("xdpos echo exits after SIGTERM");
    assert!(st.success(), "xdpos echo exited with {st}: {:?}", child.seen);
    assert_no_xdp(&pair.ns_b);
    child.seen.clone()
}

/// `curl ARGS` in A with a time limit; returns (exit ok, stdout, stderr).
fn curl(pair: &Pair, args: &[&str]) -> (bool, String, String) {
    let out = pair
        .ns_a
        .cmd("timeout")
        .args(["10", "curl", "-sS", "--max-time", "5"])
        .args(args)
        .output()
        .expect("run curl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The total HTTP requests the exit lines report.
fn http_requests(lines: &[String]) -> u64 {
    lines
        .iter()
        .filter_map(|l| l.split("http requests ").nth(1))
        .filter_map(|r| r.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn curl_gets_status_codes_head_http10_and_reuses_one_connection() {
    sweep();
    let pair = Pair::new("hc", &PairOpts::default()).unwrap();
    let child = start(&pair, &["--http-body", BODY]);
    let url = format!("http://{}/", pair.b.ip);

    let (ok, out, err) = curl(&pair, &["-i", &url]);
    assert!(ok, "curl failed: {err}");
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.contains(&format!("Content-Length: {}\r\n", BODY.len())), "{out}");
    assert!(out.contains("\r\nDate: ") && out.ends_with(BODY), "{out}");

    let (_, out, _) = curl(&pair, &["-I", &url]);
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "HEAD: {out}");
    assert!(out.contains(&format!("Content-Length: {}\r\n", BODY.len())), "HEAD: {out}");

    let (_, out, _) = curl(&pair, &["-i", "--http1.0", &url]);
    assert!(out.contains("Connection: close\r\n") && out.ends_with(BODY), "1.0: {out}");

    let code = |args: &[&str]| {
        let mut a = vec!["-o", "/dev/null", "-w", "%{http_code}"];
        a.extend_from_slice(args);
        curl(&pair, &a).1
    };
    assert_eq!(code(&[&format!("{url}missing")]), "404");
    assert_eq!(code(&["-X", "DELETE", &url]), "405");
    assert_eq!(code(&["-d", "x=1", &url]), "405", "POST with a body");
    // With `Expect: 100-continue` curl holds the body back for a 100 (1 s) or the answer: the
    // 405 comes at once, and the connection is closed (the body may never come).
    let big = format!("x={}", "a".repeat(2000));
    let t = std::time::Instant::now();
    let (_, out, err) = curl(&pair, &["-i", "-H", "Expect: 100-continue", "-d", &big, &url]);
    assert!(out.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{out}{err}");
    assert!(out.contains("Connection: close\r\n"), "{out}");
    assert!(t.elapsed() < Duration::from_millis(900), "curl waited for a 100: {:?}", t.elapsed());
    assert_eq!(code(&["-H", "Transfer-Encoding: chunked", "-d", "x", &url]), "501");

    // Five URLs in one run: one TCP connection, kept alive across them.
    let urls: Vec<String> = (0..5).map(|_| url.clone()).collect();
    let mut args = vec!["-v", "-o", "/dev/null"];
    args.extend(urls.iter().map(String::as_str));
    let (ok, _, err) = curl(&pair, &args);
    assert!(ok, "{err}");
    assert_eq!(err.matches("Connected to").count(), 1, "one connection:\n{err}");
    assert_eq!(err.matches("Re-using existing connection").count(), 4, "{err}");

    let lines = finish(&pair, child);
    assert_eq!(http_requests(&lines), 3 + 5 + 5, "{lines:?}");
}

/// wrk's summary: (requests, non-2xx responses, socket errors).
fn wrk(pair: &Pair, args: &[&str]) -> (u64, u64, String) {
    let out = pair.ns_a.cmd("timeout").arg("30").arg("wrk").args(args).output().expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "wrk: {text}{}", String::from_utf8_lossy(&out.stderr));
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no request count in:\n{text}"));
    let non2xx = text
        .lines()
        .find(|l| l.contains("Non-2xx or 3xx responses"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0);
    (requests, non2xx, text)
}

#[test]
fn wrk_keep_alive_and_pipelined_load_gets_only_200s() {
    sweep();
    let pair = Pair::new("hw", &PairOpts::default()).unwrap();
    let child = start(&pair, &["--http-body-size", "1024"]);
    let url = format!("http://{}/", pair.b.ip);

    let (n, bad, text) = wrk(&pair, &["-t1", "-c16", "-d3s", "--timeout", "2s", &url]);
    println!("{text}");
    assert!(n >= 1000, "only {n} requests in 3 s:\n{text}");
    assert_eq!(bad, 0, "{text}");
    assert!(!text.contains("Socket errors"), "{text}");

    // 16 requests per write, answered in order (wrk parses each response).
    let dir = std::env::temp_dir().join(format!("xdpos-wrk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("pipeline.lua");
    std::fs::write(
        &script,
        "init = function(args)\n  local r = {}\n  for i = 1, 16 do r[i] = wrk.format(nil, \"/\") end\n  \
         req = table.concat(r)\nend\nrequest = function() return req end\n",
    )
    .unwrap();
    let s = script.to_string_lossy().into_owned();
    let (np, bad, text) = wrk(&pair, &["-t1", "-c4", "-d3s", "--timeout", "2s", "-s", &s, &url]);
    let _ = std::fs::remove_dir_all(&dir);
    println!("{text}");
    assert!(np >= 1000, "only {np} pipelined requests in 3 s:\n{text}");
    assert_eq!(bad, 0, "{text}");
    assert!(!text.contains("Socket errors"), "{text}");

    let lines = finish(&pair, child);
    // wrk counts the responses it read; requests still in flight at its end were answered too.
    let served = http_requests(&lines);
    assert!(served >= n + np, "served {served}, wrk read {n} + {np}: {lines:?}");
}

/// Reads one response (status, body) from `s`, whose buffered leftovers are in `buf`.
fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(u16, Vec<u8>)> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut chunk = [0u8; 65536];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("no Content-Length in {head:?}"));
            if buf.len() >= end + 4 + len {
                let status = head[9..12].parse().expect("status code");
                let body = buf[end + 4..end + 4 + len].to_vec();
                buf.drain(..end + 4 + len);
                return Some((status, body));
            }
        }
        if Instant::now() > deadline {
            return None;
        }
        match s.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return None,
        }
    }
}

#[test]
fn a_kernel_client_pipelines_a_thousand_split_requests_and_gets_them_in_order() {
    sweep();
    let pair = Pair::new("hp", &PairOpts::default()).unwrap();
    let child = start(&pair, &["--http-body", BODY]);
    let dst = SocketAddrV4::new(pair.b.ip, PORT);
    let (statuses, garbage) = pair
        .ns_a
        .run_in(|| {
            let mut s = TcpStream::connect_timeout(&dst.into(), DEADLINE).expect("connect");
            s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
            s.set_nodelay(true).unwrap();
            let mut all = Vec::new();
            for i in 0..1000 {
                let path = if i % 3 == 2 { "/nope" } else { "/" };
                let method = if i % 7 == 6 { "HEAD" } else { "GET" };
                all.extend_from_slice(
                    format!("{method} {path}?i={i} HTTP/1.1\r\nHost: x\r\nX-I: {i}\r\n\r\n")
                        .as_bytes(),
                );
            }
            // Odd-sized writes: requests split anywhere, many per segment. A writer thread,
            // so the responses are read while the requests go out.
            let mut w = s.try_clone().unwrap();
            let writer = std::thread::spawn(move || {
                for piece in all.chunks(97) {
                    w.write_all(piece).unwrap();
                }
            });
            let mut buf = Vec::new();
            let mut statuses = Vec::new();
            for i in 0..1000 {
                // HEAD responses have no body: read the header only.
                let got = if i % 7 == 6 {
                    read_head_only(&mut s, &mut buf)
                } else {
                    read_response(&mut s, &mut buf)
                };
                let Some((st, body)) = got else { break };
                if st == 200 && i % 7 != 6 {
                    assert_eq!(body, BODY.as_bytes(), "response {i}");
                }
                statuses.push(st);
            }
            writer.join().unwrap();
            // Garbage: 400, then the server closes.
            s.write_all(b"GET / HTTP/1.1\r\nHost x\r\n\r\n").unwrap();
            let bad = read_response(&mut s, &mut buf);
            let mut rest = [0u8; 16];
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let closed = matches!(s.read(&mut rest), Ok(0));
            (statuses, (bad.map(|r| r.0), closed))
        })
        .unwrap();
    let want: Vec<u16> = (0..1000).map(|i| if i % 3 == 2 { 404 } else { 200 }).collect();
    assert_eq!(statuses.len(), 1000, "answered {} of 1000", statuses.len());
    assert_eq!(statuses, want);
    assert_eq!(garbage, (Some(400), true));
    let lines = finish(&pair, child);
    assert_eq!(http_requests(&lines), 1001, "{lines:?}");
}

/// Reads a response header (of a HEAD request: no body follows).
fn read_head_only(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(u16, Vec<u8>)> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut chunk = [0u8; 65536];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let status = String::from_utf8_lossy(&buf[9..12]).parse().ok()?;
            buf.drain(..end + 4);
            return Some((status, Vec::new()));
        }
        if Instant::now() > deadline {
            return None;
        }
        match s.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => {}
        }
    }
}
