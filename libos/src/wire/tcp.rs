//! # TCP segments
//!
//! What it is: a zero-copy view ([`TcpPacket`]) over a TCP segment (header, options, payload),
//! the control bits ([`TcpFlags`]), an option iterator ([`TcpOptionIter`] yielding
//! [`TcpOption`]) and [`TcpRepr`] for building headers.
//!
//! What it owns: the TCP header and its options, and the TCP checksum over the IPv4
//! pseudo-header: verify, fill, the partial (pseudo-header only) fill used with checksum
//! offload, and RFC 1624 incremental updates when a sequence number, acknowledgment number,
//! flags or window is rewritten (`replace_*`).
//!
//! What it never does: keep connection state, interpret sequence numbers (no wrap-around
//! arithmetic here), clamp a window scale above 14 (RFC 7323 §2.3: the connection does), or
//! allocate.
//!
//! Invariants:
//! - the segment is the whole buffer: TCP has no length field, so the caller passes exactly
//!   the IPv4 payload ([`super::Ipv4Packet::payload`]).
//! - after [`TcpPacket::new_checked`] succeeds: `20 <= header_len <= buffer length <= 65535`,
//!   and no accessor panics, whatever the bytes; regions derived from the data offset are
//!   clamped to the buffer, so a setter writing an inconsistent offset cannot cause a panic
//!   later either.
//! - the option iterator never panics and always terminates: it yields each well-formed
//!   option; an option whose kind is known but whose length is wrong for that kind is yielded
//!   as [`TcpOption::Unknown`] and skipped by its length (as Linux ignores it); a length below
//!   2 ([`Error::Malformed`]) or one that runs past the end of the option space
//!   ([`Error::Truncated`]) ends iteration with one `Err` item, after which it yields `None`.
//!   [`TcpOption::EndOfList`] is yielded once and ends iteration (what follows is padding).
//! - [`TcpRepr::emit`] writes options in Linux's aligned layout and pads them with zeros (EOL)
//!   to a multiple of 4 bytes, so the header of a parsed SYN or SACK-carrying segment from
//!   Linux is reproduced byte for byte.
//!
//! References: RFC 9293 (TCP; §3.1 header and options, MUST-7 illegal option lengths), RFC 7323
//! (window scale, timestamps), RFC 2018 (SACK), RFC 3168 (ECE, CWR), RFC 6691 (MSS), RFC 1071
//! and RFC 1624 (checksum).

use core::fmt;
use core::iter::FusedIterator;
use core::ops;
use std::net::Ipv4Addr;

use super::checksum;
use super::{Error, Result, TxChecksum};

/// Length of a TCP header without options.
pub const TCP_HEADER_LEN: usize = 20;

/// Largest TCP header (data offset 15): 40 bytes of options.
pub const TCP_MAX_HEADER_LEN: usize = 60;

/// Offset of the checksum field from the start of the TCP header (`csum_offset` for
/// [`super::Csum::Partial`]).
pub const TCP_CHECKSUM_OFFSET: usize = 16;

/// The most SACK blocks an option can carry (2 + 4 × 8 = 34 of the 40 option bytes).
pub const TCP_MAX_SACK_BLOCKS: usize = 4;

/// The IP protocol number of TCP, for the pseudo-header.
const PROTOCOL: u8 = 6;

mod field {
    use core::ops::Range;

    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const SEQ_NUM: Range<usize> = 4..8;
    pub const ACK_NUM: Range<usize> = 8..12;
    /// Data offset in the high nibble; the low nibble is reserved (AccECN's AE bit).
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: Range<usize> = 14..16;
    pub const CHECKSUM: Range<usize> = 16..18;
    pub const URGENT: Range<usize> = 18..20;
}

mod kind {
    pub const EOL: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WINDOW_SCALE: u8 = 3;
    pub const SACK_PERMITTED: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMPS: u8 = 8;
}

/// The eight TCP control bits, as a small hand-written bit set.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags(u8);

impl TcpFlags {
    /// No more data from sender.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// Synchronize sequence numbers.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// Reset the connection.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// Push function.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// The acknowledgment number is significant.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// The urgent pointer is significant.
    pub const URG: TcpFlags = TcpFlags(0x20);
    /// ECN-Echo (RFC 3168).
    pub const ECE: TcpFlags = TcpFlags(0x40);
    /// Congestion Window Reduced (RFC 3168).
    pub const CWR: TcpFlags = TcpFlags(0x80);

    const NAMES: [(TcpFlags, &'static str); 8] = [
        (TcpFlags::FIN, "FIN"),
        (TcpFlags::SYN, "SYN"),
        (TcpFlags::RST, "RST"),
        (TcpFlags::PSH, "PSH"),
        (TcpFlags::ACK, "ACK"),
        (TcpFlags::URG, "URG"),
        (TcpFlags::ECE, "ECE"),
        (TcpFlags::CWR, "CWR"),
    ];

    /// No bits set.
    pub const fn empty() -> TcpFlags {
        TcpFlags(0)
    }

    /// The flags of a raw flags byte (byte 13 of the header).
    pub const fn from_bits(bits: u8) -> TcpFlags {
        TcpFlags(bits)
    }

    /// The raw flags byte.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether no bit is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every bit of `other` is set in `self`.
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any bit of `other` is set in `self`.
    pub const fn intersects(self, other: TcpFlags) -> bool {
        self.0 & other.0 != 0
    }

    /// Sets the bits of `other`.
    pub fn insert(&mut self, other: TcpFlags) {
        self.0 |= other.0;
    }

    /// Clears the bits of `other`.
    pub fn remove(&mut self, other: TcpFlags) {
        self.0 &= !other.0;
    }

    /// Sets or clears the bits of `other`.
    pub fn set(&mut self, other: TcpFlags, value: bool) {
        if value {
            self.insert(other);
        } else {
            self.remove(other);
        }
    }
}

impl ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl ops::BitOrAssign for TcpFlags {
    fn bitor_assign(&mut self, rhs: TcpFlags) {
        self.0 |= rhs.0;
    }
}

impl ops::BitAnd for TcpFlags {
    type Output = TcpFlags;
    fn bitand(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 & rhs.0)
    }
}

impl ops::Not for TcpFlags {
    type Output = TcpFlags;
    fn not(self) -> TcpFlags {
        TcpFlags(!self.0)
    }
}

/// `SYN|ACK`, or `-` for no flags.
impl fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        let mut sep = "";
        for (flag, name) in TcpFlags::NAMES {
            if self.contains(flag) {
                write!(f, "{sep}{name}")?;
                sep = "|";
            }
        }
        Ok(())
    }
}

impl fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TcpFlags({self})")
    }
}

/// Up to [`TCP_MAX_SACK_BLOCKS`] SACK blocks `(left edge, right edge)`, stored inline.
#[derive(Clone, Copy, Default)]
pub struct SackBlocks {
    blocks: [(u32, u32); TCP_MAX_SACK_BLOCKS],
    len: u8,
}

impl SackBlocks {
    /// No blocks.
    pub const EMPTY: SackBlocks = SackBlocks { blocks: [(0, 0); TCP_MAX_SACK_BLOCKS], len: 0 };

    /// The blocks of `blocks`; `None` if there are more than [`TCP_MAX_SACK_BLOCKS`].
    pub fn from_slice(blocks: &[(u32, u32)]) -> Option<SackBlocks> {
        let mut out = SackBlocks::EMPTY;
        for &b in blocks {
            if !out.push(b) {
                return None;
            }
        }
        Some(out)
    }

    /// Appends a block; `false` (and nothing changes) if all four slots are used.
    pub fn push(&mut self, block: (u32, u32)) -> bool {
        match self.blocks.get_mut(usize::from(self.len)) {
            Some(slot) => {
                *slot = block;
                self.len += 1;
                true
            }
            None => false,
        }
    }

    /// The blocks, in order.
    pub fn as_slice(&self) -> &[(u32, u32)] {
        &self.blocks[..usize::from(self.len)]
    }

    /// How many blocks there are.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl PartialEq for SackBlocks {
    fn eq(&self, other: &SackBlocks) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for SackBlocks {}

impl core::hash::Hash for SackBlocks {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl fmt::Debug for SackBlocks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// The RFC 7323 timestamps option.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TcpTimestamps {
    /// TSval: the sender's timestamp clock.
    pub tsval: u32,
    /// TSecr: the echoed timestamp (significant when ACK is set).
    pub tsecr: u32,
}

/// One TCP option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpOption<'a> {
    /// End of option list (kind 0); what follows is padding.
    EndOfList,
    /// No-operation (kind 1), used for alignment.
    NoOperation,
    /// Maximum segment size (kind 2, length 4).
    MaxSegmentSize(u16),
    /// Window scale shift count (kind 3, length 3), as sent (may exceed 14).
    WindowScale(u8),
    /// SACK permitted (kind 4, length 2).
    SackPermitted,
    /// SACK blocks (kind 5, length 2 + 8n, n in 1..=4).
    SackRange(SackBlocks),
    /// Timestamps (kind 8, length 10).
    Timestamps(TcpTimestamps),
    /// Any other option, or a known kind with a wrong length: its kind and the bytes after
    /// the length byte.
    Unknown {
        /// Option kind.
        kind: u8,
        /// Option data (length − 2 bytes).
        data: &'a [u8],
    },
}

impl TcpOption<'_> {
    /// Bytes this option occupies on the wire.
    pub fn buffer_len(&self) -> usize {
        match self {
            TcpOption::EndOfList | TcpOption::NoOperation => 1,
            TcpOption::MaxSegmentSize(_) => 4,
            TcpOption::WindowScale(_) => 3,
            TcpOption::SackPermitted => 2,
            TcpOption::SackRange(s) => 2 + 8 * s.len(),
            TcpOption::Timestamps(_) => 10,
            TcpOption::Unknown { data, .. } => 2 + data.len(),
        }
    }

    /// Writes the option into the front of `buf` and returns its length.
    /// [`Error::Truncated`] if it does not fit; [`Error::Malformed`] for an empty SACK option,
    /// or an `Unknown` option of kind 0 or 1 or over 255 bytes.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len();
        match self {
            TcpOption::SackRange(s) if s.is_empty() => return Err(Error::Malformed),
            TcpOption::Unknown { kind: kind::EOL | kind::NOP, .. } => return Err(Error::Malformed),
            _ if len > 255 => return Err(Error::Malformed),
            _ => {}
        }
        let out = buf.get_mut(..len).ok_or(Error::Truncated)?;
        let k = match self {
            TcpOption::EndOfList => {
                out[0] = kind::EOL;
                return Ok(1);
            }
            TcpOption::NoOperation => {
                out[0] = kind::NOP;
                return Ok(1);
            }
            TcpOption::MaxSegmentSize(mss) => {
                out[2..4].copy_from_slice(&mss.to_be_bytes());
                kind::MSS
            }
            TcpOption::WindowScale(shift) => {
                out[2] = *shift;
                kind::WINDOW_SCALE
            }
            TcpOption::SackPermitted => kind::SACK_PERMITTED,
            TcpOption::SackRange(s) => {
                for (chunk, &(left, right)) in out[2..].chunks_exact_mut(8).zip(s.as_slice()) {
                    chunk[..4].copy_from_slice(&left.to_be_bytes());
                    chunk[4..].copy_from_slice(&right.to_be_bytes());
                }
                kind::SACK
            }
            TcpOption::Timestamps(ts) => {
                out[2..6].copy_from_slice(&ts.tsval.to_be_bytes());
                out[6..10].copy_from_slice(&ts.tsecr.to_be_bytes());
                kind::TIMESTAMPS
            }
            TcpOption::Unknown { kind: k, data } => {
                out[2..].copy_from_slice(data);
                *k
            }
        };
        out[0] = k;
        out[1] = len as u8;
        Ok(len)
    }
}

/// Iterator over the options of a TCP header; see the module documentation for how it ends
/// on a malformed list.
#[derive(Debug, Clone)]
pub struct TcpOptionIter<'a> {
    rest: &'a [u8],
}

impl<'a> TcpOptionIter<'a> {
    /// Iterates over raw option bytes (the header bytes after the first 20).
    pub const fn new(options: &'a [u8]) -> TcpOptionIter<'a> {
        TcpOptionIter { rest: options }
    }

    fn end(&mut self, err: Error) -> Option<Result<TcpOption<'a>>> {
        self.rest = &[];
        Some(Err(err))
    }
}

impl<'a> Iterator for TcpOptionIter<'a> {
    type Item = Result<TcpOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        let (&k, after_kind) = self.rest.split_first()?;
        match k {
            kind::EOL => {
                self.rest = &[];
                return Some(Ok(TcpOption::EndOfList));
            }
            kind::NOP => {
                self.rest = after_kind;
                return Some(Ok(TcpOption::NoOperation));
            }
            _ => {}
        }
        let Some(&len) = after_kind.first() else {
            return self.end(Error::Truncated);
        };
        let len = usize::from(len);
        if len < 2 {
            return self.end(Error::Malformed);
        }
        let Some(option) = self.rest.get(..len) else {
            return self.end(Error::Truncated);
        };
        self.rest = &self.rest[len..];
        let data = &option[2..];
        let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        Some(Ok(match (k, data.len()) {
            (kind::MSS, 2) => TcpOption::MaxSegmentSize(u16::from_be_bytes([data[0], data[1]])),
            (kind::WINDOW_SCALE, 1) => TcpOption::WindowScale(data[0]),
            (kind::SACK_PERMITTED, 0) => TcpOption::SackPermitted,
            (kind::SACK, n) if n % 8 == 0 && (1..=TCP_MAX_SACK_BLOCKS).contains(&(n / 8)) => {
                let mut blocks = SackBlocks::EMPTY;
                for b in data.chunks_exact(8) {
                    blocks.push((be32(&b[..4]), be32(&b[4..])));
                }
                TcpOption::SackRange(blocks)
            }
            (kind::TIMESTAMPS, 8) => TcpOption::Timestamps(TcpTimestamps {
                tsval: be32(&data[..4]),
                tsecr: be32(&data[4..]),
            }),
            _ => TcpOption::Unknown { kind: k, data },
        }))
    }
}

impl FusedIterator for TcpOptionIter<'_> {}

/// A read/write view of a TCP segment (see the module documentation).
#[derive(Debug, Clone)]
pub struct TcpPacket<B> {
    buffer: B,
}

impl<B: AsRef<[u8]>> TcpPacket<B> {
    /// Wraps `buffer` without checking it; fixed-field accessors panic on a buffer shorter
    /// than 20 bytes. Use for buffers the caller has sized itself (emit paths).
    pub const fn new_unchecked(buffer: B) -> TcpPacket<B> {
        TcpPacket { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: B) -> Result<TcpPacket<B>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the header against the buffer: [`Error::Truncated`] if the buffer is shorter than
    /// 20 bytes or the data offset; [`Error::Malformed`] for a data offset below 5 or a buffer
    /// over 65535 bytes (more than an IPv4 datagram can carry, and more than the pseudo-header
    /// length can describe).
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < TCP_HEADER_LEN {
            return Err(Error::Truncated);
        }
        if len > usize::from(u16::MAX) || self.header_len() < TCP_HEADER_LEN {
            return Err(Error::Malformed);
        }
        if self.header_len() > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> B {
        self.buffer
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        self.be16(field::SRC_PORT.start)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        self.be16(field::DST_PORT.start)
    }

    /// Sequence number.
    pub fn seq_number(&self) -> u32 {
        self.be32(field::SEQ_NUM.start)
    }

    /// Acknowledgment number (significant when ACK is set).
    pub fn ack_number(&self) -> u32 {
        self.be32(field::ACK_NUM.start)
    }

    /// Header length in bytes (data offset × 4), options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// Control bits.
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buffer.as_ref()[field::FLAGS])
    }

    /// Window field, unscaled.
    pub fn window_len(&self) -> u16 {
        self.be16(field::WINDOW.start)
    }

    /// Checksum as stored.
    pub fn checksum(&self) -> u16 {
        self.be16(field::CHECKSUM.start)
    }

    /// Urgent pointer (significant when URG is set).
    pub fn urgent_at(&self) -> u16 {
        self.be16(field::URGENT.start)
    }

    /// Payload length in bytes.
    pub fn payload_len(&self) -> usize {
        self.payload_range().len()
    }

    /// Sequence space the segment occupies: payload plus one each for SYN and FIN.
    pub fn segment_len(&self) -> usize {
        let f = self.flags();
        self.payload_len()
            + usize::from(f.contains(TcpFlags::SYN))
            + usize::from(f.contains(TcpFlags::FIN))
    }

    /// Whether the segment sums, with the IPv4 pseudo-header, to `0xffff`. Always `false` for
    /// a buffer over 65535 bytes (possible only for an unchecked view).
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let data = self.buffer.as_ref();
        match u16::try_from(data.len()) {
            Ok(len) => checksum::add(pseudo(src, dst, len), checksum::sum(data)) == 0xffff,
            Err(_) => false,
        }
    }

    fn options_range(&self) -> ops::Range<usize> {
        let len = self.buffer.as_ref().len();
        let end = self.header_len().clamp(TCP_HEADER_LEN.min(len), len);
        TCP_HEADER_LEN.min(end)..end
    }

    fn payload_range(&self) -> ops::Range<usize> {
        let len = self.buffer.as_ref().len();
        self.header_len().min(len)..len
    }

    fn be16(&self, at: usize) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[at], d[at + 1]])
    }

    fn be32(&self, at: usize) -> u32 {
        let d = self.buffer.as_ref();
        u32::from_be_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> TcpPacket<&'a T> {
    /// The raw option bytes (the header after the first 20), with the buffer's lifetime.
    pub fn options(&self) -> &'a [u8] {
        let range = self.options_range();
        &self.buffer.as_ref()[range]
    }

    /// Iterates over the options (see [`TcpOptionIter`]).
    pub fn option_iter(&self) -> TcpOptionIter<'a> {
        TcpOptionIter::new(self.options())
    }

    /// The payload: everything after the header, with the buffer's lifetime.
    pub fn payload(&self) -> &'a [u8] {
        let range = self.payload_range();
        &self.buffer.as_ref()[range]
    }
}

/// `set_*` write their field only (right for building a header, and for a frame whose
/// checksum field holds a partial sum for offload, which must not change); the checksum is
/// then stale until a `fill_*`. `replace_*` write the field and update a complete checksum
/// incrementally (RFC 1624), as Linux's `inet_proto_csum_replace*` do.
impl<B: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<B> {
    /// Sets the source port.
    pub fn set_src_port(&mut self, port: u16) {
        self.set_be16(field::SRC_PORT.start, port);
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, port: u16) {
        self.set_be16(field::DST_PORT.start, port);
    }

    /// Sets the sequence number.
    pub fn set_seq_number(&mut self, seq: u32) {
        self.set_be32(field::SEQ_NUM.start, seq);
    }

    /// Sets the acknowledgment number.
    pub fn set_ack_number(&mut self, ack: u32) {
        self.set_be32(field::ACK_NUM.start, ack);
    }

    /// Sets the header length in bytes; it is stored as data offset = `len / 4` (4 bits). The
    /// reserved low nibble of the byte is kept.
    pub fn set_header_len(&mut self, len: usize) {
        let b = &mut self.buffer.as_mut()[field::DATA_OFF];
        *b = (*b & 0x0f) | (((len / 4) as u8) << 4);
    }

    /// Sets the control bits.
    pub fn set_flags(&mut self, flags: TcpFlags) {
        self.buffer.as_mut()[field::FLAGS] = flags.0;
    }

    /// Sets the window field.
    pub fn set_window_len(&mut self, window: u16) {
        self.set_be16(field::WINDOW.start, window);
    }

    /// Stores `checksum` in the checksum field.
    pub fn set_checksum(&mut self, checksum: u16) {
        self.set_be16(field::CHECKSUM.start, checksum);
    }

    /// Sets the urgent pointer.
    pub fn set_urgent_at(&mut self, urgent: u16) {
        self.set_be16(field::URGENT.start, urgent);
    }

    /// Sets the sequence number and updates the checksum incrementally.
    pub fn replace_seq_number(&mut self, seq: u32) {
        let c = checksum::update32(self.checksum(), self.seq_number(), seq);
        self.set_seq_number(seq);
        self.set_checksum(c);
    }

    /// Sets the acknowledgment number and updates the checksum incrementally.
    pub fn replace_ack_number(&mut self, ack: u32) {
        let c = checksum::update32(self.checksum(), self.ack_number(), ack);
        self.set_ack_number(ack);
        self.set_checksum(c);
    }

    /// Sets the control bits and updates the checksum incrementally.
    pub fn replace_flags(&mut self, flags: TcpFlags) {
        let word = self.be16(field::DATA_OFF);
        let new = (word & 0xff00) | u16::from(flags.0);
        self.set_flags(flags);
        let c = checksum::update16(self.checksum(), word, new);
        self.set_checksum(c);
    }

    /// Sets the window field and updates the checksum incrementally.
    pub fn replace_window_len(&mut self, window: u16) {
        let c = checksum::update16(self.checksum(), self.window_len(), window);
        self.set_window_len(window);
        self.set_checksum(c);
    }

    /// Computes the checksum over the pseudo-header and the whole segment and stores it.
    /// A buffer over 65535 bytes (unchecked views only) gets a meaningless checksum.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let s = checksum::add(pseudo(src, dst, l4_len(data.len())), checksum::sum(data));
        self.set_checksum(!s);
    }

    /// Stores the folded pseudo-header sum (not complemented), for a device or software
    /// offload to complete ([`TxChecksum::Partial`]).
    pub fn fill_partial_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        let len = l4_len(self.buffer.as_ref().len());
        self.set_checksum(pseudo(src, dst, len));
    }

    /// The raw option bytes, writable.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let range = self.options_range();
        &mut self.buffer.as_mut()[range]
    }

    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.payload_range();
        &mut self.buffer.as_mut()[range]
    }

    fn set_be16(&mut self, at: usize, value: u16) {
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&value.to_be_bytes());
    }

    fn set_be32(&mut self, at: usize, value: u32) {
        self.buffer.as_mut()[at..at + 4].copy_from_slice(&value.to_be_bytes());
    }
}

/// A parsed TCP header with the options the stack uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq_number: u32,
    /// Acknowledgment number (significant when ACK is set; written as is).
    pub ack_number: u32,
    /// Control bits.
    pub flags: TcpFlags,
    /// Window field, unscaled.
    pub window_len: u16,
    /// Urgent pointer.
    pub urgent_at: u16,
    /// MSS option.
    pub max_seg_size: Option<u16>,
    /// Window scale option (shift count as sent).
    pub window_scale: Option<u8>,
    /// SACK-permitted option.
    pub sack_permitted: bool,
    /// SACK option blocks; empty means no SACK option.
    pub sack_ranges: SackBlocks,
    /// Timestamps option.
    pub timestamps: Option<TcpTimestamps>,
}

impl TcpRepr {
    /// Reads the header and options of a segment (checking its length again, so an unchecked
    /// view is fine). A repeated option overrides the earlier one; unknown options and
    /// known ones with a wrong length are ignored; a malformed option list is an error
    /// (RFC 9293 MUST-7 lets a receiver drop such a segment). Does not verify the checksum:
    /// call [`TcpPacket::verify_checksum`] first unless the device did.
    pub fn parse<B: AsRef<[u8]>>(packet: &TcpPacket<B>) -> Result<TcpRepr> {
        packet.check_len()?;
        let mut repr = TcpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: packet.ack_number(),
            flags: packet.flags(),
            window_len: packet.window_len(),
            urgent_at: packet.urgent_at(),
            max_seg_size: None,
            window_scale: None,
            sack_permitted: false,
            sack_ranges: SackBlocks::EMPTY,
            timestamps: None,
        };
        let options = &packet.buffer.as_ref()[packet.options_range()];
        for option in TcpOptionIter::new(options) {
            match option? {
                TcpOption::MaxSegmentSize(mss) => repr.max_seg_size = Some(mss),
                TcpOption::WindowScale(shift) => repr.window_scale = Some(shift),
                TcpOption::SackPermitted => repr.sack_permitted = true,
                TcpOption::SackRange(blocks) => repr.sack_ranges = blocks,
                TcpOption::Timestamps(ts) => repr.timestamps = Some(ts),
                TcpOption::EndOfList | TcpOption::NoOperation | TcpOption::Unknown { .. } => {}
            }
        }
        Ok(repr)
    }

    /// Bytes of options [`emit`](Self::emit) writes, padding included (a multiple of 4; over
    /// 40 means the options do not fit and `emit` will refuse).
    pub fn options_len(&self) -> usize {
        let mut len = 0;
        if self.max_seg_size.is_some() {
            len += 4;
        }
        if self.timestamps.is_some() || self.sack_permitted {
            // SACK_PERM + TS, NOP NOP TS, or NOP NOP SACK_PERM.
            len += if self.timestamps.is_some() { 12 } else { 4 };
        }
        if self.window_scale.is_some() {
            len += 4;
        }
        if !self.sack_ranges.is_empty() {
            len += 4 + 8 * self.sack_ranges.len();
        }
        len
    }

    /// Header bytes [`emit`](Self::emit) writes: 20 plus [`options_len`](Self::options_len).
    pub fn header_len(&self) -> usize {
        TCP_HEADER_LEN + self.options_len()
    }

    /// Writes the header into the front of `segment`, which is the whole segment: the payload
    /// must already be at `segment[header_len()..]` when `checksum` is [`TxChecksum::Full`],
    /// since the checksum covers it. Returns the header length.
    ///
    /// Options go in Linux's aligned layout: MSS; SACK-permitted + timestamps (or NOP NOP and
    /// either); NOP + window scale; NOP NOP + SACK blocks. [`Error::Truncated`] if `segment` is
    /// shorter than the header; [`Error::Malformed`] if the options exceed 40 bytes (at most 3
    /// SACK blocks fit beside timestamps) or `segment` exceeds 65535 bytes.
    pub fn emit(
        &self,
        segment: &mut [u8],
        src: Ipv4Addr,
        dst: Ipv4Addr,
        checksum: TxChecksum,
    ) -> Result<usize> {
        let header_len = self.header_len();
        if header_len > TCP_MAX_HEADER_LEN || segment.len() > usize::from(u16::MAX) {
            return Err(Error::Malformed);
        }
        if segment.len() < header_len {
            return Err(Error::Truncated);
        }
        let mut packet = TcpPacket::new_unchecked(&mut *segment);
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq_number(self.seq_number);
        packet.set_ack_number(self.ack_number);
        packet.buffer[field::DATA_OFF] = 0;
        packet.set_header_len(header_len);
        packet.set_flags(self.flags);
        packet.set_window_len(self.window_len);
        packet.set_checksum(0);
        packet.set_urgent_at(self.urgent_at);
        self.emit_options(packet.options_mut())?;
        match checksum {
            TxChecksum::Full => packet.fill_checksum(src, dst),
            TxChecksum::Partial => packet.fill_partial_checksum(src, dst),
        }
        Ok(header_len)
    }

    fn emit_options(&self, buf: &mut [u8]) -> Result<()> {
        let mut at = 0;
        let mut put = |option: TcpOption<'_>| -> Result<()> {
            at += option.emit(buf.get_mut(at..).ok_or(Error::Truncated)?)?;
            Ok(())
        };
        if let Some(mss) = self.max_seg_size {
            put(TcpOption::MaxSegmentSize(mss))?;
        }
        match (self.sack_permitted, self.timestamps) {
            (true, Some(ts)) => {
                put(TcpOption::SackPermitted)?;
                put(TcpOption::Timestamps(ts))?;
            }
            (false, Some(ts)) => {
                put(TcpOption::NoOperation)?;
                put(TcpOption::NoOperation)?;
                put(TcpOption::Timestamps(ts))?;
            }
            (true, None) => {
                put(TcpOption::NoOperation)?;
                put(TcpOption::NoOperation)?;
                put(TcpOption::SackPermitted)?;
            }
            (false, None) => {}
        }
        if let Some(shift) = self.window_scale {
            put(TcpOption::NoOperation)?;
            put(TcpOption::WindowScale(shift))?;
        }
        if !self.sack_ranges.is_empty() {
            put(TcpOption::NoOperation)?;
            put(TcpOption::NoOperation)?;
            put(TcpOption::SackRange(self.sack_ranges))?;
        }
        // Every group above is a multiple of 4 bytes; pad with EOL anyway, should that change.
        buf.get_mut(at..).unwrap_or(&mut []).fill(kind::EOL);
        Ok(())
    }
}

/// Folded sum of the TCP pseudo-header.
fn pseudo(src: Ipv4Addr, dst: Ipv4Addr, len: u16) -> u16 {
    super::ipv4::pseudo_header_sum(src, dst, PROTOCOL, len)
}

/// A segment length for the pseudo-header; saturates above 65535, where no checksum is
/// meaningful.
fn l4_len(len: usize) -> u16 {
    u16::try_from(len).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);
    const SERVER: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);

    /// A Linux-style SYN from CLIENT:54321 to SERVER:80: MSS 1460, SACK-permitted,
    /// timestamps (123456, 0), NOP, window scale 7 (scapy, from the IPv4 payload).
    const SYN: [u8; 40] = [
        0xd4, 0x31, 0x00, 0x50, 0x12, 0x34, 0x56, 0x78, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa,
        0xf0, 0xaa, 0x43, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x00, 0x01,
        0xe2, 0x40, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
    ];

    /// PSH|ACK with "hello", NOP NOP timestamps (1000, 2000), NOP NOP SACK
    /// [100, 200) [300, 400).
    const DATA: [u8; 57] = [
        0xd4, 0x31, 0x00, 0x50, 0x12, 0x34, 0x56, 0x79, 0xab, 0xcd, 0xef, 0x01, 0xd0, 0x18, 0x01,
        0xf6, 0x6f, 0xc6, 0x00, 0x00, 0x01, 0x01, 0x08, 0x0a, 0x00, 0x00, 0x03, 0xe8, 0x00, 0x00,
        0x07, 0xd0, 0x01, 0x01, 0x05, 0x12, 0x00, 0x00, 0x00, 0x64, 0x00, 0x00, 0x00, 0xc8, 0x00,
        0x00, 0x01, 0x2c, 0x00, 0x00, 0x01, 0x90, 0x68, 0x65, 0x6c, 0x6c, 0x6f,
    ];

    fn syn_repr() -> TcpRepr {
        TcpRepr {
            src_port: 54321,
            dst_port: 80,
            seq_number: 0x1234_5678,
            ack_number: 0,
            flags: TcpFlags::SYN,
            window_len: 64240,
            urgent_at: 0,
            max_seg_size: Some(1460),
            window_scale: Some(7),
            sack_permitted: true,
            sack_ranges: SackBlocks::EMPTY,
            timestamps: Some(TcpTimestamps { tsval: 123_456, tsecr: 0 }),
        }
    }

    #[test]
    fn syn_fixture() {
        let p = TcpPacket::new_checked(&SYN[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (54321, 80));
        assert_eq!(p.seq_number(), 0x1234_5678);
        assert_eq!(p.ack_number(), 0);
        assert_eq!(p.header_len(), 40);
        assert_eq!(p.flags(), TcpFlags::SYN);
        assert_eq!(p.window_len(), 64240);
        assert_eq!(p.checksum(), 0xaa43);
        assert_eq!(p.urgent_at(), 0);
        assert!(p.verify_checksum(CLIENT, SERVER));
        assert!(!p.verify_checksum(SERVER, Ipv4Addr::new(192, 168, 1, 11)));
        assert_eq!(p.payload(), &[] as &[u8]);
        assert_eq!(p.segment_len(), 1);
        let options: Vec<_> = p.option_iter().collect();
        assert_eq!(
            options,
            [
                Ok(TcpOption::MaxSegmentSize(1460)),
                Ok(TcpOption::SackPermitted),
                Ok(TcpOption::Timestamps(TcpTimestamps { tsval: 123_456, tsecr: 0 })),
                Ok(TcpOption::NoOperation),
                Ok(TcpOption::WindowScale(7)),
            ]
        );

        let repr = TcpRepr::parse(&p).unwrap();
        assert_eq!(repr, syn_repr());
        let mut out = [0u8; 40];
        assert_eq!(repr.emit(&mut out, CLIENT, SERVER, TxChecksum::Full), Ok(40));
        assert_eq!(out, SYN);
    }

    #[test]
    fn data_fixture() {
        let p = TcpPacket::new_checked(&DATA[..]).unwrap();
        assert_eq!(p.flags(), TcpFlags::PSH | TcpFlags::ACK);
        assert_eq!(p.flags().to_string(), "PSH|ACK");
        assert_eq!(p.ack_number(), 0xabcd_ef01);
        assert_eq!(p.header_len(), 52);
        assert_eq!(p.payload(), b"hello");
        assert_eq!(p.segment_len(), 5);
        assert!(p.verify_checksum(CLIENT, SERVER));
        let repr = TcpRepr::parse(&p).unwrap();
        assert_eq!(repr.timestamps, Some(TcpTimestamps { tsval: 1000, tsecr: 2000 }));
        assert_eq!(repr.sack_ranges.as_slice(), &[(100, 200), (300, 400)]);
        assert_eq!(repr.max_seg_size, None);

        let mut out = DATA;
        out[..52].fill(0);
        assert_eq!(repr.emit(&mut out, CLIENT, SERVER, TxChecksum::Full), Ok(52));
        assert_eq!(out, DATA);
    }

    #[test]
    fn rejects_bad_headers() {
        let check = |b: &[u8]| TcpPacket::new_checked(b).err();
        assert_eq!(check(&SYN[..19]), Some(Error::Truncated));
        assert_eq!(check(&SYN[..39]), Some(Error::Truncated), "options cut short");
        let mut v = SYN;
        v[12] = 0x40;
        assert_eq!(check(&v), Some(Error::Malformed), "data offset 4");
        v[12] = 0xf0;
        assert_eq!(check(&v), Some(Error::Truncated), "data offset 15 in 40 bytes");
        assert_eq!(check(&vec![0x50; 65536]), Some(Error::Malformed));
    }

    #[test]
    fn malformed_options_end_with_one_error() {
        let it = |b: &'static [u8]| TcpOptionIter::new(b).collect::<Vec<_>>();
        // Zero length: MUST-7's example of an illegal length.
        assert_eq!(it(&[1, 2, 0, 1, 1]), [Ok(TcpOption::NoOperation), Err(Error::Malformed)]);
        // Runs past the end; a kind byte with no length byte.
        assert_eq!(it(&[2, 4, 5]), [Err(Error::Truncated)]);
        assert_eq!(it(&[1, 8]), [Ok(TcpOption::NoOperation), Err(Error::Truncated)]);
        // A known kind with a wrong length is skipped as unknown; EOL ends the list.
        assert_eq!(
            it(&[2, 3, 9, 3, 3, 14, 0, 2, 0]),
            [
                Ok(TcpOption::Unknown { kind: 2, data: &[9] }),
                Ok(TcpOption::WindowScale(14)),
                Ok(TcpOption::EndOfList),
            ]
        );
        assert_eq!(it(&[5, 2]), [Ok(TcpOption::Unknown { kind: 5, data: &[] })]);
        assert_eq!(it(&[30, 4, 1, 2]), [Ok(TcpOption::Unknown { kind: 30, data: &[1, 2] })]);

        let mut v = SYN;
        v[21] = 1; // MSS length 1
        let p = TcpPacket::new_checked(&v[..]).unwrap();
        assert_eq!(TcpRepr::parse(&p), Err(Error::Malformed));
    }

    #[test]
    fn replace_keeps_the_checksum_right() {
        let mut v = DATA;
        let mut p = TcpPacket::new_checked(&mut v[..]).unwrap();
        p.replace_seq_number(0xffff_fff0);
        p.replace_ack_number(7);
        p.replace_flags(TcpFlags::ACK | TcpFlags::FIN);
        p.replace_window_len(0);
        assert!(p.verify_checksum(CLIENT, SERVER));
        assert_eq!(p.seq_number(), 0xffff_fff0);
        assert_eq!(p.ack_number(), 7);
        assert_eq!(p.flags(), TcpFlags::ACK | TcpFlags::FIN);
        assert_eq!(p.header_len(), 52);
        assert_eq!(p.window_len(), 0);
    }

    #[test]
    fn partial_checksum_completes_to_full() {
        let mut full = DATA;
        let mut partial = DATA;
        TcpPacket::new_unchecked(&mut full[..]).fill_checksum(CLIENT, SERVER);
        let mut p = TcpPacket::new_unchecked(&mut partial[..]);
        p.fill_partial_checksum(CLIENT, SERVER);
        // What the device does: sum from the TCP header to the end, store the complement.
        let c = checksum::checksum(&partial);
        partial[16..18].copy_from_slice(&c.to_be_bytes());
        assert_eq!(partial, full);
        assert_eq!(full, DATA);
    }

    #[test]
    fn flags_behave_like_a_bit_set() {
        let mut f = TcpFlags::empty();
        assert!(f.is_empty());
        assert_eq!(f.to_string(), "-");
        f.insert(TcpFlags::SYN | TcpFlags::ECE | TcpFlags::CWR);
        assert_eq!(f.to_string(), "SYN|ECE|CWR");
        assert!(f.contains(TcpFlags::SYN | TcpFlags::ECE));
        assert!(!f.contains(TcpFlags::SYN | TcpFlags::ACK));
        assert!(f.intersects(TcpFlags::SYN | TcpFlags::ACK));
        f.set(TcpFlags::ACK, true);
        f.set(TcpFlags::ECE, false);
        f.remove(TcpFlags::CWR);
        assert_eq!(f, TcpFlags::SYN | TcpFlags::ACK);
        assert_eq!(f.bits(), 0x12);
        assert_eq!(f & !TcpFlags::SYN, TcpFlags::ACK);
        assert_eq!(TcpFlags::from_bits(0xff).to_string(), "FIN|SYN|RST|PSH|ACK|URG|ECE|CWR");
        assert_eq!(format!("{:?}", TcpFlags::RST), "TcpFlags(RST)");
    }

    #[test]
    fn emit_refuses_what_does_not_fit() {
        let mut repr = syn_repr();
        repr.sack_ranges = SackBlocks::from_slice(&[(1, 2); 4]).unwrap();
        assert_eq!(repr.options_len(), 56);
        let mut buf = [0u8; 80];
        assert_eq!(repr.emit(&mut buf, CLIENT, SERVER, TxChecksum::Full), Err(Error::Malformed));
        repr.max_seg_size = None;
        repr.window_scale = None;
        repr.sack_ranges = SackBlocks::from_slice(&[(1, 2); 3]).unwrap();
        assert_eq!(repr.header_len(), 60);
        assert_eq!(
            repr.emit(&mut buf[..59], CLIENT, SERVER, TxChecksum::Full),
            Err(Error::Truncated)
        );
        assert_eq!(repr.emit(&mut buf, CLIENT, SERVER, TxChecksum::Full), Ok(60));
        assert!(SackBlocks::from_slice(&[(0, 0); 5]).is_none());
        let unknown = TcpOption::Unknown { kind: 30, data: &[1, 2] };
        assert_eq!(unknown.emit(&mut buf), Ok(4));
        assert_eq!(buf[..4], [30, 4, 1, 2]);
        let eol = TcpOption::Unknown { kind: 0, data: &[] };
        assert_eq!(eol.emit(&mut buf), Err(Error::Malformed));
        assert_eq!(TcpOption::SackRange(SackBlocks::EMPTY).emit(&mut buf), Err(Error::Malformed));
        assert_eq!(
            TcpOption::Timestamps(TcpTimestamps::default()).emit(&mut buf[..9]),
            Err(Error::Truncated)
        );
    }

    fn repr() -> impl Strategy<Value = TcpRepr> {
        let sack = proptest::collection::vec(any::<(u32, u32)>(), 0..=4)
            .prop_map(|v| SackBlocks::from_slice(&v).unwrap());
        let ts = proptest::option::of(any::<(u32, u32)>())
            .prop_map(|t| t.map(|(tsval, tsecr)| TcpTimestamps { tsval, tsecr }));
        (
            (any::<u16>(), any::<u16>(), any::<u32>(), any::<u32>(), any::<u8>()),
            (any::<u16>(), any::<u16>(), any::<Option<u16>>(), any::<Option<u8>>()),
            (any::<bool>(), sack, ts),
        )
            .prop_map(|((sp, dp, seq, ack, flags), (win, urg, mss, ws), (sp_ok, sack, ts))| {
                TcpRepr {
                    src_port: sp,
                    dst_port: dp,
                    seq_number: seq,
                    ack_number: ack,
                    flags: TcpFlags::from_bits(flags),
                    window_len: win,
                    urgent_at: urg,
                    max_seg_size: mss,
                    window_scale: ws,
                    sack_permitted: sp_ok,
                    sack_ranges: sack,
                    timestamps: ts,
                }
            })
            .prop_filter("options fit in 40 bytes", |r| r.options_len() <= 40)
    }

    /// Bytes with a plausible data offset now and then, and option-like bytes.
    fn segment_bytes() -> impl Strategy<Value = Vec<u8>> {
        let opt_byte = prop_oneof![0u8..=10, any::<u8>()];
        (proptest::collection::vec(opt_byte, 0..90), 5u8..16, any::<bool>()).prop_map(
            |(mut v, off, plausible)| {
                if plausible && v.len() > 12 {
                    v[12] = off << 4;
                }
                v
            },
        )
    }

    proptest! {
        #[test]
        fn checked_view_never_panics(mut bytes in segment_bytes(), off in any::<u8>(),
                                     a in any::<[u8; 4]>(), b in any::<[u8; 4]>()) {
            let (src, dst) = (Ipv4Addr::from(a), Ipv4Addr::from(b));
            if let Ok(p) = TcpPacket::new_checked(&bytes[..]) {
                let _ = (p.src_port(), p.dst_port(), p.seq_number(), p.ack_number(), p.flags());
                let _ = (p.window_len(), p.checksum(), p.urgent_at(), p.segment_len());
                let _ = p.verify_checksum(src, dst);
                prop_assert_eq!(p.options().len() + 20, p.header_len());
                prop_assert_eq!(p.payload().len() + p.header_len(), bytes.len());
                let n = p.option_iter().count();
                prop_assert!(n <= p.options().len());
                let mut it = p.option_iter();
                while let Some(Ok(_)) = it.next() {}
                prop_assert!(it.next().is_none(), "nothing follows an error or the end");
                if let Ok(r) = TcpRepr::parse(&p) {
                    prop_assert!(r.sack_ranges.len() <= TCP_MAX_SACK_BLOCKS);
                }
                let mut p = TcpPacket::new_checked(&mut bytes[..]).unwrap();
                p.replace_flags(TcpFlags::ACK);
                p.set_header_len(usize::from(off));
                p.fill_checksum(src, dst);
                let _ = (p.options_mut().len(), p.payload_mut().len());
                let p = TcpPacket::new_unchecked(&bytes[..]);
                let _ = (p.options(), p.payload(), p.option_iter().count());
            }
        }

        #[test]
        fn repr_round_trips(repr in repr(),
                            payload in proptest::collection::vec(any::<u8>(), 0..64),
                            a in any::<[u8; 4]>(), b in any::<[u8; 4]>()) {
            let (src, dst) = (Ipv4Addr::from(a), Ipv4Addr::from(b));
            let h = repr.header_len();
            let mut buf = vec![0u8; h + payload.len()];
            buf[h..].copy_from_slice(&payload);
            prop_assert_eq!(repr.emit(&mut buf, src, dst, TxChecksum::Full), Ok(h));
            prop_assert_eq!(h % 4, 0);
            let p = TcpPacket::new_checked(&buf[..]).unwrap();
            prop_assert!(p.verify_checksum(src, dst));
            prop_assert_eq!(p.payload(), &payload[..]);
            prop_assert_eq!(TcpRepr::parse(&p).unwrap(), repr);
        }

        #[test]
        fn replace_matches_fill(repr in repr(), seq in any::<u32>(), ack in any::<u32>(),
                                flags in any::<u8>(), win in any::<u16>()) {
            let (src, dst) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
            let mut buf = vec![0u8; repr.header_len() + 11];
            repr.emit(&mut buf, src, dst, TxChecksum::Full).unwrap();
            let mut p = TcpPacket::new_checked(&mut buf[..]).unwrap();
            p.replace_seq_number(seq);
            p.replace_ack_number(ack);
            p.replace_flags(TcpFlags::from_bits(flags));
            p.replace_window_len(win);
            prop_assert!(p.verify_checksum(src, dst));
        }
    }
}
