//! Control protocol between `lvsd` and `lvsadm`, and ipvsadm-compatible text renderings.

pub mod proto;

pub use proto::*;

/// Default path of the control socket, shared by `lvsd` and `lvsadm`.
pub const DEFAULT_CONTROL_PATH: &str = "/run/lvsd/control.sock";
