//! The library half of `spray-cli`: what the `spray` binary and the Python module
//! (`crates/spray-py`) share — the operations on values ([`front`]) and how an error reads
//! ([`errors`]). The binary adds the command line (clap) and the files.

pub mod errors;
pub mod front;
