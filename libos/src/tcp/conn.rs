//! # One TCP connection: the transmission control block and its state machine
//!
//! What it is: [`Conn`], everything RFC 9293 §3.3.1 puts in a TCB and what the extensions add:
//! send and receive sequence variables, the negotiated options (MSS, RFC 7323 window scale and
//! timestamps, RFC 2018 SACK), the RTT estimator and retransmission timer (RFC 6298), the
//! congestion window ([`super::cc`]), the loss-recovery state (RFC 6675 SACK recovery, RFC 6582
//! NewReno, go-back-N after a timeout), ACK policy (delayed ACKs, RFC 1122/9293 and Linux's
//! quick-ACK start; a D-SACK, RFC 2883, for every duplicate segment), persist and keep-alive
//! timers, and the buffers' indices.
//!
//! Events, as RFC 9293 §3.10 arranges them:
//! - segment arrival: [`Conn::on_segment`] (§3.10.7.3 SYN-SENT, §3.10.7.4 the other states,
//!   with RFC 5961's checks for RST, SYN and ACK and RFC 7323's PAWS);
//! - output: [`Conn::next_segment`] decides the next segment to send (retransmission, new
//!   data under the congestion and receive windows with Nagle and sender-side SWS avoidance,
//!   FIN, probes, ACKs) and advances the state as if it was sent; the table writes it;
//! - timeouts: [`Conn::on_timer`] (retransmission, persist, delayed ACK, keep-alive,
//!   FIN-WAIT-2);
//! - user calls: `write`, `read`, `shutdown`, `close`, `abort`.
//!
//! What it owns: the TCB only. Buffer memory, the demultiplexing table, timers of the whole
//! stack, the event queue and the listener belong to the table ([`super::Tcp`]), which calls in
//! here with the connection's memory ([`Mem`]) and reacts to what changed (state, `ev`,
//! deadlines).
//!
//! What it never does: allocate, read a clock, write frames, or panic on any segment (property
//! tested: arbitrary segment sequences keep `SND.UNA <= SND.NXT <= SND.MAX`, the buffers within
//! bounds, and the delivered stream a prefix of what was sent).
//!
//! Invariants:
//! - `snd_una <= snd_nxt <= snd_max` and `snd_una <= buf_seq <= snd_una + 1` (the SYN) in
//!   sequence space; the send buffer holds exactly the bytes `[buf_seq, buf_seq + len)`;
//! - the right edge of the advertised receive window (`rcv_adv`) never moves left (RFC 9293
//!   §3.8.6: no window shrinking) and never exceeds what the receive buffer can hold;
//! - `high_rxt` stays within `[snd_una, snd_max]`.
//!
//! References: RFC 9293, RFC 1122 §4.2, RFC 5681, RFC 6298, RFC 6582, RFC 6675, RFC 2018,
//! RFC 3042 (limited transmit), RFC 6928 (IW10), RFC 7323, RFC 5961, RFC 2883, RFC 8985 §7.4
//! (why a D-SACK matters to a sender's tail-loss probes), RFC 9438 (via cc).

use core::time::Duration;
use std::net::Ipv4Addr;

use super::cc::{AckEvent, Cc};
use super::config::{ConnStats, Keepalive, Ready, TcpConfig, TcpDrop, TcpStats};
use super::recv_buf::RecvBuf;
use super::rto::RttEstimator;
use super::sack::{Scoreboard, DUP_THRESH};
use super::send_buf::SendBuf;
use super::seq;
use super::state::TcpState;
use super::table::FlowKey;
use crate::time::Instant;
use crate::wire::{SackBlocks, TcpFlags, TcpTimestamps};

/// PAWS: a `TS.Recent` older than this is no longer used to reject segments (RFC 7323 §5.5).
const PAWS_IDLE: Duration = Duration::from_secs(24 * 24 * 3600);

/// Per-connection limit on ACKs sent in reply to out-of-window pure ACKs and SYNs (Linux's
/// `tcp_invalid_ratelimit`), against ACK loops (RFC 5961 §7).
const OOW_INTERVAL: Duration = Duration::from_millis(500);

/// Data segments acknowledged at once at the start of a connection (Linux's quick-ACK mode).
const QUICKACKS: u8 = 16;

/// The largest window scale shift (RFC 7323 §2.3).
pub(crate) const MAX_WSCALE: u8 = 14;

/// MSS assumed when the peer sends none (RFC 9293 §3.7.1).
pub(crate) const DEFAULT_MSS: u16 = 536;

/// Who holds the connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Owner {
    /// The application, through a handle.
    #[default]
    App,
    /// A listener: not yet accepted (SYN-RECEIVED, or in the accept queue).
    Listener(u16),
    /// Nobody: the application closed its handle; the connection finishes on its own.
    Orphan,
}

/// Retransmitted ranges an [`Undo`] remembers; an episode that retransmits more pieces cannot
/// be undone.
const UNDO_RANGES: usize = 8;

/// The state a loss episode (a fast recovery or a retransmission timeout) saves so that its
/// congestion response can be undone if it turns out unnecessary (RFC 2883 §5; Linux's
/// `undo_marker` and `undo_retrans`): the window before it, and the ranges it retransmitted
/// that the peer has not yet reported as duplicates. Only a D-SACK inside a range this episode
/// retransmitted counts, so a duplicate the network made does not undo a real loss.
#[derive(Debug, Clone, Copy)]
struct Undo {
    cwnd: u32,
    ssthresh: u32,
    ranges: [(u32, u32); UNDO_RANGES],
    n: usize,
    /// More retransmitted pieces than `ranges` holds: never undone.
    overflow: bool,
    /// Retransmitted segments not (yet) D-SACKed.
    retrans: u64,
    /// D-SACKs that matched a retransmission.
    dsacked: u32,
}

impl Undo {
    /// Before the congestion response of an episode that begins now.
    fn new(c: &Conn) -> Undo {
        Undo {
            cwnd: c.cc.cwnd(),
            ssthresh: c.cc.ssthresh(),
            ranges: [(0, 0); UNDO_RANGES],
            n: 0,
            overflow: false,
            retrans: 0,
            dsacked: 0,
        }
    }

    /// `segs` segments retransmitted over `start..end`.
    fn retransmitted(&mut self, start: u32, end: u32, segs: u64) {
        if self.n == UNDO_RANGES {
            self.overflow = true;
            return;
        }
        self.ranges[self.n] = (start, end);
        self.n += 1;
        self.retrans += segs;
    }

    /// A D-SACK of `start..end`: if it lies inside a retransmitted range, its segments were
    /// unnecessary; that part of the range is taken out so it counts once.
    fn dsack(&mut self, start: u32, end: u32, mss: u32) {
        let Some(i) = (0..self.n)
            .find(|&i| seq::ge(start, self.ranges[i].0) && seq::le(end, self.ranges[i].1))
        else {
            return;
        };
        let r = &mut self.ranges[i];
        if r.0 == start {
            r.0 = end;
        } else if r.1 == end {
            r.1 = start;
        }
        if r.0 == r.1 {
            self.n -= 1;
            self.ranges[i] = self.ranges[self.n];
        }
        let segs = u64::from(seq::dist(start, end).div_ceil(mss.max(1)));
        self.retrans = self.retrans.saturating_sub(segs);
        self.dsacked += 1;
    }

    /// Every retransmission of the episode came back as a duplicate.
    fn unnecessary(&self) -> bool {
        !self.overflow && self.retrans == 0 && self.dsacked > 0
    }
}

/// Loss-recovery mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Mode {
    /// No loss being repaired.
    #[default]
    Open,
    /// RFC 6675 SACK-based recovery.
    Recovery,
    /// RFC 6582 NewReno recovery (peer without SACK).
    NewReno,
    /// After a retransmission timeout: resend everything not SACKed below the recovery point.
    Loss,
}

/// A pending probe.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Probe {
    #[default]
    None,
    /// A zero-window probe: one octet at `SND.UNA` (RFC 9293 §3.8.6.1).
    Window,
    /// A keep-alive probe: `SEG.SEQ = SND.UNA − 1`, no data (RFC 1122 §4.2.3.6).
    Keepalive,
    /// A tail loss probe (RFC 8985 §7): one new segment, or the last one again.
    Tail,
}

/// A received segment, parsed and checksum-verified.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seg<'a> {
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    pub wnd: u16,
    pub mss: Option<u16>,
    pub ws: Option<u8>,
    pub sack_perm: bool,
    pub sack: SackBlocks,
    pub ts: Option<TcpTimestamps>,
    pub payload: &'a [u8],
    /// Wire segments this one stands for (a coalesced receive frame: more than one).
    pub segments: u16,
}

impl Seg<'_> {
    /// `SEG.LEN`: payload plus one each for SYN and FIN.
    pub fn len(&self) -> u32 {
        self.payload.len() as u32
            + u32::from(self.flags.contains(TcpFlags::SYN))
            + u32::from(self.flags.contains(TcpFlags::FIN))
    }
}

/// The options a SYN or SYN-ACK carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SynOpts {
    pub mss: u16,
    pub ws: Option<u8>,
    pub sack_perm: bool,
}

/// A segment to send, decided by [`Conn::next_segment`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Out {
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    pub window: u16,
    /// Offset of the payload in the send buffer.
    pub data_off: usize,
    /// Payload bytes.
    pub len: usize,
    /// Payload bytes per wire segment (for a super-segment).
    pub seg_size: u16,
    pub syn: Option<SynOpts>,
    pub ts: Option<TcpTimestamps>,
    pub sack: SackBlocks,
}

/// The connection's buffer memory.
#[derive(Debug)]
pub(crate) struct Mem<'a> {
    pub rx: &'a mut [u8],
    pub tx: &'a mut [u8],
}

/// A stack-wide rate limit (challenge ACKs per second, RFC 5961 §7).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RateLimit {
    window: Instant,
    count: u32,
}

impl RateLimit {
    /// Whether one more event fits the `per_sec` budget of the current second.
    pub fn allow(&mut self, now: Instant, per_sec: u32) -> bool {
        if now - self.window >= Duration::from_secs(1) {
            self.window = now;
            self.count = 0;
        }
        if self.count < per_sec {
            self.count += 1;
            true
        } else {
            false
        }
    }
}

/// What a connection call needs from the table.
#[derive(Debug)]
pub(crate) struct Env<'a> {
    pub now: Instant,
    pub cfg: &'a TcpConfig,
    pub stats: &'a mut TcpStats,
    pub challenge: &'a mut RateLimit,
    /// For a passive connection in SYN-RECEIVED: whether its listener's accept queue has room.
    pub accept_room: bool,
}

/// A stateless reply the table sends for the connection (RFC 9293: `<SEQ=SEG.ACK><CTL=RST>`
/// for an unacceptable ACK in SYN-SENT or SYN-RECEIVED).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RstReply {
    pub seq: u32,
}

/// The transmission control block (see the module documentation).
#[derive(Debug, Clone)]
pub(crate) struct Conn {
    // Bookkeeping kept by the table.
    pub generation: u32,
    pub state: TcpState,
    pub key: FlowKey,
    pub owner: Owner,
    pub next_hop: Ipv4Addr,
    /// Pending readiness bits for the application.
    pub ev: Ready,
    pub in_txq: bool,
    pub in_ready: bool,
    pub in_demux: bool,
    /// Passive connection whose handshake completed and must go to the accept queue.
    pub just_established: bool,
    /// The application's write was cut short: report WRITABLE when space frees.
    pub write_blocked: bool,
    /// Send an RST (`abort`, close with unread data, data after close, keep-alive timeout).
    pub rst_pending: bool,
    /// In its listener's accept queue.
    pub in_accept: bool,
    /// Why the connection ended (`RESET`, `TIMED_OUT`, `CLOSED`), once it has.
    pub why: Ready,

    // Options.
    pub nodelay: bool,
    pub keepalive: Option<Keepalive>,
    ts_ok: bool,
    sack_ok: bool,
    /// Shift applied to the peer's window field.
    snd_wscale: u8,
    /// Shift we apply to ours (0 without window scaling).
    rcv_wscale: u8,
    ws_ok: bool,
    /// Sender MSS: payload bytes per segment, timestamps excluded.
    mss: u16,
    /// The peer's MSS option (or 536).
    peer_mss: u16,
    /// Our MSS option (MTU − 40).
    adv_mss: u16,
    /// Path MTU.
    pmtu: u16,
    ts_recent: u32,
    ts_recent_at: Instant,
    ts_offset: u32,
    last_ack_sent: u32,

    // Send sequence space.
    iss: u32,
    snd_una: u32,
    snd_nxt: u32,
    snd_max: u32,
    snd_wnd: u32,
    snd_wl1: u32,
    snd_wl2: u32,
    max_snd_wnd: u32,
    buf_seq: u32,
    sbuf: SendBuf,
    fin_queued: bool,
    fin_sent: bool,

    // Receive sequence space.
    irs: u32,
    rbuf: RecvBuf,
    rcv_adv: u32,
    rcv_fin: Option<u32>,
    rcv_mss: u32,
    peer_fin: bool,

    // Congestion and recovery.
    pub cc: Cc,
    rtt: RttEstimator,
    rtt_seq: u32,
    rtt_at: Option<Instant>,
    /// A timed sample was discarded by Karn's rule: use timestamps for the next one.
    rtt_karn: bool,
    mode: Mode,
    recovery_point: u32,
    recover: u32,
    high_rxt: u32,
    rtx_head: bool,
    /// The head retransmitted at `.0` while `SND.NXT` was `.1`: if data sent after it gets
    /// SACKed while the head stays unacknowledged, the retransmission was lost too.
    rtx_mark: Option<(u32, u32)>,
    dupacks: u32,
    sb: Scoreboard,
    max_flight: u32,
    syn_retransmitted: bool,

    // Timers.
    rtx_at: Option<Instant>,
    persist: bool,
    /// `rtx_at` is a tail-loss probe timeout (RFC 8985 §7), not the RTO.
    tlp_armed: bool,
    /// A tail-loss probe was sent and not yet resolved by an advancing ACK.
    tlp_out: bool,
    /// Unsacked data below this is lost (a SACK answered a tail-loss probe: what was sent
    /// before the probe had two RTTs to arrive, as RACK reasons, RFC 8985 §6).
    lost_below: u32,
    persist_backoff: u8,
    probe_out: bool,
    retries: u8,
    delack_at: Option<Instant>,
    ka_at: Option<Instant>,
    ka_probes: u8,
    last_rx: Instant,
    /// When new data was last sent (restart after idle, RFC 5681 §4.1).
    last_send: Instant,
    last_oow: Option<Instant>,

    /// What the current (or last) loss episode saved to undo its congestion response.
    undo: Option<Undo>,

    // ACK state.
    ack_now: bool,
    /// A duplicate segment's range, reported as the first SACK block of the next ACK only
    /// (RFC 2883 §4): it tells the sender that the retransmission (a tail-loss probe, a
    /// spurious timeout) was unnecessary, so it undoes or skips its congestion response.
    dsack: Option<(u32, u32)>,
    extra_acks: u8,
    wnd_update: bool,
    quickacks: u8,
    syn_pending: bool,
    probe: Probe,

    pub stats: ConnStats,
}

fn ts_clock(now: Instant) -> u32 {
    (now.as_nanos() / 1_000_000) as u32
}

/// The window scale for a receive buffer of `cap` bytes: the smallest shift that lets the
/// 16-bit field describe all of it.
pub(crate) fn wscale_for(cap: usize) -> u8 {
    let mut s = 0u8;
    while (cap >> s) > 65535 && s < MAX_WSCALE {
        s += 1;
    }
    s
}

impl Conn {
    /// A fresh block in CLOSED state for `key`.
    #[allow(clippy::too_many_arguments)]
    fn blank(
        now: Instant,
        cfg: &TcpConfig,
        key: FlowKey,
        iss: u32,
        ts_offset: u32,
        next_hop: Ipv4Addr,
        mtu: u16,
        generation: u32,
    ) -> Conn {
        let adv_mss = mtu.saturating_sub(40).max(64);
        Conn {
            generation,
            state: TcpState::Closed,
            key,
            owner: Owner::App,
            next_hop,
            ev: Ready::empty(),
            in_txq: false,
            in_ready: false,
            in_demux: false,
            just_established: false,
            write_blocked: false,
            rst_pending: false,
            in_accept: false,
            why: Ready::empty(),
            nodelay: cfg.nodelay,
            keepalive: cfg.keepalive,
            ts_ok: false,
            sack_ok: false,
            snd_wscale: 0,
            rcv_wscale: 0,
            ws_ok: false,
            mss: DEFAULT_MSS,
            peer_mss: DEFAULT_MSS,
            adv_mss,
            pmtu: mtu,
            ts_recent: 0,
            ts_recent_at: now,
            ts_offset,
            last_ack_sent: 0,
            iss,
            snd_una: iss,
            snd_nxt: iss.wrapping_add(1),
            snd_max: iss.wrapping_add(1),
            snd_wnd: 0,
            snd_wl1: 0,
            snd_wl2: iss,
            max_snd_wnd: 0,
            buf_seq: iss.wrapping_add(1),
            sbuf: SendBuf::default(),
            fin_queued: false,
            fin_sent: false,
            irs: 0,
            rbuf: RecvBuf::new(0),
            rcv_adv: 0,
            rcv_fin: None,
            rcv_mss: u32::from(DEFAULT_MSS),
            peer_fin: false,
            cc: Cc::new(cfg.congestion, cfg.initial_cwnd.max(1) * u32::from(DEFAULT_MSS)),
            rtt: RttEstimator::new(cfg.initial_rto, cfg.min_rto, cfg.max_rto),
            rtt_seq: iss,
            rtt_at: None,
            rtt_karn: false,
            mode: Mode::Open,
            recovery_point: iss,
            recover: iss,
            high_rxt: iss,
            rtx_head: false,
            rtx_mark: None,
            dupacks: 0,
            sb: Scoreboard::default(),
            max_flight: 0,
            syn_retransmitted: false,
            rtx_at: None,
            persist: false,
            tlp_armed: false,
            tlp_out: false,
            lost_below: iss,
            persist_backoff: 0,
            probe_out: false,
            retries: 0,
            delack_at: None,
            ka_at: None,
            ka_probes: 0,
            last_rx: now,
            last_send: now,
            last_oow: None,
            undo: None,
            ack_now: false,
            dsack: None,
            extra_acks: 0,
            wnd_update: false,
            quickacks: QUICKACKS,
            syn_pending: false,
            probe: Probe::None,
            stats: ConnStats::default(),
        }
    }

    /// An active open (RFC 9293 §3.10.1): SYN-SENT with the SYN to send.
    #[allow(clippy::too_many_arguments)]
    pub fn connect(
        now: Instant,
        cfg: &TcpConfig,
        key: FlowKey,
        iss: u32,
        ts_offset: u32,
        next_hop: Ipv4Addr,
        mtu: u16,
        generation: u32,
    ) -> Conn {
        let mut c = Conn::blank(now, cfg, key, iss, ts_offset, next_hop, mtu, generation);
        c.state = TcpState::SynSent;
        c.syn_pending = true;
        c.ts_ok = cfg.timestamps;
        c.sack_ok = cfg.sack;
        c.ws_ok = cfg.window_scaling;
        c.rcv_wscale = if cfg.window_scaling { wscale_for(cfg.rx_buffer) } else { 0 };
        c
    }

    /// A passive open from a SYN (RFC 9293 §3.10.7.2): SYN-RECEIVED with the SYN-ACK to send.
    #[allow(clippy::too_many_arguments)]
    pub fn accept_syn(
        now: Instant,
        cfg: &TcpConfig,
        key: FlowKey,
        iss: u32,
        ts_offset: u32,
        next_hop: Ipv4Addr,
        mtu: u16,
        generation: u32,
        listener: u16,
        syn: &Seg<'_>,
    ) -> Conn {
        let mut c = Conn::blank(now, cfg, key, iss, ts_offset, next_hop, mtu, generation);
        c.state = TcpState::SynReceived;
        c.owner = Owner::Listener(listener);
        c.syn_pending = true;
        c.ts_ok = cfg.timestamps;
        c.sack_ok = cfg.sack;
        c.ws_ok = cfg.window_scaling;
        c.rcv_wscale = if cfg.window_scaling { wscale_for(cfg.rx_buffer) } else { 0 };
        c.take_syn(now, syn);
        c.snd_wnd = u32::from(syn.wnd);
        c.snd_wl1 = syn.seq;
        c.snd_wl2 = iss;
        c.max_snd_wnd = c.snd_wnd;
        c
    }

    /// A connection rebuilt from a validated SYN cookie (RFC 4987 §3.6): ESTABLISHED at once.
    /// `opts`: the peer's MSS (from the cookie's table), window scale and SACK (from the
    /// timestamp, when timestamps are on).
    #[allow(clippy::too_many_arguments)]
    pub fn from_cookie(
        now: Instant,
        cfg: &TcpConfig,
        key: FlowKey,
        iss: u32,
        ts_offset: u32,
        next_hop: Ipv4Addr,
        mtu: u16,
        generation: u32,
        listener: u16,
        ack: &Seg<'_>,
        peer_mss: u16,
        peer_ws: Option<u8>,
        sack: bool,
    ) -> Conn {
        let mut c = Conn::blank(now, cfg, key, iss, ts_offset, next_hop, mtu, generation);
        c.owner = Owner::Listener(listener);
        c.ts_ok = ack.ts.is_some() && cfg.timestamps;
        c.sack_ok = sack && c.ts_ok && cfg.sack;
        c.ws_ok = peer_ws.is_some() && c.ts_ok && cfg.window_scaling;
        c.rcv_wscale = if c.ws_ok { wscale_for(cfg.rx_buffer) } else { 0 };
        c.snd_wscale = if c.ws_ok { peer_ws.unwrap_or(0).min(MAX_WSCALE) } else { 0 };
        c.irs = ack.seq.wrapping_sub(1);
        c.rbuf = RecvBuf::new(ack.seq);
        c.peer_mss = peer_mss;
        if let Some(ts) = ack.ts.filter(|_| c.ts_ok) {
            c.ts_recent = ts.tsval;
            c.ts_recent_at = now;
        }
        c.set_mss();
        c.snd_una = ack.ack;
        c.snd_wnd = u32::from(ack.wnd) << c.snd_wscale;
        c.max_snd_wnd = c.snd_wnd;
        c.snd_wl1 = ack.seq;
        c.snd_wl2 = ack.ack;
        // The cookie SYN-ACK advertised min(buffer, 65535) unscaled.
        let cap = cfg.rx_buffer;
        c.rcv_adv = ack.seq.wrapping_add(c.usable_space(cap).min(65535));
        c.last_ack_sent = ack.seq;
        c.establish(cfg);
        c.state = TcpState::Established;
        c.just_established = true;
        c
    }

    /// Takes the SYN's sequence number and options (passive open, simultaneous open).
    fn take_syn(&mut self, now: Instant, syn: &Seg<'_>) {
        self.irs = syn.seq;
        self.rbuf = RecvBuf::new(syn.seq.wrapping_add(1));
        self.last_ack_sent = syn.seq.wrapping_add(1);
        self.rcv_adv = syn.seq.wrapping_add(1);
        self.peer_mss = syn.mss.unwrap_or(DEFAULT_MSS).max(64);
        self.ws_ok &= syn.ws.is_some();
        if self.ws_ok {
            self.snd_wscale = syn.ws.unwrap_or(0).min(MAX_WSCALE);
        } else {
            self.snd_wscale = 0;
            self.rcv_wscale = 0;
        }
        self.sack_ok &= syn.sack_perm;
        self.ts_ok &= syn.ts.is_some();
        if let Some(ts) = syn.ts.filter(|_| self.ts_ok) {
            self.ts_recent = ts.tsval;
            self.ts_recent_at = now;
        }
        self.set_mss();
    }

    /// Sender MSS from the peer's MSS option and the path MTU, minus the timestamps option
    /// (Linux's `tcp_current_mss`).
    fn set_mss(&mut self) {
        let path = self.pmtu.saturating_sub(40);
        let base = self.peer_mss.min(path).max(64);
        self.mss = base - if self.ts_ok { 12 } else { 0 };
    }

    /// The state a completed handshake enters: FIN-WAIT-1 if the application already shut
    /// down sending.
    fn open_state(&self) -> TcpState {
        if self.fin_queued {
            TcpState::FinWait1
        } else {
            TcpState::Established
        }
    }

    /// Initial window and quick-ACK mode once the handshake completes.
    fn establish(&mut self, cfg: &TcpConfig) {
        let mss = u32::from(self.mss);
        // RFC 6928 §2: one segment if the SYN or SYN-ACK had to be retransmitted.
        let iw = if self.syn_retransmitted { mss } else { cfg.initial_cwnd.max(1) * mss };
        self.cc.set_cwnd(iw, mss);
        self.quickacks = QUICKACKS;
        self.rcv_mss = u32::from(self.mss);
        self.retries = 0;
        self.high_rxt = self.snd_una;
        self.recover = self.snd_una;
        self.recovery_point = self.snd_una;
    }

    // ---------------------------------------------------------------------------------------
    // Accessors.

    /// The sender MSS.
    pub fn mss(&self) -> u16 {
        self.mss
    }

    /// The path MTU in use.
    #[cfg(test)]
    pub fn pmtu(&self) -> u16 {
        self.pmtu
    }

    /// `SND.UNA`, `SND.NXT`, `SND.MAX`.
    pub fn snd(&self) -> (u32, u32, u32) {
        (self.snd_una, self.snd_nxt, self.snd_max)
    }

    /// `RCV.NXT`.
    #[cfg(test)]
    pub fn rcv_nxt(&self) -> u32 {
        self.rbuf.nxt()
    }

    /// The right edge of the advertised window.
    #[cfg(test)]
    pub fn rcv_adv(&self) -> u32 {
        self.rcv_adv
    }

    /// Bytes queued for sending, sent or not.
    #[cfg(test)]
    pub fn send_queued(&self) -> usize {
        self.sbuf.len()
    }

    /// Bytes queued and not yet sent.
    pub fn unsent(&self) -> u32 {
        seq::dist(self.snd_nxt, self.data_end())
    }

    /// In-order bytes waiting to be read.
    pub fn readable(&self) -> usize {
        self.rbuf.len()
    }

    /// Whether the peer sent FIN and it was reached in order.
    pub fn peer_closed(&self) -> bool {
        self.peer_fin
    }

    /// Whether the application shut down sending.
    pub fn fin_queued(&self) -> bool {
        self.fin_queued
    }

    /// The RTT estimator.
    pub fn rtt(&self) -> &RttEstimator {
        &self.rtt
    }

    /// The recovery mode.
    #[cfg(test)]
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Timestamps, SACK, and the window shifts (ours, the peer's) if scaling is on.
    pub fn options(&self) -> (bool, bool, Option<(u8, u8)>) {
        (self.ts_ok, self.sack_ok, self.ws_ok.then_some((self.rcv_wscale, self.snd_wscale)))
    }

    /// The peer's window in bytes.
    pub fn snd_wnd(&self) -> u32 {
        self.snd_wnd
    }

    /// The out-of-order ranges held by the receive buffer.
    #[cfg(test)]
    pub fn ooo_ranges(&self) -> &[(u32, u32)] {
        self.rbuf.ooo()
    }

    /// The SACK scoreboard's ranges.
    #[cfg(test)]
    pub fn sacked(&self) -> &[(u32, u32)] {
        self.sb.ranges()
    }

    /// Timestamp of our clock for `now`.
    pub fn ts_val(&self, now: Instant) -> u32 {
        ts_clock(now).wrapping_add(self.ts_offset)
    }

    fn data_end(&self) -> u32 {
        self.buf_seq.wrapping_add(self.sbuf.len() as u32)
    }

    /// Sequence number of our FIN (valid once queued).
    fn fin_seq(&self) -> u32 {
        self.data_end()
    }

    fn fin_acked(&self) -> bool {
        self.fin_sent && seq::gt(self.snd_una, self.fin_seq())
    }

    /// Whether anything sent is unacknowledged.
    pub fn outstanding(&self) -> bool {
        self.snd_una != self.snd_max
    }

    // ---------------------------------------------------------------------------------------
    // Timers.

    /// The earliest deadline of this connection's timers.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut d = self.rtx_at;
        for t in [self.delack_at, self.ka_at] {
            d = crate::time::earliest(d, t);
        }
        d
    }

    /// Whether `next_segment` may have something to send.
    pub fn wants_tx(&self) -> bool {
        if self.rst_pending || self.syn_pending || self.ack_now || self.wnd_update {
            return true;
        }
        if self.extra_acks > 0 || self.probe != Probe::None || self.rtx_head {
            return true;
        }
        if !self.state.is_synchronized() || self.state == TcpState::TimeWait {
            return false;
        }
        if (self.mode == Mode::Recovery || self.mode == Mode::Loss)
            && self.cwnd_room() >= u32::from(self.mss)
            && self.has_hole_to_resend()
        {
            return true;
        }
        if self.fin_queued && !self.fin_sent && self.unsent() == 0 {
            return true;
        }
        // New data: only what `new_data` would send (the windows leave room, and Nagle does
        // not hold a small tail back).
        let unsent = self.unsent();
        if unsent == 0 {
            return false;
        }
        let wnd_room = seq::dist(self.snd_nxt, self.snd_una.wrapping_add(self.snd_wnd));
        let sendable = unsent.min(wnd_room).min(self.cwnd_room());
        let mss = u32::from(self.mss);
        sendable >= mss
            || (sendable == unsent && (self.nodelay || !self.outstanding() || self.fin_queued))
    }

    /// Whether recovery has a hole to resend now (NextSeg's rules 1 and 3, or go-back-N after
    /// a timeout), so that a connection waiting on ACKs does not sit in the transmit queue.
    fn has_hole_to_resend(&self) -> bool {
        let limit = if self.fin_sent { self.fin_seq().wrapping_add(1) } else { self.data_end() };
        let limit = seq::min(limit, self.snd_max);
        let start = seq::max(self.high_rxt, self.snd_una);
        let end = match self.mode {
            Mode::Loss => self.recovery_point,
            Mode::Recovery => seq::max(self.lost_boundary(), self.sb.highest().unwrap_or(start)),
            Mode::Open | Mode::NewReno => return false,
        };
        self.sb.next_hole(start, seq::min(end, limit)).is_some()
    }

    fn arm_rtx(&mut self, now: Instant) {
        if self.rtx_at.is_none() || self.persist {
            self.restart_rtx(now);
        }
    }

    /// Starts the retransmission timer, as a tail-loss probe timeout when one is allowed.
    fn restart_rtx(&mut self, now: Instant) {
        self.persist = false;
        match self.pto() {
            Some(pto) => {
                self.tlp_armed = true;
                self.rtx_at = Some(now + pto);
            }
            None => {
                self.tlp_armed = false;
                self.rtx_at = Some(now + self.rtt.rto());
            }
        }
    }

    /// The tail-loss probe timeout (RFC 8985 §7.2, Linux's `tcp_schedule_loss_probe`): two
    /// smoothed RTTs, at least 10 ms, plus a delayed-ACK allowance when a single segment is
    /// out; never beyond the RTO. `None` where no probe is allowed (no SACK, no RTT sample,
    /// in recovery, or a probe already out).
    fn pto(&self) -> Option<Duration> {
        if !self.sack_ok || self.mode != Mode::Open || self.tlp_out || !self.state.is_synchronized()
        {
            return None;
        }
        let srtt = self.rtt.srtt()?;
        let mut pto = (srtt * 2).max(Duration::from_millis(10));
        if seq::dist(self.snd_una, self.snd_nxt) <= u32::from(self.mss) {
            pto = pto.max(srtt + srtt / 2 + Duration::from_millis(200));
        }
        Some(pto.min(self.rtt.rto()))
    }

    fn arm_persist(&mut self, now: Instant) {
        if self.rtx_at.is_none() {
            self.persist = true;
            let base = self.rtt.rto();
            let d = base
                .checked_mul(1u32 << self.persist_backoff.min(16))
                .unwrap_or(Duration::MAX)
                .min(Duration::from_secs(60));
            self.rtx_at = Some(now + d);
        }
    }

    fn arm_keepalive(&mut self, now: Instant) {
        if self.ka_at.is_none() {
            if let Some(ka) = self.keepalive {
                if self.state.is_synchronized() {
                    self.ka_at = Some(now + ka.idle);
                }
            }
        }
    }

    /// Arms the persist timer when data waits for a window that is closed (or too small to
    /// send anything) and nothing is in flight to bring an update (RFC 9293 §3.8.6.1).
    pub fn check_persist(&mut self, now: Instant) {
        if !self.state.is_synchronized() || self.rtx_at.is_some() || self.outstanding() {
            return;
        }
        let unsent = self.unsent();
        let room = seq::dist(self.snd_nxt, self.snd_una.wrapping_add(self.snd_wnd));
        if unsent > 0 && room < unsent.min(u32::from(self.mss)) {
            self.arm_persist(now);
        }
    }

    /// Turns keep-alive on or off.
    pub fn set_keepalive(&mut self, now: Instant, ka: Option<Keepalive>) {
        self.keepalive = ka;
        self.ka_at = None;
        self.ka_probes = 0;
        self.arm_keepalive(now);
    }

    /// Runs the timers due at `env.now`.
    pub fn on_timer(&mut self, env: &mut Env<'_>) {
        let now = env.now;
        if self.delack_at.is_some_and(|t| t <= now) {
            self.delack_at = None;
            self.ack_now = true;
            env.stats.delayed_acks += 1;
        }
        if self.rtx_at.is_some_and(|t| t <= now) {
            self.rtx_at = None;
            if self.persist {
                self.persist = false;
                self.on_persist(env);
            } else if self.tlp_armed {
                self.tlp_armed = false;
                self.on_tlp(env);
            } else {
                self.on_rto(env);
            }
        }
        if self.ka_at.is_some_and(|t| t <= now) {
            self.ka_at = None;
            self.on_keepalive_timer(env);
        }
    }

    fn on_persist(&mut self, env: &mut Env<'_>) {
        if !self.state.is_synchronized() || self.sbuf.len() == 0 {
            return;
        }
        if self.snd_wnd == 0 || self.unsent() > 0 {
            self.probe = Probe::Window;
            self.persist_backoff = self.persist_backoff.saturating_add(1);
        }
        let _ = env;
    }

    fn on_tlp(&mut self, env: &mut Env<'_>) {
        if !self.state.is_synchronized() || !self.outstanding() {
            return;
        }
        self.tlp_out = true;
        self.probe = Probe::Tail;
        env.stats.tail_loss_probes += 1;
        self.rtx_at = Some(env.now + self.rtt.rto());
    }

    fn on_rto(&mut self, env: &mut Env<'_>) {
        let now = env.now;
        match self.state {
            TcpState::SynSent | TcpState::SynReceived => {
                let limit = if self.state == TcpState::SynSent {
                    env.cfg.syn_retries
                } else {
                    env.cfg.synack_retries
                };
                if self.retries >= limit {
                    if self.state == TcpState::SynSent || self.owner == Owner::App {
                        env.stats.connect_failures += 1;
                    }
                    env.stats.timeouts += 1;
                    self.fail(Ready::TIMED_OUT);
                    return;
                }
                self.retries += 1;
                self.rtt.back_off();
                self.rtt_at = None;
                self.syn_retransmitted = true;
                self.syn_pending = true;
                env.stats.retransmits += 1;
                self.stats.retransmits += 1;
                self.rtx_at = Some(now + self.rtt.rto());
            }
            s if s.is_synchronized() => {
                if !self.outstanding() {
                    return;
                }
                if self.retries >= env.cfg.max_retries {
                    env.stats.timeouts += 1;
                    self.fail(Ready::TIMED_OUT);
                    return;
                }
                self.retries += 1;
                env.stats.rto_events += 1;
                self.stats.rto_events += 1;
                let mss = u32::from(self.mss);
                if self.mode != Mode::Loss || self.rtt.backoffs() == 0 {
                    // A timeout during a recovery keeps that episode's saved state (the window
                    // before the first reduction), as Linux keeps its undo marker.
                    if self.mode == Mode::Open || self.undo.is_none() {
                        self.undo = self.sack_ok.then(|| Undo::new(self));
                    }
                    let flight = self.pipe();
                    self.cc.on_rto(now, flight, mss);
                } else {
                    self.cc.set_cwnd(mss, mss);
                }
                self.mode = Mode::Loss;
                self.recovery_point = self.snd_max;
                self.recover = self.snd_max;
                self.high_rxt = self.snd_una;
                self.rtx_mark = None;
                self.tlp_out = false;
                if self.rtt.backoffs() > 0 {
                    // A second timeout in a row: the receiver may have reneged (RFC 2018 §8);
                    // forget what it SACKed. After a first one the SACK information is kept
                    // and only holes are resent (RFC 6675 §5.1, as Linux does).
                    self.sb.clear();
                }
                self.dupacks = 0;
                self.rtx_head = false;
                self.rtt.back_off();
                if self.rtt_at.take().is_some() {
                    self.rtt_karn = true;
                }
                self.rtx_at = Some(now + self.rtt.rto());
            }
            _ => {}
        }
    }

    fn on_keepalive_timer(&mut self, env: &mut Env<'_>) {
        let now = env.now;
        if self.state == TcpState::FinWait2 && self.owner == Owner::Orphan {
            // tcp_fin_timeout: an orphan does not wait for the peer's FIN forever.
            self.fail(Ready::CLOSED);
            return;
        }
        let Some(ka) = self.keepalive else { return };
        if !self.state.is_synchronized() {
            return;
        }
        if self.outstanding() || self.unsent() > 0 {
            // Retransmissions (or the persist timer) watch the connection meanwhile.
            self.ka_at = Some(now + ka.idle);
            return;
        }
        let idle = now - self.last_rx;
        if self.ka_probes == 0 && idle < ka.idle {
            self.ka_at = Some(self.last_rx + ka.idle);
            return;
        }
        if self.ka_probes >= ka.probes {
            env.stats.timeouts += 1;
            self.rst_pending = true;
            self.fail(Ready::TIMED_OUT);
            return;
        }
        self.ka_probes += 1;
        self.probe = Probe::Keepalive;
        self.ka_at = Some(now + ka.interval);
    }

    /// Ends the connection with `why` reported to the application (CLOSED state).
    pub fn fail(&mut self, why: Ready) {
        self.state = TcpState::Closed;
        self.ev |= why;
        self.why |= why;
        self.rtx_at = None;
        self.delack_at = None;
        self.ka_at = None;
        self.syn_pending = false;
        self.ack_now = false;
        self.extra_acks = 0;
        self.wnd_update = false;
        self.probe = Probe::None;
        self.rtx_head = false;
    }

    // ---------------------------------------------------------------------------------------
    // Congestion bookkeeping.

    /// RFC 6675 `SetPipe` (recovery and loss modes) or the flight size (otherwise): bytes
    /// believed to be in the network.
    pub fn pipe(&self) -> u32 {
        let (una, nxt) = (self.snd_una, self.snd_nxt);
        match self.mode {
            Mode::Open | Mode::NewReno => {
                seq::dist(una, nxt).saturating_sub(self.sb.sacked_bytes())
            }
            Mode::Recovery | Mode::Loss => {
                let lost_end = if self.mode == Mode::Loss {
                    self.recovery_point
                } else {
                    self.lost_boundary()
                };
                let lost_end = seq::min(lost_end, nxt);
                let rtx_end = seq::min(self.high_rxt, nxt);
                let u = |b: u32| self.sb.unsacked(una, b);
                u(nxt).saturating_sub(u(lost_end)).saturating_add(u(rtx_end))
            }
        }
    }

    /// Below this, every unSACKed byte counts as lost: RFC 6675 `IsLost`, or everything
    /// before a SACKed tail-loss probe.
    fn lost_boundary(&self) -> u32 {
        let b = self.sb.lost_boundary(self.snd_una, u32::from(self.mss));
        if self.sb.is_empty() {
            return b;
        }
        seq::max(b, seq::min(self.lost_below, self.sb.highest().unwrap_or(b)))
    }

    /// Bytes the congestion window lets us add to the network now.
    fn cwnd_room(&self) -> u32 {
        let mut cwnd = self.cc.cwnd();
        if self.mode == Mode::Open && self.dupacks > 0 {
            // RFC 3042 limited transmit: a new segment for each of the first two dupacks.
            cwnd = cwnd.saturating_add(self.dupacks.min(2) * u32::from(self.mss));
        }
        cwnd.saturating_sub(self.pipe())
    }

    fn cwnd_limited(&self) -> bool {
        let cwnd = self.cc.cwnd();
        let mss = u32::from(self.mss);
        if cwnd < self.cc.ssthresh() {
            self.max_flight.saturating_mul(2) >= cwnd
        } else {
            self.max_flight.saturating_add(3 * mss) >= cwnd
        }
    }

    fn enter_recovery(&mut self, env: &mut Env<'_>) {
        let mss = u32::from(self.mss);
        let flight = self.pipe();
        self.undo = self.sack_ok.then(|| Undo::new(self));
        self.recovery_point = self.snd_max;
        self.recover = self.snd_max;
        self.cc.on_congestion(env.now, flight, mss);
        if self.sack_ok {
            self.mode = Mode::Recovery;
            self.high_rxt = self.snd_una;
            env.stats.sack_recoveries += 1;
        } else {
            self.mode = Mode::NewReno;
            let w = self.cc.ssthresh().saturating_add(3 * mss);
            self.cc.set_cwnd(w, mss);
        }
        self.rtx_head = true;
        self.tlp_out = false;
        self.tlp_armed = false;
        env.stats.fast_retransmits += 1;
        self.stats.fast_retransmits += 1;
    }

    // ---------------------------------------------------------------------------------------
    // Segment arrival.

    /// Processes one received segment (see the module documentation). Returns the drop reason
    /// if the segment (or part of it) was discarded, and a stateless RST to send, if any.
    pub fn on_segment(
        &mut self,
        env: &mut Env<'_>,
        mem: &mut Mem<'_>,
        seg: &Seg<'_>,
    ) -> (Option<TcpDrop>, Option<RstReply>) {
        self.stats.segs_in += 1;
        self.last_rx = env.now;
        self.ka_probes = 0;
        match self.state {
            TcpState::SynSent => self.rx_syn_sent(env, mem, seg),
            TcpState::Closed | TcpState::Listen | TcpState::TimeWait => {
                (Some(TcpDrop::Ignored), None)
            }
            _ => self.rx_synchronized(env, mem, seg),
        }
    }

    /// RFC 9293 §3.10.7.3.
    fn rx_syn_sent(
        &mut self,
        env: &mut Env<'_>,
        mem: &mut Mem<'_>,
        seg: &Seg<'_>,
    ) -> (Option<TcpDrop>, Option<RstReply>) {
        let f = seg.flags;
        let has_ack = f.contains(TcpFlags::ACK);
        if has_ack && (seq::le(seg.ack, self.iss) || seq::gt(seg.ack, self.snd_max)) {
            if f.contains(TcpFlags::RST) {
                return (Some(TcpDrop::BadRst), None);
            }
            return (Some(TcpDrop::BadAck), Some(RstReply { seq: seg.ack }));
        }
        if f.contains(TcpFlags::RST) {
            if has_ack {
                env.stats.resets_received += 1;
                env.stats.connect_failures += 1;
                self.fail(Ready::RESET);
                return (None, None);
            }
            return (Some(TcpDrop::BadRst), None);
        }
        if !f.contains(TcpFlags::SYN) {
            return (Some(TcpDrop::Ignored), None);
        }
        self.take_syn(env.now, seg);
        // Until our first ACK, the peer may fill the window our SYN offered (unscaled).
        let offered = self.usable_space(mem.rx.len()).min(65535);
        self.rcv_adv = self.rbuf.nxt().wrapping_add(offered);
        if has_ack {
            self.snd_una = seg.ack;
            self.snd_wnd = u32::from(seg.wnd);
            self.max_snd_wnd = self.snd_wnd;
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = seg.ack;
            self.take_rtt_sample(env.now, seg, seq::gt(seg.ack, self.rtt_seq));
            self.establish(env.cfg);
            self.state = self.open_state();
            self.ev |= Ready::CONNECTED | Ready::WRITABLE;
            self.ack_now = true;
            self.rtx_at = None;
            self.syn_pending = false;
            self.arm_keepalive(env.now);
            if !seg.payload.is_empty() || f.contains(TcpFlags::FIN) {
                let rest = Seg { seq: seg.seq.wrapping_add(1), ..*seg };
                let drop = self.rx_text(env, mem, &rest);
                return (drop, None);
            }
        } else {
            // Simultaneous open (RFC 9293 §3.5, figure 8).
            self.state = TcpState::SynReceived;
            self.snd_wnd = u32::from(seg.wnd);
            self.max_snd_wnd = self.snd_wnd;
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = self.iss;
            self.syn_pending = true;
        }
        (None, None)
    }

    fn rcv_wnd(&self) -> u32 {
        seq::dist(self.rbuf.nxt(), self.rcv_adv)
    }

    /// RFC 5961 challenge ACK, rate-limited per connection and for the stack.
    fn challenge(&mut self, env: &mut Env<'_>) {
        if self.oow_limited(env.now) || !env.challenge.allow(env.now, env.cfg.challenge_ack_limit) {
            env.stats.drop(TcpDrop::RateLimited);
            return;
        }
        self.last_oow = Some(env.now);
        env.stats.challenge_acks += 1;
        self.ack_now = true;
    }

    fn oow_limited(&self, now: Instant) -> bool {
        self.last_oow.is_some_and(|t| now - t < OOW_INTERVAL)
    }

    /// An ACK in reply to an unacceptable segment: data segments always get one; pure ACKs
    /// and SYNs are rate-limited (ACK loops, Linux's `tcp_oow_rate_limited`).
    fn oow_ack(&mut self, env: &mut Env<'_>, seg: &Seg<'_>) {
        let pure = seg.payload.is_empty() && !seg.flags.contains(TcpFlags::FIN);
        if !seg.payload.is_empty() && seq::lt(seg.seq, self.rbuf.nxt()) {
            // Old data again (a retransmission of what we have): D-SACK it, as Linux's
            // `tcp_send_dupack` does, up to RCV.NXT.
            let end = seg.seq.wrapping_add(seg.payload.len() as u32);
            self.note_dsack(seg.seq, seq::min(end, self.rbuf.nxt()));
        }
        if pure {
            if self.oow_limited(env.now) {
                env.stats.drop(TcpDrop::RateLimited);
                return;
            }
            self.last_oow = Some(env.now);
        }
        self.ack_now = true;
    }

    /// RFC 9293 §3.10.7.4 for SYN-RECEIVED and the synchronized states.
    fn rx_synchronized(
        &mut self,
        env: &mut Env<'_>,
        mem: &mut Mem<'_>,
        seg: &Seg<'_>,
    ) -> (Option<TcpDrop>, Option<RstReply>) {
        let now = env.now;
        let f = seg.flags;
        // PAWS (RFC 7323 §5.3 R1).
        if self.ts_ok && !f.contains(TcpFlags::RST) {
            if let Some(ts) = seg.ts {
                let recent_valid = now - self.ts_recent_at < PAWS_IDLE;
                if seq::lt(ts.tsval, self.ts_recent) && recent_valid {
                    if f.contains(TcpFlags::SYN) {
                        self.challenge(env);
                    } else {
                        self.oow_ack(env, seg);
                    }
                    return (Some(TcpDrop::Paws), None);
                }
            }
        }
        // First: sequence number (RFC 9293's four cases, with Linux's allowance of a segment
        // at RCV.NXT when the window is zero so that its ACK is processed).
        let nxt = self.rbuf.nxt();
        let wnd = self.rcv_wnd();
        let len = seg.len();
        let in_wnd = |s: u32| seq::in_range(s, nxt, nxt.wrapping_add(wnd));
        let acceptable = if wnd == 0 {
            seg.seq == nxt
        } else if len == 0 {
            in_wnd(seg.seq)
        } else {
            in_wnd(seg.seq) || in_wnd(seg.seq.wrapping_add(len - 1))
        };
        // Second: RST (RFC 5961 §3.2).
        if f.contains(TcpFlags::RST) {
            let in_window = seq::in_range(seg.seq, nxt, nxt.wrapping_add(wnd.max(1)));
            if !in_window {
                return (Some(TcpDrop::BadRst), None);
            }
            if seg.seq == nxt {
                env.stats.resets_received += 1;
                if self.state == TcpState::SynReceived && self.owner != Owner::App {
                    // A passive half-open connection just goes away (back to LISTEN).
                    self.fail(Ready::RESET);
                } else {
                    if self.state == TcpState::SynReceived {
                        env.stats.connect_failures += 1;
                    }
                    self.fail(Ready::RESET);
                }
                return (None, None);
            }
            self.challenge(env);
            return (Some(TcpDrop::BadRst), None);
        }
        // Fourth: SYN (RFC 5961 §4), except a retransmitted SYN in SYN-RECEIVED, which is
        // answered with our SYN-ACK again.
        if f.contains(TcpFlags::SYN) {
            if self.state == TcpState::SynReceived
                && !f.contains(TcpFlags::ACK)
                && seg.seq == self.irs
            {
                self.syn_pending = true;
                return (None, None);
            }
            self.challenge(env);
            return (Some(TcpDrop::BadSyn), None);
        }
        if !acceptable {
            self.oow_ack(env, seg);
            return (Some(TcpDrop::OutOfWindow), None);
        }
        // RFC 7323 §4.3: remember the timestamp of a segment covering Last.ACK.sent.
        if self.ts_ok {
            if let Some(ts) = seg.ts {
                if seq::ge(ts.tsval, self.ts_recent) && seq::le(seg.seq, self.last_ack_sent) {
                    self.ts_recent = ts.tsval;
                    self.ts_recent_at = now;
                }
            }
        }
        // Fifth: ACK.
        if !f.contains(TcpFlags::ACK) {
            return (Some(TcpDrop::Ignored), None);
        }
        if self.state == TcpState::SynReceived {
            if seq::lt(self.snd_una, seg.ack) && seq::le(seg.ack, self.snd_max) {
                if self.owner != Owner::App && !env.accept_room {
                    // Accept queue full: stay half-open, the SYN-ACK timer will try again
                    // (Linux with tcp_abort_on_overflow = 0).
                    env.stats.listen_overflows += 1;
                    return (Some(TcpDrop::ListenOverflow), None);
                }
                self.take_rtt_sample(now, seg, seq::gt(seg.ack, self.rtt_seq));
                self.snd_una = seg.ack;
                self.snd_wnd = u32::from(seg.wnd) << self.snd_wscale;
                self.max_snd_wnd = self.snd_wnd;
                self.snd_wl1 = seg.seq;
                self.snd_wl2 = seg.ack;
                self.establish(env.cfg);
                self.state = self.open_state();
                self.syn_pending = false;
                self.rtx_at = None;
                if self.owner == Owner::App {
                    // Simultaneous open completes.
                    self.ev |= Ready::CONNECTED | Ready::WRITABLE;
                } else {
                    self.just_established = true;
                }
                self.arm_keepalive(now);
            } else {
                return (Some(TcpDrop::BadAck), Some(RstReply { seq: seg.ack }));
            }
        }
        // RFC 5961 §5.2: acceptable ACKs lie in [SND.UNA − MAX.SND.WND, SND.MAX].
        let oldest = self.snd_una.wrapping_sub(self.max_snd_wnd.max(1));
        if seq::gt(seg.ack, self.snd_max) || seq::lt(seg.ack, oldest) {
            self.challenge(env);
            return (Some(TcpDrop::BadAck), None);
        }
        self.rx_ack(env, mem, seg);
        if self.state == TcpState::Closed {
            return (None, None);
        }
        if self.fin_acked() {
            match self.state {
                TcpState::FinWait1 => {
                    self.state = TcpState::FinWait2;
                    if self.owner == Owner::Orphan {
                        self.ka_at = Some(now + env.cfg.fin_timeout);
                    }
                }
                TcpState::Closing => {
                    self.enter_time_wait();
                    return (None, None);
                }
                TcpState::LastAck => {
                    self.fail(Ready::CLOSED);
                    return (None, None);
                }
                _ => {}
            }
        }
        // Seventh and eighth: text and FIN.
        let drop = self.rx_text(env, mem, seg);
        (drop, None)
    }

    fn enter_time_wait(&mut self) {
        self.state = TcpState::TimeWait;
        self.ev |= Ready::CLOSED;
        self.rtx_at = None;
        self.delack_at = None;
        self.ka_at = None;
    }

    fn take_rtt_sample(&mut self, now: Instant, seg: &Seg<'_>, covers_timed: bool) {
        if let (Some(t0), true) = (self.rtt_at, covers_timed) {
            self.rtt.sample(now - t0);
            self.rtt_at = None;
            self.rtt_karn = false;
        } else if self.rtt_karn && self.ts_ok {
            // The timed segment was retransmitted (Karn): the timestamp echo is unambiguous
            // (RFC 7323 §4.1).
            if let Some(ts) = seg.ts {
                let ms = self.ts_val(now).wrapping_sub(ts.tsecr);
                if ms < 60_000 {
                    self.rtt.sample(Duration::from_millis(u64::from(ms)));
                    self.rtt_karn = false;
                }
            }
        }
    }

    /// The ACK field and the window (RFC 9293 §3.10.7.4 "fifth"), SACK, RTT, congestion
    /// control and loss detection.
    fn rx_ack(&mut self, env: &mut Env<'_>, mem: &mut Mem<'_>, seg: &Seg<'_>) {
        let now = env.now;
        let ack = seg.ack;
        let mss = u32::from(self.mss);
        // Window update (SND.WL1/WL2 rule).
        let wnd = u32::from(seg.wnd) << self.snd_wscale;
        let mut wnd_changed = false;
        if seq::le(self.snd_una, ack)
            && (seq::lt(self.snd_wl1, seg.seq)
                || (self.snd_wl1 == seg.seq && seq::le(self.snd_wl2, ack)))
        {
            wnd_changed = wnd != self.snd_wnd;
            self.snd_wnd = wnd;
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = ack;
            self.max_snd_wnd = self.max_snd_wnd.max(wnd);
        }
        self.note_dsack_received(ack, seg.sack.as_slice());
        let sack_news = self.sack_ok
            && !seg.sack.is_empty()
            && self.sb.update(seq::max(ack, self.snd_una), self.snd_max, seg.sack.as_slice());
        if sack_news && self.tlp_out {
            if let Some(top) = self.sb.highest() {
                self.lost_below = seq::max(self.lost_below, top);
            }
        }
        if seq::gt(ack, self.snd_una) {
            let acked = seq::dist(self.snd_una, ack);
            self.take_rtt_sample(now, seg, seq::gt(ack, self.rtt_seq));
            let data_acked = seq::dist(self.buf_seq, seq::min(ack, self.data_end())) as usize;
            if data_acked > 0 {
                let cap = mem.tx.len();
                self.sbuf.consume(cap, data_acked);
                self.buf_seq = self.buf_seq.wrapping_add(data_acked as u32);
                self.stats.bytes_acked += data_acked as u64;
            }
            self.snd_una = ack;
            if seq::lt(self.snd_nxt, ack) {
                self.snd_nxt = ack;
            }
            self.high_rxt = seq::max(self.high_rxt, ack);
            self.sb.advance(ack);
            self.dupacks = 0;
            self.retries = 0;
            self.probe_out = false;
            self.persist_backoff = 0;
            self.tlp_out = false;
            match self.mode {
                Mode::Open => {
                    let ev = AckEvent {
                        now,
                        acked,
                        mss,
                        srtt: self.rtt.srtt(),
                        cwnd_limited: self.cwnd_limited(),
                    };
                    self.cc.on_ack(&ev);
                }
                Mode::Recovery => {
                    if seq::ge(ack, self.recovery_point) {
                        self.mode = Mode::Open;
                        self.cc.on_recovery_end(now, mss);
                    }
                }
                Mode::NewReno => {
                    if seq::ge(ack, self.recovery_point) {
                        // RFC 6582 §3.2 step 3 (full acknowledgment), option 1.
                        let flight = seq::dist(self.snd_una, self.snd_nxt);
                        let w = self.cc.ssthresh().min(flight.max(mss) + mss);
                        self.cc.set_cwnd(w, mss);
                        self.mode = Mode::Open;
                    } else {
                        // Partial acknowledgment: retransmit the next hole, deflate.
                        self.rtx_head = true;
                        let mut w = self.cc.cwnd().saturating_sub(acked);
                        if acked >= mss {
                            w = w.saturating_add(mss);
                        }
                        self.cc.set_cwnd(w, mss);
                    }
                }
                Mode::Loss => {
                    let ev =
                        AckEvent { now, acked, mss, srtt: self.rtt.srtt(), cwnd_limited: true };
                    self.cc.on_ack(&ev);
                    if seq::ge(ack, self.recovery_point) {
                        self.mode = Mode::Open;
                    }
                }
            }
            self.max_flight = self.pipe();
            if self.outstanding() {
                self.restart_rtx(now);
            } else {
                self.rtx_at = None;
                self.persist = false;
            }
            if self.write_blocked && self.sbuf.free(mem.tx.len()) > 0 {
                self.write_blocked = false;
                self.ev |= Ready::WRITABLE;
            }
        } else if ack == self.snd_una && self.outstanding() {
            let pure = seg.payload.is_empty() && !seg.flags.contains(TcpFlags::FIN);
            let dup = pure && (sack_news || (!self.sack_ok && !wnd_changed));
            if dup {
                self.dupacks += 1;
                self.stats.dup_acks += 1;
                if self.mode == Mode::NewReno {
                    // RFC 6582 §3.2 step 4: inflate by one segment per duplicate.
                    let w = self.cc.cwnd().saturating_add(mss);
                    self.cc.set_cwnd(w, mss);
                }
            }
        }
        // Lost retransmission of the head (Linux's `tcp_mark_lost_retrans`): data sent after
        // it has been SACKed, DupThresh segments' worth, and the head is still missing.
        if let Some((head, mark)) = self.rtx_mark {
            if seq::gt(self.snd_una, head) || self.mode == Mode::Open || !self.sack_ok {
                self.rtx_mark = None;
            } else if self
                .sb
                .highest()
                .is_some_and(|top| seq::ge(top, mark.wrapping_add(DUP_THRESH * mss)))
            {
                self.rtx_mark = None;
                self.rtx_head = true;
                env.stats.lost_retransmits += 1;
            }
        }
        // A probe byte the peer did not take is sent again as new data once it opens.
        if self.probe_out && self.snd_wnd > 0 && ack == self.snd_una {
            self.probe_out = false;
            self.snd_nxt = self.snd_una;
            if self.persist {
                self.rtx_at = None;
                self.persist = false;
            }
        }
        if self.persist && self.snd_wnd > 0 {
            self.rtx_at = None;
            self.persist = false;
            self.persist_backoff = 0;
        }
        // Loss detection (RFC 5681 §3.2, RFC 6675 §5, RFC 6582 §3.2 step 2).
        // RFC 6582's guard: no new recovery for losses of data sent before the last one began
        // (`recover`). With SACK the scoreboard shows losses among newer data, so once all
        // older data is acknowledged recovery may start again (RFC 6675 §5).
        let past_recover = if self.sack_ok {
            seq::ge(self.snd_una, self.recover)
        } else {
            seq::gt(self.snd_una, self.recover)
        };
        if self.mode == Mode::Open && self.outstanding() && past_recover {
            let sack_lost =
                self.sack_ok && !self.sb.is_empty() && seq::gt(self.lost_boundary(), self.snd_una);
            if self.dupacks >= DUP_THRESH || sack_lost {
                self.enter_recovery(env);
            }
        }
        // Undo once the episode is over and every one of its retransmissions was D-SACKed
        // (during it, the recovery's own window rules still hold).
        if self.mode == Mode::Open {
            if let Some(u) = self.undo.take_if(|u| u.unnecessary()) {
                self.cc.undo(u.cwnd, u.ssthresh);
                env.stats.dsack_undos += 1;
            }
        }
    }

    /// A D-SACK in an ACK (RFC 2883 §4: a first block below the cumulative ACK, or inside
    /// the second block) goes to the loss episode's [`Undo`].
    fn note_dsack_received(&mut self, ack: u32, blocks: &[(u32, u32)]) {
        let mss = u32::from(self.mss);
        let Some(u) = &mut self.undo else { return };
        let Some(&(s, e)) = blocks.first() else { return };
        let inside_second = blocks.get(1).is_some_and(|&(s2, e2)| seq::ge(s, s2) && seq::le(e, e2));
        if seq::lt(s, e) && (seq::le(e, ack) || inside_second) {
            u.dsack(s, e, mss);
        }
    }

    /// Segment text and FIN (RFC 9293 §3.10.7.4 "seventh" and "eighth").
    fn rx_text(&mut self, env: &mut Env<'_>, mem: &mut Mem<'_>, seg: &Seg<'_>) -> Option<TcpDrop> {
        let mut drop = None;
        let now = env.now;
        if !seg.payload.is_empty() {
            if !self.state.may_receive() {
                // After the peer's FIN: "should not occur", ignore the text (but ACK it).
                self.ack_now = true;
                drop = Some(TcpDrop::Ignored);
            } else if self.owner == Owner::Orphan {
                // Nobody will read it: reset (RFC 9293 §3.10.4 with Linux's abort-on-data).
                self.rst_pending = true;
                self.fail(Ready::RESET);
                return Some(TcpDrop::DataAfterClose);
            } else {
                drop = self.rx_data(env, mem, seg);
            }
        }
        if seg.flags.contains(TcpFlags::FIN) {
            let fin = seg.seq.wrapping_add(seg.payload.len() as u32);
            if self.peer_fin {
                // A retransmitted FIN: acknowledge it again.
                self.ack_now = true;
            } else if self.state.may_receive() {
                let nxt = self.rbuf.nxt();
                if seq::ge(fin, nxt) && seq::lt(fin, nxt.wrapping_add(self.rcv_wnd().max(1))) {
                    self.rcv_fin = Some(fin);
                }
                self.ack_now = true;
            }
        }
        if let Some(fin) = self.rcv_fin {
            if fin == self.rbuf.nxt() && self.state.may_receive() {
                self.rcv_fin = None;
                self.rbuf.advance_flag();
                self.peer_fin = true;
                self.ack_now = true;
                self.delack_at = None;
                self.ev |= Ready::PEER_CLOSED | Ready::READABLE;
                match self.state {
                    TcpState::Established => self.state = TcpState::CloseWait,
                    TcpState::FinWait1 => {
                        if self.fin_acked() {
                            self.enter_time_wait();
                        } else {
                            self.state = TcpState::Closing;
                        }
                    }
                    TcpState::FinWait2 => self.enter_time_wait(),
                    _ => {}
                }
            }
        }
        let _ = now;
        drop
    }

    fn rx_data(&mut self, env: &mut Env<'_>, mem: &mut Mem<'_>, seg: &Seg<'_>) -> Option<TcpDrop> {
        let now = env.now;
        let segments = u32::from(seg.segments.max(1));
        let nxt = self.rbuf.nxt();
        let end = seg.seq.wrapping_add(seg.payload.len() as u32);
        let ins = self.rbuf.insert(mem.rx, seg.seq, seg.payload);
        if seq::lt(seg.seq, nxt) {
            // Its head was received before (RFC 2883 §4.1.1: the duplicate part).
            self.note_dsack(seg.seq, seq::min(end, nxt));
        } else if ins.duplicate && ins.out_of_order {
            // All of it is held out of order already (RFC 2883 §4.1.3).
            self.note_dsack(seg.seq, end);
        }
        let mut drop = None;
        if ins.dropped > 0 {
            let full = self.rbuf.space(mem.rx.len()) as u32 <= seq::dist(self.rbuf.nxt(), seg.seq);
            drop = Some(if full { TcpDrop::RcvBufFull } else { TcpDrop::OooFull });
            self.ack_now = true;
        }
        let per_seg = (seg.payload.len() as u32 / segments).min(u32::from(self.adv_mss));
        self.rcv_mss = self.rcv_mss.max(per_seg).max(1);
        if ins.advanced > 0 {
            self.stats.bytes_received += u64::from(ins.advanced);
            self.ev |= Ready::READABLE;
            let unacked = seq::dist(self.last_ack_sent, self.rbuf.nxt());
            if ins.filled_hole || self.quickacks > 0 || unacked >= 2 * self.rcv_mss {
                self.ack_now = true;
                self.quickacks = self.quickacks.saturating_sub(segments.min(255) as u8);
            } else if self.delack_at.is_none() {
                self.delack_at = Some(now + env.cfg.delayed_ack);
            }
        }
        if ins.out_of_order || ins.duplicate {
            // RFC 5681 §4.2: an immediate (duplicate) ACK for out-of-order or old data. A peer
            // without SACK counts them: send one per segment, up to three per batch.
            self.ack_now = true;
            if ins.out_of_order {
                self.stats.ooo_segments += 1;
                if !self.sack_ok {
                    self.extra_acks = (self.extra_acks + 1).min(2);
                }
            }
        }
        drop
    }

    /// Remembers a duplicate range for a D-SACK block in an ACK sent at once (where SACK was
    /// agreed: RFC 2883 §4 sends D-SACKs only to a sender that sent SACK-permitted). Several
    /// duplicates in one batch share that ACK: a range that touches the pending one extends it
    /// (§4: one block per contiguous duplicate sequence), another replaces it (the latest
    /// first, as RFC 2018 orders blocks).
    fn note_dsack(&mut self, start: u32, end: u32) {
        if !self.sack_ok || !seq::lt(start, end) {
            return;
        }
        self.dsack = Some(match self.dsack {
            Some((a, b)) if seq::le(start, b) && seq::le(a, end) => {
                (seq::min(a, start), seq::max(b, end))
            }
            _ => (start, end),
        });
        self.ack_now = true;
    }

    /// SACK blocks the next segment carries: a pending D-SACK first (RFC 2883 §4), then the
    /// out-of-order ranges (RFC 2018 §4); three with timestamps, four without.
    fn sack_out(&self) -> SackBlocks {
        if !self.sack_ok {
            return SackBlocks::EMPTY;
        }
        let max = if self.ts_ok { 3 } else { 4 };
        let mut out = SackBlocks::EMPTY;
        if let Some(d) = self.dsack {
            out.push(d);
        }
        if self.rbuf.has_ooo() {
            for &b in self.rbuf.sack_blocks(max - out.len()).as_slice() {
                out.push(b);
            }
        }
        out
    }

    // ---------------------------------------------------------------------------------------
    // Output.

    /// The usable receive space: the buffer's free space less one window-scale unit, so that
    /// rounding a window up never promises more than the memory holds.
    fn usable_space(&self, cap: usize) -> u32 {
        let unit = (1u32 << self.rcv_wscale) - 1;
        (self.rbuf.space(cap) as u32).saturating_sub(unit)
    }

    /// The window field to send now, with receiver-side SWS avoidance (RFC 9293 §3.8.6.2.2)
    /// and without ever moving the right edge left. Updates `rcv_adv`.
    fn window_field(&mut self, cap: usize) -> u16 {
        let nxt = self.rbuf.nxt();
        let space = self.usable_space(cap);
        let cur = self.rcv_wnd();
        let threshold = ((cap / 2) as u32).min(u32::from(self.adv_mss)).max(1);
        let shift = self.rcv_wscale;
        let val = if space >= cur.saturating_add(threshold) || space >= cap as u32 / 2 {
            (space >> shift).min(65535)
        } else {
            // Keep the right edge where it is (rounded up, within the reserve).
            cur.div_ceil(1 << shift).min(65535)
        };
        let edge = nxt.wrapping_add(val << shift);
        if seq::gt(edge, self.rcv_adv) {
            self.rcv_adv = edge;
        }
        self.last_ack_sent = nxt;
        val as u16
    }

    fn ts_opt(&self, now: Instant) -> Option<TcpTimestamps> {
        self.ts_ok.then(|| TcpTimestamps { tsval: self.ts_val(now), tsecr: self.ts_recent })
    }

    /// Fills the ACK-related fields every segment carries and clears the ACK debt.
    fn out_base(&mut self, now: Instant, cap: usize, seqno: u32, flags: TcpFlags) -> Out {
        let window = self.window_field(cap);
        let sack = self.sack_out();
        self.dsack = None;
        self.ack_now = false;
        self.wnd_update = false;
        self.delack_at = None;
        Out {
            seq: seqno,
            ack: self.rbuf.nxt(),
            flags: flags | TcpFlags::ACK,
            window,
            data_off: 0,
            len: 0,
            seg_size: self.mss,
            syn: None,
            ts: self.ts_opt(now),
            sack,
        }
    }

    fn syn_segment(&mut self, now: Instant, cap: usize) -> Out {
        let with_ack = self.state == TcpState::SynReceived;
        let space = self.usable_space(cap).min(65535);
        self.rcv_adv = seq::max(self.rcv_adv, self.rbuf.nxt().wrapping_add(space));
        self.syn_pending = false;
        if self.rtt_at.is_none() && !self.syn_retransmitted {
            self.rtt_seq = self.iss;
            self.rtt_at = Some(now);
        }
        if self.rtx_at.is_none() {
            self.rtx_at = Some(now + self.rtt.rto());
        }
        self.stats.segs_out += 1;
        let ts = self.ts_ok.then(|| TcpTimestamps {
            tsval: self.ts_val(now),
            tsecr: if with_ack { self.ts_recent } else { 0 },
        });
        Out {
            seq: self.iss,
            ack: if with_ack { self.rbuf.nxt() } else { 0 },
            flags: if with_ack { TcpFlags::SYN | TcpFlags::ACK } else { TcpFlags::SYN },
            window: space as u16,
            data_off: 0,
            len: 0,
            seg_size: self.mss,
            syn: Some(SynOpts {
                mss: self.adv_mss,
                ws: self.ws_ok.then_some(self.rcv_wscale),
                sack_perm: self.sack_ok,
            }),
            ts,
            sack: SackBlocks::EMPTY,
        }
    }

    /// The next segment to send, or `None`; the connection's state advances as if it was sent.
    /// `room` is the most payload the frame can carry (the MSS, or more for a super-segment
    /// when `gso`).
    pub fn next_segment(
        &mut self,
        env: &mut Env<'_>,
        mem: &Mem<'_>,
        room: usize,
        gso: bool,
    ) -> Option<Out> {
        let now = env.now;
        let cap = mem.rx.len();
        if self.rst_pending {
            self.rst_pending = false;
            env.stats.resets_sent += 1;
            self.stats.segs_out += 1;
            return Some(Out {
                seq: self.snd_nxt,
                ack: self.rbuf.nxt(),
                flags: TcpFlags::RST | TcpFlags::ACK,
                window: 0,
                data_off: 0,
                len: 0,
                seg_size: self.mss,
                syn: None,
                ts: self.ts_opt(now),
                sack: SackBlocks::EMPTY,
            });
        }
        match self.state {
            TcpState::SynSent => {
                return self.syn_pending.then(|| self.syn_segment(now, cap));
            }
            TcpState::SynReceived => {
                if self.syn_pending {
                    return Some(self.syn_segment(now, cap));
                }
                return self.pure_ack(env, cap);
            }
            TcpState::TimeWait => return self.pure_ack(env, cap),
            TcpState::Closed | TcpState::Listen => return None,
            _ => {}
        }
        // SACK blocks ride in the header of data segments too: they cost payload room.
        let n_sack = self.sack_out().len();
        let opt_extra = if n_sack > 0 { 4 + 8 * n_sack } else { 0 };
        let mss = (usize::from(self.mss).saturating_sub(opt_extra)).max(1);
        let room = if gso { room.max(mss) } else { mss.min(room.max(1)) };
        if let Some(out) = self.retransmission(env, cap, mss, room) {
            return Some(out);
        }
        if let Some(out) = self.new_data(env, cap, mss, room) {
            return Some(out);
        }
        if self.mode == Mode::Recovery {
            // RFC 6675 NextSeg rule 3: a hole below the highest SACKed byte, not yet lost.
            if let Some(out) = self.rule3(env, cap, mss) {
                return Some(out);
            }
        }
        match self.probe {
            Probe::Window => {
                self.probe = Probe::None;
                let room = seq::dist(self.snd_nxt, self.snd_una.wrapping_add(self.snd_wnd));
                let unsent = self.unsent();
                if room > 0 && unsent > 0 && !self.outstanding() {
                    // A small window the sender-side SWS rules kept us from using: the
                    // override timeout sends what fits (RFC 9293 §3.8.6.2.1 (4)).
                    let len = room.min(unsent) as usize;
                    let (s, fin) = (self.snd_nxt, self.fin_queued && len as u32 == unsent);
                    return Some(self.data_segment(env, cap, s, len.min(mss), fin, mss, false));
                }
                if self.sbuf.len() > 0 {
                    let off = seq::dist(self.buf_seq, self.snd_una) as usize;
                    let mut out = self.out_base(now, cap, self.snd_una, TcpFlags::empty());
                    out.data_off = off;
                    out.len = 1;
                    let end = self.snd_una.wrapping_add(1);
                    self.snd_nxt = seq::max(self.snd_nxt, end);
                    self.snd_max = seq::max(self.snd_max, end);
                    self.probe_out = true;
                    self.arm_persist(now);
                    env.stats.window_probes += 1;
                    self.stats.window_probes += 1;
                    self.stats.segs_out += 1;
                    return Some(out);
                }
            }
            Probe::Tail => {
                self.probe = Probe::None;
                let room = seq::dist(self.snd_nxt, self.snd_una.wrapping_add(self.snd_wnd));
                let unsent = self.unsent();
                if unsent > 0 && room > 0 {
                    let len = (unsent.min(room) as usize).min(mss);
                    let fin = self.fin_queued && len as u32 == unsent;
                    let s = self.snd_nxt;
                    return Some(self.data_segment(env, cap, s, len, fin, mss, false));
                }
                if self.outstanding() {
                    // The last segment again (with the FIN if that was last).
                    let fin = self.fin_sent;
                    let end = self.data_end();
                    let start = seq::max(self.snd_una, end.wrapping_sub(mss as u32));
                    let len = seq::dist(start, end) as usize;
                    let start = if len == 0 && !fin { self.snd_una } else { start };
                    let saved = self.high_rxt;
                    let out = self.data_segment(env, cap, start, len, fin, mss, true);
                    self.high_rxt = saved;
                    return Some(out);
                }
            }
            Probe::Keepalive => {
                self.probe = Probe::None;
                let out = self.out_base(now, cap, self.snd_una.wrapping_sub(1), TcpFlags::empty());
                env.stats.keepalive_probes += 1;
                self.stats.keepalive_probes += 1;
                self.stats.segs_out += 1;
                return Some(out);
            }
            Probe::None => {}
        }
        self.pure_ack(env, cap)
    }

    fn pure_ack(&mut self, env: &mut Env<'_>, cap: usize) -> Option<Out> {
        if !(self.ack_now || self.extra_acks > 0 || self.wnd_update) {
            return None;
        }
        let extra = self.extra_acks;
        let out = self.out_base(env.now, cap, self.snd_nxt, TcpFlags::empty());
        if extra > 0 {
            self.extra_acks = extra - 1;
        }
        env.stats.acks_sent += 1;
        self.stats.segs_out += 1;
        Some(out)
    }

    /// Builds a data segment `[s, s + len)` (with FIN if `fin`) and accounts for it.
    #[allow(clippy::too_many_arguments)]
    fn data_segment(
        &mut self,
        env: &mut Env<'_>,
        cap: usize,
        s: u32,
        len: usize,
        fin: bool,
        mss: usize,
        rtx: bool,
    ) -> Out {
        let now = env.now;
        let mut flags = TcpFlags::empty();
        let end_data = s.wrapping_add(len as u32);
        if fin {
            flags |= TcpFlags::FIN;
        }
        if len > 0 && end_data == self.data_end() {
            flags |= TcpFlags::PSH;
        }
        let mut out = self.out_base(now, cap, s, flags);
        out.data_off = seq::dist(self.buf_seq, s) as usize;
        out.len = len;
        out.seg_size = mss as u16;
        let end = end_data.wrapping_add(u32::from(fin));
        let segs = len.div_ceil(mss).max(1) as u64;
        self.stats.segs_out += segs;
        if rtx {
            if s == self.snd_una {
                self.rtx_mark = Some((s, self.snd_nxt));
            }
            self.high_rxt = seq::max(self.high_rxt, end);
            env.stats.retransmits += segs;
            self.stats.retransmits += segs;
            if let Some(u) = &mut self.undo {
                u.retransmitted(s, end, segs);
            }
            if self.rtt_at.is_some() && seq::in_range(self.rtt_seq, s, end) {
                self.rtt_at = None;
                self.rtt_karn = true;
            }
        } else {
            if self.rtt_at.is_none() && len > 0 {
                self.rtt_seq = s;
                self.rtt_at = Some(now);
            }
            self.snd_nxt = end;
            self.last_send = now;
        }
        if seq::gt(end, self.snd_max) {
            self.snd_max = end;
        }
        if seq::gt(self.snd_nxt, self.snd_max) {
            self.snd_max = self.snd_nxt;
        }
        if fin {
            self.fin_sent = true;
        }
        self.arm_rtx(now);
        self.max_flight = self.max_flight.max(self.pipe());
        out
    }

    fn retransmission(
        &mut self,
        env: &mut Env<'_>,
        cap: usize,
        mss: usize,
        room: usize,
    ) -> Option<Out> {
        let limit = if self.fin_sent { self.fin_seq().wrapping_add(1) } else { self.data_end() };
        let limit = seq::min(limit, self.snd_max);
        let start = seq::max(self.high_rxt, self.snd_una);
        let (hole, forced) = if self.rtx_head {
            let h = self.sb.next_hole(self.snd_una, limit);
            (h, true)
        } else {
            match self.mode {
                Mode::Open | Mode::NewReno => return None,
                Mode::Recovery => {
                    let lost = self.lost_boundary();
                    (self.sb.next_hole(start, seq::min(lost, limit)), false)
                }
                Mode::Loss => {
                    (self.sb.next_hole(start, seq::min(self.recovery_point, limit)), false)
                }
            }
        };
        let Some((a, b)) = hole else {
            self.rtx_head = false;
            return None;
        };
        let fin_here = self.fin_sent && seq::gt(b, self.fin_seq());
        let data_b = if fin_here { self.fin_seq() } else { b };
        let avail = seq::dist(a, data_b) as usize;
        let mut len = avail.min(room);
        if !forced {
            let cw = self.cwnd_room() as usize;
            if cw < len.min(mss).max(1) {
                return None;
            }
            len = len.min(cw.max(mss.min(len)));
            if len < avail && len > mss {
                len -= len % mss;
            }
        } else if len > mss {
            len = mss;
        }
        let fin = fin_here && len == avail;
        if len == 0 && !fin {
            self.rtx_head = false;
            return None;
        }
        self.rtx_head = false;
        Some(self.data_segment(env, cap, a, len, fin, mss, true))
    }

    fn rule3(&mut self, env: &mut Env<'_>, cap: usize, mss: usize) -> Option<Out> {
        let top = self.sb.highest()?;
        let start = seq::max(self.high_rxt, self.snd_una);
        let (a, b) = self.sb.next_hole(start, seq::min(top, self.data_end()))?;
        if (self.cwnd_room() as usize) < mss {
            return None;
        }
        let len = (seq::dist(a, b) as usize).min(mss);
        Some(self.data_segment(env, cap, a, len, false, mss, true))
    }

    fn new_data(&mut self, env: &mut Env<'_>, cap: usize, mss: usize, room: usize) -> Option<Out> {
        if self.fin_sent && !seq::lt(self.snd_nxt, self.fin_seq()) {
            return None;
        }
        let now = env.now;
        let unsent = self.unsent() as usize;
        if unsent == 0 {
            if self.fin_queued && !self.fin_sent && self.snd_nxt == self.data_end() {
                return Some(self.data_segment(env, cap, self.snd_nxt, 0, true, mss, false));
            }
            return None;
        }
        if !self.outstanding() && self.mode == Mode::Open && now - self.last_send > self.rtt.rto() {
            // Restart after idle (RFC 5681 §4.1, Linux's tcp_slow_start_after_idle): the
            // window measured before the pause no longer says anything about the path.
            let iw = env.cfg.initial_cwnd.max(1) * u32::from(self.mss);
            if self.cc.cwnd() > iw {
                self.cc.set_cwnd(iw, u32::from(self.mss));
            }
        }
        let wnd_end = self.snd_una.wrapping_add(self.snd_wnd);
        let wnd_room = seq::dist(self.snd_nxt, wnd_end) as usize;
        let cw_room = self.cwnd_room() as usize;
        let mut len = unsent.min(wnd_room).min(cw_room).min(room);
        if len < unsent {
            if len >= mss {
                len -= len % mss;
            } else if len == wnd_room
                && len > 0
                && len < cw_room.min(room)
                && len as u32 >= self.max_snd_wnd / 2
            {
                // Sender SWS avoidance (RFC 9293 §3.8.6.2.1): at least half the largest window
                // the peer ever offered.
            } else {
                len = 0;
            }
        } else if len < mss && !self.nodelay && self.outstanding() && !self.fin_queued {
            // Nagle (RFC 896, RFC 9293 §3.7.4): one small segment in flight at a time.
            len = 0;
        }
        if len == 0 {
            if wnd_room < unsent.min(mss) && !self.outstanding() {
                self.arm_persist(now);
            }
            return None;
        }
        let fin = self.fin_queued && len == unsent;
        let s = self.snd_nxt;
        Some(self.data_segment(env, cap, s, len, fin, mss, false))
    }

    // ---------------------------------------------------------------------------------------
    // User calls.

    /// Queues as much of `data` as fits; returns how many bytes were taken.
    pub fn write(&mut self, mem: &mut Mem<'_>, data: &[u8]) -> usize {
        let n = self.sbuf.write(mem.tx, data);
        if n < data.len() {
            self.write_blocked = true;
        }
        n
    }

    /// Lends the next contiguous free region of the send buffer to `f`.
    pub fn write_with(&mut self, mem: &mut Mem<'_>, f: impl FnOnce(&mut [u8]) -> usize) -> usize {
        let n = self.sbuf.write_with(mem.tx, f);
        if self.sbuf.free(mem.tx.len()) == 0 {
            self.write_blocked = true;
        }
        n
    }

    /// Free bytes in the send buffer.
    pub fn send_space(&self, cap: usize) -> usize {
        self.sbuf.free(cap)
    }

    /// Marks that the application found the send buffer full.
    pub fn note_write_blocked(&mut self) {
        self.write_blocked = true;
    }

    /// Reads in-order bytes; then asks for a window update if the read opened the window
    /// a lot (Linux's `tcp_cleanup_rbuf` rule: the new window at least doubles).
    pub fn read(&mut self, mem: &mut Mem<'_>, out: &mut [u8]) -> usize {
        let n = self.rbuf.read(mem.rx, out);
        self.after_read(mem.rx.len(), n);
        n
    }

    /// Lends the contiguous in-order bytes to `f` (zero copy), frees what it consumed.
    pub fn read_with(&mut self, mem: &mut Mem<'_>, f: impl FnOnce(&[u8]) -> usize) -> usize {
        let n = self.rbuf.read_with(mem.rx, f);
        self.after_read(mem.rx.len(), n);
        n
    }

    fn after_read(&mut self, cap: usize, n: usize) {
        if n == 0 || !self.state.may_receive() {
            return;
        }
        let cur = self.rcv_wnd();
        let space = self.usable_space(cap);
        let threshold = ((cap / 2) as u32).min(u32::from(self.adv_mss));
        if space >= cur.saturating_mul(2) && space - cur >= threshold {
            self.wnd_update = true;
        }
    }

    /// Shuts down sending: the FIN goes after the queued data (RFC 9293 §3.10.4 CLOSE).
    pub fn shutdown(&mut self) {
        match self.state {
            // RFC 9293 §3.10.4: queued until ESTABLISHED is reached.
            TcpState::SynSent | TcpState::SynReceived => self.fin_queued = true,
            TcpState::Established => {
                self.fin_queued = true;
                self.state = TcpState::FinWait1;
            }
            TcpState::CloseWait => {
                self.fin_queued = true;
                self.state = TcpState::LastAck;
            }
            _ => {}
        }
    }

    /// Aborts (RFC 9293 §3.10.5): an RST in synchronized states, then CLOSED.
    pub fn abort(&mut self) {
        let rst = matches!(
            self.state,
            TcpState::SynReceived
                | TcpState::Established
                | TcpState::FinWait1
                | TcpState::FinWait2
                | TcpState::CloseWait
        );
        self.fail(Ready::empty());
        self.rst_pending = rst;
    }

    /// Sets the path MTU (ICMP fragmentation needed, RFC 1191 with RFC 5927's checks done by
    /// the caller); segments in flight that no longer fit are sent again.
    pub fn set_pmtu(&mut self, mtu: u16) -> bool {
        let mtu = mtu.max(576);
        if mtu >= self.pmtu {
            return false;
        }
        self.pmtu = mtu;
        self.set_mss();
        if self.state.is_synchronized() && self.outstanding() {
            // Linux's tcp_simple_retransmit: resend without a congestion response.
            self.mode = Mode::Loss;
            self.recovery_point = self.snd_max;
            self.high_rxt = self.snd_una;
        }
        true
    }

    /// Whether `seqno` lies in `[SND.UNA, SND.MAX)` (RFC 5927 §4.1 check for ICMP errors).
    pub fn in_flight(&self, seqno: u32) -> bool {
        seq::in_range(seqno, self.snd_una, self.snd_max)
    }

    /// Arms the FIN-WAIT-2 timeout of an orphan.
    pub fn set_fin_timeout(&mut self, at: Instant) {
        self.ka_at = Some(at);
    }

    /// Becomes the application's (accepted) or nobody's (closed).
    pub fn set_owner(&mut self, owner: Owner) {
        self.owner = owner;
    }

    /// A one-line summary for debugging.
    pub fn debug_line(&self) -> String {
        let b = self.iss.wrapping_add(1);
        let r = |x: u32| x.wrapping_sub(b);
        format!(
            "{} {:?} owner {:?} una {} nxt {} max {} data_end {} fin q{} s{} mode {:?} rp {} hr {} \
             cwnd {} pipe {} wnd {} rtx_at {:?} persist {} sacked {:?} rtx_head {} dupacks {}",
            self.state,
            self.key.remote(),
            self.owner,
            r(self.snd_una),
            r(self.snd_nxt),
            r(self.snd_max),
            r(self.data_end()),
            self.fin_queued,
            self.fin_sent,
            self.mode,
            r(self.recovery_point),
            r(self.high_rxt),
            self.cc.cwnd(),
            self.pipe(),
            self.snd_wnd,
            self.rtx_at,
            self.persist,
            self.sb.ranges().iter().map(|&(a, e)| (r(a), r(e))).collect::<Vec<_>>(),
            self.rtx_head,
            self.dupacks,
        )
    }

    /// Bytes `[off, off + len)` of the send buffer, as at most two slices.
    pub fn payload<'m>(&self, tx: &'m [u8], off: usize, len: usize) -> (&'m [u8], &'m [u8]) {
        self.sbuf.slices(tx, off, len)
    }

    /// What a TIME-WAIT entry keeps of this connection.
    pub fn time_wait_entry(&self, now: Instant) -> super::timewait::TwEntry {
        super::timewait::TwEntry {
            key: self.key,
            snd_nxt: self.snd_max,
            rcv_nxt: self.rbuf.nxt(),
            window: (seq::dist(self.rbuf.nxt(), self.rcv_adv) >> self.rcv_wscale).min(65535) as u16,
            ts_on: self.ts_ok,
            ts_recent: self.ts_recent,
            ts_offset: self.ts_offset,
            born: now,
            ..Default::default()
        }
    }

    /// The send buffer's first sequence number (tests).
    #[cfg(test)]
    pub fn buf_seq(&self) -> u32 {
        self.buf_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_scale_choice() {
        assert_eq!(wscale_for(65535), 0);
        assert_eq!(wscale_for(65536), 1);
        assert_eq!(wscale_for(256 * 1024), 3);
        assert_eq!(wscale_for(usize::MAX), MAX_WSCALE);
    }

    #[test]
    fn rate_limit_per_second() {
        let mut r = RateLimit::default();
        let t = Instant::from_secs(10);
        assert!(r.allow(t, 2) && r.allow(t, 2) && !r.allow(t, 2));
        assert!(r.allow(t + Duration::from_secs(1), 2));
    }

    #[test]
    fn conn_is_small() {
        // Per-connection memory besides the buffers (reported in the module docs of tcp).
        assert!(core::mem::size_of::<Conn>() <= 1024, "{}", core::mem::size_of::<Conn>());
    }
}
