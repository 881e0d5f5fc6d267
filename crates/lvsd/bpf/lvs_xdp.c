/* lvsd's XDP fast path: packets of connections the engine has decided are
 * rewritten and sent on here, without leaving the kernel; everything else
 * goes on to the kernel and to lvsd's packet loop (XDP_PASS).
 *
 * This first part handles NAT (both directions) of established IPv4 TCP
 * and UDP connections: the engine keeps every packet that can change
 * IPVS state (SYN, FIN, RST, fragments, IP options, TTL expiry, packets
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
 * Built by crates/lvsd/build.rs:
 *   clang -O2 -g -target bpf -c lvs_xdp.c -o lvs_xdp.o
 * (Debian: clang, libbpf-dev). */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
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
	/* 0: the destination is rewritten (NAT IN), 1: the source (NAT OUT). */
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
	/* A checksum still to be computed: the engine's (see the top). */
	if (*l4csum == pseudo_sum(ip->saddr, ip->daddr, ip->protocol, tot - sizeof(*ip)))
		return XDP_PASS;
	k.sport = ports[0];
	k.dport = ports[1];
	struct flow_action *a = bpf_map_lookup_elem(&lvs_flows, &k);
	if (!a || tot > a->mtu)
		return XDP_PASS;

	/* TTL - 1: the TTL is the high byte of its 16-bit word. */
	__u16 old_ttl = bpf_htons((__u16)ip->ttl << 8);
	ip->ttl--;
	__u16 hc = csum_replace2(ip->check, old_ttl, bpf_htons((__u16)ip->ttl << 8));
	__u32 *addr = a->side ? &ip->saddr : &ip->daddr;
	__u16 *port = a->side ? &ports[0] : &ports[1];
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
	__builtin_memcpy(eth->h_dest, a->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, a->smac, ETH_ALEN);
	__sync_fetch_and_add(&a->packets, 1);
	__sync_fetch_and_add(&a->bytes, tot);
	a->last_ns = bpf_ktime_get_ns();
	return bpf_redirect(a->oif, 0);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
