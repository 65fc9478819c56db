//! `fhir-server tenant export DIR` / `tenant import DIR`: moves one practice between
//! servers with everything it has (every version of every resource, the accounts, the
//! scheduling claims, waiting jobs, the audit trail as sealed), not only its current
//! resources as `export` / `import` do.
//!
//! The folder holds one NDJSON file per table (`store::tenant_copy::TABLES`), each line a
//! JSON array of the row's values in the table's column order (stored JSON embedded as
//! JSON), and `tenant.json`, written last: the format, the tenant, and each table's
//! columns and row count, which an import checks (a cut-off file is refused).
//!
//! An import first walks the exported audit trail and refuses it unless it is whole, then
//! writes everything in one transaction, then verifies the trail again where it landed.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::audit::describe;
use crate::audit::retention::{self, AuditKey};
use crate::audit::verify::{Chain, Report, verify};
use crate::config::DatabaseConfig;
use crate::store::audit::{GENESIS, record_of};
use crate::store::tenant_copy::{Checks, Kind, Row, Source, TABLES, Table};

/// What `tenant.json` says the folder is.
const FORMAT: &str = "fhir-server tenant";
const FORMAT_VERSION: i64 = 1;
const MANIFEST: &str = "tenant.json";

/// Writes tenant `tenant`'s rows into `dir` (new or empty), from one snapshot.
pub async fn export(database: &DatabaseConfig, tenant: &str, dir: &Path) -> Result<(), String> {
    let (store, id) = super::open_tenant(database, tenant).await?;
    if dir.exists()
        && std::fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .next()
            .is_some()
    {
        return Err(format!("{} is not empty", dir.display()));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files = HashMap::new();
    for table in TABLES {
        let path = dir.join(format!("{}.ndjson", table.name));
        let file = File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        files.insert(table.name, (BufWriter::new(file), 0u64));
    }
    let files = Arc::new(Mutex::new(files));
    let sink = {
        let files = files.clone();
        Box::new(move |table: &'static Table, cells: Vec<Option<String>>| {
            let line = line_of(table, cells)?;
            let mut files = files.lock().map_err(|_| "a writer failed".to_owned())?;
            let (file, rows) = files.get_mut(table.name).ok_or("no file")?;
            *rows += 1;
            writeln!(file, "{line}").map_err(|e| e.to_string())
        })
    };
    store
        .export_tenant(id, sink)
        .await
        .map_err(|e| format!("cannot read the tenant: {e:?}"))?;
    let mut files = files.lock().map_err(|_| "a writer failed".to_owned())?;
    let mut tables = Vec::new();
    for table in TABLES {
        let (file, rows) = files.get_mut(table.name).ok_or("no file")?;
        file.flush().map_err(|e| e.to_string())?;
        file.get_ref().sync_all().map_err(|e| e.to_string())?;
        let columns: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
        tables.push(json!({"name": table.name, "columns": columns, "rows": rows}));
        println!("{:>10} {}", rows, table.name);
    }
    let manifest = json!({"format": FORMAT, "version": FORMAT_VERSION, "tenant": tenant,
        "exported": crate::resource::format_instant(crate::clock::now_micros()),
        "tables": tables});
    let path = dir.join(MANIFEST);
    std::fs::write(&path, format!("{manifest:#}\n"))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    println!("exported tenant '{tenant}' to {}", dir.display());
    Ok(())
}

/// A row as a JSON array.
fn line_of(table: &Table, cells: Vec<Option<String>>) -> Result<String, String> {
    let values = cells
        .into_iter()
        .zip(table.columns)
        .map(|(cell, (column, kind))| match (cell, kind) {
            (None, _) => Ok(Value::Null),
            (Some(text), Kind::Int | Kind::Chain) => text
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| format!("{}.{column}: '{text}' is not a number", table.name)),
            (Some(text), Kind::Text) => Ok(Value::String(text)),
            (Some(text), Kind::Json | Kind::Body) => serde_json::from_str(&text).map_err(|e| {
                format!(
                    "{}.{column}: stored JSON that does not parse: {e}",
                    table.name
                )
            }),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Value::Array(values).to_string())
}

/// A JSON array line as a row's cells.
fn cells_of(table: &Table, line: &str) -> Result<Vec<Option<String>>, String> {
    let Ok(Value::Array(values)) = serde_json::from_str::<Value>(line) else {
        return Err(format!("{}: a line that is not a JSON array", table.name));
    };
    if values.len() != table.columns.len() {
        return Err(format!(
            "{}: a row of {} values where there are {} columns",
            table.name,
            values.len(),
            table.columns.len()
        ));
    }
    values
        .into_iter()
        .zip(table.columns)
        .map(|(value, (column, kind))| match (value, kind) {
            (Value::Null, _) => Ok(None),
            (Value::Number(n), Kind::Int | Kind::Chain) if n.is_i64() => Ok(Some(n.to_string())),
            (Value::String(text), Kind::Text) => Ok(Some(text)),
            (value @ (Value::Object(_) | Value::Array(_)), Kind::Json | Kind::Body) => {
                Ok(Some(value.to_string()))
            }
            (value, _) => Err(format!(
                "{}.{column}: {value} is not a value of this column",
                table.name
            )),
        })
        .collect()
}

/// The manifest's row counts, once its format and columns are this server's.
fn read_manifest(dir: &Path) -> Result<(String, HashMap<String, u64>), String> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "{}: {e} (an export that did not finish has none)",
            path.display()
        )
    })?;
    let manifest: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if manifest["format"] != FORMAT || manifest["version"] != FORMAT_VERSION {
        return Err(format!(
            "{}: not a tenant export of this version ({FORMAT} {FORMAT_VERSION})",
            path.display()
        ));
    }
    let mut counts = HashMap::new();
    for table in TABLES {
        let listed = manifest["tables"]
            .as_array()
            .and_then(|tables| tables.iter().find(|t| t["name"] == table.name))
            .ok_or_else(|| format!("{}: table {} is missing", path.display(), table.name))?;
        let columns: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
        if listed["columns"] != json!(columns) {
            return Err(format!(
                "{}: table {} has other columns than this server's",
                path.display(),
                table.name
            ));
        }
        let rows = listed["rows"]
            .as_u64()
            .ok_or("a table without its row count")?;
        counts.insert(table.name.to_owned(), rows);
    }
    let tenant = manifest["tenant"].as_str().unwrap_or_default().to_owned();
    Ok((tenant, counts))
}

/// Every row of `table`'s file, checked against the manifest's count.
fn rows_of(dir: &Path, table: &'static Table, expected: u64) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    each_row(dir, table, expected, |cells| {
        rows.push((table, cells));
        Ok(())
    })?;
    Ok(rows)
}

/// Calls `each` with every row of `table`'s file; refuses a count other than the
/// manifest's.
fn each_row(
    dir: &Path,
    table: &'static Table,
    expected: u64,
    mut each: impl FnMut(Vec<Option<String>>) -> Result<(), String>,
) -> Result<(), String> {
    for row in RowReader::open(dir, table, expected)? {
        each(row?.1)?;
    }
    Ok(())
}

/// Reads one table's file lazily, line by line, and checks its count at the end.
struct RowReader {
    table: &'static Table,
    lines: std::io::Lines<BufReader<File>>,
    read: u64,
    expected: u64,
    done: bool,
}

impl RowReader {
    fn open(dir: &Path, table: &'static Table, expected: u64) -> Result<RowReader, String> {
        let path = dir.join(format!("{}.ndjson", table.name));
        let file = File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(RowReader {
            table,
            lines: BufReader::with_capacity(1 << 20, file).lines(),
            read: 0,
            expected,
            done: false,
        })
    }
}

impl Iterator for RowReader {
    type Item = Result<Row, String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.lines.next() {
            Some(Ok(line)) => {
                self.read += 1;
                Some(cells_of(self.table, &line).map(|cells| (self.table, cells)))
            }
            Some(Err(error)) => {
                self.done = true;
                Some(Err(format!("{}: {error}", self.table.name)))
            }
            None => {
                self.done = true;
                (self.read != self.expected).then(|| {
                    Err(format!(
                        "{}: {} rows where the export wrote {}: the file was cut off or added to",
                        self.table.name, self.read, self.expected
                    ))
                })
            }
        }
    }
}

/// Walks the exported trail from its checkpoint to the sequence's last record; refuses a
/// trail that is not whole. Whether it has a checkpoint (to be signed again).
fn check_trail(dir: &Path, counts: &HashMap<String, u64>) -> Result<bool, String> {
    let count = |name: &str| counts.get(name).copied().unwrap_or(0);
    let table = |name: &str| crate::store::tenant_copy::table(name).ok_or("no such table");
    let sequence = rows_of(dir, table("audit_sequence")?, count("audit_sequence"))?;
    let Some((_, sequence)) = sequence.into_iter().next() else {
        return Ok(false);
    };
    let int = |cell: &Option<String>| cell.as_deref().and_then(|c| c.parse::<i64>().ok());
    let (Some(last), Some(head_hash), Some(chain)) =
        (int(&sequence[0]), sequence[1].clone(), int(&sequence[2]))
    else {
        return Err("audit_sequence: a row without its number, hash or chain".into());
    };
    let checkpoints = rows_of(dir, table("audit_checkpoint")?, count("audit_checkpoint"))?;
    let start = match checkpoints.last() {
        Some((_, cells)) => (
            int(&cells[0]).ok_or("audit_checkpoint: no number")?,
            cells[1].clone().ok_or("audit_checkpoint: no hash")?,
        ),
        None => (0, GENESIS.to_owned()),
    };
    let mut walk = Chain::new(start, None);
    let mut problem = None;
    each_row(dir, table("audit_log")?, count("audit_log"), |cells| {
        let record = record_of(chain, cells).map_err(|e| format!("audit_log: {e:?}"))?;
        if problem.is_none() {
            problem = walk.check(&record);
        }
        Ok(())
    })?;
    let report = problem.unwrap_or_else(|| walk.finish(last));
    match &report {
        Report::Intact { hash, .. } if *hash == head_hash || last == 0 => {
            Ok(!checkpoints.is_empty())
        }
        Report::Intact { head, .. } => Err(format!(
            "the exported audit trail ends at record {head}, not where its sequence says ({last})"
        )),
        _ => Err(format!(
            "the exported audit trail is not whole, so it is not imported: {}",
            describe("(exported)", &report)
        )),
    }
}

/// Writes the tenant exported in `dir` into the database, as `name` (default: its name
/// there), which must be new or empty; then verifies its audit trail where it landed.
pub async fn import(
    database: &DatabaseConfig,
    dir: &Path,
    name: Option<String>,
    audit_key_file: Option<PathBuf>,
) -> Result<(), String> {
    let (exported, counts) = read_manifest(dir)?;
    let name = name.unwrap_or(exported);
    if !crate::http::admin::is_valid_tenant_id(&name) {
        return Err(format!(
            "invalid tenant id '{name}': use 1 to 64 letters, digits, '-' or '_'"
        ));
    }
    let has_checkpoint = check_trail(dir, &counts)?;
    let key_file = audit_key_file.unwrap_or_else(|| retention::default_key_file(&database.url));
    let key = if has_checkpoint {
        Some(AuditKey::load_or_create(&key_file)?)
    } else {
        None
    };
    let store = super::open(database).await?;
    let mut readers = Vec::new();
    for table in TABLES {
        let expected = counts.get(table.name).copied().unwrap_or(0);
        readers.push(RowReader::open(dir, table, expected)?);
    }
    let source: Source = Box::new(readers.into_iter().flatten());
    let signer = key.clone();
    let checks = Checks {
        validate: |resource, resource_type| {
            crate::fhir::json::check_resource(resource, resource_type)
                .map_err(|e| super::import::describe(&e))
        },
        resign: Box::new(move |tenant, checkpoint| {
            signer
                .as_ref()
                .map(|key| key.sign(tenant, checkpoint))
                .unwrap_or_default()
        }),
    };
    let tenant = store
        .import_tenant(&name, source, checks)
        .await
        .map_err(|e| {
            let error = crate::error::FhirError::from(e);
            format!("nothing was imported: {}", super::import::describe(&error))
        })?;
    let signed =
        |c: &crate::store::audit::Checkpoint| key.as_ref().is_some_and(|k| k.holds(tenant, c));
    let report = verify(&store, tenant, None, signed)
        .await
        .map_err(|e| format!("cannot read the audit trail: {e:?}"))?;
    println!(
        "imported tenant '{name}' (its FHIR base is /t/{name}/fhir); audit trail: {}",
        describe(&name, &report)
    );
    Ok(())
}
