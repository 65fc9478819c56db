//! `fhir-server import PATH...`: loads resources from files straight into the database.
//!
//! It reads NDJSON files (one resource per line, as `$export` writes them), Bundles
//! (a transaction Bundle, e.g. Synthea's output, is applied as one transaction; a batch
//! Bundle entry by entry; a collection's resources are loaded like NDJSON lines), single
//! resources, and folders of them. Every resource is validated like any write. A resource
//! with an id keeps it (it is written as an update, so references between files hold and
//! loading twice changes nothing but versions); one without gets a new id.
//!
//! A reader thread parses, validates and indexes while the database writes the previous
//! batch. A bad resource, line or file is reported and skipped; the rest goes on. The
//! summary lists what was loaded, skipped and failed (with the first reasons).

use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::Value;

use crate::config::DatabaseConfig;
use crate::error::FhirError;
use crate::store::transaction::{Target, Transaction, TxAction, TxEntry, TxFailure};
use crate::store::{Store, StoreError, TenantId};

#[derive(Debug, Clone, Args)]
pub struct ImportConfig {
    #[command(flatten)]
    pub database: DatabaseConfig,

    /// Files (`.ndjson`, `.json`) and folders of them (searched recursively).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,

    /// The tenant to load into.
    #[arg(long, default_value = "default")]
    pub tenant: String,

    /// Resources written per database transaction.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
}

/// How many failures the summary lists.
const SHOWN_FAILURES: usize = 20;

/// A unit of work for the database: a transaction, and where its entries came from.
struct Work {
    transaction: Transaction,
    /// Per entry (by index): `file:line` or `file entry n`.
    origins: Vec<String>,
    /// A Bundle's transaction fails or succeeds whole.
    atomic: bool,
}

/// What happened, for the summary.
#[derive(Default)]
struct Tally {
    loaded: AtomicUsize,
    skipped: AtomicUsize,
    failed: AtomicUsize,
    files: AtomicUsize,
    /// Bytes of the files read so far, for the progress bar.
    bytes: AtomicUsize,
    failures: std::sync::Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, count: usize, reason: String) {
        self.failed.fetch_add(count, Ordering::Relaxed);
        if let Ok(mut failures) = self.failures.lock()
            && failures.len() < SHOWN_FAILURES
        {
            failures.push(reason);
        }
    }
}

pub async fn run(config: ImportConfig) -> Result<(), String> {
    let (store, tenant) = super::open_tenant(&config.database, &config.tenant).await?;
    let mut files = Vec::new();
    for path in &config.paths {
        collect(path, &mut files).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if files.is_empty() {
        return Err("no .ndjson or .json files in the given paths".into());
    }
    let total_bytes: usize = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len() as usize)
        .sum();
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Work>(2);
    let reader = {
        let (tally, batch) = (tally.clone(), config.batch.max(1));
        std::thread::Builder::new()
            .name("import-reader".into())
            .spawn(move || read_all(&files, batch, &tally, &sender))
            .map_err(|e| format!("cannot start the reader: {e}"))?
    };
    let progress = spawn_progress(tally.clone(), total_bytes, started);
    while let Some(work) = receiver.recv().await {
        write(&store, tenant, work, &tally).await;
    }
    progress.abort();
    let total_files = reader.join().unwrap_or(0);
    summary(&tally, total_files, started)
}

/// The files under `path`, in name order.
fn collect(path: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if path.is_dir() {
        let mut children: Vec<PathBuf> = std::fs::read_dir(path)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        // Synthea's patient Bundles refer to its hospitals and practitioners by
        // conditional references: load those files first.
        children.sort_by_key(|child| (!is_synthea_directory(child), child.clone()));
        for child in children {
            if child.is_dir() || is_data_file(&child) {
                collect(&child, files)?;
            }
        }
    } else if path.exists() {
        files.push(path.to_owned());
    } else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such file",
        ));
    }
    Ok(())
}

/// Synthea's `hospitalInformation*.json` and `practitionerInformation*.json`.
fn is_synthea_directory(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
        n.starts_with("hospitalInformation") || n.starts_with("practitionerInformation")
    })
}

fn is_data_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("ndjson" | "json")
    )
}

/// The reader thread: every file, into batches of work. Returns the number of files.
fn read_all(
    files: &[PathBuf],
    batch: usize,
    tally: &Tally,
    sender: &tokio::sync::mpsc::Sender<Work>,
) -> usize {
    let mut pending = Pending::new(batch);
    let mut read_before = 0;
    for file in files {
        let size = std::fs::metadata(file).map_or(0, |m| m.len() as usize);
        tally.files.fetch_add(1, Ordering::Relaxed);
        let name = file.display().to_string();
        let result = if file.extension().and_then(|e| e.to_str()) == Some("ndjson") {
            read_ndjson(file, &name, tally, &mut pending, sender)
        } else {
            read_json(file, &name, tally, &mut pending, sender)
        };
        if let Err(error) = result {
            // A file that cannot be read is one failure at least: the exit status says so.
            tally.fail(1, format!("{name}: {error}"));
        }
        tally.bytes.store(read_before + size, Ordering::Relaxed);
        read_before += size;
    }
    pending.flush(sender);
    files.len()
}

/// Resources waiting to fill a batch.
struct Pending {
    size: usize,
    entries: Vec<TxEntry>,
    origins: Vec<String>,
}

impl Pending {
    fn new(size: usize) -> Pending {
        Pending {
            size,
            entries: Vec::new(),
            origins: Vec::new(),
        }
    }

    /// Adds a resource (validated), sending a batch when one is full.
    fn add(&mut self, resource: Value, origin: String, sender: &tokio::sync::mpsc::Sender<Work>) {
        let index = self.entries.len();
        self.entries.push(TxEntry {
            index,
            full_url: None,
            action: as_write(resource),
        });
        self.origins.push(origin);
        if self.entries.len() >= self.size {
            self.flush(sender);
        }
    }

    fn flush(&mut self, sender: &tokio::sync::mpsc::Sender<Work>) {
        if self.entries.is_empty() {
            return;
        }
        let mut transaction = Transaction::new(std::mem::take(&mut self.entries)).by_server();
        transaction.settle_locally();
        let work = Work {
            transaction,
            origins: std::mem::take(&mut self.origins),
            atomic: false,
        };
        let _ = sender.blocking_send(work);
    }
}

/// A loose resource's write: an update of its id (kept), or a create.
fn as_write(resource: Value) -> TxAction {
    let resource_type = resource["resourceType"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    match resource
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
    {
        Some(id) => TxAction::Update {
            resource_type,
            target: Target::Id(id),
            resource,
            if_match: None,
        },
        None => TxAction::Create {
            resource_type,
            resource,
            if_none_exist: None,
        },
    }
}

/// Parses and validates a loose resource; the reason it cannot be loaded.
fn check(value: Value) -> Result<Value, String> {
    let resource_type = value
        .get("resourceType")
        .and_then(Value::as_str)
        .ok_or("not a FHIR resource (no resourceType)")?
        .to_owned();
    if let Some(id) = value.get("id").and_then(Value::as_str)
        && !crate::ids::is_valid_id(id)
    {
        return Err(format!("invalid id '{id}'"));
    }
    crate::fhir::json::check_resource(&value, &resource_type).map_err(|e| describe(&e))?;
    Ok(value)
}

pub(super) fn describe(error: &FhirError) -> String {
    error
        .issues
        .iter()
        .map(|issue| match issue.expression.first() {
            Some(at) => format!("{} ({at})", issue.diagnostics),
            None => issue.diagnostics.clone(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn read_ndjson(
    file: &Path,
    name: &str,
    tally: &Tally,
    pending: &mut Pending,
    sender: &tokio::sync::mpsc::Sender<Work>,
) -> Result<(), String> {
    let mut reader =
        BufReader::with_capacity(1 << 20, File::open(file).map_err(|e| e.to_string())?);
    let mut line = Vec::new();
    let mut number = 0;
    loop {
        line.clear();
        // Bytes, not text: a line that is not UTF-8 fails alone (the JSON parser says so),
        // not the rest of the file.
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) => return Err(format!("unreadable after line {number}: {error}")),
        }
        number += 1;
        let origin = format!("{name}:{number}");
        tally.bytes.fetch_add(line.len(), Ordering::Relaxed);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match crate::fhir::json::parse_json(&line)
            .map_err(|e| describe(&e))
            .and_then(check)
        {
            Ok(resource) => pending.add(resource, origin, sender),
            Err(reason) => tally.fail(1, format!("{origin}: {reason}")),
        }
    }
    Ok(())
}

fn read_json(
    file: &Path,
    name: &str,
    tally: &Tally,
    pending: &mut Pending,
    sender: &tokio::sync::mpsc::Sender<Work>,
) -> Result<(), String> {
    let bytes = std::fs::read(file).map_err(|e| e.to_string())?;
    let value = crate::fhir::json::parse_json(&bytes).map_err(|e| describe(&e))?;
    if value.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        match check(value) {
            Ok(resource) => pending.add(resource, name.to_owned(), sender),
            Err(reason) => tally.fail(1, format!("{name}: {reason}")),
        }
        return Ok(());
    }
    let kind = value["type"].as_str().unwrap_or_default().to_owned();
    match kind.as_str() {
        "transaction" | "batch" => {
            let (_, mut entries) =
                crate::interaction::transaction::read_bundle(value, "", usize::MAX)
                    .map_err(|e| describe(&e))?;
            let count = entries.len();
            if kind == "batch" {
                // Each entry on its own, as a server runs a batch: one bad entry fails
                // alone.
                for (i, entry) in entries.iter_mut().enumerate() {
                    let origin = format!("{name} entry {i}");
                    let planned =
                        crate::interaction::transaction::plan(std::slice::from_mut(entry));
                    let (writes, reads) = match planned {
                        Ok(planned) => planned,
                        Err(error) => {
                            tally.fail(1, format!("{origin}: {}", describe(&error)));
                            continue;
                        }
                    };
                    tally.skipped.fetch_add(reads.len(), Ordering::Relaxed);
                    for write in writes {
                        let mut transaction =
                            Transaction::new(vec![TxEntry { index: 0, ..write }]).by_server();
                        transaction.settle_locally();
                        let _ = sender.blocking_send(Work {
                            transaction,
                            origins: vec![origin.clone()],
                            atomic: true,
                        });
                    }
                }
                return Ok(());
            }
            let (writes, reads) = match crate::interaction::transaction::plan(&mut entries) {
                Ok(planned) => planned,
                Err(error) => {
                    tally.fail(count, format!("{name}: {}", describe(&error)));
                    return Ok(());
                }
            };
            tally.skipped.fetch_add(reads.len(), Ordering::Relaxed);
            // By the entry's position in the Bundle (the index a failure names).
            let origins = (0..count).map(|i| format!("{name} entry {i}")).collect();
            let mut transaction = Transaction::new(writes).by_server();
            transaction.settle_locally();
            let _ = sender.blocking_send(Work {
                transaction,
                origins,
                atomic: true,
            });
        }
        _ => {
            // A collection, searchset, document or message: its resources.
            for (i, entry) in value["entry"].as_array().into_iter().flatten().enumerate() {
                let origin = format!("{name} entry {i}");
                match entry
                    .get("resource")
                    .cloned()
                    .ok_or_else(|| "no resource".into())
                    .and_then(check)
                {
                    Ok(resource) => pending.add(resource, origin, sender),
                    Err(reason) => tally.fail(1, format!("{origin}: {reason}")),
                }
            }
        }
    }
    Ok(())
}

/// Writes a unit of work. A loose batch that fails on one entry is written again without
/// it, so one bad resource does not cost the others; a Bundle's transaction fails whole.
async fn write(store: &Store, tenant: TenantId, work: Work, tally: &Tally) {
    let Work {
        transaction,
        origins,
        atomic,
    } = work;
    // Kept for a second try without the failing entry (rare: resources were validated).
    let mut entries = if atomic {
        Vec::new()
    } else {
        transaction.entries.clone()
    };
    let mut attempt = Some(transaction);
    while let Some(transaction) = attempt.take() {
        let count = transaction.entries.len();
        if count == 0 {
            return;
        }
        let (index, error) = match store.transaction(tenant, transaction).await {
            Ok(results) => {
                tally.loaded.fetch_add(results.len(), Ordering::Relaxed);
                return;
            }
            Err(TxFailure { index, error }) => (index, error),
        };
        let origin = origins.get(index).cloned().unwrap_or_default();
        let (reason, of_the_entry) = match error {
            StoreError::Rejected(error) => (describe(&error), true),
            other => (format!("{other:?}"), false),
        };
        if atomic {
            tally.fail(
                count,
                format!("{origin}: {reason} (the whole Bundle was not loaded)"),
            );
            return;
        }
        // A failure of the database itself (it stopped, a commit failed) is no entry's
        // fault: the batch fails whole rather than being retried without an innocent one.
        if !of_the_entry || !entries.iter().any(|entry| entry.index == index) {
            tally.fail(
                count,
                format!("a batch of {count} from {origin}: {reason} (not loaded)"),
            );
            return;
        }
        tally.fail(1, format!("{origin}: {reason}"));
        entries.retain(|entry| entry.index != index);
        let mut again = Transaction::new(entries.clone()).by_server();
        again.settle_locally();
        attempt = Some(again);
    }
}

/// The progress line: a bar of the bytes read, the counts and the rate; redrawn in place
/// on a terminal, a line every five seconds otherwise (logs).
fn spawn_progress(
    tally: Arc<Tally>,
    total_bytes: usize,
    started: Instant,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let terminal = std::io::stderr().is_terminal();
        loop {
            tokio::time::sleep(Duration::from_millis(if terminal { 250 } else { 5000 })).await;
            let loaded = tally.loaded.load(Ordering::Relaxed);
            let share = tally.bytes.load(Ordering::Relaxed) as f64 / total_bytes.max(1) as f64;
            let line = format!(
                "  {} {:>3.0}%  {} files read  {loaded} loaded  {} failed  {:.0}/s",
                bar(share.min(1.0), 30),
                share.min(1.0) * 100.0,
                tally.files.load(Ordering::Relaxed),
                tally.failed.load(Ordering::Relaxed),
                loaded as f64 / started.elapsed().as_secs_f64()
            );
            let mut err = std::io::stderr();
            if terminal {
                let _ = write!(err, "\r{line}   ");
            } else {
                let _ = writeln!(err, "{line}");
            }
            let _ = err.flush();
        }
    })
}

/// `[=========>          ]`: `share` (0 to 1) of `width` cells filled.
fn bar(share: f64, width: usize) -> String {
    let filled = (share * width as f64).round() as usize;
    let mut text = String::with_capacity(width + 2);
    text.push('[');
    for cell in 0..width {
        text.push(match cell.cmp(&filled) {
            std::cmp::Ordering::Less => '=',
            std::cmp::Ordering::Equal => '>',
            std::cmp::Ordering::Greater => ' ',
        });
    }
    text.push(']');
    text
}

fn summary(tally: &Tally, files: usize, started: Instant) -> Result<(), String> {
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
    let seconds = started.elapsed().as_secs_f64();
    let (loaded, skipped, failed) = (
        tally.loaded.load(Ordering::Relaxed),
        tally.skipped.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
    );
    println!(
        "imported {files} files in {seconds:.1}s: {loaded} resources loaded ({:.0}/s), {skipped} entries skipped (reads), {failed} failed",
        loaded as f64 / seconds.max(1e-9)
    );
    if let Ok(failures) = tally.failures.lock() {
        for failure in failures.iter() {
            println!("  failed: {failure}");
        }
        if failed > failures.len() && !failures.is_empty() {
            println!("  ... and more");
        }
    }
    if failed > 0 {
        return Err(format!("{failed} resources were not loaded"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::bar;

    #[test]
    fn the_bar_fills_with_the_share_read() {
        assert_eq!(bar(0.0, 4), "[>   ]");
        assert_eq!(bar(0.5, 4), "[==> ]");
        assert_eq!(bar(1.0, 4), "[====]");
    }
}
