//! Micro-benchmarks of xdpos live in this package's `[[bench]]` targets; whole-system numbers
//! come from `xdpos bench` (see BENCHMARKS.md).
#![forbid(unsafe_code)]
