// SPDX-License-Identifier: MIT OR GPL-2.0-only
/*
 * What every xdpos XDP program that the loader attaches to an interface shares
 * (steer.bpf.c, fwd.bpf.c, redirect.bpf.c): the configuration and counter layouts and the per
 * interface maps xsks, config, owned_addrs, owned_ports and verdicts, which nic::afxdp
 * (XdpProgram, FastPath, Redirect) finds by name in each of them, and the counter helper.
 *
 * The map sizes that differ between programs are set by defining, before the include:
 *   XDPOS_XSKS_ENTRIES   xsks slots (default MAX_QUEUES; redirect.bpf.c: 1)
 *   XDPOS_OWNED_ENTRIES  owned_addrs and owned_ports entries (default 1, i.e. unused;
 *                        steer.bpf.c: MAX_OWNED)
 */
#ifndef XDPOS_COMMON_H
#define XDPOS_COMMON_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define MAX_QUEUES 64

#ifndef XDPOS_XSKS_ENTRIES
#define XDPOS_XSKS_ENTRIES MAX_QUEUES
#endif
#ifndef XDPOS_OWNED_ENTRIES
#define XDPOS_OWNED_ENTRIES 1
#endif

enum steer_mode { STEER_NONE = 0, STEER_ALL = 1, STEER_MATCH = 2 };

/* Slots of `verdicts` (read by XdpProgram::verdicts). */
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
	__uint(max_entries, XDPOS_XSKS_ENTRIES);
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
	__uint(max_entries, XDPOS_OWNED_ENTRIES);
	__type(key, __u32);
	__type(value, __u32);
} owned_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XDPOS_OWNED_ENTRIES);
	__type(key, struct port_key);
	__type(value, __u32);
} owned_ports SEC(".maps");

/* Per-CPU (packets, bytes) per verdict, summed by the control thread at scrape time. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, V_MAX);
	__type(key, __u32);
	__type(value, struct counter);
} verdicts SEC(".maps");

/* Counts the frame in slot i of a per-CPU array of struct counter. */
static __always_inline void add(void *map, struct xdp_md *ctx, __u32 i)
{
	struct counter *c = bpf_map_lookup_elem(map, &i);

	if (c) {
		c->packets++;
		c->bytes += ctx->data_end - ctx->data;
	}
}

/* Redirects into the AF_XDP socket of the receiving queue, or passes if it has none. */
static __always_inline int to_socket(struct xdp_md *ctx)
{
	__u32 q = ctx->rx_queue_index;

	if (!bpf_map_lookup_elem(&xsks, &q)) {
		add(&verdicts, ctx, V_PASS_NO_SOCKET);
		return XDP_PASS;
	}
	add(&verdicts, ctx, V_REDIRECT);
	return bpf_redirect_map(&xsks, q, XDP_PASS);
}

#endif /* XDPOS_COMMON_H */
