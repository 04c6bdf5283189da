//! placeholder: see Cargo.toml description
