//! # An iperf3 server
//!
//! What it is: the server side of iperf3's protocol (version 3.x, as Debian's iperf3 3.12
//! speaks it), so the stock `iperf3 -c` measures an xdpos server, forward (the client sends)
//! and `-R` reverse (the server sends), with one or more parallel TCP streams. One test at a
//! time per worker, as iperf3's own server.
//!
//! The protocol, as `iperf_api.c`/`iperf_server_api.c` run it over the **control connection**
//! (every state is one signed byte; JSON travels as a 4-byte big-endian length and the text):
//! 1. the client connects and sends a 37-byte cookie (36 characters and a NUL);
//! 2. server → `PARAM_EXCHANGE` (9); client → its parameters as JSON (`tcp`, `parallel`,
//!    `reverse`, `len`, `time`, …);
//! 3. server → `CREATE_STREAMS` (10); the client opens `parallel` **data connections to the
//!    same port**, each starting with the same cookie;
//! 4. once all are there, server → `TEST_START` (1) and `TEST_RUNNING` (2); data flows;
//! 5. client → `TEST_END` (4) when its timer or byte count says so; server →
//!    `EXCHANGE_RESULTS` (13); client → its results JSON; server → its results JSON
//!    (`cpu_util_*`, `sender_has_retransmits`, `streams: [{id, bytes, retransmits, jitter,
//!    errors, packets, start_time, end_time}]`) and `DISPLAY_RESULTS` (14);
//! 6. client → `IPERF_DONE` (16); both close everything.
//!
//! A connection whose cookie arrives while another test runs (or does not match the running
//! test's) gets `ACCESS_DENIED` (-1) and is closed; parameters this server cannot serve (UDP,
//! bidirectional mode) get `SERVER_ERROR` (-2) with an error number.
//!
//! Byte counts that match: the client's summary pairs its own count with the one in our
//! results, so we make ours complete before sending them. Forward: the client's results (sent
//! before ours) say how many bytes it sent on each stream; we send ours once every stream has
//! delivered that many (bounded by [`DRAIN_LIMIT`]): sender and receiver counts are equal.
//! Reverse: at `TEST_END` we stop writing and shut the data streams down, as iperf3's server
//! ends them (it closes them): the client reads whole blocks of its `len` with blocking reads,
//! after `TEST_END` too, and a stream that just stops inside a block leaves it waiting
//! forever (we found that the hard way). We send `EXCHANGE_RESULTS` once everything we sent,
//! FIN included, is acknowledged (bounded), so our count is what reached the client's
//! kernel; the client's own count is what it read by the time it sent its results, which can
//! be a little less (Linux's own iperf3 server shows the same gap in reverse mode).
//!
//! Stream ids follow iperf3's `iperf_add_stream` (1, 3, 4, 5, …: the second stream is 3), so
//! the client finds each of our streams under its own id.
//!
//! What it owns: the test in progress (the control handle, the parameters, the streams with
//! their byte counts, the control input), the record of the last completed test, and the list
//! of connections to close, which [`super::Services`] drains.
//!
//! What it never does: allocate on the data path (data streams are drained and filled like
//! [`super::sink`] and [`super::source`]; control messages, a handful per test, use a `Vec`
//! and `serde_json`), or run two tests at once.
//!
//! References: iperf3 3.12 `src/iperf_api.c` (`iperf_exchange_parameters`, `get_parameters`,
//! `send_results`, `get_results`, `iperf_add_stream`), `src/iperf_server_api.c`,
//! `src/iperf_tcp.c` (the cookie on data connections), `src/iperf.h` (state numbers).

use std::time::Duration;

use libos::tcp::{Ready, TcpError, TcpHandle};
use libos::{Instant, Stack};
use serde_json::{json, Value};

use super::{pattern_at, sink, Entry, State, SCRATCH};

/// Length of iperf3's cookie (36 characters and a NUL).
pub const COOKIE_LEN: usize = 37;

/// iperf3's state bytes (`iperf.h`).
pub mod msg {
    /// The test starts.
    pub const TEST_START: i8 = 1;
    /// Data flows.
    pub const TEST_RUNNING: i8 = 2;
    /// The client's test time or byte count is over.
    pub const TEST_END: i8 = 4;
    /// Parameters follow.
    pub const PARAM_EXCHANGE: i8 = 9;
    /// Open the data connections.
    pub const CREATE_STREAMS: i8 = 10;
    /// The client gives up.
    pub const CLIENT_TERMINATE: i8 = 12;
    /// Results follow.
    pub const EXCHANGE_RESULTS: i8 = 13;
    /// The client prints the results.
    pub const DISPLAY_RESULTS: i8 = 14;
    /// The client is done.
    pub const IPERF_DONE: i8 = 16;
    /// A test is already running.
    pub const ACCESS_DENIED: i8 = -1;
    /// The server cannot run the test (followed by two `i32`: iperf errno and errno).
    pub const SERVER_ERROR: i8 = -2;
}

/// iperf3's error number we answer unsupported parameters with (`IEUNIMP`, "not implemented").
const IE_UNIMPLEMENTED: i32 = 119;
/// Longest wait for the last bytes before results are exchanged.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(3);
/// Longest control message (JSON) accepted.
const MAX_JSON: usize = 64 * 1024;
/// Most parallel streams served.
pub const MAX_STREAMS: usize = 128;

/// Which part an iperf3 connection plays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Part {
    /// Its cookie is still arriving.
    #[default]
    Unknown,
    /// The test's control connection.
    Control,
    /// Data stream `k` of the test.
    Data(usize),
    /// Refused; waiting to be closed.
    Refused,
}

/// Per-connection state of the iperf3 port.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Conn {
    part: Part,
    cookie: [u8; COOKIE_LEN],
    have: usize,
}

impl Default for Conn {
    fn default() -> Conn {
        Conn { part: Part::Unknown, cookie: [0; COOKIE_LEN], have: 0 }
    }
}

/// Where a test is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Waiting for the client's parameters.
    Params,
    /// Waiting for the data connections.
    Streams,
    /// Data flows.
    Running,
    /// Reverse, after `TEST_END`: waiting until what we sent is acknowledged.
    DrainSend { since: Instant },
    /// Waiting for the client's results.
    ClientResults,
    /// Forward: waiting until every stream delivered what the client says it sent.
    DrainRecv { since: Instant },
    /// Results sent; waiting for `IPERF_DONE`.
    Display,
}

/// One data stream.
#[derive(Debug, Clone, Copy)]
struct Stream {
    h: TcpHandle,
    id: i32,
    bytes_in: u64,
    bytes_out: u64,
    /// What the client reported for this stream.
    client_bytes: Option<u64>,
    open: bool,
}

/// The parameters this server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Params {
    parallel: usize,
    reverse: bool,
}

#[derive(Debug)]
struct Test {
    ctrl: TcpHandle,
    cookie: [u8; COOKIE_LEN],
    phase: Phase,
    params: Params,
    streams: Vec<Stream>,
    input: Vec<u8>,
    start: Instant,
    end: Option<Instant>,
}

/// Totals handed to [`super::Services`] (and reset) by [`Server::take_totals`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Totals {
    pub(crate) tests: u64,
    pub(crate) refused: u64,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
}

/// What the server counted in a completed test.
#[derive(Debug, Clone, PartialEq)]
pub struct TestRecord {
    /// The server sent (`-R`).
    pub reverse: bool,
    /// Per stream: iperf3 id, bytes the server received, bytes it sent, bytes the client
    /// reported (sent in forward mode, received in reverse mode).
    pub streams: Vec<(i32, u64, u64, Option<u64>)>,
    /// From `TEST_RUNNING` to `TEST_END`.
    pub seconds: f64,
}

/// The iperf3 server of one worker (see the module documentation).
#[derive(Debug, Default)]
pub struct Server {
    test: Option<Test>,
    close: Vec<(TcpHandle, bool)>,
    totals: Totals,
    last: Option<TestRecord>,
    completed: u64,
}

/// iperf3's stream id of the `k`-th stream (`iperf_add_stream`: 1, then 3, 4, …).
pub fn stream_id(k: usize) -> i32 {
    if k == 0 {
        1
    } else {
        k as i32 + 2
    }
}

impl Server {
    /// The last completed test, if any.
    pub fn last(&self) -> Option<&TestRecord> {
        self.last.as_ref()
    }

    /// Tests completed so far.
    pub fn completed(&self) -> u64 {
        self.completed
    }

    /// Whether a test is in progress (its timed phases need polling).
    pub(crate) fn busy(&self) -> bool {
        self.test.is_some()
    }

    pub(crate) fn take_totals(&mut self) -> Totals {
        std::mem::take(&mut self.totals)
    }

    pub(crate) fn pop_close(&mut self) -> Option<(TcpHandle, bool)> {
        self.close.pop()
    }

    /// A connection of the iperf3 port had `ready`. The verdict is always `Keep`: connections
    /// to end go to the close list.
    pub(crate) fn on_event(
        &mut self,
        now: Instant,
        stack: &mut Stack,
        conns: &mut [Option<Entry>],
        h: TcpHandle,
        ready: Ready,
    ) -> super::Next {
        let Some(Some(Entry { state: State::Iperf(c), .. })) = conns.get_mut(h.index()) else {
            return super::Next::Keep;
        };
        match c.part {
            Part::Unknown => self.on_cookie(now, stack, c, h, ready),
            Part::Control => self.on_control(now, stack, ready),
            Part::Data(k) => self.on_data(stack, k, ready),
            Part::Refused => {}
        }
        super::Next::Keep
    }

    /// Reads the cookie of a new connection and decides what it is.
    fn on_cookie(
        &mut self,
        now: Instant,
        stack: &mut Stack,
        c: &mut Conn,
        h: TcpHandle,
        ready: Ready,
    ) {
        let tcp = stack.tcp_mut();
        loop {
            match tcp.read(h, &mut c.cookie[c.have..]) {
                Ok(0) => return self.close.push((h, true)),
                Ok(n) => {
                    c.have += n;
                    if c.have == COOKIE_LEN {
                        break;
                    }
                }
                Err(TcpError::WouldBlock) => {
                    if ready.intersects(Ready::RESET | Ready::TIMED_OUT) {
                        self.close.push((h, true));
                    }
                    return;
                }
                Err(_) => return self.close.push((h, true)),
            }
        }
        match &mut self.test {
            None => {
                c.part = Part::Control;
                self.test = Some(Test {
                    ctrl: h,
                    cookie: c.cookie,
                    phase: Phase::Params,
                    params: Params { parallel: 1, reverse: false },
                    streams: Vec::new(),
                    input: Vec::new(),
                    start: now,
                    end: None,
                });
                if send(stack, h, &[msg::PARAM_EXCHANGE as u8]).is_err() {
                    self.abandon();
                    return;
                }
                // The parameters may have come with the cookie.
                self.on_control(now, stack, Ready::READABLE);
            }
            Some(t) if t.phase == Phase::Streams && t.cookie == c.cookie => {
                let k = t.streams.len();
                c.part = Part::Data(k);
                t.streams.push(Stream {
                    h,
                    id: stream_id(k),
                    bytes_in: 0,
                    bytes_out: 0,
                    client_bytes: None,
                    open: true,
                });
                if t.streams.len() == t.params.parallel {
                    let ctrl = t.ctrl;
                    t.phase = Phase::Running;
                    t.start = now;
                    let start = [msg::TEST_START as u8, msg::TEST_RUNNING as u8];
                    if send(stack, ctrl, &start).is_err() {
                        return self.abandon();
                    }
                    if t.params.reverse {
                        for k in 0..t.streams.len() {
                            self.on_data(stack, k, Ready::WRITABLE);
                        }
                    }
                } else {
                    // Data that followed the cookie.
                    self.on_data(stack, k, Ready::READABLE);
                }
            }
            Some(_) => {
                c.part = Part::Refused;
                self.totals.refused += 1;
                let _ = send(stack, h, &[msg::ACCESS_DENIED as u8]);
                self.close.push((h, false));
            }
        }
    }

    /// Control input: parameters, `TEST_END`, results, `IPERF_DONE`.
    fn on_control(&mut self, now: Instant, stack: &mut Stack, ready: Ready) {
        let Some(t) = &mut self.test else { return };
        let ctrl = t.ctrl;
        let mut eof = false;
        let mut buf = [0u8; 512];
        loop {
            match stack.tcp_mut().read(ctrl, &mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    t.input.extend_from_slice(&buf[..n]);
                    if t.input.len() > MAX_JSON + 4 {
                        return self.abandon();
                    }
                }
                Err(TcpError::WouldBlock) => break,
                Err(_) => return self.abandon(),
            }
        }
        if self.process_control(now, stack).is_err() {
            return self.abandon();
        }
        let failed = ready.intersects(Ready::RESET | Ready::TIMED_OUT);
        if (eof || failed) && self.test.is_some() {
            // The client went away before IPERF_DONE.
            self.abandon();
        }
    }

    /// Consumes complete control messages from the input.
    fn process_control(&mut self, now: Instant, stack: &mut Stack) -> Result<(), ()> {
        loop {
            let Some(t) = &mut self.test else { return Ok(()) };
            match t.phase {
                Phase::Params | Phase::ClientResults => {
                    let Some(json) = take_json(&mut t.input)? else { return Ok(()) };
                    if t.phase == Phase::Params {
                        match parse_params(&json) {
                            Ok(p) => {
                                t.params = p;
                                t.phase = Phase::Streams;
                                send(stack, t.ctrl, &[msg::CREATE_STREAMS as u8])?;
                            }
                            Err(()) => {
                                let mut m = vec![msg::SERVER_ERROR as u8];
                                m.extend_from_slice(&IE_UNIMPLEMENTED.to_be_bytes());
                                m.extend_from_slice(&0i32.to_be_bytes());
                                let _ = send(stack, t.ctrl, &m);
                                self.totals.refused += 1;
                                return Err(());
                            }
                        }
                    } else {
                        client_results(t, &json);
                        t.phase = Phase::DrainRecv { since: now };
                        self.on_poll_test(now, stack)?;
                    }
                }
                _ => {
                    if t.input.is_empty() {
                        return Ok(());
                    }
                    let m = t.input.remove(0) as i8;
                    match (m, t.phase) {
                        (msg::TEST_END, Phase::Running) => {
                            t.end = Some(now);
                            if t.params.reverse {
                                // As iperf3's server, end the data streams: the client
                                // reads whole blocks with blocking reads and needs the end
                                // of the stream to stop (we shut down; it closes them).
                                t.phase = Phase::DrainSend { since: now };
                                for s in t.streams.iter().filter(|s| s.open) {
                                    let _ = stack.tcp_mut().shutdown(s.h);
                                }
                                self.on_poll_test(now, stack)?;
                            } else {
                                t.phase = Phase::ClientResults;
                                send(stack, t.ctrl, &[msg::EXCHANGE_RESULTS as u8])?;
                            }
                        }
                        (msg::IPERF_DONE, Phase::Display) => {
                            self.finish();
                            return Ok(());
                        }
                        (msg::CLIENT_TERMINATE, _) => return Err(()),
                        // Anything else out of turn is a protocol error.
                        _ => return Err(()),
                    }
                }
            }
        }
    }

    /// A data stream had `ready`: forward, drain it; reverse, fill it while the test runs.
    fn on_data(&mut self, stack: &mut Stack, k: usize, ready: Ready) {
        let Some(t) = &mut self.test else { return };
        let Some(s) = t.streams.get_mut(k) else { return };
        if !s.open {
            return;
        }
        let tcp = stack.tcp_mut();
        let before = s.bytes_in;
        let eof = sink::drain(tcp, s.h, &mut s.bytes_in).unwrap_or(true);
        self.totals.bytes_in += s.bytes_in - before;
        if t.params.reverse && t.phase == Phase::Running && !eof {
            let out0 = s.bytes_out;
            while let Ok(w) = tcp.write(s.h, pattern_at(s.bytes_out, SCRATCH)) {
                s.bytes_out += w as u64;
                if w < SCRATCH {
                    break;
                }
            }
            self.totals.bytes_out += s.bytes_out - out0;
        }
        if eof || ready.intersects(Ready::RESET | Ready::TIMED_OUT) {
            s.open = false;
            self.close.push((s.h, !eof));
        }
    }

    /// The timed phases (drains), called every worker iteration while a test runs.
    pub(crate) fn on_poll(
        &mut self,
        now: Instant,
        stack: &mut Stack,
        _conns: &mut [Option<Entry>],
    ) {
        if self.on_poll_test(now, stack).is_err() {
            self.abandon();
        }
    }

    fn on_poll_test(&mut self, now: Instant, stack: &mut Stack) -> Result<(), ()> {
        let Some(t) = &mut self.test else { return Ok(()) };
        match t.phase {
            Phase::DrainSend { since } => {
                let acked =
                    t.streams.iter().filter(|s| s.open).all(|s| {
                        stack.tcp().info(s.h).is_ok_and(|i| i.unacked == 0 && i.unsent == 0)
                    });
                if acked || now - since >= DRAIN_LIMIT {
                    t.phase = Phase::ClientResults;
                    send(stack, t.ctrl, &[msg::EXCHANGE_RESULTS as u8])?;
                }
            }
            Phase::DrainRecv { since } => {
                let complete = t
                    .streams
                    .iter()
                    .all(|s| !s.open || s.client_bytes.is_none_or(|c| s.bytes_in >= c));
                if t.params.reverse || complete || now - since >= DRAIN_LIMIT {
                    let results = server_results(t, stack);
                    send_json(stack, t.ctrl, &results)?;
                    send(stack, t.ctrl, &[msg::DISPLAY_RESULTS as u8])?;
                    t.phase = Phase::Display;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The test completed: record it, close everything.
    fn finish(&mut self) {
        let Some(t) = self.test.take() else { return };
        let end = t.end.unwrap_or(t.start);
        self.last = Some(TestRecord {
            reverse: t.params.reverse,
            streams: t
                .streams
                .iter()
                .map(|s| (s.id, s.bytes_in, s.bytes_out, s.client_bytes))
                .collect(),
            seconds: (end - t.start).as_secs_f64(),
        });
        self.completed += 1;
        self.totals.tests += 1;
        self.close.push((t.ctrl, false));
        for s in t.streams.iter().filter(|s| s.open) {
            self.close.push((s.h, false));
        }
    }

    /// The test failed: close everything.
    fn abandon(&mut self) {
        let Some(t) = self.test.take() else { return };
        self.close.push((t.ctrl, true));
        for s in t.streams.iter().filter(|s| s.open) {
            self.close.push((s.h, true));
        }
    }
}

/// Writes a control message; it is tiny, so a send buffer that cannot take it is a failure.
fn send(stack: &mut Stack, h: TcpHandle, bytes: &[u8]) -> Result<(), ()> {
    match stack.tcp_mut().write(h, bytes) {
        Ok(n) if n == bytes.len() => Ok(()),
        _ => Err(()),
    }
}

/// Writes `v` as iperf3 JSON: a 4-byte big-endian length and the text.
fn send_json(stack: &mut Stack, h: TcpHandle, v: &Value) -> Result<(), ()> {
    let text = v.to_string();
    let mut m = Vec::with_capacity(4 + text.len());
    m.extend_from_slice(&(text.len() as u32).to_be_bytes());
    m.extend_from_slice(text.as_bytes());
    send(stack, h, &m)
}

/// Takes one length-prefixed JSON message from the front of `input`, if complete.
fn take_json(input: &mut Vec<u8>) -> Result<Option<Value>, ()> {
    if input.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([input[0], input[1], input[2], input[3]]) as usize;
    if len > MAX_JSON {
        return Err(());
    }
    if input.len() < 4 + len {
        return Ok(None);
    }
    let v = serde_json::from_slice(&input[4..4 + len]).map_err(drop)?;
    input.drain(..4 + len);
    Ok(Some(v))
}

/// The client's parameters, if this server can run them (TCP, not bidirectional).
fn parse_params(v: &Value) -> Result<Params, ()> {
    let flag = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
    if flag("udp") || flag("sctp") || flag("bidirectional") {
        return Err(());
    }
    let parallel = v.get("parallel").and_then(Value::as_u64).unwrap_or(1) as usize;
    if !(1..=MAX_STREAMS).contains(&parallel) {
        return Err(());
    }
    Ok(Params { parallel, reverse: flag("reverse") })
}

/// Records the bytes the client reports per stream (its `bytes`: sent in forward mode,
/// received in reverse mode).
fn client_results(t: &mut Test, v: &Value) {
    let Some(streams) = v.get("streams").and_then(Value::as_array) else { return };
    for cs in streams {
        let id = cs.get("id").and_then(Value::as_i64);
        let bytes = cs.get("bytes").and_then(Value::as_u64);
        if let (Some(id), Some(bytes)) = (id, bytes) {
            if let Some(s) = t.streams.iter_mut().find(|s| i64::from(s.id) == id) {
                s.client_bytes = Some(bytes);
            }
        }
    }
}

/// Our results JSON (`send_results` in `iperf_api.c`).
fn server_results(t: &Test, stack: &Stack) -> Value {
    let end = t.end.unwrap_or(t.start);
    let secs = (end - t.start).as_secs_f64();
    let streams: Vec<Value> = t
        .streams
        .iter()
        .map(|s| {
            let (bytes, retransmits) = if t.params.reverse {
                let r = stack.tcp().info(s.h).map(|i| i.stats.retransmits as i64).unwrap_or(0);
                (s.bytes_out, r)
            } else {
                (s.bytes_in, -1)
            };
            json!({
                "id": s.id, "bytes": bytes, "retransmits": retransmits, "jitter": 0,
                "errors": 0, "omitted_errors": 0, "packets": 0, "omitted_packets": 0,
                "start_time": 0, "end_time": secs,
            })
        })
        .collect();
    json!({
        "cpu_util_total": 0, "cpu_util_user": 0, "cpu_util_system": 0,
        "sender_has_retransmits": i32::from(t.params.reverse),
        "congestion_used": "cubic",
        "streams": streams,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_follow_iperf_add_stream() {
        assert_eq!((0..4).map(stream_id).collect::<Vec<_>>(), vec![1, 3, 4, 5]);
    }

    #[test]
    fn parameters_of_the_stock_client_are_understood_and_udp_is_refused() {
        let fwd = json!({"tcp":true,"omit":0,"time":2,"num":0,"blockcount":0,"parallel":2,
                          "len":131072,"pacing_timer":1000,"client_version":"3.12"});
        assert_eq!(parse_params(&fwd), Ok(Params { parallel: 2, reverse: false }));
        let rev = json!({"tcp":true,"parallel":1,"reverse":true,"len":1000});
        assert_eq!(parse_params(&rev), Ok(Params { parallel: 1, reverse: true }));
        assert!(parse_params(&json!({"udp":true,"parallel":1})).is_err());
        assert!(parse_params(&json!({"tcp":true,"bidirectional":true})).is_err());
        assert!(parse_params(&json!({"tcp":true,"parallel":0})).is_err());
    }

    #[test]
    fn json_messages_are_taken_whole_and_only_when_complete() {
        let text = br#"{"a":1}"#;
        let mut input = (text.len() as u32).to_be_bytes().to_vec();
        input.extend_from_slice(&text[..3]);
        assert_eq!(take_json(&mut input), Ok(None));
        input.extend_from_slice(&text[3..]);
        input.push(16);
        assert_eq!(take_json(&mut input), Ok(Some(json!({"a":1}))));
        assert_eq!(input, vec![16]);
        let mut huge = (MAX_JSON as u32 + 1).to_be_bytes().to_vec();
        assert!(take_json(&mut huge).is_err());
    }
}
