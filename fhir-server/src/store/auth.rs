//! The authorization server's state (migration 0007): signing keys, a tenant's records
//! (clients, users, roles, codes, grants, refresh tokens, launches, assertion ids, failed
//! logins, reset links) as JSON bodies by kind and key, and the revocation log every
//! server process follows.
//!
//! Times here are seconds since the Unix epoch, as in tokens.

use super::{Store, StoreError, TenantId};
use crate::search::sql::{Arg, Sql};

/// What an `auth_records` row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    Client,
    User,
    Role,
    /// An authorization code, by the SHA-256 of the code.
    Code,
    Grant,
    /// A refresh token, by its SHA-256.
    Refresh,
    /// An EHR launch context, by its opaque id.
    Launch,
    /// A client assertion's `jti`, by client id and jti: a second use is a replay.
    Jti,
    /// A failed login, by username and a unique suffix.
    Failure,
    /// A password reset link, by the SHA-256 of its token.
    Reset,
    /// An outside identity provider the tenant trusts, by its issuer URL.
    Issuer,
    /// A tenant's setting, by name (`messaging`: its channels and reminder policy).
    Setting,
    /// A phone number that texted STOP: no SMS goes to it until it texts START.
    OptOut,
    /// A link in a message that was used (`{nonce}|{action}`): a second use is refused.
    LinkUsed,
}

impl RecordKind {
    fn as_str(self) -> &'static str {
        match self {
            RecordKind::Client => "client",
            RecordKind::User => "user",
            RecordKind::Role => "role",
            RecordKind::Code => "code",
            RecordKind::Grant => "grant",
            RecordKind::Refresh => "refresh",
            RecordKind::Launch => "launch",
            RecordKind::Jti => "jti",
            RecordKind::Failure => "failure",
            RecordKind::Reset => "reset",
            RecordKind::Issuer => "issuer",
            RecordKind::Setting => "setting",
            RecordKind::OptOut => "optout",
            RecordKind::LinkUsed => "link-used",
        }
    }
}

/// What writing a record does when one of its kind and key exists.
#[derive(Debug, Clone, Copy)]
enum OnConflict {
    /// Replace it (and make it unused again).
    Replace,
    /// Leave it; the write reports that nothing was written.
    Keep,
    /// Mark it used (a new record is written used).
    MarkUsed,
}

/// A signing key as stored.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub kid: String,
    /// PKCS#1 DER, base64.
    pub private_der: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

/// One entry of the revocation log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub seq: i64,
    /// `grant` or `token`.
    pub kind: String,
    pub value: String,
}

fn where_record(sql: &mut Sql, tenant: TenantId, kind: RecordKind, key: &str) {
    sql.push(" WHERE tid = ");
    sql.bind(Arg::Int(tenant.get()));
    sql.push(" AND kind = ");
    sql.bind_text(kind.as_str());
    sql.push(" AND key = ");
    sql.bind_text(key);
}

/// The records of a kind keyed `prefix/...`: `/` is followed by `0` in ASCII, so they are
/// the keys from `prefix/` up to `prefix0`.
fn where_under(sql: &mut Sql, tenant: TenantId, kind: RecordKind, prefix: &str) {
    sql.push(" WHERE tid = ");
    sql.bind(Arg::Int(tenant.get()));
    sql.push(" AND kind = ");
    sql.bind_text(kind.as_str());
    sql.push(" AND key >= ");
    sql.bind_text(&format!("{prefix}/"));
    sql.push(" AND key < ");
    sql.bind_text(&format!("{prefix}0"));
}

fn unexpired(sql: &mut Sql, now: i64) {
    sql.push(" AND (expires_at IS NULL OR expires_at > ");
    sql.bind(Arg::Int(now));
    sql.push(")");
}

impl Store {
    /// Writes a record, replacing one of the same kind and key.
    pub async fn auth_put(
        &self,
        tenant: TenantId,
        kind: RecordKind,
        key: &str,
        body: &str,
        expires_at: Option<i64>,
    ) -> Result<(), StoreError> {
        self.auth_write(tenant, (kind, key), body, expires_at, OnConflict::Replace)
            .await
            .map(|_| ())
    }

    /// Writes a record only if none of that kind and key exists; whether it was written.
    pub async fn auth_insert_new(
        &self,
        tenant: TenantId,
        kind: RecordKind,
        key: &str,
        body: &str,
        expires_at: Option<i64>,
    ) -> Result<bool, StoreError> {
        self.auth_write(tenant, (kind, key), body, expires_at, OnConflict::Keep)
            .await
    }

    async fn auth_write(
        &self,
        tenant: TenantId,
        (kind, key): (RecordKind, &str),
        body: &str,
        expires_at: Option<i64>,
        on_conflict: OnConflict,
    ) -> Result<bool, StoreError> {
        let mut sql = Sql::default();
        sql.push("INSERT INTO auth_records (tid, kind, key, body, expires_at, used) VALUES (");
        sql.bind(Arg::Int(tenant.get()));
        sql.push(", ");
        sql.bind_text(kind.as_str());
        sql.push(", ");
        sql.bind_text(key);
        sql.push(", ");
        sql.bind_text(body);
        sql.push(", ");
        match expires_at {
            Some(at) => sql.bind(Arg::Int(at)),
            None => sql.push("NULL"),
        }
        sql.push(match on_conflict {
            OnConflict::Replace => ", 0) ON CONFLICT (tid, kind, key) DO UPDATE SET body = excluded.body, expires_at = excluded.expires_at, used = 0",
            OnConflict::Keep => ", 0) ON CONFLICT (tid, kind, key) DO NOTHING",
            OnConflict::MarkUsed => ", 1) ON CONFLICT (tid, kind, key) DO UPDATE SET used = 1",
        });
        Ok(self.execute(sql).await? > 0)
    }

    /// Marks a record used, writing it (with `body`) if it is not there yet: a grant revoked
    /// before its record was kept stays revoked when it is kept.
    pub async fn auth_mark_used(
        &self,
        tenant: TenantId,
        kind: RecordKind,
        key: &str,
        body: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        self.auth_write(
            tenant,
            (kind, key),
            body,
            Some(expires_at),
            OnConflict::MarkUsed,
        )
        .await
        .map(|_| ())
    }

    /// A record's body, unless it expired; and whether it was used.
    pub async fn auth_get(
        &self,
        tenant: TenantId,
        kind: RecordKind,
        key: &str,
        now: i64,
    ) -> Result<Option<(String, bool)>, StoreError> {
        let mut sql = Sql::default();
        sql.push("SELECT body, CASE WHEN used = 0 THEN 'no' ELSE 'yes' END FROM auth_records");
        where_record(&mut sql, tenant, kind, key);
        unexpired(&mut sql, now);
        Ok(self
            .select_pairs(sql)
            .await?
            .into_iter()
            .next()
            .map(|(body, used)| (body, used == "yes")))
    }

    /// Marks an unexpired, unused record used and returns its body; `None` when there is
    /// none, it expired, or it was used before (by this request's rival, too: only one of
    /// several concurrent takers wins).
    pub async fn auth_take(
        &self,
        tenant: TenantId,
        kind: RecordKind,
        key: &str,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        let mut sql = Sql::default();
        sql.push("UPDATE auth_records SET used = 1");
        where_record(&mut sql, tenant, kind, key);
        sql.push(" AND used = 0");
        unexpired(&mut sql, now);
        sql.push(" RETURNING key, body");
        Ok(self
            .write_pairs(sql)
            .await?
            .into_iter()
            .next()
            .map(|(_, body)| body))
    }

    /// Every record of a kind, by key.
    pub async fn auth_list(
        &self,
        tenant: TenantId,
        kind: RecordKind,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut sql = Sql::default();
        sql.push("SELECT key, body FROM auth_records WHERE tid = ");
        sql.bind(Arg::Int(tenant.get()));
        sql.push(" AND kind = ");
        sql.bind_text(kind.as_str());
        sql.push(" ORDER BY key");
        self.select_pairs(sql).await
    }

    /// Every record of a kind, of every tenant (the origins of all clients' redirect URIs,
    /// for CORS).
    pub async fn auth_list_every_tenant(
        &self,
        kind: RecordKind,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut sql = Sql::default();
        sql.push("SELECT key, body FROM auth_records WHERE kind = ");
        sql.bind_text(kind.as_str());
        self.select_pairs(sql).await
    }

    /// How many unexpired records of a kind have keys starting `prefix/`.
    pub async fn auth_count_under(
        &self,
        tenant: TenantId,
        kind: RecordKind,
        prefix: &str,
        now: i64,
    ) -> Result<i64, StoreError> {
        let mut sql = Sql::default();
        sql.push("SELECT COUNT(*) FROM auth_records");
        where_under(&mut sql, tenant, kind, prefix);
        unexpired(&mut sql, now);
        self.select_count(sql).await
    }

    /// Removes the unexpired records of a kind keyed `prefix/...` (failed logins, on a
    /// successful one).
    pub async fn auth_delete_under(
        &self,
        tenant: TenantId,
        kind: RecordKind,
        prefix: &str,
    ) -> Result<(), StoreError> {
        let mut sql = Sql::default();
        sql.push("DELETE FROM auth_records");
        where_under(&mut sql, tenant, kind, prefix);
        self.execute(sql).await.map(|_| ())
    }

    /// Removes one record; whether it was there.
    pub async fn auth_delete(
        &self,
        tenant: TenantId,
        kind: RecordKind,
        key: &str,
    ) -> Result<bool, StoreError> {
        let mut sql = Sql::default();
        sql.push("DELETE FROM auth_records WHERE tid = ");
        sql.bind(Arg::Int(tenant.get()));
        sql.push(" AND kind = ");
        sql.bind_text(kind.as_str());
        sql.push(" AND key = ");
        sql.bind_text(key);
        self.execute(sql).await.map(|deleted| deleted > 0)
    }

    /// Removes the records and revocations that expired before `now`.
    pub async fn auth_purge_expired(&self, now: i64) -> Result<(), StoreError> {
        for table in ["auth_records", "auth_revocations"] {
            let mut sql = Sql::default();
            sql.push(&format!("DELETE FROM {table} WHERE expires_at < "));
            sql.bind(Arg::Int(now));
            self.execute(sql).await?;
        }
        Ok(())
    }

    /// The signing keys, newest first.
    pub async fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        let mut sql = Sql::default();
        sql.push(
            "SELECT kid, private_der || ' ' || CAST(created_at AS TEXT) || ' ' || \
             COALESCE(CAST(retired_at AS TEXT), '') FROM auth_keys \
             ORDER BY created_at DESC, kid",
        );
        let rows = self.select_pairs(sql).await?;
        Ok(rows
            .into_iter()
            .filter_map(|(kid, rest)| {
                let mut parts = rest.split(' ');
                let private_der = parts.next()?.to_owned();
                let created_at = parts.next()?.parse().ok()?;
                let retired_at = parts.next().and_then(|at| at.parse().ok());
                Some(StoredKey {
                    kid,
                    private_der,
                    created_at,
                    retired_at,
                })
            })
            .collect())
    }

    /// Adds a signing key (another process may have added the same first key: no error).
    pub async fn add_signing_key(&self, key: &StoredKey) -> Result<(), StoreError> {
        let mut sql = Sql::default();
        sql.push("INSERT INTO auth_keys (kid, private_der, created_at) VALUES (");
        sql.bind_text(&key.kid);
        sql.push(", ");
        sql.bind_text(&key.private_der);
        sql.push(", ");
        sql.bind(Arg::Int(key.created_at));
        sql.push(") ON CONFLICT (kid) DO NOTHING");
        self.execute(sql).await.map(|_| ())
    }

    /// Retires every key but `kid` at `now`.
    pub async fn retire_signing_keys_but(&self, kid: &str, now: i64) -> Result<(), StoreError> {
        let mut sql = Sql::default();
        sql.push("UPDATE auth_keys SET retired_at = ");
        sql.bind(Arg::Int(now));
        sql.push(" WHERE retired_at IS NULL AND kid <> ");
        sql.bind_text(kid);
        self.execute(sql).await.map(|_| ())
    }

    /// Removes keys retired before `before` (their tokens have all expired).
    pub async fn drop_signing_keys_retired_before(&self, before: i64) -> Result<(), StoreError> {
        let mut sql = Sql::default();
        sql.push("DELETE FROM auth_keys WHERE retired_at < ");
        sql.bind(Arg::Int(before));
        self.execute(sql).await.map(|_| ())
    }

    /// Records a revocation of a grant or of one token (by jti).
    pub async fn revoke(&self, kind: &str, value: &str, expires_at: i64) -> Result<(), StoreError> {
        let mut sql = Sql::default();
        sql.push("INSERT INTO auth_revocations (kind, value, expires_at) VALUES (");
        sql.bind_text(kind);
        sql.push(", ");
        sql.bind_text(value);
        sql.push(", ");
        sql.bind(Arg::Int(expires_at));
        sql.push(")");
        self.execute(sql).await.map(|_| ())
    }

    /// The revocations after `seq`, oldest first.
    pub async fn revocations_after(&self, seq: i64) -> Result<Vec<Revocation>, StoreError> {
        let mut sql = Sql::default();
        sql.push(
            "SELECT CAST(seq AS TEXT), kind || ' ' || value FROM auth_revocations WHERE seq > ",
        );
        sql.bind(Arg::Int(seq));
        sql.push(" ORDER BY seq");
        Ok(self
            .select_pairs(sql)
            .await?
            .into_iter()
            .filter_map(|(seq, rest)| {
                let (kind, value) = rest.split_once(' ')?;
                Some(Revocation {
                    seq: seq.parse().ok()?,
                    kind: kind.to_owned(),
                    value: value.to_owned(),
                })
            })
            .collect())
    }
}
