//! libFuzzer entry point of [`xdpos_fuzz::tcp`]'s target (see that module).
#![no_main]
#![forbid(unsafe_code)]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xdpos_fuzz::targets::tcp(data));
