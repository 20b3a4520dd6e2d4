//! # Round-trip time estimation and the retransmission timeout
//!
//! What it is: [`RttEstimator`], RFC 6298's smoothed RTT (`SRTT`), variation (`RTTVAR`) and
//! retransmission timeout (`RTO`), with exponential backoff.
//!
//! What it owns: the estimate of one connection. Which samples it gets is the connection's
//! business: one timed segment at a time and never a retransmitted one (Karn's rule, RFC 6298
//! §3), or a timestamp echo (RFC 7323 §4), which is unambiguous.
//!
//! What it never does: read a clock (samples are durations), or panic on any sample.
//!
//! Invariants: `min_rto <= rto() <= max_rto`; the backoff doubles the timeout at most up to
//! `max_rto` and is cleared by the next valid sample (RFC 6298 §5.7).
//!
//! References: RFC 6298 (§2 the computation, §5 the timer), RFC 7323 §4 (RTTM), Linux
//! `tcp_rtt_estimator` (a 200 ms minimum RTO, the deviation from RFC 6298's 1 s minimum that
//! every major stack makes).

use core::time::Duration;

/// Clock granularity `G` of RFC 6298 §2.
const GRANULARITY: u64 = 1_000_000;

/// The RTT estimate of one connection (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RttEstimator {
    /// Smoothed RTT in nanoseconds; 0 before the first sample.
    srtt: u64,
    /// RTT variation in nanoseconds.
    rttvar: u64,
    /// The latest sample.
    latest: u64,
    /// Smallest sample seen (CUBIC and HyStart-style uses).
    min: u64,
    /// RTO before backoff.
    rto: u64,
    /// Timeouts since the last valid sample.
    backoff: u8,
    min_rto: u64,
    max_rto: u64,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl RttEstimator {
    /// No sample yet: the RTO is `initial` (RFC 6298 §2.1).
    pub fn new(initial: Duration, min_rto: Duration, max_rto: Duration) -> RttEstimator {
        let (min_rto, max_rto) = (nanos(min_rto), nanos(max_rto).max(nanos(min_rto)));
        RttEstimator {
            srtt: 0,
            rttvar: 0,
            latest: 0,
            min: u64::MAX,
            rto: nanos(initial).clamp(min_rto, max_rto),
            backoff: 0,
            min_rto,
            max_rto,
        }
    }

    /// Feeds one RTT measurement and clears the backoff (RFC 6298 §2.2, §2.3).
    pub fn sample(&mut self, rtt: Duration) {
        let r = nanos(rtt).max(1);
        self.latest = r;
        self.min = self.min.min(r);
        if self.srtt == 0 {
            self.srtt = r;
            self.rttvar = r / 2;
        } else {
            let err = self.srtt.abs_diff(r);
            self.rttvar = self.rttvar - self.rttvar / 4 + err / 4;
            self.srtt = self.srtt - self.srtt / 8 + r / 8;
        }
        let rto = self.srtt.saturating_add(GRANULARITY.max(self.rttvar.saturating_mul(4)));
        self.rto = rto.clamp(self.min_rto, self.max_rto);
        self.backoff = 0;
    }

    /// The timer expired: doubles the timeout (RFC 6298 §5.5).
    pub fn back_off(&mut self) {
        self.backoff = self.backoff.saturating_add(1).min(30);
    }

    /// Timeouts since the last sample.
    pub fn backoffs(&self) -> u8 {
        self.backoff
    }

    /// The current timeout, backoff applied.
    pub fn rto(&self) -> Duration {
        let shifted = self.rto.checked_shl(u32::from(self.backoff)).unwrap_or(u64::MAX);
        let rto = if shifted >> self.backoff != self.rto { u64::MAX } else { shifted };
        Duration::from_nanos(rto.min(self.max_rto))
    }

    /// The smoothed RTT, if any sample was taken.
    pub fn srtt(&self) -> Option<Duration> {
        (self.srtt > 0).then(|| Duration::from_nanos(self.srtt))
    }

    /// The RTT variation.
    pub fn rttvar(&self) -> Duration {
        Duration::from_nanos(self.rttvar)
    }

    /// The smallest RTT sampled.
    #[cfg(test)]
    pub fn min_rtt(&self) -> Option<Duration> {
        (self.min != u64::MAX).then(|| Duration::from_nanos(self.min))
    }

    /// The latest sample.
    #[cfg(test)]
    pub fn latest(&self) -> Option<Duration> {
        (self.latest > 0).then(|| Duration::from_nanos(self.latest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn rfc6298_computation() {
        let mut e = RttEstimator::new(ms(1000), ms(200), ms(120_000));
        assert_eq!(e.rto(), ms(1000));
        assert_eq!(e.srtt(), None);
        e.sample(ms(100));
        // SRTT = 100, RTTVAR = 50, RTO = 100 + 200 = 300.
        assert_eq!(e.srtt(), Some(ms(100)));
        assert_eq!(e.rto(), ms(300));
        e.sample(ms(200));
        // RTTVAR = 37.5 + 25 = 62.5; SRTT = 87.5 + 25 = 112.5; RTO = 112.5 + 250.
        assert_eq!(e.rttvar(), Duration::from_micros(62_500));
        assert_eq!(e.srtt(), Some(Duration::from_micros(112_500)));
        assert_eq!(e.rto(), Duration::from_micros(362_500));
        assert_eq!(e.min_rtt(), Some(ms(100)));
        assert_eq!(e.latest(), Some(ms(200)));
    }

    #[test]
    fn minimum_backoff_and_maximum() {
        let mut e = RttEstimator::new(ms(1000), ms(200), ms(120_000));
        e.sample(Duration::from_micros(50));
        assert_eq!(e.rto(), ms(200));
        e.back_off();
        e.back_off();
        assert_eq!(e.backoffs(), 2);
        assert_eq!(e.rto(), ms(800));
        for _ in 0..40 {
            e.back_off();
        }
        assert_eq!(e.rto(), ms(120_000));
        e.sample(Duration::from_micros(50));
        assert_eq!(e.rto(), ms(200));
        e.sample(Duration::ZERO);
        assert!(e.rto() >= ms(200));
    }
}
