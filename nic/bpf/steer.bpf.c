// SPDX-License-Identifier: MIT OR GPL-2.0-only
/*
 * xdpos steering program.
 *
 * Redirects into the AF_XDP socket of the receiving queue (XSKMAP slot = rx_queue_index) only
 * what the appliance owns, and passes everything else to the kernel, so the host keeps its
 * management traffic (SSH, its own ARP, …).
 *
 * What the appliance owns, per interface (one loaded instance of this program per interface):
 *   - mode ALL:   every frame (a forwarding port);
 *   - mode MATCH: IPv4 packets to an owned address (any protocol, all fragments), ARP whose
 *                 target is an owned address, and UDP/TCP packets to an owned (address, port)
 *                 or (any address, port); fragments after the first carry no port and go to
 *                 the kernel unless their address is owned;
 *   - mode NONE:  nothing (the state before the control plane configures it).
 * A matching frame whose queue has no socket is passed and counted (pass_no_socket).
 *
 * Per-CPU counters (packets, bytes) per verdict are summed by the control thread at scrape time.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define MAX_QUEUES 64
#define MAX_OWNED 1024

enum steer_mode { STEER_NONE = 0, STEER_ALL = 1, STEER_MATCH = 2 };

enum verdict {
	V_REDIRECT = 0,       /* sent to the queue's AF_XDP socket */
	V_PASS_NOT_OWNED = 1, /* not the appliance's: to the kernel */
	V_PASS_NO_SOCKET = 2, /* the appliance's, but no socket on this queue: to the kernel */
	V_PASS_UNPARSED = 3,  /* too short or not understood in MATCH mode: to the kernel */
	V_MAX = 4,
};

struct steer_config {
	__u32 mode;
	__u32 reserved;
};

/* Key of owned_ports: addr and port in network byte order, addr 0 means any address. */
struct port_key {
	__u32 addr;
	__u16 port;
	__u8 proto;
	__u8 pad;
};

struct counter {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct steer_config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_OWNED);
	__type(key, __u32);
	__type(value, __u32);
} owned_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_OWNED);
	__type(key, struct port_key);
	__type(value, __u32);
} owned_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, V_MAX);
	__type(key, __u32);
	__type(value, struct counter);
} verdicts SEC(".maps");

static __always_inline int count(struct xdp_md *ctx, __u32 v, int action)
{
	struct counter *c = bpf_map_lookup_elem(&verdicts, &v);

	if (c) {
		c->packets++;
		c->bytes += ctx->data_end - ctx->data;
	}
	return action;
}

static __always_inline int to_socket(struct xdp_md *ctx)
{
	__u32 q = ctx->rx_queue_index;

	if (!bpf_map_lookup_elem(&xsks, &q))
		return count(ctx, V_PASS_NO_SOCKET, XDP_PASS);
	count(ctx, V_REDIRECT, XDP_PASS);
	return bpf_redirect_map(&xsks, q, XDP_PASS);
}

static __always_inline int owned_addr(__u32 addr)
{
	return bpf_map_lookup_elem(&owned_addrs, &addr) != 0;
}

static __always_inline int owned_port(__u32 addr, __u8 proto, __u16 port)
{
	struct port_key k = { .addr = addr, .port = port, .proto = proto, .pad = 0 };

	if (bpf_map_lookup_elem(&owned_ports, &k))
		return 1;
	k.addr = 0;
	return bpf_map_lookup_elem(&owned_ports, &k) != 0;
}

/* ARP for IPv4 over Ethernet: 8 bytes fixed, sender hw+proto (10), target hw (6), target proto (4). */
#define ARP_TPA_OFFSET 24
#define ARP_LEN 28

SEC("xdp")
int xdpos_steer(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct steer_config *cfg = bpf_map_lookup_elem(&config, &zero);
	struct ethhdr *eth = data;
	void *l3;
	__u16 proto;

	if (!cfg || cfg->mode == STEER_NONE)
		return count(ctx, V_PASS_NOT_OWNED, XDP_PASS);
	if (cfg->mode == STEER_ALL)
		return to_socket(ctx);

	if ((void *)(eth + 1) > data_end)
		return count(ctx, V_PASS_UNPARSED, XDP_PASS);
	proto = eth->h_proto;
	l3 = eth + 1;
	/* Up to two VLAN tags (802.1Q, 802.1ad). */
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if (l3 + 4 > data_end)
			return count(ctx, V_PASS_UNPARSED, XDP_PASS);
		proto = *(__u16 *)(l3 + 2);
		l3 += 4;
	}

	if (proto == bpf_htons(ETH_P_ARP)) {
		if (l3 + ARP_LEN > data_end)
			return count(ctx, V_PASS_UNPARSED, XDP_PASS);
		if (owned_addr(*(__u32 *)(l3 + ARP_TPA_OFFSET)))
			return to_socket(ctx);
		return count(ctx, V_PASS_NOT_OWNED, XDP_PASS);
	}
	if (proto != bpf_htons(ETH_P_IP))
		return count(ctx, V_PASS_NOT_OWNED, XDP_PASS);

	struct iphdr *ip = l3;

	if ((void *)(ip + 1) > data_end || ip->version != 4 || ip->ihl < 5)
		return count(ctx, V_PASS_UNPARSED, XDP_PASS);
	if (owned_addr(ip->daddr))
		return to_socket(ctx);
	if (ip->protocol != IPPROTO_UDP && ip->protocol != IPPROTO_TCP)
		return count(ctx, V_PASS_NOT_OWNED, XDP_PASS);
	/* A fragment other than the first has no L4 header. */
	if (ip->frag_off & bpf_htons(0x1fff))
		return count(ctx, V_PASS_NOT_OWNED, XDP_PASS);

	void *l4 = l3 + ip->ihl * 4;

	/* Source and destination ports are the first 4 bytes of both UDP and TCP. */
	if (l4 + 4 > data_end)
		return count(ctx, V_PASS_UNPARSED, XDP_PASS);
	if (owned_port(ip->daddr, ip->protocol, *(__u16 *)(l4 + 2)))
		return to_socket(ctx);
	return count(ctx, V_PASS_NOT_OWNED, XDP_PASS);
}

char _license[] SEC("license") = "Dual MIT/GPL";
