//! Property tests over untrusted text: configuration files (through the
//! whole check that start-up and reloads run, not only the parser) and the
//! imports. Token soups from each language's own words, so that the inputs
//! reach deep into the parsers, plus arbitrary strings: nothing panics.

use proptest::prelude::*;

/// Words of the director language, numbers and addresses, and some junk.
fn config_word() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "director",
            "flow",
            "to",
            "from",
            "ports",
            "director",
            "mark",
            "ipv6",
            "2001:db8::100/126",
            "control",
            "metrics",
            "sync",
            "master",
            "backup",
            "syncid",
            "ttl",
            "224.0.0.81",
            "127.0.0.1:9100",
            "socket",
            "group",
            "server",
            "balance",
            "mode",
            "nat",
            "gateway",
            "tunnel",
            "gue",
            "gre",
            "ipip",
            "port",
            "csum",
            "remcsum",
            "option",
            "persistence",
            "timeout",
            "netmask",
            "onepacket",
            "tcpcheck",
            "httpcheck",
            "uri",
            "statuscode",
            "vhost",
            "check",
            "interval",
            "rise",
            "fall",
            "inhibit",
            "sorry",
            "weight",
            "maxconn",
            "minconn",
            "interface",
            "sysctl",
            "TCP",
            "UDP",
            "SCTP",
            "roundrobin",
            "leastconn",
            "rr",
            "sh",
            "schedflags",
            "sh-port",
            "\n",
            "\n",
            "\n",
            "  ",
            "#",
        ])
        .prop_map(str::to_string),
        (0u32..200).prop_map(|n| n.to_string()),
        (0u8..=255, 0u8..=255, 0u8..=40).prop_map(|(a, b, l)| format!("198.18.{a}.{b}/{l}")),
        (0u8..=255, 0u16..=65535).prop_map(|(b, p)| format!("198.18.0.{b}:{p}")),
        (0u8..=255).prop_map(|b| format!("198.18.1.{b}")),
        (1u16..9000, 1u16..9000).prop_map(|(a, b)| format!("{a}-{b},{b}")),
        "[ -~]{0,12}",
    ]
}

/// keepalived.conf words.
fn keepalived_word() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "virtual_server",
            "virtual_server_group",
            "group",
            "fwmark",
            "real_server",
            "sorry_server",
            "lb_algo",
            "lb_kind",
            "NAT",
            "DR",
            "TUN",
            "protocol",
            "TCP",
            "UDP",
            "persistence_timeout",
            "persistence_granularity",
            "delay_loop",
            "weight",
            "inhibit_on_failure",
            "TCP_CHECK",
            "HTTP_GET",
            "SSL_GET",
            "MISC_CHECK",
            "url",
            "path",
            "status_code",
            "connect_timeout",
            "connect_port",
            "retry",
            "nb_get_retry",
            "{",
            "}",
            "{",
            "}",
            "\n",
            "\n",
            "!",
            "#",
            "\"",
            "wrr",
            "rr",
            "ops",
            "tun_type",
            "gue",
            "tun_port",
            "uthreshold",
            "lthreshold",
            "vrrp_instance",
        ])
        .prop_map(str::to_string),
        (0u32..100_000).prop_map(|n| n.to_string()),
        (0u8..=255, 0u8..=255).prop_map(|(a, b)| format!("198.18.{a}.{b}")),
        (0u8..=255, 0u8..=255).prop_map(|(a, b)| format!("198.18.0.{a}-{b}")),
        "[ -~]{0,10}",
    ]
}

fn soup(words: Vec<String>) -> String {
    words.join(" ")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn configuration_files_never_panic(words in prop::collection::vec(config_word(), 0..80)) {
        let text = soup(words);
        if let Ok(cfg) = lvs_config::parse_str(&text, "p.conf") {
            let _ = crate::setup::file_state(&cfg, "p.conf", &text);
        }
    }

    #[test]
    fn keepalived_imports_never_panic(words in prop::collection::vec(keepalived_word(), 0..120)) {
        let text = soup(words);
        if let Ok(conf) = crate::import::keepalived(&text) {
            // What the import writes is a configuration lvsd reads.
            let parsed = lvs_config::parse_str(&conf, "k.conf");
            prop_assert!(parsed.is_ok(), "{:?}\n{}", parsed.err(), conf);
        }
    }

    #[test]
    fn ipvsadm_imports_never_panic(lines in prop::collection::vec("[-a-zA-Z0-9 .:\\[\\]]{0,60}", 0..20)) {
        let _ = crate::import::ipvsadm(&lines.join("\n"));
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        if let Ok(cfg) = lvs_config::parse_str(&text, "p.conf") {
            let _ = crate::setup::file_state(&cfg, "p.conf", &text);
        }
        let _ = crate::import::keepalived(&text);
        let _ = crate::import::ipvsadm(&text);
    }
}
