//! # `xdpos bench`: the side-by-side benchmark harness
//!
//! (Being written: see BENCHMARKS.md.)

/// The benchmarks.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCmd {}

/// Runs one benchmark.
pub fn run(cmd: &BenchCmd) -> anyhow::Result<()> {
    match *cmd {}
}
