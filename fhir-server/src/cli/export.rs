//! `fhir-server export`: writes a tenant's current resources as NDJSON files, one per type,
//! straight from the database (the same writer as the `$export` jobs).

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use crate::config::DatabaseConfig;
use crate::ids::ResourceType;
use crate::jobs::export::{self, Scope};

#[derive(Debug, Clone, Args)]
pub struct ExportConfig {
    #[command(flatten)]
    pub database: DatabaseConfig,

    /// The folder to write `<Type>.ndjson` files into (created if missing).
    #[arg(long)]
    pub out: PathBuf,

    /// Only these resource types, comma-separated (default: every type there is).
    #[arg(long = "type", value_delimiter = ',')]
    pub types: Vec<String>,

    /// Only resources updated at or after this instant (e.g. 2026-01-01T00:00:00Z).
    #[arg(long)]
    pub since: Option<String>,

    /// The tenant to export.
    #[arg(long, default_value = "default")]
    pub tenant: String,
}

pub async fn run(config: ExportConfig) -> Result<(), String> {
    let (store, tenant) = super::open_tenant(&config.database, &config.tenant).await?;
    for resource_type in &config.types {
        if ResourceType::parse(resource_type).is_none() {
            return Err(format!("unknown resource type '{resource_type}'"));
        }
    }
    let since =
        match &config.since {
            Some(text) => Some(crate::resource::parse_instant(text).ok_or_else(|| {
                format!("--since must be an instant with a time zone, not '{text}'")
            })?),
            None => None,
        };
    let types = if config.types.is_empty() {
        export::default_types(&store, tenant, &Scope::All)
            .await
            .map_err(|e| format!("cannot list the types: {e:?}"))?
    } else {
        config.types.clone()
    };
    let started = Instant::now();
    let mut last_report = Instant::now();
    let outputs = export::write_files(
        &store,
        tenant,
        &Scope::All,
        &types,
        since,
        &config.out,
        |resource_type, count| {
            if last_report.elapsed().as_millis() >= 1000 {
                eprintln!("  {resource_type}: {count} resources");
                last_report = Instant::now();
            }
            true
        },
    )
    .await?;
    let total: usize = outputs.iter().map(|o| o.count).sum();
    let seconds = started.elapsed().as_secs_f64();
    for output in &outputs {
        println!(
            "  {:<24} {:>9}  {}",
            output.resource_type, output.count, output.file
        );
    }
    println!(
        "exported {total} resources in {seconds:.1}s ({:.0}/s) to {}",
        total as f64 / seconds.max(1e-9),
        config.out.display()
    );
    Ok(())
}
