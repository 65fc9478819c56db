//! The write rules, written once for both databases.
//!
//! Each backend runs [`apply`] inside one database transaction through its [`Tx`]; the
//! conditional rules (0 / 1 / many matches), version checks and id assignment live here so
//! SQLite and PostgreSQL cannot drift apart.

use std::future::Future;

use serde_json::Value;

use super::{Head, Method, StoreError, Version};
use crate::error::FhirError;
use crate::index::IndexRows;
use crate::resource;
use crate::search::Query;
use crate::search::sql::Sql;

/// A write, as the interaction layer asks for it. Resources are already validated.
#[derive(Debug, Clone)]
pub enum WriteOp {
    Create {
        resource_type: String,
        resource: Value,
        index: IndexRows,
        /// If-None-Exist: create only when nothing matches.
        if_none_exist: Option<Query>,
    },
    Update {
        resource_type: String,
        id: String,
        resource: Value,
        index: IndexRows,
        if_match: Option<i64>,
        /// PUT or PATCH, as recorded in history.
        method: Method,
    },
    ConditionalUpdate {
        resource_type: String,
        query: Query,
        resource: Value,
        index: IndexRows,
        if_match: Option<i64>,
    },
    Delete {
        resource_type: String,
        id: String,
    },
    ConditionalDelete {
        resource_type: String,
        query: Query,
        /// Whether several matches may be deleted at once (else more than one is 412).
        multiple: bool,
    },
}

/// What a write did.
#[derive(Debug, Clone)]
pub enum Outcome {
    Created(Version),
    Updated(Version),
    /// Conditional create found exactly one match: nothing was written.
    Matched(Version),
    /// This many resources were deleted (0 when there was nothing to delete).
    Deleted(usize),
}

/// A new version to store: the version row, the head, and the index rows.
#[derive(Debug)]
pub struct NewVersion<'a> {
    pub resource_type: &'a str,
    pub id: &'a str,
    pub version: i64,
    pub last_updated: i64,
    pub method: Method,
    /// `None` for a delete.
    pub body: Option<&'a [u8]>,
    /// `None` for a delete: the index rows are removed.
    pub index: Option<&'a IndexRows>,
    /// The existing head, if any.
    pub head: Option<Head>,
}

/// What a backend must do inside one transaction. All reads see the transaction's own
/// writes; `head` locks the row where the database can (PostgreSQL `FOR UPDATE`).
pub trait Tx: Send {
    fn head(
        &mut self,
        resource_type: &str,
        id: &str,
    ) -> impl Future<Output = Result<Option<Head>, StoreError>> + Send;

    /// The heads of several resources, in order (locked like `head`). A store may look
    /// them up together.
    fn heads(
        &mut self,
        targets: &[(&str, &str)],
    ) -> impl Future<Output = Result<Vec<Option<Head>>, StoreError>> + Send {
        async move {
            let mut heads = Vec::with_capacity(targets.len());
            for (resource_type, id) in targets {
                heads.push(self.head(resource_type, id).await?);
            }
            Ok(heads)
        }
    }

    /// Ids of current resources matching `query`, at most `limit`.
    fn matches(
        &mut self,
        resource_type: &str,
        query: &Query,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    fn body(
        &mut self,
        resource_type: &str,
        id: &str,
        version: i64,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;

    /// Serializes conditional writes on one type, so two If-None-Exist creates cannot both
    /// see "no match" and both create.
    fn lock_type(
        &mut self,
        resource_type: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn put(
        &mut self,
        version: NewVersion<'_>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The tenant the transaction writes for.
    fn tenant(&self) -> crate::ids::TenantId;

    /// How this database finds audit records by number (and whether a row needs a key).
    fn numbering(&self) -> super::audit::Numbering {
        super::audit::Numbering::TidSeq
    }

    /// Who the request that writes is made by (see `store::provenance`), if known.
    fn attribution(&self) -> Option<&super::provenance::Attribution>;

    /// The audit records of this transaction's writes, appended before it commits
    /// (`store::audit::flush`).
    fn audit_notes(&mut self) -> &mut Vec<super::audit::Entry>;

    /// Runs one statement in the transaction (the upkeep of `store::claims`); rows changed.
    fn run(&mut self, sql: Sql) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Inserts sealed audit records and their patients' rows, and leaves the last one's
    /// hash in the tenant's `audit_sequence` row (`store::audit::append`), each store its
    /// own way.
    fn insert_audit(
        &mut self,
        rows: &super::audit::Rows<'_>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every row of a query, each column as text (select integers `CAST(... AS TEXT)`).
    fn rows(
        &mut self,
        sql: Sql,
    ) -> impl Future<Output = Result<Vec<Vec<Option<String>>>, StoreError>> + Send;

    /// The integer columns of a query's first row (empty when it has none).
    fn first_ints(&mut self, sql: Sql)
    -> impl Future<Output = Result<Vec<i64>, StoreError>> + Send;

    /// Stores new resources (first versions, with their index rows). A store may write
    /// them together; on failure, the position of the one that failed (or the first).
    fn create_many(
        &mut self,
        versions: &[(&Version, &IndexRows)],
    ) -> impl Future<Output = Result<(), (usize, StoreError)>> + Send {
        async move {
            for (position, (version, index)) in versions.iter().enumerate() {
                self.put(NewVersion {
                    resource_type: &version.resource_type,
                    id: &version.id,
                    version: version.version,
                    last_updated: version.last_updated,
                    method: version.method,
                    body: version.body.as_deref(),
                    index: Some(index),
                    head: None,
                })
                .await
                .map_err(|error| (position, error))?;
            }
            Ok(())
        }
    }
}

/// How many matches a conditional delete may remove at once.
const MAX_CONDITIONAL_DELETE: usize = 1000;

/// Applies one write inside the caller's transaction.
pub async fn apply<T: Tx>(tx: &mut T, op: WriteOp) -> Result<Outcome, StoreError> {
    let now = resource::now_micros();
    match op {
        WriteOp::Create {
            resource_type,
            mut resource,
            index,
            if_none_exist,
        } => {
            if let Some(query) = if_none_exist
                && let Some(matched) = existing_match(tx, &resource_type, &query).await?
            {
                return Ok(matched);
            }
            let id = resource::new_id();
            let index = own(&resource_type, &mut resource, None, index);
            create(tx, &resource_type, &id, &mut resource, &index, now).await
        }
        WriteOp::Update {
            resource_type,
            id,
            mut resource,
            index,
            if_match,
            method,
        } => {
            let target = (resource_type.as_str(), id.as_str());
            let how = (if_match, ServerOwned::Carry);
            put_by_id(tx, target, &mut resource, &index, how, method, now).await
        }
        WriteOp::ConditionalUpdate {
            resource_type,
            query,
            mut resource,
            index,
            if_match,
        } => {
            let id = conditional_update_target(tx, &resource_type, &query, &resource).await?;
            let target = (resource_type.as_str(), id.as_str());
            let how = (if_match, ServerOwned::Carry);
            put_by_id(tx, target, &mut resource, &index, how, Method::Put, now).await
        }
        WriteOp::Delete { resource_type, id } => {
            let head = tx.head(&resource_type, &id).await?;
            match head {
                Some(head) if !head.deleted => {
                    delete(tx, &resource_type, &id, head, now).await?;
                    Ok(Outcome::Deleted(1))
                }
                _ => Ok(Outcome::Deleted(0)),
            }
        }
        WriteOp::ConditionalDelete {
            resource_type,
            query,
            multiple: allow_many,
        } => conditional_delete(tx, &resource_type, &query, allow_many, now).await,
    }
}

/// A conditional create's match: the resource that answers If-None-Exist, if one does
/// (then nothing is written); more than one is 412.
async fn existing_match<T: Tx>(
    tx: &mut T,
    resource_type: &str,
    query: &Query,
) -> Result<Option<Outcome>, StoreError> {
    tx.lock_type(resource_type).await?;
    let found = tx.matches(resource_type, query, 2).await?;
    match found.as_slice() {
        [] => Ok(None),
        [id] => matched(tx, resource_type, id).await.map(Some),
        _ => Err(multiple("If-None-Exist", resource_type)),
    }
}

/// The id a conditional update writes (https://hl7.org/fhir/R4/http.html#cond-update):
/// the one match; with none, the body's id (unless another resource has it) or a new one;
/// several matches are 412.
async fn conditional_update_target<T: Tx>(
    tx: &mut T,
    resource_type: &str,
    query: &Query,
    resource: &Value,
) -> Result<String, StoreError> {
    tx.lock_type(resource_type).await?;
    let found = tx.matches(resource_type, query, 2).await?;
    let body_id = resource.get("id").and_then(Value::as_str);
    match (found.as_slice(), body_id) {
        // A client-chosen id must not already belong to a resource that did not match
        // the criteria.
        ([], Some(id)) => {
            if tx.head(resource_type, id).await?.is_some_and(|h| !h.deleted) {
                return Err(StoreError::Rejected(FhirError::conflict(format!(
                    "{resource_type}/{id} exists but does not match the conditional update criteria"
                ))));
            }
            Ok(id.to_owned())
        }
        ([], None) => Ok(resource::new_id()),
        ([id], Some(body_id)) if body_id != id => Err(StoreError::Rejected(
            FhirError::bad_request(format!(
                "The resource id '{body_id}' does not match the resource found by the criteria ({resource_type}/{id})"
            ))
            .at(format!("{resource_type}.id")),
        )),
        ([id], _) => Ok(id.clone()),
        _ => Err(multiple("conditional update", resource_type)),
    }
}

/// Deletes what matches `query`: one match, or up to `MAX_CONDITIONAL_DELETE` when
/// several are allowed.
async fn conditional_delete<T: Tx>(
    tx: &mut T,
    resource_type: &str,
    query: &Query,
    allow_many: bool,
    now: i64,
) -> Result<Outcome, StoreError> {
    tx.lock_type(resource_type).await?;
    let limit = if allow_many {
        MAX_CONDITIONAL_DELETE + 1
    } else {
        2
    };
    let found = tx.matches(resource_type, query, limit).await?;
    if found.len() > 1 && !allow_many {
        return Err(multiple("conditional delete", resource_type));
    }
    if found.len() > MAX_CONDITIONAL_DELETE {
        return Err(StoreError::Rejected(FhirError::multiple_matches(format!(
            "More than {MAX_CONDITIONAL_DELETE} resources match the conditional delete; narrow the criteria"
        ))));
    }
    for id in &found {
        if let Some(head) = tx.head(resource_type, id).await? {
            delete(tx, resource_type, id, head, now).await?;
        }
    }
    Ok(Outcome::Deleted(found.len()))
}

/// Whose values of the server-owned tags and extensions (`resource::SERVER_TAG_SYSTEMS`)
/// a write carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerOwned {
    /// A client's write: the stored version's values are kept, the client's ignored.
    Carry,
    /// The server's own write (an operation recording a claim state, an import restoring
    /// an export): the values are taken as given.
    AsGiven,
}

/// Writes `resource` as the next version of `(type, id)`, creating it when absent, once
/// the If-Match precondition holds against the current version.
pub(super) async fn put_by_id<T: Tx>(
    tx: &mut T,
    (resource_type, id): (&str, &str),
    resource: &mut Value,
    index: &IndexRows,
    (if_match, owned): (Option<i64>, ServerOwned),
    method: Method,
    now: i64,
) -> Result<Outcome, StoreError> {
    let head = tx.head(resource_type, id).await?;
    check_if_match(if_match, head.as_ref(), resource_type, id)?;
    let mut carried = None;
    if owned == ServerOwned::Carry {
        let previous = match &head {
            Some(head) if resource::has_server_owned(resource_type) => {
                // A deleted resource keeps the state of its last version with a body:
                // deleting and re-creating a sent Claim must not make it look unsent.
                let version = if head.deleted {
                    head.version - 1
                } else {
                    head.version
                };
                stored_resource(tx, resource_type, id, version).await?
            }
            _ => None,
        };
        if resource::keep_server_owned(resource, previous.as_ref()) {
            carried = Some(crate::index::extract(resource_type, resource));
        }
    }
    let index = carried.as_ref().unwrap_or(index);
    match head {
        None => create_with(tx, resource_type, id, resource, index, now, Method::Put).await,
        Some(head) => update(tx, resource_type, id, resource, index, head, method, now).await,
    }
}

/// A client's resource with the server-owned values of `previous` (see
/// `resource::keep_server_owned`), and its index rows, extracted again when that changed it.
pub fn own(
    resource_type: &str,
    resource: &mut Value,
    previous: Option<&Value>,
    index: IndexRows,
) -> IndexRows {
    if resource::keep_server_owned(resource, previous) {
        crate::index::extract(resource_type, resource)
    } else {
        index
    }
}

/// A stored version as JSON (`None` when it has no body).
pub(super) async fn stored_resource<T: Tx>(
    tx: &mut T,
    resource_type: &str,
    id: &str,
    version: i64,
) -> Result<Option<Value>, StoreError> {
    let body = tx.body(resource_type, id, version).await?;
    Ok(body.and_then(|body| serde_json::from_slice(&body).ok()))
}

fn multiple(what: &str, resource_type: &str) -> StoreError {
    StoreError::Rejected(FhirError::multiple_matches(format!(
        "The {what} criteria match more than one {resource_type}"
    )))
}

fn check_if_match(
    if_match: Option<i64>,
    head: Option<&Head>,
    resource_type: &str,
    id: &str,
) -> Result<(), StoreError> {
    let Some(expected) = if_match else {
        return Ok(());
    };
    match head {
        Some(head) if head.version == expected => Ok(()),
        Some(head) => Err(StoreError::Rejected(FhirError::precondition_failed(
            format!(
                "If-Match version {expected} does not match the current version {} of {resource_type}/{id}",
                head.version
            ),
        ))),
        None => Err(StoreError::Rejected(FhirError::precondition_failed(
            format!("If-Match given but {resource_type}/{id} does not exist"),
        ))),
    }
}

async fn matched<T: Tx>(tx: &mut T, resource_type: &str, id: &str) -> Result<Outcome, StoreError> {
    current(tx, resource_type, id).await.map(Outcome::Matched)
}

/// The current version of a resource that exists.
pub(super) async fn current<T: Tx>(
    tx: &mut T,
    resource_type: &str,
    id: &str,
) -> Result<Version, StoreError> {
    let head = tx
        .head(resource_type, id)
        .await?
        .ok_or_else(|| StoreError::Database("matched resource vanished".into()))?;
    let body = tx
        .body(resource_type, id, head.version)
        .await?
        .unwrap_or_default();
    Ok(Version {
        resource_type: resource_type.to_owned(),
        id: id.to_owned(),
        version: head.version,
        last_updated: head.last_updated,
        method: Method::Post,
        body: Some(body.into()),
    })
}

/// Stamps a resource as the first version of a new resource `id` at `now`: the version
/// as it will be stored and served. The caller stores it (the PostgreSQL store's coalesced
/// creates, and the creates of a transaction).
pub fn first_version(resource_type: &str, resource: &mut Value, id: &str, now: i64) -> Version {
    let body = resource::stamp(resource, id, 1, now);
    Version {
        resource_type: resource_type.to_owned(),
        id: id.to_owned(),
        version: 1,
        last_updated: now,
        method: Method::Post,
        body: Some(body.into()),
    }
}

/// Stores new resources (`first_version`s, each with its entry's position and index
/// rows); on failure, the position of the entry that failed.
pub(super) async fn create_many<T: Tx>(
    tx: &mut T,
    creates: &[(usize, Version, IndexRows)],
) -> Result<Vec<Version>, (usize, StoreError)> {
    let items: Vec<(&Version, &IndexRows)> = creates.iter().map(|(_, v, i)| (v, i)).collect();
    // Claims first, each seeing those before it.
    let now = resource::now_micros();
    for (position, version, _) in creates {
        let resource_type = version.resource_type.as_str();
        if !super::claims::concerns(resource_type) && !has_rules(resource_type) {
            continue;
        }
        let value: Option<Value> = version
            .body
            .as_ref()
            .and_then(|body| serde_json::from_slice(body).ok());
        let target = (resource_type, version.id.as_str());
        async {
            if let Some(value) = &value {
                check_rules(tx, target, None, value, now).await?;
            }
            super::claims::after_write(tx, target, value.as_ref(), now).await
        }
        .await
        .map_err(|error| (*position, error))?;
    }
    tx.create_many(&items)
        .await
        .map_err(|(position, error)| (creates[position].0, error))?;
    for (position, version, _) in creates {
        if matches!(
            version.resource_type.as_str(),
            "Appointment" | "Communication"
        ) {
            let value: Option<Value> = version
                .body
                .as_ref()
                .and_then(|body| serde_json::from_slice(body).ok());
            let target = (version.resource_type.as_str(), version.id.as_str());
            super::outbox::after_change(tx, target, (None, value.as_ref()))
                .await
                .map_err(|error| (*position, error))?;
        }
    }
    for (_, version, _) in creates {
        let target = (
            version.resource_type.as_str(),
            version.id.as_str(),
            version.version,
        );
        super::audit::note(tx, target, "create", version.body.as_deref());
    }
    for (position, version, _) in creates {
        if super::provenance::concerns(&version.resource_type) {
            let target = (
                version.resource_type.as_str(),
                version.id.as_str(),
                version.version,
            );
            super::provenance::record(tx, target, "CREATE", version.last_updated)
                .await
                .map_err(|error| (*position, error))?;
        }
    }
    Ok(creates
        .iter()
        .map(|(_, version, _)| version.clone())
        .collect())
}

/// Applies a patch to the current version of `(type, id)` and stores the result,
/// once `If-Match` holds: the patched resource is checked like any update (422 if it is
/// not valid R4 or changes the id).
pub(super) async fn patch_by_id<T: Tx>(
    tx: &mut T,
    (resource_type, id): (&str, &str),
    patch: &crate::fhir::patch::Patch,
    if_match: Option<i64>,
    now: i64,
) -> Result<Outcome, StoreError> {
    let head = match tx.head(resource_type, id).await? {
        Some(head) if !head.deleted => head,
        Some(_) => {
            return Err(StoreError::Rejected(FhirError::gone(format!(
                "{resource_type}/{id} was deleted"
            ))));
        }
        None => {
            return Err(StoreError::Rejected(FhirError::not_found(format!(
                "{resource_type}/{id} is not known"
            ))));
        }
    };
    check_if_match(if_match, Some(&head), resource_type, id)?;
    let body = tx
        .body(resource_type, id, head.version)
        .await?
        .unwrap_or_default();
    let mut resource = crate::fhir::patch::patched(resource_type, id, &body, patch)
        .map_err(StoreError::Rejected)?;
    let previous: Option<Value> = match resource::has_server_owned(resource_type) {
        true => serde_json::from_slice(&body).ok(),
        false => None,
    };
    resource::keep_server_owned(&mut resource, previous.as_ref());
    let index = crate::index::extract(resource_type, &resource);
    update(
        tx,
        resource_type,
        id,
        &mut resource,
        &index,
        head,
        Method::Patch,
        now,
    )
    .await
}

async fn create<T: Tx>(
    tx: &mut T,
    resource_type: &str,
    id: &str,
    resource: &mut Value,
    index: &IndexRows,
    now: i64,
) -> Result<Outcome, StoreError> {
    create_with(tx, resource_type, id, resource, index, now, Method::Post).await
}

async fn create_with<T: Tx>(
    tx: &mut T,
    resource_type: &str,
    id: &str,
    resource: &mut Value,
    index: &IndexRows,
    now: i64,
    method: Method,
) -> Result<Outcome, StoreError> {
    let version = write_version(tx, resource_type, id, resource, index, None, method, now).await?;
    Ok(Outcome::Created(version))
}

#[allow(clippy::too_many_arguments)]
async fn update<T: Tx>(
    tx: &mut T,
    resource_type: &str,
    id: &str,
    resource: &mut Value,
    index: &IndexRows,
    head: Head,
    method: Method,
    now: i64,
) -> Result<Outcome, StoreError> {
    let was_deleted = head.deleted;
    let version = write_version(
        tx,
        resource_type,
        id,
        resource,
        index,
        Some(head),
        method,
        now,
    )
    .await?;
    // Updating a deleted resource brings it back: that is a create for the client.
    Ok(if was_deleted {
        Outcome::Created(version)
    } else {
        Outcome::Updated(version)
    })
}

#[allow(clippy::too_many_arguments)]
async fn write_version<T: Tx>(
    tx: &mut T,
    resource_type: &str,
    id: &str,
    resource: &mut Value,
    index: &IndexRows,
    head: Option<Head>,
    method: Method,
    now: i64,
) -> Result<Version, StoreError> {
    let version = head.as_ref().map_or(1, |h| h.version + 1);
    let creating = head.as_ref().is_none_or(|h| h.deleted);
    // Never go back in time: a version is at least as late as the one before it.
    let last_updated = head.as_ref().map_or(now, |h| now.max(h.last_updated + 1));
    let body = resource::stamp(resource, id, version, last_updated);
    let previous = match head.as_ref().filter(|head| !head.deleted) {
        Some(head) if has_rules(resource_type) => {
            stored_resource(tx, resource_type, id, head.version).await?
        }
        _ => None,
    };
    check_rules(tx, (resource_type, id), previous.as_ref(), resource, now).await?;
    // Claims first: a refused booking writes nothing.
    if super::claims::concerns(resource_type) {
        super::claims::after_write(tx, (resource_type, id), Some(resource), now).await?;
    }
    tx.put(NewVersion {
        resource_type,
        id,
        version,
        last_updated,
        method,
        body: Some(&body),
        index: Some(index),
        head,
    })
    .await?;
    if resource_type == "Appointment"
        && let Some(previous) = &previous
    {
        super::claims::queue_freed(tx, previous, Some(resource), now).await?;
    }
    // `previous` is read only for types with rules: a Communication's work is its creation's.
    if resource_type == "Appointment" || creating {
        let change = (previous.as_ref(), Some(&*resource));
        super::outbox::after_change(tx, (resource_type, id), change).await?;
    }
    let event = match (creating, method) {
        (true, _) => "create",
        (false, Method::Patch) => "patch",
        (false, _) => "update",
    };
    super::audit::note(tx, (resource_type, id, version), event, Some(&body));
    if super::provenance::concerns(resource_type) {
        let operation = if creating { "CREATE" } else { "UPDATE" };
        let target = (resource_type, id, version);
        super::provenance::record(tx, target, operation, last_updated).await?;
    }
    Ok(Version {
        resource_type: resource_type.to_owned(),
        id: id.to_owned(),
        version,
        last_updated,
        method,
        body: Some(body.into()),
    })
}

/// Whether writes of `resource_type` are held to rules of their content or of their
/// moves (`check_rules`).
fn has_rules(resource_type: &str) -> bool {
    matches!(
        resource_type,
        "Appointment" | "Slot" | "Schedule" | "HealthcareService"
    )
}

/// The rules a new version must meet, given the current one (`previous`, when the type
/// has rules of moves): valid scheduling parameters, a legal move of an appointment's
/// status, a Slot's life (`store::slots`).
async fn check_rules<T: Tx>(
    tx: &mut T,
    (resource_type, id): (&str, &str),
    previous: Option<&Value>,
    resource: &Value,
    now: i64,
) -> Result<(), StoreError> {
    match resource_type {
        "Schedule" | "HealthcareService" => {
            crate::index::availability::check(resource, resource_type).map_err(StoreError::Rejected)
        }
        "Appointment" => {
            let Some(previous) = previous else {
                return Ok(());
            };
            let (from, to) = (previous["status"].as_str(), resource["status"].as_str());
            crate::fhir::appointment_status::may_move(
                from.unwrap_or_default(),
                to.unwrap_or_default(),
            )
            .map_err(|reason| {
                StoreError::Rejected(
                    FhirError::new(axum::http::StatusCode::CONFLICT, "business-rule", reason)
                        .at("Appointment.status"),
                )
            })
        }
        "Slot" => super::slots::check_write(tx, id, previous, Some(resource), now).await,
        _ => Ok(()),
    }
}

pub(super) async fn delete<T: Tx>(
    tx: &mut T,
    resource_type: &str,
    id: &str,
    head: Head,
    now: i64,
) -> Result<(), StoreError> {
    let version = head.version + 1;
    let last_updated = now.max(head.last_updated + 1);
    let previous = match resource_type {
        "Appointment" | "Slot" => stored_resource(tx, resource_type, id, head.version).await?,
        _ => None,
    };
    if resource_type == "Slot" {
        super::slots::check_write(tx, id, previous.as_ref(), None, now).await?;
    }
    if super::claims::concerns(resource_type) {
        super::claims::after_write(tx, (resource_type, id), None, now).await?;
    }
    tx.put(NewVersion {
        resource_type,
        id,
        version,
        last_updated,
        method: Method::Delete,
        body: None,
        index: None,
        head: Some(head),
    })
    .await?;
    if let Some(previous) = previous.as_ref().filter(|_| resource_type == "Appointment") {
        super::claims::queue_freed(tx, previous, None, now).await?;
        super::outbox::after_change(tx, (resource_type, id), (Some(previous), None)).await?;
    }
    super::audit::note(tx, (resource_type, id, version), "delete", None);
    if super::provenance::concerns(resource_type) {
        let target = (resource_type, id, version);
        super::provenance::record(tx, target, "DELETE", last_updated).await?;
    }
    Ok(())
}
