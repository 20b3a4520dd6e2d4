//! The `xdpos` command: `demo`, `bench`, `cleanup` (and, as the appliance grows, `run` and
//! `check-config`).
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};

/// xdpos: a userspace packet-processing appliance on AF_XDP with a library-OS stack per core.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Side-by-side benchmarks against the kernel (see BENCHMARKS.md).
    #[command(subcommand)]
    Bench(xdpos::bench::BenchCmd),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match &cli.cmd {
        Cmd::Bench(b) => xdpos::bench::run(b),
    }
}
