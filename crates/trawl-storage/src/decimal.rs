//! The decimal chunk: a sealed-chunk encoding for series whose values are all decimals with
//! few fraction digits (counters, byte gauges, values rounded to 0.01 — most exporter data).
//!
//! Gorilla's XOR of such floats is mostly mantissa noise. Here every value `v` is stored as an
//! integer `m` with one shared exponent `e` such that `m / 10^e` reproduces `v` bit for bit
//! (checked for every sample at encode time; any failure — NaN, ±Inf, -0.0, too many digits —
//! keeps the XOR encoding). Values are the deltas of `m` in prefix-coded widths; timestamps use
//! the same delta-of-delta buckets as the XOR chunk.
//!
//! Layout: `u16` sample count, `u8` exponent, then a bit stream: first timestamp and first
//! `m` as zig-zag varints, then per later sample a timestamp delta-of-delta bucket (the first
//! delta as a zig-zag varint) and a value code: `0` (same `m` as before) or `1` + 4-bit width class +
//! zig-zag delta of `m` in that width.

use trawl_model::Sample;

use crate::StorageError;
use crate::bits::{BitReader, BitWriter, unzigzag, zigzag};

/// Value-delta widths, one 4-bit class each: fine steps where exporter deltas cluster.
const WIDTHS: [u32; 16] = [2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 28, 32, 44, 64];
const MAX_EXP: i32 = 6;

fn scale(e: i32) -> f64 {
    10f64.powi(e)
}

/// The mantissas of `samples` at the smallest exponent that reproduces every value exactly.
fn mantissas(samples: &[Sample]) -> Option<(i32, Vec<i64>)> {
    'exp: for e in 0..=MAX_EXP {
        let s = scale(e);
        let mut ms = Vec::with_capacity(samples.len());
        for x in samples {
            let m = (x.v * s).round();
            if !m.is_finite() || m.abs() > (1u64 << 53) as f64 {
                continue 'exp;
            }
            // Check through the integer the decoder will see, so -0.0 (which rounds to an
            // integer zero) is refused.
            let mi = m as i64;
            if (mi as f64 / s).to_bits() != x.v.to_bits() {
                continue 'exp;
            }
            ms.push(mi);
        }
        return Some((e, ms));
    }
    None
}

/// Encodes samples (strictly increasing timestamps) as a decimal chunk, or `None` when some
/// value is not an exact short decimal or there are more than `u16::MAX` samples.
pub fn encode(samples: &[Sample]) -> Option<Vec<u8>> {
    let n = u16::try_from(samples.len()).ok()?;
    let (e, ms) = mantissas(samples)?;
    let mut w = BitWriter {
        buf: Vec::with_capacity(3 + samples.len()),
        free: 0,
    };
    w.buf.extend_from_slice(&n.to_be_bytes());
    w.buf.push(e as u8);
    let (mut prev_t, mut prev_d, mut prev_m) = (0i64, 0i64, 0i64);
    for (i, (x, &m)) in samples.iter().zip(&ms).enumerate() {
        match i {
            0 => {
                w.varint(zigzag(x.t));
                w.varint(zigzag(m));
            }
            _ => {
                let d = x.t.wrapping_sub(prev_t);
                if i == 1 {
                    w.varint(zigzag(d));
                } else {
                    let dod = d.wrapping_sub(prev_d);
                    w.dod(dod);
                }
                prev_d = d;
                let dm = m - prev_m;
                if dm == 0 {
                    w.write(0, 1);
                } else {
                    let z = zigzag(dm);
                    let class = WIDTHS
                        .iter()
                        .position(|&b| b == 64 || z < (1u64 << b))
                        .unwrap_or(7);
                    w.write(1, 1);
                    w.write(class as u64, 4);
                    w.write(z, WIDTHS[class]);
                }
            }
        }
        prev_t = x.t;
        prev_m = m;
    }
    Some(w.buf)
}

/// Decodes a decimal chunk sample by sample.
#[derive(Debug)]
pub struct DecimalIter<'a> {
    data: &'a [u8],
    pos: usize,
    total: u16,
    read: u16,
    scale: f64,
    t: i64,
    d: i64,
    m: i64,
    failed: bool,
}

impl<'a> DecimalIter<'a> {
    /// A decoder over an encoded decimal chunk.
    pub fn new(bytes: &'a [u8]) -> Result<Self, StorageError> {
        if bytes.len() < 3 || i32::from(bytes[2]) > MAX_EXP {
            return Err(StorageError::Corrupt("bad decimal chunk header".into()));
        }
        Ok(Self {
            data: &bytes[3..],
            pos: 0,
            total: u16::from_be_bytes([bytes[0], bytes[1]]),
            read: 0,
            scale: scale(i32::from(bytes[2])),
            t: 0,
            d: 0,
            m: 0,
            failed: false,
        })
    }

    fn step(&mut self) -> Option<Sample> {
        let mut r = BitReader {
            data: self.data,
            pos: self.pos,
        };
        if self.read == 0 {
            self.t = unzigzag(r.read_varint()?);
            self.m = unzigzag(r.read_varint()?);
        } else {
            if self.read == 1 {
                self.d = unzigzag(r.read_varint()?);
            } else {
                let dod = r.read_dod()?;
                self.d = self.d.wrapping_add(dod);
            }
            self.t = self.t.wrapping_add(self.d);
            if r.read_bits(1)? == 1 {
                let class = r.read_bits(4)? as usize;
                let z = r.read_bits(WIDTHS[class])?;
                self.m = self.m.wrapping_add(unzigzag(z));
            }
        }
        self.pos = r.pos;
        self.read += 1;
        Some(Sample {
            t: self.t,
            v: self.m as f64 / self.scale,
        })
    }
}

impl Iterator for DecimalIter<'_> {
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
                    "decimal chunk truncated at sample {} of {}",
                    self.read, self.total
                ))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(samples: &[Sample]) -> bool {
        let Some(enc) = encode(samples) else {
            return false;
        };
        let got: Vec<(i64, u64)> = DecimalIter::new(&enc)
            .unwrap()
            .map(|s| s.map(|s| (s.t, s.v.to_bits())).unwrap())
            .collect();
        let want: Vec<(i64, u64)> = samples.iter().map(|s| (s.t, s.v.to_bits())).collect();
        assert_eq!(got, want);
        true
    }

    proptest! {
        #[test]
        fn decimals_roundtrip(mut ts in proptest::collection::vec(any::<i64>(), 1..200),
                              ms in proptest::collection::vec(-1_000_000_000_000i64..1_000_000_000_000, 200),
                              e in 0i32..4) {
            ts.sort_unstable();
            ts.dedup();
            let samples: Vec<Sample> = ts.iter().zip(&ms).map(|(&t, &m)| Sample::new(t, m as f64 / scale(e))).collect();
            prop_assert!(roundtrip(&samples));
        }

        #[test]
        fn arbitrary_floats_roundtrip_or_refuse(vs in proptest::collection::vec(any::<u64>(), 1..50)) {
            let samples: Vec<Sample> = vs.iter().enumerate().map(|(i, &b)| Sample::new(i as i64 * 15_000, f64::from_bits(b))).collect();
            // Either refused (falls back to XOR) or exact.
            let _ = roundtrip(&samples);
        }
    }

    #[test]
    fn specials_are_refused() {
        for v in [
            f64::NAN,
            trawl_model::STALE_NAN,
            f64::INFINITY,
            -0.0,
            0.1 + 0.2,
        ] {
            assert!(
                encode(&[Sample::new(0, 1.0), Sample::new(1, v)]).is_none(),
                "{v}"
            );
        }
        assert!(roundtrip(&[
            Sample::new(0, 0.0),
            Sample::new(1, 100000.37),
            Sample::new(2, -5e-6)
        ]));
    }

    #[test]
    fn counters_are_smaller_than_xor() {
        let mut xor = crate::chunk::XorAppender::new();
        let mut samples = Vec::new();
        let mut v = 123456.78f64;
        for i in 0..120 {
            v = ((v + 3.17 + (i % 7) as f64 * 0.41) * 100.0).round() / 100.0;
            samples.push(Sample::new(1_700_000_000_000 + i * 15_000, v));
            xor.append(1_700_000_000_000 + i * 15_000, v);
        }
        let dec = encode(&samples).unwrap();
        assert!(
            dec.len() * 2 < xor.encoded_len(),
            "decimal {} vs xor {}",
            dec.len(),
            xor.encoded_len()
        );
    }
}
