//! Encryption at rest of the embedded database: SQLite is built as SQLCipher
//! (AES-256 per page, with an HMAC), and unkeyed it is a plain SQLite file. With a key
//! (`--database-key-file`, or the key itself in `FHIR_DATABASE_KEY`), every connection the
//! store opens is keyed first, so the database file, its WAL and its backups hold no
//! readable page.
//!
//! The key given is a passphrase of any length; the store keys SQLCipher with its SHA-256
//! as a raw key (`x'...'`), which skips SQLCipher's key derivation (256,000 rounds of
//! PBKDF2 on every connection opened: the server opens read connections as it needs them).
//! So the passphrase must be long and random: one under 32 characters is refused
//! (`openssl rand -hex 32 > db.key` makes a good one).

use std::path::Path;
use std::sync::OnceLock;

use rusqlite::Connection;
use sha2::{Digest, Sha256};

use super::StoreError;

/// The raw key (64 hex digits) every connection of this process is keyed with.
static KEY: OnceLock<String> = OnceLock::new();

/// The shortest passphrase taken.
const MIN_PASSPHRASE: usize = 32;

/// The raw SQLCipher key of a passphrase.
pub fn raw_key(passphrase: &str) -> Result<String, String> {
    let passphrase = passphrase.trim();
    if passphrase.chars().count() < MIN_PASSPHRASE {
        return Err(format!(
            "a database key must have at least {MIN_PASSPHRASE} characters (random ones: `openssl rand -hex 32`)"
        ));
    }
    Ok(super::audit::hex(&Sha256::digest(passphrase.as_bytes())))
}

/// The passphrase in `file`.
pub fn read_key_file(file: &Path) -> Result<String, String> {
    std::fs::read_to_string(file)
        .map_err(|e| format!("--database-key-file {}: {e}", file.display()))
}

/// Keys every SQLite connection this process opens from now on with `passphrase`.
pub fn use_key(passphrase: &str) -> Result<(), String> {
    let key = raw_key(passphrase)?;
    if KEY.get_or_init(|| key.clone()) != &key {
        return Err("the database key is set once per process".to_owned());
    }
    Ok(())
}

/// Keys `conn` (the first thing done on it) when this process has a key.
pub(super) fn unlock(conn: &Connection) -> Result<(), StoreError> {
    if let Some(key) = KEY.get() {
        apply(conn, key)?;
    }
    Ok(())
}

fn apply(conn: &Connection, raw: &str) -> rusqlite::Result<()> {
    // `raw` is hex digits only: nothing to escape.
    conn.execute_batch(&format!("PRAGMA key = \"x'{raw}'\";"))
}

/// What a database that cannot be read says, in words.
pub(super) fn explain(error: rusqlite::Error) -> StoreError {
    let text = error.to_string();
    if text.contains("file is not a database") {
        return StoreError::Database(
            "the database file cannot be read: it is encrypted and the key is wrong or missing \
             (--database-key-file), or it is not a database"
                .into(),
        );
    }
    StoreError::Database(text)
}

/// Encrypts the plain database at `path` in place (the server stopped): an encrypted copy
/// is exported beside it, then replaces it; the plain file and its WAL are removed.
pub fn encrypt(path: &Path, passphrase: &str) -> Result<(), String> {
    let raw = raw_key(passphrase)?;
    let conn = Connection::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))
        .map_err(|_| {
            format!(
                "{} is not a plain database (encrypted already?)",
                path.display()
            )
        })?;
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .map_err(|e| e.to_string())?;
    let encrypted = path.with_extension("encrypting");
    let _ = std::fs::remove_file(&encrypted);
    let target = encrypted.to_string_lossy().replace('\'', "''");
    conn.execute_batch(&format!(
        "ATTACH DATABASE '{target}' AS encrypted KEY \"x'{raw}'\";
         SELECT sqlcipher_export('encrypted');
         DETACH DATABASE encrypted;"
    ))
    .map_err(|e| format!("the encrypted copy could not be written: {e}"))?;
    drop(conn);
    std::fs::rename(&encrypted, path).map_err(|e| e.to_string())?;
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok(())
}

/// Changes the key of the encrypted database at `path` (the server stopped).
pub fn rekey(path: &Path, old: &str, new: &str) -> Result<(), String> {
    let (old, new) = (raw_key(old)?, raw_key(new)?);
    let conn = Connection::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    apply(&conn, &old).map_err(|e| e.to_string())?;
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))
        .map_err(|e| format!("{:?}", explain(e)))?;
    conn.execute_batch(&format!("PRAGMA rekey = \"x'{new}'\";"))
        .map_err(|e| format!("the key could not be changed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyed_file_holds_nothing_readable_and_opens_only_with_its_key() {
        let dir = std::env::temp_dir().join(format!("key-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.db");
        let key = raw_key("a passphrase of more than thirty-two characters").unwrap();
        let conn = Connection::open(&path).unwrap();
        apply(&conn, &key).unwrap();
        conn.execute_batch("CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('Zanzibarian');")
            .unwrap();
        drop(conn);
        let bytes = std::fs::read(&path).unwrap();
        assert!(!bytes.windows(11).any(|w| w == b"Zanzibarian"));
        let plain = Connection::open(&path).unwrap();
        assert!(plain.query_row("SELECT v FROM t", [], |_| Ok(())).is_err());
        assert!(raw_key("short").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
