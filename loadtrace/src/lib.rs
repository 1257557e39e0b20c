//! loadtrace: attributes the Linux load average to the processes that make it.
//!
//! Data flows one way: kernel programs -> maps and ring buffer ([`tracer`]) -> a pure
//! accounting [`model`] -> [`view`]s.

pub mod app;
pub mod btf_layout;
pub mod cli;
pub mod load_samples;
pub mod map_batch;
pub mod model;
pub mod preflight;
pub mod procfs;
pub mod tracer;
pub mod view;
