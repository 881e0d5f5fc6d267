//! `lvs-core`: the semantics of Linux IPVS as a sans-IO engine.
//!
//! Nothing here opens a socket, reads a clock or draws a random number: the
//! caller passes packets, the time (milliseconds on any monotonic clock) and
//! seeds in, and gets verdicts and rewritten packets out. See `Engine`.

pub mod conn;
pub mod defense;
pub mod engine;
pub mod frag;
pub mod nat;
pub mod proto;
pub mod rng;
pub mod sched;
pub mod service;
pub mod slab;
pub mod stats;
#[cfg(test)]
mod stats_tests;
pub mod sync;
pub mod sysctl;
pub mod wire;
pub mod xmit;

pub use engine::{ControlError, DestConfig, DropReason, Engine, Verdict};
pub use service::{Flow, Forward, ServiceKey, ServiceOptions, Tunnel, TunnelCsum, TunnelType};
