/* lvsd's XDP fast path: packets of connections the engine has decided are
 * rewritten and sent on here, without leaving the kernel; everything else
 * goes on to the kernel and to lvsd's packet loop (XDP_PASS).
 *
 * It handles NAT (both directions) and direct routing (the client's
 * packets: TTL and MACs only) of established IPv4 TCP and UDP
 * connections: the engine keeps every packet that can change IPVS state (SYN, FIN, RST, fragments, IP options, TTL expiry, packets
 * over the path MTU, anything not in the map). The rewrite is the
 * engine's, byte for byte (lvsd's tests compare both): TTL - 1, the
 * address and port of one side, the IPv4 header checksum and the L4
 * checksum updated incrementally (RFC 1624). A UDP datagram without
 * checksum (0) is the engine's too: IPVS fills in a full checksum, which
 * would mean summing the payload here.
 *
 * A packet whose L4 checksum is still to be computed (CHECKSUM_PARTIAL:
 * sent by a local stack over veth or tap, seen in generic mode) carries
 * the pseudo-header sum in its checksum field, which the update above
 * would spoil; XDP cannot see the skb's checksum state, so a packet whose
 * field equals that sum goes to the engine, which learns the state from
 * the packet socket (a complete checksum that happens to equal it, one in
 * 65536, goes there too: slower, not wrong).
 *
 * The same decisions are made by a TC (clsact ingress) program, lvs_tc,
 * for hosts whose packets carry their checksum state in the skb (veth,
 * containers): there the kernel's checksum helpers update a checksum
 * still to be computed correctly, so those packets are carried too, and
 * GSO super-packets stay whole (their segments' size is checked against
 * the MTU). Packet sockets see a frame before TC ingress does, so lvsd's
 * own sockets get a filter, lvs_sock, that drops from them what lvs_tc
 * will carry (the same checks on the same map).
 *
 * Built by crates/lvsd/build.rs:
 *   clang -O2 -g -target bpf -c lvs_xdp.c -o lvs_xdp.o
 * (Debian: clang, libbpf-dev). */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/pkt_cls.h>
#include <stddef.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* One direction of a connection, as it arrives. */
struct flow_key {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 pad[3];
};

/* What to do with it: the new address and port of one side, the frame's
 * way out, and the counters lvsd folds into its statistics. */
struct flow_action {
	__u32 addr;
	__u16 port;
	/* SIDE_DST: the destination is rewritten (NAT IN), SIDE_SRC: the
	 * source (NAT OUT), SIDE_NONE: neither (direct routing). */
	__u8 side;
	__u8 pad0;
	__u32 oif;
	__u8 dmac[6];
	__u8 smac[6];
	/* Longer packets go to the engine (its MTU step answers them). */
	__u16 mtu;
	__u16 pad1;
	__u32 pad2;
	__u64 packets;
	__u64 bytes;
	/* bpf_ktime_get_ns() of the last packet. */
	__u64 last_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 20);
	__type(key, struct flow_key);
	__type(value, struct flow_action);
} lvs_flows SEC(".maps");

#define SIDE_DST 0
#define SIDE_SRC 1
#define SIDE_NONE 2

/* One's complement sum of 16-bit words, folded. */
static __always_inline __u16 fold(__u32 s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)s;
}

/* The folded pseudo-header sum of an IPv4 TCP/UDP segment of `len` bytes:
 * what the checksum field holds while the checksum is still to be
 * computed (all in network order). */
static __always_inline __u16 pseudo_sum(__u32 saddr, __u32 daddr, __u8 proto, __u16 len)
{
	__u32 s = (saddr >> 16) + (saddr & 0xffff) + (daddr >> 16) + (daddr & 0xffff);
	s += bpf_htons(proto) + bpf_htons(len);
	return fold(s);
}

/* RFC 1624 eqn. 3: the checksum `c` after a 16-bit word changes from
 * `old` to `new` (all in network order). */
static __always_inline __u16 csum_replace2(__u16 c, __u16 old, __u16 new)
{
	return ~fold((__u32)(__u16)~c + (__u16)~old + new);
}

static __always_inline __u16 csum_replace4(__u16 c, __u32 old, __u32 new)
{
	c = csum_replace2(c, old >> 16, new >> 16);
	return csum_replace2(c, old & 0xffff, new & 0xffff);
}

SEC("xdp")
int lvs_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end)
		return XDP_PASS;
	/* No options, no fragment, a hop left. */
	if (ip->version != 4 || ip->ihl != 5 || (ip->frag_off & bpf_htons(0x3fff)) || ip->ttl <= 1)
		return XDP_PASS;
	__u16 tot = bpf_ntohs(ip->tot_len);
	if (tot < sizeof(*ip) || (void *)ip + tot > end)
		return XDP_PASS;
	struct flow_key k = {.saddr = ip->saddr, .daddr = ip->daddr, .proto = ip->protocol};
	__u16 *ports = (void *)(ip + 1);
	__u16 *l4csum;
	if (ip->protocol == IPPROTO_TCP) {
		struct tcphdr *th = (void *)(ip + 1);
		if ((void *)(th + 1) > end)
			return XDP_PASS;
		/* The whole header inside the datagram. */
		if (th->doff < 5 || sizeof(*ip) + th->doff * 4 > tot)
			return XDP_PASS;
		/* State changes are the engine's. */
		if (th->syn || th->fin || th->rst)
			return XDP_PASS;
		l4csum = &th->check;
	} else if (ip->protocol == IPPROTO_UDP) {
		struct udphdr *uh = (void *)(ip + 1);
		if ((void *)(uh + 1) > end || uh->check == 0 || sizeof(*ip) + sizeof(*uh) > tot)
			return XDP_PASS;
		l4csum = &uh->check;
	} else {
		return XDP_PASS;
	}
	k.sport = ports[0];
	k.dport = ports[1];
	struct flow_action *a = bpf_map_lookup_elem(&lvs_flows, &k);
	if (!a || tot > a->mtu)
		return XDP_PASS;
	/* A checksum still to be computed: the engine's (see the top), when
	 * the flow changes what it covers. */
	if (a->side != SIDE_NONE &&
	    *l4csum == pseudo_sum(ip->saddr, ip->daddr, ip->protocol, tot - sizeof(*ip)))
		return XDP_PASS;

	/* TTL - 1: the TTL is the high byte of its 16-bit word. */
	__u16 old_ttl = bpf_htons((__u16)ip->ttl << 8);
	ip->ttl--;
	__u16 hc = csum_replace2(ip->check, old_ttl, bpf_htons((__u16)ip->ttl << 8));
	if (a->side == SIDE_NONE) {
		ip->check = hc;
	} else {
		__u32 *addr = a->side == SIDE_SRC ? &ip->saddr : &ip->daddr;
		__u16 *port = a->side == SIDE_SRC ? &ports[0] : &ports[1];
		__u32 old_addr = *addr;
		__u16 old_port = *port;
		ip->check = csum_replace4(hc, old_addr, a->addr);
		*addr = a->addr;
		*port = a->port;
		__u16 c = csum_replace4(*l4csum, old_addr, a->addr);
		c = csum_replace2(c, old_port, a->port);
		/* 0 means "no checksum" in UDP: a computed 0 is sent as 0xffff. */
		if (ip->protocol == IPPROTO_UDP && c == 0)
			c = 0xffff;
		*l4csum = c;
	}
	__builtin_memcpy(eth->h_dest, a->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, a->smac, ETH_ALEN);
	__sync_fetch_and_add(&a->packets, 1);
	__sync_fetch_and_add(&a->bytes, tot);
	a->last_ns = bpf_ktime_get_ns();
	return bpf_redirect(a->oif, 0);
}

/* ---- TC and the packet-socket filter ------------------------------- */

/* Offsets in the frame (Ethernet, IPv4 without options). */
#define IP_OFF ETH_HLEN
#define IP_CSUM_OFF (ETH_HLEN + offsetof(struct iphdr, check))
#define IP_TTL_OFF (ETH_HLEN + offsetof(struct iphdr, ttl))
#define L4_OFF (ETH_HLEN + sizeof(struct iphdr))

/* The headers the decision reads, copied out of the packet. */
struct hdrs {
	struct iphdr ip;
	union {
		struct tcphdr tcp;
		struct udphdr udp;
		__u16 ports[2];
	};
};

/* Whether the skb's packet (IP header and L4 header in `h`, `ip_len`
 * bytes from the IP header on) is one a flow may carry, and that flow.
 * The same for lvs_tc and lvs_sock, so that what the filter keeps from
 * lvsd is what TC sends on. */
static __always_inline struct flow_action *skb_flow(struct hdrs *h, __u32 ip_len, __u32 gso_size)
{
	if (h->ip.version != 4 || h->ip.ihl != 5 || (h->ip.frag_off & bpf_htons(0x3fff)) ||
	    h->ip.ttl <= 1)
		return 0;
	__u32 tot = bpf_ntohs(h->ip.tot_len);
	/* A GSO packet may say 0 (BIG TCP): not ours. */
	if (tot < sizeof(struct iphdr) || tot > ip_len)
		return 0;
	__u32 l4_hdr;
	if (h->ip.protocol == IPPROTO_TCP) {
		if (h->tcp.doff < 5 || sizeof(struct iphdr) + h->tcp.doff * 4 > tot)
			return 0;
		if (h->tcp.syn || h->tcp.fin || h->tcp.rst)
			return 0;
		l4_hdr = h->tcp.doff * 4;
	} else if (h->ip.protocol == IPPROTO_UDP) {
		if (h->udp.check == 0 || sizeof(struct iphdr) + sizeof(struct udphdr) > tot)
			return 0;
		l4_hdr = sizeof(struct udphdr);
	} else {
		return 0;
	}
	struct flow_key k = {
		.saddr = h->ip.saddr,
		.daddr = h->ip.daddr,
		.sport = h->ports[0],
		.dport = h->ports[1],
		.proto = h->ip.protocol,
	};
	struct flow_action *a = bpf_map_lookup_elem(&lvs_flows, &k);
	if (!a)
		return 0;
	/* What goes on the wire: the packet, or each segment of a GSO one. */
	__u32 wire = gso_size ? sizeof(struct iphdr) + l4_hdr + gso_size : tot;
	if (wire > a->mtu)
		return 0;
	return a;
}

/* Reads the headers of an IPv4 TCP/UDP packet (`at`: where its IP header
 * starts, relative to `base`); 0 when it is not one or is too short. */
static __always_inline int load_hdrs(struct __sk_buff *skb, __u32 at, __u32 base, struct hdrs *h)
{
	if (bpf_skb_load_bytes_relative(skb, at, &h->ip, sizeof(h->ip), base))
		return 0;
	if (h->ip.protocol == IPPROTO_TCP)
		return !bpf_skb_load_bytes_relative(skb, at + sizeof(h->ip), &h->tcp,
						    sizeof(h->tcp), base);
	if (h->ip.protocol == IPPROTO_UDP)
		return !bpf_skb_load_bytes_relative(skb, at + sizeof(h->ip), &h->udp,
						    sizeof(h->udp), base);
	return 0;
}

SEC("classifier")
int lvs_tc(struct __sk_buff *skb)
{
	struct hdrs h;
	if (skb->protocol != bpf_htons(ETH_P_IP) || skb->len < ETH_HLEN ||
	    !load_hdrs(skb, IP_OFF, BPF_HDR_START_MAC, &h))
		return TC_ACT_UNSPEC;
	struct flow_action *a = skb_flow(&h, skb->len - ETH_HLEN, skb->gso_segs > 1 ? skb->gso_size : 0);
	if (!a)
		return TC_ACT_UNSPEC;
	int udp = h.ip.protocol == IPPROTO_UDP;
	__u32 l4_csum = L4_OFF + (udp ? offsetof(struct udphdr, check) : offsetof(struct tcphdr, check));
	/* The kernel's helpers know the skb's checksum state: a checksum still
	 * to be computed gets the pseudo-header part only. */
	__u64 mangled = udp ? BPF_F_MARK_MANGLED_0 : 0;

	/* TTL - 1: the TTL is the high byte of its 16-bit word. */
	__u8 ttl = h.ip.ttl - 1;
	__u16 old_word = bpf_htons((__u16)h.ip.ttl << 8);
	__u16 new_word = bpf_htons((__u16)ttl << 8);
	if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_word, new_word, 2) ||
	    bpf_skb_store_bytes(skb, IP_TTL_OFF, &ttl, 1, 0))
		return TC_ACT_SHOT;
	if (a->side != SIDE_NONE) {
		int src = a->side == SIDE_SRC;
		__u32 addr_off = ETH_HLEN + (src ? offsetof(struct iphdr, saddr) : offsetof(struct iphdr, daddr));
		__u32 port_off = L4_OFF + (src ? 0 : 2);
		__u32 old_addr = src ? h.ip.saddr : h.ip.daddr;
		__u16 old_port = src ? h.ports[0] : h.ports[1];
		__u32 new_addr = a->addr;
		__u16 new_port = a->port;
		if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_addr, new_addr, 4) ||
		    bpf_l4_csum_replace(skb, l4_csum, old_addr, new_addr, BPF_F_PSEUDO_HDR | mangled | 4) ||
		    bpf_skb_store_bytes(skb, addr_off, &new_addr, 4, 0) ||
		    bpf_l4_csum_replace(skb, l4_csum, old_port, new_port, mangled | 2) ||
		    bpf_skb_store_bytes(skb, port_off, &new_port, 2, 0))
			return TC_ACT_SHOT;
	}
	__u8 macs[12];
	__builtin_memcpy(macs, a->dmac, ETH_ALEN);
	__builtin_memcpy(macs + ETH_ALEN, a->smac, ETH_ALEN);
	if (bpf_skb_store_bytes(skb, 0, macs, sizeof(macs), 0))
		return TC_ACT_SHOT;
	/* One packet per skb, as the engine (and IPVS) counts a GSO packet. */
	__sync_fetch_and_add(&a->packets, 1);
	__sync_fetch_and_add(&a->bytes, skb->len - ETH_HLEN);
	a->last_ns = bpf_ktime_get_ns();
	return bpf_redirect(a->oif, 0);
}

/* On lvsd's packet sockets: drops (0) what lvs_tc will carry, keeps the
 * rest whole. Packet sockets see frames before TC ingress. */
SEC("socket")
int lvs_sock(struct __sk_buff *skb)
{
	struct hdrs h;
	if (skb->protocol != bpf_htons(ETH_P_IP) || !load_hdrs(skb, 0, BPF_HDR_START_NET, &h))
		return skb->len;
	/* lvs_tc's length: from the IP header on. */
	__u32 ip_len = bpf_ntohs(h.ip.tot_len);
	if (skb->gso_segs > 1 ? skb_flow(&h, skb->len, skb->gso_size) : skb_flow(&h, ip_len, 0))
		return 0;
	return skb->len;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
