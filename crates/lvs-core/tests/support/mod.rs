//! Packet builders and small helpers shared by the engine integration tests.
#![allow(dead_code)]

use lvs_core::proto::sctp;
use lvs_core::wire::checksum;
use lvs_core::wire::ipproto;
use lvs_core::wire::ipv4::Ipv4Packet;
use std::net::{IpAddr, Ipv4Addr};

/// An IPv4 address from octets.
pub fn ip(a: [u8; 4]) -> IpAddr {
    Ipv4Addr::from(a).into()
}

/// An IPv4 header for `protocol` around `l4`, with its checksum.
fn ipv4(protocol: u8, src: [u8; 4], dst: [u8; 4], l4: &[u8]) -> Vec<u8> {
    let total = 20 + l4.len();
    let mut v = vec![0u8; 20];
    v[0] = 0x45;
    v[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    v[6] = 0x40;
    v[8] = 64;
    v[9] = protocol;
    v[12..16].copy_from_slice(&src);
    v[16..20].copy_from_slice(&dst);
    v.extend_from_slice(l4);
    let mut p = Ipv4Packet::new_checked(&mut v[..]).unwrap();
    p.fill_checksum();
    v
}

/// Fills the TCP/UDP checksum of an IPv4 packet built by this module.
fn fill_l4_checksum(v: &mut [u8], off: usize) {
    let p = Ipv4Packet::new_checked(&*v).unwrap();
    let sum = checksum::pseudo_v4(
        p.src_bytes(),
        p.dst_bytes(),
        p.protocol(),
        (v.len() - 20) as u16,
    );
    let c = !checksum::fold(checksum::add_bytes(sum, &v[20..]));
    v[20 + off..22 + off].copy_from_slice(&c.to_be_bytes());
}

/// A TCP segment with `flags` and a 4-byte payload.
pub fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: u8) -> Vec<u8> {
    let mut l4 = vec![0u8; 24];
    l4[0..2].copy_from_slice(&sport.to_be_bytes());
    l4[2..4].copy_from_slice(&dport.to_be_bytes());
    l4[12] = 5 << 4;
    l4[13] = flags;
    l4[20..].copy_from_slice(b"ping");
    let mut v = ipv4(ipproto::TCP, src, dst, &l4);
    fill_l4_checksum(&mut v, 16);
    v
}

/// A TCP segment (with `flags`) or UDP datagram, 4-byte payload.
pub fn packet(
    protocol: u8,
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    flags: u8,
) -> Vec<u8> {
    if protocol == ipproto::TCP {
        tcp(src, sport, dst, dport, flags)
    } else {
        udp(src, sport, dst, dport)
    }
}

/// A UDP datagram with a 4-byte payload.
pub fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut l4 = vec![0u8; 12];
    l4[0..2].copy_from_slice(&sport.to_be_bytes());
    l4[2..4].copy_from_slice(&dport.to_be_bytes());
    l4[4..6].copy_from_slice(&12u16.to_be_bytes());
    l4[8..].copy_from_slice(b"ping");
    let mut v = ipv4(ipproto::UDP, src, dst, &l4);
    fill_l4_checksum(&mut v, 6);
    v
}

/// An SCTP packet with one chunk per entry of `chunks` (type, value
/// length), CRC32c filled.
pub fn sctp_packet(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, chunks: &[u8]) -> Vec<u8> {
    let mut l4 = vec![0u8; 12];
    l4[0..2].copy_from_slice(&sport.to_be_bytes());
    l4[2..4].copy_from_slice(&dport.to_be_bytes());
    l4[4..8].copy_from_slice(&0x5566_7788u32.to_be_bytes());
    for &t in chunks {
        let value: &[u8] = if t == sctp::chunk::INIT {
            &[
                0x11, 0x22, 0x33, 0x44, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 3, 0xe8,
            ]
        } else {
            b"DATA"
        };
        l4.extend_from_slice(&[t, 0]);
        l4.extend_from_slice(&((4 + value.len()) as u16).to_be_bytes());
        l4.extend_from_slice(value);
    }
    assert!(sctp::fill_checksum(&mut l4));
    ipv4(ipproto::SCTP, src, dst, &l4)
}

/// Whether the IPv4 header checksum and the TCP/UDP checksum verify.
pub fn valid(v: &[u8]) -> bool {
    let p = Ipv4Packet::new_checked(v).unwrap();
    if p.protocol() == ipproto::SCTP {
        return p.verify_checksum() && sctp::verify_checksum(&v[20..]);
    }
    let sum = checksum::pseudo_v4(
        p.src_bytes(),
        p.dst_bytes(),
        p.protocol(),
        (v.len() - 20) as u16,
    );
    p.verify_checksum() && checksum::fold(checksum::add_bytes(sum, &v[20..])) == 0xffff
}

/// (destination address, destination port) of an IPv4 TCP/UDP/SCTP packet.
pub fn dst_of(v: &[u8]) -> ([u8; 4], u16) {
    (
        [v[16], v[17], v[18], v[19]],
        u16::from_be_bytes([v[22], v[23]]),
    )
}
