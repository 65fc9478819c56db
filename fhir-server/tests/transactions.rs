//! Batch and transaction Bundles (`POST [base]`), on both databases: atomicity, the
//! processing order, references between entries, conditional entries and references,
//! concurrency, size, and the errors that name the failing entry.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure
#![allow(clippy::too_many_lines)] // a test reads as one story

mod common;

use common::{JSON, Server, json, resource_ids};
use serde_json::{Value, json};

async fn post_bundle(server: &Server, bundle: &Value) -> (u16, Value) {
    json(
        server
            .client
            .post(&server.base)
            .header("content-type", JSON)
            .body(bundle.to_string())
            .send()
            .await
            .expect("the bundle is answered"),
    )
    .await
}

/// The ids a search finds.
async fn search(server: &Server, path: &str) -> Vec<String> {
    let (status, bundle) = server.get_json(path).await;
    assert_eq!(status, 200, "{path}: {bundle}");
    resource_ids(&bundle)
}

fn transaction(entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

fn post(full_url: &str, resource: Value) -> Value {
    let resource_type = resource["resourceType"].as_str().unwrap().to_owned();
    json!({"fullUrl": full_url, "resource": resource,
           "request": {"method": "POST", "url": resource_type}})
}

/// `Type/id` of an entry's response location.
fn located(entry: &Value) -> String {
    let location = entry["response"]["location"].as_str().expect("a location");
    let parts: Vec<&str> = location.split('/').collect();
    let at = parts
        .iter()
        .position(|p| *p == "_history")
        .expect("versioned");
    format!("{}/{}", parts[at - 2], parts[at - 1])
}

async fn references_between_new_resources_go_both_ways(server: Server) {
    let patient = "urn:uuid:0b4c6f5e-0000-4000-8000-000000000001";
    let doctor = "urn:uuid:0b4c6f5e-0000-4000-8000-000000000002";
    let clinic = "urn:oid:1.2.3.4.5";
    let bundle = transaction(vec![
        post(
            patient,
            json!({"resourceType": "Patient", "name": [{"family": "Linked"}],
                   "generalPractitioner": [{"reference": doctor}],
                   "managingOrganization": {"reference": clinic},
                   "contained": [{"resourceType": "RelatedPerson", "id": "kin",
                                  "patient": {"reference": patient}}]}),
        ),
        post(
            doctor,
            json!({"resourceType": "Practitioner", "name": [{"family": "Doctor"}],
                   "extension": [{"url": "http://example.org/first-patient",
                                  "valueReference": {"reference": patient}}]}),
        ),
        post(
            clinic,
            json!({"resourceType": "Organization", "name": "Clinic",
                   "partOf": {"reference": clinic}}),
        ),
    ]);
    let (status, answer) = post_bundle(&server, &bundle).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["type"], "transaction-response");
    let entries = answer["entry"].as_array().expect("entries");
    assert_eq!(entries.len(), 3);
    for entry in entries {
        assert_eq!(entry["response"]["status"], "201 Created", "{entry}");
        assert_eq!(entry["response"]["etag"], "W/\"1\"");
        assert!(entry["response"]["lastModified"].is_string());
    }
    let (patient_ref, doctor_ref, clinic_ref) = (
        located(&entries[0]),
        located(&entries[1]),
        located(&entries[2]),
    );
    let (_, stored) = server.get_json(&patient_ref).await;
    assert_eq!(stored["generalPractitioner"][0]["reference"], doctor_ref);
    assert_eq!(stored["managingOrganization"]["reference"], clinic_ref);
    assert_eq!(stored["contained"][0]["patient"]["reference"], patient_ref);
    let (_, stored) = server.get_json(&doctor_ref).await;
    assert_eq!(
        stored["extension"][0]["valueReference"]["reference"],
        patient_ref
    );
    let (_, stored) = server.get_json(&clinic_ref).await;
    assert_eq!(stored["partOf"]["reference"], clinic_ref);
    // The index saw the rewritten references: chains and reverse chains work.
    let doctor_id = doctor_ref.trim_start_matches("Practitioner/");
    let found = search(&server, "Patient?general-practitioner.name=doctor").await;
    assert_eq!(found, [patient_ref.trim_start_matches("Patient/")]);
    let found = search(
        &server,
        "Practitioner?_has:Patient:general-practitioner:name=linked",
    )
    .await;
    assert_eq!(found, [doctor_id]);
}
both!(references_between_new_resources_go_both_ways);

async fn a_failing_entry_leaves_nothing_behind(server: Server) {
    server
        .create(&server.base, &common::patient("Keeper", "k-1"))
        .await;
    let (_, found) = server
        .get_json("Patient?identifier=http://example.org/mrn|k-1")
        .await;
    let keeper = found["entry"][0]["resource"].clone();
    let keeper_id = keeper["id"].as_str().unwrap().to_owned();
    let other = server
        .create(&server.base, &common::patient("Other", "k-2"))
        .await;
    let other_id = other["id"].as_str().unwrap().to_owned();
    let cases = [
        // An update whose If-Match does not hold: 412.
        (
            json!({"resource": {"resourceType": "Patient", "id": other_id, "gender": "male"},
                   "request": {"method": "PUT", "url": format!("Patient/{other_id}"),
                               "ifMatch": "W/\"7\""}}),
            412,
        ),
        // An invalid resource: 422, naming the element.
        (
            json!({"fullUrl": "urn:uuid:bad", "resource": {"resourceType": "Patient", "gender": "robot"},
                   "request": {"method": "POST", "url": "Patient"}}),
            422,
        ),
        // A resource of the wrong type for its url: 400.
        (
            json!({"resource": {"resourceType": "Patient"},
                   "request": {"method": "POST", "url": "Observation"}}),
            400,
        ),
        // A conditional reference that matches nothing: 412.
        (
            json!({"resource": {"resourceType": "Encounter", "status": "finished",
                                "class": {"code": "AMB"},
                                "subject": {"reference": "Patient?identifier=http://example.org/mrn|nobody"}},
                   "request": {"method": "POST", "url": "Encounter"}}),
            412,
        ),
        // A delete and an update of the same resource: 400.
        (
            json!({"request": {"method": "DELETE", "url": format!("Patient/{keeper_id}")}}),
            400,
        ),
    ];
    for (position, (failing, status)) in cases.into_iter().enumerate() {
        let mut entries = vec![
            post(
                "urn:uuid:ok-1",
                json!({"resourceType": "Patient", "name": [{"family": format!("Ghost{position}")}]}),
            ),
            json!({"resource": {"resourceType": "Patient", "id": keeper_id, "name": [{"family": "Changed"}]},
                   "request": {"method": "PUT", "url": format!("Patient/{keeper_id}")}}),
            failing,
            json!({"request": {"method": "DELETE", "url": "Patient/never-mind"}}),
        ];
        if position == 4 {
            // The duplicate target is the PUT above; keep the middle entry the failing one.
            entries.swap(1, 2);
        }
        let (got, outcome) = post_bundle(&server, &transaction(entries)).await;
        assert_eq!(got, status, "case {position}: {outcome}");
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        let expressions = common::issue_expressions(&outcome);
        assert!(
            expressions.iter().any(|e| e.starts_with("Bundle.entry[")),
            "case {position}: {outcome}"
        );
        let diagnostics = outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap_or_default();
        assert!(diagnostics.contains("Bundle entry"), "{diagnostics}");
        // Nothing of the Bundle was stored, and the other resource is untouched.
        let ghosts = search(&server, &format!("Patient?name=ghost{position}")).await;
        assert!(ghosts.is_empty(), "case {position} left {ghosts:?}");
        let (_, now) = server.get_json(&format!("Patient/{keeper_id}")).await;
        assert_eq!(now, keeper, "case {position} changed the kept patient");
    }
    // The failing entry is named by index and fullUrl.
    let (_, outcome) = post_bundle(
        &server,
        &transaction(vec![
            post("urn:uuid:first", json!({"resourceType": "Patient"})),
            json!({"fullUrl": "urn:uuid:second", "resource": {"resourceType": "Patient", "birthDate": "25/12/1974"},
                   "request": {"method": "POST", "url": "Patient"}}),
        ]),
    )
    .await;
    let diagnostics = outcome["issue"][0]["diagnostics"]
        .as_str()
        .unwrap_or_default();
    assert!(
        diagnostics.contains("entry 1 (urn:uuid:second)"),
        "{diagnostics}"
    );
    assert!(
        common::issue_expressions(&outcome)
            .iter()
            .any(|e| e == "Bundle.entry[1].resource.birthDate"),
        "{outcome}"
    );
}
both!(a_failing_entry_leaves_nothing_behind);

async fn entries_run_deletes_then_creates_then_updates_then_reads(server: Server) {
    let old = server
        .create(&server.base, &common::patient("Old", "o-1"))
        .await;
    let old_id = old["id"].as_str().unwrap();
    let kept = server
        .create(&server.base, &common::patient("Kept", "kept-1"))
        .await;
    let kept_id = kept["id"].as_str().unwrap();
    // Written in the reverse order of processing: the read sees every write.
    let bundle = transaction(vec![
        json!({"request": {"method": "GET", "url": "Patient?name=old,new,kept&_sort=name"}}),
        json!({"resource": {"resourceType": "Patient", "id": kept_id, "name": [{"family": "Kept"}],
                            "link": [{"other": {"reference": "urn:uuid:new"}, "type": "seealso"}]},
               "request": {"method": "PUT", "url": format!("Patient/{kept_id}")}}),
        post(
            "urn:uuid:new",
            json!({"resourceType": "Patient", "name": [{"family": "New"}]}),
        ),
        json!({"request": {"method": "DELETE", "url": format!("Patient/{old_id}")}}),
    ]);
    let (status, answer) = post_bundle(&server, &bundle).await;
    assert_eq!(status, 200, "{answer}");
    let entries = answer["entry"].as_array().unwrap();
    assert_eq!(entries[0]["response"]["status"], "200 OK");
    let read = &entries[0]["resource"];
    let families: Vec<&str> = read["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["resource"]["name"][0]["family"].as_str())
        .collect();
    assert_eq!(families, ["Kept", "New"], "{read}");
    assert_eq!(entries[1]["response"]["status"], "200 OK");
    assert_eq!(entries[1]["response"]["etag"], "W/\"2\"");
    assert_eq!(entries[2]["response"]["status"], "201 Created");
    assert!(
        entries[3]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("204")
    );
    let (_, updated) = server.get_json(&format!("Patient/{kept_id}")).await;
    assert_eq!(
        updated["link"][0]["other"]["reference"],
        located(&entries[2])
    );
    assert_eq!(server.get_json(&format!("Patient/{old_id}")).await.0, 410);
}
both!(entries_run_deletes_then_creates_then_updates_then_reads);

async fn conditional_entries_and_references(server: Server) {
    let mrn = |value: &str| json!([{"system": "http://example.org/mrn", "value": value}]);
    let existing = server
        .create(&server.base, &common::patient("Known", "c-1"))
        .await;
    let existing_id = existing["id"].as_str().unwrap();
    let bundle = transaction(vec![
        // Conditional create that matches: nothing is created, and references to its
        // fullUrl point to the match.
        json!({"fullUrl": "urn:uuid:known", "resource": {"resourceType": "Patient", "identifier": mrn("c-1")},
               "request": {"method": "POST", "url": "Patient",
                           "ifNoneExist": "identifier=http://example.org/mrn|c-1"}}),
        // Conditional create that matches nothing: created.
        json!({"fullUrl": "urn:uuid:fresh", "resource": {"resourceType": "Patient", "identifier": mrn("c-2")},
               "request": {"method": "POST", "url": "Patient",
                           "ifNoneExist": "identifier=http://example.org/mrn|c-2"}}),
        // Conditional update that matches nothing: created with the body's id.
        json!({"resource": {"resourceType": "Patient", "id": "by-criteria", "identifier": mrn("c-3")},
               "request": {"method": "PUT", "url": "Patient?identifier=http://example.org/mrn|c-3"}}),
        // References: to the matched entry, to the new one, and by criteria.
        post(
            "urn:uuid:visit",
            json!({"resourceType": "Encounter", "status": "planned",
            "class": {"code": "AMB"}, "subject": {"reference": "urn:uuid:known"},
            "participant": [{"individual": {"reference": "Patient?identifier=http://example.org/mrn|c-1"}}],
            "episodeOfCare": [{"reference": "urn:uuid:unknown-stays"}],
            "basedOn": [{"reference": "urn:uuid:fresh"}]}),
        ),
    ]);
    let (status, answer) = post_bundle(&server, &bundle).await;
    assert_eq!(status, 200, "{answer}");
    let entries = answer["entry"].as_array().unwrap();
    assert_eq!(entries[0]["response"]["status"], "200 OK");
    assert_eq!(located(&entries[0]), format!("Patient/{existing_id}"));
    assert_eq!(entries[1]["response"]["status"], "201 Created");
    assert_eq!(entries[2]["response"]["status"], "201 Created");
    assert_eq!(located(&entries[2]), "Patient/by-criteria");
    let (_, visit) = server.get_json(&located(&entries[3])).await;
    assert_eq!(
        visit["subject"]["reference"],
        format!("Patient/{existing_id}")
    );
    assert_eq!(
        visit["participant"][0]["individual"]["reference"],
        format!("Patient/{existing_id}")
    );
    assert_eq!(visit["basedOn"][0]["reference"], located(&entries[1]));
    assert_eq!(
        visit["episodeOfCare"][0]["reference"],
        "urn:uuid:unknown-stays"
    );
    assert_eq!(
        search(&server, "Patient?identifier=http://example.org/mrn|c-1")
            .await
            .len(),
        1
    );
    // A second run: every condition now matches, nothing new is made.
    let (status, again) = post_bundle(&server, &bundle).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["entry"][1]["response"]["status"], "200 OK");
    assert_eq!(again["entry"][2]["response"]["status"], "200 OK");
    // Conditional delete, and a conditional that matches several: 412.
    server
        .create(&server.base, &common::patient("Twin", "twin"))
        .await;
    server
        .create(&server.base, &common::patient("Twin", "twin"))
        .await;
    let (status, _) = post_bundle(
        &server,
        &transaction(vec![json!({"request": {"method": "DELETE",
            "url": "Patient?identifier=http://example.org/mrn|twin"}})]),
    )
    .await;
    assert_eq!(status, 412);
    let (status, answer) = post_bundle(
        &server,
        &transaction(vec![json!({"request": {"method": "DELETE",
            "url": "Patient?identifier=http://example.org/mrn|c-3"}})]),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(server.get_json("Patient/by-criteria").await.0, 410);
}
both!(conditional_entries_and_references);

async fn patches_and_concurrent_transactions_lose_no_update(server: Server) {
    let patient = server
        .create(&server.base, &common::patient("Busy", "busy"))
        .await;
    let id = patient["id"].as_str().unwrap().to_owned();
    // Each transaction adds one given name by a JSON Patch, with no If-Match: run many at
    // once, and every one of them must be in the final version.
    let clients = 12;
    let mut tasks = Vec::new();
    for n in 0..clients {
        let (client, base, id) = (server.client.clone(), server.base.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            let patch = json!([{"op": "add", "path": "/name/0/given/-", "value": format!("G{n}")}]);
            let data = base64_encode(patch.to_string().as_bytes());
            let bundle = transaction(vec![
                json!({"resource": {"resourceType": "Binary",
                                    "contentType": "application/json-patch+json", "data": data},
                       "request": {"method": "PATCH", "url": format!("Patient/{id}")}}),
                post(
                    "urn:uuid:x",
                    json!({"resourceType": "Basic", "code": {"text": format!("by {n}")}}),
                ),
            ]);
            let response = client
                .post(&base)
                .header("content-type", JSON)
                .body(bundle.to_string())
                .send()
                .await
                .expect("answers");
            response.status().as_u16()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    let (_, now) = server.get_json(&format!("Patient/{id}")).await;
    let given: Vec<&str> = now["name"][0]["given"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for n in 0..clients {
        assert!(given.contains(&format!("G{n}").as_str()), "{given:?}");
    }
    assert_eq!(now["meta"]["versionId"], (clients + 1).to_string());
}
both!(patches_and_concurrent_transactions_lose_no_update);

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn batch_entries_succeed_or_fail_alone(server: Server) {
    let bundle = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        post("urn:uuid:a", json!({"resourceType": "Patient", "name": [{"family": "Batched"}]})),
        json!({"resource": {"resourceType": "Patient", "gender": "robot"},
               "request": {"method": "POST", "url": "Patient"}}),
        json!({"request": {"method": "GET", "url": "Patient/not-there"}}),
        json!({"request": {"method": "GET", "url": "Patient?name=batched"}}),
        json!({"request": {"method": "POST", "url": "Patient"}}),
    ]});
    let (status, answer) = post_bundle(&server, &bundle).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["type"], "batch-response");
    let entries = answer["entry"].as_array().unwrap();
    assert_eq!(entries[0]["response"]["status"], "201 Created");
    assert!(
        entries[1]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("422")
    );
    assert_eq!(
        entries[1]["response"]["outcome"]["resourceType"],
        "OperationOutcome"
    );
    assert!(
        entries[2]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("404")
    );
    // Entries run in order: the search sees the create before it.
    assert_eq!(entries[3]["resource"]["total"], 1);
    assert!(
        entries[4]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("400")
    );
    assert_eq!(search(&server, "Patient?name=batched").await.len(), 1);
}
both!(batch_entries_succeed_or_fail_alone);

async fn large_bundles_work_and_the_limit_holds(server: Server) {
    let entries: Vec<Value> = (0..10_000)
        .map(|n| {
            post(
                &format!("urn:uuid:00000000-0000-4000-8000-{n:012}"),
                json!({"resourceType": "Patient", "identifier": [{"system": "http://example.org/big", "value": format!("{n}")}],
                       "link": [{"other": {"reference": format!("urn:uuid:00000000-0000-4000-8000-{:012}", (n + 1) % 10_000)}, "type": "seealso"}]}),
            )
        })
        .collect();
    let (status, answer) = post_bundle(&server, &transaction(entries)).await;
    assert_eq!(
        status,
        200,
        "{}",
        answer.to_string().chars().take(500).collect::<String>()
    );
    assert_eq!(answer["entry"].as_array().unwrap().len(), 10_000);
    let (_, counted) = server
        .get_json("Patient?identifier=http://example.org/big|&_summary=count")
        .await;
    assert_eq!(counted["total"], 10_000);
    // Every link points to a stored resource.
    let (_, first) = server
        .get_json("Patient?identifier=http://example.org/big|0")
        .await;
    let next = first["entry"][0]["resource"]["link"][0]["other"]["reference"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, linked) = server.get_json(&next).await;
    assert_eq!(linked["identifier"][0]["value"], "1");
    // Over the configured limit: 413.
    let small = Server::start_with(server.backend, &["--max-bundle-entries", "2"], &[])
        .await
        .expect("server starts");
    let three: Vec<Value> = (0..3)
        .map(|n| post(&format!("urn:uuid:{n}"), json!({"resourceType": "Patient"})))
        .collect();
    let (status, outcome) = post_bundle(&small, &transaction(three)).await;
    assert_eq!(status, 413, "{outcome}");
}
both!(large_bundles_work_and_the_limit_holds);

async fn bundles_of_other_types_and_malformed_entries_are_refused(server: Server) {
    let (status, _) = post_bundle(
        &server,
        &json!({"resourceType": "Bundle", "type": "collection", "entry": []}),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = post_bundle(&server, &json!({"resourceType": "Patient"})).await;
    assert_eq!(status, 400);
    for entry in [
        json!({"resource": {"resourceType": "Patient"}}),
        json!({"request": {"method": "FETCH", "url": "Patient"}}),
        json!({"request": {"method": "PUT", "url": "Patient/1"}}),
        json!({"resource": {"resourceType": "Patient", "id": "2"}, "request": {"method": "PUT", "url": "Patient/1"}}),
        json!({"request": {"method": "DELETE", "url": "http://elsewhere.example/fhir/Patient/1"}}),
        json!({"request": {"method": "PATCH", "url": "Patient/1"}, "resource": {"resourceType": "Patient"}}),
        json!({"request": {"method": "DELETE", "url": "Patient?unknown-param=1"}}),
    ] {
        let (status, outcome) = post_bundle(&server, &transaction(vec![entry.clone()])).await;
        assert!((400..500).contains(&status), "{entry}: {status} {outcome}");
        assert_eq!(outcome["resourceType"], "OperationOutcome", "{entry}");
    }
}
both!(bundles_of_other_types_and_malformed_entries_are_refused);

/// Twenty transactions with the same `ifNoneExist`, and ten plain conditional creates
/// beside them, all at once: one Patient, and the others found it.
async fn concurrent_conditional_entries_create_once(server: Server) {
    let criteria = "identifier=http://example.org/mrn|race-1";
    let patient = json!({"resourceType": "Patient",
        "identifier": [{"system": "http://example.org/mrn", "value": "race-1"}]});
    let mut tasks = Vec::new();
    for n in 0..30 {
        let client = server.client.clone();
        let base = server.base.clone();
        let patient = patient.clone();
        tasks.push(tokio::spawn(async move {
            let request = if n % 3 == 2 {
                client
                    .post(format!("{base}/Patient"))
                    .header("if-none-exist", criteria)
                    .body(patient.to_string())
            } else if n % 3 == 1 {
                // A conditional update by criteria creates when nothing matches.
                let bundle = transaction(vec![json!({"resource": patient,
                    "request": {"method": "PUT", "url": format!("Patient?{criteria}")}})]);
                client.post(&base).body(bundle.to_string())
            } else {
                let bundle = transaction(vec![
                    json!({"fullUrl": format!("urn:uuid:00000000-0000-4000-8000-{n:012}"),
                    "resource": patient,
                    "request": {"method": "POST", "url": "Patient", "ifNoneExist": criteria}}),
                ]);
                client.post(&base).body(bundle.to_string())
            };
            let response = request.header("content-type", JSON).send().await.unwrap();
            response.status().as_u16()
        }));
    }
    for task in tasks {
        let status = task.await.unwrap();
        assert!([200, 201].contains(&status), "{status}");
    }
    let found = search(&server, &format!("Patient?{criteria}")).await;
    assert_eq!(found.len(), 1, "exactly one Patient: {found:?}");
}
both!(concurrent_conditional_entries_create_once);

async fn a_full_url_names_one_entry(server: Server) {
    let url = "urn:uuid:0b4c6f5e-0000-4000-8000-0000000000aa";
    let bundle = transaction(vec![
        post(url, json!({"resourceType": "Patient"})),
        post(
            "urn:uuid:0b4c6f5e-0000-4000-8000-0000000000bb",
            json!({"resourceType": "Patient"}),
        ),
        post(url, json!({"resourceType": "Patient"})),
    ]);
    let (status, outcome) = post_bundle(&server, &bundle).await;
    assert_eq!(status, 400, "{outcome}");
    let expressions = common::issue_expressions(&outcome);
    assert!(
        expressions.contains(&"Bundle.entry[0].fullUrl".to_owned()),
        "{outcome}"
    );
    assert!(
        expressions.contains(&"Bundle.entry[2].fullUrl".to_owned()),
        "{outcome}"
    );
    let mut batch = bundle.clone();
    batch["type"] = json!("batch");
    let (status, _) = post_bundle(&server, &batch).await;
    assert_eq!(status, 400);
    assert!(
        search(&server, "Patient").await.is_empty(),
        "nothing written"
    );
}
both!(a_full_url_names_one_entry);

/// A Bundle's answer is bounded: past the limit a batch entry gets its own 413, and a
/// transaction is refused whole, before anything is written.
async fn bundle_answers_are_bounded(backend: common::Backend) {
    let Some(server) =
        Server::start_with(backend, &["--max-bundle-response-bytes", "20000"], &[]).await
    else {
        eprintln!("skipped: FHIR_TEST_POSTGRES_URL is not set");
        return;
    };
    let patients: Vec<Value> = (0..40)
        .map(|n| {
            post(
                &format!("urn:uuid:0b4c6f5e-0000-4000-8000-{n:012}"),
                json!({"resourceType": "Patient", "name": [{"family": format!("Bounded{n}"), "given": ["A long given name to take some room"]}]}),
            )
        })
        .collect();
    let (status, _) = post_bundle(&server, &transaction(patients)).await;
    assert_eq!(status, 200);
    let get = json!({"request": {"method": "GET", "url": "Patient?_count=40"}});
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [get, get, get, get]});
    let (status, answer) = post_bundle(&server, &batch).await;
    assert_eq!(status, 200, "{answer}");
    let statuses: Vec<&str> = answer["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect();
    assert!(statuses[0].starts_with("200"), "{statuses:?}");
    assert!(
        statuses[1..].iter().any(|s| s.starts_with("413")),
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|s| s.starts_with("200") || s.starts_with("413")),
        "{statuses:?}"
    );

    let write = post(
        "urn:uuid:0b4c6f5e-0000-4000-8000-00000000ffff",
        json!({"resourceType": "Patient", "name": [{"family": "NotWritten"}]}),
    );
    let (status, outcome) = post_bundle(&server, &transaction(vec![write, get.clone(), get])).await;
    assert_eq!(status, 413, "{outcome}");
    assert!(
        search(&server, "Patient?family=NotWritten")
            .await
            .is_empty()
    );
}
both_backends!(bundle_answers_are_bounded);
