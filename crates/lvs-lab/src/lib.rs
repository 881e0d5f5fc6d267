//! lvs-lab
