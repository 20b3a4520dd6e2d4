// SPDX-License-Identifier: MIT OR GPL-2.0-only
/*
 * xdpos forwarding fast path (issue 9).
 *
 * One instance per router interface (loaded like the steering program, with the same per
 * interface maps xsks/config/verdicts, so the AF_XDP sockets register the same way); the
 * forwarding maps are created by the first instance and shared by the others (libbpf
 * reuse_fd). In mode ALL the program forwards what it can and redirects everything else into
 * the AF_XDP socket of the receiving queue, where the library OS router handles it (a punt);
 * in any other mode it passes every frame to the kernel (the service starting or stopping).
 *
 * Forwarded: IPv4 unicast to the interface's own MAC, version 4, header length 5 (no
 * options), total length within the frame, valid header checksum, no fragment (MF or an
 * offset), source and destination not martian/multicast/broadcast, TTL > 1, a route whose next
 * hop is "forward out of port P" (via a gateway or on-link), a resolved neighbour for it on P,
 * and a total length within P's MTU. Then: destination MAC = the neighbour's, source MAC =
 * P's, TTL - 1 with an incremental checksum update (RFC 1624), bpf_redirect_map to P's devmap
 * slot. A route to a blackhole is dropped here (counted). Everything else is punted and counted
 * by reason. A port that cannot take redirected frames (a veth whose peer has no NAPI, i.e.
 * no NETDEV_XDP_ACT_NDO_XMIT in its XDP features: the control plane asks the kernel and sets
 * redirect_off) is an egress the program punts for, so the library OS transmits through its
 * AF_XDP socket.
 *
 * The table is a DIR-24-8 mirror of the library OS's (libos::fib), double-buffered: tbl24 has
 * two halves of 2^24 entries (entry i of half h at (h << 24) | i), tbl8 groups and next hops
 * interleave the two halves (group g of half h in slot g * 2 + h, next hop i of half h at
 * i * 2 + h), and
 * fib_ctl says which half is live. The control plane writes the other half, flips `active`,
 * and waits an RCU grace period before it touches the old half again, so a packet sees one
 * table, old or new, never a mix. Neighbours are written only for neighbours the library OS
 * may send to without a pending confirmation: a gateway's MAC in the next hop itself (one
 * aligned 64-bit word, see struct fib_nh: an array read, no lookup), an on-link destination's
 * in a hash keyed by (port, address).
 *
 * Cost (BPF_PROG_TEST_RUN, `cargo run --release -p nic --example fwd_cost`, docs/forwarding.md):
 * the hash lookup was 27 of the 76 ns a packet via a gateway took; now 47 ns against 38-40 for
 * the bare redirect (redirect.bpf.c).
 */
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_endian.h>
#include "xdpos_common.h"

#define MAX_PORTS 16
#define TBL24_ENTRIES (1u << 24)
#define EXT (1u << 31)
/* Second-level groups per half (nic::afxdp::FP_TBL8_GROUPS). */
#define TBL8_GROUPS 16384
/* Next-hop indices per half. */
#define MAX_NH 4096
#define MAX_NEIGHBORS 8192

/* Fast-path outcomes (nic::afxdp::FastPathCounters names them). */
enum outcome {
	F_FORWARDED = 0,
	P_NOT_IPV4 = 1,    /* ARP, IPv6, VLAN, anything but IPv4 */
	P_NOT_UNICAST = 2, /* not to this interface's MAC (broadcast, multicast, other) */
	P_MALFORMED = 3,   /* truncated, bad version/length/checksum */
	P_OPTIONS = 4,     /* header length > 5 */
	P_FRAGMENT = 5,    /* MF or a fragment offset */
	P_SPECIAL = 6,     /* martian, multicast or broadcast source or destination */
	P_TTL = 7,         /* TTL <= 1 */
	P_NO_ROUTE = 8,
	P_LOCAL = 9,       /* for the appliance itself */
	P_NO_NEIGHBOR = 10, /* next hop not resolved (or not confirmed) */
	P_TOO_BIG = 11,    /* larger than the egress MTU */
	P_NO_PORT = 12,    /* egress port not configured */
	D_BLACKHOLE = 13,  /* dropped: a blackhole route */
	P_PORT_DISABLED = 14, /* egress port's redirects are dropped (a veth peer without NAPI) */
	F_MAX = 15,
};

enum nh_kind { NH_NONE = 0, NH_FORWARD = 1, NH_LOCAL = 2, NH_BLACKHOLE = 3 };

struct fib_ctl {
	__u32 active;      /* live half: 0 or 1 */
	__u32 dflt[2];     /* next-hop index of the default route per half (0: none) */
	__u32 enabled;     /* 0: punt everything uncounted (userspace forwarding) */
};

struct fib_nh {
	__u16 kind;        /* enum nh_kind */
	__u16 port;        /* egress port */
	__u32 gw;          /* gateway, network order; 0: on-link (the destination itself) */
	/*
	 * The gateway's MAC in bytes 0-5 (memory order), byte 6 = 1 if resolved, byte 7 = 0; 0
	 * for on-link next hops (their neighbour is the destination: fp_neigh). One aligned 64-bit
	 * word: the control plane replaces it with one 64-bit store and the program reads it with
	 * one 64-bit load, so a packet sees the old MAC or the new one, never a mix.
	 */
	__u64 mac;
};

_Static_assert(sizeof(struct fib_nh) == 16, "fib_nh is 16 bytes (nic::afxdp::FastPath)");
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the MAC word is read little-endian");

struct port_info {
	__u32 ifindex;     /* 0: not configured */
	__u32 mtu;         /* IP MTU */
	__u8 mac[6];
	__u8 redirect_off; /* 1: redirects into it are lost; punt, userspace transmits */
	__u8 pad;
};

struct self_info {
	__u32 port;        /* this interface's port index */
	__u32 pad;
};

struct neigh_key {
	__u32 port;
	__u32 addr;        /* network order */
};

struct neigh_val {
	__u8 mac[6];
	__u16 pad;
};

/* Per interface (not shared), besides xdpos_common.h's (owned_addrs and owned_ports unused). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct self_info);
} fp_self SEC(".maps");

/* Shared by every interface's instance. */
/*
 * Array elements are padded to 8 bytes, so the tables are arrays of 64-byte lines of 16
 * entries (tbl24) and of whole 256-entry groups (tbl8): no padding, and the memory-mapped view
 * is a plain array of 32-bit entries.
 */
struct tbl24_line {
	__u32 e[16];
};

struct tbl8_group {
	__u32 e[256];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * TBL24_ENTRIES / 16);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct tbl24_line);
} fib_tbl24 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * TBL8_GROUPS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct tbl8_group);
} fib_tbl8 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * MAX_NH);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct fib_nh);
} fib_nh SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct fib_ctl);
} fib_ctl SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_PORTS);
	__type(key, __u32);
	__type(value, struct port_info);
} fp_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, MAX_PORTS);
	__type(key, __u32);
	__type(value, __u32);
} fp_tx SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_NEIGHBORS);
	__type(key, struct neigh_key);
	__type(value, struct neigh_val);
} fp_neigh SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, F_MAX);
	__type(key, __u32);
	__type(value, struct counter);
} fp_stats SEC(".maps");

/* Counts a punt and returns -1 (the caller redirects to the socket). */
static __always_inline int punt(struct xdp_md *ctx, __u32 why)
{
	add(&fp_stats, ctx, why);
	return -1;
}

/* 0/8, 127/8, 224/4 (multicast), 240/4 and 255.255.255.255: never forwarded here. */
static __always_inline int special(__u32 addr_host)
{
	__u32 top = addr_host >> 24;

	return top == 0 || top == 127 || top >= 224;
}

static __always_inline int fast(struct xdp_md *ctx, struct fib_ctl *ctl)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	__u32 zero = 0;

	if ((void *)(eth + 1) > data_end)
		return punt(ctx, P_MALFORMED);
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return punt(ctx, P_NOT_IPV4);

	struct self_info *self = bpf_map_lookup_elem(&fp_self, &zero);
	if (!self)
		return punt(ctx, P_NO_PORT);
	__u32 in_port = self->port;
	struct port_info *in = bpf_map_lookup_elem(&fp_ports, &in_port);
	if (!in || !in->ifindex)
		return punt(ctx, P_NO_PORT);
	/* RFC 1812 §5.3.4: nothing sent to a link-layer broadcast or another MAC is forwarded. */
	if (*(__u16 *)&eth->h_dest[0] != *(__u16 *)&in->mac[0] ||
	    *(__u16 *)&eth->h_dest[2] != *(__u16 *)&in->mac[2] ||
	    *(__u16 *)&eth->h_dest[4] != *(__u16 *)&in->mac[4])
		return punt(ctx, P_NOT_UNICAST);

	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return punt(ctx, P_MALFORMED);
	if (ip->version != 4 || ip->ihl < 5)
		return punt(ctx, P_MALFORMED);
	if (ip->ihl != 5)
		return punt(ctx, P_OPTIONS);
	__u32 tot = bpf_ntohs(ip->tot_len);
	if (tot < sizeof(*ip) || (void *)ip + tot > data_end)
		return punt(ctx, P_MALFORMED);
	{
		/* RFC 1071 over five 32-bit words (the one's-complement sum does not depend on
		 * the word size or the byte order): at most 35 bits, folded to 32, then to 16. A
		 * valid header sums to 0xffff. */
		__u32 *w = (__u32 *)ip;
		__u64 sum = (__u64)w[0] + w[1] + w[2] + w[3] + w[4];

		sum = (sum & 0xffffffff) + (sum >> 32);
		sum = (sum & 0xffffffff) + (sum >> 32);
		sum = (sum & 0xffff) + (sum >> 16);
		sum = (sum & 0xffff) + (sum >> 16);
		if (sum != 0xffff)
			return punt(ctx, P_MALFORMED);
	}
	if (ip->frag_off & bpf_htons(0x3fff))
		return punt(ctx, P_FRAGMENT);
	__u32 dst = bpf_ntohl(ip->daddr);
	if (special(dst) || special(bpf_ntohl(ip->saddr)))
		return punt(ctx, P_SPECIAL);
	if (ip->ttl <= 1)
		return punt(ctx, P_TTL);

	/* DIR-24-8 lookup in the live half. */
	__u32 half = *(volatile __u32 *)&ctl->active & 1;
	__u32 k = (half << 24) | (dst >> 8);
	__u32 line = k >> 4;
	struct tbl24_line *l = bpf_map_lookup_elem(&fib_tbl24, &line);
	if (!l)
		return punt(ctx, P_NO_ROUTE);
	__u32 idx = l->e[k & 15];
	if (idx & EXT) {
		__u32 slot = ((idx & ~EXT) << 1) | half;
		struct tbl8_group *g = bpf_map_lookup_elem(&fib_tbl8, &slot);
		if (!g)
			return punt(ctx, P_NO_ROUTE);
		idx = g->e[dst & 0xff];
	}
	if (idx == 0)
		idx = half ? ctl->dflt[1] : ctl->dflt[0];
	if (idx == 0 || idx >= MAX_NH)
		return punt(ctx, P_NO_ROUTE);
	__u32 ki = (idx << 1) | half;
	struct fib_nh *nh = bpf_map_lookup_elem(&fib_nh, &ki);
	if (!nh)
		return punt(ctx, P_NO_ROUTE);
	switch (nh->kind) {
	case NH_FORWARD:
		break;
	case NH_LOCAL:
		return punt(ctx, P_LOCAL);
	case NH_BLACKHOLE:
		add(&fp_stats, ctx, D_BLACKHOLE);
		return XDP_DROP;
	default:
		return punt(ctx, P_NO_ROUTE);
	}

	__u32 out_port = nh->port;
	struct port_info *out = bpf_map_lookup_elem(&fp_ports, &out_port);
	if (!out || !out->ifindex)
		return punt(ctx, P_NO_PORT);
	if (out->redirect_off)
		return punt(ctx, P_PORT_DISABLED);
	if (tot > out->mtu)
		return punt(ctx, P_TOO_BIG);
	/* The neighbour: a gateway's MAC is in the next hop (one 64-bit load, no lookup); an
	 * on-link destination's is in the hash. */
	__u64 mac;
	if (nh->gw) {
		mac = *(volatile __u64 *)&nh->mac;
		if (!(mac >> 48))
			return punt(ctx, P_NO_NEIGHBOR);
	} else {
		struct neigh_key nk = { .port = out_port, .addr = ip->daddr };
		struct neigh_val *n = bpf_map_lookup_elem(&fp_neigh, &nk);
		if (!n)
			return punt(ctx, P_NO_NEIGHBOR);
		mac = *(__u32 *)&n->mac[0] | (__u64)*(__u16 *)&n->mac[4] << 32;
	}
	/* Sets the target only; the frame leaves after the program returns. */
	if (bpf_redirect_map(&fp_tx, out_port, 0) != XDP_REDIRECT)
		return punt(ctx, P_NO_PORT);

	*(__u32 *)&eth->h_dest[0] = (__u32)mac;
	*(__u16 *)&eth->h_dest[4] = (__u16)(mac >> 32);
	__builtin_memcpy(eth->h_source, out->mac, ETH_ALEN);
	/* TTL - 1 and the checksum + 0x0100 in one's complement (RFC 1624; Linux's
	 * ip_decrease_ttl). */
	__u32 check = ip->check;
	check += bpf_htons(0x0100);
	ip->check = (__u16)(check + (check >= 0xffff));
	ip->ttl--;
	add(&fp_stats, ctx, F_FORWARDED);
	return XDP_REDIRECT;
}

SEC("xdp")
int xdpos_fwd(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct steer_config *cfg = bpf_map_lookup_elem(&config, &zero);

	if (!cfg || cfg->mode != STEER_ALL) {
		add(&verdicts, ctx, V_PASS_NOT_OWNED);
		return XDP_PASS;
	}
	struct fib_ctl *ctl = bpf_map_lookup_elem(&fib_ctl, &zero);
	if (ctl && ctl->enabled) {
		int r = fast(ctx, ctl);
		if (r >= 0)
			return r;
	}
	return to_socket(ctx);
}

char _license[] SEC("license") = "Dual MIT/GPL";
