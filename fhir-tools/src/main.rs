//! `fhir-tools`: developer tooling for fhir-server, kept out of the server binary.
//!
//! `bench` measures create and read-by-id of a running server (`bench search` the searches
//! of a practice, `bench workload` the side-by-side workload, `bench scheduling` `$find`
//! and `$book`); `generate` loads a realistic
//! practice into a running server; `db-stats` shows the stored size of the data and of the
//! search index; `edi-bench` measures the X12 translators.

mod bench;
mod bench_client;
mod bench_scheduling;
mod bench_search;
mod bench_workload;
mod db_stats;
mod edi_bench;
mod generate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The load generators allocate per request, as the server does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "fhir-tools",
    version,
    about = "Developer tooling for fhir-server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure create and read-by-id throughput and latency of a running server;
    /// `bench search` measures searches over the data `generate` made.
    #[command(args_conflicts_with_subcommands = true)]
    Bench {
        #[command(flatten)]
        config: bench::BenchConfig,
        #[command(subcommand)]
        command: Option<BenchCommand>,
    },
    /// Generate a realistic practice and load it into a running server.
    Generate(generate::GenerateConfig),
    /// Print the stored size of the data and of the search index.
    DbStats(db_stats::DbStatsConfig),
    /// Measure 837P generation and 835 parsing (and, with --pyx12, compare with pyx12).
    EdiBench(edi_bench::EdiBenchConfig),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Measure the search queries of a practice (latency, rate, result sizes).
    Search(bench_search::SearchBenchConfig),
    /// The side-by-side workload (ingest, reads, name prefix, a lookup with many matches,
    /// creates), with the server's memory after each phase.
    Workload(bench_workload::WorkloadConfig),
    /// Scheduling: `$find` latency for a week of one of 50 practitioners, `$book` rate by 32
    /// clients, and a check that nobody was booked twice.
    Scheduling(bench_scheduling::SchedulingBenchConfig),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Bench {
                command: Some(BenchCommand::Search(config)),
                ..
            } => bench_search::run(config).await,
            Command::Bench {
                command: Some(BenchCommand::Workload(config)),
                ..
            } => bench_workload::run(config).await,
            Command::Bench {
                command: Some(BenchCommand::Scheduling(config)),
                ..
            } => bench_scheduling::run(config).await,
            Command::Bench { config, .. } => bench::run(config).await,
            Command::Generate(config) => generate::run(config).await,
            Command::DbStats(config) => db_stats::run(config).await,
            Command::EdiBench(config) => edi_bench::run(config),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
