//! Patient `$everything`, Bulk Data `$export` (kick-off, status, manifest, files, cancel,
//! restart, expiry) and the `import` / `export` commands, on both databases.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure
#![allow(clippy::too_many_lines)] // a test reads as one story

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{Backend, JSON, Server, all_pages, patient};
use serde_json::{Value, json};

/// `Type/id` of every entry of a Bundle page.
fn entry_ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            format!(
                "{}/{}",
                e["resource"]["resourceType"].as_str().unwrap(),
                e["resource"]["id"].as_str().unwrap()
            )
        })
        .collect()
}

/// Every `Type/id` of `url` and its next pages; asserts no page repeats an entry.
async fn all_entry_ids(server: &Server, url: &str) -> Vec<String> {
    let (status, first) = server.get_json_url(url).await;
    assert_eq!(status, 200, "{url}: {first}");
    let found: Vec<String> = all_pages(server, first)
        .await
        .iter()
        .flat_map(entry_ids)
        .collect();
    let unique: BTreeSet<&String> = found.iter().collect();
    assert_eq!(unique.len(), found.len(), "no entry twice: {found:?}");
    found
}

fn reference(resource: &Value) -> String {
    format!(
        "{}/{}",
        resource["resourceType"].as_str().unwrap(),
        resource["id"].as_str().unwrap()
    )
}

/// A small practice: two patients, a practitioner, an organization, a location, and the
/// first patient's appointment and encounter, the second's encounter. Returns the
/// references by name.
async fn practice(server: &Server) -> BTreeMap<&'static str, String> {
    let base = &server.base;
    let org = server
        .create(
            base,
            &json!({"resourceType": "Organization", "name": "Clinic"}),
        )
        .await;
    let doctor = server
        .create(
            base,
            &json!({"resourceType": "Practitioner", "name": [{"family": "Doc"}]}),
        )
        .await;
    let room = server
        .create(base, &json!({"resourceType": "Location", "name": "Room 1"}))
        .await;
    let mut alice = patient("Alice", "A-1");
    alice["managingOrganization"] = json!({"reference": reference(&org)});
    let alice = server.create(base, &alice).await;
    let bob = server.create(base, &patient("Bob", "B-1")).await;
    let appointment = server
        .create(
            base,
            &json!({"resourceType": "Appointment", "status": "booked",
                    "participant": [
                        {"actor": {"reference": reference(&alice)}, "status": "accepted"},
                        {"actor": {"reference": reference(&doctor)}, "status": "accepted"},
                        {"actor": {"reference": reference(&room)}, "status": "accepted"}]}),
        )
        .await;
    let encounter_alice = server
        .create(
            base,
            &json!({"resourceType": "Encounter", "status": "finished",
                    "class": {"code": "AMB"},
                    "subject": {"reference": reference(&alice)}}),
        )
        .await;
    let encounter_bob = server
        .create(
            base,
            &json!({"resourceType": "Encounter", "status": "finished",
                    "class": {"code": "AMB"},
                    "subject": {"reference": reference(&bob)}}),
        )
        .await;
    BTreeMap::from([
        ("org", reference(&org)),
        ("doctor", reference(&doctor)),
        ("room", reference(&room)),
        ("alice", reference(&alice)),
        ("bob", reference(&bob)),
        ("appointment", reference(&appointment)),
        ("encounter_alice", reference(&encounter_alice)),
        ("encounter_bob", reference(&encounter_bob)),
    ])
}

async fn everything_is_the_record_and_what_it_references(server: Server) {
    let refs = practice(&server).await;
    let url = format!("{}/{}/$everything", server.base, refs["alice"]);
    let (status, bundle) = server.get_json_url(&url).await;
    assert_eq!(status, 200, "{bundle}");
    assert_eq!(bundle["type"], "searchset");
    let found = entry_ids(&bundle);
    assert_eq!(found[0], refs["alice"], "the patient comes first");
    let expected: BTreeSet<String> = [
        "alice",
        "org",
        "doctor",
        "room",
        "appointment",
        "encounter_alice",
    ]
    .iter()
    .map(|k| refs[k].clone())
    .collect();
    assert_eq!(found.iter().cloned().collect::<BTreeSet<_>>(), expected);

    // Pages of two: the same members, each once.
    let paged = all_entry_ids(&server, &format!("{url}?_count=2")).await;
    assert_eq!(paged.len(), expected.len());
    assert_eq!(paged.into_iter().collect::<BTreeSet<_>>(), expected);

    // _type keeps only those types.
    let encounters = all_entry_ids(&server, &format!("{url}?_type=Encounter,Appointment")).await;
    let expected_types: BTreeSet<String> =
        [refs["appointment"].clone(), refs["encounter_alice"].clone()].into();
    assert_eq!(
        encounters.into_iter().collect::<BTreeSet<_>>(),
        expected_types
    );

    // _since keeps what changed since then.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let since = chrono_now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let updated = json!({"resourceType": "Encounter", "id": refs["encounter_alice"].split('/').nth(1).unwrap(),
                         "status": "cancelled", "class": {"code": "AMB"},
                         "subject": {"reference": refs["alice"]}});
    let response = server
        .client
        .put(format!("{}/{}", server.base, refs["encounter_alice"]))
        .header("content-type", JSON)
        .body(updated.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let changed = all_entry_ids(
        &server,
        &format!("{url}?_since={}", since.replace('+', "%2B")),
    )
    .await;
    assert_eq!(changed, vec![refs["encounter_alice"].clone()]);

    // Nothing changed since a moment to come: an empty page, not an error.
    let (status, empty) = server
        .get_json_url(&format!("{url}?_since=2999-01-01T00:00:00Z"))
        .await;
    assert_eq!(status, 200, "{empty}");
    assert!(entry_ids(&empty).is_empty());

    // Errors: an unknown patient, a bad _since, an unknown _type.
    let (status, outcome) = server
        .get_json_url(&format!("{}/Patient/nobody/$everything", server.base))
        .await;
    assert_eq!(status, 404, "{outcome}");
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    let (status, _) = server
        .get_json_url(&format!("{url}?_since=yesterday"))
        .await;
    assert_eq!(status, 400);
    let (status, _) = server.get_json_url(&format!("{url}?_type=Nonsense")).await;
    assert_eq!(status, 400);
}
both!(everything_is_the_record_and_what_it_references);

/// The current instant as FHIR writes it (UTC, milliseconds).
fn chrono_now() -> String {
    let output = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.%3NZ"])
        .output()
        .expect("date runs");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// Kicks off an export at `path` (e.g. `$export?_type=Patient`); the status URL.
async fn kick_off(server: &Server, path: &str) -> String {
    let response = server
        .client
        .get(format!("{}/{path}", server.base))
        .header("accept", JSON)
        .header("prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        202,
        "{path}: {:?}",
        response.text().await
    );
    response.headers()["content-location"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// Polls a status URL until the manifest is there.
async fn manifest(server: &Server, status_url: &str) -> Value {
    for _ in 0..600 {
        let response = server.client.get(status_url).send().await.unwrap();
        match response.status().as_u16() {
            202 => {
                assert!(response.headers().contains_key("x-progress"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // A poll is a request like any other: under a tiny --statement-timeout-ms on a
            // loaded machine it may time out; the next poll asks again.
            503 => tokio::time::sleep(Duration::from_millis(100)).await,
            200 => {
                // The manifest is not a FHIR resource: plain JSON, as the Bulk Data spec says.
                assert_eq!(response.headers()["content-type"], "application/json");
                return response.json().await.unwrap();
            }
            other => panic!("export status {other}: {:?}", response.text().await),
        }
    }
    panic!("the export did not finish; log:\n{}", server.log())
}

/// The resources of a manifest's files, by type: `Type/id` -> resource.
async fn exported(server: &Server, manifest: &Value) -> BTreeMap<String, Value> {
    let mut resources = BTreeMap::new();
    for file in manifest["output"].as_array().unwrap() {
        // As a Bulk Data client asks for them.
        let response = server
            .client
            .get(file["url"].as_str().unwrap())
            .header("accept", "application/fhir+ndjson")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "application/fhir+ndjson"
        );
        let text = response.text().await.unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len() as u64, file["count"].as_u64().unwrap());
        for line in lines {
            let resource: Value = serde_json::from_str(line).expect("one resource per line");
            assert_eq!(resource["resourceType"], file["type"]);
            resources.insert(reference(&resource), resource);
        }
    }
    resources
}

async fn export_levels_types_and_since(server: Server) {
    let refs = practice(&server).await;
    let group = server
        .create(
            &server.base,
            &json!({"resourceType": "Group", "type": "person", "actual": true,
                    "member": [{"entity": {"reference": refs["bob"]}}]}),
        )
        .await;

    // System level: everything, one file per type.
    let all = manifest(&server, &kick_off(&server, "$export").await).await;
    assert!(all["transactionTime"].is_string());
    assert_eq!(all["requiresAccessToken"], false);
    let types: Vec<&str> = all["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["type"].as_str().unwrap())
        .collect();
    let unique: BTreeSet<&&str> = types.iter().collect();
    assert_eq!(unique.len(), types.len(), "one file per type: {types:?}");
    let everything = exported(&server, &all).await;
    let mut expected: BTreeSet<String> = refs.values().cloned().collect();
    expected.insert(reference(&group));
    // The Appointment's Provenance (written with it) is exported too.
    assert_eq!(
        everything
            .keys()
            .filter(|k| !k.starts_with("Provenance/"))
            .cloned()
            .collect::<BTreeSet<_>>(),
        expected
    );
    assert_eq!(
        everything
            .keys()
            .filter(|k| k.starts_with("Provenance/"))
            .count(),
        1
    );
    // The files hold the resources as they are read.
    let (_, alice) = server
        .get_json_url(&format!("{}/{}", server.base, refs["alice"]))
        .await;
    assert_eq!(everything[&refs["alice"]], alice);

    // _type.
    let patients = manifest(
        &server,
        &kick_off(
            &server,
            "$export?_type=Patient&_outputFormat=application%2Ffhir%2Bndjson",
        )
        .await,
    )
    .await;
    let found: BTreeSet<String> = exported(&server, &patients).await.into_keys().collect();
    assert_eq!(found, [refs["alice"].clone(), refs["bob"].clone()].into());

    // Patient level: the patients' compartments, not the practitioners.
    let compartments = manifest(&server, &kick_off(&server, "Patient/$export").await).await;
    let found: BTreeSet<String> = exported(&server, &compartments).await.into_keys().collect();
    for member in [
        "alice",
        "bob",
        "appointment",
        "encounter_alice",
        "encounter_bob",
    ] {
        assert!(found.contains(&refs[member]), "{member} in {found:?}");
    }
    assert!(!found.contains(&refs["doctor"]), "{found:?}");

    // Group level: only Bob's compartment (which holds the Group: R4 puts Group.member
    // there).
    let bobs = manifest(
        &server,
        &kick_off(&server, &format!("{}/$export", reference(&group))).await,
    )
    .await;
    let found: BTreeSet<String> = exported(&server, &bobs).await.into_keys().collect();
    let expected: BTreeSet<String> = [
        refs["bob"].clone(),
        refs["encounter_bob"].clone(),
        reference(&group),
    ]
    .into();
    assert_eq!(found, expected);

    // POST with a Parameters body, as Bulk Data 2.0 allows.
    let response = server
        .client
        .post(format!("{}/$export", server.base))
        .header("prefer", "respond-async")
        .header("content-type", JSON)
        .body(
            json!({"resourceType": "Parameters", "parameter": [
            {"name": "_type", "valueString": "Practitioner"},
            {"name": "_outputFormat", "valueString": "application/fhir+ndjson"}]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let status_url = response.headers()["content-location"]
        .to_str()
        .unwrap()
        .to_owned();
    let posted = manifest(&server, &status_url).await;
    let found: BTreeSet<String> = exported(&server, &posted).await.into_keys().collect();
    assert_eq!(found, [refs["doctor"].clone()].into());

    // A group without patients exports nothing of any patient.
    let empty_group = server
        .create(
            &server.base,
            &json!({"resourceType": "Group", "type": "practitioner", "actual": true,
                    "member": [{"entity": {"reference": refs["doctor"]}}]}),
        )
        .await;
    let nobody = manifest(
        &server,
        &kick_off(&server, &format!("{}/$export", reference(&empty_group))).await,
    )
    .await;
    let found: BTreeSet<String> = exported(&server, &nobody).await.into_keys().collect();
    assert!(found.iter().all(|r| r.starts_with("Group/")), "{found:?}");

    // _since: only what changed after it.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let since = chrono_now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let changed = server.create(&server.base, &patient("Carol", "C-1")).await;
    let recent = manifest(
        &server,
        &kick_off(
            &server,
            &format!("$export?_since={}", since.replace('+', "%2B")),
        )
        .await,
    )
    .await;
    let found: BTreeSet<String> = exported(&server, &recent).await.into_keys().collect();
    assert_eq!(found, [reference(&changed)].into());

    // Bad requests: no Prefer, an unknown type or format, an unknown group or job.
    let response = server
        .client
        .get(format!("{}/$export", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    for bad in [
        "$export?_type=Nope",
        "$export?_outputFormat=text%2Fcsv",
        "$export?_since=soon",
    ] {
        let response = server
            .client
            .get(format!("{}/{bad}", server.base))
            .header("prefer", "respond-async")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{bad}");
    }
    let response = server
        .client
        .get(format!("{}/Group/none/$export", server.base))
        .header("prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let (status, _) = server
        .get_json_url(&format!("{}/$export-status/nosuchjob", server.base))
        .await;
    assert_eq!(status, 404);
}
both!(export_levels_types_and_since);

async fn export_cancel_and_tenants(server: Server) {
    server.create(&server.base, &patient("Dana", "D-1")).await;
    server.create_tenant("other").await;
    let other = server.tenant_base("other");
    server.create(&other, &patient("Eve", "E-1")).await;

    // An export of the default tenant holds nothing of the other one, and its status is
    // not visible there.
    let status_url = kick_off(&server, "$export").await;
    let done = manifest(&server, &status_url).await;
    let found: Vec<String> = exported(&server, &done).await.into_keys().collect();
    assert_eq!(found.len(), 1, "{found:?}");
    let job = status_url.rsplit('/').next().unwrap();
    let (status, _) = server
        .get_json_url(&format!("{other}/$export-status/{job}"))
        .await;
    assert_eq!(status, 404, "another tenant cannot see the job");
    let file = done["output"][0]["url"].as_str().unwrap();
    let other_file = file.replace(&server.base, &other);
    let (status, _) = server.get_json_url(&other_file).await;
    assert_eq!(status, 404, "nor its files");

    // DELETE removes a finished export: its status and files are gone.
    let response = server.client.delete(&status_url).send().await.unwrap();
    assert_eq!(response.status(), 202);
    let (status, _) = server.get_json_url(&status_url).await;
    assert_eq!(status, 404);
    let (status, _) = server.get_json_url(file).await;
    assert_eq!(status, 404);
    let response = server.client.delete(&status_url).send().await.unwrap();
    assert_eq!(response.status(), 404, "cancelled once");
}
both!(export_cancel_and_tenants);

/// A job survives a SIGKILL of its server (it is in the database, and a job whose lease
/// lapsed is started over), and its files are removed when they expire.
async fn export_survives_restart_and_expires(backend: Backend) {
    let Some(mut server) = Server::start_with(
        backend,
        &[],
        &[
            ("FHIR_JOB_LEASE_SECONDS", "1"),
            ("FHIR_EXPORT_TTL_SECONDS", "3"),
        ],
    )
    .await
    else {
        return;
    };
    for n in 0..50 {
        server
            .create(&server.base, &patient(&format!("P{n}"), &format!("M{n}")))
            .await;
    }
    let status_url = kick_off(&server, "$export").await;
    let job = status_url.rsplit('/').next().unwrap().to_owned();
    // The server dies while the job runs: whatever state it reached, the row says running
    // with a lease that lapsed long ago, as a dead worker leaves it.
    server.kill9().await;
    server.sql(&format!(
        "UPDATE jobs SET status = 'running', updated_at = 0 WHERE id = '{job}'"
    ));
    let starts = server.log().matches("export started").count();
    server.start_again().await;
    let done = manifest(&server, &status_url).await;
    assert_eq!(exported(&server, &done).await.len(), 50);
    assert_eq!(
        server.log().matches("export started").count(),
        starts + 1,
        "the restarted server's worker took the abandoned job over"
    );
    let files = server.dir.join("exports").join(&job);
    assert!(files.is_dir(), "the files are in FHIR_EXPORT_DIR");

    // Three seconds later it has expired, and the worker removes it.
    let file = done["output"][0]["url"].as_str().unwrap().to_owned();
    let mut gone = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if server.get_json_url(&status_url).await.0 == 404 {
            gone = true;
            break;
        }
    }
    assert!(gone, "the expired export is removed");
    assert_eq!(server.get_json_url(&file).await.0, 404);
    assert!(!files.exists(), "the expired files are deleted");
}
both_backends!(export_survives_restart_and_expires);

/// Resources without what a store sets afresh (version and time), by `Type/id`.
fn comparable(resources: BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    resources
        .into_iter()
        .map(|(key, mut resource)| {
            if let Some(meta) = resource.get_mut("meta").and_then(Value::as_object_mut) {
                meta.remove("versionId");
                meta.remove("lastUpdated");
                if meta.is_empty() {
                    resource.as_object_mut().unwrap().remove("meta");
                }
            }
            (key, resource)
        })
        .collect()
}

/// The NDJSON files of a folder: `Type/id` -> resource.
fn read_folder(dir: &std::path::Path) -> BTreeMap<String, Value> {
    let mut resources = BTreeMap::new();
    for file in std::fs::read_dir(dir).unwrap() {
        let path = file.unwrap().path();
        assert_eq!(path.extension().unwrap(), "ndjson");
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let resource: Value = serde_json::from_str(line).unwrap();
            resources.insert(reference(&resource), resource);
        }
    }
    resources
}

fn run_ok(server: &Server, args: &[&str]) -> String {
    let output = server.run_cli(args);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// An export of one database, imported into an empty one, gives the same resources; and
/// the same through `$export` files.
async fn export_then_import_gives_the_same_resources(backend: Backend) {
    let Some(source) = Server::start(backend).await else {
        return;
    };
    let refs = practice(&source).await;
    // A second version, and a deleted resource that must not travel.
    let mut bob = source
        .get_json_url(&format!("{}/{}", source.base, refs["bob"]))
        .await
        .1;
    bob["active"] = json!(true);
    let response = source
        .client
        .put(format!("{}/{}", source.base, refs["bob"]))
        .header("content-type", JSON)
        .body(bob.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = source
        .client
        .delete(format!("{}/{}", source.base, refs["encounter_bob"]))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());

    let out = source.dir.join("cli-export");
    let printed = run_ok(&source, &["export", "--out", out.to_str().unwrap()]);
    // Seven, and the Provenance written with the Appointment.
    assert!(printed.contains("exported 8 resources"), "{printed}");
    let files = read_folder(&out);
    assert_eq!(files.len(), 8);
    assert!(!files.contains_key(&refs["encounter_bob"]));

    // --type keeps only those types.
    let patients_out = source.dir.join("cli-patients");
    run_ok(
        &source,
        &[
            "export",
            "--out",
            patients_out.to_str().unwrap(),
            "--type",
            "Patient",
        ],
    );
    assert_eq!(
        read_folder(&patients_out)
            .into_keys()
            .collect::<BTreeSet<_>>(),
        [refs["alice"].clone(), refs["bob"].clone()].into()
    );

    let Some(target) = Server::start(backend).await else {
        return;
    };
    let printed = run_ok(&target, &["import", out.to_str().unwrap()]);
    assert!(printed.contains("8 resources loaded"), "{printed}");
    let copy = target.dir.join("cli-copy");
    run_ok(&target, &["export", "--out", copy.to_str().unwrap()]);
    assert_eq!(comparable(read_folder(&copy)), comparable(files.clone()));
    // The server on the target database reads them, and searches find them.
    let (status, alice) = target
        .get_json_url(&format!("{}/{}", target.base, refs["alice"]))
        .await;
    assert_eq!(status, 200);
    assert_eq!(alice["name"][0]["family"], "Alice");
    let (_, found) = target
        .get_json_url(&format!(
            "{}/Appointment?patient={}",
            target.base, refs["alice"]
        ))
        .await;
    assert_eq!(found["entry"].as_array().map(Vec::len), Some(1), "{found}");

    // $export of the source gives the same resources as the command.
    let done = manifest(&source, &kick_off(&source, "$export").await).await;
    assert_eq!(
        comparable(exported(&source, &done).await),
        comparable(files)
    );
}
both_backends!(export_then_import_gives_the_same_resources);

/// Import reads Bundles (a transaction with urn:uuid references, a collection), NDJSON and
/// folders; bad files and bad lines are reported and the rest is loaded.
async fn import_goes_on_past_bad_input(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let input = server.dir.join("input");
    std::fs::create_dir_all(input.join("nested")).unwrap();
    let patient_urn = "urn:uuid:7c1a2b3c-0000-4000-8000-00000000000a";
    let transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": patient_urn,
         "resource": {"resourceType": "Patient", "name": [{"family": "Synthea"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:7c1a2b3c-0000-4000-8000-00000000000b",
         "resource": {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
                      "subject": {"reference": patient_urn}},
         "request": {"method": "POST", "url": "Encounter"}}]});
    std::fs::write(input.join("a-synthea.json"), transaction.to_string()).unwrap();
    let collection = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Organization", "id": "org-1", "name": "Kept id"}},
        {"resource": {"resourceType": "Organization", "name": 12}}]});
    std::fs::write(input.join("b-collection.json"), collection.to_string()).unwrap();
    let lines = [
        json!({"resourceType": "Patient", "id": "p-1", "gender": "female"}).to_string(),
        "{ this is not json".to_owned(),
        json!({"resourceType": "Patient", "id": "p-2", "gender": "sometimes"}).to_string(),
        String::new(),
        json!({"resourceType": "Practitioner", "id": "dr-1"}).to_string(),
    ];
    std::fs::write(input.join("nested").join("c.ndjson"), lines.join("\n")).unwrap();
    std::fs::write(input.join("d-broken.json"), "[1, 2").unwrap();
    // A transaction whose second entry is invalid loads nothing of it.
    let bad_transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": "never"},
         "request": {"method": "PUT", "url": "Patient/never"}},
        {"resource": {"resourceType": "Patient", "birthDate": "yesterday"},
         "request": {"method": "POST", "url": "Patient"}}]});
    std::fs::write(
        input.join("e-bad-transaction.json"),
        bad_transaction.to_string(),
    )
    .unwrap();
    std::fs::write(input.join("ignored.txt"), "not read").unwrap();
    // A batch: its bad entry fails alone.
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "gender": "never"},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "id": "from-batch"},
         "request": {"method": "PUT", "url": "Patient/from-batch"}}]});
    std::fs::write(input.join("f-batch.json"), batch.to_string()).unwrap();
    // A line that is not UTF-8 fails alone; the next one loads.
    let mut bytes = b"{\"resourceType\": \"Patient\", \"id\": \"bad\xff\"}\n".to_vec();
    bytes.extend_from_slice(
        json!({"resourceType": "Patient", "id": "after-bad-byte"})
            .to_string()
            .as_bytes(),
    );
    std::fs::write(input.join("g.ndjson"), bytes).unwrap();
    // Synthea: a patient Bundle (its name sorts first) refers to its hospital by a
    // conditional reference; the hospital file is loaded first.
    let patient_bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:7c1a2b3c-0000-4000-8000-0000000000c1",
         "resource": {"resourceType": "Patient", "id": "synthea-kid",
                      "managingOrganization": {"reference": "Organization?identifier=https://github.com/synthetichealth/synthea|hosp-1"}},
         "request": {"method": "PUT", "url": "Patient/synthea-kid"}}]});
    std::fs::write(
        input.join("Aaron697_Smith.json"),
        patient_bundle.to_string(),
    )
    .unwrap();
    let hospital = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:7c1a2b3c-0000-4000-8000-0000000000c2",
         "resource": {"resourceType": "Organization", "name": "General",
                      "identifier": [{"system": "https://github.com/synthetichealth/synthea", "value": "hosp-1"}]},
         "request": {"method": "POST", "url": "Organization",
                     "ifNoneExist": "identifier=https://github.com/synthetichealth/synthea|hosp-1"}}]});
    std::fs::write(
        input.join("hospitalInformation1.json"),
        hospital.to_string(),
    )
    .unwrap();

    let output = server.run_cli(&["import", input.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        !output.status.success(),
        "failures make the exit status 1: {stdout}"
    );
    assert!(stdout.contains("imported 9 files"), "{stdout}");
    assert!(stdout.contains("9 resources loaded"), "{stdout}");
    assert!(
        stdout.contains("1 entries skipped"),
        "the batch's read: {stdout}"
    );
    assert!(stdout.contains("f-batch.json entry 1"), "{stdout}");
    assert!(stdout.contains("g.ndjson:1"), "{stdout}");
    assert!(
        stdout.contains("c.ndjson:2"),
        "the bad line is named: {stdout}"
    );
    assert!(stdout.contains("c.ndjson:3"), "{stdout}");
    assert!(
        stdout.contains("Patient.gender"),
        "the reason names the element: {stdout}"
    );
    assert!(stdout.contains("b-collection.json entry 1"), "{stdout}");
    assert!(stdout.contains("d-broken.json"), "{stdout}");
    assert!(stdout.contains("e-bad-transaction.json"), "{stdout}");

    for (path, expected) in [
        ("Patient/p-1", 200),
        ("Patient/p-2", 404),
        ("Practitioner/dr-1", 200),
        ("Organization/org-1", 200),
        ("Patient/never", 404),
        ("Patient/from-batch", 200),
        ("Patient/after-bad-byte", 200),
        ("Patient/synthea-kid", 200),
    ] {
        let (status, _) = server
            .get_json_url(&format!("{}/{path}", server.base))
            .await;
        assert_eq!(status, expected, "{path}");
    }
    // The transaction's encounter points at its patient's new id.
    let (_, encounters) = server
        .get_json_url(&format!("{}/Encounter", server.base))
        .await;
    let subject = encounters["entry"][0]["resource"]["subject"]["reference"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, synthea) = server
        .get_json_url(&format!("{}/{subject}", server.base))
        .await;
    assert_eq!(status, 200, "{subject}");
    assert_eq!(synthea["name"][0]["family"], "Synthea");

    // A path that does not exist is an error before anything runs.
    let output = server.run_cli(&["import", "/nonexistent/file.ndjson"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no such file"));
}
both_backends!(import_goes_on_past_bad_input);

/// The statement timeout bounds a request's search (503), but neither `import` nor an
/// export job, which must finish however long they take.
async fn the_statement_timeout_bounds_requests_not_jobs(backend: Backend) {
    let Some(server) = Server::start_with(backend, &["--statement-timeout-ms", "1"], &[]).await
    else {
        eprintln!("skipped: FHIR_TEST_POSTGRES_URL is not set");
        return;
    };
    let input = server.dir.join("patients.ndjson");
    let lines: Vec<String> = (0..3000)
        .map(|n| {
            json!({"resourceType": "Patient", "id": format!("t{n}"),
                "name": [{"family": format!("Family{n}"), "given": [format!("Given{n}"), "Other"]}],
                "address": [{"line": [format!("{n} Main Street")], "city": "Town"}]})
            .to_string()
        })
        .collect();
    std::fs::write(&input, lines.join("\n")).unwrap();
    let output = server.run_cli(&["import", input.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let costly =
        "Patient?name:contains=a,b,c,d,e,f,g&address:contains=x,y,z&_total=accurate&_sort=family";
    let response = server
        .client
        .get(format!("{}/{costly}", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let outcome: Value = response.json().await.unwrap();
    assert_eq!(outcome["issue"][0]["code"], "timeout", "{outcome}");

    // Export jobs are not bounded: all 3,000 come out. The kick-off is a request, bounded
    // like any other: on a loaded machine its insert may pass 1 ms, so a 503 is retried.
    let mut status_url = None;
    for _ in 0..50 {
        let response = server
            .client
            .get(format!("{}/$export?_type=Patient", server.base))
            .header("accept", JSON)
            .header("prefer", "respond-async")
            .send()
            .await
            .unwrap();
        if response.status() == 503 {
            continue;
        }
        assert_eq!(response.status(), 202, "{:?}", response.text().await);
        status_url = Some(
            response.headers()["content-location"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
        break;
    }
    let status_url = status_url.expect("a kick-off within the statement timeout");
    let files = manifest(&server, &status_url).await;
    assert_eq!(files["output"][0]["count"], 3000, "{files}");
    // And the server still answers.
    let response = server
        .client
        .get(format!("{}/metadata", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}
both_backends!(the_statement_timeout_bounds_requests_not_jobs);

/// Right after a bulk load PostgreSQL's statistics are stale and it plans searches as
/// scans: the server refreshes them at once after a load, not at its next 15 s round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_are_refreshed_after_a_bulk_load() {
    let Some(server) = Server::start(Backend::Postgres).await else {
        eprintln!("skipped: FHIR_TEST_POSTGRES_URL is not set");
        return;
    };
    let analyzed = || {
        let output = std::process::Command::new("psql")
            .arg(&server.database_url)
            .args(["-At", "-c", "SELECT count(*) FROM pg_stat_user_tables WHERE relname = 'idx_token' AND last_analyze IS NOT NULL"])
            .output()
            .expect("psql runs");
        String::from_utf8_lossy(&output.stdout).trim() == "1"
    };
    // The server's first round ran at its start, on empty tables: nothing to analyze.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!analyzed());
    let entries: Vec<Value> = (0..2500)
        .map(|n| {
            json!({"fullUrl": format!("urn:uuid:00000000-0000-4000-8000-{n:012}"),
                "resource": patient("Bulk", &format!("bulk-{n}")),
                "request": {"method": "POST", "url": "Patient"}})
        })
        .collect();
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    let response = server
        .client
        .post(&server.base)
        .header("content-type", JSON)
        .body(bundle.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let loaded = std::time::Instant::now();
    while !analyzed() {
        assert!(
            loaded.elapsed() < Duration::from_secs(10),
            "the tables were not analyzed after the load"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
