//! Retention (`--audit-retention-days`, HIPAA's six years by default): records older than
//! that are pruned from the oldest end, behind a checkpoint that keeps the rest
//! verifiable: the last pruned record's number, hash and time, signed with HMAC-SHA256 by
//! the audit key (`--audit-key-file`, 32 random bytes made on first use, kept apart from
//! the database: whoever can rewrite the database cannot sign a checkpoint). `verify`
//! starts from the newest checkpoint, and refuses one whose signature does not hold.

use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::store::audit::Checkpoint;
use crate::store::{Store, StoreError, TenantId};

/// How often a server prunes (by its clock).
pub const PRUNE_EVERY_MICROS: i64 = 3_600_000_000;

/// The most records one pass removes per tenant (the rest go on the next pass).
const PRUNE_BATCH: i64 = 100_000;

/// Where the audit key is unless `--audit-key-file` says: beside an SQLite database,
/// `./data/audit.key` with PostgreSQL.
pub fn default_key_file(database_url: &str) -> std::path::PathBuf {
    let postgres =
        database_url.starts_with("postgres://") || database_url.starts_with("postgresql://");
    if postgres {
        return std::path::PathBuf::from("./data/audit.key");
    }
    let path = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
        .unwrap_or(database_url);
    Path::new(path).with_file_name("audit.key")
}

/// The audit key: signs and checks checkpoints.
#[derive(Clone)]
pub struct AuditKey {
    key: Vec<u8>,
}

impl AuditKey {
    /// Reads the key file, or makes it (owner-only) when it does not exist.
    pub fn load_or_create(path: &Path) -> Result<AuditKey, String> {
        if !path.exists() {
            let key: Vec<u8> = uuid::Uuid::new_v4()
                .as_bytes()
                .iter()
                .chain(uuid::Uuid::new_v4().as_bytes())
                .copied()
                .collect();
            if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(folder).map_err(|e| format!("{}: {e}", path.display()))?;
            }
            write_private(path, &key)?;
        }
        Self::load(path)
    }

    /// Reads the key file.
    pub fn load(path: &Path) -> Result<AuditKey, String> {
        let key =
            std::fs::read(path).map_err(|e| format!("--audit-key-file {}: {e}", path.display()))?;
        if key.len() < 32 {
            return Err(format!(
                "--audit-key-file {}: a key has at least 32 bytes",
                path.display()
            ));
        }
        Ok(AuditKey { key })
    }

    fn mac(&self, tenant: TenantId, checkpoint: &Checkpoint) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        let payload = format!(
            "{}|{}|{}|{}",
            tenant.get(),
            checkpoint.seq,
            checkpoint.hash,
            checkpoint.recorded
        );
        mac.update(payload.as_bytes());
        mac
    }

    /// The signature of a checkpoint of `tenant`'s trail.
    pub fn sign(&self, tenant: TenantId, checkpoint: &Checkpoint) -> String {
        crate::store::audit::hex(&self.mac(tenant, checkpoint).finalize().into_bytes())
    }

    /// Whether `checkpoint` carries this key's signature.
    pub fn holds(&self, tenant: TenantId, checkpoint: &Checkpoint) -> bool {
        self.sign(tenant, checkpoint) == checkpoint.signature
    }
}

#[cfg(unix)]
fn write_private(path: &Path, key: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot make the audit key {}: {e}", path.display()))?;
    file.write_all(key).map_err(|e| e.to_string())
}

#[cfg(not(unix))]
fn write_private(path: &Path, key: &[u8]) -> Result<(), String> {
    std::fs::write(path, key)
        .map_err(|e| format!("cannot make the audit key {}: {e}", path.display()))
}

/// Prunes every tenant's records recorded before `cutoff` (microseconds), behind signed
/// checkpoints; how many records went.
pub async fn prune(store: &Store, key: &AuditKey, cutoff: i64) -> Result<i64, StoreError> {
    let mut pruned = 0;
    for tenant in store.audit_tenants().await? {
        let Some((first, last)) = store.audit_prunable(tenant, cutoff).await? else {
            continue;
        };
        let last = last.min(first + PRUNE_BATCH - 1);
        let Some(record) = store.audit_record(tenant, last).await? else {
            continue;
        };
        let mut checkpoint = Checkpoint {
            seq: last,
            hash: record.hash.unwrap_or_default(),
            recorded: record.entry.recorded,
            signature: String::new(),
        };
        checkpoint.signature = key.sign(tenant, &checkpoint);
        store.audit_prune(tenant, &checkpoint).await?;
        pruned += last - first + 1;
    }
    Ok(pruned)
}
