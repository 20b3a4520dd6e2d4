//! # Keyed hashes: ISNs, SYN cookies, timestamp offsets and the demux table
//!
//! What it is: [`Secret`], a 128-bit key chosen by whoever builds the stack (libos has no RNG:
//! DESIGN §4), with SipHash-2-4 ([`Secret::siphash`]) for everything an attacker must not
//! predict (initial sequence numbers per RFC 6528, SYN cookies per RFC 4987, timestamp offsets
//! per RFC 7323 §5.4, ephemeral port offsets per RFC 6056 algorithm 3), and a cheap keyed mixer
//! ([`Secret::mix`]) for the connection table's bucket index, where the key only has to keep
//! an off-path attacker from choosing colliding 4-tuples.
//!
//! What it never does: allocate, read entropy, or panic.
//!
//! Invariants: the same key and input always give the same output (SYN cookies are validated
//! by recomputing them).
//!
//! References: RFC 6528 (ISN), RFC 4987 §3.6 (SYN cookies), RFC 6056 (port randomization),
//! Aumasson and Bernstein, "SipHash: a fast short-input PRF" (2012).

/// A 128-bit secret key (see the module documentation).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Secret {
    k0: u64,
    k1: u64,
}

impl core::fmt::Debug for Secret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[inline]
fn sipround(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13);
    v[1] ^= v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17);
    v[1] ^= v[2];
    v[2] = v[2].rotate_left(32);
}

impl Secret {
    /// A key from two 64-bit halves.
    pub const fn new(k0: u64, k1: u64) -> Secret {
        Secret { k0, k1 }
    }

    /// SipHash-2-4 of the 64-bit words `words` (the message is their little-endian bytes).
    pub fn siphash(&self, words: &[u64]) -> u64 {
        let mut v = [
            self.k0 ^ 0x736f_6d65_7073_6575,
            self.k1 ^ 0x646f_7261_6e64_6f6d,
            self.k0 ^ 0x6c79_6765_6e65_7261,
            self.k1 ^ 0x7465_6462_7974_6573,
        ];
        for &m in words {
            v[3] ^= m;
            sipround(&mut v);
            sipround(&mut v);
            v[0] ^= m;
        }
        let b = ((words.len() as u64 * 8) & 0xff) << 56;
        v[3] ^= b;
        sipround(&mut v);
        sipround(&mut v);
        v[0] ^= b;
        v[2] ^= 0xff;
        for _ in 0..4 {
            sipround(&mut v);
        }
        v[0] ^ v[1] ^ v[2] ^ v[3]
    }

    /// A fast keyed 64 → 32-bit mixer for table indexes (not a PRF).
    #[inline]
    pub fn mix(&self, x: u64) -> u32 {
        let a = (x ^ self.k0).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let b = (a ^ (a >> 29) ^ self.k1).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        (b >> 32) as u32
    }
}

/// A 4-tuple packed into one word for hashing: local address and port, remote address and
/// port.
#[inline]
pub(crate) fn tuple_words(lip: u32, lport: u16, rip: u32, rport: u16) -> [u64; 2] {
    [(u64::from(lip) << 32) | u64::from(rip), (u64::from(lport) << 16) | u64::from(rport)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siphash_reference_vector() {
        // The SipHash-2-4 paper's test key 00..0f; message 00..07 gives 0x93f5f5799a932462.
        let k = Secret::new(0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);
        assert_eq!(k.siphash(&[0x0706_0504_0302_0100]), 0x93f5_f579_9a93_2462);
        // Empty message: 0x726fdb47dd0e0e31.
        assert_eq!(k.siphash(&[]), 0x726f_db47_dd0e_0e31);
    }

    #[test]
    fn mix_depends_on_key_and_input() {
        let a = Secret::new(1, 2);
        let b = Secret::new(3, 4);
        assert_ne!(a.mix(5), b.mix(5));
        assert_ne!(a.mix(5), a.mix(6));
        assert_eq!(a.mix(5), a.mix(5));
        assert_eq!(format!("{a:?}"), "Secret(..)");
    }
}
