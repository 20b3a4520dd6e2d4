//! # HTTP/1.1 responder: a static body, keep-alive and pipelining
//!
//! What it is: the handler of connections to an `http` listener. It answers `GET` and `HEAD`
//! of one path (default `/`, query ignored; origin-form and absolute-form targets) with a
//! static body, every other path with `404`, every other method with `405` (and `Allow: GET,
//! HEAD`), and whatever it cannot parse with `400`. Every response carries `Content-Length`
//! (the body is never chunked, never delimited by a close) and a `Date`.
//!
//! The parser is a byte-at-a-time state machine ([`Parser`]) fed straight from the stack's
//! receive buffer ([`Tcp::read_with`], zero copy): nothing of a request is buffered, so a
//! request split anywhere (across segments, across the receive ring's wrap) parses the same
//! as a whole one, and the only per-connection memory is the parser's few words. It takes from
//! each header only what the answer depends on: the method, whether the path matches, the
//! version, `Connection` tokens, `Content-Length`, `Transfer-Encoding` and `Host`.
//!
//! Connection management (RFC 9112 §9): an HTTP/1.1 connection persists unless a request says
//! `Connection: close`; an HTTP/1.0 one only when it says `Connection: keep-alive`, which the
//! response then repeats. A response that ends the connection says `Connection: close`; once
//! it is queued, unread input is discarded and the connection closed gracefully (FIN after the
//! response). A request body (`Content-Length`) is read and discarded so the next pipelined
//! request parses (unless the request said `Expect: 100-continue`: the answer comes at once,
//! without a `100`, so the client may never send the body, and the connection is closed); `Transfer-Encoding` (chunked bodies) is not implemented: `501` and close
//! (both `Content-Length` and `Transfer-Encoding`, or either on an HTTP/1.0 request: `400`, as
//! RFC 9112 §6.1 asks). HTTP/1.1 without exactly one `Host` is `400` (§3.2); a major version
//! other than 1 is `505`.
//!
//! Pipelining: requests are answered strictly in order, and the next one is parsed only once
//! the previous response is wholly queued in the send buffer; a response that does not fit is
//! written as space frees (a write cut short arms the stack's `WRITABLE` event). So per
//! connection at most one response is in progress and the send buffer's worth queued; unread
//! requests wait in the receive buffer, and a client that pipelines without reading sees a
//! closed window: bounded, never a queue that grows.
//!
//! Limits: the request line and headers together at most [`HttpConfig::max_header_bytes`]
//! (`414` while still in the target, `431` after), at most [`HttpConfig::max_headers`] header
//! lines (`431`).
//!
//! What it owns: per connection, the parser state and the response being written (status,
//! body offset); per worker ([`Server`]), the responses' fixed parts built once at start, the
//! current `Date` line (rewritten once a second from [`Server::tick`]) and the counters.
//!
//! What it never does: allocate, copy a request, or block. The fast path is one pass over the
//! request bytes in the receive buffer and three to four copies into the send buffer (status
//! line, `Date`, the rest of the header, the body).
//!
//! References: RFC 9110 (semantics: methods, status codes, `Date`), RFC 9112 (message syntax,
//! `Content-Length`, `Transfer-Encoding`, connection management, request target forms).

use libos::tcp::{Ready, Tcp, TcpError, TcpHandle};
use libos::Instant;

use super::Next;

/// What the HTTP responder serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// The body of a `200` answer to `GET` on [`path`](Self::path).
    pub body: Vec<u8>,
    /// Its `Content-Type`.
    pub content_type: String,
    /// The one path served (origin-form, starts with `/`).
    pub path: String,
    /// Longest request line plus header section, bytes.
    pub max_header_bytes: usize,
    /// Most header lines per request.
    pub max_headers: usize,
    /// A connection with no event for this long is closed (an idle keep-alive connection, a
    /// request that trickles in, a client that stopped reading its response).
    pub idle_timeout: std::time::Duration,
}

/// The default body.
pub const DEFAULT_BODY: &[u8] = b"hello from xdpos\n";

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            body: DEFAULT_BODY.to_vec(),
            content_type: "text/plain; charset=utf-8".into(),
            path: "/".into(),
            max_header_bytes: 8192,
            max_headers: 100,
            idle_timeout: std::time::Duration::from_secs(60),
        }
    }
}

impl HttpConfig {
    /// What a validated `[[services]]` entry of kind `http` serves (`body`, `body_size`, `path`;
    /// the defaults for what it leaves out).
    pub fn from_service(s: &xdpos_config::validate::ServiceCfg) -> HttpConfig {
        let base = match (&s.body, s.body_size) {
            (_, Some(n)) => HttpConfig::pattern_body(n),
            (Some(text), None) => {
                HttpConfig { body: text.clone().into_bytes(), ..HttpConfig::default() }
            }
            (None, None) => HttpConfig::default(),
        };
        match &s.path {
            Some(p) => HttpConfig { path: p.clone(), ..base },
            None => base,
        }
    }

    /// A body of `size` bytes of the services' test pattern (`application/octet-stream`).
    pub fn pattern_body(size: usize) -> HttpConfig {
        HttpConfig {
            body: (0..size).map(super::pattern_byte).collect(),
            content_type: "application/octet-stream".into(),
            ..HttpConfig::default()
        }
    }
}

/// The statuses the responder sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 200 OK.
    Ok,
    /// 400 Bad Request.
    BadRequest,
    /// 404 Not Found.
    NotFound,
    /// 405 Method Not Allowed.
    MethodNotAllowed,
    /// 414 URI Too Long.
    UriTooLong,
    /// 431 Request Header Fields Too Large.
    HeadersTooLarge,
    /// 501 Not Implemented.
    NotImplemented,
    /// 505 HTTP Version Not Supported.
    VersionNotSupported,
}

const STATUSES: [Status; 8] = [
    Status::Ok,
    Status::BadRequest,
    Status::NotFound,
    Status::MethodNotAllowed,
    Status::UriTooLong,
    Status::HeadersTooLarge,
    Status::NotImplemented,
    Status::VersionNotSupported,
];

impl Status {
    /// The numeric code.
    pub fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::BadRequest => 400,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::UriTooLong => 414,
            Status::HeadersTooLarge => 431,
            Status::NotImplemented => 501,
            Status::VersionNotSupported => 505,
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::BadRequest => "Bad Request",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::UriTooLong => "URI Too Long",
            Status::HeadersTooLarge => "Request Header Fields Too Large",
            Status::NotImplemented => "Not Implemented",
            Status::VersionNotSupported => "HTTP Version Not Supported",
        }
    }

    fn index(self) -> usize {
        STATUSES.iter().position(|&s| s == self).unwrap_or(0)
    }
}

/// How the response speaks about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Persist {
    /// HTTP/1.1 persistence: no `Connection` field.
    Default,
    /// An HTTP/1.0 keep-alive: `Connection: keep-alive`.
    KeepAlive,
    /// The last response: `Connection: close`.
    Close,
}

impl Persist {
    fn index(self) -> usize {
        self as usize
    }
}

/// Counters of HTTP connections (single writer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpStats {
    /// Requests answered (any status).
    pub requests: u64,
    /// Answered with 200.
    pub ok: u64,
    /// Answered with 404.
    pub not_found: u64,
    /// Answered with 405.
    pub method_not_allowed: u64,
    /// Answered with 400, 414, 431, 501 or 505 (the connection is then closed).
    pub bad_requests: u64,
    /// Connections closed for idling past the timeout.
    pub idle_closed: u64,
}

impl HttpStats {
    /// Adds `o` (summing listeners).
    pub fn add(&mut self, o: &HttpStats) {
        self.requests += o.requests;
        self.ok += o.ok;
        self.not_found += o.not_found;
        self.method_not_allowed += o.method_not_allowed;
        self.bad_requests += o.bad_requests;
        self.idle_closed += o.idle_closed;
    }
}

/// The request method, as far as the answer cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    /// `GET`.
    #[default]
    Get,
    /// `HEAD`: the `GET` header, no body.
    Head,
    /// Any other token.
    Other,
}

/// A parsed request: what the answer depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Request {
    /// Method.
    pub method: Method,
    /// The target's path is the served path.
    pub path_matches: bool,
    /// HTTP/1.1 (or a later 1.x); else HTTP/1.0.
    pub http11: bool,
    /// A `Connection: close` token.
    pub close: bool,
    /// A `Connection: keep-alive` token.
    pub keep_alive: bool,
    /// The `Content-Length` value, if the field was present.
    pub content_length: Option<u64>,
    /// A `Transfer-Encoding` field was present.
    pub transfer_encoding: bool,
    /// `Host` fields seen.
    pub hosts: u32,
    /// An `Expect: 100-continue` token: the client may hold the body back until told to send it.
    pub expect_continue: bool,
}

/// Parser states (see [`Parser::feed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    /// Before the request line: empty lines are skipped (RFC 9112 §2.2).
    Start,
    /// A CR before the request line; LF must follow.
    StartLf,
    Method,
    /// The first byte of the target.
    TargetStart,
    /// In an absolute-form target's scheme and authority (counting `/`s).
    Authority,
    /// In the target's path.
    Path,
    /// After the path (query), to the space.
    Query,
    /// `HTTP/x.y`, position in [`Parser::pos`].
    Version,
    /// After CR at the end of a line; LF must follow.
    LineLf,
    /// At the start of a header line (or the empty line).
    LineStart,
    /// A CR at the start of a line: LF ends the header section.
    EndLf,
    Name,
    /// Whitespace before the field value.
    ValueWs,
    Value,
}

/// Known header fields.
const CONNECTION: u8 = 1;
const CONTENT_LENGTH: u8 = 2;
const TRANSFER_ENCODING: u8 = 4;
const HOST: u8 = 8;
const EXPECT: u8 = 16;
const FIELDS: [(u8, &[u8]); 5] = [
    (CONNECTION, b"connection"),
    (CONTENT_LENGTH, b"content-length"),
    (TRANSFER_ENCODING, b"transfer-encoding"),
    (HOST, b"host"),
    (EXPECT, b"expect"),
];
/// `Connection` tokens.
const TOK_CLOSE: u8 = 1;
const TOK_KEEP_ALIVE: u8 = 2;
/// The `Expect` token.
const TOK_CONTINUE: u8 = 4;
const TOKENS: [(u8, &[u8]); 3] =
    [(TOK_CLOSE, b"close"), (TOK_KEEP_ALIVE, b"keep-alive"), (TOK_CONTINUE, b"100-continue")];

/// What feeding bytes produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// The bytes were consumed; the request is not complete yet.
    More,
    /// A request ended with the last byte consumed.
    Done(Request),
    /// The request is malformed or over a limit: answer this status and close.
    Error(Status),
}

/// The streaming request parser (see the module documentation): a few words of state, fed any
/// number of bytes at a time.
#[derive(Debug, Clone, Copy)]
pub struct Parser {
    st: St,
    req: Request,
    /// Bytes of this request so far (request line and headers).
    len: usize,
    /// Header lines so far.
    lines: usize,
    /// Position in the current token, name, version or path.
    pos: usize,
    /// Candidates still matching: methods (bit 0 GET, bit 1 HEAD), field names, tokens.
    cand: u8,
    /// `/`s seen in an absolute-form target.
    slashes: u8,
    /// The field whose value is being read (0: none of interest).
    field: u8,
    /// Content-Length digits seen; whitespace followed them.
    digits: bool,
    trailing_ws: bool,
    /// The major version digit.
    major: u8,
}

impl Default for Parser {
    fn default() -> Parser {
        Parser {
            st: St::Start,
            req: Request::default(),
            len: 0,
            lines: 0,
            pos: 0,
            cand: 0,
            slashes: 0,
            field: 0,
            digits: false,
            trailing_ws: false,
            major: 0,
        }
    }
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The limits and the served path, what the parser checks against.
#[derive(Debug, Clone, Copy)]
pub struct Limits<'a> {
    /// The served path.
    pub path: &'a [u8],
    /// See [`HttpConfig::max_header_bytes`].
    pub max_header_bytes: usize,
    /// See [`HttpConfig::max_headers`].
    pub max_headers: usize,
}

impl Parser {
    /// Whether a request has begun (bytes other than leading empty lines were consumed).
    pub fn started(&self) -> bool {
        !matches!(self.st, St::Start | St::StartLf)
    }

    /// Consumes bytes of `data` up to the end of one request (or an error); returns how many
    /// were consumed and the outcome. After `Done` or `Error` the parser is ready for the next
    /// request.
    pub fn feed(&mut self, data: &[u8], lim: &Limits<'_>) -> (usize, Parsed) {
        for (i, &b) in data.iter().enumerate() {
            match self.byte(b, lim) {
                Parsed::More => {}
                done => {
                    *self = Parser::default();
                    return (i + 1, done);
                }
            }
        }
        (data.len(), Parsed::More)
    }

    fn byte(&mut self, b: u8, lim: &Limits<'_>) -> Parsed {
        use Parsed::{Error, More};
        if self.started() {
            self.len += 1;
            if self.len > lim.max_header_bytes {
                return Error(match self.st {
                    St::TargetStart | St::Authority | St::Path | St::Query => Status::UriTooLong,
                    _ => Status::HeadersTooLarge,
                });
            }
        }
        match self.st {
            St::Start => match b {
                b'\r' => self.st = St::StartLf,
                b'\n' => {}
                _ if is_tchar(b) => {
                    self.st = St::Method;
                    self.len = 1;
                    self.cand = 0b11;
                    self.pos = 0;
                    return self.method_byte(b);
                }
                _ => return Error(Status::BadRequest),
            },
            St::StartLf => match b {
                b'\n' => self.st = St::Start,
                _ => return Error(Status::BadRequest),
            },
            St::Method => match b {
                b' ' => {
                    self.req.method = match (self.cand, self.pos) {
                        (c, 3) if c & 1 != 0 => Method::Get,
                        (c, 4) if c & 2 != 0 => Method::Head,
                        _ => Method::Other,
                    };
                    self.st = St::TargetStart;
                }
                _ if is_tchar(b) => return self.method_byte(b),
                _ => return Error(Status::BadRequest),
            },
            St::TargetStart => {
                if !(0x21..=0x7e).contains(&b) {
                    return Error(Status::BadRequest);
                }
                self.req.path_matches = true;
                self.pos = 0;
                if b == b'/' {
                    self.st = St::Path;
                    self.path_byte(b, lim);
                } else {
                    // absolute-form (`http://host/path`): the path starts at the third `/`;
                    // asterisk-form (`*`) never matches.
                    self.st = St::Authority;
                    self.slashes = 0;
                }
            }
            St::Authority => match b {
                b' ' => {
                    // `http://host` with no path is the path `/`.
                    self.req.path_matches = self.slashes == 2 && lim.path == b"/";
                    self.st = St::Version;
                    self.pos = 0;
                }
                b'/' => {
                    self.slashes += 1;
                    if self.slashes == 3 {
                        self.st = St::Path;
                        self.path_byte(b, lim);
                    }
                }
                b'?' if self.slashes == 2 => {
                    self.req.path_matches = lim.path == b"/";
                    self.st = St::Query;
                }
                0x21..=0x7e => {}
                _ => return Error(Status::BadRequest),
            },
            St::Path => match b {
                b' ' | b'?' => {
                    self.req.path_matches &= self.pos == lim.path.len();
                    self.st = if b == b' ' { St::Version } else { St::Query };
                    self.pos = 0;
                }
                0x21..=0x7e => self.path_byte(b, lim),
                _ => return Error(Status::BadRequest),
            },
            St::Query => match b {
                b' ' => {
                    self.st = St::Version;
                    self.pos = 0;
                }
                0x21..=0x7e => {}
                _ => return Error(Status::BadRequest),
            },
            St::Version => {
                const LIT: &[u8] = b"HTTP/";
                let ok = match self.pos {
                    p if p < LIT.len() => b == LIT[p],
                    5 => {
                        self.major = b.wrapping_sub(b'0');
                        b.is_ascii_digit()
                    }
                    6 => b == b'.',
                    7 => {
                        self.req.http11 = b != b'0';
                        b.is_ascii_digit()
                    }
                    _ => match b {
                        b'\r' => {
                            self.st = St::LineLf;
                            true
                        }
                        b'\n' => return self.line_end(),
                        _ => false,
                    },
                };
                if !ok {
                    return Error(Status::BadRequest);
                }
                self.pos += 1;
            }
            St::LineLf => match b {
                b'\n' => return self.line_end(),
                _ => return Error(Status::BadRequest),
            },
            St::LineStart => match b {
                b'\r' => self.st = St::EndLf,
                b'\n' => return self.done(),
                // obs-fold (RFC 9112 §5.2) is rejected; so is anything but a field name.
                _ if is_tchar(b) => {
                    self.lines += 1;
                    if self.lines > lim.max_headers {
                        return Error(Status::HeadersTooLarge);
                    }
                    self.st = St::Name;
                    self.pos = 0;
                    self.cand = CONNECTION | CONTENT_LENGTH | TRANSFER_ENCODING | HOST | EXPECT;
                    self.name_byte(b);
                }
                _ => return Error(Status::BadRequest),
            },
            St::EndLf => match b {
                b'\n' => return self.done(),
                _ => return Error(Status::BadRequest),
            },
            St::Name => match b {
                b':' => {
                    let pos = self.pos;
                    self.field = FIELDS
                        .iter()
                        .find(|(bit, name)| self.cand & bit != 0 && name.len() == pos)
                        .map_or(0, |(bit, _)| *bit);
                    match self.field {
                        CONTENT_LENGTH if self.req.content_length.is_some() => {
                            return Error(Status::BadRequest)
                        }
                        CONTENT_LENGTH => self.req.content_length = Some(0),
                        TRANSFER_ENCODING => self.req.transfer_encoding = true,
                        HOST => self.req.hosts += 1,
                        _ => {}
                    }
                    self.digits = false;
                    self.trailing_ws = false;
                    self.st = St::ValueWs;
                }
                _ if is_tchar(b) => self.name_byte(b),
                // Whitespace between the name and the colon is an error (RFC 9112 §5.1).
                _ => return Error(Status::BadRequest),
            },
            St::ValueWs => match b {
                b' ' | b'\t' => {}
                _ => {
                    self.st = St::Value;
                    self.token_start();
                    return self.value_byte(b);
                }
            },
            St::Value => return self.value_byte(b),
        }
        More
    }

    fn method_byte(&mut self, b: u8) -> Parsed {
        for (bit, m) in [(1u8, &b"GET"[..]), (2u8, &b"HEAD"[..])] {
            if m.get(self.pos) != Some(&b) {
                self.cand &= !bit;
            }
        }
        self.pos += 1;
        Parsed::More
    }

    fn path_byte(&mut self, b: u8, lim: &Limits<'_>) {
        if lim.path.get(self.pos) != Some(&b) {
            self.req.path_matches = false;
        }
        self.pos += 1;
    }

    fn name_byte(&mut self, b: u8) {
        let l = b.to_ascii_lowercase();
        for (bit, name) in FIELDS {
            if name.get(self.pos) != Some(&l) {
                self.cand &= !bit;
            }
        }
        self.pos += 1;
    }

    fn token_start(&mut self) {
        self.pos = 0;
        self.cand = TOK_CLOSE | TOK_KEEP_ALIVE | TOK_CONTINUE;
    }

    fn token_end(&mut self) {
        let pos = self.pos;
        if let Some((bit, _)) =
            TOKENS.iter().find(|(bit, t)| self.cand & bit != 0 && t.len() == pos)
        {
            match (self.field, *bit) {
                (CONNECTION, TOK_CLOSE) => self.req.close = true,
                (CONNECTION, TOK_KEEP_ALIVE) => self.req.keep_alive = true,
                (EXPECT, TOK_CONTINUE) => self.req.expect_continue = true,
                _ => {}
            }
        }
        self.token_start();
    }

    fn value_byte(&mut self, b: u8) -> Parsed {
        match b {
            b'\r' | b'\n' => {
                if self.field == CONTENT_LENGTH && !self.digits {
                    return Parsed::Error(Status::BadRequest);
                }
                if self.field == CONNECTION || self.field == EXPECT {
                    self.token_end();
                }
                if b == b'\n' {
                    return self.line_end();
                }
                self.st = St::LineLf;
                return Parsed::More;
            }
            // Field values are visible characters, spaces, tabs and obs-text (RFC 9110 §5.5).
            0..=0x08 | 0x0a..=0x1f | 0x7f => return Parsed::Error(Status::BadRequest),
            _ => {}
        }
        match self.field {
            CONTENT_LENGTH => match b {
                b'0'..=b'9' if !self.trailing_ws => {
                    let v = self.req.content_length.unwrap_or(0);
                    match v.checked_mul(10).and_then(|v| v.checked_add(u64::from(b - b'0'))) {
                        Some(v) => self.req.content_length = Some(v),
                        None => return Parsed::Error(Status::BadRequest),
                    }
                    self.digits = true;
                }
                b' ' | b'\t' if self.digits => self.trailing_ws = true,
                _ => return Parsed::Error(Status::BadRequest),
            },
            CONNECTION | EXPECT => match b {
                b',' | b' ' | b'\t' => self.token_end(),
                _ => {
                    let l = b.to_ascii_lowercase();
                    for (bit, t) in TOKENS {
                        if t.get(self.pos) != Some(&l) {
                            self.cand &= !bit;
                        }
                    }
                    self.pos += 1;
                }
            },
            _ => {}
        }
        Parsed::More
    }

    /// The end of the request line or of a header line.
    fn line_end(&mut self) -> Parsed {
        self.st = St::LineStart;
        self.field = 0;
        Parsed::More
    }

    fn done(&mut self) -> Parsed {
        if self.major != 1 {
            return Parsed::Error(Status::VersionNotSupported);
        }
        Parsed::Done(self.req)
    }
}

/// What a complete request is answered with, and whether the connection persists.
fn answer(req: &Request) -> (Status, Persist) {
    // A client that sent `Expect: 100-continue` may never send the body of a request we
    // answer at once (we send no 100): the connection cannot be read past it, so it ends.
    let withheld = req.expect_continue && req.content_length.is_some_and(|n| n > 0);
    let persist = match (req.http11, req.close || withheld, req.keep_alive) {
        (_, true, _) => Persist::Close,
        (true, false, _) => Persist::Default,
        (false, false, true) => Persist::KeepAlive,
        (false, false, false) => Persist::Close,
    };
    let bad = (req.transfer_encoding && (req.content_length.is_some() || !req.http11))
        || (req.http11 && req.hosts != 1);
    if bad {
        return (Status::BadRequest, Persist::Close);
    }
    if req.transfer_encoding {
        return (Status::NotImplemented, Persist::Close);
    }
    let status = match (req.method, req.path_matches) {
        (Method::Other, _) => Status::MethodNotAllowed,
        (_, false) => Status::NotFound,
        (_, true) => Status::Ok,
    };
    (status, persist)
}

/// `Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n` (RFC 9110 §5.6.7 IMF-fixdate).
const DATE_LEN: usize = 37;

/// Writes the `Date` line for `secs` since the Unix epoch.
fn format_date(secs: u64, out: &mut [u8; DATE_LEN]) {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    out[..6].copy_from_slice(b"Date: ");
    out[6..9].copy_from_slice(DAYS[(days % 7) as usize]);
    out[9..11].copy_from_slice(b", ");
    two(&mut out[11..13], d);
    out[13] = b' ';
    out[14..17].copy_from_slice(MONTHS[(m - 1) as usize]);
    out[17] = b' ';
    let y = y.clamp(0, 9999) as u32;
    two(&mut out[18..20], y / 100);
    two(&mut out[20..22], y % 100);
    out[22] = b' ';
    two(&mut out[23..25], (rem / 3600) as u32);
    out[25] = b':';
    two(&mut out[26..28], (rem / 60 % 60) as u32);
    out[28] = b':';
    two(&mut out[29..31], (rem % 60) as u32);
    out[31..37].copy_from_slice(b" GMT\r\n");
}

fn two(out: &mut [u8], v: u32) {
    out[0] = b'0' + (v / 10 % 10) as u8;
    out[1] = b'0' + (v % 10) as u8;
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31) in the proleptic Gregorian
/// calendar (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The HTTP responder of one listener on one worker: the responses' fixed parts and the
/// counters.
#[derive(Debug)]
pub struct Server {
    path: Vec<u8>,
    max_header_bytes: usize,
    max_headers: usize,
    /// `HTTP/1.1 <code> <reason>\r\nServer: xdpos\r\n` per status.
    status_lines: Vec<Vec<u8>>,
    /// The rest of the header (type, length, connection, `Allow`, blank line) per status and
    /// [`Persist`].
    rests: Vec<[Vec<u8>; 3]>,
    /// The body per status.
    bodies: Vec<Vec<u8>>,
    date: [u8; DATE_LEN],
    date_secs: u64,
    cfg: HttpConfig,
    stats: HttpStats,
}

impl Server {
    /// Builds the responses of `cfg` (once, at start).
    pub fn new(cfg: &HttpConfig) -> Server {
        let mut status_lines = Vec::new();
        let mut rests = Vec::new();
        let mut bodies = Vec::new();
        for s in STATUSES {
            status_lines
                .push(format!("HTTP/1.1 {} {}\r\nServer: xdpos\r\n", s.code(), s.reason()).into());
            let (ctype, body) = match s {
                Status::Ok => (cfg.content_type.as_str(), cfg.body.clone()),
                _ => ("text/plain; charset=utf-8", format!("{}\n", s.reason()).into_bytes()),
            };
            let allow = if s == Status::MethodNotAllowed { "Allow: GET, HEAD\r\n" } else { "" };
            let rest = |conn: &str| -> Vec<u8> {
                format!(
                    "Content-Type: {ctype}\r\nContent-Length: {}\r\n{allow}{conn}\r\n",
                    body.len()
                )
                .into_bytes()
            };
            rests.push([
                rest(""),
                rest("Connection: keep-alive\r\n"),
                rest("Connection: close\r\n"),
            ]);
            bodies.push(body);
        }
        let mut server = Server {
            path: cfg.path.as_bytes().to_vec(),
            max_header_bytes: cfg.max_header_bytes.max(64),
            max_headers: cfg.max_headers,
            status_lines,
            rests,
            bodies,
            date: [b' '; DATE_LEN],
            date_secs: u64::MAX,
            cfg: cfg.clone(),
            stats: HttpStats::default(),
        };
        server.tick();
        server
    }

    /// Whether this server serves `cfg` (a reload that keeps a listener's configuration
    /// reuses its server).
    pub fn serves(&self, cfg: &HttpConfig) -> bool {
        self.cfg == *cfg
    }

    /// Counters so far.
    pub fn stats(&self) -> HttpStats {
        self.stats
    }

    /// Brings the `Date` line up to the wall clock (one `clock_gettime`; the line is rewritten
    /// when the second changes).
    pub fn tick(&mut self) {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.set_time(secs);
    }

    fn set_time(&mut self, secs: u64) {
        if secs != self.date_secs {
            self.date_secs = secs;
            format_date(secs, &mut self.date);
        }
    }

    fn limits(&self) -> Limits<'_> {
        Limits {
            path: &self.path,
            max_header_bytes: self.max_header_bytes,
            max_headers: self.max_headers,
        }
    }

    /// Counts a connection closed for idling.
    pub(crate) fn count_idle(&mut self) {
        self.stats.idle_closed += 1;
    }

    /// Counts a response about to be written.
    fn count(&mut self, status: Status) {
        self.stats.requests += 1;
        match status {
            Status::Ok => self.stats.ok += 1,
            Status::NotFound => self.stats.not_found += 1,
            Status::MethodNotAllowed => self.stats.method_not_allowed += 1,
            _ => self.stats.bad_requests += 1,
        }
    }

    /// Part `part` of a response: status line, `Date`, the rest of the header, the body.
    fn part(&self, out: &Out) -> Option<&[u8]> {
        let i = out.status.index();
        match out.part {
            0 => Some(&self.status_lines[i]),
            1 => Some(&self.date),
            2 => Some(&self.rests[i][out.persist.index()]),
            3 if !out.head_only => Some(&self.bodies[i]),
            _ => None,
        }
    }
}

/// The response being written.
#[derive(Debug, Clone, Copy)]
struct Out {
    status: Status,
    persist: Persist,
    /// `HEAD`: no body.
    head_only: bool,
    /// Which part ([`Server::part`]) and how much of it is written.
    part: u8,
    off: usize,
}

/// One HTTP connection.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Conn {
    /// Index of its listener's [`Server`] in the services' table.
    pub(crate) server: u16,
    /// When it last had an event.
    pub(crate) active: Instant,
    parser: Parser,
    out: Option<Out>,
    /// Request body bytes still to discard.
    skip: u64,
    /// The response written is the last: close once it is queued.
    last: bool,
}

impl Conn {
    /// A connection accepted at `now` on the listener of server `server`.
    pub(crate) fn new(server: u16, now: Instant) -> Conn {
        Conn { server, active: now, ..Conn::default() }
    }

    /// Whether it has been idle past its server's timeout at `now`.
    pub(crate) fn expired(&self, now: Instant, srv: &Server) -> bool {
        now.saturating_duration_since(self.active) > srv.cfg.idle_timeout
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_event(
        &mut self,
        now: Instant,
        tcp: &mut Tcp,
        h: TcpHandle,
        ready: Ready,
        srv: &mut Server,
        bytes_in: &mut u64,
        bytes_out: &mut u64,
    ) -> Next {
        self.active = now;
        match self.run(tcp, h, srv, bytes_in, bytes_out) {
            Ok(Next::Keep) if ready.intersects(Ready::RESET | Ready::TIMED_OUT) => Next::Fail,
            Ok(next) => next,
            Err(_) => Next::Fail,
        }
    }

    fn run(
        &mut self,
        tcp: &mut Tcp,
        h: TcpHandle,
        srv: &mut Server,
        bytes_in: &mut u64,
        bytes_out: &mut u64,
    ) -> Result<Next, TcpError> {
        loop {
            // 1. The response in progress; a write cut short arms WRITABLE, which brings us
            //    back here.
            if let Some(mut out) = self.out {
                while let Some(p) = srv.part(&out) {
                    if out.off >= p.len() {
                        out.part += 1;
                        out.off = 0;
                        continue;
                    }
                    match tcp.write(h, &p[out.off..]) {
                        Ok(k) => {
                            out.off += k;
                            *bytes_out += k as u64;
                        }
                        Err(TcpError::WouldBlock) => {
                            self.out = Some(out);
                            return Ok(Next::Keep);
                        }
                        Err(e) => return Err(e),
                    }
                }
                self.out = None;
            }
            if self.last {
                // Whatever else the peer sent is not answered: discard it so the close is a
                // FIN after the response, not a reset.
                loop {
                    match tcp.read_with(h, |d| d.len()) {
                        Ok(0) | Err(TcpError::WouldBlock) => return Ok(Next::Close),
                        Ok(n) => *bytes_in += n as u64,
                        Err(e) => return Err(e),
                    }
                }
            }
            // 2. The body of the last request, discarded.
            if self.skip > 0 {
                let skip = usize::try_from(self.skip).unwrap_or(usize::MAX);
                match tcp.read_with(h, |d| d.len().min(skip)) {
                    Ok(0) => return Ok(Next::Close),
                    Ok(n) => {
                        self.skip -= n as u64;
                        *bytes_in += n as u64;
                        continue;
                    }
                    Err(TcpError::WouldBlock) => return Ok(Next::Keep),
                    Err(e) => return Err(e),
                }
            }
            // 3. The next request (only once the previous response is wholly queued).
            let mut parsed = Parsed::More;
            let lim = srv.limits();
            let parser = &mut self.parser;
            let r = tcp.read_with(h, |d| {
                let (n, p) = parser.feed(d, &lim);
                parsed = p;
                n
            });
            match r {
                // End of the peer's stream (a partial request is abandoned): close after what
                // was answered.
                Ok(0) => return Ok(Next::Close),
                Ok(n) => *bytes_in += n as u64,
                Err(TcpError::WouldBlock) => return Ok(Next::Keep),
                Err(e) => return Err(e),
            }
            let (status, persist, head_only) = match parsed {
                Parsed::More => continue,
                Parsed::Done(req) => {
                    let (s, p) = answer(&req);
                    if p != Persist::Close {
                        self.skip = req.content_length.unwrap_or(0);
                    }
                    (s, p, req.method == Method::Head && s != Status::BadRequest)
                }
                Parsed::Error(s) => (s, Persist::Close, false),
            };
            srv.count(status);
            self.last = persist == Persist::Close;
            self.out = Some(Out { status, persist, head_only, part: 0, off: 0 });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIM: Limits<'static> = Limits { path: b"/", max_header_bytes: 8192, max_headers: 100 };

    /// Feeds `text` in pieces of `step` bytes; returns the outcomes in order.
    fn parse_all(text: &[u8], step: usize, lim: &Limits<'_>) -> Vec<Parsed> {
        let mut p = Parser::default();
        let mut out = Vec::new();
        for chunk in text.chunks(step.max(1)) {
            let mut rest = chunk;
            while !rest.is_empty() {
                let (n, r) = p.feed(rest, lim);
                rest = &rest[n..];
                if r != Parsed::More {
                    out.push(r);
                }
            }
        }
        out
    }

    /// The first outcome of `text` (after an error the parser starts over on the rest).
    fn one(text: &str) -> Parsed {
        let r = parse_all(text.as_bytes(), usize::MAX, &LIM);
        assert!(!r.is_empty(), "{text:?}: no outcome");
        r[0]
    }

    fn req(text: &str) -> Request {
        match one(text) {
            Parsed::Done(r) => r,
            other => panic!("{text:?} -> {other:?}"),
        }
    }

    #[test]
    fn a_get_parses_the_same_split_at_every_byte() {
        let text = b"\r\nGET /?x=1 HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, Close\r\n\
                     content-length:  12 \r\nX-Other: \xff v\r\n\r\n";
        let whole = parse_all(text, usize::MAX, &LIM);
        let want = Request {
            method: Method::Get,
            path_matches: true,
            http11: true,
            close: true,
            keep_alive: true,
            content_length: Some(12),
            transfer_encoding: false,
            hosts: 1,
            expect_continue: false,
        };
        assert_eq!(whole, [Parsed::Done(want)]);
        for step in 1..text.len() {
            assert_eq!(parse_all(text, step, &LIM), whole, "in pieces of {step}");
        }
    }

    #[test]
    fn pipelined_requests_come_out_in_order() {
        let text = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nHEAD /x HTTP/1.0\n\nPOST / HTTP/1.1\r\nHost: a\r\n\r\n";
        for step in [1, 3, 7, usize::MAX] {
            let r = parse_all(text, step, &LIM);
            let m: Vec<_> = r
                .iter()
                .map(|p| match p {
                    Parsed::Done(q) => (q.method, q.path_matches, q.http11),
                    other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(
                m,
                [
                    (Method::Get, true, true),
                    (Method::Head, false, false),
                    (Method::Other, true, true)
                ]
            );
        }
    }

    #[test]
    fn targets_match_the_path_in_every_form() {
        let lim = Limits { path: b"/index.html", ..LIM };
        let m = |t: &str| {
            let text = format!("GET {t} HTTP/1.1\r\nHost: a\r\n\r\n");
            match parse_all(text.as_bytes(), usize::MAX, &lim)[..] {
                [Parsed::Done(r)] => r.path_matches,
                ref other => panic!("{t}: {other:?}"),
            }
        };
        assert!(m("/index.html"));
        assert!(m("/index.html?a=b"));
        assert!(m("http://example.com/index.html"));
        assert!(m("http://example.com:8080/index.html?q"));
        assert!(!m("/index.htm"));
        assert!(!m("/index.html/"));
        assert!(!m("/"));
        assert!(!m("*"));
        assert!(!m("http://example.com"));
        assert!(req("GET http://example.com HTTP/1.1\r\nHost: a\r\n\r\n").path_matches);
        assert!(req("GET http://example.com?x HTTP/1.1\r\nHost: a\r\n\r\n").path_matches);
    }

    #[test]
    fn malformed_requests_are_400_and_limits_414_431_and_versions_505() {
        for bad in [
            "GET / HTTP/1.1 \r\n\r\n",
            "GET  / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.x\r\n\r\n",
            "GET / http/1.1\r\n\r\n",
            "GET /\r\n\r\n",
            " GET / HTTP/1.1\r\n\r\n",
            "G(T / HTTP/1.1\r\n\r\n",
            "GET /a\x01 HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
            "GET / HTTP/1.1\r\n: a\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
            "GET / HTTP/1.1\rX",
            "GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length:\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            "\rGET / HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(one(bad), Parsed::Error(Status::BadRequest), "{bad:?}");
        }
        assert_eq!(one("GET / HTTP/2.0\r\n\r\n"), Parsed::Error(Status::VersionNotSupported));
        assert_eq!(one("GET / HTTP/0.9\r\n\r\n"), Parsed::Error(Status::VersionNotSupported));
        let lim = Limits { max_header_bytes: 100, max_headers: 3, ..LIM };
        let long_target = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(200));
        assert_eq!(
            parse_all(long_target.as_bytes(), 5, &lim)[0],
            Parsed::Error(Status::UriTooLong)
        );
        let long_header = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(200));
        assert_eq!(
            parse_all(long_header.as_bytes(), 5, &lim)[0],
            Parsed::Error(Status::HeadersTooLarge)
        );
        let many = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
        assert_eq!(parse_all(many.as_bytes(), 1, &lim)[0], Parsed::Error(Status::HeadersTooLarge));
    }

    #[test]
    fn answers_follow_method_path_version_and_connection() {
        let a = |t: &str| answer(&req(t));
        let host = "Host: a\r\n";
        assert_eq!(a(&format!("GET / HTTP/1.1\r\n{host}\r\n")), (Status::Ok, Persist::Default));
        assert_eq!(
            a(&format!("GET / HTTP/1.1\r\n{host}Connection: close\r\n\r\n")),
            (Status::Ok, Persist::Close)
        );
        assert_eq!(a("GET / HTTP/1.0\r\n\r\n"), (Status::Ok, Persist::Close));
        assert_eq!(
            a("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
            (Status::Ok, Persist::KeepAlive)
        );
        assert_eq!(
            a(&format!("HEAD /x HTTP/1.1\r\n{host}\r\n")),
            (Status::NotFound, Persist::Default)
        );
        assert_eq!(
            a(&format!("DELETE / HTTP/1.1\r\n{host}\r\n")),
            (Status::MethodNotAllowed, Persist::Default)
        );
        assert_eq!(a("GETS / HTTP/1.1\r\nHost: a\r\n\r\n").0, Status::MethodNotAllowed);
        assert_eq!(a("GE / HTTP/1.1\r\nHost: a\r\n\r\n").0, Status::MethodNotAllowed);
        assert_eq!(a("GET / HTTP/1.1\r\n\r\n"), (Status::BadRequest, Persist::Close));
        assert_eq!(a("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").0, Status::BadRequest);
        assert_eq!(
            a("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"),
            (Status::NotImplemented, Persist::Close)
        );
        assert_eq!(
            a("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n")
                .0,
            Status::BadRequest
        );
        assert_eq!(
            a("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n").0,
            Status::BadRequest
        );
        // A body the client may hold back (no 100 Continue is sent): the connection ends.
        assert_eq!(
            a(&format!(
                "POST / HTTP/1.1\r\n{host}Expect: 100-Continue\r\nContent-Length: 9\r\n\r\n"
            )),
            (Status::MethodNotAllowed, Persist::Close)
        );
        assert_eq!(
            a(&format!(
                "POST / HTTP/1.1\r\n{host}Expect: 100-continue\r\nContent-Length: 0\r\n\r\n"
            ))
            .1,
            Persist::Default
        );
        assert_eq!(
            a(&format!(
                "GET / HTTP/1.1\r\n{host}Connection: 100-continue\r\nExpect: close\r\n\r\n"
            ))
            .1,
            Persist::Default,
            "tokens count only in their own field"
        );
        // Tokens are whole words.
        assert_eq!(
            a(&format!("GET / HTTP/1.1\r\n{host}Connection: closed, x-close\r\n\r\n")).1,
            Persist::Default
        );
    }

    #[test]
    fn dates_are_imf_fixdate() {
        let mut d = [0u8; DATE_LEN];
        format_date(784_111_777, &mut d);
        assert_eq!(&d, b"Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n");
        format_date(0, &mut d);
        assert_eq!(&d, b"Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n");
        format_date(1_709_208_000, &mut d); // a leap day
        assert_eq!(&d, b"Date: Thu, 29 Feb 2024 12:00:00 GMT\r\n");
    }

    #[test]
    fn every_response_carries_content_length() {
        let s = Server::new(&HttpConfig::pattern_body(100_000));
        for (i, st) in STATUSES.iter().enumerate() {
            for rest in &s.rests[i] {
                let text = String::from_utf8(rest.clone()).unwrap();
                assert!(
                    text.contains(&format!("Content-Length: {}\r\n", s.bodies[i].len())),
                    "{st:?}: {text}"
                );
                assert!(text.ends_with("\r\n\r\n"));
            }
        }
        assert!(String::from_utf8_lossy(&s.rests[3][0]).contains("Allow: GET, HEAD\r\n"));
        assert!(String::from_utf8_lossy(&s.rests[0][2]).contains("Connection: close\r\n"));
        assert_eq!(s.bodies[0].len(), 100_000);
    }
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod sim_tests;
