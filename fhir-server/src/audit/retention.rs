//! Retention (`--audit-retention-days`, HIPAA's six years by default): records older than
//! that are pruned from the oldest end, behind a checkpoint that keeps the rest
//! verifiable: the last pruned record's number, hash and time, signed with HMAC-SHA256 by
//! the audit key (`--audit-key-file`, 32 random bytes made on first use, kept apart from
//! the database: whoever can rewrite the database cannot sign a checkpoint). `verify`
//! starts from the newest checkpoint, and refuses one whose signature does not hold.
//! Records are only pruned behind a stretch that verifies: a changed, removed or inserted
//! record stops pruning (logged as an error), so the evidence stays until someone looks.

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
    /// Reads the key file, or makes it (owner-only) when it does not exist. The key is
    /// written whole to a file of its own first and then linked into place, so that
    /// another process (a second server on the same PostgreSQL, `audit verify`) never
    /// reads half a key, and of two processes making it at once, both end up with the one
    /// that was linked first.
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
            let draft = path.with_extension(format!("{}.new", uuid::Uuid::new_v4().simple()));
            write_private(&draft, &key)?;
            let linked = std::fs::hard_link(&draft, path);
            let _ = std::fs::remove_file(&draft);
            match linked {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(format!("cannot make the audit key {}: {e}", path.display())),
            }
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
    file.write_all(key)
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot make the audit key {}: {e}", path.display()))
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
        if let Some(problem) = super::verify::problem_up_to(store, tenant, last).await? {
            // Signing a checkpoint over a broken stretch would erase the evidence.
            tracing::error!(
                tenant = tenant.get(),
                ?problem,
                "audit records past their retention were not pruned: the trail is broken \
                 before them (`fhir-server audit verify` says where)"
            );
            continue;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("audit-key-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            seq: 7,
            hash: "ab".repeat(32),
            recorded: 1_765_000_000_000_000,
            signature: String::new(),
        }
    }

    #[test]
    fn processes_making_the_key_at_once_end_up_with_one() {
        let dir = scratch();
        let path = dir.join("audit.key");
        let makers: Vec<_> = (0..16)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || AuditKey::load_or_create(&path).unwrap())
            })
            .collect();
        let keys: Vec<AuditKey> = makers.into_iter().map(|m| m.join().unwrap()).collect();
        let tenant = TenantId::from_stored(1);
        let mut signed = checkpoint();
        signed.signature = keys[0].sign(tenant, &signed);
        assert!(keys.iter().all(|key| key.holds(tenant, &signed)));
        assert!(AuditKey::load(&path).unwrap().holds(tenant, &signed));
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1, "no drafts left behind: {left:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_signature_holds_for_its_tenant_and_checkpoint_only() {
        let dir = scratch();
        let key = AuditKey::load_or_create(&dir.join("audit.key")).unwrap();
        let mut signed = checkpoint();
        signed.signature = key.sign(TenantId::from_stored(1), &signed);
        assert!(key.holds(TenantId::from_stored(1), &signed));
        assert!(!key.holds(TenantId::from_stored(2), &signed));
        let moved = Checkpoint {
            seq: 8,
            ..signed.clone()
        };
        assert!(!key.holds(TenantId::from_stored(1), &moved));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
