//! End-to-end tests of the FHIR R4 REST interactions (https://hl7.org/fhir/R4/http.html),
//! over HTTP against the real binary, each on SQLite and on PostgreSQL: create, read, vread,
//! update, delete, history, If-Match, conditional read / create / update / delete / patch,
//! `Prefer: return`, JSON Patch, search by `_id` and `identifier`, and the capability
//! statement. Every expected result is computed from the data the test itself loaded.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure
#![allow(clippy::too_many_lines)] // a test reads as one story

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use common::{JSON, Reply, Server, all_pages, entries, get, id_of, link, patient, send, set};
use reqwest::RequestBuilder;
use serde_json::{Value, json};

const MRN: &str = "http://example.org/mrn";
const JSON_PATCH: &str = "application/json-patch+json";
const FORM: &str = "application/x-www-form-urlencoded";

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Percent-encodes a query parameter value.
fn enc(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

fn post(server: &Server, path: &str, body: &Value) -> RequestBuilder {
    server
        .client
        .post(server.url(path))
        .header("content-type", JSON)
        .body(body.to_string())
}

fn put(server: &Server, path: &str, body: &Value) -> RequestBuilder {
    server
        .client
        .put(server.url(path))
        .header("content-type", JSON)
        .body(body.to_string())
}

fn patch(server: &Server, path: &str, operations: &Value) -> RequestBuilder {
    server
        .client
        .patch(server.url(path))
        .header("content-type", JSON_PATCH)
        .body(operations.to_string())
}

fn delete(server: &Server, path: &str) -> RequestBuilder {
    server.client.delete(server.url(path))
}

fn version_of(resource: &Value) -> String {
    resource["meta"]["versionId"]
        .as_str()
        .expect("meta.versionId")
        .to_owned()
}

/// A Patient with one identifier of `system` (none when `None`) and `value`.
fn patient_with(system: Option<&str>, value: &str) -> Value {
    let identifier = match system {
        Some(system) => json!({"system": system, "value": value}),
        None => json!({"value": value}),
    };
    json!({"resourceType": "Patient", "identifier": [identifier], "gender": "male"})
}

/// A minimal valid Observation.
fn observation() -> Value {
    json!({"resourceType": "Observation", "status": "final", "code": {"text": "weight"}})
}

/// Creates a Patient and returns it as stored.
async fn create_patient(server: &Server, family: &str, mrn: &str) -> Value {
    server.create(&server.base, &patient(family, mrn)).await
}

/// Replaces a stored resource with a new family name; returns the new version (asserting 200).
async fn rename(server: &Server, current: &Value, family: &str) -> Value {
    let mut next = current.clone();
    next["name"] = json!([{"family": family}]);
    let path = format!("Patient/{}", id_of(current));
    send(put(server, &path, &next)).await.expect(200).body
}

fn self_link(bundle: &Value) -> String {
    link(bundle, "self").expect("a self link")
}

/// Follows a Bundle and all its `next` links; returns every entry in order, checking
/// each page's `total` is `expected_total` (when given) and no page is larger than `page_size`.
async fn paged_entries(
    server: &Server,
    first: Reply,
    page_size: usize,
    expected_total: Option<i64>,
) -> Vec<Value> {
    let mut all = Vec::new();
    for page in all_pages(server, first.expect(200).body).await {
        if let Some(total) = expected_total {
            assert_eq!(page["total"].as_i64(), Some(total), "total on every page");
        }
        let found = entries(&page);
        assert!(
            found.len() <= page_size,
            "a page has at most {page_size} entries"
        );
        all.extend(found);
    }
    all
}

/// Ids of every Patient a search finds, following `next` links.
async fn search_ids(server: &Server, query: &str) -> Vec<String> {
    let first = get(server, &format!("Patient?{query}")).await;
    paged_entries(server, first, 1000, None)
        .await
        .iter()
        .map(|e| id_of(&e["resource"]))
        .collect()
}

/// How many Patients a search matches (`_summary=count`).
async fn count(server: &Server, query: &str) -> i64 {
    let reply = get(server, &format!("Patient?{query}&_summary=count"))
        .await
        .expect(200);
    reply.body["total"].as_i64().expect("a total")
}

/// `identifier=http://example.org/mrn|{mrn}`, encoded.
fn by_mrn(mrn: &str) -> String {
    format!("identifier={}", enc(&format!("{MRN}|{mrn}")))
}

/// The version numbers of history entries, in order.
fn versions(entries: &[Value]) -> Vec<i64> {
    entries
        .iter()
        .map(|e| {
            let etag = e["response"]["etag"].as_str().expect("an etag");
            etag.trim_start_matches("W/\"")
                .trim_end_matches('"')
                .parse()
                .expect("a numeric etag")
        })
        .collect()
}

/// Seconds since the epoch of a FHIR instant.
fn instant_seconds(instant: &str) -> i64 {
    time::OffsetDateTime::parse(instant, &time::format_description::well_known::Rfc3339)
        .expect("an instant")
        .unix_timestamp()
}

/// Seconds since the epoch of an HTTP date.
fn http_date_seconds(date: &str) -> i64 {
    let time = httpdate::parse_http_date(date).expect("an HTTP date");
    time.duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

/// Checks the ETag and Last-Modified of a reply against the resource's meta.
fn assert_version_headers(reply: &Reply, resource: &Value) {
    assert_eq!(
        reply.header("etag"),
        format!("W/\"{}\"", version_of(resource))
    );
    let last_updated = resource["meta"]["lastUpdated"]
        .as_str()
        .expect("meta.lastUpdated");
    assert_eq!(
        http_date_seconds(reply.header("last-modified")),
        instant_seconds(last_updated)
    );
}

// ---------------------------------------------------------------------------------------
// create
// ---------------------------------------------------------------------------------------

async fn create_answers_201_with_location_etag_and_meta(server: Server) {
    let reply = send(post(&server, "Patient", &patient("Create", "c-1")))
        .await
        .expect(201);
    let id = id_of(&reply.body);
    assert!(!id.is_empty());
    assert_eq!(
        reply.header("location"),
        format!("{}/Patient/{id}/_history/1", server.base)
    );
    assert_eq!(version_of(&reply.body), "1");
    assert!(reply.body["meta"]["lastUpdated"].is_string());
    assert_version_headers(&reply, &reply.body);
    assert_eq!(reply.body["name"][0]["family"], "Create");
}
both!(create_answers_201_with_location_etag_and_meta);

async fn create_replaces_a_client_id(server: Server) {
    let mut body = patient("Client", "c-2");
    body["id"] = json!("chosen-by-client");
    body["meta"] = json!({"versionId": "7"});
    let created = send(post(&server, "Patient", &body)).await.expect(201).body;
    assert_ne!(id_of(&created), "chosen-by-client");
    assert_eq!(version_of(&created), "1");
    get(&server, "Patient/chosen-by-client").await.expect(404);
    get(&server, &format!("Patient/{}", id_of(&created)))
        .await
        .expect(200);
}
both!(create_replaces_a_client_id);

// ---------------------------------------------------------------------------------------
// read
// ---------------------------------------------------------------------------------------

async fn read_returns_the_resource_with_etag_and_last_modified(server: Server) {
    let created = create_patient(&server, "Read", "r-1").await;
    let reply = get(&server, &format!("Patient/{}", id_of(&created)))
        .await
        .expect(200);
    assert_eq!(reply.body, created);
    assert_version_headers(&reply, &created);
}
both!(read_returns_the_resource_with_etag_and_last_modified);

async fn read_of_an_unknown_id_is_404(server: Server) {
    let reply = get(&server, "Patient/does-not-exist").await.expect(404);
    reply.expect_outcome();
}
both!(read_of_an_unknown_id_is_404);

async fn read_of_an_invalid_id_is_400(server: Server) {
    get(&server, "Patient/a%24b")
        .await
        .expect(400)
        .expect_outcome();
    get(&server, &format!("Patient/{}", "a".repeat(65)))
        .await
        .expect(400)
        .expect_outcome();
    // 64 characters is still a valid (unknown) id.
    get(&server, &format!("Patient/{}", "a".repeat(64)))
        .await
        .expect(404);
}
both!(read_of_an_invalid_id_is_400);

async fn unknown_resource_type_is_404(server: Server) {
    get(&server, "Foo/1").await.expect(404).expect_outcome();
    get(&server, "Foo").await.expect(404).expect_outcome();
}
both!(unknown_resource_type_is_404);

// ---------------------------------------------------------------------------------------
// vread
// ---------------------------------------------------------------------------------------

async fn vread_returns_each_version(server: Server) {
    let v1 = create_patient(&server, "First", "v-1").await;
    let v2 = rename(&server, &v1, "Second").await;
    let id = id_of(&v1);
    for expected in [&v1, &v2] {
        let path = format!("Patient/{id}/_history/{}", version_of(expected));
        let reply = get(&server, &path).await.expect(200);
        assert_eq!(&reply.body, expected);
        assert_version_headers(&reply, expected);
    }
}
both!(vread_returns_each_version);

async fn vread_of_a_missing_version_is_404(server: Server) {
    let id = id_of(&create_patient(&server, "Once", "v-2").await);
    get(&server, &format!("Patient/{id}/_history/2"))
        .await
        .expect(404)
        .expect_outcome();
    get(&server, &format!("Patient/{id}/_history/abc"))
        .await
        .expect(404)
        .expect_outcome();
    get(&server, "Patient/never/_history/1")
        .await
        .expect(404)
        .expect_outcome();
}
both!(vread_of_a_missing_version_is_404);

// ---------------------------------------------------------------------------------------
// update
// ---------------------------------------------------------------------------------------

async fn update_makes_version_2(server: Server) {
    let created = create_patient(&server, "Before", "u-1").await;
    let id = id_of(&created);
    let mut body = created.clone();
    body["name"] = json!([{"family": "After"}]);
    let reply = send(put(&server, &format!("Patient/{id}"), &body))
        .await
        .expect(200);
    assert_eq!(id_of(&reply.body), id);
    assert_eq!(version_of(&reply.body), "2");
    assert_eq!(reply.header("etag"), "W/\"2\"");
    assert_eq!(
        reply.header("location"),
        format!("{}/Patient/{id}/_history/2", server.base)
    );
    let current = get(&server, &format!("Patient/{id}")).await.expect(200);
    assert_eq!(current.body["name"][0]["family"], "After");
    assert_eq!(current.body, reply.body);
}
both!(update_makes_version_2);

async fn update_with_a_new_client_id_creates(server: Server) {
    let mut body = patient("Chosen", "u-2");
    body["id"] = json!("client-chosen-1");
    let reply = send(put(&server, "Patient/client-chosen-1", &body))
        .await
        .expect(201);
    assert_eq!(id_of(&reply.body), "client-chosen-1");
    assert_eq!(version_of(&reply.body), "1");
    assert_eq!(
        reply.header("location"),
        format!("{}/Patient/client-chosen-1/_history/1", server.base)
    );
    let current = get(&server, "Patient/client-chosen-1").await.expect(200);
    assert_eq!(current.body["name"][0]["family"], "Chosen");
}
both!(update_with_a_new_client_id_creates);

async fn update_needs_the_body_id_to_match_the_url(server: Server) {
    let created = create_patient(&server, "Ids", "u-3").await;
    let id = id_of(&created);
    let mut other = created.clone();
    other["id"] = json!("someone-else");
    send(put(&server, &format!("Patient/{id}"), &other))
        .await
        .expect(400)
        .expect_outcome();
    let mut missing = created.clone();
    missing.as_object_mut().unwrap().remove("id");
    send(put(&server, &format!("Patient/{id}"), &missing))
        .await
        .expect(400)
        .expect_outcome();
    // Nothing was written.
    assert_eq!(
        get(&server, &format!("Patient/{id}"))
            .await
            .expect(200)
            .body,
        created
    );
    get(&server, "Patient/someone-else").await.expect(404);
}
both!(update_needs_the_body_id_to_match_the_url);

async fn update_with_another_resource_type_is_400(server: Server) {
    let mut body = observation();
    body["id"] = json!("x");
    send(put(&server, "Patient/x", &body))
        .await
        .expect(400)
        .expect_outcome();
    get(&server, "Patient/x").await.expect(404);
    get(&server, "Observation/x").await.expect(404);
}
both!(update_with_another_resource_type_is_400);

// ---------------------------------------------------------------------------------------
// delete
// ---------------------------------------------------------------------------------------

async fn delete_makes_reads_gone_but_keeps_versions(server: Server) {
    let created = create_patient(&server, "Gone", "d-1").await;
    let id = id_of(&created);
    let reply = send(delete(&server, &format!("Patient/{id}")))
        .await
        .expect(204);
    assert!(reply.text.is_empty());
    get(&server, &format!("Patient/{id}"))
        .await
        .expect(410)
        .expect_outcome();
    let old = get(&server, &format!("Patient/{id}/_history/1"))
        .await
        .expect(200);
    assert_eq!(old.body, created);
    // The delete itself is version 2, which has no content to read.
    get(&server, &format!("Patient/{id}/_history/2"))
        .await
        .expect(410)
        .expect_outcome();
}
both!(delete_makes_reads_gone_but_keeps_versions);

async fn delete_is_idempotent(server: Server) {
    let id = id_of(&create_patient(&server, "Twice", "d-2").await);
    send(delete(&server, &format!("Patient/{id}")))
        .await
        .expect(204);
    send(delete(&server, &format!("Patient/{id}")))
        .await
        .expect(204);
    send(delete(&server, "Patient/never-existed"))
        .await
        .expect(204);
    get(&server, "Patient/never-existed").await.expect(404);
    // The second delete wrote no version: the history holds the create and one delete.
    let history = get(&server, &format!("Patient/{id}/_history"))
        .await
        .expect(200);
    assert_eq!(history.body["total"], 2);
}
both!(delete_is_idempotent);

async fn update_after_delete_brings_it_back(server: Server) {
    let created = create_patient(&server, "Back", "d-3").await;
    let id = id_of(&created);
    send(delete(&server, &format!("Patient/{id}")))
        .await
        .expect(204);
    let history = get(&server, &format!("Patient/{id}/_history"))
        .await
        .expect(200);
    let delete_version = versions(&entries(&history.body))[0];
    let reply = send(put(&server, &format!("Patient/{id}"), &created))
        .await
        .expect(201);
    let revived = (delete_version + 1).to_string();
    assert_eq!(version_of(&reply.body), revived);
    assert_eq!(reply.header("etag"), format!("W/\"{revived}\""));
    let current = get(&server, &format!("Patient/{id}")).await.expect(200);
    assert_eq!(version_of(&current.body), revived);
    assert_eq!(current.body["name"][0]["family"], "Back");
}
both!(update_after_delete_brings_it_back);

async fn history_shows_the_delete(server: Server) {
    let id = id_of(&create_patient(&server, "Deleted", "d-4").await);
    send(delete(&server, &format!("Patient/{id}")))
        .await
        .expect(204);
    let history = get(&server, &format!("Patient/{id}/_history"))
        .await
        .expect(200)
        .body;
    let found = entries(&history);
    assert_eq!(versions(&found), vec![2, 1]);
    let deleted = &found[0];
    assert_eq!(deleted["request"]["method"], "DELETE");
    assert_eq!(deleted["request"]["url"], format!("Patient/{id}"));
    assert!(
        deleted.get("resource").is_none(),
        "a delete entry has no resource: {deleted}"
    );
    assert_eq!(found[1]["request"]["method"], "POST");
    assert_eq!(id_of(&found[1]["resource"]), id);
}
both!(history_shows_the_delete);

// ---------------------------------------------------------------------------------------
// history
// ---------------------------------------------------------------------------------------

/// Creates a Patient and updates it until it has `count` versions; returns every version.
async fn patient_with_versions(server: &Server, mrn: &str, count: usize) -> Vec<Value> {
    let mut all = vec![create_patient(server, "V1", mrn).await];
    for n in 2..=count {
        let next = rename(server, all.last().unwrap(), &format!("V{n}")).await;
        all.push(next);
    }
    all
}

async fn instance_history_is_newest_first(server: Server) {
    let all = patient_with_versions(&server, "h-1", 4).await;
    let id = id_of(&all[0]);
    let history = get(&server, &format!("Patient/{id}/_history"))
        .await
        .expect(200)
        .body;
    assert_eq!(history["resourceType"], "Bundle");
    assert_eq!(history["type"], "history");
    assert_eq!(history["total"], 4);
    let found = entries(&history);
    assert_eq!(versions(&found), vec![4, 3, 2, 1]);
    for (entry, stored) in found.iter().zip(all.iter().rev()) {
        assert_eq!(&entry["resource"], stored);
    }
}
both!(instance_history_is_newest_first);

async fn history_entries_carry_request_and_response(server: Server) {
    let all = patient_with_versions(&server, "h-2", 2).await;
    let id = id_of(&all[0]);
    let history = get(&server, &format!("Patient/{id}/_history"))
        .await
        .expect(200)
        .body;
    let found = entries(&history);
    assert_eq!(found.len(), 2);
    for (entry, stored) in found.iter().zip(all.iter().rev()) {
        assert_eq!(entry["fullUrl"], format!("{}/Patient/{id}", server.base));
        assert_eq!(
            entry["response"]["etag"],
            format!("W/\"{}\"", version_of(stored))
        );
        assert_eq!(
            entry["response"]["lastModified"],
            stored["meta"]["lastUpdated"]
        );
    }
    let (update, create) = (&found[0], &found[1]);
    assert_eq!(update["request"]["method"], "PUT");
    assert_eq!(update["request"]["url"], format!("Patient/{id}"));
    assert!(
        update["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("200")
    );
    assert_eq!(create["request"]["method"], "POST");
    assert_eq!(create["request"]["url"], "Patient");
    assert!(
        create["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("201")
    );
}
both!(history_entries_carry_request_and_response);

async fn type_and_system_history(server: Server) {
    let first = patient_with_versions(&server, "h-3", 2).await;
    let second = patient_with_versions(&server, "h-4", 3).await;
    let obs = server.create(&server.base, &observation()).await;

    let patients = get(&server, "Patient/_history").await.expect(200).body;
    assert_eq!(patients["type"], "history");
    assert_eq!(patients["total"], 5);
    let mut seen: Vec<(String, i64)> = entries(&patients)
        .iter()
        .map(|e| (id_of(&e["resource"]), versions(std::slice::from_ref(e))[0]))
        .collect();
    assert!(
        entries(&patients)
            .iter()
            .all(|e| e["resource"]["resourceType"] == "Patient")
    );
    seen.sort();
    let mut expected: Vec<(String, i64)> = first
        .iter()
        .chain(&second)
        .map(|r| (id_of(r), version_of(r).parse().unwrap()))
        .collect();
    expected.sort();
    assert_eq!(seen, expected);

    let system = get(&server, "_history").await.expect(200).body;
    assert_eq!(system["total"], 6);
    let system_entries = entries(&system);
    assert_eq!(system_entries.len(), 6);
    // Newest first: the Observation was written last.
    assert_eq!(system_entries[0]["resource"], obs);
    assert_eq!(
        system_entries[0]["fullUrl"],
        format!("{}/Observation/{}", server.base, id_of(&obs))
    );
}
both!(type_and_system_history);

async fn history_since_filters_older_versions(server: Server) {
    let mut all = vec![create_patient(&server, "V1", "h-5").await];
    for n in 2..=5 {
        // Space the versions apart so that `_since` has something to leave out.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let next = rename(&server, all.last().unwrap(), &format!("V{n}")).await;
        all.push(next);
    }
    let id = id_of(&all[0]);
    let since = all[2]["meta"]["lastUpdated"].as_str().unwrap().to_owned();
    let expected: Vec<i64> = all
        .iter()
        .rev()
        .filter(|v| v["meta"]["lastUpdated"].as_str().unwrap() >= since.as_str())
        .map(|v| version_of(v).parse().unwrap())
        .collect();
    assert!(expected.len() < all.len() && expected.contains(&3));
    let history = get(
        &server,
        &format!("Patient/{id}/_history?_since={}", enc(&since)),
    )
    .await
    .expect(200)
    .body;
    assert_eq!(versions(&entries(&history)), expected);
    assert_eq!(history["total"].as_i64(), Some(expected.len() as i64));
    let typed = get(&server, &format!("Patient/_history?_since={}", enc(&since)))
        .await
        .expect(200)
        .body;
    assert_eq!(versions(&entries(&typed)), expected);
}
both!(history_since_filters_older_versions);

async fn instance_history_pages_see_every_version_once(server: Server) {
    let all = patient_with_versions(&server, "h-6", 7).await;
    let id = id_of(&all[0]);
    let first = get(&server, &format!("Patient/{id}/_history?_count=2")).await;
    let found = paged_entries(&server, first, 2, Some(7)).await;
    assert_eq!(versions(&found), vec![7, 6, 5, 4, 3, 2, 1]);
}
both!(instance_history_pages_see_every_version_once);

async fn type_history_pages_see_every_version_once(server: Server) {
    let mut expected = Vec::new();
    for n in 0..3 {
        for version in patient_with_versions(&server, &format!("h-7-{n}"), 2).await {
            expected.push((
                id_of(&version),
                version_of(&version).parse::<i64>().unwrap(),
            ));
        }
    }
    let first = get(&server, "Patient/_history?_count=2").await;
    let found = paged_entries(&server, first, 2, Some(6)).await;
    let seen: Vec<(String, i64)> = found
        .iter()
        .map(|e| (id_of(&e["resource"]), versions(std::slice::from_ref(e))[0]))
        .collect();
    // Newest first: exactly the writes, in reverse order of writing.
    expected.reverse();
    assert_eq!(seen, expected);
}
both!(type_history_pages_see_every_version_once);

// ---------------------------------------------------------------------------------------
// If-Match
// ---------------------------------------------------------------------------------------

async fn if_match_guards_updates(server: Server) {
    let created = create_patient(&server, "Guarded", "m-1").await;
    let path = format!("Patient/{}", id_of(&created));
    let reply = send(put(&server, &path, &created).header("if-match", "W/\"1\""))
        .await
        .expect(200);
    assert_eq!(version_of(&reply.body), "2");
    send(put(&server, &path, &created).header("if-match", "W/\"1\""))
        .await
        .expect(412)
        .expect_outcome();
    assert_eq!(version_of(&get(&server, &path).await.expect(200).body), "2");
}
both!(if_match_guards_updates);

async fn malformed_if_match_is_400(server: Server) {
    let created = create_patient(&server, "Malformed", "m-2").await;
    let path = format!("Patient/{}", id_of(&created));
    send(put(&server, &path, &created).header("if-match", "W/\"x\""))
        .await
        .expect(400)
        .expect_outcome();
    assert_eq!(version_of(&get(&server, &path).await.expect(200).body), "1");
}
both!(malformed_if_match_is_400);

async fn concurrent_if_match_updates_let_exactly_one_win(server: Server) {
    let created = create_patient(&server, "Race", "m-3").await;
    let path = server.url(&format!("Patient/{}", id_of(&created)));
    let tasks: Vec<_> = (0..24)
        .map(|n| {
            let client = server.client.clone();
            let path = path.clone();
            let mut body = created.clone();
            body["name"] = json!([{"family": format!("Racer{n}")}]);
            tokio::spawn(async move {
                let request = client
                    .put(path)
                    .header("content-type", JSON)
                    .header("if-match", "W/\"1\"")
                    .body(body.to_string());
                send(request).await.status
            })
        })
        .collect();
    let statuses: Vec<u16> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();
    let won = statuses.iter().filter(|s| **s == 200).count();
    let lost = statuses.iter().filter(|s| **s == 412).count();
    assert_eq!((won, lost), (1, 23), "statuses: {statuses:?}");
    let current = get(&server, &format!("Patient/{}", id_of(&created)))
        .await
        .expect(200);
    assert_eq!(version_of(&current.body), "2");
}
both!(concurrent_if_match_updates_let_exactly_one_win);

// ---------------------------------------------------------------------------------------
// Conditional read
// ---------------------------------------------------------------------------------------

async fn if_none_match_answers_304_for_the_current_version(server: Server) {
    let v2 = rename(
        &server,
        &create_patient(&server, "Cached", "cr-1").await,
        "Cached2",
    )
    .await;
    let path = format!("Patient/{}", id_of(&v2));
    let reply = send(
        server
            .client
            .get(server.url(&path))
            .header("if-none-match", "W/\"2\""),
    )
    .await
    .expect(304);
    assert!(reply.text.is_empty());
    let reply = send(
        server
            .client
            .get(server.url(&path))
            .header("if-none-match", "W/\"1\""),
    )
    .await
    .expect(200);
    assert_eq!(reply.body, v2);
}
both!(if_none_match_answers_304_for_the_current_version);

async fn if_modified_since_answers_304_when_unchanged(server: Server) {
    let created = create_patient(&server, "Dated", "cr-2").await;
    let path = format!("Patient/{}", id_of(&created));
    let future = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(86_400));
    send(
        server
            .client
            .get(server.url(&path))
            .header("if-modified-since", future),
    )
    .await
    .expect(304);
    let past = "Sat, 01 Jan 2000 00:00:00 GMT";
    let reply = send(
        server
            .client
            .get(server.url(&path))
            .header("if-modified-since", past),
    )
    .await
    .expect(200);
    assert_eq!(reply.body, created);
}
both!(if_modified_since_answers_304_when_unchanged);

// ---------------------------------------------------------------------------------------
// Conditional create
// ---------------------------------------------------------------------------------------

async fn conditional_create_by_identifier(server: Server) {
    let criteria = format!("identifier={MRN}|123");
    let conditional = || {
        post(&server, "Patient", &patient("Cond", "123")).header("if-none-exist", criteria.clone())
    };

    let first = send(conditional()).await.expect(201).body;
    assert_eq!(count(&server, &by_mrn("123")).await, 1);

    let again = send(conditional()).await.expect(200);
    assert_eq!(again.body, first);
    assert_eq!(count(&server, &by_mrn("123")).await, 1);
    assert_eq!(count(&server, "").await, 1);

    create_patient(&server, "Duplicate", "123").await;
    send(conditional()).await.expect(412).expect_outcome();
    assert_eq!(count(&server, &by_mrn("123")).await, 2);
}
both!(conditional_create_by_identifier);

async fn conditional_create_by_id(server: Server) {
    let existing = create_patient(&server, "Known", "cc-1").await;
    let id = id_of(&existing);
    let reply = send(
        post(&server, "Patient", &patient("Other", "cc-2"))
            .header("if-none-exist", format!("_id={id}")),
    )
    .await
    .expect(200);
    assert_eq!(reply.body, existing);
    let reply = send(
        post(&server, "Patient", &patient("Other", "cc-2")).header("if-none-exist", "_id=nobody"),
    )
    .await
    .expect(201);
    assert_ne!(id_of(&reply.body), id);
    assert_eq!(count(&server, "").await, 2);
}
both!(conditional_create_by_id);

async fn conditional_create_with_only_unknown_criteria_is_400(server: Server) {
    send(post(&server, "Patient", &patient("Vague", "cc-3")).header("if-none-exist", "foo=bar"))
        .await
        .expect(400)
        .expect_outcome();
    assert_eq!(count(&server, "").await, 0);
}
both!(conditional_create_with_only_unknown_criteria_is_400);

// ---------------------------------------------------------------------------------------
// Conditional update and delete
// ---------------------------------------------------------------------------------------

async fn conditional_update_creates_updates_or_refuses(server: Server) {
    let path = format!("Patient?{}", by_mrn("cu-1"));
    let created = send(put(&server, &path, &patient("New", "cu-1")))
        .await
        .expect(201)
        .body;
    assert_eq!(version_of(&created), "1");
    assert_eq!(
        search_ids(&server, &by_mrn("cu-1")).await,
        vec![id_of(&created)]
    );

    let updated = send(put(&server, &path, &patient("Changed", "cu-1")))
        .await
        .expect(200)
        .body;
    assert_eq!(id_of(&updated), id_of(&created));
    assert_eq!(version_of(&updated), "2");
    assert_eq!(updated["name"][0]["family"], "Changed");

    let other = create_patient(&server, "Second", "cu-1").await;
    send(put(&server, &path, &patient("Ambiguous", "cu-1")))
        .await
        .expect(412)
        .expect_outcome();
    assert_eq!(
        get(&server, &format!("Patient/{}", id_of(&created)))
            .await
            .expect(200)
            .body,
        updated
    );
    assert_eq!(
        get(&server, &format!("Patient/{}", id_of(&other)))
            .await
            .expect(200)
            .body,
        other
    );
}
both!(conditional_update_creates_updates_or_refuses);

async fn conditional_delete_removes_one_match(server: Server) {
    let created = create_patient(&server, "One", "cd-1").await;
    send(delete(&server, &format!("Patient?{}", by_mrn("cd-1"))))
        .await
        .expect(204);
    assert_eq!(count(&server, &by_mrn("cd-1")).await, 0);
    get(&server, &format!("Patient/{}", id_of(&created)))
        .await
        .expect(410);
}
both!(conditional_delete_removes_one_match);

async fn conditional_delete_refuses_many_matches(server: Server) {
    let a = create_patient(&server, "A", "cd-2").await;
    let b = create_patient(&server, "B", "cd-2").await;
    send(delete(&server, &format!("Patient?{}", by_mrn("cd-2"))))
        .await
        .expect(412)
        .expect_outcome();
    assert_eq!(
        set(&search_ids(&server, &by_mrn("cd-2")).await),
        set(&[id_of(&a), id_of(&b)])
    );
}
both!(conditional_delete_refuses_many_matches);

async fn conditional_delete_without_matches_is_204(server: Server) {
    let kept = create_patient(&server, "Kept", "cd-3").await;
    send(delete(&server, &format!("Patient?{}", by_mrn("nobody"))))
        .await
        .expect(204);
    assert_eq!(search_ids(&server, "").await, vec![id_of(&kept)]);
}
both!(conditional_delete_without_matches_is_204);

// ---------------------------------------------------------------------------------------
// Prefer: return
// ---------------------------------------------------------------------------------------

async fn prefer_return_on_create(server: Server) {
    let body = patient("Prefer", "p-1");
    let minimal = send(post(&server, "Patient", &body).header("prefer", "return=minimal"))
        .await
        .expect(201);
    assert!(minimal.text.is_empty(), "no body: {}", minimal.text);
    let location = minimal.header("location").to_owned();
    assert!(location.starts_with(&format!("{}/Patient/", server.base)));
    assert_eq!(minimal.header("etag"), "W/\"1\"");
    // The resource behind the Location exists.
    let stored = send(server.client.get(&location)).await.expect(200).body;
    assert_eq!(version_of(&stored), "1");

    let full = send(post(&server, "Patient", &body).header("prefer", "return=representation"))
        .await
        .expect(201);
    assert_eq!(full.body["resourceType"], "Patient");
    assert_eq!(
        full.header("location"),
        format!("{}/Patient/{}/_history/1", server.base, id_of(&full.body))
    );

    let outcome = send(post(&server, "Patient", &body).header("prefer", "return=OperationOutcome"))
        .await
        .expect(201);
    outcome.expect_outcome();
    assert!(
        outcome
            .header("location")
            .starts_with(&format!("{}/Patient/", server.base))
    );
}
both!(prefer_return_on_create);

async fn prefer_return_on_update(server: Server) {
    let created = create_patient(&server, "Prefer", "p-2").await;
    let path = format!("Patient/{}", id_of(&created));
    let minimal = send(put(&server, &path, &created).header("prefer", "return=minimal"))
        .await
        .expect(200);
    assert!(minimal.text.is_empty(), "no body: {}", minimal.text);
    assert_eq!(minimal.header("etag"), "W/\"2\"");
    assert_eq!(
        minimal.header("location"),
        format!("{}/{path}/_history/2", server.base)
    );

    let full = send(put(&server, &path, &created).header("prefer", "return=representation"))
        .await
        .expect(200);
    assert_eq!(version_of(&full.body), "3");

    let outcome = send(put(&server, &path, &created).header("prefer", "return=OperationOutcome"))
        .await
        .expect(200);
    outcome.expect_outcome();
    assert_eq!(outcome.header("etag"), "W/\"4\"");
}
both!(prefer_return_on_update);

// ---------------------------------------------------------------------------------------
// JSON Patch
// ---------------------------------------------------------------------------------------

async fn patch_replaces_a_field(server: Server) {
    let created = create_patient(&server, "Patched", "pa-1").await;
    let path = format!("Patient/{}", id_of(&created));
    let operations = json!([{"op": "replace", "path": "/birthDate", "value": "1990-01-01"}]);
    let reply = send(patch(&server, &path, &operations)).await.expect(200);
    assert_eq!(version_of(&reply.body), "2");
    assert_eq!(reply.header("etag"), "W/\"2\"");
    let current = get(&server, &path).await.expect(200).body;
    assert_eq!(current["birthDate"], "1990-01-01");
    assert_eq!(current["name"], created["name"]);
    let history = get(&server, &format!("{path}/_history"))
        .await
        .expect(200)
        .body;
    assert_eq!(entries(&history)[0]["request"]["method"], "PATCH");
}
both!(patch_replaces_a_field);

/// Sends a patch that must fail with `status`, then checks the resource is unchanged.
async fn assert_patch_refused(server: &Server, created: &Value, operations: Value, status: u16) {
    let path = format!("Patient/{}", id_of(created));
    send(patch(server, &path, &operations))
        .await
        .expect(status)
        .expect_outcome();
    assert_eq!(&get(server, &path).await.expect(200).body, created);
}

async fn patch_with_a_failing_test_is_422(server: Server) {
    let created = create_patient(&server, "Tested", "pa-2").await;
    let operations = json!([
        {"op": "test", "path": "/gender", "value": "male"},
        {"op": "replace", "path": "/birthDate", "value": "1990-01-01"}
    ]);
    assert_patch_refused(&server, &created, operations, 422).await;
}
both!(patch_with_a_failing_test_is_422);

async fn patch_making_the_resource_invalid_is_422(server: Server) {
    let created = create_patient(&server, "Robot", "pa-3").await;
    let operations = json!([{"op": "replace", "path": "/gender", "value": "robot"}]);
    assert_patch_refused(&server, &created, operations, 422).await;
}
both!(patch_making_the_resource_invalid_is_422);

async fn patch_removing_the_id_is_422(server: Server) {
    let created = create_patient(&server, "Anonymous", "pa-4").await;
    assert_patch_refused(
        &server,
        &created,
        json!([{"op": "remove", "path": "/id"}]),
        422,
    )
    .await;
    let operations = json!([{"op": "replace", "path": "/id", "value": "other"}]);
    assert_patch_refused(&server, &created, operations, 422).await;
}
both!(patch_removing_the_id_is_422);

async fn patch_with_another_content_type_is_415(server: Server) {
    let created = create_patient(&server, "Typed", "pa-5").await;
    let path = format!("Patient/{}", id_of(&created));
    let operations = json!([{"op": "replace", "path": "/birthDate", "value": "1990-01-01"}]);
    let request = server
        .client
        .patch(server.url(&path))
        .header("content-type", JSON)
        .body(operations.to_string());
    send(request).await.expect(415).expect_outcome();
    assert_eq!(get(&server, &path).await.expect(200).body, created);
}
both!(patch_with_another_content_type_is_415);

async fn patch_with_a_stale_if_match_is_412(server: Server) {
    let created = create_patient(&server, "Stale", "pa-6").await;
    let path = format!("Patient/{}", id_of(&created));
    let operations = json!([{"op": "replace", "path": "/birthDate", "value": "1990-01-01"}]);
    send(patch(&server, &path, &operations).header("if-match", "W/\"5\""))
        .await
        .expect(412)
        .expect_outcome();
    assert_eq!(get(&server, &path).await.expect(200).body, created);
    let reply = send(patch(&server, &path, &operations).header("if-match", "W/\"1\""))
        .await
        .expect(200);
    assert_eq!(version_of(&reply.body), "2");
}
both!(patch_with_a_stale_if_match_is_412);

async fn patch_of_deleted_or_unknown_resources(server: Server) {
    let id = id_of(&create_patient(&server, "Deleted", "pa-7").await);
    send(delete(&server, &format!("Patient/{id}")))
        .await
        .expect(204);
    let operations = json!([{"op": "replace", "path": "/birthDate", "value": "1990-01-01"}]);
    send(patch(&server, &format!("Patient/{id}"), &operations))
        .await
        .expect(410)
        .expect_outcome();
    send(patch(&server, "Patient/unknown", &operations))
        .await
        .expect(404)
        .expect_outcome();
}
both!(patch_of_deleted_or_unknown_resources);

async fn conditional_patch_updates_the_single_match(server: Server) {
    let created = create_patient(&server, "Conditional", "pa-8").await;
    create_patient(&server, "Bystander", "pa-9").await;
    let operations = json!([{"op": "replace", "path": "/birthDate", "value": "2001-02-03"}]);
    let reply = send(patch(
        &server,
        &format!("Patient?{}", by_mrn("pa-8")),
        &operations,
    ))
    .await
    .expect(200);
    assert_eq!(id_of(&reply.body), id_of(&created));
    assert_eq!(version_of(&reply.body), "2");
    let current = get(&server, &format!("Patient/{}", id_of(&created)))
        .await
        .expect(200)
        .body;
    assert_eq!(current["birthDate"], "2001-02-03");
}
both!(conditional_patch_updates_the_single_match);

// ---------------------------------------------------------------------------------------
// Search
// ---------------------------------------------------------------------------------------

async fn search_by_id(server: Server) {
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(id_of(
            &create_patient(&server, "Id", &format!("s-{n}")).await,
        ));
    }
    assert_eq!(
        search_ids(&server, &format!("_id={}", ids[0])).await,
        vec![ids[0].clone()]
    );
    let two = search_ids(&server, &format!("_id={},{}", ids[0], ids[2])).await;
    assert_eq!(set(&two), set(&[ids[0].clone(), ids[2].clone()]));
    assert!(search_ids(&server, "_id=nobody").await.is_empty());
}
both!(search_by_id);

/// Whether an identifier (system, value) matches a token search value, per the FHIR rules.
fn token_matches(system: Option<&str>, value: &str, token: &str) -> bool {
    match token.split_once('|') {
        None => value == token,
        Some(("", code)) => system.is_none() && value == code,
        Some((s, "")) => system == Some(s),
        Some((s, code)) => system == Some(s) && value == code,
    }
}

async fn search_by_identifier_in_every_token_form(server: Server) {
    const A: &str = "http://example.org/a";
    const B: &str = "http://example.org/b";
    let data = [
        (Some(A), "v1"),
        (Some(B), "v1"),
        (None, "v1"),
        (Some(A), "v2"),
        (None, "v3"),
    ];
    let mut loaded = Vec::new();
    for (system, value) in data {
        loaded.push((
            system,
            value,
            id_of(
                &server
                    .create(&server.base, &patient_with(system, value))
                    .await,
            ),
        ));
    }
    let tokens = [
        format!("{A}|v1"),
        "|v1".to_owned(),
        "v1".to_owned(),
        format!("{A}|"),
        format!("{B}|v2"),
        "v3".to_owned(),
    ];
    for token in tokens {
        let expected: BTreeSet<String> = loaded
            .iter()
            .filter(|(s, v, _)| token_matches(*s, v, &token))
            .map(|(_, _, id)| id.clone())
            .collect();
        let found = search_ids(&server, &format!("identifier={}", enc(&token))).await;
        assert_eq!(found.len(), expected.len(), "no duplicates for {token}");
        assert_eq!(set(&found), expected, "identifier={token}");
    }
}
both!(search_by_identifier_in_every_token_form);

async fn search_pages_see_every_match_once(server: Server) {
    const SYSTEM: &str = "http://example.org/paging";
    let mut expected = BTreeSet::new();
    for n in 0..7 {
        expected.insert(id_of(
            &server
                .create(&server.base, &patient_with(Some(SYSTEM), &format!("p{n}")))
                .await,
        ));
    }
    create_patient(&server, "Outsider", "s-out").await;
    let first = get(
        &server,
        &format!("Patient?identifier={}&_count=3", enc(&format!("{SYSTEM}|"))),
    )
    .await;
    let found: Vec<String> = paged_entries(&server, first, 3, Some(7))
        .await
        .iter()
        .map(|e| id_of(&e["resource"]))
        .collect();
    assert_eq!(found.len(), 7, "each match once: {found:?}");
    assert_eq!(set(&found), expected);
}
both!(search_pages_see_every_match_once);

async fn post_search_finds_the_same_as_get(server: Server) {
    for n in 0..3 {
        create_patient(&server, "Posted", &format!("ps-{}", n % 2)).await;
    }
    let got = search_ids(&server, &by_mrn("ps-0")).await;
    assert_eq!(got.len(), 2);
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("identifier", &format!("{MRN}|ps-0"))
        .finish();
    let request = server
        .client
        .post(server.url("Patient/_search"))
        .header("content-type", FORM)
        .body(form);
    let posted = send(request).await.expect(200).body;
    assert_eq!(posted["type"], "searchset");
    let posted_ids: Vec<String> = entries(&posted)
        .iter()
        .map(|e| id_of(&e["resource"]))
        .collect();
    assert_eq!(posted_ids, got);
}
both!(post_search_finds_the_same_as_get);

async fn unknown_search_parameters_are_ignored_unless_strict(server: Server) {
    let id = id_of(&create_patient(&server, "Lenient", "s-u").await);
    let query = format!("Patient?foo=bar&_id={id}");
    let lenient = get(&server, &query).await.expect(200).body;
    assert_eq!(entries(&lenient).len(), 1);
    let link = self_link(&lenient);
    assert!(
        !link.contains("foo"),
        "the self link leaves out what was ignored: {link}"
    );
    assert!(link.contains(&format!("_id={id}")), "{link}");
    let strict = send(
        server
            .client
            .get(server.url(&query))
            .header("prefer", "handling=strict"),
    )
    .await;
    strict.expect(400).expect_outcome();
}
both!(unknown_search_parameters_are_ignored_unless_strict);

async fn summary_count_gives_the_total_only(server: Server) {
    for n in 0..4 {
        create_patient(&server, "Counted", &format!("sc-{}", n % 2)).await;
    }
    let all = get(&server, "Patient?_summary=count")
        .await
        .expect(200)
        .body;
    assert_eq!(all["total"], 4);
    assert!(all.get("entry").is_none(), "no entries: {all}");
    let some = get(
        &server,
        &format!("Patient?{}&_summary=count", by_mrn("sc-1")),
    )
    .await
    .expect(200)
    .body;
    assert_eq!(some["total"], 2);
    assert!(some.get("entry").is_none());
}
both!(summary_count_gives_the_total_only);

// ---------------------------------------------------------------------------------------
// Capabilities
// ---------------------------------------------------------------------------------------

async fn metadata_describes_the_server(server: Server) {
    let statement = get(&server, "metadata").await.expect(200).body;
    assert_eq!(statement["resourceType"], "CapabilityStatement");
    assert_eq!(statement["fhirVersion"], "4.0.1");
    let formats: Vec<&str> = statement["format"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(formats.iter().any(|f| f.contains("json")), "{formats:?}");
    assert!(formats.iter().any(|f| f.contains("xml")), "{formats:?}");

    let resources = statement["rest"][0]["resource"]
        .as_array()
        .expect("rest[0].resource");
    let types: BTreeSet<&str> = resources
        .iter()
        .filter_map(|r| r["type"].as_str())
        .collect();
    assert_eq!(types.len(), resources.len(), "each type once");
    assert!(
        (140..=150).contains(&types.len()),
        "about 146 R4 types, got {}",
        types.len()
    );
    for name in [
        "Observation",
        "Bundle",
        "Binary",
        "Questionnaire",
        "Practitioner",
    ] {
        assert!(types.contains(name), "{name} missing");
    }

    let patient = resources
        .iter()
        .find(|r| r["type"] == "Patient")
        .expect("a Patient entry");
    let interactions: BTreeSet<&str> = patient["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["code"].as_str())
        .collect();
    for code in [
        "read",
        "vread",
        "update",
        "patch",
        "delete",
        "history-instance",
        "history-type",
        "create",
        "search-type",
    ] {
        assert!(interactions.contains(code), "Patient lacks {code}");
    }
    assert_eq!(patient["versioning"], "versioned-update");
    assert_eq!(patient["conditionalCreate"], true);
    let params: BTreeSet<&str> = patient["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(
        params.contains("_id") && params.contains("identifier"),
        "{params:?}"
    );
}
both!(metadata_describes_the_server);

// --- What clients send by mistake ---------------------------------------------------

async fn create_with_search_parameters_is_400_not_a_duplicate(server: Server) {
    let mrn = "get-or-create-1";
    let body = patient_with(Some(MRN), mrn);
    send(post(&server, "Patient", &body)).await.expect(201);
    // fhirpy's get_or_create sends the criteria as query parameters.
    let query = format!("Patient?{}", by_mrn(mrn));
    let reply = send(post(&server, &query, &body)).await.expect(400);
    reply.expect_outcome();
    assert!(reply.text.contains("identifier"), "{}", reply.text);
    assert_eq!(count(&server, &by_mrn(mrn)).await, 1);
    // The format parameters are fine.
    send(post(&server, "Patient?_format=json&_pretty=true", &body))
        .await
        .expect(201);
    // Likewise inside a transaction.
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": body, "request": {"method": "POST", "url": query}}]});
    let reply = send(post(&server, "", &bundle)).await.expect(400);
    assert!(reply.text.contains("Bundle.entry[0]"), "{}", reply.text);
}
both!(create_with_search_parameters_is_400_not_a_duplicate);

async fn method_not_allowed_says_what_is(server: Server) {
    let created = create_patient(&server, "Allow", "allow-1").await;
    let id = id_of(&created);
    for (request, allow) in [
        (
            server.client.post(server.url(&format!("Patient/{id}"))),
            "GET, PUT, PATCH, DELETE",
        ),
        (server.client.delete(server.url("metadata")), "GET"),
        (server.client.get(server.url("")), "POST"),
        (
            server
                .client
                .put(server.url(&format!("Patient/{id}/_history"))),
            "GET",
        ),
    ] {
        let reply = send(request).await.expect(405);
        reply.expect_outcome();
        assert_eq!(reply.header("allow"), allow);
    }
}
both!(method_not_allowed_says_what_is);

// --- FHIRPath Patch -------------------------------------------------------------------

fn fhirpath_patch(server: &Server, path: &str, parameters: &Value) -> RequestBuilder {
    server
        .client
        .patch(server.url(path))
        .header("content-type", JSON)
        .body(parameters.to_string())
}

fn operation(parts: Value) -> Value {
    json!({"name": "operation", "part": parts})
}

async fn fhirpath_patch_applies_every_operation(server: Server) {
    let mut patient = patient_with(Some(MRN), "fp-1");
    patient["name"] = json!([{"family": "Old", "given": ["A", "B", "C"]}]);
    patient["telecom"] = json!([{"system": "phone", "value": "555-0100"}]);
    let created = send(post(&server, "Patient", &patient))
        .await
        .expect(201)
        .body;
    let path = format!("Patient/{}", id_of(&created));
    let parameters = json!({"resourceType": "Parameters", "parameter": [
        operation(json!([{"name": "type", "valueCode": "replace"},
            {"name": "path", "valueString": "Patient.name[0].family"},
            {"name": "value", "valueString": "New"}])),
        operation(json!([{"name": "type", "valueCode": "add"},
            {"name": "path", "valueString": "Patient"},
            {"name": "name", "valueString": "birthDate"},
            {"name": "value", "valueDate": "1980-02-03"}])),
        operation(json!([{"name": "type", "valueCode": "insert"},
            {"name": "path", "valueString": "Patient.name[0].given"},
            {"name": "index", "valueInteger": 0},
            {"name": "value", "valueString": "Z"}])),
        operation(json!([{"name": "type", "valueCode": "move"},
            {"name": "path", "valueString": "Patient.name[0].given"},
            {"name": "source", "valueInteger": 3},
            {"name": "destination", "valueInteger": 1}])),
        operation(json!([{"name": "type", "valueCode": "delete"},
            {"name": "path", "valueString": "Patient.telecom.where(system = 'phone')"}])),
    ]});
    let patched = send(fhirpath_patch(&server, &path, &parameters))
        .await
        .expect(200)
        .body;
    assert_eq!(patched["name"][0]["family"], "New");
    assert_eq!(patched["name"][0]["given"], json!(["Z", "C", "A", "B"]));
    assert_eq!(patched["birthDate"], "1980-02-03");
    assert!(patched.get("telecom").is_none(), "{patched}");
    assert_eq!(version_of(&patched), "2");

    // The same in XML.
    let xml = r#"<Parameters xmlns="http://hl7.org/fhir"><parameter><name value="operation"/>
        <part><name value="type"/><valueCode value="replace"/></part>
        <part><name value="path"/><valueString value="Patient.gender"/></part>
        <part><name value="value"/><valueCode value="other"/></part></parameter></Parameters>"#;
    let patched = send(
        server
            .client
            .patch(server.url(&path))
            .header("content-type", "application/fhir+xml")
            .header("accept", JSON)
            .body(xml),
    )
    .await
    .expect(200)
    .body;
    assert_eq!(patched["gender"], "other");

    // A patch that does not apply, or leaves an invalid resource: 422 naming it; nothing written.
    let missing = json!({"resourceType": "Parameters", "parameter": [
        operation(json!([{"name": "type", "valueCode": "replace"},
            {"name": "path", "valueString": "Patient.maritalStatus"},
            {"name": "value", "valueCodeableConcept": {"text": "x"}}]))]});
    let reply = send(fhirpath_patch(&server, &path, &missing))
        .await
        .expect(422);
    assert!(
        reply.text.contains("Parameters.parameter[0]"),
        "{}",
        reply.text
    );
    let invalid = json!({"resourceType": "Parameters", "parameter": [
        operation(json!([{"name": "type", "valueCode": "replace"},
            {"name": "path", "valueString": "Patient.gender"},
            {"name": "value", "valueCode": "robot"}]))]});
    let reply = send(fhirpath_patch(&server, &path, &invalid))
        .await
        .expect(422);
    assert!(reply.text.contains("Patient.gender"), "{}", reply.text);
    let not_a_patch =
        json!({"resourceType": "Parameters", "parameter": [{"name": "x", "valueString": "y"}]});
    send(fhirpath_patch(&server, &path, &not_a_patch))
        .await
        .expect(400);
    let current = get(&server, &path).await.expect(200).body;
    assert_eq!(version_of(&current), "3");

    // In a transaction, as the entry's Parameters resource.
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Parameters", "parameter": [
            operation(json!([{"name": "type", "valueCode": "replace"},
                {"name": "path", "valueString": "Patient.name[0].family"},
                {"name": "value", "valueString": "InTransaction"}]))]},
         "request": {"method": "PATCH", "url": path}}]});
    send(post(&server, "", &bundle)).await.expect(200);
    let current = get(&server, &path).await.expect(200).body;
    assert_eq!(current["name"][0]["family"], "InTransaction");
    // And in a batch.
    let mut batch = bundle.clone();
    batch["type"] = json!("batch");
    batch["entry"][0]["resource"]["parameter"][0]["part"][2]["valueString"] = json!("InBatch");
    let reply = send(post(&server, "", &batch)).await.expect(200);
    assert!(
        reply.body["entry"][0]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("200"),
        "{}",
        reply.text
    );
    let current = get(&server, &path).await.expect(200).body;
    assert_eq!(current["name"][0]["family"], "InBatch");
}
both!(fhirpath_patch_applies_every_operation);
