//! Prometheus's XOR chunk format and the framing of streamed remote-read responses.
//!
//! Trawl's own Gorilla chunks ([`trawl_storage::chunk`]) differ from Prometheus's in one
//! detail (the second sample's timestamp delta is a zig-zag varint there and an unsigned
//! varint here) and may be decimal-encoded, so streamed reads re-encode the samples of the
//! query range into chunks of this format rather than shipping stored bytes.
//!
//! Chunk layout: a 2-byte big-endian sample count, then an MSB-first bit stream: sample 0 as
//! a zig-zag varint timestamp and 64 raw value bits; sample 1 as an unsigned varint delta and
//! an XOR-coded value; later samples as a prefix-coded delta-of-delta (`0`, `10`+14 bits,
//! `110`+17, `1110`+20, `1111`+64) and an XOR-coded value.
//!
//! Frame layout: unsigned varint length of the message, its CRC-32 (Castagnoli) big-endian,
//! then the message bytes.

use trawl_model::Sample;

/// Samples per chunk, as Prometheus cuts its head chunks.
pub const SAMPLES_PER_CHUNK: usize = 120;

#[derive(Debug, Default)]
struct BitWriter {
    buf: Vec<u8>,
    /// Unused low bits of the last byte.
    free: u8,
}

impl BitWriter {
    fn bit(&mut self, b: bool) {
        if self.free == 0 {
            self.buf.push(0);
            self.free = 8;
        }
        self.free -= 1;
        if b && let Some(last) = self.buf.last_mut() {
            *last |= 1 << self.free;
        }
    }

    fn bits(&mut self, v: u64, n: u32) {
        for i in (0..n).rev() {
            self.bit((v >> i) & 1 == 1);
        }
    }

    fn byte(&mut self, b: u8) {
        self.bits(u64::from(b), 8);
    }
}

#[derive(Debug)]
struct BitReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn bit(&mut self) -> Option<bool> {
        let byte = *self.buf.get(self.pos / 8)?;
        let b = (byte >> (7 - (self.pos % 8))) & 1 == 1;
        self.pos += 1;
        Some(b)
    }

    fn bits(&mut self, n: u32) -> Option<u64> {
        let mut v = 0u64;
        for _ in 0..n {
            v = (v << 1) | u64::from(self.bit()?);
        }
        Some(v)
    }

    fn uvarint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.bits(8)?;
            if shift == 63 && b > 1 {
                return None;
            }
            v |= (b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
}

fn uvarint_bytes(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Whether `x` fits the `n`-bit delta-of-delta bucket (Prometheus's asymmetric range).
fn fits(x: i64, n: u32) -> bool {
    -((1i64 << (n - 1)) - 1) <= x && x <= 1i64 << (n - 1)
}

/// Encodes samples (strictly increasing timestamps, at most `u16::MAX`) as one Prometheus XOR
/// chunk.
pub fn encode_chunk(samples: &[Sample]) -> Vec<u8> {
    let n = u16::try_from(samples.len()).unwrap_or(u16::MAX);
    let mut w = BitWriter {
        buf: n.to_be_bytes().to_vec(),
        free: 0,
    };
    let (mut t, mut delta, mut v) = (0i64, 0i64, 0u64);
    let (mut leading, mut trailing) = (0xffu8, 0u8);
    let mut tmp = Vec::with_capacity(10);
    for (i, s) in samples.iter().take(usize::from(n)).enumerate() {
        let bits = s.v.to_bits();
        match i {
            0 => {
                tmp.clear();
                uvarint_bytes(zigzag(s.t), &mut tmp);
                for b in &tmp {
                    w.byte(*b);
                }
                w.bits(bits, 64);
            }
            1 => {
                let d = s.t.wrapping_sub(t);
                tmp.clear();
                uvarint_bytes(d as u64, &mut tmp);
                for b in &tmp {
                    w.byte(*b);
                }
                write_xor(&mut w, bits, v, &mut leading, &mut trailing);
                delta = d;
            }
            _ => {
                let d = s.t.wrapping_sub(t);
                let dod = d.wrapping_sub(delta);
                if dod == 0 {
                    w.bit(false);
                } else if fits(dod, 14) {
                    w.bits(0b10, 2);
                    w.bits(dod as u64, 14);
                } else if fits(dod, 17) {
                    w.bits(0b110, 3);
                    w.bits(dod as u64, 17);
                } else if fits(dod, 20) {
                    w.bits(0b1110, 4);
                    w.bits(dod as u64, 20);
                } else {
                    w.bits(0b1111, 4);
                    w.bits(dod as u64, 64);
                }
                write_xor(&mut w, bits, v, &mut leading, &mut trailing);
                delta = d;
            }
        }
        t = s.t;
        v = bits;
    }
    w.buf
}

fn write_xor(w: &mut BitWriter, new: u64, cur: u64, leading: &mut u8, trailing: &mut u8) {
    let x = new ^ cur;
    if x == 0 {
        w.bit(false);
        return;
    }
    w.bit(true);
    let lz = (x.leading_zeros() as u8).min(31);
    let tz = x.trailing_zeros() as u8;
    if *leading != 0xff && lz >= *leading && tz >= *trailing {
        w.bit(false);
        let sig = 64 - u32::from(*leading) - u32::from(*trailing);
        w.bits(x >> *trailing, sig);
        return;
    }
    *leading = lz;
    *trailing = tz;
    w.bit(true);
    w.bits(u64::from(lz), 5);
    let sig = 64 - u32::from(lz) - u32::from(tz);
    // Six bits cannot hold 64; the format writes 0 for it (sig is never 0 here).
    w.bits(u64::from(sig & 63), 6);
    w.bits(x >> tz, sig);
}

/// Decodes a Prometheus XOR chunk; `None` when it is truncated or malformed.
pub fn decode_chunk(bytes: &[u8]) -> Option<Vec<Sample>> {
    let n = u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]);
    let mut r = BitReader {
        buf: &bytes[2..],
        pos: 0,
    };
    let mut out = Vec::with_capacity(usize::from(n));
    let (mut t, mut delta, mut v) = (0i64, 0i64, 0u64);
    let (mut leading, mut trailing) = (0u32, 0u32);
    for i in 0..n {
        match i {
            0 => {
                t = unzigzag(r.uvarint()?);
                v = r.bits(64)?;
            }
            1 => {
                delta = r.uvarint()? as i64;
                t = t.wrapping_add(delta);
                v = read_xor(&mut r, v, &mut leading, &mut trailing)?;
            }
            _ => {
                let mut prefix = 0;
                while prefix < 4 && r.bit()? {
                    prefix += 1;
                }
                let dod = match prefix {
                    0 => 0,
                    p => {
                        let n = [14, 17, 20, 64][p - 1];
                        let raw = r.bits(n)?;
                        if n < 64 && raw > 1 << (n - 1) {
                            (raw as i64) - (1i64 << n)
                        } else {
                            raw as i64
                        }
                    }
                };
                delta = delta.wrapping_add(dod);
                t = t.wrapping_add(delta);
                v = read_xor(&mut r, v, &mut leading, &mut trailing)?;
            }
        }
        out.push(Sample::new(t, f64::from_bits(v)));
    }
    Some(out)
}

fn read_xor(r: &mut BitReader<'_>, v: u64, leading: &mut u32, trailing: &mut u32) -> Option<u64> {
    if !r.bit()? {
        return Some(v);
    }
    if r.bit()? {
        *leading = r.bits(5)? as u32;
        let mut sig = r.bits(6)? as u32;
        if sig == 0 {
            sig = 64;
        }
        *trailing = 64u32.checked_sub(*leading + sig)?;
    }
    let sig = 64 - *leading - *trailing;
    let bits = r.bits(sig)?;
    Some(v ^ (bits << *trailing))
}

const fn crc32c_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ 0x82f6_3b78
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static CRC32C: [u32; 256] = crc32c_table();

/// CRC-32 with the Castagnoli polynomial, the checksum of streamed read frames.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for b in data {
        c = CRC32C[((c ^ u32::from(*b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// Appends one frame holding `msg` to `out`.
pub fn write_frame(out: &mut Vec<u8>, msg: &[u8]) {
    uvarint_bytes(msg.len() as u64, out);
    out.extend_from_slice(&crc32c(msg).to_be_bytes());
    out.extend_from_slice(msg);
}

/// Splits a stream of frames into messages, checking each checksum.
pub fn read_frames(mut data: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let mut len = 0u64;
        let mut used = 0;
        loop {
            let b = *data.get(used).ok_or("truncated frame length")?;
            if used >= 10 {
                return Err("frame length overflows".into());
            }
            len |= u64::from(b & 0x7f) << (7 * used);
            used += 1;
            if b & 0x80 == 0 {
                break;
            }
        }
        let len = usize::try_from(len).map_err(|_| "frame too long")?;
        let rest = &data[used..];
        if rest.len() < 4 + len {
            return Err("truncated frame".into());
        }
        let want = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let msg = &rest[4..4 + len];
        if crc32c(msg) != want {
            return Err("frame checksum mismatch".into());
        }
        out.push(msg);
        data = &rest[4 + len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(samples: &[Sample]) {
        let enc = encode_chunk(samples);
        let dec = decode_chunk(&enc).expect("decodes");
        assert_eq!(dec, samples);
    }

    #[test]
    fn crc32c_check_value() {
        // The standard check value of CRC-32C.
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn chunk_roundtrips_edge_values_and_deltas() {
        let stale = f64::from_bits(trawl_model::STALE_NAN_BITS);
        let vals = [
            0.0,
            -0.0,
            1.5,
            f64::INFINITY,
            f64::NEG_INFINITY,
            stale,
            f64::NAN,
            1e300,
            -3.25,
            -3.25,
            42.0,
        ];
        // Deltas crossing every delta-of-delta bucket, including the asymmetric bounds.
        let deltas = [
            15_000i64,
            15_000,
            15_001,
            15_000 + 8192,
            15_000 - 8191,
            15_000 + 65_536,
            15_000 - 65_535,
            15_000 + 524_288,
            1 << 40,
            1,
            2,
        ];
        let mut t = -1_000_000i64;
        let mut s = Vec::new();
        for (v, d) in vals.iter().zip(deltas) {
            s.push(Sample::new(t, *v));
            t += d;
        }
        for n in 0..=s.len() {
            roundtrip(&s[..n]);
        }
    }

    #[test]
    fn second_delta_is_an_unsigned_varint() {
        // Prometheus writes the second timestamp's delta as a plain uvarint: 300 = ac 02.
        let enc = encode_chunk(&[Sample::new(0, 1.0), Sample::new(300, 1.0)]);
        // header (2) + varint(0) (1) + 64 value bits (8) = byte 11 starts the delta.
        assert_eq!(&enc[..2], &[0, 2]);
        assert_eq!(enc[11], 0xac);
        assert_eq!(enc[12], 0x02);
    }

    #[test]
    fn truncated_chunk_is_none() {
        let s: Vec<Sample> = (0..50).map(|i| Sample::new(i * 1000, i as f64)).collect();
        let enc = encode_chunk(&s);
        assert!(decode_chunk(&enc[..enc.len() - 3]).is_none());
        assert!(decode_chunk(&[]).is_none());
    }

    #[test]
    fn frames_roundtrip_and_detect_corruption() {
        let mut out = Vec::new();
        write_frame(&mut out, b"hello");
        write_frame(&mut out, &[7u8; 300]);
        let got = read_frames(&out).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], b"hello");
        assert_eq!(got[1], &[7u8; 300][..]);
        let mut bad = out.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(read_frames(&bad).is_err());
        assert!(read_frames(&out[..out.len() - 1]).is_err());
    }
}
