//! The high-availability topology: two directors side by side on one
//! segment with the client and the real servers, for direct routing. The
//! segment is a bridge (`c0`) in the client's namespace; the client is
//! 198.18.0.2 on it, the directors 198.18.0.1 (`director_ns`) and
//! 198.18.0.3 (`peer_ns`) on their `d0`, real server `i` 198.18.0.(10+i)
//! on its `b0` with the VIP on its loopback (answering for it, never
//! announcing it: `arp_ignore 1`, `arp_announce 2`).

use super::*;
use crate::VIP;

/// The second director's address in the HA topology.
pub const HA_PEER_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 18, 0, 3);

/// Real server `i`'s address in the HA topology.
pub fn ha_server_ip(i: usize) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(198, 18, 0, 10 + i as u8)
}

impl Lab {
    /// Builds the HA topology with `servers` real servers (1..=9); names as
    /// [`Lab::nat`], plus `<prefix><pid>-p` for the second director.
    pub fn ha(prefix: &str, servers: usize) -> Result<Lab, LabError> {
        validate_prefix(prefix)?;
        if !(1..=MAX_SERVERS).contains(&servers) {
            return Err(LabError::InvalidArgument(format!(
                "servers must be in 1..={MAX_SERVERS}, got {servers}"
            )));
        }
        check_root()?;
        let pid = std::process::id();
        let names: Vec<String> = ["c", "d", "p"]
            .iter()
            .map(|r| format!("{prefix}{pid}-{r}"))
            .chain((1..=servers).map(|i| format!("{prefix}{pid}-s{i}")))
            .collect();
        {
            let mut active = lock(&ACTIVE);
            if let Some(busy) = names.iter().find(|n| active.contains(n.as_str())) {
                return Err(LabError::InvalidArgument(format!(
                    "namespace {busy} is already used by another Lab in this process"
                )));
            }
            active.extend(names.iter().cloned());
        }
        let lab = Lab {
            prefix: prefix.to_string(),
            client: names[0].clone(),
            director: names[1].clone(),
            servers: names[3..].to_vec(),
            peer: Some(names[2].clone()),
            children: Mutex::new(Vec::new()),
            identity: Mutex::new(Vec::new()),
            closed: false,
        };
        lab.build_ha()?;
        Ok(lab)
    }

    fn build_ha(&self) -> Result<(), LabError> {
        let c = self.client.as_str();
        for ns in self.namespaces() {
            if netns_exists(&ns) {
                remove_netns(&ns)?;
            }
            ip(&["netns", "add", &ns])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            for (key, value) in [
                ("net.ipv6.conf.default.disable_ipv6", "1"),
                ("net.ipv6.conf.all.disable_ipv6", "1"),
                ("net.ipv4.conf.default.rp_filter", "0"),
                ("net.ipv4.conf.all.rp_filter", "0"),
                ("net.ipv4.ip_forward", "0"),
            ] {
                match self.set_sysctl(&ns, key, value) {
                    Err(LabError::Io { source, .. })
                        if key.contains("ipv6")
                            && source.kind() == std::io::ErrorKind::NotFound => {}
                    r => r?,
                }
            }
        }
        // The segment: a bridge in the client's namespace.
        ip(&["-n", c, "link", "add", CLIENT_IF, "type", "bridge"])?;
        let mut ports: Vec<(String, &str, String)> = vec![
            (
                "hd".into(),
                self.director.as_str(),
                DIRECTOR_FRONT_IF.into(),
            ),
            (
                "hp".into(),
                self.peer.as_deref().unwrap_or_default(),
                DIRECTOR_FRONT_IF.into(),
            ),
        ];
        for (i, s) in self.servers.iter().enumerate() {
            ports.push((format!("hs{}", i + 1), s.as_str(), SERVER_IF.into()));
        }
        for (port, ns, dev) in &ports {
            ip(&[
                "link", "add", port, "netns", c, "type", "veth", "peer", "name", dev, "netns", ns,
            ])?;
            ip(&["-n", c, "link", "set", "dev", port, "master", CLIENT_IF])?;
        }
        ip(&["-n", c, "addr", "add", &cidr(CLIENT_IP), "dev", CLIENT_IF])?;
        ip(&[
            "-n",
            &self.director,
            "addr",
            "add",
            &cidr(DIRECTOR_FRONT_IP),
            "dev",
            DIRECTOR_FRONT_IF,
        ])?;
        ip(&[
            "-n",
            self.peer.as_deref().unwrap_or_default(),
            "addr",
            "add",
            &cidr(HA_PEER_IP),
            "dev",
            DIRECTOR_FRONT_IF,
        ])?;
        let vip = format!("{VIP}/32");
        for (i, s) in self.servers.iter().enumerate() {
            ip(&[
                "-n",
                s,
                "addr",
                "add",
                &cidr(ha_server_ip(i + 1)),
                "dev",
                SERVER_IF,
            ])?;
            ip(&["-n", s, "addr", "add", &vip, "dev", "lo"])?;
            for (key, value) in [
                ("net.ipv4.conf.all.arp_ignore", "1"),
                ("net.ipv4.conf.all.arp_announce", "2"),
            ] {
                self.set_sysctl(s, key, value)?;
            }
        }
        for (port, ns, dev) in &ports {
            ip(&["-n", c, "link", "set", "dev", port, "up"])?;
            ip(&["-n", ns, "link", "set", "dev", dev, "up"])?;
        }
        ip(&["-n", c, "link", "set", "dev", CLIENT_IF, "up"])?;
        let deadline = Instant::now() + LINK_TIMEOUT;
        for (_, ns, dev) in &ports {
            loop {
                let out = ip(&["-n", ns, "-o", "link", "show", "dev", dev])?;
                if out.contains("LOWER_UP") {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(LabError::Timeout(format!(
                        "{ns}: link {dev} has no carrier"
                    )));
                }
                thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(())
    }
}
