//! What the server itself writes into a resource: its id and `meta.versionId` /
//! `meta.lastUpdated`, and the clock and formats behind them.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Microseconds since the Unix epoch, on the server's clock (`clock`): how versions are
/// timed in storage.
pub fn now_micros() -> i64 {
    crate::clock::now_micros()
}

/// A new server-assigned id: a time-ordered UUID (version 7: the millisecond, then 74
/// random bits), a valid FHIR id of 36 characters.
///
/// Time order is for the indexes: ids made one after another sort together, so a new
/// resource's key lands at the end of the (tenant, type, id) b-trees instead of on a
/// random page, and a burst of creates dirties a few pages rather than one per resource.
/// The id reveals when it was made (as `meta.lastUpdated` of its first version does), and
/// nothing about other resources; it cannot be guessed.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// `meta.lastUpdated` form: an instant in UTC truncated to milliseconds. Truncation keeps
/// `_since` and `_lastUpdated` consistent with the stored microseconds.
pub fn format_instant(micros: i64) -> String {
    let millis = micros.div_euclid(1000);
    let time = OffsetDateTime::from_unix_timestamp_nanos(millis as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        time.year(),
        time.month() as u8,
        time.day(),
        time.hour(),
        time.minute(),
        time.second(),
        time.millisecond()
    )
}

/// The HTTP-date form (`Last-Modified`), to the second as HTTP requires.
pub fn format_http_date(micros: i64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_micros(micros.max(0) as u64))
}

/// Parses an HTTP-date (`If-Modified-Since`) into microseconds.
pub fn parse_http_date(text: &str) -> Option<i64> {
    let time = httpdate::parse_http_date(text).ok()?;
    Some(time.duration_since(UNIX_EPOCH).ok()?.as_micros() as i64)
}

/// Parses a FHIR instant or dateTime with a time zone (`_since`) into microseconds.
pub fn parse_instant(text: &str) -> Option<i64> {
    let time = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    Some((time.unix_timestamp_nanos() / 1000) as i64)
}

/// Sets the server-owned fields and serializes the resource as it will be stored and served.
/// The client's `meta` elements (profile, tag, security, source) are kept.
pub fn stamp(resource: &mut Value, id: &str, version: i64, last_updated: i64) -> Vec<u8> {
    if let Some(object) = resource.as_object_mut() {
        // Rebuild in FHIR's usual order: resourceType, id, meta, then the rest.
        let mut rest = std::mem::take(object);
        let resource_type = rest.shift_remove("resourceType");
        rest.shift_remove("id");
        let mut meta = match rest.shift_remove("meta") {
            Some(Value::Object(meta)) => meta,
            _ => Map::new(),
        };
        meta.shift_remove("versionId");
        meta.shift_remove("lastUpdated");
        let mut new_meta = Map::new();
        new_meta.insert("versionId".into(), Value::String(version.to_string()));
        new_meta.insert(
            "lastUpdated".into(),
            Value::String(format_instant(last_updated)),
        );
        new_meta.extend(meta);
        if let Some(resource_type) = resource_type {
            object.insert("resourceType".into(), resource_type);
        }
        object.insert("id".into(), Value::String(id.to_owned()));
        object.insert("meta".into(), Value::Object(new_meta));
        object.extend(rest);
    }
    serde_json::to_vec(resource).unwrap_or_default()
}

/// Tag systems whose codes only the server sets: the X12 claim state that `$submit` and
/// `$import-835` record. A client's write cannot set, change or drop them (a billing
/// system's sync that PUTs its own copy of a Claim without `meta` must not make a paid
/// claim look unsent): `keep_server_owned` puts the stored version's values back.
pub const SERVER_TAG_SYSTEMS: &[&str] = &[CLAIM_STATE];

/// The tag system of a Claim's X12 state (submitted, paid, ...: R4 Claim.status has none).
pub const CLAIM_STATE: &str = "urn:x12:claim-state";

/// Extensions only the server sets: the pointer from a Claim to its submitted 837P.
pub const SERVER_EXTENSIONS: &[&str] = &[SUBMISSION_EXTENSION];

/// The extension that points a submitted Claim at its stored 837P.
pub const SUBMISSION_EXTENSION: &str = "urn:x12:submission";

/// Sets the server's tag of `system` to `code`, keeping the resource's other tags (the
/// server's own writes: see `keep_server_owned` for clients').
pub fn set_server_tag(resource: &mut Value, system: &str, code: &str) {
    let tag = serde_json::json!({"system": system, "code": code});
    replace_owned(resource, &["meta", "tag"], "system", &[system], vec![tag]);
}

/// Sets the server's extension `url` to `extension`, keeping the resource's others.
pub fn set_server_extension(resource: &mut Value, url: &str, extension: Value) {
    replace_owned(resource, &["extension"], "url", &[url], vec![extension]);
}

/// The code of the resource's tag of `system`, if any.
pub fn tag_code<'v>(resource: &'v Value, system: &str) -> Option<&'v str> {
    resource["meta"]["tag"]
        .as_array()?
        .iter()
        .find(|t| t["system"] == system)
        .and_then(|t| t["code"].as_str())
}

/// The code system of our Communication kinds: `secure-message`, a message of secure
/// messaging between a patient and their care team (`workflows::messaging::secure`).
pub const COMMUNICATION_KIND: &str = "urn:fhir-server:CodeSystem/communication-kind";
/// The kind of a secure message.
pub const SECURE_MESSAGE: &str = "secure-message";

/// Whether `resource` is a secure message: a Communication of category
/// [`COMMUNICATION_KIND`] `secure-message`.
pub fn is_secure_message(resource: &Value) -> bool {
    resource["resourceType"] == "Communication"
        && resource["category"].as_array().is_some_and(|categories| {
            categories.iter().any(|category| {
                category["coding"].as_array().is_some_and(|codings| {
                    codings
                        .iter()
                        .any(|c| c["system"] == COMMUNICATION_KIND && c["code"] == SECURE_MESSAGE)
                })
            })
        })
}

/// On an Appointment cancelled at the confirmation deadline (the policy's `release`):
/// when; the store then queues the offer of new times (`workflows::messaging::reoffer`).
pub const RELEASED_URL: &str = "urn:fhir-server:StructureDefinition/released-unconfirmed";

/// Identifier systems that a client's update keeps when it leaves them out: the patient
/// control number a `$submit` derived (`urn:x12:clm01`), which the 835 answering the
/// claim is matched by. A client that sends its own replaces it.
pub const STICKY_IDENTIFIER_SYSTEMS: &[&str] = &["urn:x12:clm01"];

/// Whether the server keeps state of its own in resources of this type, so that a
/// client's update must read the stored version to carry that state over.
pub fn has_server_owned(resource_type: &str) -> bool {
    resource_type == "Claim"
}

/// Replaces the server-owned tags and extensions of `resource` (a client's write) with
/// those of `previous` (the stored version; `None` for a new resource, so a client's own
/// values are dropped), and keeps `previous`'s sticky identifiers when `resource` has none
/// of their systems. Whether anything changed (the caller's index rows are then stale).
pub fn keep_server_owned(resource: &mut Value, previous: Option<&Value>) -> bool {
    let tag = ["meta", "tag"];
    let extension = ["extension"];
    let before = (
        server_owned(Some(resource), &tag, "system", SERVER_TAG_SYSTEMS),
        server_owned(Some(resource), &extension, "url", SERVER_EXTENSIONS),
    );
    let kept = (
        server_owned(previous, &tag, "system", SERVER_TAG_SYSTEMS),
        server_owned(previous, &extension, "url", SERVER_EXTENSIONS),
    );
    let identifier = ["identifier"];
    let sticky = STICKY_IDENTIFIER_SYSTEMS;
    let left_out = server_owned(Some(resource), &identifier, "system", sticky).is_empty()
        && !server_owned(previous, &identifier, "system", sticky).is_empty();
    if left_out {
        let carried = server_owned(previous, &identifier, "system", sticky);
        replace_owned(resource, &identifier, "system", sticky, carried);
    }
    if before == kept {
        return left_out;
    }
    replace_owned(resource, &tag, "system", SERVER_TAG_SYSTEMS, kept.0);
    replace_owned(resource, &extension, "url", SERVER_EXTENSIONS, kept.1);
    true
}

/// The server-owned items (`key` in `owned`) of the array at `path` in `resource`.
fn server_owned(resource: Option<&Value>, path: &[&str], key: &str, owned: &[&str]) -> Vec<Value> {
    let mut value = resource;
    for step in path {
        value = value.and_then(|v| v.get(step));
    }
    value
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|item| item[key].as_str().is_some_and(|k| owned.contains(&k)))
        .cloned()
        .collect()
}

/// Drops the items of the array at `path` whose `key` is in `owned`, then appends `kept`;
/// an array left empty is removed (FHIR has no empty arrays), and so is an empty `meta`.
fn replace_owned(resource: &mut Value, path: &[&str], key: &str, owned: &[&str], kept: Vec<Value>) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut object = resource.as_object_mut();
    for step in parents {
        if object.as_ref().is_some_and(|o| !o.contains_key(*step)) && kept.is_empty() {
            return;
        }
        object = object.and_then(|o| {
            o.entry(step.to_string())
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
        });
    }
    let Some(object) = object else {
        return;
    };
    let mut items: Vec<Value> = match object.shift_remove(*last) {
        Some(Value::Array(items)) => items,
        Some(other) => vec![other],
        None => Vec::new(),
    };
    items.retain(|item| !item[key].as_str().is_some_and(|k| owned.contains(&k)));
    items.extend(kept);
    if !items.is_empty() {
        object.insert(last.to_string(), Value::Array(items));
    }
    if let [parent] = parents
        && resource[parent].as_object().is_some_and(Map::is_empty)
        && let Some(top) = resource.as_object_mut()
    {
        top.shift_remove(*parent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stamp_sets_id_and_meta_first_and_keeps_client_meta() {
        let mut patient = json!({"gender": "male", "resourceType": "Patient", "id": "x",
            "meta": {"versionId": "9", "tag": [{"code": "t"}]}});
        let body = stamp(&mut patient, "abc", 2, 1_700_000_000_123_456);
        let text = String::from_utf8(body).unwrap();
        assert!(text.starts_with(
            r#"{"resourceType":"Patient","id":"abc","meta":{"versionId":"2","lastUpdated":"2023-11-14T22:13:20.123Z","tag":"#
        ));
    }

    #[test]
    fn new_ids_are_valid_ids() {
        assert!(crate::ids::is_valid_id(&new_id()));
    }

    #[test]
    fn instants_round_trip() {
        let micros = parse_instant("2023-11-14T22:13:20.123Z").unwrap();
        assert_eq!(format_instant(micros), "2023-11-14T22:13:20.123Z");
        assert_eq!(
            parse_instant("2023-11-14T23:13:20+01:00"),
            Some(1_700_000_000_000_000)
        );
        assert!(parse_instant("2023-11-14").is_none());
    }

    #[test]
    fn server_owned_tags_and_extensions_are_carried_over_and_client_values_dropped() {
        let stored = json!({"resourceType": "Claim", "meta": {"tag": [
            {"system": "urn:x12:claim-state", "code": "paid"}, {"system": "s", "code": "a"}]},
            "extension": [{"url": "urn:x12:submission", "valueReference": {"reference": "Binary/1"}}]});
        let mut sync = json!({"resourceType": "Claim", "status": "active"});
        keep_server_owned(&mut sync, Some(&stored));
        assert_eq!(
            sync["meta"]["tag"],
            json!([{"system": "urn:x12:claim-state", "code": "paid"}])
        );
        assert_eq!(sync["extension"][0]["url"], "urn:x12:submission");

        let mut forged = json!({"resourceType": "Claim", "meta": {"tag": [
            {"system": "urn:x12:claim-state", "code": "submitted"}, {"system": "s", "code": "b"}]}});
        keep_server_owned(&mut forged, Some(&stored));
        assert_eq!(
            forged["meta"]["tag"],
            json!([{"system": "s", "code": "b"},
            {"system": "urn:x12:claim-state", "code": "paid"}])
        );

        let mut new = json!({"resourceType": "Claim", "meta": {"tag": [
            {"system": "urn:x12:claim-state", "code": "paid"}]}});
        keep_server_owned(&mut new, None);
        assert_eq!(new, json!({"resourceType": "Claim"}));
        let mut plain = json!({"resourceType": "Patient"});
        keep_server_owned(&mut plain, None);
        assert_eq!(plain, json!({"resourceType": "Patient"}));
    }
}
