//! Classic pcap files (the libpcap format): enough to read a capture of
//! Ethernet or raw-IP frames and to write one, for `lvsd replay`. Bytes
//! from a file are untrusted: every length is checked, nothing panics.

use std::io::{self, Read, Write};

/// Link types lvsd reads and writes.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Raw IP, no link header (the frames `lvsd replay` writes).
pub const LINKTYPE_RAW: u32 = 101;
/// Raw IPv4 (an alias some tools write).
pub const LINKTYPE_IPV4: u32 = 228;

/// Largest record accepted (a jumbo GSO capture is below this).
const MAX_RECORD: u32 = 256 * 1024;

/// One captured frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Capture time in nanoseconds since the epoch.
    pub ts_ns: u64,
    pub data: Vec<u8>,
}

/// A pcap reader over any byte source.
pub struct Reader<R> {
    r: R,
    swapped: bool,
    nanos: bool,
    pub linktype: u32,
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

impl<R: Read> Reader<R> {
    /// Reads and checks the global header.
    pub fn new(mut r: R) -> io::Result<Self> {
        let mut h = [0u8; 24];
        r.read_exact(&mut h)
            .map_err(|_| bad("not a pcap file: shorter than its 24-byte header"))?;
        let magic = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let (swapped, nanos) = match magic {
            0xa1b2_c3d4 => (false, false),
            0xa1b2_3c4d => (false, true),
            0xd4c3_b2a1 => (true, false),
            0x4d3c_b2a1 => (true, true),
            _ => {
                return Err(bad(
                    "not a classic pcap file (pcapng is not supported: convert it with `editcap -F pcap`)",
                ))
            }
        };
        let mut me = Reader {
            r,
            swapped,
            nanos,
            linktype: 0,
        };
        me.linktype = me.u32(&h[20..24]);
        Ok(me)
    }

    fn u32(&self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        if self.swapped {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    }

    /// The next record, `None` at the end of the file.
    pub fn next_record(&mut self) -> io::Result<Option<Record>> {
        let mut h = [0u8; 16];
        let mut got = 0;
        while got < h.len() {
            let n = self.r.read(&mut h[got..])?;
            if n == 0 {
                if got == 0 {
                    return Ok(None);
                }
                return Err(bad("truncated pcap record header"));
            }
            got += n;
        }
        let sec = u64::from(self.u32(&h[0..4]));
        let frac = u64::from(self.u32(&h[4..8]));
        let incl = self.u32(&h[8..12]);
        if incl > MAX_RECORD {
            return Err(bad(format!("pcap record of {incl} bytes is too large")));
        }
        let mut data = vec![0u8; incl as usize];
        self.r
            .read_exact(&mut data)
            .map_err(|_| bad("truncated pcap record"))?;
        let ts_ns = sec
            .saturating_mul(1_000_000_000)
            .saturating_add(if self.nanos {
                frac
            } else {
                frac.saturating_mul(1000)
            });
        Ok(Some(Record { ts_ns, data }))
    }
}

/// A pcap writer (microsecond timestamps, native little-endian layout).
pub struct Writer<W: Write> {
    w: W,
}

impl<W: Write> Writer<W> {
    /// Writes the global header for `linktype`.
    pub fn new(mut w: W, linktype: u32) -> io::Result<Self> {
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        h[4..6].copy_from_slice(&2u16.to_le_bytes());
        h[6..8].copy_from_slice(&4u16.to_le_bytes());
        h[16..20].copy_from_slice(&65535u32.to_le_bytes());
        h[20..24].copy_from_slice(&linktype.to_le_bytes());
        w.write_all(&h)?;
        Ok(Writer { w })
    }

    /// Appends one frame captured at `ts_ns`.
    pub fn write(&mut self, ts_ns: u64, data: &[u8]) -> io::Result<()> {
        let mut h = [0u8; 16];
        let sec = (ts_ns / 1_000_000_000) as u32;
        let usec = ((ts_ns % 1_000_000_000) / 1000) as u32;
        h[0..4].copy_from_slice(&sec.to_le_bytes());
        h[4..8].copy_from_slice(&usec.to_le_bytes());
        h[8..12].copy_from_slice(&(data.len() as u32).to_le_bytes());
        h[12..16].copy_from_slice(&(data.len() as u32).to_le_bytes());
        self.w.write_all(&h)?;
        self.w.write_all(data)
    }

    /// Flushes and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.w.flush()?;
        Ok(self.w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let mut w = Writer::new(Vec::new(), LINKTYPE_RAW).unwrap();
        w.write(1_500_000_123_000, b"\x45abc").unwrap();
        w.write(1_500_000_124_000, b"").unwrap();
        let bytes = w.finish().unwrap();
        let mut r = Reader::new(&bytes[..]).unwrap();
        assert_eq!(r.linktype, LINKTYPE_RAW);
        let a = r.next_record().unwrap().unwrap();
        assert_eq!((a.ts_ns, &a.data[..]), (1_500_000_123_000, &b"\x45abc"[..]));
        assert_eq!(r.next_record().unwrap().unwrap().data.len(), 0);
        assert!(r.next_record().unwrap().is_none());
        // Every truncation is an error or a clean end, never a panic.
        for n in 0..bytes.len() {
            if let Ok(mut r) = Reader::new(&bytes[..n]) {
                while let Ok(Some(_)) = r.next_record() {}
            }
        }
        assert!(Reader::new(&b"\x0a\x0d\x0d\x0a........................"[..]).is_err());
        // A huge record length is refused before allocating.
        let mut big = bytes[..24].to_vec();
        big.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0]);
        assert!(Reader::new(&big[..]).unwrap().next_record().is_err());
    }
}
