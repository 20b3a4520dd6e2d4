//! The `xdpos` command.
#![forbid(unsafe_code)]

fn main() {}
