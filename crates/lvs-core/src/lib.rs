//! lvs-core
