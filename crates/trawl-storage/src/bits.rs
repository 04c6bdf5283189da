//! The bit stream both chunk encodings share: an MSB-first bit writer and reader, zig-zag
//! varints, and the Gorilla delta-of-delta timestamp buckets. One copy, so the XOR and the
//! decimal chunk cannot drift apart in how they code timestamps.

/// Appends bits most significant first.
#[derive(Clone, Debug, Default)]
pub(crate) struct BitWriter {
    pub(crate) buf: Vec<u8>,
    /// Free bits in the last byte of `buf` (0 = byte aligned).
    pub(crate) free: u8,
}

impl BitWriter {
    /// Writes the low `n` bits of `v`, most significant first.
    #[inline]
    pub(crate) fn write(&mut self, v: u64, mut n: u32) {
        while n > 0 {
            if self.free == 0 {
                // Grow in fixed steps of 64 (keeps capacities at 16k + 8, see
                // `chunk::MIN_CAPACITY`): head chunks are many and long-lived, and doubling
                // would leave a quarter of each one unused on average.
                if self.buf.len() == self.buf.capacity() {
                    self.buf.reserve_exact(64);
                }
                self.buf.push(0);
                self.free = 8;
            }
            let take = n.min(self.free as u32);
            let shift = n - take;
            let chunk = ((v >> shift) & ((1u64 << take) - 1)) as u8;
            let last = self.buf.len() - 1;
            self.buf[last] |= chunk << (self.free as u32 - take);
            self.free -= take as u8;
            n -= take;
        }
    }

    /// A varint in 8-bit groups (not byte aligned: it follows the bit stream).
    pub(crate) fn varint(&mut self, mut u: u64) {
        while u >= 0x80 {
            self.write((u & 0x7f) | 0x80, 8);
            u >>= 7;
        }
        self.write(u, 8);
    }

    /// A timestamp delta-of-delta in Gorilla's buckets: `0`, `10`+14, `110`+17,
    /// `1110`+20, `1111`+64 bits.
    #[inline]
    pub(crate) fn dod(&mut self, dod: i64) {
        if dod == 0 {
            self.write(0, 1);
        } else if fits(dod, 14) {
            self.write(0b10, 2);
            self.write(dod as u64, 14);
        } else if fits(dod, 17) {
            self.write(0b110, 3);
            self.write(dod as u64, 17);
        } else if fits(dod, 20) {
            self.write(0b1110, 4);
            self.write(dod as u64, 20);
        } else {
            self.write(0b1111, 4);
            self.write(dod as u64, 64);
        }
    }
}

/// Reads what [`BitWriter`] wrote; every read returns `None` past the end (truncation is an
/// error for the caller, never a panic).
pub(crate) struct BitReader<'a> {
    pub(crate) data: &'a [u8],
    /// Bit position in `data`.
    pub(crate) pos: usize,
}

impl std::fmt::Debug for BitReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BitReader@{}", self.pos)
    }
}

impl BitReader<'_> {
    #[inline]
    pub(crate) fn read_bits(&mut self, n: u32) -> Option<u64> {
        if n == 0 {
            return Some(0);
        }
        if self.pos + n as usize > self.data.len() * 8 {
            return None;
        }
        let mut out = 0u64;
        let mut left = n;
        while left > 0 {
            let byte = self.data[self.pos / 8];
            let off = (self.pos % 8) as u32;
            let avail = 8 - off;
            let take = left.min(avail);
            let bits = (byte >> (avail - take)) & ((1u16 << take) - 1) as u8;
            out = (out << take) | bits as u64;
            self.pos += take as usize;
            left -= take;
        }
        Some(out)
    }

    #[inline]
    pub(crate) fn read_bit(&mut self) -> Option<bool> {
        let byte = *self.data.get(self.pos / 8)?;
        let b = (byte >> (7 - (self.pos % 8))) & 1;
        self.pos += 1;
        Some(b == 1)
    }

    pub(crate) fn read_varint(&mut self) -> Option<u64> {
        let mut out = 0u64;
        for i in 0..10 {
            let b = self.read_bits(8)?;
            out |= (b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Some(out);
            }
        }
        None
    }

    /// Reads one [`BitWriter::dod`] bucket.
    #[inline]
    pub(crate) fn read_dod(&mut self) -> Option<i64> {
        let mut prefix = 0u32;
        while prefix < 4 && self.read_bit()? {
            prefix += 1;
        }
        Some(match prefix {
            0 => 0,
            1 => sign_extend(self.read_bits(14)?, 14),
            2 => sign_extend(self.read_bits(17)?, 17),
            3 => sign_extend(self.read_bits(20)?, 20),
            _ => self.read_bits(64)? as i64,
        })
    }
}

/// Maps a signed delta to an unsigned one small for small magnitudes (for varints).
#[inline]
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// The inverse of [`zigzag`].
#[inline]
pub fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

#[inline]
fn fits(v: i64, bits: u32) -> bool {
    let lo = -(1i64 << (bits - 1));
    let hi = (1i64 << (bits - 1)) - 1;
    (lo..=hi).contains(&v)
}

#[inline]
fn sign_extend(v: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}
