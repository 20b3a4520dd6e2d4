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
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>

#define MAX_OWNED 1024
#define XDPOS_OWNED_ENTRIES MAX_OWNED
#include "xdpos_common.h"

static __always_inline int count(struct xdp_md *ctx, __u32 v, int action)
{
	add(&verdicts, ctx, v);
	return action;
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
