//! libFuzzer entry point of [`xdpos_fuzz::frag`]'s target (see that module).
#![no_main]
#![forbid(unsafe_code)]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xdpos_fuzz::targets::frag(data));
