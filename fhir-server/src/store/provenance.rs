//! Who changed an appointment: every version of an Appointment written on behalf of a
//! request gets a Provenance in the same database transaction (target the new version,
//! agent the token's fhirUser, else its client, activity the interaction or operation), so
//! that `Provenance?target=Appointment/{id}` tells who did what and when.
//!
//! The request's [`Attribution`] reaches the store as a task-local (set by the HTTP layer
//! around each request): the store is written by many paths, and each of them runs on the
//! request's task up to the database transaction, which keeps it in its `Tx`. Writes made
//! by the server's own commands (`import`, `demo`) carry none and get no Provenance.

use std::future::Future;

use serde_json::{Value, json};

use super::StoreError;
use super::write::{self, Tx};
use crate::index;

/// Who is making the changes of the current request, and how.
#[derive(Debug, Clone)]
pub struct Attribution {
    /// The user's FHIR resource (`Practitioner/7`), when a user signed in.
    pub who: Option<String>,
    /// The client (or `anonymous` without authorization).
    pub client: String,
    /// The interaction (`update`) or operation (`$book`).
    pub activity: String,
    /// Who and from where, for the audit records of the writes (`store::audit`); none
    /// for writes that are not audited.
    pub agent: Option<std::sync::Arc<super::audit::Agent>>,
    /// How many audit records the store made for this request's writes (shared by every
    /// copy), so that the HTTP layer does not record a plain write twice.
    pub audited: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

tokio::task_local! {
    static CURRENT: Attribution;
}

/// Runs `work` with its changes attributed to `attribution`.
pub async fn attributed<F: Future>(attribution: Attribution, work: F) -> F::Output {
    CURRENT.scope(attribution, work).await
}

/// The attribution of the current task, if any.
pub fn current() -> Option<Attribution> {
    CURRENT.try_with(Clone::clone).ok()
}

/// `f` of the current task's attribution (none outside a request), without copying it.
pub fn with_current<R>(f: impl FnOnce(Option<&Attribution>) -> R) -> R {
    let mut f = Some(f);
    let done = CURRENT.try_with(|attribution| f.take().map(|f| f(Some(attribution))));
    match (done, f) {
        (Ok(Some(result)), _) => result,
        (_, Some(f)) => f(None),
        (_, None) => unreachable!("f runs once"),
    }
}

/// The types whose versions get a Provenance.
pub fn concerns(resource_type: &str) -> bool {
    resource_type == "Appointment"
}

/// The Provenance of `target` (`Appointment/id/_history/n`), written by `operation`
/// (`CREATE`, `UPDATE`, `DELETE`).
fn provenance(target: &str, attribution: &Attribution, operation: &str, now: i64) -> Value {
    let who = match &attribution.who {
        Some(reference) => json!({"reference": reference, "display": attribution.client}),
        None => json!({"display": attribution.client}),
    };
    json!({
        "resourceType": "Provenance",
        "target": [{"reference": target}],
        "recorded": crate::resource::format_instant(now),
        "activity": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": operation}],
            "text": attribution.activity,
        },
        "agent": [{
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "author"}]},
            "who": who,
        }],
    })
}

/// Writes the Provenance of version `version` of `resource_type/id` in the transaction,
/// when the transaction carries an attribution.
pub(super) async fn record<T: Tx>(
    tx: &mut T,
    (resource_type, id, version): (&str, &str, i64),
    operation: &str,
    now: i64,
) -> Result<(), StoreError> {
    let Some(attribution) = tx.attribution().cloned() else {
        return Ok(());
    };
    let target = format!("{resource_type}/{id}/_history/{version}");
    let mut resource = provenance(&target, &attribution, operation, now);
    let provenance_id = crate::resource::new_id();
    let stored = write::first_version("Provenance", &mut resource, &provenance_id, now);
    let rows = index::extract("Provenance", &resource);
    tx.create_many(&[(&stored, &rows)])
        .await
        .map_err(|(_, error)| error)
}
