//! `trawl-proto`: the gRPC contract of Trawl, generated from `proto/` at build time.
//!
//! Job: give every role one set of prost messages and tonic clients/servers for the
//! `trawl.v1` package (`Query`, `Store`, `Coordinator`, `Raft`), plus the conversions between
//! the wire types and `trawl-model`'s. The `.proto` files in the repository's `proto/` are the
//! only source of the contract; `build.rs` compiles all of them with `protox`, so building
//! needs no system `protoc`.
//!
//! Invariants (stated by the contract, see `proto/trawl/v1/types.proto`):
//! - timestamps are milliseconds since the Unix epoch;
//! - label sets are sorted by name, names unique, no empty values: [`labels_from_proto`]
//!   re-establishes that for input from the network instead of trusting the peer;
//! - a staleness marker keeps its exact NaN bit pattern (protobuf `double` is the IEEE bits).

pub mod server;
pub mod tls;

/// Version 1 of the contract (proto package `trawl.v1`).
pub mod v1 {
    #![allow(missing_docs, missing_debug_implementations, clippy::all)]
    tonic::include_proto!("trawl.v1");
}

/// A wire value that has no `trawl-model` equivalent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConvertError {
    /// A matcher's type is not one of the enum's values.
    #[error("unknown matcher type {0}")]
    MatcherType(i32),
    /// A regex matcher's pattern does not compile.
    #[error("{0}")]
    Matcher(#[from] trawl_model::ModelError),
    /// A chunk's encoding is not one this build decodes.
    #[error("unknown chunk encoding {0}")]
    ChunkEncoding(i32),
    /// A chunk's time bounds are inverted.
    #[error("chunk bounds inverted: min {min} > max {max}")]
    ChunkBounds { min: i64, max: i64 },
}

/// The wire form of a stored chunk: the bytes are sent as stored, never re-encoded.
pub fn chunk_to_proto(c: &trawl_storage::ChunkData) -> v1::Chunk {
    let encoding = match c.encoding {
        trawl_storage::ChunkEncoding::Xor => v1::chunk::Encoding::Xor,
        trawl_storage::ChunkEncoding::Decimal => v1::chunk::Encoding::Decimal,
    };
    v1::Chunk {
        min_time_ms: c.min_t,
        max_time_ms: c.max_t,
        encoding: encoding as i32,
        data: c.bytes.to_vec(),
    }
}

/// A chunk from the wire. Only the encoding and bounds are checked here; a corrupt body
/// fails when its samples are decoded, as a stored one would.
pub fn chunk_from_proto(c: v1::Chunk) -> Result<trawl_storage::ChunkData, ConvertError> {
    let encoding = match v1::chunk::Encoding::try_from(c.encoding) {
        Ok(v1::chunk::Encoding::Xor) => trawl_storage::ChunkEncoding::Xor,
        Ok(v1::chunk::Encoding::Decimal) => trawl_storage::ChunkEncoding::Decimal,
        Ok(v1::chunk::Encoding::Unknown) | Err(_) => {
            return Err(ConvertError::ChunkEncoding(c.encoding));
        }
    };
    if c.min_time_ms > c.max_time_ms {
        return Err(ConvertError::ChunkBounds {
            min: c.min_time_ms,
            max: c.max_time_ms,
        });
    }
    Ok(trawl_storage::ChunkData {
        min_t: c.min_time_ms,
        max_t: c.max_time_ms,
        encoding,
        bytes: c.data.into(),
    })
}

/// Wire labels of a label set (already sorted).
pub fn labels_to_proto(l: &trawl_model::Labels) -> Vec<v1::Label> {
    l.iter()
        .map(|l| v1::Label {
            name: l.name.clone(),
            value: l.value.clone(),
        })
        .collect()
}

/// A label set from wire labels: sorted, last duplicate wins, empty values dropped, as
/// `Labels::from_vec` does, so a misbehaving peer cannot break the sort invariant.
pub fn labels_from_proto(l: Vec<v1::Label>) -> trawl_model::Labels {
    let sorted =
        l.windows(2).all(|w| w[0].name < w[1].name) && l.iter().all(|l| !l.value.is_empty());
    let v: Vec<trawl_model::Label> = l
        .into_iter()
        .map(|l| trawl_model::Label::new(l.name, l.value))
        .collect();
    if sorted {
        trawl_model::Labels::from_sorted(v)
    } else {
        trawl_model::Labels::from_vec(v)
    }
}

impl From<trawl_model::Sample> for v1::Sample {
    fn from(s: trawl_model::Sample) -> Self {
        Self {
            timestamp_ms: s.t,
            value: Some(s.v),
        }
    }
}

impl From<v1::Sample> for trawl_model::Sample {
    fn from(s: v1::Sample) -> Self {
        Self::new(s.timestamp_ms, s.value.unwrap_or(0.0))
    }
}

impl From<&trawl_model::Matcher> for v1::Matcher {
    fn from(m: &trawl_model::Matcher) -> Self {
        use trawl_model::MatchOp;
        let t = match m.op {
            MatchOp::Equal => v1::matcher::Type::Eq,
            MatchOp::NotEqual => v1::matcher::Type::Neq,
            MatchOp::RegexMatch => v1::matcher::Type::Re,
            MatchOp::RegexNoMatch => v1::matcher::Type::Nre,
        };
        Self {
            r#type: t as i32,
            name: m.name.clone(),
            value: m.value.clone(),
        }
    }
}

impl TryFrom<v1::Matcher> for trawl_model::Matcher {
    type Error = ConvertError;
    fn try_from(m: v1::Matcher) -> Result<Self, ConvertError> {
        use trawl_model::MatchOp;
        let op = match v1::matcher::Type::try_from(m.r#type) {
            Ok(v1::matcher::Type::Eq) => MatchOp::Equal,
            Ok(v1::matcher::Type::Neq) => MatchOp::NotEqual,
            Ok(v1::matcher::Type::Re) => MatchOp::RegexMatch,
            Ok(v1::matcher::Type::Nre) => MatchOp::RegexNoMatch,
            Err(_) => return Err(ConvertError::MatcherType(m.r#type)),
        };
        Ok(trawl_model::Matcher::new(op, m.name, m.value)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use trawl_model::{Labels, MatchOp, Matcher, STALE_NAN, STALE_NAN_BITS};

    #[test]
    fn stale_marker_and_special_floats_keep_their_bits_on_the_wire() {
        let vals = [
            STALE_NAN,
            f64::NAN,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e-310,
        ];
        let msg = v1::TimeSeries {
            labels: labels_to_proto(&Labels::from_pairs([("__name__", "m")])),
            samples: vals
                .iter()
                .enumerate()
                .map(|(i, v)| trawl_model::Sample::new(i as i64, *v).into())
                .collect(),
        };
        let back = v1::TimeSeries::decode(msg.encode_to_vec().as_slice()).unwrap();
        let bits: Vec<u64> = back
            .samples
            .iter()
            .map(|s| s.value.unwrap_or(0.0).to_bits())
            .collect();
        let want: Vec<u64> = vals.iter().map(|v| v.to_bits()).collect();
        assert_eq!(bits, want);
        assert_eq!(bits[0], STALE_NAN_BITS);
    }

    #[test]
    fn chunks_cross_the_wire_unchanged_and_bad_ones_are_rejected() {
        use trawl_storage::{ChunkData, ChunkEncoding};
        for encoding in [ChunkEncoding::Xor, ChunkEncoding::Decimal] {
            let c = ChunkData {
                min_t: 10,
                max_t: 20,
                encoding,
                bytes: vec![1u8, 2, 3].into(),
            };
            let wire = v1::Chunk::decode(chunk_to_proto(&c).encode_to_vec().as_slice()).unwrap();
            assert_eq!(chunk_from_proto(wire).unwrap(), c);
        }
        let unknown = v1::Chunk {
            encoding: 0,
            ..Default::default()
        };
        assert_eq!(
            chunk_from_proto(unknown),
            Err(ConvertError::ChunkEncoding(0))
        );
        let inverted = v1::Chunk {
            min_time_ms: 5,
            max_time_ms: 4,
            encoding: v1::chunk::Encoding::Xor as i32,
            ..Default::default()
        };
        assert!(matches!(
            chunk_from_proto(inverted),
            Err(ConvertError::ChunkBounds { .. })
        ));
    }

    #[test]
    fn labels_from_the_wire_are_normalised() {
        let l = Labels::from_pairs([("b", "2"), ("a", "1")]);
        assert_eq!(labels_from_proto(labels_to_proto(&l)), l);
        let unsorted = vec![
            v1::Label {
                name: "z".into(),
                value: "1".into(),
            },
            v1::Label {
                name: "a".into(),
                value: "".into(),
            },
            v1::Label {
                name: "m".into(),
                value: "x".into(),
            },
            v1::Label {
                name: "m".into(),
                value: "y".into(),
            },
        ];
        assert_eq!(
            labels_from_proto(unsorted),
            Labels::from_pairs([("m", "y"), ("z", "1")])
        );
    }

    #[test]
    fn matchers_round_trip_and_bad_ones_are_rejected() {
        for op in [
            MatchOp::Equal,
            MatchOp::NotEqual,
            MatchOp::RegexMatch,
            MatchOp::RegexNoMatch,
        ] {
            let m = Matcher::new(op, "job", "a|b").unwrap();
            let back = Matcher::try_from(v1::Matcher::from(&m)).unwrap();
            assert_eq!(
                (back.op, back.name.as_str(), back.value.as_str()),
                (op, "job", "a|b")
            );
        }
        let bad = v1::Matcher {
            r#type: 9,
            name: "a".into(),
            value: "b".into(),
        };
        assert_eq!(Matcher::try_from(bad), Err(ConvertError::MatcherType(9)));
        let bad_re = v1::Matcher {
            r#type: v1::matcher::Type::Re as i32,
            name: "a".into(),
            value: "(".into(),
        };
        assert!(matches!(
            Matcher::try_from(bad_re),
            Err(ConvertError::Matcher(_))
        ));
    }
}
