//! `fhir-server backup --out FILE` and `fhir-server restore FILE`: a consistent copy of the
//! whole database (every tenant, every version, accounts, keys, jobs and the audit trail)
//! taken while the server runs and writes, and put back into an empty database.
//!
//! - SQLite: the online backup API, in one step (one read transaction: the copy is the
//!   database as it was when the backup began, every write acknowledged before then
//!   included, whatever is written meanwhile); restored by copying the file into place.
//!   The copy of an encrypted database is encrypted with the same key.
//! - PostgreSQL: `pg_dump --format=custom` (one repeatable-read snapshot) and
//!   `pg_restore` into an empty database.

use std::path::Path;
use std::process::Command;

use sqlx::Connection as _;

/// The SQLite file of a `--database` value, or `None` for PostgreSQL.
fn sqlite_path(url: &str) -> Option<&str> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return None;
    }
    Some(
        url.strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url),
    )
}

/// Copies the database at `url` to `out` (which must not exist).
pub async fn backup(url: &str, out: &Path) -> Result<(), String> {
    if out.exists() {
        return Err(format!(
            "{} exists; a backup does not overwrite",
            out.display()
        ));
    }
    match sqlite_path(url) {
        Some(path) => {
            let (path, out) = (path.to_owned(), out.to_owned());
            tokio::task::spawn_blocking(move || sqlite_backup(&path, &out))
                .await
                .map_err(|e| e.to_string())?
        }
        None => run(Command::new("pg_dump")
            .args(["--format=custom", "--no-owner", "--file"])
            .arg(out)
            .arg(url)),
    }
}

fn sqlite_backup(path: &str, out: &Path) -> Result<(), String> {
    let source = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("cannot open {path}: {e}"))?;
    super::sqlite_key::unlock(&source).map_err(|e| format!("{e:?}"))?;
    let mut copy = rusqlite::Connection::open(out)
        .map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    // The copy of an encrypted database is encrypted with the same key.
    super::sqlite_key::unlock(&copy).map_err(|e| format!("{e:?}"))?;
    let backup = rusqlite::backup::Backup::new(&source, &mut copy)
        .map_err(|e| format!("cannot start the backup: {e}"))?;
    // Every page in one step: one read transaction, so one consistent state.
    backup
        .step(-1)
        .map_err(|e| format!("the backup failed: {e}"))?;
    Ok(())
}

/// Restores `file` (a backup) into the empty database at `url`.
pub async fn restore(file: &Path, url: &str) -> Result<(), String> {
    if !file.is_file() {
        return Err(format!("{} is not a backup file", file.display()));
    }
    match sqlite_path(url) {
        Some(path) => {
            let target = Path::new(path);
            if target.exists() && std::fs::metadata(target).map_or(true, |m| m.len() > 0) {
                return Err(format!(
                    "{path} exists: restore into a new database (a file that does not exist yet)"
                ));
            }
            if let Some(folder) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(folder).map_err(|e| e.to_string())?;
            }
            std::fs::copy(file, target)
                .map(|_| ())
                .map_err(|e| format!("cannot write {path}: {e}"))
        }
        None => {
            let mut conn = sqlx::PgConnection::connect(url)
                .await
                .map_err(|e| format!("cannot connect to the database: {e}"))?;
            let (tables,): (i64,) = sqlx::query_as(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
            )
            .fetch_one(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
            if tables > 0 {
                return Err("the database is not empty: restore into a new database".into());
            }
            run(Command::new("pg_restore")
                .args([
                    "--no-owner",
                    "--no-privileges",
                    "--exit-on-error",
                    "--dbname",
                ])
                .arg(url)
                .arg(file))
        }
    }
}

fn run(command: &mut Command) -> Result<(), String> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command
        .output()
        .map_err(|e| format!("cannot run {program} (PostgreSQL's client tools): {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
