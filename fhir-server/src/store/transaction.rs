//! The write rules of a transaction Bundle (https://hl7.org/fhir/R4/http.html#trules),
//! written once for both databases, inside the caller's single database transaction.
//!
//! Order of processing, as the spec sets it: deletes, then creates, then updates and
//! patches (reads are answered after the commit, by the interaction layer). Before any
//! create or update, every entry's identity is settled: new ids for creates, matches for
//! conditional creates, updates and patches, and each `Type?criteria` reference resolved
//! to exactly one resource. Then every reference to an entry's `fullUrl` (`urn:uuid:`,
//! `urn:oid:` or an absolute URL), anywhere in any resource of the Bundle, is rewritten to
//! `Type/id`, and the writes run. Any failure fails the whole: the caller rolls back.

use std::collections::{HashMap, HashSet};

use axum::http::StatusCode;
use serde_json::Value;

use super::write::{self, Outcome, ServerOwned, Tx};
use super::{Method, StoreError, Version};
use crate::error::FhirError;
use crate::ids::ResourceType;
use crate::index::{self, IndexRows};
use crate::search::Query;

/// One write of a transaction.
#[derive(Debug, Clone)]
pub struct TxEntry {
    /// The entry's position in the Bundle (for errors and the answer).
    pub index: usize,
    pub full_url: Option<String>,
    pub action: TxAction,
}

/// What an entry does. Resources are validated already; their references may still name
/// other entries by fullUrl, or resources by criteria (`Patient?identifier=...`).
#[derive(Debug, Clone)]
pub enum TxAction {
    /// POST; with `if_none_exist`, only when nothing matches.
    Create {
        resource_type: String,
        resource: Value,
        if_none_exist: Option<Query>,
    },
    /// PUT `Type/id` or `Type?criteria`.
    Update {
        resource_type: String,
        target: Target,
        resource: Value,
        if_match: Option<i64>,
    },
    /// PATCH `Type/id` or `Type?criteria` with a JSON Patch or a FHIRPath Patch.
    Patch {
        resource_type: String,
        target: Target,
        patch: crate::fhir::patch::Patch,
        if_match: Option<i64>,
    },
    /// DELETE `Type/id` or `Type?criteria`.
    Delete {
        resource_type: String,
        target: Target,
    },
}

/// Which resource an entry names.
#[derive(Debug, Clone)]
pub enum Target {
    Id(String),
    Criteria(Box<Query>),
}

/// A transaction: its entries, and what was settled before it started (see
/// `Transaction::settle_locally`).
#[derive(Debug, Clone)]
pub struct Transaction {
    pub entries: Vec<TxEntry>,
    /// Per entry: the id given to a create and the index rows of its resource, when they
    /// were settled beforehand.
    settled: Vec<Option<(String, IndexRows)>>,
    /// Whose values of the server-owned tags the writes carry: a client's Bundle cannot
    /// set them; the server's own (operations, imports) can.
    owned: ServerOwned,
    /// Whether updates that create run in entry order with the other updates (see
    /// `in_order`), instead of with the creates.
    in_order: bool,
}

/// What an entry did: its status, and the version it wrote or found (none for a delete).
#[derive(Debug, Clone)]
pub struct TxResult {
    pub index: usize,
    pub status: StatusCode,
    pub version: Option<Version>,
}

/// A failed transaction: the entry that failed and why.
#[derive(Debug)]
pub struct TxFailure {
    pub index: usize,
    pub error: StoreError,
}

/// A failure of the whole (the database, a commit) rather than of one entry.
impl From<StoreError> for TxFailure {
    fn from(error: StoreError) -> Self {
        TxFailure { index: 0, error }
    }
}

impl Transaction {
    pub fn new(entries: Vec<TxEntry>) -> Transaction {
        let settled = vec![None; entries.len()];
        Transaction {
            entries,
            settled,
            owned: ServerOwned::Carry,
            in_order: false,
        }
    }

    /// A transaction the server made whose updates (those that create included) must run in
    /// entry order: a booking moved (`$reschedule`) frees its old time before the new
    /// booking claims it.
    pub fn in_order(mut self) -> Transaction {
        self.in_order = true;
        self
    }

    /// A transaction the server itself made (an operation's writes, an import of an
    /// export): its server-owned tags and extensions are stored as given.
    pub fn by_server(mut self) -> Transaction {
        self.owned = ServerOwned::AsGiven;
        self
    }

    /// Whether the transaction can lose a race with another writer on a unique key: it
    /// creates a resource whose id the client chose, or decides by criteria. (New ids are
    /// random; other races wait on row locks.) Only those are worth keeping a copy of, to
    /// run again.
    pub fn may_conflict(&self) -> bool {
        self.entries.iter().any(|entry| match &entry.action {
            TxAction::Create { if_none_exist, .. } => if_none_exist.is_some(),
            TxAction::Update { .. } => true,
            TxAction::Patch { target, .. } | TxAction::Delete { target, .. } => {
                matches!(target, Target::Criteria(_))
            }
        })
    }

    /// When every identity and reference can be settled without the database (no
    /// conditional entry, no `Type?criteria` reference), settles them now: ids for the
    /// creates, references rewritten, index rows extracted. This is the common Bundle (a
    /// feed of new resources linked by `urn:uuid:`), and it keeps that work off the
    /// database's critical path (SQLite's one writer).
    pub fn settle_locally(&mut self) {
        let local = self.entries.iter().all(|entry| match &entry.action {
            TxAction::Create {
                resource,
                if_none_exist,
                ..
            } => if_none_exist.is_none() && !has_conditional_reference(resource),
            TxAction::Update {
                target, resource, ..
            } => matches!(target, Target::Id(_)) && !has_conditional_reference(resource),
            TxAction::Patch { target, .. } | TxAction::Delete { target, .. } => {
                matches!(target, Target::Id(_))
            }
        });
        if !local {
            return;
        }
        let mut names = HashMap::new();
        let mut ids = Vec::with_capacity(self.entries.len());
        for entry in &self.entries {
            let named = match &entry.action {
                TxAction::Create { resource_type, .. } => {
                    Some((resource_type, crate::resource::new_id()))
                }
                TxAction::Update {
                    resource_type,
                    target: Target::Id(id),
                    ..
                } => Some((resource_type, id.clone())),
                _ => None,
            };
            if let (Some((resource_type, id)), Some(url)) = (&named, &entry.full_url) {
                names.insert(url.clone(), format!("{resource_type}/{id}"));
            }
            ids.push(named.map(|(_, id)| id));
        }
        for ((entry, id), settled) in self.entries.iter_mut().zip(ids).zip(&mut self.settled) {
            if let TxAction::Create {
                resource_type,
                resource,
                ..
            }
            | TxAction::Update {
                resource_type,
                resource,
                ..
            } = &mut entry.action
                && let Some(id) = id
            {
                rewrite_references(resource, &names);
                // A client's values are dropped now, before the rows are extracted (an
                // update of a stored resource gets the stored values back when it runs).
                if self.owned == ServerOwned::Carry {
                    crate::resource::keep_server_owned(resource, None);
                }
                *settled = Some((id, index::extract(resource_type, resource)));
            }
        }
    }
}

fn rejected(status: StatusCode, code: &'static str, message: String) -> StoreError {
    StoreError::Rejected(FhirError::new(status, code, message))
}

fn multiple(what: &str, resource_type: &str) -> StoreError {
    StoreError::Rejected(FhirError::multiple_matches(format!(
        "The {what} criteria match more than one {resource_type}"
    )))
}

/// A create, update or patch once its target is known.
struct Planned {
    index: usize,
    resource_type: String,
    id: String,
    step: Step,
}

enum Step {
    /// Create `resource` (index rows settled beforehand, if they were).
    Create(Value, Option<IndexRows>),
    /// A conditional create that matched: nothing to write.
    Matched,
    Update(Value, Option<IndexRows>, Option<i64>),
    Patch(crate::fhir::patch::Patch, Option<i64>),
}

/// Applies a transaction inside the caller's database transaction, in the spec's order.
pub async fn apply<T: Tx>(
    tx: &mut T,
    transaction: Transaction,
) -> Result<Vec<TxResult>, TxFailure> {
    lock_conditional_types(tx, &transaction.entries).await?;
    let mut run = Run {
        tx,
        now: crate::resource::now_micros(),
        owned: transaction.owned,
        in_order: transaction.in_order,
        touched: HashSet::new(),
        results: Vec::with_capacity(transaction.entries.len()),
    };
    run.deletes(&transaction.entries).await?;
    let (mut planned, mut names) = run
        .identify(transaction.entries, transaction.settled)
        .await?;
    run.resolve_references(&mut planned, &mut names).await?;
    let others = run.creates(planned).await?;
    run.updates_and_patches(others).await?;
    let mut results = run.results;
    results.sort_by_key(|r| r.index);
    Ok(results)
}

/// A transaction being applied: what it has written so far.
struct Run<'t, T> {
    tx: &'t mut T,
    now: i64,
    owned: ServerOwned,
    in_order: bool,
    /// The resources an entry has claimed: two entries may not write the same one.
    touched: HashSet<(String, String)>,
    results: Vec<TxResult>,
}

/// Names `error` as entry `index`'s.
fn at(index: usize) -> impl Fn(StoreError) -> TxFailure {
    move |error| TxFailure { index, error }
}

impl<T: Tx> Run<'_, T> {
    /// Claims `(type, id)` for entry `index`; a second claim of it fails the transaction.
    fn claim(&mut self, index: usize, resource_type: &str, id: &str) -> Result<(), TxFailure> {
        if self
            .touched
            .insert((resource_type.to_owned(), id.to_owned()))
        {
            return Ok(());
        }
        Err(TxFailure {
            index,
            error: rejected(
                StatusCode::BAD_REQUEST,
                "invalid",
                format!("{resource_type}/{id} is the target of more than one entry"),
            ),
        })
    }

    /// Step 1: the deletes, by id or by criteria (one match at most).
    async fn deletes(&mut self, entries: &[TxEntry]) -> Result<(), TxFailure> {
        for entry in entries {
            let TxAction::Delete {
                resource_type,
                target,
            } = &entry.action
            else {
                continue;
            };
            let ids = match target {
                Target::Id(id) => vec![id.clone()],
                Target::Criteria(query) => {
                    let found = self.tx.matches(resource_type, query, 2).await;
                    let found = found.map_err(at(entry.index))?;
                    if found.len() > 1 {
                        return Err(at(entry.index)(multiple(
                            "conditional delete",
                            resource_type,
                        )));
                    }
                    found
                }
            };
            for id in &ids {
                self.claim(entry.index, resource_type, id)?;
                let head = self
                    .tx
                    .head(resource_type, id)
                    .await
                    .map_err(at(entry.index))?;
                if let Some(head) = head
                    && !head.deleted
                {
                    write::delete(self.tx, resource_type, id, head, self.now)
                        .await
                        .map_err(at(entry.index))?;
                }
            }
            self.results.push(TxResult {
                index: entry.index,
                status: StatusCode::NO_CONTENT,
                version: None,
            });
        }
        Ok(())
    }

    /// Step 2: every other entry's identity, and what each fullUrl names.
    async fn identify(
        &mut self,
        entries: Vec<TxEntry>,
        settled: Vec<Option<(String, IndexRows)>>,
    ) -> Result<(Vec<Planned>, HashMap<String, String>), TxFailure> {
        let mut names: HashMap<String, String> = HashMap::new();
        let mut planned: Vec<Planned> = Vec::new();
        for (entry, settled) in entries.into_iter().zip(settled) {
            let Some((resource_type, id, step)) = self
                .identity(entry.action, settled)
                .await
                .map_err(at(entry.index))?
            else {
                continue;
            };
            self.claim(entry.index, &resource_type, &id)?;
            if let Some(url) = &entry.full_url {
                names.insert(url.clone(), format!("{resource_type}/{id}"));
            }
            planned.push(Planned {
                index: entry.index,
                resource_type,
                id,
                step,
            });
        }
        Ok((planned, names))
    }

    /// The type, id and step of an entry that is not a delete (`None` for a delete).
    async fn identity(
        &mut self,
        action: TxAction,
        settled: Option<(String, IndexRows)>,
    ) -> Result<Option<(String, String, Step)>, StoreError> {
        Ok(Some(match action {
            TxAction::Delete { .. } => return Ok(None),
            TxAction::Create {
                resource_type,
                resource,
                if_none_exist,
            } => {
                let matched = match &if_none_exist {
                    Some(query) => {
                        one_or_none(self.tx, &resource_type, query, "ifNoneExist").await?
                    }
                    None => None,
                };
                let (id, step) = match (matched, settled) {
                    (Some(id), _) => (id, Step::Matched),
                    (None, Some((id, rows))) => (id, Step::Create(resource, Some(rows))),
                    (None, None) => (crate::resource::new_id(), Step::Create(resource, None)),
                };
                (resource_type, id, step)
            }
            TxAction::Update {
                resource_type,
                target,
                resource,
                if_match,
            } => {
                let id = self
                    .update_target(&resource_type, target, &resource)
                    .await?;
                let rows = settled.map(|(_, rows)| rows);
                (resource_type, id, Step::Update(resource, rows, if_match))
            }
            TxAction::Patch {
                resource_type,
                target,
                patch,
                if_match,
            } => {
                let id = self.patch_target(&resource_type, target).await?;
                (resource_type, id, Step::Patch(patch, if_match))
            }
        }))
    }

    /// The id an update writes: its own, or the one match of its criteria; with none, the
    /// body's id or a new one.
    async fn update_target(
        &mut self,
        resource_type: &str,
        target: Target,
        resource: &Value,
    ) -> Result<String, StoreError> {
        let query = match target {
            Target::Id(id) => return Ok(id),
            Target::Criteria(query) => query,
        };
        let body_id = resource.get("id").and_then(Value::as_str);
        match one_or_none(self.tx, resource_type, &query, "conditional update").await? {
            Some(id) if body_id.is_some_and(|b| b != id) => Err(rejected(
                StatusCode::BAD_REQUEST,
                "invalid",
                format!(
                    "The resource id does not match {resource_type}/{id}, which the criteria found"
                ),
            )),
            Some(id) => Ok(id),
            None => Ok(body_id
                .map(str::to_owned)
                .unwrap_or_else(crate::resource::new_id)),
        }
    }

    /// The id a patch changes: its own, or the one match of its criteria (none is 404).
    async fn patch_target(
        &mut self,
        resource_type: &str,
        target: Target,
    ) -> Result<String, StoreError> {
        let query = match target {
            Target::Id(id) => return Ok(id),
            Target::Criteria(query) => query,
        };
        one_or_none(self.tx, resource_type, &query, "conditional patch")
            .await?
            .ok_or_else(|| {
                rejected(
                    StatusCode::NOT_FOUND,
                    "not-found",
                    format!("No {resource_type} matches the conditional patch criteria"),
                )
            })
    }

    /// Step 3: references, where they were not settled beforehand.
    async fn resolve_references(
        &mut self,
        planned: &mut [Planned],
        names: &mut HashMap<String, String>,
    ) -> Result<(), TxFailure> {
        for plan in planned {
            if let Step::Create(resource, None) | Step::Update(resource, None, _) = &mut plan.step {
                resolve_conditional_references(self.tx, resource, names)
                    .await
                    .map_err(at(plan.index))?;
                rewrite_references(resource, names);
            }
        }
        Ok(())
    }

    /// Step 4: the creates, together, so a store may write them in one statement. An update of
    /// a resource that does not exist yet is a create too: the heads of all the updates'
    /// targets are looked up at once to find them. Returns the updates and patches left.
    async fn creates(&mut self, planned: Vec<Planned>) -> Result<Vec<Planned>, TxFailure> {
        let targets: Vec<(&str, &str)> = planned
            .iter()
            .filter(|p| matches!(p.step, Step::Update(..)))
            .map(|p| (p.resource_type.as_str(), p.id.as_str()))
            .collect();
        let first = planned.first().map_or(0, |p| p.index);
        let mut heads = self
            .tx
            .heads(&targets)
            .await
            .map_err(at(first))?
            .into_iter();
        let mut creates = Vec::new();
        let mut others = Vec::new();
        for plan in planned {
            let (resource, rows, method) = match plan.step {
                Step::Create(resource, rows) => (resource, rows, Method::Post),
                Step::Update(resource, rows, if_match) => {
                    if heads.next().flatten().is_some() || self.in_order {
                        others.push(Planned {
                            step: Step::Update(resource, rows, if_match),
                            ..plan
                        });
                        continue;
                    }
                    if if_match.is_some() {
                        return Err(at(plan.index)(StoreError::Rejected(
                            FhirError::precondition_failed(format!(
                                "If-Match given but {}/{} does not exist",
                                plan.resource_type, plan.id
                            )),
                        )));
                    }
                    (resource, rows, Method::Put)
                }
                _ => {
                    others.push(plan);
                    continue;
                }
            };
            let entry = (plan.index, plan.resource_type.as_str(), plan.id.as_str());
            creates.push(self.first_version(entry, resource, rows, method));
        }
        let created = write::create_many(self.tx, &creates)
            .await
            .map_err(|(index, error)| TxFailure { index, error })?;
        for ((index, _, _), version) in creates.iter().zip(created) {
            self.results.push(TxResult {
                index: *index,
                status: StatusCode::CREATED,
                version: Some(version),
            });
        }
        Ok(others)
    }

    /// A created resource's first version and index rows.
    fn first_version(
        &self,
        (index, resource_type, id): (usize, &str, &str),
        mut resource: Value,
        rows: Option<IndexRows>,
        method: Method,
    ) -> (usize, Version, IndexRows) {
        let rows = match rows {
            // Settled rows were extracted after `settle_locally` dropped a client's values.
            Some(rows) => rows,
            None => {
                if self.owned == ServerOwned::Carry {
                    crate::resource::keep_server_owned(&mut resource, None);
                }
                index::extract(resource_type, &resource)
            }
        };
        let mut version = write::first_version(resource_type, &mut resource, id, self.now);
        version.method = method;
        (index, version, rows)
    }

    /// Step 5: the updates of resources that exist, the patches, and the conditional creates
    /// that matched (reported with the version they found).
    async fn updates_and_patches(&mut self, others: Vec<Planned>) -> Result<(), TxFailure> {
        for plan in others {
            let index = plan.index;
            let outcome = self.write_one(plan).await.map_err(at(index))?;
            let (status, version) = match outcome {
                Some(Outcome::Created(version)) => (StatusCode::CREATED, version),
                Some(Outcome::Updated(version) | Outcome::Matched(version)) => {
                    (StatusCode::OK, version)
                }
                Some(Outcome::Deleted(_)) | None => continue,
            };
            self.results.push(TxResult {
                index,
                status,
                version: Some(version),
            });
        }
        Ok(())
    }

    /// One update, patch or matched create.
    async fn write_one(&mut self, plan: Planned) -> Result<Option<Outcome>, StoreError> {
        let target = (plan.resource_type.as_str(), plan.id.as_str());
        Ok(Some(match plan.step {
            Step::Matched => Outcome::Matched(write::current(self.tx, target.0, target.1).await?),
            Step::Update(mut resource, rows, if_match) => {
                let rows = rows.unwrap_or_else(|| index::extract(target.0, &resource));
                let how = (if_match, self.owned);
                write::put_by_id(
                    self.tx,
                    target,
                    &mut resource,
                    &rows,
                    how,
                    Method::Put,
                    self.now,
                )
                .await?
            }
            Step::Patch(patch, if_match) => {
                write::patch_by_id(self.tx, target, &patch, if_match, self.now).await?
            }
            Step::Create(..) => return Ok(None),
        }))
    }
}

/// Takes the per-type lock of every type that an entry writes by criteria (If-None-Exist,
/// conditional update, patch or delete), as the plain conditional interactions do, so two
/// transactions (or a transaction and a plain request) cannot both see "no match" and both
/// create. The types are locked in name order, so transactions cannot deadlock on them.
async fn lock_conditional_types<T: Tx>(tx: &mut T, entries: &[TxEntry]) -> Result<(), TxFailure> {
    let mut types: Vec<(&str, usize)> = entries
        .iter()
        .filter_map(|entry| match &entry.action {
            TxAction::Create {
                resource_type,
                if_none_exist: Some(_),
                ..
            } => Some((resource_type.as_str(), entry.index)),
            TxAction::Update {
                resource_type,
                target: Target::Criteria(_),
                ..
            }
            | TxAction::Patch {
                resource_type,
                target: Target::Criteria(_),
                ..
            }
            | TxAction::Delete {
                resource_type,
                target: Target::Criteria(_),
            } => Some((resource_type.as_str(), entry.index)),
            _ => None,
        })
        .collect();
    types.sort_unstable();
    types.dedup_by_key(|(resource_type, _)| *resource_type);
    for (resource_type, index) in types {
        tx.lock_type(resource_type)
            .await
            .map_err(|error| TxFailure { index, error })?;
    }
    Ok(())
}

/// The one match of `query`, none, or an error when there are several.
async fn one_or_none<T: Tx>(
    tx: &mut T,
    resource_type: &str,
    query: &Query,
    what: &str,
) -> Result<Option<String>, StoreError> {
    let found = tx.matches(resource_type, query, 2).await?;
    match found.as_slice() {
        [] => Ok(None),
        [id] => Ok(Some(id.clone())),
        _ => Err(multiple(what, resource_type)),
    }
}

/// Rewrites every `reference` that names an entry (by its fullUrl) to `Type/id`, anywhere
/// in `value`: nested elements, extensions, contained resources.
pub fn rewrite_references(value: &mut Value, names: &HashMap<String, String>) {
    match value {
        Value::Object(object) => {
            for (key, child) in object.iter_mut() {
                if key == "reference"
                    && let Value::String(text) = child
                {
                    if let Some(name) = names.get(text.as_str()) {
                        *text = name.clone();
                    }
                    continue;
                }
                rewrite_references(child, names);
            }
        }
        Value::Array(items) => {
            for item in items {
                rewrite_references(item, names);
            }
        }
        _ => {}
    }
}

/// A conditional reference: `Type?criteria`.
fn conditional_reference(text: &str) -> Option<(&str, &str)> {
    let (resource_type, query) = text.split_once('?')?;
    ResourceType::parse(resource_type).map(|_| (resource_type, query))
}

fn has_conditional_reference(value: &Value) -> bool {
    match value {
        Value::Object(object) => object.iter().any(|(key, child)| match child {
            Value::String(text) if key == "reference" => conditional_reference(text).is_some(),
            _ => has_conditional_reference(child),
        }),
        Value::Array(items) => items.iter().any(has_conditional_reference),
        _ => false,
    }
}

/// Resolves each `Type?criteria` reference in `value` to the one resource it matches,
/// adding it to `names` (so the rewrite that follows replaces it).
async fn resolve_conditional_references<T: Tx>(
    tx: &mut T,
    value: &Value,
    names: &mut HashMap<String, String>,
) -> Result<(), StoreError> {
    let mut pending = Vec::new();
    collect_conditional_references(value, &mut pending);
    for text in pending {
        if names.contains_key(&text) {
            continue;
        }
        let Some((resource_type, criteria)) = conditional_reference(&text) else {
            continue;
        };
        let params = crate::fhir::query::parse_query(criteria);
        let query =
            crate::search::conditional_criteria(resource_type, &params, "A conditional reference")
                .map_err(StoreError::Rejected)?;
        match one_or_none(tx, resource_type, &query, "conditional reference").await? {
            Some(id) => {
                let name = format!("{resource_type}/{id}");
                names.insert(text, name);
            }
            None => {
                return Err(rejected(
                    StatusCode::PRECONDITION_FAILED,
                    "not-found",
                    format!("The conditional reference '{text}' matches no resource"),
                ));
            }
        }
    }
    Ok(())
}

fn collect_conditional_references(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            for (key, child) in object {
                match child {
                    Value::String(text)
                        if key == "reference" && conditional_reference(text).is_some() =>
                    {
                        found.push(text.clone());
                    }
                    _ => collect_conditional_references(child, found),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                collect_conditional_references(item, found);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_to_entries_are_rewritten_everywhere() {
        let names = HashMap::from([
            ("urn:uuid:1".to_owned(), "Patient/a".to_owned()),
            ("http://x/Patient/9".to_owned(), "Patient/9".to_owned()),
        ]);
        let mut value = json!({
            "resourceType": "Encounter",
            "subject": {"reference": "urn:uuid:1"},
            "extension": [{"url": "u", "valueReference": {"reference": "urn:uuid:1"}}],
            "contained": [{"resourceType": "Basic", "subject": {"reference": "http://x/Patient/9"}}],
            "participant": [{"individual": {"reference": "Practitioner/p", "display": "urn:uuid:1"}}]
        });
        rewrite_references(&mut value, &names);
        assert_eq!(value["subject"]["reference"], "Patient/a");
        assert_eq!(
            value["extension"][0]["valueReference"]["reference"],
            "Patient/a"
        );
        assert_eq!(value["contained"][0]["subject"]["reference"], "Patient/9");
        assert_eq!(
            value["participant"][0]["individual"]["reference"],
            "Practitioner/p"
        );
        assert_eq!(
            value["participant"][0]["individual"]["display"],
            "urn:uuid:1"
        );
    }

    #[test]
    fn conditional_references_are_recognised() {
        assert_eq!(
            conditional_reference("Patient?identifier=a|b"),
            Some(("Patient", "identifier=a|b"))
        );
        assert_eq!(conditional_reference("Patient/1"), None);
        assert_eq!(conditional_reference("http://x/Patient?y=1"), None);
        assert_eq!(conditional_reference("Nope?x=1"), None);
        assert!(has_conditional_reference(
            &json!({"a": [{"b": {"reference": "Patient?identifier=1"}}]})
        ));
    }
}
