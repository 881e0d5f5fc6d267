use super::*;
use proptest::prelude::*;

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .filter(|w| !w.ends_with(':'))
        .map(|w| u8::from_str_radix(w, 16).unwrap())
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// sync-protocol.md §7: one DR TCP connection, v1, sync ID 1.
const EX7: &str = "0000: 00 01 00 2c 01 01 00 00 00 06 00 24 00 00 00 83
0010: 00 01 c8 22 00 50 00 50 00 00 00 00 00 00 03 84
0020: cb 00 71 0a c0 00 02 0a 0a 00 00 0b";

/// §7.1: an FTP control connection with a SEQ option, padding, then a
/// persistence template.
const EX71: &str = "0000: 00 01 00 6c 02 01 00 00 00 06 00 3e 00 01 02 00
0010: 00 01 9c b0 00 15 00 15 00 00 00 00 00 00 03 84
0020: c6 33 64 07 c0 00 02 0a 0a 00 00 0c 01 18 00 00
0030: 00 00 00 00 00 00 00 00 00 00 55 66 77 88 00 00
0040: 00 03 00 00 00 00 00 00 00 06 00 24 00 00 11 83
0050: 00 00 00 00 01 bb 01 bb 00 00 00 00 00 00 01 68
0060: c6 33 64 00 c0 00 02 0a 0a 00 00 0c";

/// §7.2: the §7 connection in v0.
const EX72: &str = "0000: 01 01 00 1c 00 06 c8 22 00 50 00 50 cb 00 71 0a
0010: c0 00 02 0a 0a 00 00 0b 00 83 00 01";

fn ex7_entry() -> Entry<'static> {
    Entry {
        protocol: 6,
        flags: 0x83,
        state: 1,
        cport: 51234,
        vport: 80,
        dport: 80,
        fwmark: 0,
        timeout: 900,
        caddr: ip("203.0.113.10"),
        vaddr: ip("192.0.2.10"),
        daddr: ip("10.0.0.11"),
        seq: None,
        pe_data: None,
        pe_name: None,
    }
}

fn ex71_entries() -> [Entry<'static>; 2] {
    [
        Entry {
            protocol: 6,
            flags: 0x0001_0200,
            state: 1,
            cport: 40112,
            vport: 21,
            dport: 21,
            fwmark: 0,
            timeout: 900,
            caddr: ip("198.51.100.7"),
            vaddr: ip("192.0.2.10"),
            daddr: ip("10.0.0.12"),
            seq: Some([0, 0, 0, 0x5566_7788, 3, 0]),
            pe_data: None,
            pe_name: None,
        },
        Entry {
            protocol: 6,
            flags: 0x1183,
            state: 0,
            cport: 0,
            vport: 443,
            dport: 443,
            fwmark: 0,
            timeout: 360,
            caddr: ip("198.51.100.0"),
            vaddr: ip("192.0.2.10"),
            daddr: ip("10.0.0.12"),
            seq: None,
            pe_data: None,
            pe_name: None,
        },
    ]
}

fn build(version: u8, syncid: u8, entries: &[Entry<'_>]) -> Vec<u8> {
    let mut b = Builder::new(version, syncid, 1472);
    for e in entries {
        assert!(b.fits(e, 1472));
        assert!(b.push(e));
    }
    b.bytes().to_vec()
}

fn decode(buf: &[u8]) -> Vec<Item<'_>> {
    Message::parse(buf, 0).unwrap().entries().collect()
}

#[test]
fn the_spec_examples_are_encoded_byte_for_byte() {
    assert_eq!(build(1, 1, &[ex7_entry()]), hex(EX7));
    assert_eq!(build(1, 1, &ex71_entries()), hex(EX71));
    assert_eq!(build(0, 1, &[ex7_entry()]), hex(EX72));
}

#[test]
fn the_spec_examples_decode_to_their_entries() {
    let m = hex(EX7);
    let msg = Message::parse(&m, 1).unwrap();
    assert_eq!((msg.version, msg.syncid, msg.count), (1, 1, 1));
    assert_eq!(decode(&m), vec![Item::Entry(ex7_entry())]);
    let m = hex(EX71);
    let want: Vec<Item> = ex71_entries().into_iter().map(Item::Entry).collect();
    assert_eq!(decode(&m), want);
    // v0 carries neither timeout nor fwmark.
    let m = hex(EX72);
    let msg = Message::parse(&m, 0).unwrap();
    assert_eq!((msg.version, msg.count), (0, 1));
    let mut e = ex7_entry();
    e.timeout = 0;
    assert_eq!(decode(&m), vec![Item::Entry(e)]);
}

#[test]
fn message_level_checks() {
    let m = hex(EX7);
    assert_eq!(Message::parse(&m[..3], 0).unwrap_err(), MessageFault::Short);
    assert_eq!(
        Message::parse(&m[..40], 0).unwrap_err(),
        MessageFault::SizeMismatch
    );
    assert_eq!(Message::parse(&m, 2).unwrap_err(), MessageFault::SyncId);
    assert!(Message::parse(&m, 1).is_ok());
    assert!(Message::parse(&m, 0).is_ok(), "sync ID 0 accepts all");
}

#[test]
fn ipv6_entries_and_pe_options_round_trip() {
    let e = Entry {
        protocol: 17,
        flags: 0x1100,
        state: 1,
        cport: 0,
        vport: 5060,
        dport: 5060,
        fwmark: 9,
        timeout: 300,
        caddr: ip("2001:db8:1::7"),
        vaddr: ip("2001:db8::10"),
        daddr: ip("2001:db8:2::11"),
        seq: Some([1, 2, 3, 4, 5, 0xFFFF_FFFE]),
        pe_data: Some(b"call-id-1234@example"),
        pe_name: Some(b"sip"),
    };
    let m = build(1, 0, &[e, ex7_entry(), e]);
    let n = entry_len(&e, 1).unwrap();
    assert_eq!(n, 72 + 26 + 2 + 20 + 2 + 3);
    // Entries start on 4-byte boundaries; the last is not padded.
    assert_eq!(m.len(), 8 + n.div_ceil(4) * 4 + 36 + n);
    assert_eq!(
        decode(&m),
        vec![Item::Entry(e), Item::Entry(ex7_entry()), Item::Entry(e)]
    );
    // v0 cannot carry IPv6.
    assert!(!Builder::new(0, 0, 100).fits(&e, 1000));
}

#[test]
fn faults_stop_or_skip_as_the_kernel_does() {
    // An unknown mandatory option skips its entry; an optional one is ignored.
    let two = build(1, 0, &[ex7_entry(), ex7_entry()]);
    let with_opt = |ty: u8| {
        let mut m = two[..8].to_vec();
        let mut e = two[8..44].to_vec();
        e[3] = 40; // length 36 + 4
        e.extend_from_slice(&[ty, 2, 0xAB, 0xCD]);
        m.extend_from_slice(&e);
        m.extend_from_slice(&two[44..]);
        let len = m.len() as u16;
        m[2..4].copy_from_slice(&len.to_be_bytes());
        m
    };
    let m = with_opt(9);
    assert_eq!(decode(&m), vec![Item::Skipped, Item::Entry(ex7_entry())]);
    let m = with_opt(0x49);
    assert_eq!(
        decode(&m),
        vec![Item::Entry(ex7_entry()), Item::Entry(ex7_entry())]
    );
    // A wrong SEQ length stops the message there.
    let mut m = with_opt(1);
    assert_eq!(decode(&m), vec![Item::Stop(MessageFault::BadOption)]);
    // Entry format version ≠ 0 stops it; an even non-zero type too.
    m = two.clone();
    m[10] |= 0x10;
    assert_eq!(decode(&m), vec![Item::Stop(MessageFault::EntryVersion)]);
    m = two.clone();
    m[8 + 36] = 2;
    assert_eq!(
        decode(&m),
        vec![
            Item::Entry(ex7_entry()),
            Item::Stop(MessageFault::EntryType)
        ]
    );
    // A count larger than what is there: the missing entry stops it.
    m = two.clone();
    m[4] = 3;
    assert_eq!(
        decode(&m).last(),
        Some(&Item::Stop(MessageFault::Truncated))
    );
}

#[test]
fn a_full_message_holds_forty_ipv4_entries() {
    let mut b = Builder::new(1, 0, 1472);
    let mut n = 0;
    while b.fits(&ex7_entry(), 1472) {
        b.push(&ex7_entry());
        n += 1;
    }
    assert_eq!((n, b.len()), (40, 8 + 40 * 36));
}

/// (IPv6?, address bytes, flags, state, ports, fwmark, timeout, seq, protocol).
type RawEntry = (
    bool,
    [u8; 48],
    u32,
    u16,
    [u16; 3],
    u32,
    u32,
    Option<SeqData>,
    u8,
);

fn arb_entry() -> impl Strategy<Value = RawEntry> {
    (
        any::<bool>(),
        any::<[u8; 48]>(),
        any::<u32>(),
        any::<u16>(),
        any::<[u16; 3]>(),
        any::<u32>(),
        any::<u32>(),
        any::<Option<SeqData>>(),
        any::<u8>(),
    )
}

proptest! {
    #[test]
    fn any_bytes_decode_without_panicking(buf in prop::collection::vec(any::<u8>(), 0..400), id in any::<u8>()) {
        // With the size field right, to get past the first check.
        let mut buf = buf;
        if buf.len() >= 4 {
            let n = buf.len() as u16;
            buf[2..4].copy_from_slice(&n.to_be_bytes());
        }
        if let Ok(m) = Message::parse(&buf, id) {
            for item in m.entries() {
                let _ = item;
            }
        }
    }

    #[test]
    fn entries_round_trip(list in prop::collection::vec(arb_entry(), 1..30), version in 0u8..2) {
        let entries: Vec<Entry> = list
            .iter()
            .map(|(six, a, flags, state, ports, fwmark, timeout, seq, proto)| {
                let addr = |i: usize| -> IpAddr {
                    if *six {
                        let mut o = [0u8; 16];
                        o.copy_from_slice(&a[i * 16..i * 16 + 16]);
                        IpAddr::V6(Ipv6Addr::from(o))
                    } else {
                        IpAddr::V4(Ipv4Addr::new(a[i * 4], a[i * 4 + 1], a[i * 4 + 2], a[i * 4 + 3]))
                    }
                };
                let v0 = version == 0;
                let flags = if v0 { flags & 0xFFBF } else { flags & !wire_flags::HASHED };
                let seq = if v0 {
                    if flags & wire_flags::SEQ_MASK != 0 { Some(seq.unwrap_or_default()) } else { None }
                } else { *seq };
                Entry {
                    protocol: *proto,
                    flags,
                    state: *state,
                    cport: ports[0],
                    vport: ports[1],
                    dport: ports[2],
                    fwmark: if v0 { 0 } else { *fwmark },
                    timeout: if v0 { 0 } else { *timeout },
                    caddr: addr(0),
                    vaddr: addr(1),
                    daddr: addr(2),
                    seq,
                    pe_data: None,
                    pe_name: None,
                }
            })
            .filter(|e| version == 1 || e.caddr.is_ipv4())
            .collect();
        prop_assume!(!entries.is_empty());
        let mut b = Builder::new(version, 3, 1472);
        let mut sent = Vec::new();
        for e in &entries {
            if !b.fits(e, 1472) {
                break;
            }
            prop_assert!(b.push(e));
            sent.push(Item::Entry(*e));
        }
        let m = Message::parse(b.bytes(), 3).unwrap();
        prop_assert_eq!(m.version, version);
        let got: Vec<Item> = m.entries().collect();
        prop_assert_eq!(got, sent);
    }
}

#[test]
fn entry_lengths_below_the_fixed_part_stop_without_panicking() {
    for len in [0u16, 1, 4, 35, 71] {
        for ty in [0u8, 1] {
            let mut m = build(1, 0, &[ex7_entry()]);
            m[8] = ty;
            m[10..12].copy_from_slice(&len.to_be_bytes());
            assert_eq!(
                decode(&m),
                vec![Item::Stop(MessageFault::Truncated)],
                "type {ty} len {len}"
            );
        }
    }
}

proptest! {
    #[test]
    fn any_v1_body_decodes_without_panicking(body in prop::collection::vec(any::<u8>(), 0..300), count in any::<u8>()) {
        let mut m = vec![0, 0, 0, 0, count, 1, 0, 0];
        m.extend_from_slice(&body);
        let n = m.len() as u16;
        m[2..4].copy_from_slice(&n.to_be_bytes());
        for item in Message::parse(&m, 0).unwrap().entries() {
            let _ = item;
        }
    }
}
