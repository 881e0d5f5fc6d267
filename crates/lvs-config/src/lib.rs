//! lvs-config
