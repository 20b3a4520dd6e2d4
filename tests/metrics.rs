//! Observability end to end: the real `xdpos` processes' `/metrics` under traffic pass
//! `promtool check metrics`; the rules pass `promtool check rules` and their unit tests; every
//! dashboard is well-formed (current schema, a `datasource` variable used by every panel and
//! query, no `__inputs`, units, `$__rate_interval` in every rate) and every panel query parses;
//! and the real `prometheus` scrapes `xdpos echo` (overview dashboard) and `xdpos forward`
//! with its XDP fast path (forwarding dashboard) in namespaces under traffic, where **every
//! panel query returns data**; `xdpos capture` against `xdpos echo` and against the daemon's
//! router, read back by tshark.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::process::Signal;
use serde_json::Value;
use xdpos::rig::{Chain, ChainOpts, Netns, Pair, PairOpts};
use xdpos_tests::*;

const METRICS: &str = "127.0.0.1:9464";
const PROMETHEUS: &str = "127.0.0.1:9090";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repository root").to_path_buf()
}

fn dashboards() -> PathBuf {
    repo().join("dashboards")
}

/// Runs a command to completion; returns (success, stdout + stderr).
fn output(cmd: &mut Command) -> (bool, String) {
    let o = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    let text =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    (o.status.success(), text)
}

/// One HTTP/1.1 GET (the caller is in the right namespace); returns (status, body).
fn http_get(addr: &str, target: &str) -> std::io::Result<(u16, String)> {
    let addr: SocketAddr = addr.parse().expect("address");
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    // Prometheus answers chunked; undo it (a chunk-size line, the chunk, CRLF, …).
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 || tail.len() < n {
                break;
            }
            out.push_str(&tail[..n]);
            rest = tail[n..].trim_start_matches("\r\n");
        }
        out
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of the sample of `family` whose labels contain every `label=value` of `want`.
fn sample(text: &str, family: &str, want: &[&str]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let name = series.split('{').next()?;
        (name == family && want.iter().all(|w| series.contains(w))).then(|| value.parse().ok())?
    })
}

/// `promtool check metrics` on an exposition.
fn promtool_check_metrics(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (scripts/setup.sh installs the prometheus package)");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write to promtool");
    let o = child.wait_with_output().expect("promtool");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

/// Every panel query of a dashboard: (panel title, expression).
fn panel_queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let expr = t["expr"].as_str().expect("every target has an expr");
            out.push((p["title"].as_str().unwrap_or("").to_string(), expr.to_string()));
        }
    }
    out
}

/// A panel query with Grafana's variables filled in as Grafana would for a 1 s scrape interval.
fn concrete(expr: &str) -> String {
    expr.replace("$__rate_interval", "5s").replace("$instance", ".*")
}

fn load(name: &str) -> Value {
    let path = dashboards().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const DASHBOARDS: [&str; 2] = ["overview.json", "forwarding.json"];

#[test]
fn rules_and_scrape_config_pass_promtool() {
    let d = dashboards();
    let (ok, out) =
        output(Command::new("promtool").args(["check", "rules"]).arg(d.join("rules.yml")));
    assert!(ok, "promtool check rules:\n{out}");
    let (ok, out) =
        output(Command::new("promtool").args(["test", "rules", "rules_test.yml"]).current_dir(&d));
    assert!(ok && out.contains("SUCCESS"), "promtool test rules:\n{out}");
    let (ok, out) =
        output(Command::new("promtool").args(["check", "config"]).arg(d.join("prometheus.yml")));
    assert!(ok, "promtool check config:\n{out}");
    // Every alert the issue asks for exists and has a unit test.
    let rules = std::fs::read_to_string(d.join("rules.yml")).unwrap();
    let tests = std::fs::read_to_string(d.join("rules_test.yml")).unwrap();
    for alert in [
        "XdposFillRingStarved",
        "XdposWorkerStalled",
        "XdposDropsRising",
        "XdposXdpAborted",
        "XdposConfigReloadFailed",
        "XdposFastPathMostlyPunting",
    ] {
        assert!(rules.contains(&format!("alert: {alert}")), "rules.yml lacks {alert}");
        let fired = tests
            .matches(&format!("alertname: {alert}\n        exp_alerts:\n          - "))
            .count();
        assert!(fired >= 1, "rules_test.yml never expects {alert} to fire");
    }
}

#[test]
fn dashboards_are_well_formed_and_every_query_parses() {
    let mut exprs = Vec::new();
    for name in DASHBOARDS {
        let d = load(name);
        assert!(
            d.get("__inputs").is_none(),
            "{name}: __inputs is not substituted by file provisioning"
        );
        assert!(d["schemaVersion"].as_u64().unwrap_or(0) >= 36, "{name}: old schema");
        assert!(d["uid"].as_str().is_some_and(|u| !u.is_empty()), "{name}: no uid");
        let vars = d["templating"]["list"].as_array().expect("templating");
        let ds = vars.iter().find(|v| v["name"] == "datasource").expect("a datasource variable");
        assert_eq!(
            (ds["type"].as_str(), ds["query"].as_str()),
            (Some("datasource"), Some("prometheus"))
        );
        let mut ids = std::collections::HashSet::new();
        for p in d["panels"].as_array().expect("panels") {
            let title = p["title"].as_str().unwrap_or("?");
            assert!(
                ids.insert(p["id"].as_u64().expect("panel id")),
                "{name}: duplicate id at {title}"
            );
            assert!(p["gridPos"]["w"].as_u64().is_some(), "{name}/{title}: no gridPos");
            if p["type"] == "row" {
                continue;
            }
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{name}/{title}: panel datasource");
            let unit = p["fieldConfig"]["defaults"]["unit"].as_str().unwrap_or("");
            assert!(!unit.is_empty(), "{name}/{title}: no unit");
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{name}/{title}: no query");
            for t in targets {
                assert_eq!(
                    t["datasource"]["uid"], "${datasource}",
                    "{name}/{title}: target datasource"
                );
                let e = t["expr"].as_str().expect("expr");
                for f in ["rate(", "increase(", "irate("] {
                    for (i, _) in e.match_indices(f) {
                        let tail = &e[i..];
                        let close = tail.find(')').unwrap_or(tail.len());
                        assert!(
                            tail[..close].contains("[$__rate_interval]"),
                            "{name}/{title}: {f} without $__rate_interval: {e}"
                        );
                    }
                }
                assert!(e.starts_with("xdpos_") || e.contains("xdpos_"), "{name}/{title}: {e}");
                exprs.push((format!("{name}/{title}"), e.to_string()));
            }
        }
    }
    // promtool parses every query: each becomes the expression of a recording rule.
    let dir = std::env::temp_dir().join(format!("xdpos-dash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard-queries\n    rules:\n");
    for (i, (_, e)) in exprs.iter().enumerate() {
        rules.push_str(&format!(
            "      - record: dashboard_query_{i}\n        expr: {}\n",
            serde_json::to_string(&concrete(e)).unwrap()
        ));
    }
    let file = dir.join("queries.yml");
    std::fs::write(&file, &rules).unwrap();
    let (ok, out) = output(Command::new("promtool").args(["check", "rules"]).arg(&file));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ok, "a dashboard query does not parse:\n{out}\n{exprs:#?}");
    assert!(out.contains(&format!("SUCCESS: {} rules found", exprs.len())), "{out}");
}

/// A UDP client in A that keeps the echo busy until `stop` (bounded by `limit`).
fn udp_load(ns: &Netns, dst: SocketAddrV4, stop: &AtomicBool, limit: Duration) -> u64 {
    ns.run_in(|| {
        let s = kernel_udp(std::net::Ipv4Addr::UNSPECIFIED, 0);
        s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
        let t0 = Instant::now();
        let (mut sent, mut buf) = (0u64, [0u8; 2048]);
        while !stop.load(Ordering::Relaxed) && t0.elapsed() < limit {
            for i in 0..32 {
                if s.send_to(&payload(i, 64), dst).is_ok() {
                    sent += 1;
                }
            }
            while s.recv(&mut buf).is_ok() {}
        }
        sent
    })
    .expect("enter A")
}

/// Sends UDP from A to B's port 7 (at most 10 s), scrapes B's `/metrics` 2 s in while the
/// traffic flows, and checks the answer: 200, clean under `promtool check metrics`, more than
/// 1000 datagrams sent and counted on B's queue 0. Returns the exposition and that count.
fn scrape_under_udp_load(pair: &Pair, what: &str) -> (String, f64) {
    let stop = AtomicBool::new(false);
    let dst = SocketAddrV4::new(pair.b.ip, 7);
    let (sent, (status, text)) = std::thread::scope(|s| {
        let load = s.spawn(|| udp_load(&pair.ns_a, dst, &stop, Duration::from_secs(10)));
        std::thread::sleep(Duration::from_secs(2));
        let got = pair.ns_b.run_in(|| http_get(METRICS, "/metrics").unwrap()).unwrap();
        stop.store(true, Ordering::Relaxed);
        (load.join().unwrap(), got)
    });
    assert_eq!(status, 200);
    let (ok, lint) = promtool_check_metrics(&text);
    assert!(ok && lint.trim().is_empty(), "promtool check metrics ({what}):\n{lint}");
    let b = format!("interface=\"{}\"", pair.b.ifname);
    let rx = sample(&text, "xdpos_rx_packets_total", &[&b, "queue=\"0\""]).expect("rx series");
    assert!(sent > 1000 && rx > 1000.0, "sent {sent}, rx {rx}");
    (text, rx)
}

fn start_echo(pair: &Pair) -> Child {
    let mut cmd = pair.ns_b.cmd(xdpos_bin().to_str().unwrap());
    cmd.args(["echo", "--interface", &pair.b.ifname, "--addr", &pair.b.ip.to_string()]).args([
        "--port",
        "7",
        "--tcp-echo",
        "5001",
        "--metrics",
        METRICS,
    ]);
    let mut c = Child::spawn(cmd);
    assert!(c.wait_line("ready:", DEADLINE).is_some(), "xdpos echo not ready: {:?}", c.seen);
    c
}

#[test]
fn echo_exposition_under_traffic_passes_promtool_and_counts_the_traffic() {
    sweep();
    let pair = Pair::new("mx", &PairOpts::default()).unwrap();
    let mut echo = start_echo(&pair);
    let (ready, health) = pair
        .ns_b
        .run_in(|| (http_get(METRICS, "/readyz").unwrap(), http_get(METRICS, "/healthz").unwrap()))
        .unwrap();
    assert_eq!((ready.0, health.0), (200, 200), "{ready:?} {health:?}");
    // One TCP connection to the echo service, open while the metrics are scraped.
    let tcp = pair
        .ns_a
        .run_in(|| {
            let mut c = TcpStream::connect((pair.b.ip, 5001)).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            c.write_all(b"ping").unwrap();
            let mut back = [0u8; 4];
            c.read_exact(&mut back).unwrap();
            assert_eq!(&back, b"ping");
            c
        })
        .unwrap();
    let (text, rx) = scrape_under_udp_load(&pair, "echo");
    let b = format!("interface=\"{}\"", pair.b.ifname);
    let udp = sample(&text, "xdpos_udp_rx_datagrams_total", &[&b]).expect("udp series");
    assert!(udp > 1000.0 && udp <= rx, "udp {udp} rx {rx}");
    let redirected =
        sample(&text, "xdpos_xdp_packets_total", &[&b, "verdict=\"redirect\""]).unwrap();
    assert!(redirected >= rx, "the program redirected {redirected}, the socket got {rx}");
    assert!(sample(&text, "xdpos_worker_busy_seconds_total", &["worker=\"0\""]).unwrap() > 0.0);
    assert!(sample(&text, "xdpos_rx_batch_frames_count", &[&b]).unwrap() > 0.0);
    let batches = sample(&text, "xdpos_batch_duration_seconds_count", &[&b, "queue=\"0\""]);
    assert!(batches.unwrap() > 0.0, "batch time per queue");
    assert!(
        sample(&text, "xdpos_xsk_rx_ring_full_total", &[&b]).is_some(),
        "kernel socket counters"
    );
    assert_eq!(sample(&text, "xdpos_tcp_connections", &[&b, "state=\"established\""]), Some(1.0));
    assert_eq!(sample(&text, "xdpos_tcp_passive_opens_total", &[&b]), Some(1.0));
    drop(tcp);
    let umem: f64 = ["free", "fill", "rx", "held", "tx", "completion", "kernel"]
        .iter()
        .map(|s| sample(&text, "xdpos_umem_frames", &[&format!("state=\"{s}\"")]).unwrap())
        .sum();
    assert_eq!(Some(umem), sample(&text, "xdpos_umem_size_frames", &[]), "UMEM states add up");
    assert_eq!(sample(&text, "xdpos_ready", &[]), Some(1.0));
    stop_cleanly(&mut echo, &pair.ns_b);
}

/// A worker that stalls (made to by the test hook `XDPOS_TEST_STALL_WORKER`: worker 0 sleeps
/// 3 s in its loop, 2 s after the loop starts, under UDP traffic) is reported while it is:
/// `/readyz` answers 503 naming it, `/metrics` has `xdpos_worker_stalled{worker="0"} 1` and a
/// heartbeat age above a second; once it resumes both go back (200, 0) by themselves.
#[test]
fn a_stalled_worker_fails_readyz_and_shows_in_metrics_until_it_resumes() {
    sweep();
    let pair = Pair::new("mst", &PairOpts::default()).unwrap();
    let mut cmd = pair.ns_b.cmd(xdpos_bin().to_str().unwrap());
    cmd.args(["echo", "--interface", &pair.b.ifname, "--addr", &pair.b.ip.to_string()])
        .args(["--port", "7", "--metrics", METRICS])
        .env(xdpos::worker::TEST_STALL_ENV, "0:2000:3000");
    let mut echo = Child::spawn(cmd);
    assert!(echo.wait_line("ready:", DEADLINE).is_some(), "xdpos echo not ready: {:?}", echo.seen);
    let get = |target: &str| pair.ns_b.run_in(|| http_get(METRICS, target).unwrap()).unwrap();
    let stalled = |text: &str| sample(text, "xdpos_worker_stalled", &["worker=\"0\""]);
    let age = |text: &str| sample(text, "xdpos_worker_heartbeat_age_seconds", &["worker=\"0\""]);
    let (code, body) = get("/readyz");
    assert_eq!((code, body.as_str()), (200, "ready\n"), "before the stall");
    let (_, text) = get("/metrics");
    assert_eq!(stalled(&text), Some(0.0), "before the stall");
    assert!(age(&text).unwrap() < 1.0, "{text}");
    let stop = AtomicBool::new(false);
    let dst = SocketAddrV4::new(pair.b.ip, 7);
    let (during, after) = std::thread::scope(|s| {
        let load = s.spawn(|| udp_load(&pair.ns_a, dst, &stop, Duration::from_secs(20)));
        // Poll /readyz (bounded) until it fails: 2 s + 1 s after the loop started.
        let t0 = Instant::now();
        let mut readyz = (0, String::new());
        while t0.elapsed() < Duration::from_secs(10) {
            readyz = get("/readyz");
            if readyz.0 != 200 {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let during = (readyz, get("/metrics").1, t0.elapsed());
        // Then until it answers 200 again (the stall ends 5 s after the loop started).
        let mut readyz = (0, String::new());
        while t0.elapsed() < Duration::from_secs(20) {
            readyz = get("/readyz");
            if readyz.0 == 200 {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let after = (readyz, get("/metrics").1);
        stop.store(true, Ordering::Relaxed);
        assert!(load.join().unwrap() > 0, "the load sent nothing");
        (during, after)
    });
    let ((code, body), text, at) = during;
    assert_eq!(code, 503, "/readyz during the stall ({at:?}): {body:?}");
    assert!(body.starts_with("stalled: worker 0 (no heartbeat for "), "{body:?}");
    assert_eq!(stalled(&text), Some(1.0), "during the stall:\n{text}");
    assert!(age(&text).unwrap() > 1.0, "during the stall:\n{text}");
    assert_eq!(sample(&text, "xdpos_ready", &[]), Some(0.0));
    let ((code, body), text) = after;
    assert_eq!((code, body.as_str()), (200, "ready\n"), "after the stall");
    assert_eq!(stalled(&text), Some(0.0), "after the stall:\n{text}");
    assert!(age(&text).unwrap() < 1.0, "after the stall:\n{text}");
    assert!(
        sample(&text, "xdpos_rx_packets_total", &["queue=\"0\""]).unwrap() > 0.0,
        "the worker served traffic around its stall"
    );
    stop_cleanly(&mut echo, &pair.ns_b);
}

/// A `prometheus` scraping `METRICS` every second in `ns`, its data in a temporary directory
/// (removed on drop with the process).
struct Prometheus {
    child: Child,
    dir: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.child.kill();
        let _ = self.child.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Prometheus {
    fn start(ns: &Netns, tag: &str) -> Prometheus {
        let dir = std::env::temp_dir().join(format!("xdpos-prom-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let cfg = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: xdpos\n    \
             scrape_timeout: 1s\n    static_configs:\n      - targets: [\"{METRICS}\"]\n"
        );
        std::fs::write(dir.join("prometheus.yml"), cfg).unwrap();
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let mut cmd = ns.cmd("prometheus");
        cmd.arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={PROMETHEUS}"))
            .stderr(log);
        Prometheus { child: Child::spawn(cmd), dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// An instant query; the result vector (empty on any error).
    fn query(&self, ns: &Netns, q: &str) -> Vec<Value> {
        let target = format!("/api/v1/query?query={}", urlencode(q));
        let Ok(Ok((200, body))) = ns.run_in(|| http_get(PROMETHEUS, &target)) else {
            return Vec::new();
        };
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// Waits (bounded) until `q` returns data.
    fn wait_for(&self, ns: &Netns, q: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if !self.query(ns, q).is_empty() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        false
    }

    /// Every panel query of `dashboard` returns data (each retried for a few seconds, as a
    /// rate needs two scrapes in its window); returns the ones that did not.
    fn empty_panels(&self, ns: &Netns, dashboard: &str) -> Vec<(String, String)> {
        panel_queries(&load(dashboard))
            .into_iter()
            .filter(|(_, e)| !self.wait_for(ns, &concrete(e), Duration::from_secs(8)))
            .collect()
    }
}

#[test]
fn prometheus_scrapes_echo_and_every_overview_panel_returns_data() {
    sweep();
    let pair = Pair::new("mp", &PairOpts::default()).unwrap();
    let mut echo = start_echo(&pair);
    let prom = Prometheus::start(&pair.ns_b, "echo");
    let stop = AtomicBool::new(false);
    let dst = SocketAddrV4::new(pair.b.ip, 7);
    let empty = std::thread::scope(|s| {
        s.spawn(|| udp_load(&pair.ns_a, dst, &stop, Duration::from_secs(90)));
        let up = prom.wait_for(
            &pair.ns_b,
            "rate(xdpos_rx_packets_total[5s]) > 0",
            Duration::from_secs(40),
        );
        let empty = if up { prom.empty_panels(&pair.ns_b, "overview.json") } else { Vec::new() };
        stop.store(true, Ordering::Relaxed);
        assert!(up, "prometheus never saw traffic; its log:\n{}", prom.log());
        empty
    });
    assert!(empty.is_empty(), "overview panels without data: {empty:#?}");
    echo.signal(Signal::TERM);
    assert!(echo.wait(DEADLINE).is_some_and(|s| s.success()), "{:?}", echo.seen);
    drop(prom);
    assert_no_xdp(&pair.ns_b);
}

#[test]
fn prometheus_scrapes_the_router_and_every_forwarding_panel_returns_data() {
    sweep();
    let chain = Chain::new("mf", &ChainOpts::default()).unwrap();
    let mut cmd = chain.ns_f.cmd(xdpos_bin().to_str().unwrap());
    cmd.args([
        "forward",
        "--role",
        "router",
        "--iface",
        "xf0=10.0.1.1/24",
        "--iface",
        "xf1=10.0.2.1/24",
    ])
    // The fast path on (`auto` takes XDP on veth), between plain kernel peers: their veths do
    // not take redirected frames, so the program punts everything (port_disabled) and the
    // worker forwards it; both the fast path's panels and the worker's have data.
    .args(["--fast-path", "auto", "--metrics", METRICS]);
    let mut router = Child::spawn(cmd);
    assert!(router.wait_line("ready:", DEADLINE).is_some(), "router not ready: {:?}", router.seen);
    let prom = Prometheus::start(&chain.ns_f, "fwd");
    let stop = AtomicBool::new(false);
    let dst = SocketAddrV4::new(chain.b.ip, 9);
    let empty = std::thread::scope(|s| {
        // Datagrams from A to B's discard port through the router (B's kernel answers with
        // port unreachable, which the router forwards back).
        s.spawn(|| udp_load(&chain.ns_a, dst, &stop, Duration::from_secs(90)));
        let up = prom.wait_for(
            &chain.ns_f,
            "rate(xdpos_forwarded_packets_total[5s]) > 0",
            Duration::from_secs(40),
        );
        let empty = if up { prom.empty_panels(&chain.ns_f, "forwarding.json") } else { Vec::new() };
        stop.store(true, Ordering::Relaxed);
        assert!(up, "prometheus never saw forwarding; its log:\n{}\n{}", prom.log(), chain.dump());
        empty
    });
    assert!(empty.is_empty(), "forwarding panels without data: {empty:#?}");
    // The exposition of the router passes promtool too.
    let (code, text) = chain.ns_f.run_in(|| http_get(METRICS, "/metrics").unwrap()).unwrap();
    assert_eq!(code, 200);
    let (ok, lint) = promtool_check_metrics(&text);
    assert!(ok && lint.trim().is_empty(), "promtool check metrics (router):\n{lint}");
    router.signal(Signal::TERM);
    assert!(router.wait(DEADLINE).is_some_and(|s| s.success()), "{:?}", router.seen);
    drop(prom);
}

#[test]
fn capture_from_a_running_echo_is_read_back_by_tshark() {
    sweep();
    let pair = Pair::new("mc", &PairOpts::default()).unwrap();
    let mut echo = start_echo(&pair);
    let file = std::env::temp_dir().join(format!("xdpos-capture-{}.pcap", std::process::id()));
    let mut cmd = pair.ns_b.cmd(xdpos_bin().to_str().unwrap());
    cmd.args(["capture", "--from", METRICS, "--interface", &pair.b.ifname])
        .args(["--filter", "udp and port 7", "--snaplen", "96", "--count", "20", "--seconds", "15"])
        .arg("-w")
        .arg(&file);
    let mut cap = Child::spawn(cmd);
    // Datagrams to the echo port (captured) and to port 9 (not: the filter), until the
    // capture has its 20 frames; the echo keeps answering meanwhile.
    let (sent, echoed) = pair
        .ns_a
        .run_in(|| {
            let s = kernel_udp(std::net::Ipv4Addr::UNSPECIFIED, 0);
            s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            let t0 = Instant::now();
            let (mut sent, mut echoed, mut buf) = (0u32, 0u32, [0u8; 256]);
            while matches!(cap.child.try_wait(), Ok(None)) && t0.elapsed() < Duration::from_secs(20)
            {
                s.send_to(&payload(sent, 100), SocketAddrV4::new(pair.b.ip, 9)).unwrap();
                s.send_to(&payload(sent, 100), SocketAddrV4::new(pair.b.ip, 7)).unwrap();
                sent += 1;
                while let Ok(n) = s.recv(&mut buf) {
                    echoed += u32::from(check_payload(&buf[..n]).is_some());
                }
            }
            (sent, echoed)
        })
        .unwrap();
    let st = cap.wait(DEADLINE).expect("capture exits");
    assert!(st.success(), "xdpos capture failed: {st:?}");
    assert!(sent >= 20 && echoed >= 20, "sent {sent}, echoed {echoed}: traffic kept flowing");
    let (ok, out) = output(
        Command::new("tshark")
            .args(["-r"])
            .arg(&file)
            .args(["-T", "fields", "-e", "ip.src", "-e", "udp.dstport", "-e", "frame.cap_len"])
            .args(["-e", "frame.len"])
            .stderr(Stdio::null()),
    );
    let _ = std::fs::remove_file(&file);
    assert!(ok, "tshark: {out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 20, "{out}");
    for l in lines {
        assert_eq!(l, "10.0.0.1\t7\t96\t142", "{out}");
    }
    echo.signal(Signal::TERM);
    assert!(echo.wait(DEADLINE).is_some_and(|s| s.success()), "{:?}", echo.seen);
}

/// A server-role configuration for the daemon on `iface`: one worker, a UDP echo on port 7,
/// metrics at `METRICS`; `listen` is the echo's address (a wrong one makes the file invalid).
fn daemon_config(iface: &str, listen: &str) -> String {
    format!(
        "[[interfaces]]\nname = \"{iface}\"\nqueues = 1\naddresses = [\"10.0.0.2/24\"]\n\
         frames = 2112\nring_size = 1024\n\n[[workers]]\ncpu = 1\nqueues = [\"{iface}:0\"]\n\n\
         [role]\nkind = \"server\"\n\n[[services]]\nkind = \"udp-echo\"\nlisten = \"{listen}\"\n\n\
         [metrics]\nlisten = \"{METRICS}\"\n"
    )
}

#[test]
fn the_daemon_serves_metrics_under_traffic_and_reports_a_failed_reload() {
    sweep();
    let pair = Pair::new("md", &PairOpts::default()).unwrap();
    let file =
        std::env::temp_dir().join(format!("xdpos-metrics-daemon-{}.toml", std::process::id()));
    std::fs::write(&file, daemon_config(&pair.b.ifname, "10.0.0.2:7")).unwrap();
    let mut cmd = pair.ns_b.cmd(xdpos_bin().to_str().unwrap());
    cmd.arg("run").arg("--config").arg(&file);
    let mut d = Child::spawn(cmd);
    assert!(d.wait_line("ready:", DEADLINE).is_some(), "daemon not ready: {:?}", d.seen);
    let (text, rx) = scrape_under_udp_load(&pair, "daemon");
    let b = format!("interface=\"{}\"", pair.b.ifname);
    assert!(sample(&text, "xdpos_udp_rx_datagrams_total", &[&b]).unwrap() > 1000.0);
    assert_eq!(sample(&text, "xdpos_worker_info", &["role=\"server\"", "cpu=\"1\""]), Some(1.0));
    assert!(
        sample(&text, "xdpos_xdp_packets_total", &[&b, "verdict=\"redirect\""]).unwrap() >= rx,
        "the metrics thread (no capabilities) reads the steering program's counters"
    );
    assert!(sample(&text, "xdpos_xsk_rx_ring_full_total", &[&b]).is_some());
    assert_eq!(sample(&text, "xdpos_ready", &[]), Some(1.0));
    assert_eq!(sample(&text, "xdpos_config_last_reload_successful", &[]), Some(1.0));
    // An invalid file and SIGHUP: refused, the old configuration keeps serving, the metrics say so.
    std::fs::write(&file, daemon_config(&pair.b.ifname, "10.0.0.77:7")).unwrap();
    d.signal(Signal::HUP);
    assert!(d.wait_line("reload: failed", DEADLINE).is_some(), "{:?}", d.seen);
    let (text, ready) = pair
        .ns_b
        .run_in(|| {
            (http_get(METRICS, "/metrics").unwrap().1, http_get(METRICS, "/readyz").unwrap().0)
        })
        .unwrap();
    assert_eq!(sample(&text, "xdpos_config_last_reload_successful", &[]), Some(0.0), "{text}");
    assert_eq!(sample(&text, "xdpos_config_reload_failures_total", &[]), Some(1.0));
    assert_eq!(ready, 200, "a refused reload keeps serving");
    d.signal(Signal::TERM);
    let st = d.wait(DEADLINE).expect("exits after SIGTERM");
    let _ = std::fs::remove_file(&file);
    assert!(st.success(), "{st:?} {:?}", d.seen);
    assert_no_xdp(&pair.ns_b);
}

#[test]
fn the_routers_xdp_fast_path_counters_are_exported() {
    sweep();
    let chain = Chain::new("mxf", &ChainOpts::default()).unwrap();
    // XDP redirects into a veth reach its peer only with GRO on there (docs/forwarding.md).
    chain.ns_b.sh(&format!("ethtool -K {} gro on >/dev/null", chain.b.ifname)).unwrap();
    let mut cmd = chain.ns_f.cmd(xdpos_bin().to_str().unwrap());
    cmd.args([
        "forward",
        "--role",
        "router",
        "--iface",
        "xf0=10.0.1.1/24",
        "--iface",
        "xf1=10.0.2.1/24",
    ])
    .args(["--fast-path", "xdp", "--metrics", METRICS]);
    let mut router = Child::spawn(cmd);
    assert!(router.wait_line("ready:", DEADLINE).is_some(), "router not ready: {:?}", router.seen);
    // The first packets resolve the next hop through the workers; then the program forwards.
    let ping = chain.ns_a.sh(&format!("ping -c 20 -i 0.1 -W 2 {}", chain.b.ip));
    let (code, text) = chain.ns_f.run_in(|| http_get(METRICS, "/metrics").unwrap()).unwrap();
    assert_eq!(code, 200);
    let (ok, lint) = promtool_check_metrics(&text);
    assert!(ok && lint.trim().is_empty(), "promtool check metrics (fast path):\n{lint}");
    let fwd = sample(&text, "xdpos_xdp_fast_path_packets_total", &["outcome=\"forwarded\""])
        .expect("the fast path's counters are exported");
    assert!(fwd > 0.0, "nothing forwarded by the program: {ping:?}\n{text}");
    assert!(
        sample(&text, "xdpos_xdp_fast_path_packets_total", &["outcome=\"no_neighbor\""]).is_some()
    );
    router.signal(Signal::TERM);
    assert!(router.wait(DEADLINE).is_some_and(|s| s.success()), "{:?}", router.seen);
}

/// A file in the temporary directory, removed on drop (a failing test leaves nothing).
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> TempFile {
        TempFile(std::env::temp_dir().join(format!("xdpos-{name}-{}", std::process::id())))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Checks a classic pcap's global header (little-endian magic, version 2.4, `snaplen`,
/// Ethernet) and returns its records: (seconds, original length, captured bytes).
fn pcap_records(pcap: &[u8], snaplen: u32) -> Vec<(u32, u32, &[u8])> {
    let u32_at = |i: usize| u32::from_le_bytes(pcap[i..i + 4].try_into().unwrap());
    let u16_at = |i: usize| u16::from_le_bytes(pcap[i..i + 2].try_into().unwrap());
    assert!(pcap.len() >= 24, "no pcap header: {} bytes", pcap.len());
    assert_eq!(u32_at(0), 0xa1b2_c3d4, "magic");
    assert_eq!((u16_at(4), u16_at(6)), (2, 4), "version");
    assert_eq!((u32_at(16), u32_at(20)), (snaplen, 1), "snaplen and link type (Ethernet)");
    let mut out = Vec::new();
    let mut i = 24;
    while i < pcap.len() {
        assert!(i + 16 <= pcap.len(), "a truncated record header at {i}");
        let (sec, incl, orig) = (u32_at(i), u32_at(i + 8), u32_at(i + 12));
        let end = i + 16 + incl as usize;
        assert!(end <= pcap.len(), "a truncated record at {i}");
        assert!(incl <= orig, "record at {i}: {incl} captured of {orig}");
        out.push((sec, orig, &pcap[i + 16..end]));
        i = end;
    }
    out
}

/// (source, destination, source port, destination port, TTL) of an Ethernet/IPv4/UDP frame.
fn udp_of(frame: &[u8]) -> (std::net::Ipv4Addr, std::net::Ipv4Addr, u16, u16, u8) {
    assert_eq!(&frame[12..14], &[0x08, 0x00], "IPv4");
    let ip = &frame[14..];
    assert_eq!(ip[9], 17, "UDP");
    let l4 = &ip[usize::from(ip[0] & 0x0f) * 4..];
    (
        std::net::Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        std::net::Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
        u16::from_be_bytes([l4[0], l4[1]]),
        u16::from_be_bytes([l4[2], l4[3]]),
        ip[8],
    )
}

/// Stops an instance with SIGTERM: it must exit 0, every worker line must report its frames
/// accounted for, and no XDP program may be left in `ns`.
fn stop_cleanly(d: &mut Child, ns: &Netns) {
    d.signal(Signal::TERM);
    let st = d.wait(DEADLINE).expect("exits after SIGTERM");
    assert!(st.success(), "{st:?} {:?}", d.seen);
    for l in d.seen.iter().filter(|l| l.starts_with("worker ")) {
        assert!(l.contains("frames ok"), "frame accounting: {l}");
    }
    assert_no_xdp(ns);
}

/// Starts `xdpos run` in `ns` with the configuration `toml` (written to `file`) and waits
/// for its `ready:` line.
fn capture_daemon(ns: &Netns, file: &TempFile, toml: &str) -> Child {
    std::fs::write(&file.0, toml).unwrap();
    let mut cmd = ns.cmd(xdpos_bin().to_str().unwrap());
    cmd.arg("run").arg("--config").arg(&file.0);
    let mut d = Child::spawn(cmd);
    assert!(d.wait_line("ready:", DEADLINE).is_some(), "daemon not ready: {:?}", d.seen);
    d
}

/// `xdpos capture` against the daemon in `ns` (its endpoint at [`METRICS`]): `count` frames
/// of `iface` queue `queue` that match `filter`, cut at `snaplen`, into `file`; returns the
/// pcap.
fn capture_pcap(
    ns: &Netns,
    (iface, queue): (&str, u32),
    filter: &str,
    (snaplen, count): (u32, u32),
    file: &Path,
) -> Vec<u8> {
    let mut cmd = ns.cmd(xdpos_bin().to_str().unwrap());
    cmd.args(["capture", "--from", METRICS, "--interface", iface, "--queue"])
        .arg(queue.to_string())
        .args(["--filter", filter, "--snaplen", &snaplen.to_string()])
        .args(["--count", &count.to_string(), "--seconds", "15", "-w"])
        .arg(file)
        .stderr(Stdio::piped());
    let (ok, out) = output(&mut cmd);
    assert!(ok, "xdpos capture {iface} queue {queue}: {out}");
    std::fs::read(file).unwrap()
}

/// A kernel UDP echo at `at` in namespace `ns`, until `stop` (at most 60 s); `ready` once
/// bound.
fn kernel_echo_until(ns: &str, at: SocketAddrV4, stop: &AtomicBool, ready: mpsc::Sender<()>) {
    Netns::existing(ns)
        .run_in(|| {
            let sock = kernel_udp(*at.ip(), at.port());
            sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            ready.send(()).unwrap();
            let mut buf = [0u8; 2048];
            let t = Instant::now();
            while !stop.load(Ordering::Relaxed) && t.elapsed() < Duration::from_secs(60) {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    let _ = sock.send_to(&buf[..n], from);
                }
            }
        })
        .unwrap()
}

/// Kernel UDP clients in namespace `ns`, one socket per source port of `sports` at `from`:
/// every ~2 ms each sends a datagram of `size` bytes to each of `to` and reads what came back,
/// counting intact echoes in `echoed`, until `stop` (at most 60 s). Returns the rounds.
fn udp_rounds(
    ns: &str,
    (from, sports): (std::net::Ipv4Addr, std::ops::Range<u16>),
    to: &[SocketAddrV4],
    size: usize,
    (stop, echoed): (&AtomicBool, &AtomicU64),
) -> u32 {
    Netns::existing(ns)
        .run_in(|| {
            let socks: Vec<_> = sports.map(|p| kernel_udp(from, p)).collect();
            for s in &socks {
                s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
            }
            let (mut round, mut buf) = (0u32, [0u8; 2048]);
            let t = Instant::now();
            while !stop.load(Ordering::Relaxed) && t.elapsed() < Duration::from_secs(60) {
                for s in &socks {
                    for dst in to {
                        let _ = s.send_to(&payload(round, size), *dst);
                    }
                    while let Ok(n) = s.recv(&mut buf) {
                        if check_payload(&buf[..n]).is_some() {
                            echoed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                round += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            round
        })
        .unwrap()
}

/// Waits (bounded) until `echoed` reaches `n`; panics with `what` if it does not.
fn wait_echoes(echoed: &AtomicU64, n: u64, what: &str) -> u64 {
    let t = Instant::now();
    while echoed.load(Ordering::Relaxed) < n && t.elapsed() < DEADLINE {
        std::thread::sleep(Duration::from_millis(20));
    }
    let got = echoed.load(Ordering::Relaxed);
    assert!(got >= n, "{what}: {got} echoes");
    got
}

/// `xdpos capture` from each queue of a two-queue server (one worker per queue): each capture
/// holds the datagrams its queue received, and since A's kernel keeps a flow on one transmit
/// queue (B's receive queue on veth), the two captures share no flow.
#[test]
fn capture_from_each_queue_of_a_two_worker_server() {
    sweep();
    let pair = Pair::new("mmq", &PairOpts { queues: 2, ..PairOpts::default() }).unwrap();
    let cfg = TempFile::new("capture-server.toml");
    let mut d = capture_daemon(
        &pair.ns_b,
        &cfg,
        &format!(
            "[[interfaces]]\nname = \"xb0\"\nqueues = 2\naddresses = [\"10.0.0.2/24\"]\n\
             frames = 2112\nring_size = 1024\n\n[[workers]]\ncpu = 0\nqueues = [\"xb0:0\"]\n\n\
             [[workers]]\ncpu = 1\nqueues = [\"xb0:1\"]\n\n[role]\nkind = \"server\"\n\n\
             [[services]]\nkind = \"udp-echo\"\nlisten = \"0.0.0.0:7\"\n\n\
             [metrics]\nlisten = \"{METRICS}\"\n"
        ),
    );
    let (a, b) = (pair.a.ip, pair.b.ip);
    let (stop, echoed) = (AtomicBool::new(false), AtomicU64::new(0));
    let (pcap0, pcap1) = std::thread::scope(|s| {
        let (stop, echoed) = (&stop, &echoed);
        let ns_a = pair.ns_a.name();
        // Sixteen flows (source ports 41000..41016) to the echo service.
        let to = [SocketAddrV4::new(b, 7)];
        s.spawn(move || udp_rounds(ns_a, (a, 41000..41016), &to, 100, (stop, echoed)));
        wait_echoes(echoed, 32, "the server echoes");
        let (f0, f1) = (TempFile::new("capture-q0.pcap"), TempFile::new("capture-q1.pcap"));
        let filter = "udp and dst port 7";
        let pcap0 = capture_pcap(&pair.ns_b, ("xb0", 0), filter, (128, 10), &f0.0);
        let pcap1 = capture_pcap(&pair.ns_b, ("xb0", 1), filter, (128, 10), &f1.0);
        stop.store(true, Ordering::Relaxed);
        (pcap0, pcap1)
    });
    let mut flows = [std::collections::BTreeSet::new(), std::collections::BTreeSet::new()];
    for (q, pcap) in [&pcap0, &pcap1].into_iter().enumerate() {
        let recs = pcap_records(pcap, 128);
        assert_eq!(recs.len(), 10, "queue {q}: count honoured");
        for (_, orig, data) in &recs {
            assert_eq!((*orig, data.len()), (142, 128), "queue {q}: snaplen honoured");
            let (src, dst, sport, dport, ttl) = udp_of(data);
            assert_eq!((src, dst, dport, ttl), (a, b, 7, 64), "queue {q}: as A sent it");
            assert!((41000..41016).contains(&sport), "queue {q}: one of A's flows: {sport}");
            flows[q].insert(sport);
        }
    }
    assert!(flows[0].is_disjoint(&flows[1]), "a flow seen on both queues: {flows:?}");
    stop_cleanly(&mut d, &pair.ns_b);
}

/// `xdpos capture` from a cross-connect daemon (the L2 role, its own forwarding loop): frames
/// A sends to B through it are captured on each side's interface as they arrive, before they
/// are passed on (TTL untouched: nothing in an L2 cross-connect changes them), while the
/// traffic keeps flowing.
#[test]
fn capture_from_the_daemon_xconnect_while_it_forwards() {
    sweep();
    let opts = ChainOpts {
        a_cidr: (std::net::Ipv4Addr::new(10, 0, 0, 1), 24),
        b_cidr: (std::net::Ipv4Addr::new(10, 0, 0, 2), 24),
        gateways: None,
        ..ChainOpts::default()
    };
    let chain = Chain::new("mcx", &opts).unwrap();
    let cfg = TempFile::new("capture-xconnect.toml");
    let mut d = capture_daemon(
        &chain.ns_f,
        &cfg,
        &format!(
            "[[interfaces]]\nname = \"xf0\"\nframes = 2112\nring_size = 1024\n\n\
             [[interfaces]]\nname = \"xf1\"\nframes = 2112\nring_size = 1024\n\n\
             [[workers]]\ncpu = 1\nqueues = [\"xf0:0\", \"xf1:0\"]\n\n\
             [role]\nkind = \"xconnect\"\n\n[[role.xconnect]]\na = \"xf0\"\nb = \"xf1\"\n\n\
             [metrics]\nlisten = \"{METRICS}\"\n"
        ),
    );
    let (a, b) = (chain.a.ip, chain.b.ip);
    let (stop, echoed) = (AtomicBool::new(false), AtomicU64::new(0));
    let (pcap_a, pcap_b, during) = std::thread::scope(|s| {
        let (stop, echoed) = (&stop, &echoed);
        let (ns_a, ns_b) = (chain.ns_a.name(), chain.ns_b.name());
        let (ready_tx, ready_rx) = mpsc::channel();
        let echo_at = SocketAddrV4::new(b, 9000);
        s.spawn(move || kernel_echo_until(ns_b, echo_at, stop, ready_tx));
        ready_rx.recv_timeout(DEADLINE).expect("B's echo ready");
        s.spawn(move || udp_rounds(ns_a, (a, 40000..40001), &[echo_at], 100, (stop, echoed)));
        let before = wait_echoes(echoed, 20, "echoes through the cross-connect");
        let (fa, fb) = (TempFile::new("capture-xc-xf0.pcap"), TempFile::new("capture-xc-xf1.pcap"));
        let pcap_a =
            capture_pcap(&chain.ns_f, ("xf0", 0), "udp and dst port 9000", (128, 10), &fa.0);
        let pcap_b =
            capture_pcap(&chain.ns_f, ("xf1", 0), "udp and src port 9000", (128, 10), &fb.0);
        let during = echoed.load(Ordering::Relaxed) - before;
        stop.store(true, Ordering::Relaxed);
        (pcap_a, pcap_b, during)
    });
    assert!(during >= 10, "only {during} echoes during the captures: forwarding stopped?");
    // 14 + 20 + 8 + 100 bytes, whole (snap length 128 cuts them to 128).
    for (pcap, (src, dst, sport, dport)) in
        [(&pcap_a, (a, b, 40000, 9000)), (&pcap_b, (b, a, 9000, 40000))]
    {
        let recs = pcap_records(pcap, 128);
        assert_eq!(recs.len(), 10, "count honoured");
        for (_, orig, data) in &recs {
            assert_eq!((*orig, data.len()), (142, 128), "snaplen honoured");
            assert_eq!(udp_of(data), (src, dst, sport, dport, 64), "as the sender sent it");
        }
    }
    stop_cleanly(&mut d, &chain.ns_f);
}

/// `xdpos capture` against the daemon (`xdpos run`, router role, default fast path `auto`
/// between plain kernel peers, so the worker forwards everything) while UDP flows from A to
/// B's kernel echo and back: a capture of xf0 queue 0 takes exactly `count` frames of the
/// filter, cut at the snap length, as they arrived (TTL not yet decremented), and the router
/// keeps forwarding meanwhile; a capture of xf1 takes B's echoes only (each interface of the
/// worker's group is its own capture point); a queue nobody polls is refused; tshark reads
/// the file back.
#[test]
fn capture_from_the_daemon_router_while_it_forwards() {
    sweep();
    let chain = Chain::new("mcr", &ChainOpts::default()).unwrap();
    let cfg = TempFile::new("capture-router.toml");
    let mut d = capture_daemon(
        &chain.ns_f,
        &cfg,
        &format!(
            "[[interfaces]]\nname = \"xf0\"\naddresses = [\"10.0.1.1/24\"]\nframes = 2112\n\
             ring_size = 1024\n\n[[interfaces]]\nname = \"xf1\"\naddresses = [\"10.0.2.1/24\"]\n\
             frames = 2112\nring_size = 1024\n\n[[workers]]\ncpu = 1\nqueues = [\"xf0:0\", \
             \"xf1:0\"]\n\n[role]\nkind = \"router\"\n\n[metrics]\nlisten = \"{METRICS}\"\n"
        ),
    );
    let t0 = std::time::SystemTime::now();
    let capture = |iface: &str, filter: &str, snaplen: u32, count: u32, file: &Path| {
        capture_pcap(&chain.ns_f, (iface, 0), filter, (snaplen, count), file)
    };
    let (stop, echoed) = (AtomicBool::new(false), AtomicU64::new(0));
    let (pcap_a, pcap_b, during, sent, echoed) = std::thread::scope(|s| {
        let (stop, echoed) = (&stop, &echoed);
        let (ns_a, ns_b) = (chain.ns_a.name(), chain.ns_b.name());
        let b = std::net::Ipv4Addr::new(10, 0, 2, 2);
        // B's kernel echoes port 9000; port 9001 has no socket (B answers port unreachable).
        let (ready_tx, ready_rx) = mpsc::channel();
        s.spawn(move || kernel_echo_until(ns_b, SocketAddrV4::new(b, 9000), stop, ready_tx));
        ready_rx.recv_timeout(DEADLINE).expect("B's echo ready");
        // A sends 200-byte datagrams from port 40000 to both ports, counting intact echoes.
        let a = std::net::Ipv4Addr::new(10, 0, 1, 2);
        let to = [SocketAddrV4::new(b, 9001), SocketAddrV4::new(b, 9000)];
        let load = s.spawn(move || udp_rounds(ns_a, (a, 40000..40001), &to, 200, (stop, echoed)));
        // Traffic flows before the capture starts.
        let before = wait_echoes(echoed, 20, "echoes through the router");
        let file_a = TempFile::new("capture-xf0.pcap");
        let pcap_a = capture("xf0", "udp and port 9000", 60, 25, &file_a.0);
        let during = echoed.load(Ordering::Relaxed) - before;
        let file_b = TempFile::new("capture-xf1.pcap");
        let pcap_b = capture("xf1", "udp and src 10.0.2.2", 96, 5, &file_b.0);
        // tshark reads the first file back.
        let (ok, out) = output(
            Command::new("tshark")
                .args(["-r"])
                .arg(&file_a.0)
                .args(["-T", "fields", "-e", "ip.src", "-e", "udp.dstport", "-e", "frame.cap_len"])
                .args(["-e", "frame.len"])
                .stderr(Stdio::null()),
        );
        assert!(ok, "tshark: {out}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 25, "tshark:\n{out}");
        assert!(lines.iter().all(|l| *l == "10.0.1.2\t9000\t60\t242"), "tshark:\n{out}");
        stop.store(true, Ordering::Relaxed);
        let sent = load.join().unwrap();
        (pcap_a, pcap_b, during, sent, echoed.load(Ordering::Relaxed))
    });
    assert!(sent >= 30 && echoed >= 30, "sent {sent}, echoed {echoed}\n{}", chain.dump());
    assert!(during >= 20, "only {during} echoes came back during the capture: forwarding stopped?");
    let now = std::time::SystemTime::now();
    let secs =
        |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let (from, to) = (secs(t0) as u32 - 2, secs(now) as u32 + 2);
    // xf0: exactly the count, each cut at the snap length, as received from A (TTL 64).
    let recs = pcap_records(&pcap_a, 60);
    assert_eq!(recs.len(), 25, "count honoured");
    let mut last = 0;
    for (sec, orig, data) in &recs {
        assert!((from..=to).contains(sec) && *sec >= last, "timestamp {sec} not in {from}..{to}");
        last = *sec;
        assert_eq!((*orig, data.len()), (242, 60), "snaplen honoured: 60 of 14 + 20 + 8 + 200");
        let (src, dst, sport, dport, ttl) = udp_of(data);
        assert_eq!((src.to_string(), dst.to_string()), ("10.0.1.2".into(), "10.0.2.2".into()));
        assert_eq!((sport, dport, ttl), (40000, 9000, 64), "captured before forwarding");
    }
    // xf1: B's echoes only (the other interface of the same worker).
    let recs = pcap_records(&pcap_b, 96);
    assert_eq!(recs.len(), 5, "count honoured");
    for (_, orig, data) in &recs {
        assert_eq!((*orig, data.len()), (242, 96));
        let (src, dst, sport, dport, _) = udp_of(data);
        assert_eq!((src.to_string(), dst.to_string()), ("10.0.2.2".into(), "10.0.1.2".into()));
        assert_eq!((sport, dport), (9000, 40000));
    }
    // A queue the daemon does not poll has no capture point.
    let mut cmd = chain.ns_f.cmd(xdpos_bin().to_str().unwrap());
    cmd.args(["capture", "--from", METRICS, "--interface", "xf0", "--queue", "3", "-w", "-"])
        .stderr(Stdio::piped());
    let (ok, out) = output(&mut cmd);
    assert!(!ok && out.contains("no capture point on xf0 queue 3"), "{out}");
    // The batch time is per queue: both interfaces' queue 0 have batches.
    let (code, text) = chain.ns_f.run_in(|| http_get(METRICS, "/metrics").unwrap()).unwrap();
    assert_eq!(code, 200);
    for i in ["xf0", "xf1"] {
        let want = [format!("interface=\"{i}\""), "queue=\"0\"".to_string()];
        let want: Vec<&str> = want.iter().map(String::as_str).collect();
        let n = sample(&text, "xdpos_batch_duration_seconds_count", &want).unwrap_or(0.0);
        assert!(n > 0.0, "no batch time for {i} queue 0:\n{text}");
    }
    let (ok, lint) = promtool_check_metrics(&text);
    assert!(ok && lint.trim().is_empty(), "promtool check metrics (router daemon):\n{lint}");
    stop_cleanly(&mut d, &chain.ns_f);
}
