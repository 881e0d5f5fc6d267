//! Connection synchronisation (sync-protocol.md): the wire codec, what a
//! master sends when, and how a backup applies what it receives.

pub mod codec;
