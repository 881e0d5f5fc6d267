//! What the engine benchmarks share: a heap-counting allocator, a small TCP
//! packet, numbered clients and a wrr service.
#![allow(dead_code)]

use lvs_core::wire::checksum;
use lvs_core::{DestConfig, Engine, Forward, ServiceKey};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts live heap bytes, to report the memory cost of a connection entry.
pub struct Counting;
/// Live heap bytes.
pub static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counter is only bookkeeping.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { std::alloc::System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: p was allocated by System with layout l.
        unsafe { std::alloc::System.dealloc(p, l) }
    }
    // Forwarded too (the default would allocate, copy and free), so that a
    // growing 1 GB slab is moved by mremap as in lvsd, not copied.
    unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, new: usize) -> *mut u8 {
        // SAFETY: p was allocated by System with layout l; the caller
        // guarantees `new` is a valid size for l's alignment.
        let q = unsafe { std::alloc::System.realloc(p, l, new) };
        if !q.is_null() {
            LIVE.fetch_add(new, Ordering::Relaxed);
            LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        }
        q
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

pub const VIP: [u8; 4] = [198, 18, 0, 100];

/// A 64-byte-frame-sized TCP packet (IP 20 + TCP 20 + 6 payload).
pub fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: u8) -> [u8; 46] {
    let mut v = [0u8; 46];
    v[0] = 0x45;
    v[2..4].copy_from_slice(&46u16.to_be_bytes());
    v[8] = 64;
    v[9] = 6;
    v[12..16].copy_from_slice(&src);
    v[16..20].copy_from_slice(&dst);
    v[20..22].copy_from_slice(&sport.to_be_bytes());
    v[22..24].copy_from_slice(&dport.to_be_bytes());
    v[32] = 5 << 4;
    v[33] = flags;
    let sum = checksum::pseudo_v4(src, dst, 6, 26);
    let c = !checksum::fold(checksum::add_bytes(sum, &v[20..]));
    v[36..38].copy_from_slice(&c.to_be_bytes());
    let hc = checksum::checksum(&v[..20]);
    v[10..12].copy_from_slice(&hc.to_be_bytes());
    v
}

/// The first client address, 198.18.128.0.
pub const CLIENT_BASE: u32 = 0xC612_8000;

/// Client number `i` as (address from 198.18.128.0 up, port 1024..17408).
pub fn client(i: u32) -> ([u8; 4], u16) {
    let host = CLIENT_BASE + (i >> 14);
    (host.to_be_bytes(), 1024 + (i & 0x3fff) as u16)
}

/// An engine with a wrr service on VIP:80 and `dests` real servers.
pub fn engine_with(dests: u8) -> Engine {
    engine_forwarding(dests, Forward::Masq, Default::default())
}

/// An engine with a wrr service on VIP:80 and `dests` real servers reached
/// with `forward` (and `tunnel`, for tunnels).
pub fn engine_forwarding(dests: u8, forward: Forward, tunnel: lvs_core::Tunnel) -> Engine {
    let mut e = Engine::new(0x5eed);
    let key = ServiceKey {
        protocol: 6,
        addr: Ipv4Addr::from(VIP).into(),
        port: 80,
    };
    e.add_service(key, "wrr", 0).unwrap();
    for d in 0..dests {
        let cfg = DestConfig {
            tunnel,
            addr: Ipv4Addr::new(198, 18, 1, 11 + d).into(),
            port: 80,
            forward,
            weight: 1 + i32::from(d % 3),
            u_threshold: 0,
            l_threshold: 0,
        };
        e.add_dest(key, cfg).unwrap();
    }
    e
}

/// The IPv6 VIP of the IPv6 benchmarks, 2001:db8::10.
pub const VIP6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// The same TCP packet as `tcp` over IPv6 (IPv6 40 + TCP 20 + 6 payload).
pub fn tcp6(src: [u8; 16], sport: u16, dst: [u8; 16], dport: u16, flags: u8) -> [u8; 66] {
    let mut v = [0u8; 66];
    v[0] = 0x60;
    v[4..6].copy_from_slice(&26u16.to_be_bytes());
    v[6] = 6;
    v[7] = 64;
    v[8..24].copy_from_slice(&src);
    v[24..40].copy_from_slice(&dst);
    v[40..42].copy_from_slice(&sport.to_be_bytes());
    v[42..44].copy_from_slice(&dport.to_be_bytes());
    v[52] = 5 << 4;
    v[53] = flags;
    let sum = checksum::pseudo_v6(src, dst, 6, 26);
    let c = !checksum::fold(checksum::add_bytes(sum, &v[40..]));
    v[56..58].copy_from_slice(&c.to_be_bytes());
    v
}

/// Client number `i` over IPv6: 2001:db8:8000::/64 hosts, ports as `client`.
pub fn client6(i: u32) -> ([u8; 16], u16) {
    let mut a = [
        0x20, 0x01, 0x0d, 0xb8, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    a[12..16].copy_from_slice(&(i >> 14).to_be_bytes());
    (a, 1024 + (i & 0x3fff) as u16)
}

/// `engine_forwarding` for the IPv6 VIP and real servers 2001:db8:1::11…
pub fn engine_forwarding6(dests: u8, forward: Forward) -> Engine {
    let mut e = Engine::new(0x5eed);
    let key = ServiceKey {
        protocol: 6,
        addr: std::net::Ipv6Addr::from(VIP6).into(),
        port: 80,
    };
    e.add_service(key, "wrr", 0).unwrap();
    for d in 0..dests {
        let cfg = DestConfig {
            tunnel: Default::default(),
            addr: std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x11 + u16::from(d)).into(),
            port: 80,
            forward,
            weight: 1 + i32::from(d % 3),
            u_threshold: 0,
            l_threshold: 0,
        };
        e.add_dest(key, cfg).unwrap();
    }
    e
}
