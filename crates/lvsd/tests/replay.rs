//! `lvsd replay`: the engine offline over a capture. Same input, same
//! output; the frames written are the ones the director would send.

mod support;

use std::path::Path;
use std::process::Command;

fn records(bytes: &[u8]) -> Vec<Vec<u8>> {
    support::pcap_records(bytes)
        .into_iter()
        .map(|(_, r)| r)
        .collect()
}

fn csum(b: &[u8]) -> u16 {
    !support::inet_sum(0, b)
}

/// An Ethernet frame with a TCP SYN (or ACK) client:port -> VIP:80.
fn syn(client: [u8; 4], port: u16, flags: u8) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 40];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[12..14].copy_from_slice(&[8, 0]);
    let ip = &mut f[14..];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&40u16.to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&client);
    ip[16..20].copy_from_slice(&[198, 18, 0, 100]);
    let c = csum(&ip[..20]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip[20..22].copy_from_slice(&port.to_be_bytes());
    ip[22..24].copy_from_slice(&80u16.to_be_bytes());
    ip[32] = 5 << 4;
    ip[33] = flags;
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&ip[12..20]);
    pseudo.extend_from_slice(&[0, 6, 0, 20]);
    pseudo.extend_from_slice(&ip[20..40]);
    let c = csum(&pseudo);
    ip[36..38].copy_from_slice(&c.to_be_bytes());
    f
}

fn run(dir: &Path, conf: &str, frames: &[Vec<u8>], report: &str) -> (String, Vec<u8>) {
    let c = dir.join("lvsd.conf");
    let i = dir.join("in.pcap");
    let o = dir.join("out.pcap");
    std::fs::write(&c, conf).unwrap();
    std::fs::write(&i, support::pcap(frames, 1, 1000)).unwrap();
    let out = Command::new(support::lvsd())
        .args(["replay", "--config"])
        .arg(&c)
        .arg("--pcap")
        .arg(&i)
        .arg("--out")
        .arg(&o)
        .args(["--report", report])
        .output()
        .expect("run lvsd replay");
    assert!(
        out.status.success(),
        "lvsd replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8(out.stdout).unwrap(),
        std::fs::read(&o).unwrap(),
    )
}

const CONF: &str = "director web 198.18.0.100:80 TCP
  balance roundrobin
  server a 198.18.1.11
  server b 198.18.1.12 mode tunnel gue port 6080 csum
  server c 198.18.1.13:8080 mode nat
";

#[test]
fn replay_is_deterministic_and_writes_what_the_director_sends() {
    let dir = std::env::temp_dir().join(format!("lvsd-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut frames: Vec<Vec<u8>> = (0..6)
        .map(|i| syn([198, 18, 0, 2], 40000 + i, 0x02))
        .collect();
    // A stray ACK (no connection): the director answers with a reset.
    frames.push(syn([198, 18, 0, 3], 50000, 0x10));
    // Not IPv4: counted, skipped.
    let mut arp = vec![0u8; 42];
    arp[12..14].copy_from_slice(&[8, 6]);
    frames.push(arp);
    let (report, out) = run(&dir, CONF, &frames, "json");
    let (report2, out2) = run(&dir, CONF, &frames, "json");
    assert_eq!(report, report2);
    assert_eq!(out, out2, "same input, same output, byte for byte");
    let v: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(v["frames"], 8);
    assert_eq!(v["not_ipv4"], 1);
    assert_eq!(v["sent"]["route"], 2);
    assert_eq!(v["sent"]["tunnel-gue"], 2);
    assert_eq!(v["sent"]["masq"], 2);
    assert_eq!(v["replies"]["tcp-reset"], 1);
    let dests = v["services"][0]["destinations"].as_array().unwrap();
    assert!(dests.iter().all(|d| d["conns"] == 2), "{dests:?}");
    let recs = records(&out);
    assert_eq!(recs.len(), 7);
    let by_proto = |p: u8| recs.iter().filter(|r| r[9] == p).count();
    // 2 DR + 2 NAT SYNs and the reset are TCP; 2 GUE packets are UDP.
    assert_eq!(by_proto(6), 5);
    assert_eq!(by_proto(17), 2);
    for r in &recs {
        assert_eq!(csum(&r[..20]), 0, "valid IPv4 header checksum");
    }
    let gue = recs.iter().find(|r| r[9] == 17).unwrap();
    assert_eq!(
        &gue[12..16],
        &[198, 18, 1, 1],
        "outer source: --src default"
    );
    assert_eq!(&gue[16..20], &[198, 18, 1, 12]);
    assert_eq!(&gue[22..24], &6080u16.to_be_bytes());
    // The text report says the same for people.
    let (text, _) = run(&dir, CONF, &frames, "text");
    assert!(
        text.contains("sent: masq 2, route 2, tunnel-gue 2"),
        "{text}"
    );
    assert!(text.contains("replies: tcp-reset 1"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn replay_refuses_what_it_cannot_read() {
    let dir = std::env::temp_dir().join(format!("lvsd-replay-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let c = dir.join("lvsd.conf");
    std::fs::write(&c, CONF).unwrap();
    let i = dir.join("in.pcap");
    std::fs::write(&i, b"\x0a\x0d\x0d\x0a not a classic pcap, but pcapng").unwrap();
    let out = Command::new(support::lvsd())
        .args(["replay", "--config"])
        .arg(&c)
        .arg("--pcap")
        .arg(&i)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pcapng is not supported"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
