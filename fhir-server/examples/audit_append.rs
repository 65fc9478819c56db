//! The audit writer's cost alone, without HTTP or a load generator: batches of 8,192 read
//! records shaped like the benchmark's (1,000 patients, a request id each) appended the way
//! the recorder appends them (`Store::append_audit`: sealing, the rows, the patient rows,
//! one commit), the time per record printed over the batches. Steadier than throughput on
//! a shared machine, so it says whether a change to the writer helps.
//!
//! Usage: cargo run --release -p fhir-server --example audit_append [BATCHES] [DATABASE]
//! (DATABASE: a `postgres://` URL, else a fresh SQLite file in a temporary folder; on
//! PostgreSQL the records are appended to the `default` tenant of that database).
use std::sync::Arc;
use std::time::Instant;

use fhir_server::store::Store;
use fhir_server::store::audit::{Agent, Entry};
use fhir_server::store::audit_batch::Batch;

const BATCH: usize = 8_192;

type Failure = Box<dyn std::error::Error>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Failure> {
    let mut args = std::env::args().skip(1);
    let batches: usize = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20)
        .max(1);
    let folder = std::env::temp_dir().join(format!("audit-append-{}", std::process::id()));
    let database = match args.next() {
        Some(url) => url,
        None => {
            std::fs::create_dir_all(&folder)?;
            folder.join("f.db").display().to_string()
        }
    };
    let store = Store::open(&database, 4, None)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let tenant = store
        .tenant_id("default")
        .await
        .map_err(|e| format!("{e:?}"))?
        .ok_or("the database has no default tenant")?;
    let mut micros_per_record = Vec::with_capacity(batches);
    for batch in 0..batches {
        let entries = Arc::new(Batch::of(&reads(batch * BATCH)));
        let started = Instant::now();
        store
            .append_audit(tenant, entries)
            .await
            .map_err(|e| format!("{e:?}"))?;
        micros_per_record.push(started.elapsed().as_secs_f64() * 1e6 / BATCH as f64);
    }
    micros_per_record.sort_by(f64::total_cmp);
    println!(
        "{} µs per record: median {:.2}, fastest batch {:.2}, slowest {:.2} ({batches} batches of {BATCH})",
        store.backend_name(),
        micros_per_record[micros_per_record.len() / 2],
        micros_per_record[0],
        micros_per_record[micros_per_record.len() - 1]
    );
    let _ = std::fs::remove_dir_all(&folder);
    Ok(())
}

/// A batch of read records numbered from `first`: each its own request, 1,000 patients
/// taken round and round out of order.
fn reads(first: usize) -> Vec<Entry> {
    (first..first + BATCH)
        .map(|n| {
            let patient = format!("p{:05}", n * 7_919 % 1_000);
            Entry {
                recorded: 1_765_000_000_000_000 + n as i64 * 40,
                event: "read".into(),
                action: "R",
                status: 200,
                agent: Arc::new(Agent {
                    client: Some("anonymous".into()),
                    address: Some("127.0.0.1".into()),
                    user_agent: Some("fhir-tools/0.1".into()),
                    request_id: Some(format!("{n:032x}")),
                    ..Agent::default()
                }),
                entity: Some(format!("Patient/{patient}/_history/1")),
                query: None,
                via: None,
                patients: vec![patient],
            }
        })
        .collect()
}
