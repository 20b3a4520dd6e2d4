// SPDX-License-Identifier: MIT OR GPL-2.0-only
/*
 * xdpos traffic generator and sink, for the benchmark harness (`xdpos bench`).
 *
 * trafgen_gen: run with BPF_PROG_TEST_RUN and BPF_F_TEST_XDP_LIVE_FRAMES (never attached). The
 *   kernel hands it copies of one template frame (Ethernet/IPv4/UDP, IPv4 header without
 *   options); it writes the UDP source port `sport_base + i` (i = 0, 1, .., flows-1, 0, ..), so
 *   receivers with several queues (RSS) see many flows, and returns XDP_TX, which live mode
 *   turns into a redirect out of the device named by the context's ingress_ifindex. The UDP
 *   checksum of the template is 0 (none), so no fix-up is needed. With dst_span > 1 it also
 *   cycles the IPv4 destination over dst_span addresses spread by dst_stride (many routes of a
 *   router's table in turn) and recomputes the header checksum. Page-pool pages are reused
 *   without being re-initialised, and a frame comes back to the pool as the last program that
 *   saw it left it: veth passes XDP frames between peers without a copy, so a DUT forwarding
 *   in XDP rewrites the generator's own page (MACs, TTL). The program therefore writes the
 *   template's Ethernet and IPv4 headers (gen_config.hdr) and the port into every frame rather
 *   than trusting or incrementing what it finds. It counts the frames it sends per
 *   CPU (gen_counts). With gen_config.stop set it drops every frame instead (XDP_DROP recycles
 *   the page at once), so a long test run can be ended early from another thread: each
 *   BPF_PROG_TEST_RUN call costs a page-pool set-up and tear-down of ~20 ms here, so the
 *   generator makes few, long calls.
 *
 * trafgen_sink: attached (native mode) to the receiving device; counts packets and bytes per CPU
 *   and drops. Userspace sums the CPUs.
 *
 * References: Documentation/bpf/bpf_prog_run.rst ("Running XDP programs in live frame mode"),
 * net/bpf/test_run.c (bpf_test_run_xdp_live).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* Offset of the UDP source port in an untagged Ethernet/IPv4 frame without IP options. */
#define SPORT_OFFSET (sizeof(struct ethhdr) + sizeof(struct iphdr))
/* The Ethernet and IPv4 headers in 16-bit words (34 bytes). */
#define HDR_WORDS (SPORT_OFFSET / 2)

struct gen_config {
	__u32 flows;      /* distinct source ports, >= 1 */
	__u32 sport_base; /* first source port (host order) */
	__u32 stop;       /* non-zero: drop instead of sending */
	__u32 dst_span;   /* > 1: destination addresses cycle over this many (host order) */
	__u32 dst_base;   /*   dst_base + k * dst_stride, k = 0 .. dst_span-1, */
	__u32 dst_stride; /*   skipping 0/8, 10/8 and 127/8 (moved one /8 up) */
	__u16 hdr[HDR_WORDS]; /* the template's Ethernet and IPv4 headers, written into each frame */
	__u16 pad[3];
};

struct counter {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_config);
} gen_config SEC(".maps");

/* Per-CPU flow index (key 0, 0 .. flows-1) and destination index (key 1, 0 .. dst_span-1)
 * of the generator (one test run stays on one CPU). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} gen_seq SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct counter);
} gen_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct counter);
} sink_counts SEC(".maps");

SEC("xdp")
int trafgen_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct gen_config *cfg = bpf_map_lookup_elem(&gen_config, &zero);
	__u64 *seq = bpf_map_lookup_elem(&gen_seq, &zero);
	struct counter *sent = bpf_map_lookup_elem(&gen_counts, &zero);
	__u16 *sport = data + SPORT_OFFSET;

	if (!cfg || !seq || !sent || (void *)(sport + 1) > data_end)
		return XDP_DROP;
	if (cfg->stop)
		return XDP_DROP;
	{
		__u16 *h = data;
#pragma unroll
		for (int i = 0; i < HDR_WORDS; i++)
			h[i] = cfg->hdr[i];
	}
	sent->packets++;
	sent->bytes += data_end - data;
	if (cfg->flows > 1) {
		__u64 flow = *seq;

		*sport = bpf_htons((__u16)(cfg->sport_base + flow));
		*seq = flow + 1 >= cfg->flows ? 0 : flow + 1;
	}
	if (cfg->dst_span > 1) {
		__u32 one = 1;
		__u64 *dseq = bpf_map_lookup_elem(&gen_seq, &one);
		struct iphdr *ip = data + sizeof(struct ethhdr);
		__u16 *w = (__u16 *)ip;
		__u32 sum = 0, dst, top;

		if (!dseq || (void *)(ip + 1) > data_end)
			return XDP_DROP;
		dst = cfg->dst_base + (__u32)*dseq * cfg->dst_stride;
		top = dst >> 24;
		if (top == 0 || top == 10 || top == 127)
			dst += 1 << 24;
		*dseq = *dseq + 1 >= cfg->dst_span ? 0 : *dseq + 1;
		ip->daddr = bpf_htonl(dst);
		/* The header has no options (the template is checked): recompute its checksum. */
		ip->check = 0;
#pragma unroll
		for (int i = 0; i < 10; i++)
			sum += w[i];
		sum = (sum & 0xffff) + (sum >> 16);
		sum = (sum & 0xffff) + (sum >> 16);
		ip->check = ~sum & 0xffff;
	}
	return XDP_TX;
}

SEC("xdp")
int trafgen_sink(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct counter *c = bpf_map_lookup_elem(&sink_counts, &zero);

	if (c) {
		c->packets++;
		c->bytes += ctx->data_end - ctx->data;
	}
	return XDP_DROP;
}

char _license[] SEC("license") = "Dual MIT/GPL";
