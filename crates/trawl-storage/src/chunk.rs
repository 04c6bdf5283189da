//! The Gorilla float chunk: delta-of-delta timestamps and XOR-compressed values.
//!
//! Layout: a 2-byte big-endian sample count, then one bit stream:
//! - sample 0: timestamp as a zig-zag varint, value as its 64 raw bits;
//! - sample 1: timestamp delta as a zig-zag varint, value XOR-encoded;
//! - later samples: delta-of-delta in a prefix-coded bucket (`0`, `10`+14 bits, `110`+17,
//!   `1110`+20, `1111`+64), value XOR-encoded.
//!
//! Values are handled purely as bit patterns, so every NaN payload (the staleness marker
//! included), ±Inf and -0.0 round-trip exactly. Timestamp arithmetic wraps, which makes the
//! encoding a bijection on `i64` even for deltas that would overflow.

use trawl_model::Sample;

use crate::StorageError;
use crate::bits::{BitReader, BitWriter, unzigzag, zigzag};

const HEADER: usize = 2;
/// Smallest buffer of an open chunk. Head chunks grow in lockstep (every series gets a
/// sample per scrape), so the buffers a growth step frees must be able to merge with their
/// neighbours: glibc never merges free chunks of its fastbin sizes (up to 128 bytes), and
/// buffers that small left ~300 bytes of unusable holes per series in measurements.
pub const MIN_CAPACITY: usize = 128;
/// The most samples one chunk can hold (the header is a `u16`).
pub const MAX_CHUNK_SAMPLES: usize = u16::MAX as usize;

/// An appendable XOR chunk. Every way of taking its bytes out ([`to_bytes`](Self::to_bytes),
/// [`write_to`](Self::write_to), [`to_shared`](Self::to_shared),
/// [`into_bytes`](Self::into_bytes)) yields a valid chunk, so a snapshot of a half-full chunk
/// can be stored and reopened. The count header in the buffer itself is only written as bytes
/// leave: an append then touches only the buffer's tail, not also its first cache line, and a
/// head appends to every series' chunk once per scrape.
#[derive(Clone, Debug)]
pub struct XorAppender {
    w: BitWriter,
    count: u16,
    t: i64,
    delta: i64,
    v: u64,
    leading: u8,
    trailing: u8,
}

impl Default for XorAppender {
    fn default() -> Self {
        Self::new()
    }
}

impl XorAppender {
    /// An empty chunk.
    pub fn new() -> Self {
        Self::with_capacity(MIN_CAPACITY)
    }

    /// An empty chunk whose buffer starts with room for `bytes` (at least [`MIN_CAPACITY`]).
    pub fn with_capacity(bytes: usize) -> Self {
        // Sizes of the form 16k + 8 fill glibc's 16-byte malloc bins exactly.
        let cap = bytes.max(MIN_CAPACITY).div_ceil(16) * 16 + 8;
        let mut buf = Vec::with_capacity(cap);
        buf.extend_from_slice(&[0, 0]);
        Self {
            w: BitWriter { buf, free: 0 },
            count: 0,
            t: 0,
            delta: 0,
            v: 0,
            leading: 0xff,
            trailing: 0,
        }
    }

    /// Reopens an encoded chunk for appending, restoring the encoder state by decoding it.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StorageError> {
        let mut it = XorIter::new(bytes)?;
        for s in it.by_ref() {
            s?;
        }
        let free = ((8 - (it.r.pos % 8)) % 8) as u8;
        let used = it.r.pos.div_ceil(8) + HEADER;
        if used > bytes.len() {
            return Err(StorageError::Corrupt(
                "chunk shorter than its bit stream".into(),
            ));
        }
        Ok(Self {
            w: BitWriter {
                buf: bytes[..used].to_vec(),
                free,
            },
            count: it.total,
            t: it.t,
            delta: it.delta,
            v: it.v,
            leading: it.leading,
            trailing: it.trailing,
        })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether the chunk has no samples.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The first timestamp (meaningless when empty). Decoded from the stream rather than
    /// kept in a field: it is a byte-aligned varint right after the header, and a head holds
    /// one appender per series.
    pub fn min_t(&self) -> i64 {
        let mut u = 0u64;
        for (i, b) in self.w.buf.iter().skip(HEADER).take(10).enumerate() {
            u |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                break;
            }
        }
        unzigzag(u)
    }

    /// The last timestamp (meaningless when empty).
    pub fn max_t(&self) -> i64 {
        self.t
    }

    /// The last value's bits (meaningless when empty).
    pub fn last_bits(&self) -> u64 {
        self.v
    }

    /// Length of the encoded chunk in bytes.
    pub fn encoded_len(&self) -> usize {
        self.w.buf.len()
    }

    fn header(&self) -> [u8; HEADER] {
        self.count.to_be_bytes()
    }

    /// Appends the encoded chunk to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.header());
        out.extend_from_slice(&self.w.buf[HEADER..]);
    }

    /// The encoded chunk, copied.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.w.buf.len());
        self.write_to(&mut v);
        v
    }

    /// The encoded chunk, copied once straight into a shared buffer.
    pub fn to_shared(&self) -> std::sync::Arc<[u8]> {
        // A chain of exact-size slice iterators is collected with one allocation.
        self.header()
            .iter()
            .chain(&self.w.buf[HEADER..])
            .copied()
            .collect()
    }

    /// Heap bytes held (for memory accounting).
    pub fn capacity(&self) -> usize {
        self.w.buf.capacity()
    }

    /// The encoded chunk, in the appender's own buffer.
    pub fn into_bytes(mut self) -> Vec<u8> {
        let h = self.header();
        self.w.buf[..HEADER].copy_from_slice(&h);
        self.w.buf
    }

    /// Appends a sample. The caller guarantees timestamps are strictly increasing and that
    /// the chunk holds fewer than [`MAX_CHUNK_SAMPLES`]; both are checked in debug builds.
    pub fn append(&mut self, t: i64, v: f64) {
        debug_assert!((self.count as usize) < MAX_CHUNK_SAMPLES);
        let bits = v.to_bits();
        match self.count {
            0 => {
                self.w.varint(zigzag(t));
                self.w.write(bits, 64);
            }
            1 => {
                let d = t.wrapping_sub(self.t);
                self.w.varint(zigzag(d));
                self.write_xor(bits);
                self.delta = d;
            }
            _ => {
                let d = t.wrapping_sub(self.t);
                let dod = d.wrapping_sub(self.delta);
                self.w.dod(dod);
                self.write_xor(bits);
                self.delta = d;
            }
        }
        self.t = t;
        self.v = bits;
        self.count += 1;
    }

    fn write_xor(&mut self, bits: u64) {
        let x = bits ^ self.v;
        if x == 0 {
            self.w.write(0, 1);
            return;
        }
        self.w.write(1, 1);
        let leading = (x.leading_zeros() as u8).min(31);
        let trailing = x.trailing_zeros() as u8;
        if self.leading != 0xff && leading >= self.leading && trailing >= self.trailing {
            self.w.write(0, 1);
            let sig = 64 - self.leading as u32 - self.trailing as u32;
            self.w.write(x >> self.trailing, sig);
        } else {
            self.leading = leading;
            self.trailing = trailing;
            self.w.write(1, 1);
            self.w.write(leading as u64, 5);
            let sig = 64 - leading as u32 - trailing as u32;
            // 64 significant bits do not fit in 6 bits; 0 stands for 64 (sig is never 0 here).
            self.w.write((sig & 63) as u64, 6);
            self.w.write(x >> trailing, sig);
        }
    }
}

/// Decodes a chunk sample by sample.
#[derive(Debug)]
pub struct XorIter<'a> {
    r: BitReader<'a>,
    total: u16,
    read: u16,
    t: i64,
    delta: i64,
    v: u64,
    leading: u8,
    trailing: u8,
    failed: bool,
}

impl<'a> XorIter<'a> {
    /// A decoder over an encoded chunk.
    pub fn new(bytes: &'a [u8]) -> Result<Self, StorageError> {
        if bytes.len() < HEADER {
            return Err(StorageError::Corrupt(
                "chunk shorter than its header".into(),
            ));
        }
        let total = u16::from_be_bytes([bytes[0], bytes[1]]);
        Ok(Self {
            r: BitReader {
                data: &bytes[HEADER..],
                pos: 0,
            },
            total,
            read: 0,
            t: 0,
            delta: 0,
            v: 0,
            leading: 0xff,
            trailing: 0,
            failed: false,
        })
    }

    /// Number of samples the header declares.
    pub fn declared_len(&self) -> usize {
        self.total as usize
    }

    fn step(&mut self) -> Option<Sample> {
        match self.read {
            0 => {
                self.t = unzigzag(self.r.read_varint()?);
                self.v = self.r.read_bits(64)?;
            }
            1 => {
                self.delta = unzigzag(self.r.read_varint()?);
                self.t = self.t.wrapping_add(self.delta);
                self.read_xor()?;
            }
            _ => {
                let dod = self.r.read_dod()?;
                self.delta = self.delta.wrapping_add(dod);
                self.t = self.t.wrapping_add(self.delta);
                self.read_xor()?;
            }
        }
        self.read += 1;
        Some(Sample {
            t: self.t,
            v: f64::from_bits(self.v),
        })
    }

    fn read_xor(&mut self) -> Option<()> {
        if !self.r.read_bit()? {
            return Some(());
        }
        if self.r.read_bit()? {
            self.leading = self.r.read_bits(5)? as u8;
            let mut sig = self.r.read_bits(6)? as u8;
            if sig == 0 {
                sig = 64;
            }
            if self.leading as u32 + sig as u32 > 64 {
                return None;
            }
            self.trailing = 64 - self.leading - sig;
        } else if self.leading == 0xff {
            return None;
        }
        let sig = 64 - self.leading as u32 - self.trailing as u32;
        let x = self.r.read_bits(sig)?;
        self.v ^= x << self.trailing;
        Some(())
    }
}

impl Iterator for XorIter<'_> {
    type Item = Result<Sample, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.read >= self.total {
            return None;
        }
        match self.step() {
            Some(s) => Some(Ok(s)),
            None => {
                self.failed = true;
                Some(Err(StorageError::Corrupt(format!(
                    "chunk truncated at sample {} of {}",
                    self.read, self.total
                ))))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.total - self.read.min(self.total)) as usize;
        (0, Some(left))
    }
}

/// A decoder for either chunk encoding.
#[derive(Debug)]
pub enum ChunkIter<'a> {
    /// Gorilla XOR chunk.
    Xor(XorIter<'a>),
    /// Decimal chunk.
    Decimal(crate::decimal::DecimalIter<'a>),
}

impl Iterator for ChunkIter<'_> {
    type Item = Result<Sample, StorageError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            ChunkIter::Xor(it) => it.next(),
            ChunkIter::Decimal(it) => it.next(),
        }
    }
}

/// A decoder over `bytes` in `encoding`.
pub fn iter(encoding: crate::ChunkEncoding, bytes: &[u8]) -> Result<ChunkIter<'_>, StorageError> {
    Ok(match encoding {
        crate::ChunkEncoding::Xor => ChunkIter::Xor(XorIter::new(bytes)?),
        crate::ChunkEncoding::Decimal => {
            ChunkIter::Decimal(crate::decimal::DecimalIter::new(bytes)?)
        }
    })
}

/// Seals an open chunk: re-encodes it as a decimal chunk when every value is an exact short
/// decimal and that is smaller, else keeps the XOR bytes.
pub fn seal(open: XorAppender) -> crate::ChunkData {
    let (min_t, max_t) = (open.min_t(), open.max_t());
    let xor = open.into_bytes();
    let samples: Result<Vec<Sample>, StorageError> = match XorIter::new(&xor) {
        Ok(it) => it.collect(),
        Err(e) => Err(e),
    };
    if let Ok(samples) = samples
        && let Some(dec) = crate::decimal::encode(&samples)
        && dec.len() < xor.len()
    {
        return crate::ChunkData {
            min_t,
            max_t,
            encoding: crate::ChunkEncoding::Decimal,
            bytes: std::sync::Arc::from(dec),
        };
    }
    crate::ChunkData {
        min_t,
        max_t,
        encoding: crate::ChunkEncoding::Xor,
        // `Arc::from` copies into a fresh exact-size allocation, so there is nothing to shrink.
        bytes: std::sync::Arc::from(xor),
    }
}

/// The sample count a chunk's header declares, without decoding.
pub fn chunk_len(bytes: &[u8]) -> usize {
    if bytes.len() < HEADER {
        0
    } else {
        u16::from_be_bytes([bytes[0], bytes[1]]) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(samples: &[(i64, u64)]) {
        let mut a = XorAppender::new();
        for &(t, v) in samples {
            a.append(t, f64::from_bits(v));
        }
        let bytes = a.to_bytes();
        let got: Vec<(i64, u64)> = XorIter::new(&bytes)
            .unwrap()
            .map(|s| s.map(|s| (s.t, s.v.to_bits())).unwrap())
            .collect();
        assert_eq!(got, samples);
        // Every way out writes the same header and stream.
        assert_eq!(chunk_len(&bytes), samples.len());
        assert_eq!(a.encoded_len(), bytes.len());
        assert_eq!(&a.to_shared()[..], &bytes[..]);
        let mut out = vec![7];
        a.write_to(&mut out);
        assert_eq!(&out[1..], &bytes[..]);
        assert_eq!(a.clone().into_bytes(), bytes);
        // Reopening and continuing must give the same bytes as appending in one go.
        if samples.len() >= 2 {
            let (head, tail) = samples.split_at(samples.len() / 2);
            let mut b = XorAppender::new();
            for &(t, v) in head {
                b.append(t, f64::from_bits(v));
            }
            let mut c = XorAppender::from_bytes(&b.to_bytes()).unwrap();
            for &(t, v) in tail {
                c.append(t, f64::from_bits(v));
            }
            assert_eq!(c.to_bytes(), bytes);
        }
    }

    fn special_bits() -> impl Strategy<Value = u64> {
        prop_oneof![
            any::<u64>(),
            Just(trawl_model::STALE_NAN_BITS),
            Just(f64::NAN.to_bits()),
            Just(0x7ff8_0000_0000_0001),
            Just(0xfff0_0000_0000_0001),
            Just(f64::INFINITY.to_bits()),
            Just(f64::NEG_INFINITY.to_bits()),
            Just((-0.0f64).to_bits()),
            Just(0.0f64.to_bits()),
            (0u32..1000).prop_map(|i| (i as f64).to_bits()),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_samples_roundtrip(mut ts in proptest::collection::vec(any::<i64>(), 0..300),
                                       vs in proptest::collection::vec(special_bits(), 300)) {
            ts.sort_unstable();
            ts.dedup();
            let samples: Vec<(i64, u64)> = ts.iter().copied().zip(vs).collect();
            roundtrip(&samples);
        }

        #[test]
        fn regular_scrapes_roundtrip(start in -1_000_000_000_000i64..4_000_000_000_000,
                                     jitter in proptest::collection::vec(-2000i64..2000, 1..250),
                                     vs in proptest::collection::vec(special_bits(), 250)) {
            let mut t = start;
            let mut samples = Vec::new();
            for (j, v) in jitter.iter().zip(vs) {
                t += 15_000 + j;
                samples.push((t, v));
            }
            roundtrip(&samples);
        }
    }

    #[test]
    fn special_values_are_bit_exact() {
        let vals = [
            trawl_model::STALE_NAN_BITS,
            (-0.0f64).to_bits(),
            f64::INFINITY.to_bits(),
            f64::NEG_INFINITY.to_bits(),
            0x7ff8_dead_beef_0001,
            1.0f64.to_bits(),
            trawl_model::STALE_NAN_BITS,
        ];
        let samples: Vec<(i64, u64)> = vals
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as i64 * 1000, v))
            .collect();
        roundtrip(&samples);
    }

    #[test]
    fn extreme_timestamps() {
        roundtrip(&[(i64::MIN, 1), (-1, 2), (0, 3), (i64::MAX, 4)]);
    }

    #[test]
    fn regular_series_is_compact() {
        let mut a = XorAppender::new();
        for i in 0..120 {
            a.append(1_700_000_000_000 + i * 15_000, (i * 3) as f64);
        }
        // Constant intervals cost one bit; slowly growing counters a few bits.
        assert!(a.encoded_len() < 120 * 3, "{} bytes", a.encoded_len());
    }

    #[test]
    fn truncated_chunk_is_an_error_not_a_panic() {
        let mut a = XorAppender::new();
        for i in 0..50 {
            a.append(i * 1000, i as f64 * 1.5);
        }
        let bytes = a.to_bytes();
        for cut in 0..bytes.len() {
            let it = XorIter::new(&bytes[..cut]);
            if let Ok(it) = it {
                let results: Vec<_> = it.collect();
                assert!(results.iter().any(|r| r.is_err()) || results.len() < 50);
            }
        }
    }
}
