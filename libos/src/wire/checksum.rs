//! # The Internet checksum
//!
//! RFC 1071 ones'-complement sum over big-endian 16-bit words, computed eight bytes at a time
//! with end-around carry (the sum is byte-order independent, RFC 1071 §2(B), so it is summed in
//! native order and swapped once at the end), and RFC 1624 incremental updates for header
//! rewrites (TTL decrement, NAT, segmentation templates).
//!
//! Vocabulary used throughout xdpos:
//! - a **sum** is the folded 16-bit ones'-complement sum, not complemented;
//! - a **checksum** is the complement of a sum, the value that goes on the wire;
//! - a buffer whose stored checksum is right sums to `0xffff`.
//!
//! [`reference`] is the textbook byte-pair loop of RFC 1071 §4.1, kept for differential tests.

/// Ones'-complement sum of `data` (big-endian 16-bit words, a trailing odd byte padded with
/// zero), folded to 16 bits and not complemented.
#[inline]
pub fn sum(data: &[u8]) -> u16 {
    fold(accumulate(0, data))
}

/// Internet checksum of `data`: the complement of [`sum`].
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !sum(data)
}

/// Adds two folded sums (ones'-complement addition).
#[inline]
pub fn add(a: u16, b: u16) -> u16 {
    let s = u32::from(a) + u32::from(b);
    ((s & 0xffff) + (s >> 16)) as u16
}

/// Sum of a part that starts at an odd offset of the checksummed whole: its bytes sit in the
/// other half of each 16-bit word, so its sum is byte-swapped before being added (RFC 1071 §2(B)).
#[inline]
pub fn at_offset(part_sum: u16, offset: usize) -> u16 {
    if offset & 1 == 1 {
        part_sum.swap_bytes()
    } else {
        part_sum
    }
}

/// Sum of the IPv4 pseudo-header (RFC 793 §3.1, RFC 768): source, destination, zero, protocol,
/// and the transport length.
#[inline]
pub fn pseudo_header_v4(src: [u8; 4], dst: [u8; 4], protocol: u8, length: u16) -> u16 {
    let mut s = u32::from(u16::from_be_bytes([src[0], src[1]]));
    s += u32::from(u16::from_be_bytes([src[2], src[3]]));
    s += u32::from(u16::from_be_bytes([dst[0], dst[1]]));
    s += u32::from(u16::from_be_bytes([dst[2], dst[3]]));
    s += u32::from(protocol);
    s += u32::from(length);
    // `s` already holds big-endian word values: fold the carries, no byte swap.
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// RFC 1624 eqn. 3: the checksum after one 16-bit field of the covered data changed from `old`
/// to `new`: `HC' = ~(~HC + ~m + m')`.
#[inline]
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    !add(add(!check, !old), new)
}

/// [`update16`] for a 32-bit field (two 16-bit words), such as an IPv4 address or a TCP
/// sequence number.
#[inline]
pub fn update32(check: u16, old: u32, new: u32) -> u16 {
    let c = update16(check, (old >> 16) as u16, (new >> 16) as u16);
    update16(c, old as u16, new as u16)
}

/// Adds the native-order 32-bit words of `data` to `acc` as plain integers, deferring the
/// end-around carries to [`fold`]: a u64 holds 2^32 of them, i.e. 16 GiB of data, far above any
/// frame. Without a carry chain the loop vectorizes (two to three times faster than adding
/// 64-bit words with carry on x86-64, measured with `cargo bench -p xdpos-benches checksum`).
#[inline]
fn accumulate(mut acc: u64, data: &[u8]) -> u64 {
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        // Zero-pad the tail to 4 bytes: a trailing odd byte becomes the high byte of its
        // big-endian word, exactly as RFC 1071 pads.
        let mut b = [0u8; 4];
        b[..rest.len()].copy_from_slice(rest);
        acc += u64::from(u32::from_ne_bytes(b));
    }
    acc
}

/// Folds a native-order 64-bit accumulator to a big-endian 16-bit sum.
#[inline]
fn fold(acc: u64) -> u16 {
    let mut s = (acc & 0xffff_ffff) + (acc >> 32);
    s = (s & 0xffff_ffff) + (s >> 32);
    let mut s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    let s = s as u16;
    if cfg!(target_endian = "little") {
        s.swap_bytes()
    } else {
        s
    }
}

/// RFC 1071 §4.1 reference: sums byte pairs one at a time. Slow; for differential tests.
pub fn reference(data: &[u8]) -> u16 {
    let mut s: u32 = 0;
    let mut i = 0;
    while i + 1 < data.len() {
        s += u32::from(u16::from_be_bytes([data[i], data[i + 1]]));
        i += 2;
    }
    if i < data.len() {
        s += u32::from(data[i]) << 8;
    }
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&data), 0xddf2);
        assert_eq!(reference(&data), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn ipv4_header_verifies() {
        // A real IPv4 header (20 bytes) with checksum 0xb861 at bytes 10..12.
        let hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(sum(&hdr), 0xffff);
        let mut zeroed = hdr;
        zeroed[10] = 0;
        zeroed[11] = 0;
        assert_eq!(checksum(&zeroed), 0xb861);
    }

    #[test]
    fn udp_checksum_of_a_real_kernel_datagram() {
        // 10.0.0.1:51277 -> 10.0.0.2:9000, 64-byte payload, as sent by Linux (checksum 0xf133).
        let udp: Vec<u8> = [0xc8, 0x4d, 0x23, 0x28, 0x00, 0x48, 0xf1, 0x33]
            .into_iter()
            .chain([0, 0, 0, 1])
            .chain((4..64u32).map(|i| (i * 31 + 1) as u8))
            .collect();
        let pseudo = pseudo_header_v4([10, 0, 0, 1], [10, 0, 0, 2], 17, 72);
        assert_eq!(pseudo, 0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 0x0011 + 0x0048);
        assert_eq!(add(pseudo, sum(&udp)), 0xffff);
        let mut zeroed = udp.clone();
        zeroed[6] = 0;
        zeroed[7] = 0;
        assert_eq!(!add(pseudo, sum(&zeroed)), 0xf133);
    }

    #[test]
    fn pseudo_header_matches_the_reference() {
        for (src, dst, proto, len) in [
            ([10, 0, 0, 1], [10, 0, 0, 2], 6, 20),
            ([255, 255, 255, 255], [255, 255, 255, 255], 17, 65535),
            ([0, 0, 0, 0], [0, 0, 0, 0], 0, 0),
            ([192, 168, 1, 10], [192, 168, 1, 1], 6, 1480),
        ] {
            let l = u16::to_be_bytes(len);
            let bytes = [
                src[0], src[1], src[2], src[3], dst[0], dst[1], dst[2], dst[3], 0, proto, l[0],
                l[1],
            ];
            let norm = |x: u16| if x == 0xffff { 0 } else { x };
            assert_eq!(norm(pseudo_header_v4(src, dst, proto, len)), norm(reference(&bytes)));
        }
    }

    #[test]
    fn large_buffers_match_the_reference() {
        let data: Vec<u8> =
            (0..65535u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        assert_eq!(sum(&data), reference(&data));
        assert_eq!(sum(&[0xff; 65536]), reference(&[0xff; 65536]));
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(&[0x12]), 0x1200);
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
    }

    #[test]
    fn update_ttl_matches_recompute() {
        let mut hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        let old = u16::from_be_bytes([hdr[8], hdr[9]]);
        hdr[8] -= 1;
        let new = u16::from_be_bytes([hdr[8], hdr[9]]);
        let c = update16(0xb861, old, new);
        hdr[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(sum(&hdr), 0xffff);
    }

    proptest! {
        #[test]
        fn fast_sum_equals_reference(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
            prop_assert_eq!(sum(&data), reference(&data));
        }

        #[test]
        fn split_sums_combine(data in proptest::collection::vec(any::<u8>(), 0..600),
                              cut in 0usize..600) {
            let cut = cut.min(data.len());
            let (a, b) = data.split_at(cut);
            let whole = add(sum(a), at_offset(sum(b), cut));
            // 0x0000 and 0xffff are the two ones'-complement zeros.
            let norm = |x: u16| if x == 0xffff { 0 } else { x };
            prop_assert_eq!(norm(whole), norm(reference(&data)));
        }

        #[test]
        fn update32_matches_recompute(mut data in proptest::collection::vec(any::<u8>(), 8..64),
                                      at in 0usize..32, new in any::<u32>()) {
            let at = (at.min(data.len() - 4)) & !1;
            let c0 = checksum(&data);
            let old = u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
            data[at..at + 4].copy_from_slice(&new.to_be_bytes());
            let norm = |x: u16| if x == 0xffff { 0 } else { x };
            prop_assert_eq!(norm(update32(c0, old, new)), norm(checksum(&data)));
        }
    }
}
