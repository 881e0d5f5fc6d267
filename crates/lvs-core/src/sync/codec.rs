//! The IPVS sync protocol on the wire (sync-protocol.md §2, §3, §5.1,
//! §5.2, §5.4): version 0 and version 1 messages, IPv4 and IPv6 entries,
//! the option TLVs. Decoding reads a received datagram in place (no
//! allocation) and follows the kernel's rules exactly: some faults drop the
//! whole message, some stop it where they are (earlier entries stand),
//! some skip one entry. Encoding appends entries to a message buffer with
//! the kernel's alignment.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Connection flags as the protocol carries them (§4.1).
pub mod wire_flags {
    pub const FWD_MASK: u32 = 0x0007;
    pub const SYNC: u32 = 0x0020;
    pub const HASHED: u32 = 0x0040;
    pub const NOOUTPUT: u32 = 0x0080;
    pub const INACTIVE: u32 = 0x0100;
    pub const OUT_SEQ: u32 = 0x0200;
    pub const IN_SEQ: u32 = 0x0400;
    pub const SEQ_MASK: u32 = 0x0600;
    pub const NO_CPORT: u32 = 0x0800;
    pub const TEMPLATE: u32 = 0x1000;
    pub const ONE_PACKET: u32 = 0x2000;
    /// What a v1 receiver keeps of an entry's flags (then ORs in SYNC).
    pub const BACKUP_MASK: u32 = 0x1F87;
    /// What an entry may change on an existing backup connection.
    pub const BACKUP_UPD_MASK: u32 = 0x0700;
}

/// Option types (§2.5).
const OPT_SEQ: u8 = 1;
const OPT_PE_DATA: u8 = 2;
const OPT_PE_NAME: u8 = 3;
const OPT_OPTIONAL: u8 = 0x40;

/// Longest persistence-engine name.
pub const PE_NAME_MAX: usize = 16;
/// Entries a message holds at most (the header's count is 8 bits; §1.2).
pub const MAX_ENTRIES: usize = 255;

/// Why a whole message is dropped (§5.1), or where one stopped (§5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageFault {
    /// Shorter than a header.
    Short,
    /// The header's size is not the datagram's length.
    SizeMismatch,
    /// Another sync ID than the one this backup listens for.
    SyncId,
    /// An entry runs past the message's end.
    Truncated,
    /// An entry's format version is not 0.
    EntryVersion,
    /// An entry's type is neither IPv4 nor IPv6.
    EntryType,
    /// An option is malformed (empty, too long, overrunning, duplicated,
    /// a sequence option that is not 24 bytes, a name over 16 bytes).
    BadOption,
}

impl MessageFault {
    pub const ALL: [MessageFault; 7] = [
        MessageFault::Short,
        MessageFault::SizeMismatch,
        MessageFault::SyncId,
        MessageFault::Truncated,
        MessageFault::EntryVersion,
        MessageFault::EntryType,
        MessageFault::BadOption,
    ];

    pub fn name(self) -> &'static str {
        match self {
            MessageFault::Short => "short",
            MessageFault::SizeMismatch => "size_mismatch",
            MessageFault::SyncId => "sync_id",
            MessageFault::Truncated => "truncated",
            MessageFault::EntryVersion => "entry_version",
            MessageFault::EntryType => "entry_type",
            MessageFault::BadOption => "bad_option",
        }
    }
}

/// Sequence-number adjustments: in (init, delta, previous delta), then out.
pub type SeqData = [u32; 6];

/// One connection entry, as decoded or to be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    pub protocol: u8,
    /// Flags as sent (a receiver masks them, §5.2).
    pub flags: u32,
    pub state: u16,
    pub cport: u16,
    pub vport: u16,
    pub dport: u16,
    pub fwmark: u32,
    /// The connection's full timeout in seconds (0: the receiver's own).
    pub timeout: u32,
    /// All three addresses share the entry's family.
    pub caddr: IpAddr,
    pub vaddr: IpAddr,
    pub daddr: IpAddr,
    pub seq: Option<SeqData>,
    /// Persistence-engine data and name (templates of e.g. the `sip` engine).
    pub pe_data: Option<&'a [u8]>,
    pub pe_name: Option<&'a [u8]>,
}

/// What the decoder yields per entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    Entry(Entry<'a>),
    /// An entry ignored on its own (an unknown mandatory option); the
    /// message goes on.
    Skipped,
    /// The rest of the message is abandoned (entries before it stand).
    Stop(MessageFault),
}

/// A received message, checked at the message level (§5.1).
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    buf: &'a [u8],
    pub version: u8,
    pub syncid: u8,
    pub count: u8,
}

impl<'a> Message<'a> {
    /// §5.1: the length, the size field, the sync ID (`backup_syncid` 0
    /// accepts every message) and the version.
    pub fn parse(buf: &'a [u8], backup_syncid: u8) -> Result<Message<'a>, MessageFault> {
        if buf.len() < 4 {
            return Err(MessageFault::Short);
        }
        let size = u16::from_be_bytes([buf[2], buf[3]]) as usize;
        if size != buf.len() {
            return Err(MessageFault::SizeMismatch);
        }
        if backup_syncid != 0 && buf[1] != backup_syncid {
            return Err(MessageFault::SyncId);
        }
        let v1 = buf.len() >= 8 && buf[5] == 1 && buf[0] == 0 && buf[6] == 0 && buf[7] == 0;
        Ok(Message {
            buf,
            version: u8::from(v1),
            syncid: buf[1],
            count: if v1 { buf[4] } else { buf[0] },
        })
    }

    /// The entries, in order.
    pub fn entries(&self) -> Entries<'a> {
        Entries {
            buf: self.buf,
            pos: if self.version == 1 { 8 } else { 4 },
            left: self.count,
            version: self.version,
            stopped: false,
        }
    }
}

/// Iterator over a message's entries.
pub struct Entries<'a> {
    buf: &'a [u8],
    pos: usize,
    left: u8,
    version: u8,
    stopped: bool,
}

impl<'a> Iterator for Entries<'a> {
    type Item = Item<'a>;

    fn next(&mut self) -> Option<Item<'a>> {
        if self.stopped || self.left == 0 {
            return None;
        }
        self.left -= 1;
        let item = if self.version == 1 {
            self.next_v1()
        } else {
            self.next_v0()
        };
        if let Item::Stop(_) = item {
            self.stopped = true;
        }
        Some(item)
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn v4(b: &[u8], at: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3]))
}

fn v6(b: &[u8], at: usize) -> IpAddr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    IpAddr::V6(Ipv6Addr::from(a))
}

impl<'a> Entries<'a> {
    /// §5.2.
    fn next_v1(&mut self) -> Item<'a> {
        let b = self.buf;
        let pos = self.pos;
        if pos + 36 > b.len() {
            return Item::Stop(MessageFault::Truncated);
        }
        let ver_size = be16(b, pos + 2);
        let len = usize::from(ver_size & 0x0FFF);
        if pos + len > b.len() {
            return Item::Stop(MessageFault::Truncated);
        }
        if ver_size >> 12 != 0 {
            return Item::Stop(MessageFault::EntryVersion);
        }
        self.pos = pos + len.div_ceil(4) * 4;
        // The type byte is within the 36 bytes checked above, whatever
        // the entry's own length says.
        let fixed = match b[pos] {
            t if t & 1 == 1 => 72,
            0 => 36,
            _ => return Item::Stop(MessageFault::EntryType),
        };
        if fixed > len {
            return Item::Stop(MessageFault::Truncated);
        }
        let e = &b[pos..pos + len];
        let (caddr, vaddr, daddr) = if fixed == 72 {
            (v6(e, 24), v6(e, 40), v6(e, 56))
        } else {
            (v4(e, 24), v4(e, 28), v4(e, 32))
        };
        let mut entry = Entry {
            protocol: e[1],
            flags: be32(e, 4),
            state: be16(e, 8),
            cport: be16(e, 10),
            vport: be16(e, 12),
            dport: be16(e, 14),
            fwmark: be32(e, 16),
            timeout: be32(e, 20),
            caddr,
            vaddr,
            daddr,
            seq: None,
            pe_data: None,
            pe_name: None,
        };
        let mut at = fixed;
        let mut skip = false;
        while at < len {
            if len - at < 2 {
                return Item::Stop(MessageFault::BadOption);
            }
            let (t, l) = (e[at], usize::from(e[at + 1]));
            if l == 0 || at + 2 + l > len {
                return Item::Stop(MessageFault::BadOption);
            }
            let data = &e[at + 2..at + 2 + l];
            match t & !OPT_OPTIONAL {
                OPT_SEQ => {
                    if l != 24 || entry.seq.is_some() {
                        return Item::Stop(MessageFault::BadOption);
                    }
                    let mut s = [0u32; 6];
                    for (i, w) in s.iter_mut().enumerate() {
                        *w = be32(data, i * 4);
                    }
                    entry.seq = Some(s);
                }
                OPT_PE_DATA => {
                    if entry.pe_data.is_some() {
                        return Item::Stop(MessageFault::BadOption);
                    }
                    entry.pe_data = Some(data);
                }
                OPT_PE_NAME => {
                    if l > PE_NAME_MAX || entry.pe_name.is_some() {
                        return Item::Stop(MessageFault::BadOption);
                    }
                    entry.pe_name = Some(data);
                }
                _ if t & OPT_OPTIONAL != 0 => {}
                _ => skip = true,
            }
            at += 2 + l;
        }
        if skip {
            return Item::Skipped;
        }
        Item::Entry(entry)
    }

    /// §5.4.
    fn next_v0(&mut self) -> Item<'a> {
        let b = self.buf;
        let pos = self.pos;
        if pos + 24 > b.len() {
            return Item::Stop(MessageFault::Truncated);
        }
        let flags = u32::from(be16(b, pos + 20));
        let seq = if flags & wire_flags::SEQ_MASK != 0 {
            if pos + 48 > b.len() {
                return Item::Stop(MessageFault::Truncated);
            }
            // The sender's memory, copied: little-endian on the kernels
            // that matter (x86, arm64), §3.2.
            let mut s = [0u32; 6];
            for (i, w) in s.iter_mut().enumerate() {
                let at = pos + 24 + i * 4;
                *w = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
            }
            self.pos = pos + 48;
            Some(s)
        } else {
            self.pos = pos + 24;
            None
        };
        Item::Entry(Entry {
            protocol: b[pos + 1],
            flags,
            state: be16(b, pos + 22),
            cport: be16(b, pos + 2),
            vport: be16(b, pos + 4),
            dport: be16(b, pos + 6),
            fwmark: 0,
            timeout: 0,
            caddr: v4(b, pos + 8),
            vaddr: v4(b, pos + 12),
            daddr: v4(b, pos + 16),
            seq,
            pe_data: None,
            pe_name: None,
        })
    }
}

/// The size an entry takes in a message of `version` (without padding), or
/// `None` if that version cannot carry it (v0: IPv4 only, no PE data).
pub fn entry_len(e: &Entry<'_>, version: u8) -> Option<usize> {
    let v6 = e.caddr.is_ipv6();
    if version == 0 {
        if v6 {
            return None;
        }
        return Some(if e.flags & wire_flags::SEQ_MASK != 0 {
            48
        } else {
            24
        });
    }
    let mut n = if v6 { 72 } else { 36 };
    if e.seq.is_some() {
        n += 26;
    }
    if let (Some(d), Some(name)) = (e.pe_data, e.pe_name) {
        if !d.is_empty() && !name.is_empty() {
            n += 4 + d.len().min(255) + name.len().min(PE_NAME_MAX);
        }
    }
    Some(n)
}

/// A message being built (the master's "current buffer", §6.3).
#[derive(Debug, Clone)]
pub struct Builder {
    buf: Vec<u8>,
    version: u8,
    count: u8,
}

impl Builder {
    /// An empty message of `version` (0 or 1) for sync ID `syncid`, with
    /// room for `capacity` bytes.
    pub fn new(version: u8, syncid: u8, capacity: usize) -> Builder {
        let mut b = Builder {
            buf: Vec::with_capacity(capacity),
            version: 0,
            count: 0,
        };
        b.reset(version, syncid);
        b
    }

    /// An empty message in a spent buffer (its memory reused).
    pub fn with_buffer(buf: Vec<u8>, version: u8, syncid: u8) -> Builder {
        let mut b = Builder {
            buf,
            version: 0,
            count: 0,
        };
        b.reset(version, syncid);
        b
    }

    /// The message's bytes, taken.
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
    }

    /// Empties the message for reuse (keeping its memory).
    pub fn reset(&mut self, version: u8, syncid: u8) {
        self.buf.clear();
        self.version = version;
        self.count = 0;
        if version == 1 {
            self.buf.extend_from_slice(&[0, syncid, 0, 8, 0, 1, 0, 0]);
        } else {
            self.buf.extend_from_slice(&[0, syncid, 0, 4]);
        }
    }

    pub fn version(&self) -> u8 {
        self.version
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn count(&self) -> u8 {
        self.count
    }

    /// Whether `e` still fits in `maxlen` bytes (an empty message takes an
    /// entry whatever its size, §1.2).
    pub fn fits(&self, e: &Entry<'_>, maxlen: usize) -> bool {
        let Some(n) = entry_len(e, self.version) else {
            return false;
        };
        if self.count == 0 {
            return true;
        }
        let pad = if self.version == 1 {
            self.buf.len().wrapping_neg() % 4
        } else {
            0
        };
        usize::from(self.count) < MAX_ENTRIES && self.buf.len() + pad + n <= maxlen
    }

    /// Appends `e` (the caller checked `fits`); false if this version
    /// cannot carry it.
    pub fn push(&mut self, e: &Entry<'_>) -> bool {
        let Some(n) = entry_len(e, self.version) else {
            return false;
        };
        let flags = e.flags & !wire_flags::HASHED;
        let b = &mut self.buf;
        if self.version == 0 {
            let (IpAddr::V4(c), IpAddr::V4(v), IpAddr::V4(d)) = (e.caddr, e.vaddr, e.daddr) else {
                return false;
            };
            b.push(0);
            b.push(e.protocol);
            for p in [e.cport, e.vport, e.dport] {
                b.extend_from_slice(&p.to_be_bytes());
            }
            for a in [c, v, d] {
                b.extend_from_slice(&a.octets());
            }
            b.extend_from_slice(&(flags as u16).to_be_bytes());
            b.extend_from_slice(&e.state.to_be_bytes());
            if flags & wire_flags::SEQ_MASK != 0 {
                for w in e.seq.unwrap_or_default() {
                    b.extend_from_slice(&w.to_le_bytes());
                }
            }
        } else {
            if self.count > 0 {
                let pad = b.len().wrapping_neg() % 4;
                b.resize(b.len() + pad, 0);
            }
            b.push(u8::from(e.caddr.is_ipv6()));
            b.push(e.protocol);
            b.extend_from_slice(&(n as u16 & 0x0FFF).to_be_bytes());
            b.extend_from_slice(&flags.to_be_bytes());
            b.extend_from_slice(&e.state.to_be_bytes());
            for p in [e.cport, e.vport, e.dport] {
                b.extend_from_slice(&p.to_be_bytes());
            }
            b.extend_from_slice(&e.fwmark.to_be_bytes());
            b.extend_from_slice(&e.timeout.to_be_bytes());
            for a in [e.caddr, e.vaddr, e.daddr] {
                match (a, e.caddr.is_ipv6()) {
                    (IpAddr::V4(a), false) => b.extend_from_slice(&a.octets()),
                    (IpAddr::V6(a), true) => b.extend_from_slice(&a.octets()),
                    // A v4 address in a v6 entry (a fwmark template's
                    // vaddr holds the mark, §4.4): mapped into 16 bytes.
                    (IpAddr::V4(a), true) => {
                        b.extend_from_slice(&a.octets());
                        b.extend_from_slice(&[0; 12]);
                    }
                    (IpAddr::V6(a), false) => b.extend_from_slice(&a.octets()[..4]),
                }
            }
            if let Some(s) = e.seq {
                b.extend_from_slice(&[OPT_SEQ, 24]);
                for w in s {
                    b.extend_from_slice(&w.to_be_bytes());
                }
            }
            if let (Some(d), Some(name)) = (e.pe_data, e.pe_name) {
                let d = &d[..d.len().min(255)];
                let name = &name[..name.len().min(PE_NAME_MAX)];
                if !d.is_empty() && !name.is_empty() {
                    b.extend_from_slice(&[OPT_PE_DATA, d.len() as u8]);
                    b.extend_from_slice(d);
                    b.extend_from_slice(&[OPT_PE_NAME, name.len() as u8]);
                    b.extend_from_slice(name);
                }
            }
        }
        self.count += 1;
        let size = (b.len() as u16).to_be_bytes();
        b[2] = size[0];
        b[3] = size[1];
        if self.version == 1 {
            b[4] = self.count;
        } else {
            b[0] = self.count;
        }
        true
    }

    /// The message as it goes on the wire.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
