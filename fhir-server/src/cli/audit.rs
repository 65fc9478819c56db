//! `fhir-server audit verify|head|break-glass`: proves the audit trail whole, exports its
//! head for safe keeping, and lists the break-glass accesses for review.

use clap::Subcommand;
use serde_json::json;

use super::auth::On;
use super::open_tenant;
use crate::audit::retention;
use crate::audit::verify::{Report, verify};
use crate::store::audit::{Checkpoint, Filter};

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Walk the tenant's trail and report the first record changed, removed or inserted
    /// (and exit with status 1), or that it is whole up to its head.
    Verify {
        /// A head exported earlier (`audit head`): it must still be in the trail.
        #[arg(long)]
        head: Option<std::path::PathBuf>,
        /// The key that signed the checkpoints of pruned records (as `serve`'s).
        #[arg(long, env = "FHIR_AUDIT_KEY_FILE")]
        audit_key_file: Option<std::path::PathBuf>,
        #[command(flatten)]
        on: On,
    },
    /// Print the last sealed record's number and hash, as JSON, to keep apart from the
    /// server: a trail cut short after it cannot pass `verify --head`.
    Head {
        /// The key that signed the checkpoints of pruned records (as `serve`'s).
        #[arg(long, env = "FHIR_AUDIT_KEY_FILE")]
        audit_key_file: Option<std::path::PathBuf>,
        #[command(flatten)]
        on: On,
    },
    /// List the accesses made by breaking the glass (newest first), for review.
    BreakGlass {
        /// Only those recorded at or after this date (`2026-12-01`).
        #[arg(long)]
        since: Option<String>,
        #[command(flatten)]
        on: On,
    },
}

pub async fn run(command: AuditCommand) -> Result<(), String> {
    match command {
        AuditCommand::Verify {
            head,
            audit_key_file,
            on,
        } => {
            let head = match head {
                Some(path) => Some(read_head(&path)?),
                None => None,
            };
            let key = CheckpointKey::open(audit_key_file, &on)?;
            let (store, tenant) = open_tenant(&on.database, &on.tenant).await?;
            let head_ref = head.as_ref().map(|(seq, hash)| (*seq, hash.as_str()));
            let signed = |c: &Checkpoint| key.holds(tenant, c);
            let report = verify(&store, tenant, head_ref, signed)
                .await
                .map_err(|e| format!("cannot read the audit trail: {e:?}"))?;
            if !report.is_intact() {
                return Err(describe(&on.tenant, &report));
            }
            println!("{}", describe(&on.tenant, &report));
            Ok(())
        }
        AuditCommand::Head { audit_key_file, on } => {
            let key = CheckpointKey::open(audit_key_file, &on)?;
            let (store, tenant) = open_tenant(&on.database, &on.tenant).await?;
            let signed = |c: &Checkpoint| key.holds(tenant, c);
            let report = verify(&store, tenant, None, signed)
                .await
                .map_err(|e| format!("cannot read the audit trail: {e:?}"))?;
            let Report::Intact { head, hash, .. } = &report else {
                return Err(format!(
                    "the trail is not whole, so it has no head to keep: {}",
                    describe(&on.tenant, &report)
                ));
            };
            let out = json!({"tenant": on.tenant, "seq": head, "hash": hash,
                "exported": crate::resource::format_instant(crate::clock::now_micros())});
            println!("{out}");
            Ok(())
        }
        AuditCommand::BreakGlass { since, on } => {
            let since = match since {
                Some(date) => Some(
                    crate::params::dates::range(&date)
                        .ok_or_else(|| format!("--since: '{date}' is not a date"))?
                        .0,
                ),
                None => None,
            };
            let (store, tenant) = open_tenant(&on.database, &on.tenant).await?;
            let mut filter = Filter {
                purpose: Some("BTG".into()),
                since,
                limit: 1000,
                ..Filter::default()
            };
            loop {
                let page = store
                    .audit_search(tenant, &filter)
                    .await
                    .map_err(|e| format!("cannot read the audit trail: {e:?}"))?;
                for record in &page {
                    println!("{}", crate::audit::render::break_glass_line(record));
                }
                match page.last() {
                    Some(last) if page.len() == filter.limit => filter.before = Some(last.seq),
                    _ => break,
                }
            }
            Ok(())
        }
    }
}

/// The key that checks checkpoints' signatures. Read before the trail when its file is
/// there (so that a bad key file is an error of its own); when it is not, read again if a
/// checkpoint asks for it: a server makes its key just before it signs its first
/// checkpoint, which may be committed while `verify` runs.
struct CheckpointKey {
    path: std::path::PathBuf,
    read: Option<retention::AuditKey>,
}

impl CheckpointKey {
    fn open(explicit: Option<std::path::PathBuf>, on: &On) -> Result<CheckpointKey, String> {
        let path = explicit.unwrap_or_else(|| retention::default_key_file(&on.database.url));
        let read = path
            .exists()
            .then(|| retention::AuditKey::load(&path))
            .transpose()?;
        Ok(CheckpointKey { path, read })
    }

    /// Whether `checkpoint` of `tenant`'s trail carries the key's signature.
    fn holds(&self, tenant: crate::store::TenantId, checkpoint: &Checkpoint) -> bool {
        match &self.read {
            Some(key) => key.holds(tenant, checkpoint),
            None => {
                retention::AuditKey::load(&self.path).is_ok_and(|key| key.holds(tenant, checkpoint))
            }
        }
    }
}

/// A head file: `{"seq": n, "hash": "..."}`.
fn read_head(path: &std::path::Path) -> Result<(i64, String), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    match (value["seq"].as_i64(), value["hash"].as_str()) {
        (Some(seq), Some(hash)) => Ok((seq, hash.to_owned())),
        _ => Err(format!("{}: not a head (seq and hash)", path.display())),
    }
}

/// One line that says what `verify` found.
pub(super) fn describe(tenant: &str, report: &Report) -> String {
    match report {
        Report::Intact { first, head, hash } => {
            format!("tenant {tenant}: intact, records {first} to {head} (head hash {hash})")
        }
        Report::Unsealed { seq } => format!(
            "tenant {tenant}: record {seq} carries no seal: it was INSERTED or its seal removed"
        ),
        Report::Changed { seq } => {
            format!("tenant {tenant}: record {seq} was CHANGED after it was sealed")
        }
        Report::Removed { from, to } if from == to => {
            format!("tenant {tenant}: record {from} was REMOVED")
        }
        Report::Removed { from, to } => {
            format!("tenant {tenant}: records {from} to {to} were REMOVED")
        }
        Report::Inserted { seq } => {
            format!("tenant {tenant}: record {seq} was INSERTED (it is not part of the chain)")
        }
        Report::RemovedBefore { seq } => format!(
            "tenant {tenant}: the record before {seq} was REMOVED or replaced (the numbers after it were moved)"
        ),
        Report::BadCheckpoint { seq } => format!(
            "tenant {tenant}: the checkpoint at {seq} (where pruning ended) does not carry the audit key's signature (is --audit-key-file the server's?)"
        ),
        Report::HeadMismatch { seq } => format!(
            "tenant {tenant}: the exported head {seq} is not in the trail as it was: records at the end were REMOVED or changed"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TenantId;

    /// `verify` started before the server made its key, and reached the checkpoint the
    /// server signed meanwhile: the key is read then (this raced in CI once).
    #[test]
    fn a_key_made_after_verify_started_checks_the_checkpoint() {
        let dir = std::env::temp_dir().join(format!("late-key-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.key");
        let lookup = CheckpointKey {
            path: path.clone(),
            read: None,
        };
        let tenant = TenantId::from_stored(3);
        let mut checkpoint = Checkpoint {
            seq: 7,
            hash: "cd".repeat(32),
            recorded: 1_765_000_000_000_000,
            signature: "not yet".into(),
        };
        assert!(!lookup.holds(tenant, &checkpoint), "no key, no signature");
        let key = retention::AuditKey::load_or_create(&path).unwrap();
        checkpoint.signature = key.sign(tenant, &checkpoint);
        assert!(lookup.holds(tenant, &checkpoint));
        checkpoint.hash = "ef".repeat(32);
        assert!(!lookup.holds(tenant, &checkpoint));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
