//! libFuzzer entry point of [`xdpos_fuzz::wire_icmp`]'s target (see that module).
#![no_main]
#![forbid(unsafe_code)]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xdpos_fuzz::targets::wire_icmp(data));
