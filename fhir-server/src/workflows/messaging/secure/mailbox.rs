//! A reader's secure messages: the threads they take part in with their unread counts
//! (`Communication/$mailbox`), one thread read whole (`Communication/{id}/$thread`), which
//! marks what came to the reader `received` (the sender's read receipt).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::access::{Reader, Seeing};
use super::{COMMUNICATION_KIND, ROLE_SYSTEM, SECURE_MESSAGE, is_secure_message, thread_of};
use crate::app::App;
use crate::error::FhirError;
use crate::ids::TenantId;
use crate::resource::format_instant;
use crate::workflows::records;
use crate::workflows::scheduling::lookup;

/// How many threads' messages one search gathers.
const THREADS_AT_ONCE: usize = 50;

fn secure_only() -> (String, String) {
    (
        "category".to_owned(),
        format!("{COMMUNICATION_KIND}|{SECURE_MESSAGE}"),
    )
}

/// The messages of thread `root`, first message first, then by the time sent.
pub async fn thread(app: &App, tenant: TenantId, root: &str) -> Result<Vec<Value>, FhirError> {
    Ok(threads(app, tenant, &[root.to_owned()])
        .await?
        .remove(root)
        .unwrap_or_default())
}

/// The messages of each of `roots`' threads.
async fn threads(
    app: &App,
    tenant: TenantId,
    roots: &[String],
) -> Result<BTreeMap<String, Vec<Value>>, FhirError> {
    let mut found: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for chunk in roots.chunks(THREADS_AT_ONCE) {
        let ids = chunk.join(",");
        let references: Vec<String> = chunk.iter().map(|r| format!("Communication/{r}")).collect();
        let firsts = [("_id".to_owned(), ids), secure_only()];
        let replies = [("part-of".to_owned(), references.join(",")), secure_only()];
        let mut messages = lookup::all(app, tenant, "Communication", &firsts).await?;
        messages.extend(lookup::all(app, tenant, "Communication", &replies).await?);
        for message in messages {
            found.entry(thread_of(&message)).or_default().push(message);
        }
    }
    for (root, messages) in &mut found {
        messages.sort_by(|a, b| {
            let first = |m: &Value| m["id"].as_str() != Some(root.as_str());
            (first(a), a["sent"].as_str()).cmp(&(first(b), b["sent"].as_str()))
        });
    }
    found.retain(|root, messages| messages.first().and_then(|m| m["id"].as_str()) == Some(root));
    Ok(found)
}

/// The thread of message `id` as `seeing` reads it, marking what came to them read
/// (`received`, now) when `receipts`; 404 when there is none they may see.
pub async fn open(
    app: &App,
    tenant: TenantId,
    seeing: &Seeing,
    (id, receipts): (&str, bool),
) -> Result<Vec<Value>, FhirError> {
    let not_found = || FhirError::not_found(format!("No secure message Communication/{id}"));
    let message = records::read(app, tenant, "Communication", id)
        .await?
        .filter(is_secure_message)
        .ok_or_else(not_found)?;
    let mut messages = thread(app, tenant, &thread_of(&message)).await?;
    if !seeing.sees(&messages) {
        return Err(not_found());
    }
    let now = format_instant(crate::clock::now_micros());
    for message in &mut messages {
        if !receipts || !seeing.unread(message) {
            continue;
        }
        let mut read = message.clone();
        read["received"] = json!(now);
        // When someone else's read receipt got there first, theirs stands.
        records::replace_unchanged(app, tenant, read).await?;
        let id = message["id"].as_str().unwrap_or_default().to_owned();
        if let Some(stored) = records::read(app, tenant, "Communication", &id).await? {
            *message = stored;
        }
    }
    Ok(messages)
}

/// The searches that find the messages `reader` takes part in by name.
fn own_searches(seeing: &Seeing) -> Vec<Vec<(String, String)>> {
    let by = |name: &str, value: String| vec![(name.to_owned(), value), secure_only()];
    match &seeing.reader {
        Reader::Patient(patient) => vec![by("subject", format!("Patient/{patient}"))],
        Reader::Staff { user, role } => {
            let mut searches = vec![
                by("recipient:identifier", format!("{ROLE_SYSTEM}|{role}")),
                by("sender:identifier", format!("{ROLE_SYSTEM}|{role}")),
            ];
            if let Some(user) = user {
                searches.push(by("recipient", user.clone()));
                searches.push(by("sender", user.clone()));
            }
            let teams: Vec<&String> = seeing.circle.iter().flat_map(|c| &c.teams).collect();
            for chunk in teams.chunks(THREADS_AT_ONCE) {
                let joined: Vec<&str> = chunk.iter().map(|t| t.as_str()).collect();
                searches.push(by("recipient", joined.join(",")));
            }
            searches
        }
        Reader::Everyone | Reader::Nobody => Vec::new(),
    }
}

/// The reader's mailbox as Parameters: `unread` (every unread message of theirs), then a
/// `thread` per thread they take part in, latest first, at most `count`: its first
/// message, topic, patient, messages, unread and the time of its last message.
pub async fn mailbox(
    app: &App,
    tenant: TenantId,
    seeing: &Seeing,
    count: usize,
) -> Result<Value, FhirError> {
    let mut roots: Vec<String> = Vec::new();
    for search in own_searches(seeing) {
        for message in lookup::all(app, tenant, "Communication", &search).await? {
            roots.push(thread_of(&message));
        }
    }
    roots.sort_unstable();
    roots.dedup();
    let found = threads(app, tenant, &roots).await?;
    let mut summaries: Vec<(String, Value)> = Vec::new();
    let mut unread_total = 0;
    for (root, messages) in &found {
        let unread = messages.iter().filter(|m| seeing.unread(m)).count();
        unread_total += unread;
        let first = &messages[0];
        let last = messages
            .iter()
            .filter_map(|m| m["sent"].as_str())
            .max()
            .unwrap_or_default()
            .to_owned();
        let part = json!({"name": "thread", "part": [
            {"name": "message", "valueReference": {"reference": format!("Communication/{root}")}},
            {"name": "topic", "valueString": first["topic"]["text"].as_str().unwrap_or_default()},
            {"name": "subject", "valueReference": first["subject"]},
            {"name": "messages", "valueInteger": messages.len()},
            {"name": "unread", "valueInteger": unread},
            {"name": "last", "valueDateTime": last},
        ]});
        summaries.push((last, part));
    }
    summaries.sort_by(|a, b| b.0.cmp(&a.0));
    let mut parameters = vec![json!({"name": "unread", "valueInteger": unread_total})];
    parameters.extend(summaries.into_iter().take(count).map(|(_, part)| part));
    Ok(json!({"resourceType": "Parameters", "parameter": parameters}))
}
