//! # Metrics: single-writer cells on the fast path, a Prometheus endpoint on the control thread
//!
//! What it is: everything an operator's Prometheus scrapes from xdpos (DESIGN.md §6,
//! docs/observability.md):
//! - [`cells`]: per-worker single-writer counters and fixed-bucket histograms, cache-padded,
//!   updated with relaxed load+store once per batch (the only part the fast path touches);
//! - [`live`]: a worker's block ([`WorkerMetrics`]) and a service's [`Source`]
//!   ([`ServiceMetrics`]: the blocks plus the kernel's `XDP_STATISTICS` per socket and the
//!   steering programs' per-CPU verdict counters, read at scrape time);
//! - [`expo`]: the text exposition format;
//! - [`Registry`]: the sources of a process, its build information, readiness and the result
//!   of the last configuration (re)load;
//! - [`http`]: `/metrics`, `/healthz`, `/readyz` (and `/capture`, [`crate::capture`]) on a
//!   listener of the control side ([`serve`]; 127.0.0.1 unless configured otherwise).
//!
//! Why our own cells and writer rather than the `prometheus` or `metrics` crates: their
//! counters are shared atomics incremented with a locked read-modify-write (`prometheus`'
//! `IntCounter::inc` is `fetch_add`), or looked up through a global recorder per update
//! (`metrics`' `counter!`); a worker that owns its counters needs neither. The measurement is in
//! docs/observability.md (`cargo bench -p xdpos-benches --bench metrics`).
//!
//! What it never does: lock or allocate on a worker (scrapes allocate on the control side),
//! block a worker (a slow scraper only delays the next scrape), or read a worker's stack: the
//! worker publishes, the collector reads cells.

pub mod cells;
pub mod expo;
pub mod http;
pub mod live;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

pub use expo::{Exposition, Kind};
pub use http::{serve, Server};
pub use live::{Forwarding, Heartbeat, ServiceMetrics, SocketReader, WorkerMetrics, STALL_AFTER};

/// Something that writes metric families at scrape time (on the control side).
pub trait Source: Send + Sync + std::fmt::Debug {
    /// Writes this source's families.
    fn collect(&self, e: &mut Exposition);

    /// The workers whose running loop has gone longer than [`STALL_AFTER`] without a heartbeat
    /// at `now`: (worker label, time since its last beat). None by default.
    fn stalled(&self, _now: std::time::Instant) -> Vec<(String, std::time::Duration)> {
        Vec::new()
    }
}

/// The last configuration (re)load, as a [`Status`] reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReloadInfo {
    /// Whether the last (re)load succeeded.
    pub last_ok: bool,
    /// Unix time of the last successful (re)load (the start counts as one).
    pub last_success_unix: f64,
    /// Reloads attempted.
    pub attempts: u64,
    /// Reloads refused.
    pub failures: u64,
}

/// Readiness and reload state kept by someone else (the daemon's control handle): when a
/// registry has one ([`Registry::set_status`]), `/readyz` and the reload families come from it.
pub trait Status: Send + Sync + std::fmt::Debug {
    /// Whether the process serves traffic.
    fn ready(&self) -> bool;
    /// The last (re)load.
    fn reload(&self) -> ReloadInfo;
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// The metrics of one process: its sources, and the control plane's own state.
#[derive(Debug)]
pub struct Registry {
    sources: Mutex<Vec<Arc<dyn Source>>>,
    status: Mutex<Option<Arc<dyn Status>>>,
    captures: Mutex<Vec<crate::capture::CaptureTarget>>,
    /// A capture is streaming (one at a time).
    pub(crate) capturing: AtomicBool,
    started: f64,
    ready: AtomicBool,
    healthy: AtomicBool,
    reload_ok: AtomicBool,
    /// Unix time of the last successful (re)load, in milliseconds.
    reload_success_ms: AtomicU64,
    reloads: AtomicU64,
    reload_failures: AtomicU64,
}

impl Default for Registry {
    fn default() -> Registry {
        Registry {
            sources: Mutex::new(Vec::new()),
            status: Mutex::new(None),
            captures: Mutex::new(Vec::new()),
            capturing: AtomicBool::new(false),
            started: unix_now(),
            ready: AtomicBool::new(false),
            healthy: AtomicBool::new(true),
            reload_ok: AtomicBool::new(true),
            reload_success_ms: AtomicU64::new((unix_now() * 1e3) as u64),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
        }
    }
}

impl Registry {
    /// An empty registry: not ready, healthy, configuration loaded now.
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    /// Adds a source.
    pub fn add(&self, s: Arc<dyn Source>) {
        self.sources.lock().unwrap_or_else(|e| e.into_inner()).push(s);
    }

    /// Replaces every source (a new service after a reload).
    pub fn set_sources(&self, s: Vec<Arc<dyn Source>>) {
        *self.sources.lock().unwrap_or_else(|e| e.into_inner()) = s;
    }

    /// Adds capture points (`/capture`, `xdpos capture`).
    pub fn add_captures(&self, targets: Vec<crate::capture::CaptureTarget>) {
        self.captures.lock().unwrap_or_else(|e| e.into_inner()).extend(targets);
    }

    /// Replaces every capture point (a new service after a reload).
    pub fn set_captures(&self, targets: Vec<crate::capture::CaptureTarget>) {
        *self.captures.lock().unwrap_or_else(|e| e.into_inner()) = targets;
    }

    /// The capture point of `interface` queue `queue`.
    pub fn capture_target(
        &self,
        interface: &str,
        queue: u32,
    ) -> Option<crate::capture::CaptureTarget> {
        let c = self.captures.lock().unwrap_or_else(|e| e.into_inner());
        c.iter().find(|t| t.interface == interface && t.queue == queue).cloned()
    }

    /// Says whether the process serves traffic (`/readyz`).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Takes readiness and the reload state from `s` from now on.
    pub fn set_status(&self, s: Arc<dyn Status>) {
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = Some(s);
    }

    fn status(&self) -> Option<Arc<dyn Status>> {
        self.status.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether `/readyz` answers 200: the service is ready and no worker is stalled.
    pub fn ready(&self) -> bool {
        self.readiness().is_ok()
    }

    /// `/readyz`'s answer: `Ok` when ready, else why not (`not ready`, or the stalled workers
    /// and how long each has gone without a heartbeat).
    pub fn readiness(&self) -> Result<(), String> {
        let ready = match self.status() {
            Some(s) => s.ready(),
            None => self.ready.load(Ordering::Relaxed),
        };
        if !ready {
            return Err("not ready".into());
        }
        let stalled = self.stalled();
        if stalled.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = stalled
            .iter()
            .map(|(w, age)| format!("worker {w} (no heartbeat for {:.3} s)", age.as_secs_f64()))
            .collect();
        Err(format!("stalled: {}", list.join(", ")))
    }

    /// The stalled workers of every source now (see [`Source::stalled`]).
    pub fn stalled(&self) -> Vec<(String, std::time::Duration)> {
        let sources = self.sources.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let now = std::time::Instant::now();
        sources.iter().flat_map(|s| s.stalled(now)).collect()
    }

    /// The last (re)load.
    pub fn reload(&self) -> ReloadInfo {
        match self.status() {
            Some(s) => s.reload(),
            None => ReloadInfo {
                last_ok: self.reload_ok.load(Ordering::Relaxed),
                last_success_unix: self.reload_success_ms.load(Ordering::Relaxed) as f64 / 1e3,
                attempts: self.reloads.load(Ordering::Relaxed),
                failures: self.reload_failures.load(Ordering::Relaxed),
            },
        }
    }

    /// Says whether the process works (`/healthz`; a worker that died makes it unhealthy).
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }

    /// Whether `/healthz` answers 200.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Records the result of a configuration reload (now).
    pub fn reload_result(&self, ok: bool) {
        self.reloads.fetch_add(1, Ordering::Relaxed);
        self.reload_ok.store(ok, Ordering::Relaxed);
        if ok {
            self.reload_success_ms.store((unix_now() * 1e3) as u64, Ordering::Relaxed);
        } else {
            self.reload_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The process's own families.
    fn collect_own(&self, e: &mut Exposition) {
        let reload = self.reload();
        e.gauge(
            "xdpos_build_info",
            "The xdpos build: version and profile.",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("profile", if cfg!(debug_assertions) { "debug" } else { "release" }),
            ],
            1.0,
        );
        e.gauge("xdpos_start_time_seconds", "Unix time the process started.", &[], self.started);
        e.gauge(
            "xdpos_ready",
            "1 when the process serves traffic (/readyz).",
            &[],
            f64::from(u8::from(self.ready())),
        );
        e.gauge(
            "xdpos_config_last_reload_successful",
            "1 when the last configuration (re)load succeeded.",
            &[],
            f64::from(u8::from(reload.last_ok)),
        );
        e.gauge(
            "xdpos_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration (re)load.",
            &[],
            reload.last_success_unix,
        );
        e.counter(
            "xdpos_config_reloads_total",
            "Configuration reloads attempted.",
            &[],
            reload.attempts,
        );
        e.counter(
            "xdpos_config_reload_failures_total",
            "Configuration reloads that failed (the running configuration stayed).",
            &[],
            reload.failures,
        );
    }

    /// One scrape: every family, as text.
    pub fn render(&self) -> String {
        let mut e = Exposition::new();
        self.collect_own(&mut e);
        let sources = self.sources.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for s in &sources {
            s.collect(&mut e);
        }
        e.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_reports_readiness_and_reloads() {
        let r = Registry::new();
        let t = r.render();
        assert!(t.contains("xdpos_ready 0\n"), "{t}");
        assert!(t.contains("xdpos_config_last_reload_successful 1\n"), "{t}");
        assert!(t.contains("xdpos_build_info{version=\""), "{t}");
        r.set_ready(true);
        r.reload_result(false);
        r.add(Arc::new(ServiceMetrics {
            workers: vec![WorkerMetrics::single("echo")],
            ..Default::default()
        }));
        let t = r.render();
        assert!(t.contains("xdpos_ready 1\n"), "{t}");
        assert!(t.contains("xdpos_config_last_reload_successful 0\n"), "{t}");
        assert!(t.contains("xdpos_config_reload_failures_total 1\n"), "{t}");
        assert!(t.contains("xdpos_rx_packets_total{worker=\"0\""), "{t}");
        assert!(t.contains("# TYPE xdpos_xsk_rx_ring_full_total counter\n"), "{t}");
    }

    /// A source whose worker "7" is stalled while `stalled` holds.
    #[derive(Debug, Default)]
    struct Stuck {
        stalled: AtomicBool,
    }

    impl Source for Stuck {
        fn collect(&self, _e: &mut Exposition) {}
        fn stalled(&self, _now: std::time::Instant) -> Vec<(String, std::time::Duration)> {
            match self.stalled.load(Ordering::Relaxed) {
                true => vec![("7".into(), std::time::Duration::from_millis(1250))],
                false => Vec::new(),
            }
        }
    }

    #[test]
    fn a_stalled_worker_makes_the_registry_unready_and_names_it() {
        let r = Registry::new();
        let s = Arc::new(Stuck::default());
        r.add(s.clone());
        assert_eq!(r.readiness(), Err("not ready".into()));
        r.set_ready(true);
        assert_eq!(r.readiness(), Ok(()));
        s.stalled.store(true, Ordering::Relaxed);
        assert_eq!(r.readiness(), Err("stalled: worker 7 (no heartbeat for 1.250 s)".into()));
        assert!(r.render().contains("xdpos_ready 0\n"));
        s.stalled.store(false, Ordering::Relaxed);
        assert!(r.ready());
    }
}
