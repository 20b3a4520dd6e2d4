//! # What the running daemon tells the outside: readiness, reloads, workers
//!
//! What it is: [`Control`], a cheap-to-clone handle on the daemon's state that the metrics
//! endpoint (`/metrics`, `/healthz`, `/readyz`) reads: whether the daemon is ready (every
//! worker started and the steering programs take traffic) or draining, its role, where the
//! configuration says metrics are served, the status of the last reload (SIGHUP) and each
//! worker's placement and live counters.
//!
//! It is the metrics registry's [`crate::metrics::Status`]: `/readyz` and the
//! `xdpos_config_*` families come from here.
//!
//! Who writes what: the control thread sets readiness and the reload status; the workers'
//! counters are theirs (single writer, relaxed stores, DESIGN.md §6) and are only read here.
//!
//! What it never does: block a worker. The reload status sits behind a mutex that only the
//! control thread and scrapes take.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::forward::ForwardCounters;
use crate::worker::WorkerCounters;

/// The outcome of the last reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadStatus {
    /// Generation of the configuration being served: 1 at start, +1 per applied reload.
    pub generation: u64,
    /// Whether the last reload was applied (`true` before any reload).
    pub last_ok: bool,
    /// When the last reload attempt finished (`None`: no reload yet).
    pub last_attempt: Option<SystemTime>,
    /// When the configuration being served was loaded (start or last applied reload).
    pub loaded_at: SystemTime,
    /// Why the last reload was refused (every problem, one per line); `None` when it applied.
    pub last_error: Option<String>,
    /// Reloads applied since start.
    pub applied: u64,
    /// Reloads refused since start (the old configuration kept serving).
    pub failed: u64,
}

/// A worker's live counters.
#[derive(Debug, Clone)]
pub enum Counters {
    /// A forwarding worker (router or cross-connect).
    Forward(Arc<ForwardCounters>),
    /// A server worker (a stack over one queue).
    Server(Arc<WorkerCounters>),
}

/// One worker of the running daemon.
#[derive(Debug, Clone)]
pub struct WorkerInfo {
    /// Index in the configuration's `[[workers]]`.
    pub index: usize,
    /// CPU it is pinned to (as configured; a failed pin is logged at start).
    pub cpu: usize,
    /// The queues it polls, as `(interface, queue)`.
    pub queues: Vec<(String, u32)>,
    /// Its counters.
    pub counters: Counters,
}

#[derive(Debug)]
struct Shared {
    ready: AtomicBool,
    draining: AtomicBool,
    role: &'static str,
    metrics_listen: SocketAddr,
    reload: Mutex<ReloadStatus>,
    workers: Mutex<Vec<WorkerInfo>>,
}

/// The daemon's state for observers (see the module documentation). Clones share it.
#[derive(Debug, Clone)]
pub struct Control {
    shared: Arc<Shared>,
}

impl Control {
    /// The state of a daemon with `role` (`router`, `xconnect`, `server`) that serves metrics
    /// at `metrics_listen`; not ready, generation 1.
    pub fn new(role: &'static str, metrics_listen: SocketAddr) -> Control {
        let now = SystemTime::now();
        Control {
            shared: Arc::new(Shared {
                ready: AtomicBool::new(false),
                draining: AtomicBool::new(false),
                role,
                metrics_listen,
                reload: Mutex::new(ReloadStatus {
                    generation: 1,
                    last_ok: true,
                    last_attempt: None,
                    loaded_at: now,
                    last_error: None,
                    applied: 0,
                    failed: 0,
                }),
                workers: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Ready for traffic: workers running, steering on, and not draining (`/readyz`).
    pub fn ready(&self) -> bool {
        self.shared.ready.load(Ordering::Relaxed) && !self.draining()
    }

    /// Whether a stop was requested and the daemon is draining.
    pub fn draining(&self) -> bool {
        self.shared.draining.load(Ordering::Relaxed)
    }

    /// The role: `router`, `xconnect` or `server`.
    pub fn role(&self) -> &'static str {
        self.shared.role
    }

    /// Where the configuration says `/metrics`, `/healthz` and `/readyz` are served.
    pub fn metrics_listen(&self) -> SocketAddr {
        self.shared.metrics_listen
    }

    /// The reload status now.
    pub fn reload(&self) -> ReloadStatus {
        self.shared.reload.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The workers (empty until they run).
    pub fn workers(&self) -> Vec<WorkerInfo> {
        self.shared.workers.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Control thread: the workers run and the steering takes traffic.
    pub fn set_ready(&self, workers: Vec<WorkerInfo>) {
        *self.shared.workers.lock().unwrap_or_else(|e| e.into_inner()) = workers;
        self.shared.ready.store(true, Ordering::Relaxed);
    }

    /// Control thread: a stop was requested.
    pub fn set_draining(&self) {
        self.shared.draining.store(true, Ordering::Relaxed);
    }

    /// Control thread: a reload was applied; returns the new generation.
    pub fn reload_applied(&self) -> u64 {
        let mut r = self.shared.reload.lock().unwrap_or_else(|e| e.into_inner());
        let now = SystemTime::now();
        r.generation += 1;
        r.last_ok = true;
        r.last_attempt = Some(now);
        r.loaded_at = now;
        r.last_error = None;
        r.applied += 1;
        r.generation
    }

    /// Control thread: a reload was refused for `why`; the served generation stays. Returns it.
    pub fn reload_failed(&self, why: String) -> u64 {
        let mut r = self.shared.reload.lock().unwrap_or_else(|e| e.into_inner());
        r.last_ok = false;
        r.last_attempt = Some(SystemTime::now());
        r.last_error = Some(why);
        r.failed += 1;
        r.generation
    }
}

/// What `/readyz` and the reload families of `/metrics` read.
impl crate::metrics::Status for Control {
    fn ready(&self) -> bool {
        Control::ready(self)
    }

    fn reload(&self) -> crate::metrics::ReloadInfo {
        let r = Control::reload(self);
        let unix = |t: SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
        };
        crate::metrics::ReloadInfo {
            last_ok: r.last_ok,
            last_success_unix: unix(r.loaded_at),
            attempts: r.applied + r.failed,
            failures: r.failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_status_counts_and_keeps_the_generation_on_failure() {
        let c = Control::new("router", "127.0.0.1:9464".parse().unwrap());
        assert!(!c.ready());
        c.set_ready(Vec::new());
        assert!(c.ready());
        assert_eq!(c.reload().generation, 1);
        assert_eq!(c.reload_failed("routes[0].via: bad".into()), 1);
        let r = c.reload();
        assert!(!r.last_ok && r.last_attempt.is_some() && r.failed == 1);
        assert_eq!(c.reload_applied(), 2);
        let r = c.reload();
        assert!(r.last_ok && r.last_error.is_none() && r.applied == 1);
        c.set_draining();
        assert!(!c.ready() && c.draining());
    }
}
