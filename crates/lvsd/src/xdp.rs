//! The XDP fast path (`bpf/lvs_xdp.c`): the program, its flow map as lvsd
//! writes it, and the kernel's test run of the program on a frame.
//!
//! The program is built from source by `build.rs` (clang) and loaded with
//! `aya` (the Rust eBPF library of the aya-rs project, MIT/Apache-2.0:
//! pure Rust, no libbpf or C toolchain at run time, maintained, and it
//! reads the BTF map definitions clang writes).
//!
//! `fastpath.rs` attaches it and keeps its flow map (`lvsd --fastpath
//! xdp`).

use std::net::Ipv4Addr;

/// One direction of a connection as the program looks it up: addresses
/// and ports in network order, as they sit in the packet.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowKey {
    saddr: [u8; 4],
    daddr: [u8; 4],
    sport: [u8; 2],
    dport: [u8; 2],
    proto: u8,
    pad: [u8; 3],
}

impl FlowKey {
    pub fn new(proto: u8, src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> FlowKey {
        FlowKey {
            saddr: src.octets(),
            daddr: dst.octets(),
            sport: sport.to_be_bytes(),
            dport: dport.to_be_bytes(),
            proto,
            pad: [0; 3],
        }
    }
}

/// Which side of the packet a flow rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// NAT IN: the destination becomes the real server.
    Destination,
    /// NAT OUT: the source becomes the VIP.
    Source,
    /// Direct routing: neither (TTL and MACs only).
    Neither,
}

/// What the program does with a flow's packets, and its counters.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowAction {
    addr: [u8; 4],
    port: [u8; 2],
    side: u8,
    pad0: u8,
    /// Egress interface index.
    pub oif: u32,
    pub dmac: [u8; 6],
    pub smac: [u8; 6],
    /// Packets longer than this go to the engine.
    pub mtu: u16,
    pad1: u16,
    pad2: u32,
    pub packets: u64,
    pub bytes: u64,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) of the last packet.
    pub last_ns: u64,
}

impl FlowAction {
    /// Rewrite `side` to `addr:port`, leave by `oif` from `smac` to `dmac`.
    pub fn new(
        side: Side,
        addr: Ipv4Addr,
        port: u16,
        oif: u32,
        smac: [u8; 6],
        dmac: [u8; 6],
        mtu: u16,
    ) -> FlowAction {
        FlowAction {
            addr: addr.octets(),
            port: port.to_be_bytes(),
            side: match side {
                Side::Destination => 0,
                Side::Source => 1,
                Side::Neither => 2,
            },
            oif,
            dmac,
            smac,
            mtu,
            ..FlowAction::default()
        }
    }
}

// SAFETY: both are repr(C) with explicit padding fields (no implicit
// padding: FlowKey is 16 bytes, FlowAction 56, as in lvs_xdp.c), and every
// bit pattern is a valid value of their integer and byte-array fields.
unsafe impl aya::Pod for FlowKey {}
// SAFETY: as above.
unsafe impl aya::Pod for FlowAction {}

/// XDP return codes (linux/bpf.h).
#[cfg(test)]
pub const XDP_PASS: u32 = 2;
#[cfg(test)]
pub const XDP_REDIRECT: u32 = 4;
/// TC return codes (linux/pkt_cls.h): TC_ACT_UNSPEC (-1), TC_ACT_REDIRECT.
#[cfg(test)]
pub const TC_ACT_UNSPEC: u32 = u32::MAX;
#[cfg(test)]
pub const TC_ACT_REDIRECT: u32 = 7;

/// The program's object, when this build has one.
#[cfg(not(lvsd_no_xdp))]
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lvs_xdp.o"));

/// Where the fast path hooks in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// XDP in generic (skb) mode: before the packet taps; packets whose
    /// checksum is still to be computed are left to lvsd.
    Xdp,
    /// TC (clsact) ingress: knows the skb's checksum state, keeps GSO
    /// packets whole; lvsd's packet sockets get a filter (`lvs_sock`) that
    /// keeps from them what TC carries, as they see packets before TC.
    Tc,
}

impl Hook {
    fn program(self) -> &'static str {
        match self {
            Hook::Xdp => "lvs_xdp",
            Hook::Tc => "lvs_tc",
        }
    }

    /// How lvsd names it in its messages.
    pub fn describe(self) -> &'static str {
        match self {
            Hook::Xdp => "XDP (generic mode)",
            Hook::Tc => "TC ingress",
        }
    }
}

/// The loaded program and its maps.
pub struct FastPath {
    ebpf: aya::Ebpf,
    hook: Hook,
}

const FLOWS: &str = "lvs_flows";
const SOCKET_FILTER: &str = "lvs_sock";

impl FastPath {
    /// Loads the program for `hook` into the kernel (not attached anywhere).
    pub fn load(hook: Hook) -> Result<FastPath, String> {
        #[cfg(lvsd_no_xdp)]
        return Err(format!(
            "this lvsd was built without its fast-path programs (clang was missing; {hook:?} asked)"
        ));
        #[cfg(not(lvsd_no_xdp))]
        {
            let mut ebpf = aya::Ebpf::load(OBJECT)
                .map_err(|e| format!("loading the fast-path programs: {e}"))?;
            let name = hook.program();
            let prog = ebpf
                .program_mut(name)
                .ok_or_else(|| format!("the object has no {name} program"))?;
            let loaded = match hook {
                Hook::Xdp => <&mut aya::programs::Xdp>::try_from(prog)
                    .map_err(|e| e.to_string())?
                    .load(),
                Hook::Tc => <&mut aya::programs::SchedClassifier>::try_from(prog)
                    .map_err(|e| e.to_string())?
                    .load(),
            };
            loaded.map_err(|e| format!("the kernel refused {name}: {e}"))?;
            if hook == Hook::Tc {
                let filter: &mut aya::programs::SocketFilter = ebpf
                    .program_mut(SOCKET_FILTER)
                    .ok_or("the object has no lvs_sock program")?
                    .try_into()
                    .map_err(|e| format!("lvs_sock: {e}"))?;
                filter
                    .load()
                    .map_err(|e| format!("the kernel refused lvs_sock: {e}"))?;
            }
            Ok(FastPath { ebpf, hook })
        }
    }

    /// Attaches the program to interface `ifname` (XDP: generic mode; TC:
    /// ingress, with a clsact qdisc added where the kernel needs one); it
    /// stays attached until the `FastPath` is dropped (or lvsd ends).
    pub fn attach(&mut self, ifname: &str) -> Result<(), String> {
        let name = self.hook.program();
        let prog = self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| format!("no {name} program"))?;
        match self.hook {
            Hook::Xdp => {
                let prog: &mut aya::programs::Xdp =
                    prog.try_into().map_err(|e| format!("{name}: {e}"))?;
                prog.attach(ifname, aya::programs::XdpFlags::SKB_MODE)
                    .map_err(|e| format!("attaching XDP to {ifname}: {e}"))?;
            }
            Hook::Tc => {
                // Kernels before 6.6 attach through a clsact qdisc (which
                // may be there already); later ones by a TCX link.
                let _ = aya::programs::tc::qdisc_add_clsact(ifname);
                let prog: &mut aya::programs::SchedClassifier =
                    prog.try_into().map_err(|e| format!("{name}: {e}"))?;
                prog.attach(ifname, aya::programs::TcAttachType::Ingress)
                    .map_err(|e| format!("attaching TC to {ifname}: {e}"))?;
            }
        }
        Ok(())
    }

    /// With the TC hook: filters lvsd's packet socket `sock` so that what
    /// the program carries does not reach lvsd too. Nothing to do for XDP.
    pub fn filter_socket(&mut self, sock: std::os::fd::BorrowedFd<'_>) -> Result<(), String> {
        if self.hook != Hook::Tc {
            return Ok(());
        }
        let filter: &mut aya::programs::SocketFilter = self
            .ebpf
            .program_mut(SOCKET_FILTER)
            .ok_or("no lvs_sock program")?
            .try_into()
            .map_err(|e| format!("lvs_sock: {e}"))?;
        filter
            .attach(sock)
            .map_err(|e| format!("filtering a packet socket: {e}"))?;
        Ok(())
    }

    fn flows(
        &mut self,
    ) -> Result<aya::maps::HashMap<&mut aya::maps::MapData, FlowKey, FlowAction>, String> {
        let map = self.ebpf.map_mut(FLOWS).ok_or("no lvs_flows map")?;
        aya::maps::HashMap::try_from(map).map_err(|e| format!("lvs_flows: {e}"))
    }

    /// Installs (or replaces) a flow.
    pub fn install(&mut self, k: &FlowKey, a: &FlowAction) -> Result<(), String> {
        self.flows()?
            .insert(k, a, 0)
            .map_err(|e| format!("installing a flow: {e}"))
    }

    /// A flow as the program left it (its counters).
    pub fn get(&mut self, k: &FlowKey) -> Result<Option<FlowAction>, String> {
        match self.flows()?.get(k, 0) {
            Ok(a) => Ok(Some(a)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(format!("reading a flow: {e}")),
        }
    }

    /// Removes a flow (absent: nothing to do).
    pub fn remove(&mut self, k: &FlowKey) -> Result<(), String> {
        match self.flows()?.remove(k) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(format!("removing a flow: {e}")),
        }
    }

    /// Removes a flow and returns it as the program last left it, in one
    /// step (BPF_MAP_LOOKUP_AND_DELETE_ELEM, Linux 5.14+): no packet it
    /// counts between a read and the removal is lost. Before 5.14, a read
    /// then a removal.
    pub fn take(&mut self, k: &FlowKey) -> Result<Option<FlowAction>, String> {
        use std::os::fd::{AsFd, AsRawFd};
        let map = self.ebpf.map(FLOWS).ok_or("no lvs_flows map")?;
        let aya::maps::Map::HashMap(data) = map else {
            return Err("lvs_flows is not a hash map".into());
        };
        let mut value = FlowAction::default();
        let mut attr = MapElemAttr {
            map_fd: data.fd().as_fd().as_raw_fd() as u32,
            pad: 0,
            key: k as *const FlowKey as u64,
            value: &mut value as *mut FlowAction as u64,
            flags: 0,
        };
        // SAFETY: bpf(2) with an attribute block on our stack that names
        // the map's open descriptor, a live key of the map's key size and a
        // live value of its value size (FlowKey and FlowAction are the
        // program's structs, repr(C)); the kernel writes one value there.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_AND_DELETE_ELEM,
                &mut attr as *mut MapElemAttr,
                std::mem::size_of::<MapElemAttr>(),
            )
        };
        if r == 0 {
            return Ok(Some(value));
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENOENT) => Ok(None),
            // Hash maps learnt it in 5.14.
            Some(libc::EINVAL | libc::ENOTSUP | 524) => {
                let v = self.get(k)?;
                self.remove(k)?;
                Ok(v)
            }
            _ => Err(format!("taking a flow out: {e}")),
        }
    }
}

const BPF_MAP_LOOKUP_AND_DELETE_ELEM: libc::c_long = 21;

/// The map-element member of `union bpf_attr` (linux/bpf.h).
#[repr(C)]
struct MapElemAttr {
    map_fd: u32,
    pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[cfg(test)]
impl FastPath {
    /// Runs the hook's program once on `frame` in the kernel
    /// (BPF_PROG_TEST_RUN, nothing is sent): its verdict and the frame as
    /// it left it.
    pub fn test_run(&self, frame: &[u8]) -> std::io::Result<(u32, Vec<u8>)> {
        self.test_run_program(self.hook.program(), frame)
    }

    /// `test_run` of the program called `name` (the kernel's test run
    /// starts a socket filter such as `lvs_sock` at the frame's network
    /// header, as a packet socket's filter sees it).
    pub fn test_run_program(&self, name: &str, frame: &[u8]) -> std::io::Result<(u32, Vec<u8>)> {
        use std::io;
        use std::os::fd::{AsFd, AsRawFd};
        let prog = self
            .ebpf
            .program(name)
            .ok_or_else(|| io::Error::other(format!("no {name} program")))?;
        let fd = prog.fd().map_err(io::Error::other)?;
        let mut out = vec![0u8; frame.len() + 256];
        let mut attr = TestRunAttr {
            prog_fd: fd.as_fd().as_raw_fd() as u32,
            data_size_in: frame.len() as u32,
            data_size_out: out.len() as u32,
            data_in: frame.as_ptr() as u64,
            data_out: out.as_mut_ptr() as u64,
            repeat: 1,
            ..TestRunAttr::default()
        };
        // SAFETY: bpf(2) BPF_PROG_TEST_RUN with an attribute block that
        // lives on our stack and names two live buffers of the given
        // sizes; the kernel writes at most `data_size_out` bytes to `out`.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_TEST_RUN,
                &mut attr as *mut TestRunAttr,
                std::mem::size_of::<TestRunAttr>(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        out.truncate(attr.data_size_out as usize);
        Ok((attr.retval, out))
    }
}

#[cfg(test)]
const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// The `test` member of `union bpf_attr` (linux/bpf.h).
#[cfg(test)]
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    pad: u32,
}

#[cfg(all(test, not(lvsd_no_xdp)))]
mod tests {
    use super::*;
    use lvs_core::wire::ipproto;
    use lvs_core::xmit::{OnLink, PacketBuf, Transmit, HEADROOM};
    use lvs_core::{DestConfig, Engine, Forward, ServiceKey, Tunnel};
    use std::net::IpAddr;

    const C: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
    const V: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
    const R: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 11);
    const DMAC: [u8; 6] = [2, 0, 0, 0, 1, 0x11];
    const SMAC: [u8; 6] = [2, 0, 0, 0, 1, 1];

    /// An IPv4 packet: TCP (with `flags` and `payload`) or UDP, header
    /// and L4 checksums filled in.
    fn packet(
        proto: u8,
        (src, sport): (Ipv4Addr, u16),
        (dst, dport): (Ipv4Addr, u16),
        flags: u8,
        ttl: u8,
        payload: &[u8],
    ) -> Vec<u8> {
        let l4_len = if proto == ipproto::TCP { 20 } else { 8 } + payload.len();
        let mut p = vec![0u8; 20 + l4_len];
        p[0] = 0x45;
        p[1] = 0x10;
        p[2..4].copy_from_slice(&((20 + l4_len) as u16).to_be_bytes());
        p[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        p[6] = 0x40;
        p[8] = ttl;
        p[9] = proto;
        p[12..16].copy_from_slice(&src.octets());
        p[16..20].copy_from_slice(&dst.octets());
        p[20..22].copy_from_slice(&sport.to_be_bytes());
        p[22..24].copy_from_slice(&dport.to_be_bytes());
        if proto == ipproto::TCP {
            p[24..28].copy_from_slice(&1000u32.to_be_bytes());
            p[28..32].copy_from_slice(&5000u32.to_be_bytes());
            p[32] = 0x50;
            p[33] = flags;
            p[34..36].copy_from_slice(&64240u16.to_be_bytes());
            p[40..].copy_from_slice(payload);
        } else {
            p[24..26].copy_from_slice(&(l4_len as u16).to_be_bytes());
            p[28..].copy_from_slice(payload);
        }
        let ip_sum = lvs_core::wire::checksum::checksum(&p[..20]);
        p[10..12].copy_from_slice(&ip_sum.to_be_bytes());
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&p[12..20]);
        pseudo.extend_from_slice(&[0, proto]);
        pseudo.extend_from_slice(&(l4_len as u16).to_be_bytes());
        pseudo.extend_from_slice(&p[20..]);
        let at = if proto == ipproto::TCP { 36 } else { 26 };
        let c = lvs_core::wire::checksum::checksum(&pseudo);
        p[at..at + 2].copy_from_slice(
            &(if proto == ipproto::UDP && c == 0 {
                0xffff
            } else {
                c
            })
            .to_be_bytes(),
        );
        p
    }

    /// TCP packet `p` (4 bytes of payload) as a local stack hands it on
    /// with checksum offload: its checksum field holds the pseudo-header
    /// sum (CHECKSUM_PARTIAL).
    fn partial(mut p: Vec<u8>) -> Vec<u8> {
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&p[12..20]);
        pseudo.extend_from_slice(&[0, ipproto::TCP, 0, 24]);
        let seed = !lvs_core::wire::checksum::checksum(&pseudo);
        p[36..38].copy_from_slice(&seed.to_be_bytes());
        p
    }

    fn frame(ip: &[u8]) -> Vec<u8> {
        let mut f = vec![0xaa; 6];
        f.extend_from_slice(&[0xbb; 6]);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(ip);
        f
    }

    /// The engine's answer: the IP bytes it would send.
    fn engine_sends(e: &mut Engine, ip: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; HEADROOM + ip.len()];
        buf[HEADROOM..].copy_from_slice(ip);
        let mut p = PacketBuf::new(&mut buf, HEADROOM);
        let paths = OnLink {
            src: IpAddr::V4(Ipv4Addr::new(198, 18, 1, 1)),
            mtu: 1500,
        };
        match e.process(0, &mut p, &paths) {
            Transmit::Send(s) => buf[s.start..s.start + s.len].to_vec(),
            other => panic!("the engine did not send: {other:?}"),
        }
    }

    fn nat_engine(proto: u8) -> Engine {
        engine_with(proto, Forward::Masq)
    }

    fn engine_with(proto: u8, forward: Forward) -> Engine {
        let mut e = Engine::new(7);
        let key = ServiceKey {
            protocol: proto,
            addr: IpAddr::V4(V),
            port: 80,
        };
        e.add_service(key, "rr", 0).unwrap();
        let dest = DestConfig {
            addr: IpAddr::V4(R),
            port: if forward == Forward::Masq { 8080 } else { 80 },
            forward,
            tunnel: Tunnel::default(),
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
        };
        e.add_dest(key, dest).unwrap();
        e
    }

    fn require_root() {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "loading an XDP program needs root"
        );
    }

    /// XDP's NAT rewrite of established packets, both ways and for TCP
    /// and UDP, is the engine's byte for byte; its counters count; what can
    /// change IPVS state, a TTL about to expire, a packet over the MTU, a
    /// UDP datagram without checksum, a checksum still to be computed and
    /// unknown flows go to the kernel untouched.
    #[test]
    fn the_xdp_program_rewrites_as_the_engine_does() {
        rewrites_as_the_engine_does(Hook::Xdp);
    }

    /// The same for the TC program, and its packet-socket filter drops
    /// exactly what it carries. (The kernel's test run gives it complete
    /// checksums; a checksum still to be computed is the end-to-end
    /// tests' part.)
    #[test]
    fn the_tc_program_rewrites_as_the_engine_does() {
        rewrites_as_the_engine_does(Hook::Tc);
    }

    /// What the packet-socket filter does with `ip`: whether lvsd gets it.
    fn lvsd_gets(fp: &FastPath, ip: &[u8]) -> bool {
        let (keep, _) = fp.test_run_program(SOCKET_FILTER, &frame(ip)).unwrap();
        keep != 0
    }

    fn rewrites_as_the_engine_does(hook: Hook) {
        require_root();
        let mut fp = FastPath::load(hook).expect("load the fast path");
        let (pass, redirect) = match hook {
            Hook::Xdp => (XDP_PASS, XDP_REDIRECT),
            Hook::Tc => (TC_ACT_UNSPEC, TC_ACT_REDIRECT),
        };
        let tc = hook == Hook::Tc;
        let install_both = |fp: &mut FastPath, proto: u8, cport: u16| {
            let ink = FlowKey::new(proto, C, cport, V, 80);
            let ina = FlowAction::new(Side::Destination, R, 8080, 7, SMAC, DMAC, 1500);
            fp.install(&ink, &ina).unwrap();
            let outk = FlowKey::new(proto, R, 8080, C, cport);
            let outa = FlowAction::new(Side::Source, V, 80, 5, SMAC, [2, 0, 0, 0, 0, 2], 1500);
            fp.install(&outk, &outa).unwrap();
            (ink, outk)
        };
        let check = |fp: &FastPath, e: &mut Engine, ip: Vec<u8>, mac: [u8; 6]| {
            let want = engine_sends(e, &ip);
            if tc {
                assert!(!lvsd_gets(fp, &ip), "the filter keeps it from lvsd");
            }
            let (verdict, out) = fp.test_run(&frame(&ip)).unwrap();
            assert_eq!(verdict, redirect);
            assert_eq!(&out[..6], &mac);
            assert_eq!(&out[6..12], &SMAC);
            assert_eq!(&out[14..], &want[..], "the engine's bytes");
        };

        // TCP: the engine sees the handshake; the data afterwards both
        // ways goes through both, and must come out the same.
        let mut e = nat_engine(ipproto::TCP);
        let (ink, outk) = install_both(&mut fp, ipproto::TCP, 40000);
        const ACK: u8 = 0x10;
        const PSH: u8 = 0x08;
        engine_sends(
            &mut e,
            &packet(ipproto::TCP, (C, 40000), (V, 80), 0x02, 64, b""),
        );
        engine_sends(
            &mut e,
            &packet(ipproto::TCP, (R, 8080), (C, 40000), 0x12, 64, b""),
        );
        for (ttl, payload) in [
            (64, &b"GET / HTTP/1.0\r\n\r\n"[..]),
            (2, b"x"),
            (255, &[0xff; 1400][..]),
        ] {
            check(
                &fp,
                &mut e,
                packet(ipproto::TCP, (C, 40000), (V, 80), ACK | PSH, ttl, payload),
                DMAC,
            );
            check(
                &fp,
                &mut e,
                packet(ipproto::TCP, (R, 8080), (C, 40000), ACK, ttl, payload),
                [2, 0, 0, 0, 0, 2],
            );
        }
        let a = fp.get(&ink).unwrap().unwrap();
        assert_eq!((a.packets, a.bytes), (3, (58 + 41 + 1440) as u64));
        assert!(a.last_ns > 0);
        assert_eq!(fp.get(&outk).unwrap().unwrap().packets, 3);

        // Left to the kernel and the engine, untouched.
        for (flags, ttl, len) in [
            (0x02, 64, 0),
            (ACK | 0x01, 64, 0),
            (0x04, 64, 0),
            (ACK, 1, 0),
            (ACK, 64, 1461),
        ] {
            let ip = packet(ipproto::TCP, (C, 40000), (V, 80), flags, ttl, &vec![0; len]);
            let (verdict, out) = fp.test_run(&frame(&ip)).unwrap();
            assert_eq!(
                (verdict, &out[14..]),
                (pass, &ip[..]),
                "flags {flags:#x} ttl {ttl} len {len}"
            );
            if tc {
                assert!(lvsd_gets(&fp, &ip), "flags {flags:#x} ttl {ttl} len {len}");
            }
        }
        // A checksum still to be computed (CHECKSUM_PARTIAL): the field
        // holds the pseudo-header sum, which the engine must handle.
        let half_done = partial(packet(ipproto::TCP, (C, 40000), (V, 80), ACK, 64, b"data"));
        if !tc {
            // TC reads the checksum state from the skb instead.
            assert_eq!(
                fp.test_run(&frame(&half_done)).unwrap(),
                (pass, frame(&half_done))
            );
        }
        let other = packet(ipproto::TCP, (C, 40001), (V, 80), ACK, 64, b"");
        assert_eq!(fp.test_run(&frame(&other)).unwrap().0, pass);
        fp.remove(&ink).unwrap();
        let ip = packet(ipproto::TCP, (C, 40000), (V, 80), ACK, 64, b"");
        assert_eq!(fp.test_run(&frame(&ip)).unwrap().0, pass, "removed");
        if tc {
            assert!(lvsd_gets(&fp, &other) && lvsd_gets(&fp, &ip));
        }

        // UDP with a checksum; without one (0), IPVS computes a full
        // checksum: the engine's work.
        let mut e = nat_engine(ipproto::UDP);
        install_both(&mut fp, ipproto::UDP, 40002);
        check(
            &fp,
            &mut e,
            packet(ipproto::UDP, (C, 40002), (V, 80), 0, 64, b"query"),
            DMAC,
        );
        check(
            &fp,
            &mut e,
            packet(ipproto::UDP, (R, 8080), (C, 40002), 0, 64, b"answer"),
            [2, 0, 0, 0, 0, 2],
        );
        let mut no_csum = packet(ipproto::UDP, (C, 40002), (V, 80), 0, 64, b"query");
        no_csum[26..28].copy_from_slice(&[0, 0]);
        assert_eq!(
            fp.test_run(&frame(&no_csum)).unwrap(),
            (pass, frame(&no_csum))
        );
        if tc {
            assert!(lvsd_gets(&fp, &no_csum));
        }

        // Direct routing: the client's packets, TTL and MACs only; a
        // checksum still to be computed is left as it is, so XDP carries
        // those packets too.
        let mut e = engine_with(ipproto::TCP, Forward::Route);
        let ink = FlowKey::new(ipproto::TCP, C, 40003, V, 80);
        let a = FlowAction::new(Side::Neither, R, 80, 7, SMAC, DMAC, 1500);
        fp.install(&ink, &a).unwrap();
        engine_sends(
            &mut e,
            &packet(ipproto::TCP, (C, 40003), (V, 80), 0x02, 64, b""),
        );
        for (ttl, payload) in [(64, &b"GET / HTTP/1.0\r\n\r\n"[..]), (2, b"x")] {
            check(
                &fp,
                &mut e,
                packet(ipproto::TCP, (C, 40003), (V, 80), ACK | PSH, ttl, payload),
                DMAC,
            );
        }
        let p = partial(packet(ipproto::TCP, (C, 40003), (V, 80), ACK, 64, b"data"));
        let (verdict, out) = fp.test_run(&frame(&p)).unwrap();
        assert_eq!(verdict, redirect);
        assert_eq!(&out[14 + 36..14 + 38], &p[36..38], "left as it was");
        assert_eq!(fp.get(&ink).unwrap().unwrap().packets, 3);
        // Taken out with its last counts, in one step.
        assert_eq!(fp.take(&ink).unwrap().map(|a| a.packets), Some(3));
        assert_eq!(fp.get(&ink).unwrap(), None);
        assert_eq!(fp.take(&ink).unwrap(), None);
    }
}
