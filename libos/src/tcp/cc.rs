//! # Congestion control: NewReno and CUBIC, behind one small interface
//!
//! What it is: the congestion window (`cwnd`) and slow-start threshold (`ssthresh`) of one
//! connection ([`Window`]) and the algorithms that move them: [`Reno`] (RFC 5681 with
//! appropriate byte counting, RFC 3465) and [`Cubic`] (RFC 9438, the default, as on Linux).
//! [`CongestionControl`] is the interface an algorithm implements; [`Cc`] dispatches to the
//! configured one without allocation or dynamic dispatch. New algorithms plug in as another
//! `Cc` variant.
//!
//! What it owns: the window arithmetic only. Loss *detection* and the recovery state machine
//! (fast retransmit, RFC 6675 SACK recovery, NewReno's partial ACKs and window inflation, RFC
//! 6582) live in the connection, which calls [`Cc::on_ack`] for acknowledged data outside
//! recovery, [`Cc::on_congestion`] when it enters fast recovery, [`Cc::on_rto`] when the
//! retransmission timer fires, and [`Cc::on_recovery_end`] when recovery completes.
//!
//! What it never does: read a clock (`now` is passed), allocate, or panic (floating-point
//! results are clamped before they become byte counts).
//!
//! Invariants: `cwnd >= 1 MSS` after any event; `ssthresh >= 2 MSS` after a congestion event;
//! the window does not grow while the sender is not using it (RFC 7661's concern: an
//! application-limited flow is told so with `cwnd_limited = false`).
//!
//! References: RFC 5681 (slow start, congestion avoidance, §3.1 eq. 4, loss window), RFC 3465
//! (byte counting), RFC 6928 (initial window 10), RFC 9438 (CUBIC: §4.2 the window function,
//! §4.3 the Reno-friendly region, §4.6 multiplicative decrease, §4.7 fast convergence, §4.8
//! timeout), Linux `net/ipv4/tcp_cubic.c`.

use core::time::Duration;

use crate::time::Instant;

/// Which algorithm a connection uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CcAlgorithm {
    /// RFC 5681/6582 NewReno.
    NewReno,
    /// RFC 9438 CUBIC (Linux's default, and ours).
    #[default]
    Cubic,
}

/// The congestion state every algorithm moves (bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Congestion window.
    pub cwnd: u32,
    /// Slow-start threshold.
    pub ssthresh: u32,
}

/// What an acknowledgment tells the algorithm.
#[derive(Debug, Clone, Copy)]
pub struct AckEvent {
    /// When it arrived.
    pub now: Instant,
    /// Bytes newly acknowledged.
    pub acked: u32,
    /// Sender MSS.
    pub mss: u32,
    /// Smoothed RTT, if known.
    pub srtt: Option<Duration>,
    /// Whether the sender filled the window recently (no growth otherwise).
    pub cwnd_limited: bool,
}

/// The interface of a congestion-control algorithm (see the module documentation).
pub trait CongestionControl {
    /// New data was acknowledged outside recovery: grow the window.
    fn on_ack(&mut self, w: &mut Window, ev: &AckEvent);
    /// Loss detected by duplicate ACKs or SACK: set `ssthresh` and the window recovery starts
    /// with. `flight` is the data outstanding.
    fn on_congestion(&mut self, w: &mut Window, now: Instant, flight: u32, mss: u32);
    /// The retransmission timer fired: set `ssthresh` and the loss window (1 MSS).
    fn on_rto(&mut self, w: &mut Window, now: Instant, flight: u32, mss: u32);
    /// Recovery completed (the recovery point was acknowledged).
    fn on_recovery_end(&mut self, w: &mut Window, now: Instant, mss: u32) {
        let _ = (now, mss);
        w.cwnd = w.ssthresh;
    }
}

/// Slow start (RFC 5681 §3.1, Linux's `tcp_slow_start`): grows by the bytes acknowledged up to
/// `ssthresh`; returns the bytes left for congestion avoidance.
fn slow_start(w: &mut Window, acked: u32) -> u32 {
    if w.cwnd >= w.ssthresh {
        return acked;
    }
    let room = w.ssthresh - w.cwnd;
    let grow = acked.min(room);
    w.cwnd = w.cwnd.saturating_add(grow);
    acked - grow
}

/// RFC 5681 NewReno window arithmetic with byte counting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reno {
    /// Bytes acknowledged towards the next one-MSS increase in congestion avoidance.
    bytes_acked: u32,
}

impl CongestionControl for Reno {
    fn on_ack(&mut self, w: &mut Window, ev: &AckEvent) {
        if !ev.cwnd_limited {
            return;
        }
        let rest = slow_start(w, ev.acked);
        if rest == 0 {
            return;
        }
        self.bytes_acked = self.bytes_acked.saturating_add(rest);
        if self.bytes_acked >= w.cwnd {
            self.bytes_acked -= w.cwnd;
            w.cwnd = w.cwnd.saturating_add(ev.mss);
        }
    }

    fn on_congestion(&mut self, w: &mut Window, _now: Instant, flight: u32, mss: u32) {
        w.ssthresh = (flight / 2).max(2 * mss);
        w.cwnd = w.ssthresh;
        self.bytes_acked = 0;
    }

    fn on_rto(&mut self, w: &mut Window, _now: Instant, flight: u32, mss: u32) {
        w.ssthresh = (flight / 2).max(2 * mss);
        w.cwnd = mss;
        self.bytes_acked = 0;
    }
}

/// CUBIC's constant `C` (RFC 9438 §5).
const CUBIC_C: f64 = 0.4;
/// CUBIC's multiplicative decrease factor `β_cubic`.
const CUBIC_BETA: f64 = 0.7;

/// RFC 9438 CUBIC state (windows in segments, time in seconds).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cubic {
    /// Start of the current congestion-avoidance epoch.
    epoch_start: Option<Instant>,
    /// `W_max`: the window before the last reduction.
    w_max: f64,
    /// The previous `W_max` (fast convergence, §4.7).
    w_last_max: f64,
    /// `K`: time to get back to the origin.
    k: f64,
    /// The plateau the cubic function aims at (`W_max`, or the window if already above).
    origin: f64,
    /// `W_est`: the Reno-friendly estimate (§4.3).
    w_est: f64,
}

impl Cubic {
    fn reduce(&mut self, w: &Window, mss: u32) -> u32 {
        let cwnd = f64::from(w.cwnd) / f64::from(mss.max(1));
        // Fast convergence (§4.7): release bandwidth when the plateau went down.
        self.w_max = if cwnd < self.w_last_max { cwnd * (1.0 + CUBIC_BETA) / 2.0 } else { cwnd };
        self.w_last_max = cwnd;
        self.epoch_start = None;
        let ss = (f64::from(w.cwnd) * CUBIC_BETA) as u32;
        ss.max(2 * mss)
    }

    /// `W_cubic(t)` (eq. 1), in segments.
    fn w_cubic(&self, t: f64) -> f64 {
        let d = t - self.k;
        CUBIC_C * d * d * d + self.origin
    }
}

impl CongestionControl for Cubic {
    fn on_ack(&mut self, w: &mut Window, ev: &AckEvent) {
        if !ev.cwnd_limited {
            return;
        }
        let rest = slow_start(w, ev.acked);
        if rest == 0 {
            return;
        }
        let mss = f64::from(ev.mss.max(1));
        let cwnd = f64::from(w.cwnd) / mss;
        let epoch = match self.epoch_start {
            Some(e) => e,
            None => {
                // A new epoch (§4.2): K from the distance to W_max.
                self.epoch_start = Some(ev.now);
                if cwnd < self.w_max {
                    self.k = ((self.w_max - cwnd) / CUBIC_C).cbrt();
                    self.origin = self.w_max;
                } else {
                    self.k = 0.0;
                    self.origin = cwnd;
                }
                self.w_est = cwnd;
                ev.now
            }
        };
        let t = (ev.now - epoch).as_secs_f64();
        let rtt = ev.srtt.map_or(0.0, |d| d.as_secs_f64());
        let segs = f64::from(rest) / mss;
        // Reno-friendly estimate (§4.3): α_cubic = 3(1 − β)/(1 + β).
        let alpha = 3.0 * (1.0 - CUBIC_BETA) / (1.0 + CUBIC_BETA);
        self.w_est += alpha * segs / cwnd.max(1.0);
        let new = if self.w_cubic(t) < self.w_est {
            self.w_est.max(cwnd)
        } else {
            // Concave and convex regions (§4.4, §4.5): aim at W_cubic(t + RTT), at most 1.5×.
            let target = self.w_cubic(t + rtt).clamp(cwnd, 1.5 * cwnd);
            cwnd + (target - cwnd) / cwnd.max(1.0) * segs
        };
        let bytes = (new * mss).min(f64::from(u32::MAX / 2));
        w.cwnd = (bytes as u32).max(w.cwnd);
    }

    fn on_congestion(&mut self, w: &mut Window, _now: Instant, _flight: u32, mss: u32) {
        w.ssthresh = self.reduce(w, mss);
        w.cwnd = w.ssthresh;
    }

    fn on_rto(&mut self, w: &mut Window, _now: Instant, _flight: u32, mss: u32) {
        w.ssthresh = self.reduce(w, mss);
        w.cwnd = mss;
    }
}

/// The configured algorithm with its window (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cc {
    /// The window every algorithm moves.
    pub w: Window,
    algo: Algo,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Algo {
    Reno(Reno),
    Cubic(Cubic),
}

impl Cc {
    /// A window of `initial` bytes with an unbounded `ssthresh` (RFC 5681 §3.1).
    pub fn new(algo: CcAlgorithm, initial: u32) -> Cc {
        let algo = match algo {
            CcAlgorithm::NewReno => Algo::Reno(Reno::default()),
            CcAlgorithm::Cubic => Algo::Cubic(Cubic::default()),
        };
        Cc { w: Window { cwnd: initial.max(1), ssthresh: u32::MAX / 2 }, algo }
    }

    /// The algorithm in use.
    pub fn algorithm(&self) -> CcAlgorithm {
        match self.algo {
            Algo::Reno(_) => CcAlgorithm::NewReno,
            Algo::Cubic(_) => CcAlgorithm::Cubic,
        }
    }

    /// Congestion window in bytes.
    #[inline]
    pub fn cwnd(&self) -> u32 {
        self.w.cwnd
    }

    /// Slow-start threshold in bytes.
    #[inline]
    pub fn ssthresh(&self) -> u32 {
        self.w.ssthresh
    }

    /// See [`CongestionControl::on_ack`].
    pub fn on_ack(&mut self, ev: &AckEvent) {
        match &mut self.algo {
            Algo::Reno(a) => a.on_ack(&mut self.w, ev),
            Algo::Cubic(a) => a.on_ack(&mut self.w, ev),
        }
    }

    /// See [`CongestionControl::on_congestion`].
    pub fn on_congestion(&mut self, now: Instant, flight: u32, mss: u32) {
        match &mut self.algo {
            Algo::Reno(a) => a.on_congestion(&mut self.w, now, flight, mss),
            Algo::Cubic(a) => a.on_congestion(&mut self.w, now, flight, mss),
        }
        self.w.cwnd = self.w.cwnd.max(mss);
    }

    /// See [`CongestionControl::on_rto`].
    pub fn on_rto(&mut self, now: Instant, flight: u32, mss: u32) {
        match &mut self.algo {
            Algo::Reno(a) => a.on_rto(&mut self.w, now, flight, mss),
            Algo::Cubic(a) => a.on_rto(&mut self.w, now, flight, mss),
        }
        self.w.cwnd = self.w.cwnd.max(mss);
    }

    /// See [`CongestionControl::on_recovery_end`].
    pub fn on_recovery_end(&mut self, now: Instant, mss: u32) {
        match &mut self.algo {
            Algo::Reno(a) => a.on_recovery_end(&mut self.w, now, mss),
            Algo::Cubic(a) => a.on_recovery_end(&mut self.w, now, mss),
        }
        self.w.cwnd = self.w.cwnd.max(mss);
    }

    /// Undoes a congestion response found unnecessary (every retransmission of the episode
    /// D-SACKed, RFC 2883 §5, as Linux's `tcp_undo_cwnd_reduction`): the window and threshold
    /// go back to at least what they were before it.
    pub fn undo(&mut self, cwnd: u32, ssthresh: u32) {
        self.w.cwnd = self.w.cwnd.max(cwnd);
        self.w.ssthresh = self.w.ssthresh.max(ssthresh);
    }

    /// Sets the window directly (NewReno's inflation and deflation during recovery, the
    /// restart window after idle).
    pub fn set_cwnd(&mut self, cwnd: u32, mss: u32) {
        self.w.cwnd = cwnd.max(mss);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: u32 = 1000;

    fn ack(now_ms: u64, acked: u32) -> AckEvent {
        AckEvent {
            now: Instant::from_millis(now_ms),
            acked,
            mss: MSS,
            srtt: Some(Duration::from_millis(100)),
            cwnd_limited: true,
        }
    }

    #[test]
    fn reno_slow_start_then_linear_growth() {
        let mut cc = Cc::new(CcAlgorithm::NewReno, 10 * MSS);
        cc.on_ack(&ack(0, 10 * MSS));
        assert_eq!(cc.cwnd(), 20 * MSS);
        cc.on_congestion(Instant::ZERO, 20 * MSS, MSS);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (10 * MSS, 10 * MSS));
        // One window of ACKs adds one MSS.
        for _ in 0..10 {
            cc.on_ack(&ack(0, MSS));
        }
        assert_eq!(cc.cwnd(), 11 * MSS);
        cc.on_rto(Instant::ZERO, 11 * MSS, MSS);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (MSS, 5500));
        // Not cwnd-limited: no growth.
        let mut e = ack(0, MSS);
        e.cwnd_limited = false;
        cc.on_ack(&e);
        assert_eq!(cc.cwnd(), MSS);
        assert_eq!(cc.algorithm(), CcAlgorithm::NewReno);
    }

    #[test]
    fn cubic_reduces_by_beta_and_regrows_towards_w_max() {
        let mut cc = Cc::new(CcAlgorithm::Cubic, 100 * MSS);
        cc.w.ssthresh = 50 * MSS;
        cc.on_congestion(Instant::ZERO, 100 * MSS, MSS);
        assert_eq!(cc.cwnd(), 70 * MSS);
        cc.on_recovery_end(Instant::ZERO, MSS);
        // K = cbrt(30 / 0.4) ≈ 4.22 s: the window climbs back to ~100 segments around K,
        // and is concave before (fast at first, flat near W_max).
        let mut t = 0;
        let mut at_k = 0;
        while t < 8000 {
            let acked = cc.cwnd() / 10; // 10 ACKs per 100 ms RTT
            for _ in 0..10 {
                cc.on_ack(&ack(t, acked.max(1)));
            }
            t += 100;
            if t == 4200 {
                at_k = cc.cwnd() / MSS;
            }
        }
        assert!((95..=105).contains(&at_k), "cwnd at K: {at_k}");
        assert!(cc.cwnd() / MSS > 110, "convex growth past W_max: {}", cc.cwnd() / MSS);
        // Fast convergence: a second loss below the previous W_max lowers W_max further.
        let mut c2 = Cc::new(CcAlgorithm::Cubic, 100 * MSS);
        c2.on_congestion(Instant::ZERO, 0, MSS);
        c2.on_congestion(Instant::ZERO, 0, MSS);
        assert_eq!(c2.cwnd(), 49 * MSS);
        c2.on_rto(Instant::ZERO, 0, MSS);
        assert_eq!(c2.cwnd(), MSS);
        assert_eq!(c2.ssthresh(), 34300);
    }

    #[test]
    fn cubic_is_reno_friendly_at_short_rtt() {
        // With a tiny RTT and a small W_max, the Reno estimate dominates early on.
        let mut cc = Cc::new(CcAlgorithm::Cubic, 10 * MSS);
        cc.on_congestion(Instant::ZERO, 0, MSS);
        cc.on_recovery_end(Instant::ZERO, MSS);
        let before = cc.cwnd();
        for i in 0..100 {
            cc.on_ack(&AckEvent { srtt: Some(Duration::from_micros(50)), ..ack(i / 10, MSS) });
        }
        assert!(cc.cwnd() > before);
        assert!(cc.cwnd() < 2 * before);
    }
}
