//! Hand-written declarations of the DPDK functions nic calls and of the shim's
//! (`nic/dpdk/shim.c`). The structs mirror the shim's, field for field (`#[repr(C)]`); DPDK's own
//! structs never cross (the shim copies what is needed), so a DPDK release that changes them
//! needs the shim rebuilt, not these declarations changed.

use std::ffi::{c_char, c_int, c_uint};

/// DPDK's `struct rte_mempool`, only ever behind a pointer.
#[repr(C)]
#[derive(Debug)]
pub struct RteMempool {
    _opaque: [u8; 0],
}

/// DPDK's `struct rte_mbuf`, only ever behind a pointer.
#[repr(C)]
#[derive(Debug)]
pub struct RteMbuf {
    _opaque: [u8; 0],
}

/// `struct xdpos_dev_info`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DevInfo {
    pub max_rx_queues: u16,
    pub max_tx_queues: u16,
    pub rx_desc_max: u16,
    pub tx_desc_max: u16,
    pub max_rx_pktlen: u32,
    pub socket: i32,
    pub mac: [u8; 6],
    pub rx_csum: u8,
    pub tx_csum: u8,
    pub tso: u8,
    pub pad: [u8; 3],
    pub driver: [c_char; 64],
}

impl DevInfo {
    pub const ZERO: DevInfo = DevInfo {
        max_rx_queues: 0,
        max_tx_queues: 0,
        rx_desc_max: 0,
        tx_desc_max: 0,
        max_rx_pktlen: 0,
        socket: 0,
        mac: [0; 6],
        rx_csum: 0,
        tx_csum: 0,
        tso: 0,
        pad: [0; 3],
        driver: [0; 64],
    };
}

/// `struct xdpos_eth_stats`: the basic counters of `rte_eth_stats`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct EthStatsC {
    pub ipackets: u64,
    pub opackets: u64,
    pub ibytes: u64,
    pub obytes: u64,
    pub imissed: u64,
    pub ierrors: u64,
    pub oerrors: u64,
    pub rx_nombuf: u64,
}

/// `struct xdpos_rxm`: one received mbuf as the shim read it.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RxMeta {
    pub m: *mut RteMbuf,
    pub idx: u32,
    pub off: u16,
    pub len: u16,
    pub pkt_len: u32,
    pub segs: u16,
    pub csum: u8,
    pub pad: u8,
}

impl RxMeta {
    pub const ZERO: RxMeta = RxMeta {
        m: std::ptr::null_mut(),
        idx: 0,
        off: 0,
        len: 0,
        pkt_len: 0,
        segs: 0,
        csum: 0,
        pad: 0,
    };
}

/// `XDPOS_TX_*`: what the device is asked to do for one frame.
pub const TX_PLAIN: u8 = 0;
pub const TX_UDP_CSUM: u8 = 1;
pub const TX_TCP_CSUM: u8 = 2;
pub const TX_TCP_SEG: u8 = 3;

/// `struct xdpos_txm`: one mbuf to transmit and what to set in it.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct TxMeta {
    pub m: *mut RteMbuf,
    pub off: u16,
    pub len: u16,
    pub kind: u8,
    pub l2_len: u8,
    pub l3_len: u16,
    pub l4_len: u16,
    pub seg_size: u16,
}

impl TxMeta {
    pub const ZERO: TxMeta = TxMeta {
        m: std::ptr::null_mut(),
        off: 0,
        len: 0,
        kind: TX_PLAIN,
        l2_len: 0,
        l3_len: 0,
        l4_len: 0,
        seg_size: 0,
    };
}

extern "C" {
    // DPDK itself.
    pub fn rte_eal_init(argc: c_int, argv: *mut *mut c_char) -> c_int;
    pub fn rte_eal_cleanup() -> c_int;
    pub fn rte_eth_dev_get_port_by_name(name: *const c_char, port_id: *mut u16) -> c_int;
    pub fn rte_eth_dev_stop(port_id: u16) -> c_int;
    pub fn rte_eth_dev_close(port_id: u16) -> c_int;
    pub fn rte_mempool_in_use_count(mp: *const RteMempool) -> c_uint;
    pub fn rte_mempool_free(mp: *mut RteMempool);

    // The shim.
    pub fn xdpos_rte_errno() -> c_int;
    pub fn xdpos_dev_info(port: u16, out: *mut DevInfo) -> c_int;
    #[allow(clippy::too_many_arguments)]
    pub fn xdpos_dev_setup(
        port: u16,
        queues: u16,
        rx_desc: *mut u16,
        tx_desc: *mut u16,
        rx_csum: u8,
        tx_csum: u8,
        tso: u8,
        promiscuous: u8,
        pools: *const *mut RteMempool,
    ) -> c_int;
    pub fn xdpos_stats_get(port: u16, out: *mut EthStatsC) -> c_int;
    pub fn xdpos_xstats(port: u16, names: *mut c_char, values: *mut u64, n: c_uint) -> c_int;
    #[allow(clippy::too_many_arguments)]
    pub fn xdpos_pool_create(
        name: *const c_char,
        n: c_uint,
        cache: c_uint,
        data_room: u16,
        socket: c_int,
        mbufs: *mut *mut RteMbuf,
        bufs: *mut *mut u8,
        buf_len: *mut u16,
        headroom: *mut u16,
    ) -> *mut RteMempool;
    pub fn xdpos_pool_avail(mp: *const RteMempool) -> c_uint;
    pub fn xdpos_alloc(
        mp: *mut RteMempool,
        out: *mut *mut RteMbuf,
        idx: *mut u32,
        off: *mut u16,
        n: c_uint,
    ) -> c_uint;
    pub fn xdpos_free_bulk(mbufs: *mut *mut RteMbuf, n: c_uint);
    pub fn xdpos_rx(
        port: u16,
        queue: u16,
        scratch: *mut *mut RteMbuf,
        meta: *mut RxMeta,
        n: u16,
    ) -> u16;
    pub fn xdpos_tx(
        port: u16,
        queue: u16,
        meta: *const TxMeta,
        scratch: *mut *mut RteMbuf,
        n: u16,
    ) -> u16;
}
