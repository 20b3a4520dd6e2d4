/* The C side of nic::dpdk: DPDK's fast-path functions are static inline in its headers
 * (rte_eth_rx_burst, rte_eth_tx_burst, the mbuf accessors), and its control structures
 * (rte_eth_conf, rte_eth_dev_info, rte_eth_stats) are large and change between releases. This
 * shim turns what xdpos needs into a handful of real functions over small, stable structs that
 * nic/src/dpdk/ffi.rs declares by hand. Built by nic/build.rs (cc crate) only with the `dpdk`
 * feature, with the flags of `pkg-config --cflags libdpdk`.
 *
 * Per burst, one call each way: xdpos_rx receives and reads every mbuf's frame index, data
 * offset, length and checksum verdict into an array; xdpos_tx writes the lengths and offload
 * fields of every mbuf from an array, then transmits. No DPDK flag or struct layout crosses into
 * Rust. */

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mbuf_dyn.h>
#include <rte_mempool.h>

/* Frame index of every mbuf of an xdpos pool, in a dynamic field (set once when the pool is
 * created, never touched by DPDK afterwards). */
static int idx_offset = -1;

static const struct rte_mbuf_dynfield idx_field = {
	.name = "xdpos_frame_index",
	.size = sizeof(uint32_t),
	.align = __alignof__(uint32_t),
};

static inline uint32_t frame_index(const struct rte_mbuf *m)
{
	return *RTE_MBUF_DYNFIELD(m, idx_offset, const uint32_t *);
}

int xdpos_rte_errno(void)
{
	return rte_errno;
}

/* ---- devices ---------------------------------------------------------------------------- */

struct xdpos_dev_info {
	uint16_t max_rx_queues;
	uint16_t max_tx_queues;
	uint16_t rx_desc_max;
	uint16_t tx_desc_max;
	uint32_t max_rx_pktlen;
	int32_t socket;
	uint8_t mac[6];
	uint8_t rx_csum; /* IPv4, UDP and TCP checksums verified on receive */
	uint8_t tx_csum; /* IPv4, UDP and TCP checksums completed on transmit */
	uint8_t tso;     /* TCP segmentation on transmit */
	uint8_t pad[3];
	char driver[64];
};

int xdpos_dev_info(uint16_t port, struct xdpos_dev_info *out)
{
	struct rte_eth_dev_info info;
	struct rte_ether_addr mac;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = rte_eth_dev_info_get(port, &info);
	if (rc != 0)
		return rc;
	out->max_rx_queues = info.max_rx_queues;
	out->max_tx_queues = info.max_tx_queues;
	out->rx_desc_max = info.rx_desc_lim.nb_max;
	out->tx_desc_max = info.tx_desc_lim.nb_max;
	out->max_rx_pktlen = info.max_rx_pktlen;
	out->socket = rte_eth_dev_socket_id(port);
	const uint64_t rx = RTE_ETH_RX_OFFLOAD_IPV4_CKSUM | RTE_ETH_RX_OFFLOAD_UDP_CKSUM |
			    RTE_ETH_RX_OFFLOAD_TCP_CKSUM;
	const uint64_t tx = RTE_ETH_TX_OFFLOAD_IPV4_CKSUM | RTE_ETH_TX_OFFLOAD_UDP_CKSUM |
			    RTE_ETH_TX_OFFLOAD_TCP_CKSUM;
	out->rx_csum = (info.rx_offload_capa & rx) == rx;
	out->tx_csum = (info.tx_offload_capa & tx) == tx;
	out->tso = out->tx_csum && (info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_TCP_TSO) != 0;
	if (info.driver_name != NULL)
		strncpy(out->driver, info.driver_name, sizeof(out->driver) - 1);
	rc = rte_eth_macaddr_get(port, &mac);
	if (rc != 0)
		return rc;
	memcpy(out->mac, mac.addr_bytes, 6);
	return 0;
}

/* Configures `queues` queue pairs (RX queue q takes its mbufs from pools[q]), enables the
 * offloads asked for, and starts the port. Descriptor counts are adjusted to the device's
 * limits and written back. */
int xdpos_dev_setup(uint16_t port, uint16_t queues, uint16_t *rx_desc, uint16_t *tx_desc,
		    uint8_t rx_csum, uint8_t tx_csum, uint8_t tso, uint8_t promiscuous,
		    struct rte_mempool **pools)
{
	struct rte_eth_conf conf;
	struct rte_eth_dev_info info;
	int socket = rte_eth_dev_socket_id(port);
	int rc;

	rc = rte_eth_dev_info_get(port, &info);
	if (rc != 0)
		return rc;
	memset(&conf, 0, sizeof(conf));
	if (queues > 1 && info.flow_type_rss_offloads != 0) {
		conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
		conf.rx_adv_conf.rss_conf.rss_hf =
			(RTE_ETH_RSS_IP | RTE_ETH_RSS_UDP | RTE_ETH_RSS_TCP) &
			info.flow_type_rss_offloads;
	}
	if (rx_csum)
		conf.rxmode.offloads |= (RTE_ETH_RX_OFFLOAD_IPV4_CKSUM |
					 RTE_ETH_RX_OFFLOAD_UDP_CKSUM |
					 RTE_ETH_RX_OFFLOAD_TCP_CKSUM) &
					info.rx_offload_capa;
	if (tx_csum)
		conf.txmode.offloads |= (RTE_ETH_TX_OFFLOAD_IPV4_CKSUM |
					 RTE_ETH_TX_OFFLOAD_UDP_CKSUM |
					 RTE_ETH_TX_OFFLOAD_TCP_CKSUM) &
					info.tx_offload_capa;
	if (tso)
		conf.txmode.offloads |= RTE_ETH_TX_OFFLOAD_TCP_TSO & info.tx_offload_capa;
	rc = rte_eth_dev_configure(port, queues, queues, &conf);
	if (rc != 0)
		return rc;
	rc = rte_eth_dev_adjust_nb_rx_tx_desc(port, rx_desc, tx_desc);
	if (rc != 0)
		return rc;
	for (uint16_t q = 0; q < queues; q++) {
		rc = rte_eth_rx_queue_setup(port, q, *rx_desc, socket, NULL, pools[q]);
		if (rc != 0)
			return rc;
		rc = rte_eth_tx_queue_setup(port, q, *tx_desc, socket, NULL);
		if (rc != 0)
			return rc;
	}
	if (promiscuous) {
		/* Not every virtual device has the notion (-ENOTSUP is fine). */
		rc = rte_eth_promiscuous_enable(port);
		if (rc != 0 && rc != -ENOTSUP)
			return rc;
	}
	return rte_eth_dev_start(port);
}

struct xdpos_eth_stats {
	uint64_t ipackets;
	uint64_t opackets;
	uint64_t ibytes;
	uint64_t obytes;
	uint64_t imissed;
	uint64_t ierrors;
	uint64_t oerrors;
	uint64_t rx_nombuf;
};

int xdpos_stats_get(uint16_t port, struct xdpos_eth_stats *out)
{
	struct rte_eth_stats s;
	int rc = rte_eth_stats_get(port, &s);

	memset(out, 0, sizeof(*out));
	if (rc != 0)
		return rc;
	out->ipackets = s.ipackets;
	out->opackets = s.opackets;
	out->ibytes = s.ibytes;
	out->obytes = s.obytes;
	out->imissed = s.imissed;
	out->ierrors = s.ierrors;
	out->oerrors = s.oerrors;
	out->rx_nombuf = s.rx_nombuf;
	return 0;
}

/* Extended statistics: with n too small (or 0), returns how many there are; otherwise fills
 * names (64 bytes each, NUL-terminated) and values and returns the count. Negative: error. */
int xdpos_xstats(uint16_t port, char *names, uint64_t *values, unsigned int n)
{
	int count = rte_eth_xstats_get(port, NULL, 0);

	if (count < 0 || (unsigned int)count > n || count == 0)
		return count;
	struct rte_eth_xstat *xs = calloc(count, sizeof(*xs));
	struct rte_eth_xstat_name *xn = calloc(count, sizeof(*xn));
	int rc = -ENOMEM;

	if (xs == NULL || xn == NULL)
		goto out;
	rc = rte_eth_xstats_get_names(port, xn, count);
	if (rc < 0 || rc > count)
		goto out;
	rc = rte_eth_xstats_get(port, xs, count);
	if (rc < 0 || rc > count)
		goto out;
	for (int i = 0; i < rc; i++) {
		uint64_t id = xs[i].id;
		memset(names + 64 * i, 0, 64);
		if (id < (uint64_t)count)
			snprintf(names + 64 * i, 64, "%s", xn[id].name);
		values[i] = xs[i].value;
	}
out:
	free(xs);
	free(xn);
	return rc;
}

/* ---- frame memory ----------------------------------------------------------------------- */

struct pool_walk {
	struct rte_mbuf **mbufs;
	uint8_t **bufs;
	unsigned int n;
	unsigned int seen;
};

static void index_mbuf(struct rte_mempool *mp, void *opaque, void *obj, unsigned int i)
{
	struct pool_walk *w = opaque;
	struct rte_mbuf *m = obj;

	(void)mp;
	if (i < w->n) {
		*RTE_MBUF_DYNFIELD(m, idx_offset, uint32_t *) = i;
		w->mbufs[i] = m;
		w->bufs[i] = m->buf_addr;
		w->seen++;
	}
}

/* Creates a pool of n mbufs of data_room bytes (headroom included) and numbers them: mbufs[i]
 * and bufs[i] (its buffer) for the mbuf whose index field says i. NULL on error (rte_errno). */
struct rte_mempool *xdpos_pool_create(const char *name, unsigned int n, unsigned int cache,
				      uint16_t data_room, int socket, struct rte_mbuf **mbufs,
				      uint8_t **bufs, uint16_t *buf_len, uint16_t *headroom)
{
	struct rte_mempool *mp;
	struct pool_walk w = { mbufs, bufs, n, 0 };

	if (idx_offset < 0) {
		idx_offset = rte_mbuf_dynfield_register(&idx_field);
		if (idx_offset < 0)
			return NULL;
	}
	mp = rte_pktmbuf_pool_create(name, n, cache, 0, data_room, socket);
	if (mp == NULL)
		return NULL;
	rte_mempool_obj_iter(mp, index_mbuf, &w);
	if (w.seen != n) {
		rte_mempool_free(mp);
		rte_errno = EINVAL;
		return NULL;
	}
	*buf_len = mbufs[0]->buf_len;
	*headroom = RTE_PKTMBUF_HEADROOM;
	return mp;
}

unsigned int xdpos_pool_avail(const struct rte_mempool *mp)
{
	return rte_mempool_avail_count(mp);
}

/* Allocates n mbufs at once (all or none): their frame indices and data offsets. */
unsigned int xdpos_alloc(struct rte_mempool *mp, struct rte_mbuf **out, uint32_t *idx,
			 uint16_t *off, unsigned int n)
{
	if (rte_pktmbuf_alloc_bulk(mp, out, n) != 0)
		return 0;
	for (unsigned int i = 0; i < n; i++) {
		idx[i] = frame_index(out[i]);
		off[i] = out[i]->data_off;
	}
	return n;
}

void xdpos_free_bulk(struct rte_mbuf **mbufs, unsigned int n)
{
	rte_pktmbuf_free_bulk(mbufs, n);
}

/* ---- the fast path ---------------------------------------------------------------------- */

struct xdpos_rxm {
	struct rte_mbuf *m;
	uint32_t idx;
	uint16_t off;
	uint16_t len;   /* data_len of the first segment */
	uint32_t pkt_len;
	uint16_t segs;
	uint8_t csum;   /* 1: IPv4 and L4 checksums verified good by the device */
	uint8_t pad;
};

/* A thread that polls a queue becomes an EAL thread once (its own lcore id, so the mempool's
 * per-lcore cache serves it); without a free lcore id it polls without a cache. */
static __thread int registered;

static inline void register_once(void)
{
	if (unlikely(!registered)) {
		registered = 1;
		if (rte_lcore_id() == LCORE_ID_ANY)
			(void)rte_thread_register();
	}
}

uint16_t xdpos_rx(uint16_t port, uint16_t queue, struct rte_mbuf **scratch,
		  struct xdpos_rxm *meta, uint16_t n)
{
	register_once();
	uint16_t got = rte_eth_rx_burst(port, queue, scratch, n);

	for (uint16_t i = 0; i < got; i++) {
		struct rte_mbuf *m = scratch[i];
		uint64_t f = m->ol_flags;

		meta[i].m = m;
		meta[i].idx = frame_index(m);
		meta[i].off = m->data_off;
		meta[i].len = m->data_len;
		meta[i].pkt_len = m->pkt_len;
		meta[i].segs = m->nb_segs;
		meta[i].csum = (f & RTE_MBUF_F_RX_L4_CKSUM_MASK) == RTE_MBUF_F_RX_L4_CKSUM_GOOD &&
			       (f & RTE_MBUF_F_RX_IP_CKSUM_MASK) == RTE_MBUF_F_RX_IP_CKSUM_GOOD;
	}
	return got;
}

/* What xdpos asks of the device for one frame. */
enum { XDPOS_TX_PLAIN = 0, XDPOS_TX_UDP_CSUM = 1, XDPOS_TX_TCP_CSUM = 2, XDPOS_TX_TCP_SEG = 3 };

struct xdpos_txm {
	struct rte_mbuf *m;
	uint16_t off;
	uint16_t len;
	uint8_t kind;
	uint8_t l2_len;
	uint16_t l3_len;
	uint16_t l4_len;
	uint16_t seg_size;
};

uint16_t xdpos_tx(uint16_t port, uint16_t queue, const struct xdpos_txm *meta,
		  struct rte_mbuf **scratch, uint16_t n)
{
	register_once();
	for (uint16_t i = 0; i < n; i++) {
		struct rte_mbuf *m = meta[i].m;
		uint64_t f = 0;

		m->data_off = meta[i].off;
		m->data_len = meta[i].len;
		m->pkt_len = meta[i].len;
		m->nb_segs = 1;
		m->next = NULL;
		switch (meta[i].kind) {
		case XDPOS_TX_UDP_CSUM:
			f = RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_UDP_CKSUM;
			break;
		case XDPOS_TX_TCP_CSUM:
			f = RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_TCP_CKSUM;
			break;
		case XDPOS_TX_TCP_SEG:
			f = RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_IP_CKSUM | RTE_MBUF_F_TX_TCP_SEG |
			    RTE_MBUF_F_TX_TCP_CKSUM;
			m->tso_segsz = meta[i].seg_size;
			m->l4_len = meta[i].l4_len;
			break;
		default:
			break;
		}
		m->ol_flags = f;
		m->l2_len = meta[i].l2_len;
		m->l3_len = meta[i].l3_len;
		scratch[i] = m;
	}
	return rte_eth_tx_burst(port, queue, scratch, n);
}
