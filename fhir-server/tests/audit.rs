//! The audit trail, on both databases: every access recorded (reads, searches, writes,
//! refusals, sign-ins, tokens) as BALP AuditEvents only admins may search; a patient's
//! accounting of who saw their record; break-glass reads allowed, flagged and listed;
//! nothing written through the API; a read's record kept over a normal shutdown; the hash
//! chain catching rows changed, removed or inserted behind the server's back; one chain
//! from many clients and (on PostgreSQL) two server processes at once.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure
#![allow(clippy::too_many_lines)] // a test reads as one story

mod common;

use base64::Engine;
use common::signin::{PASSWORD, VERIFIER, exchange, form, query_value, sign_in, with_token};
use common::{Backend, Server, entries};
use fhir_server::store::audit::Stored;
use serde_json::{Value, json};

const STAFF_SCOPE: &str = "user/*.cruds openid fhirUser";
const PATIENT_SCOPE: &str = "launch/patient patient/*.cruds openid fhirUser";

/// The people of the practice: username, role, resource.
const PEOPLE: &[(&str, &str, &str)] = &[
    ("boss", "admin", "Practitioner/a1"),
    ("doc", "provider", "Practitioner/d1"),
    ("desk", "front-desk", "Practitioner/f1"),
    ("pat", "patient", "Patient/p1"),
];

fn cli(server: &Server, args: &[&str]) -> (bool, String, String) {
    let output = server.run_cli(args);
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn cli_ok(server: &Server, args: &[&str]) -> String {
    let (ok, out, err) = cli(server, args);
    assert!(ok, "{args:?}: {err}");
    out
}

async fn get(server: &Server, token: &str, path: &str) -> (u16, Value) {
    with_token(server, token, reqwest::Method::GET, path, None).await
}

/// A server under `--auth smart` with the practice's people signed in; their tokens and a
/// backend's. `None` when PostgreSQL is not set up.
async fn practice(
    backend: Backend,
) -> Option<(Server, std::collections::HashMap<&'static str, String>)> {
    let args = ["--auth", "smart", "--admin-token", "admin-secret"];
    let Some(server) = Server::start_with(backend, &args, &[]).await else {
        eprintln!("skipped: FHIR_TEST_POSTGRES_URL is not set");
        return None;
    };
    common::signin::public_app(
        &server,
        "launch/patient patient/*.cruds user/*.cruds openid fhirUser",
    );
    let backend_token = common::signin::backend_client(
        &server,
        "backend",
        "backend-secret-0123456789",
        "system/*.cruds",
    )
    .await;
    let mut tokens = std::collections::HashMap::new();
    tokens.insert("backend", backend_token);
    common::signin::put_all(
        &server,
        &tokens["backend"],
        &[
        json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Quill", "given": ["Ada"]}]}),
        json!({"resourceType": "Patient", "id": "p2", "name": [{"family": "Other"}]}),
        json!({"resourceType": "Practitioner", "id": "d1", "name": [{"family": "Doc"}]}),
        json!({"resourceType": "Observation", "id": "o1", "status": "final",
            "code": {"text": "glucose"}, "subject": {"reference": "Patient/p1"}}),
        json!({"resourceType": "Appointment", "id": "a1", "status": "booked",
            "start": "2026-12-10T09:00:00Z", "end": "2026-12-10T09:30:00Z",
            "participant": [{"actor": {"reference": "Patient/p1"}, "status": "accepted"},
                {"actor": {"reference": "Practitioner/d1"}, "status": "accepted"}]}),
        ],
    )
    .await;
    for (_, _, reference) in PEOPLE {
        let (kind, id) = reference.split_once('/').unwrap();
        if kind == "Practitioner" {
            let person = json!({"resourceType": kind, "id": id, "name": [{"family": id}]});
            let (status, body) = with_token(
                &server,
                &tokens["backend"],
                reqwest::Method::PUT,
                reference,
                Some(&person),
            )
            .await;
            assert!(status == 200 || status == 201, "{reference}: {body}");
        }
    }
    for (username, role, reference) in PEOPLE {
        let scope = if *role == "patient" {
            PATIENT_SCOPE
        } else {
            STAFF_SCOPE
        };
        let person = (*username, *role, *reference);
        tokens.insert(
            *username,
            common::signin::user_token(&server, person, scope).await,
        );
    }
    Some((server, tokens))
}

/// The AuditEvents an admin finds for `query`, after the recorder's next flush.
async fn audit_events(server: &Server, admin: &str, query: &str) -> Vec<Value> {
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (status, bundle) = get(server, admin, &format!("AuditEvent?{query}")).await;
    assert_eq!(status, 200, "{query}: {bundle}");
    entries(&bundle)
        .into_iter()
        .map(|e| e["resource"].clone())
        .collect()
}

fn subtype(event: &Value) -> &str {
    event["subtype"][0]["code"].as_str().unwrap_or_default()
}

fn agent_refs(event: &Value) -> Vec<String> {
    event["agent"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["who"]["reference"].as_str().map(str::to_owned))
        .collect()
}

fn entity_refs(event: &Value) -> Vec<String> {
    event["entity"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["what"]["reference"].as_str().map(str::to_owned))
        .collect()
}

async fn accesses_are_recorded_and_only_admins_read_them(backend: Backend) {
    let Some((mut server, tokens)) = practice(backend).await else {
        return;
    };
    let client = reqwest::Client::new();
    // A provider reads and searches; nobody without a token gets in; the front desk is
    // refused a lab result until it breaks the glass.
    let read = client
        .get(format!("{}/Patient/p1", server.base))
        .bearer_auth(&tokens["doc"])
        .header("user-agent", "audit-test-agent/1.0")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let (status, _) = get(
        &server,
        &tokens["doc"],
        "Appointment?patient=Patient/p1&status=booked",
    )
    .await;
    assert_eq!(status, 200);
    let anonymous = client
        .get(format!("{}/Patient/p1", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let (status, _) = get(&server, &tokens["desk"], "Observation/o1").await;
    assert_eq!(status, 403, "the front desk reads no lab results");
    let glass = client
        .get(format!("{}/Observation/o1", server.base))
        .bearer_auth(&tokens["desk"])
        .header("x-break-glass", "patient collapsed in the waiting room")
        .send()
        .await
        .unwrap();
    assert_eq!(
        glass.status(),
        200,
        "breaking the glass lets the desk read it"
    );
    let glass_write = client
        .put(format!("{}/Observation/o1", server.base))
        .bearer_auth(&tokens["desk"])
        .header("x-break-glass", "still an emergency")
        .header("content-type", "application/fhir+json")
        .body(json!({"resourceType": "Observation", "id": "o1", "status": "amended", "code": {"text": "glucose"}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(glass_write.status(), 403, "the glass opens reading only");
    let patient_glass = client
        .get(format!("{}/Patient/p2", server.base))
        .bearer_auth(&tokens["pat"])
        .header("x-break-glass", "curious")
        .send()
        .await
        .unwrap();
    assert_eq!(
        patient_glass.status(),
        404,
        "a patient has no glass to break"
    );
    // A failed sign-in.
    assert!(
        sign_in(&server, "desk", "wrong password", STAFF_SCOPE, &[])
            .await
            .is_err()
    );

    // Only an admin searches the trail.
    for who in ["doc", "desk", "pat", "backend"] {
        let (status, body) = get(&server, &tokens[who], "AuditEvent?patient=p1").await;
        assert_eq!(status, 403, "{who}: {body}");
    }
    let admin = tokens["boss"].as_str();
    let about_p1 = audit_events(&server, admin, "patient=p1&_count=200").await;
    let doc_read = about_p1
        .iter()
        .find(|e| subtype(e) == "read" && agent_refs(e).contains(&"Practitioner/d1".into()))
        .expect("the provider's read is recorded");
    assert_eq!(doc_read["action"], "R");
    assert_eq!(doc_read["outcome"], "0");
    assert!(
        entity_refs(doc_read).contains(&"Patient/p1/_history/1".into()),
        "{doc_read}"
    );
    let client_agent = &doc_read["agent"][0];
    assert_eq!(client_agent["who"]["identifier"]["value"], "app");
    assert_eq!(client_agent["network"]["address"], "127.0.0.1");
    assert_eq!(client_agent["name"], "audit-test-agent/1.0");
    assert!(
        client_agent["policy"][0]
            .as_str()
            .unwrap()
            .starts_with("urn:ietf:params:oauth:jti:")
    );
    assert_eq!(doc_read["agent"][1]["altId"], "doc");
    let search = about_p1
        .iter()
        .find(|e| {
            subtype(e) == "search-type"
                && e["entity"][0]["what"]["display"] == "Appointment"
                && agent_refs(e).contains(&"Practitioner/d1".into())
        })
        .expect("the provider's search is recorded, with its patient");
    let query = search["entity"][0]["query"].as_str().unwrap();
    let query = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(query)
            .unwrap(),
    )
    .unwrap();
    assert!(query.contains("patient=Patient%2Fp1"), "{query}");
    let refused = about_p1
        .iter()
        .find(|e| e["outcomeDesc"] == "HTTP 401")
        .expect("the request without a token is recorded");
    assert_eq!(refused["outcome"], "4");
    let glass_read = about_p1
        .iter()
        .find(|e| {
            e["purposeOfEvent"][0]["coding"][0]["code"] == "BTG" && e["outcomeDesc"] == "HTTP 200"
        })
        .expect("the break-glass read is recorded, flagged");
    assert_eq!(
        glass_read["purposeOfEvent"][0]["text"],
        "patient collapsed in the waiting room"
    );
    let created = about_p1
        .iter()
        .find(|e| subtype(e) == "update" || subtype(e) == "create")
        .expect("the backend's write is recorded");
    assert_eq!(created["agent"][0]["who"]["identifier"]["value"], "backend");
    // Searches by agent, entity, date, subtype and purpose; paging; bad parameters.
    let by_doc = audit_events(&server, admin, "agent=Practitioner/d1").await;
    assert!(!by_doc.is_empty());
    assert!(
        by_doc
            .iter()
            .all(|e| agent_refs(e).contains(&"Practitioner/d1".into()))
    );
    let by_entity = audit_events(&server, admin, "entity=Observation/o1").await;
    assert!(by_entity.len() >= 4, "{by_entity:?}");
    let desk_refused = by_entity
        .iter()
        .find(|e| e["outcomeDesc"] == "HTTP 403" && subtype(e) == "read")
        .expect("the desk's refusal is recorded");
    assert!(agent_refs(desk_refused).contains(&"Practitioner/f1".into()));
    assert!(desk_refused["purposeOfEvent"].is_null());
    assert!(
        audit_events(&server, admin, "date=lt2000-01-01")
            .await
            .is_empty()
    );
    assert!(
        !audit_events(&server, admin, "date=ge2020-01-01&date=le2100")
            .await
            .is_empty()
    );
    let failed_logins = audit_events(&server, admin, "subtype=login-failed").await;
    assert_eq!(failed_logins.len(), 1, "{failed_logins:?}");
    assert_eq!(failed_logins[0]["agent"][1]["altId"], "desk");
    assert_eq!(failed_logins[0]["outcome"], "4");
    assert_eq!(audit_events(&server, admin, "subtype=login").await.len(), 4);
    assert!(audit_events(&server, admin, "subtype=token").await.len() >= 5);
    let glass = audit_events(&server, admin, "purpose=BTG").await;
    assert_eq!(glass.len(), 2, "the read and the refused write: {glass:?}");
    let (status, page) = get(&server, admin, "AuditEvent?_count=2").await;
    assert_eq!(status, 200);
    assert_eq!(entries(&page).len(), 2);
    let next = common::link(&page, "next").expect("a next page");
    let (status, second) =
        common::json(client.get(&next).bearer_auth(admin).send().await.unwrap()).await;
    assert_eq!(status, 200);
    let first_ids: Vec<Value> = entries(&page)
        .iter()
        .map(|e| e["resource"]["id"].clone())
        .collect();
    assert!(
        entries(&second)
            .iter()
            .all(|e| !first_ids.contains(&e["resource"]["id"]))
    );
    let id = first_ids[0].as_str().unwrap();
    let (status, one) = get(&server, admin, &format!("AuditEvent/{id}")).await;
    assert_eq!((status, one["id"].as_str()), (200, Some(id)));
    for bad in [
        "AuditEvent?name=x",
        "AuditEvent?date=yesterday",
        "AuditEvent?_count=many",
    ] {
        let (status, outcome) = get(&server, admin, bad).await;
        assert_eq!(status, 400, "{bad}: {outcome}");
        assert!(
            outcome["issue"][0]["diagnostics"]
                .as_str()
                .unwrap()
                .contains("AuditEvent search parameter")
        );
    }
    // Nobody writes the trail.
    let event = json!({"resourceType": "AuditEvent", "id": id, "recorded": "2026-01-01T00:00:00Z",
        "type": {"code": "rest"}, "agent": [{"requestor": true}], "source": {"observer": {"display": "x"}}});
    for (method, path) in [
        (reqwest::Method::DELETE, format!("AuditEvent/{id}")),
        (reqwest::Method::PUT, format!("AuditEvent/{id}")),
        (reqwest::Method::POST, "AuditEvent".to_owned()),
    ] {
        let (status, outcome) =
            with_token(&server, admin, method.clone(), &path, Some(&event)).await;
        assert_eq!(status, 405, "{method} {path}: {outcome}");
    }
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": event, "request": {"method": "POST", "url": "AuditEvent"}}]});
    let (status, outcome) =
        with_token(&server, admin, reqwest::Method::POST, "", Some(&bundle)).await;
    assert_eq!(status, 405, "{outcome}");

    // The patient's accounting: who saw their record; for them and admins only.
    let (status, log) = get(
        &server,
        &tokens["pat"],
        "Patient/p1/$access-log?_count=1000",
    )
    .await;
    assert_eq!(status, 200, "{log}");
    let log: Vec<Value> = entries(&log)
        .into_iter()
        .map(|e| e["resource"].clone())
        .collect();
    assert!(
        log.iter()
            .any(|e| subtype(e) == "read" && agent_refs(e).contains(&"Practitioner/d1".into())),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|e| e["purposeOfEvent"][0]["coding"][0]["code"] == "BTG")
    );
    let (status, _) = get(&server, &tokens["pat"], "Patient/p2/$access-log").await;
    assert_eq!(
        status, 404,
        "another patient's accounting is not there for a patient"
    );
    let (status, _) = get(&server, &tokens["doc"], "Patient/p1/$access-log").await;
    assert_eq!(status, 403);
    // Erasure is an admin's alone: a provider is refused,
    // with an OperationOutcome, and the patient stays.
    let parameters = json!({"resourceType": "Parameters"});
    let (status, outcome) = with_token(
        &server,
        &tokens["doc"],
        reqwest::Method::POST,
        "Patient/p2/$erase",
        Some(&parameters),
    )
    .await;
    assert_eq!(status, 403, "{outcome}");
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(get(&server, admin, "Patient/p2").await.0, 200);
    let (status, _) = get(&server, admin, "Patient/p1/$access-log?date=ge2020").await;
    assert_eq!(status, 200);

    // The break-glass report, from the command line.
    let report = cli_ok(&server, &["audit", "break-glass"]);
    assert_eq!(report.lines().count(), 2, "{report}");
    assert!(
        report.contains("patient collapsed in the waiting room") && report.contains("\"desk\""),
        "{report}"
    );

    // A read answered just before a normal shutdown is in the trail after it, sealed.
    let (status, _) = get(&server, &tokens["doc"], "Patient/p2").await;
    assert_eq!(status, 200);
    assert!(server.terminate().await, "the server stops cleanly");
    let verified = cli_ok(&server, &["audit", "verify"]);
    assert!(verified.contains("intact"), "{verified}");
    server.start_again().await;
    let p2 = audit_events(&server, admin, "entity=Patient/p2&agent=Practitioner/d1").await;
    assert_eq!(p2.len(), 1, "{p2:?}");
    assert!(
        p2[0]["extension"][0]["url"]
            .as_str()
            .unwrap()
            .contains("audit-chain"),
        "sealed"
    );
}

/// Statements on the server's database, then `audit verify`'s verdict.
fn tamper(server: &Server, sql: &str) -> (bool, String) {
    if !sql.is_empty() {
        server.sql(&keyed(server, sql));
    }
    let (ok, out, err) = cli(server, &["audit", "verify"]);
    (ok, format!("{out}{err}"))
}

/// `sql` as a tamperer would write it for this database: on SQLite a record's rowid is
/// its key, `tid << 44 | seq` (migration 0015), renumbered with it and given to a row
/// inserted by hand.
fn keyed(server: &Server, sql: &str) -> String {
    if server.backend != Backend::Sqlite {
        return sql.to_owned();
    }
    let statements: Vec<String> = sql
        .split("; ")
        .map(|statement| match statement.split_once("SET seq = seq ") {
            Some((head, rest)) => {
                let (change, condition) = rest.split_once(" WHERE ").unwrap();
                format!("{head}SET seq = seq {change}, key = key {change} WHERE {condition}")
            }
            None => statement
                .replace(
                    "INSERT INTO audit_log (tid, ",
                    "INSERT INTO audit_log (key, tid, ",
                )
                .replace("SELECT tid, 9, ", "SELECT (tid << 44) | 9, tid, 9, "),
        })
        .collect();
    statements.join("; ")
}

async fn tampering_is_caught(server: Server) {
    let mut server = server;
    for n in 0..6 {
        let patient = common::patient(&format!("Tamper{n}"), &format!("T-{n}"));
        let created = server.create(&server.base.clone(), &patient).await;
        let id = common::id_of(&created);
        common::get(&server, &format!("Patient/{id}"))
            .await
            .expect(200);
    }
    common::get(&server, "Patient?family=Tamper0")
        .await
        .expect(200);
    assert!(server.terminate().await);
    let (ok, verdict) = tamper(&server, "");
    assert!(ok && verdict.contains("records 1 to 13"), "{verdict}");
    let (tid, pristine) = common::trail::records(&server).await;
    if server.backend == Backend::Sqlite {
        // This server writes blocks; the cases below edit rows, as a trail written before
        // migration 0016 has them (the blocks' own cases are at the end).
        let (blocks, rows) = common::trail::layout(&server);
        assert!(blocks > 0 && rows == 0, "{blocks} blocks, {rows} rows");
        common::trail::write_rows(&server, tid, &pristine);
        assert!(tamper(&server, "").0);
    }
    let head_file = server.dir.join("head.json");
    std::fs::write(&head_file, cli_ok(&server, &["audit", "head"])).unwrap();
    let head = head_file.to_str().unwrap();

    // A record changed.
    let (ok, verdict) = tamper(
        &server,
        "UPDATE audit_log SET entity = entity || 'x' WHERE seq = 5",
    );
    assert!(!ok && verdict.contains("record 5 was CHANGED"), "{verdict}");
    let (ok, verdict) = tamper(
        &server,
        "UPDATE audit_log SET entity = substr(entity, 1, length(entity) - 1) WHERE seq = 5",
    );
    assert!(ok, "{verdict}");
    // A record removed.
    let (ok, verdict) = tamper(
        &server,
        "CREATE TABLE audit_saved AS SELECT * FROM audit_log WHERE seq = 7; DELETE FROM audit_log WHERE seq = 7",
    );
    assert!(!ok && verdict.contains("record 7 was REMOVED"), "{verdict}");
    let (ok, verdict) = tamper(
        &server,
        "INSERT INTO audit_log SELECT * FROM audit_saved; DROP TABLE audit_saved",
    );
    assert!(ok, "{verdict}");
    // A record removed and the later ones renumbered to hide the gap.
    let shift_down = "CREATE TABLE audit_saved AS SELECT * FROM audit_log WHERE seq = 7; \
         DELETE FROM audit_log WHERE seq = 7; \
         UPDATE audit_log SET seq = seq + 1000000 WHERE seq > 7; \
         UPDATE audit_log SET seq = seq - 1000001 WHERE seq > 1000000; \
         UPDATE audit_sequence SET last = last - 1";
    let (ok, verdict) = tamper(&server, shift_down);
    assert!(
        !ok && verdict.contains("the record before 7 was REMOVED"),
        "{verdict}"
    );
    let shift_back = "UPDATE audit_log SET seq = seq + 1000001 WHERE seq >= 7; \
         UPDATE audit_log SET seq = seq - 1000000 WHERE seq > 1000000; \
         INSERT INTO audit_log SELECT * FROM audit_saved; DROP TABLE audit_saved; \
         UPDATE audit_sequence SET last = last + 1";
    assert!(tamper(&server, shift_back).0);
    // A record inserted, sealed as the server would seal it, by someone who can compute
    // the chain but not rewrite what comes after.
    let store = fhir_server::store::Store::open(&server.database_url, 1, None)
        .await
        .unwrap();
    let tenant = store.tenant_id("default").await.unwrap().unwrap();
    let records = store.audit_records(tenant, 0, 100).await.unwrap();
    let mut forged = records[8].clone();
    forged.seq = 9;
    forged.entry.entity = Some("Patient/forged".into());
    let prev = records[7].hash.clone().unwrap();
    let hash = fhir_server::store::audit::seal_hash(&prev, &forged);
    drop(store);
    let insert = format!(
        "UPDATE audit_log SET seq = seq + 1000000 WHERE seq >= 9; \
         UPDATE audit_log SET seq = seq - 999999 WHERE seq > 1000000; \
         INSERT INTO audit_log (tid, seq, recorded, event, action, status, user_id, \
         fhir_user, client_id, token, address, user_agent, entity, query, via, patients, \
         request_id, purpose, reason, prev, hash) SELECT tid, 9, recorded, event, action, status, user_id, \
         fhir_user, client_id, token, address, user_agent, 'Patient/forged', query, via, patients, \
         request_id, purpose, reason, '{prev}', '{hash}' \
         FROM audit_log WHERE seq = 10; UPDATE audit_sequence SET last = last + 1"
    );
    let (ok, verdict) = tamper(&server, &insert);
    assert!(
        !ok && verdict.contains("record 9 was INSERTED"),
        "{verdict}"
    );
    let undo = "DELETE FROM audit_log WHERE seq = 9; \
         UPDATE audit_log SET seq = seq + 999999 WHERE seq > 9; \
         UPDATE audit_log SET seq = seq - 1000000 WHERE seq > 1000000; \
         UPDATE audit_sequence SET last = last - 1";
    let (ok, verdict) = tamper(&server, undo);
    assert!(ok, "{verdict}");
    // The end cut off: the numbers taken say so; cut off with them too, the exported head
    // says so.
    let (ok, verdict) = tamper(
        &server,
        "CREATE TABLE audit_saved AS SELECT * FROM audit_log WHERE seq > 11; DELETE FROM audit_log WHERE seq > 11",
    );
    assert!(
        !ok && verdict.contains("records 12 to 13 were REMOVED"),
        "{verdict}"
    );
    server.sql("UPDATE audit_sequence SET last = 11");
    let (ok, _) = tamper(&server, "");
    assert!(
        ok,
        "without the head, a tail cut off cleanly cannot be told"
    );
    let (ok, out, err) = cli(&server, &["audit", "verify", "--head", head]);
    assert!(
        !ok && err.contains("head 13 is not in the trail"),
        "{out}{err}"
    );
    server.sql("INSERT INTO audit_log SELECT * FROM audit_saved; DROP TABLE audit_saved; UPDATE audit_sequence SET last = 13");
    let (ok, out, err) = cli(&server, &["audit", "verify", "--head", head]);
    assert!(ok, "{out}{err}");
    if server.backend == Backend::Sqlite {
        // A record moved out of its place: its key changed, not its number.
        let moved = "UPDATE audit_log SET key = key + 1000 WHERE seq = 5";
        let (ok, verdict) = tamper(&server, moved);
        assert!(!ok && verdict.contains("record 5 was REMOVED"), "{verdict}");
        let back = "UPDATE audit_log SET key = key - 1000 WHERE seq = 5";
        assert!(tamper(&server, back).0);
    }
    // A record whose seal was taken off.
    let (ok, verdict) = tamper(
        &server,
        "UPDATE audit_log SET prev = NULL, hash = NULL WHERE seq = 12",
    );
    assert!(
        !ok && verdict.contains("record 12 carries no seal"),
        "{verdict}"
    );
    if server.backend == Backend::Sqlite {
        tampered_blocks_are_caught(&server, tid, &pristine);
    }
}

/// The cases of `tampering_is_caught` on SQLite's blocks: each record edited, removed,
/// renumbered or put in where the block keeps it, sealed as it was.
fn tampered_blocks_are_caught(server: &Server, tid: i64, pristine: &[Stored]) {
    let blocks = |records: &[Stored]| common::trail::write_blocks(server, tid, records);
    let without =
        |seq: i64| -> Vec<Stored> { pristine.iter().filter(|r| r.seq != seq).cloned().collect() };
    blocks(pristine);
    assert!(tamper(server, "").0);
    let mut changed = pristine.to_vec();
    changed[4].entry.entity = Some("Patient/changed".into());
    blocks(&changed);
    let (ok, verdict) = tamper(server, "");
    assert!(!ok && verdict.contains("record 5 was CHANGED"), "{verdict}");
    blocks(&without(7));
    let (ok, verdict) = tamper(server, "");
    assert!(!ok && verdict.contains("record 7 was REMOVED"), "{verdict}");
    let mut renumbered = without(7);
    renumbered
        .iter_mut()
        .filter(|r| r.seq > 7)
        .for_each(|r| r.seq -= 1);
    blocks(&renumbered);
    let (ok, verdict) = tamper(server, "UPDATE audit_sequence SET last = last - 1");
    assert!(
        !ok && verdict.contains("the record before 7 was REMOVED"),
        "{verdict}"
    );
    blocks(pristine);
    assert!(tamper(server, "UPDATE audit_sequence SET last = last + 1").0);
    // Put in, sealed as the server would seal it after record 8.
    let mut forged = pristine[8].clone();
    forged.seq = 9;
    forged.entry.entity = Some("Patient/forged".into());
    forged.prev = pristine[7].hash.clone();
    forged.hash = Some(fhir_server::store::audit::seal_hash(
        pristine[7].hash.as_deref().unwrap(),
        &forged,
    ));
    let mut inserted = pristine[..8].to_vec();
    inserted.push(forged);
    inserted.extend(pristine[8..].iter().map(|r| Stored {
        seq: r.seq + 1,
        ..r.clone()
    }));
    blocks(&inserted);
    let (ok, verdict) = tamper(server, "UPDATE audit_sequence SET last = last + 1");
    assert!(
        !ok && verdict.contains("record 9 was INSERTED"),
        "{verdict}"
    );
    blocks(pristine);
    assert!(tamper(server, "UPDATE audit_sequence SET last = last - 1").0);
    // A block moved out of its place: its key changed, not its records.
    let moved = format!(
        "UPDATE audit_block SET key = key + 1000 WHERE key = {}",
        tid << 44 | 1
    );
    let (ok, verdict) = tamper(server, &moved);
    assert!(!ok && verdict.contains("REMOVED"), "{verdict}");
    blocks(pristine);
    assert!(tamper(server, "").0);
    // A block's bytes overwritten: compressed, they cannot be read at all, and verify
    // fails naming the records the block held.
    let garbage = format!(
        "UPDATE audit_block SET records = x'0100001000deadbeef' WHERE key = {}",
        tid << 44 | 1
    );
    let (ok, verdict) = tamper(server, &garbage);
    assert!(
        !ok && verdict.contains("records 1 to") && verdict.contains("cannot be read"),
        "{verdict}"
    );
    blocks(pristine);
    assert!(tamper(server, "").0);
}

/// 40 clients at once (on PostgreSQL, split over two server processes on one database):
/// every create recorded once, in its own transaction; every read recorded; one chain.
async fn one_chain_from_many_clients(server: Server) {
    let mut server = server;
    let mut second = match server.backend {
        Backend::Postgres => Some(server.sibling().await),
        Backend::Sqlite => None,
    };
    let bases: Vec<String> = [Some(&server), second.as_ref()]
        .into_iter()
        .flatten()
        .map(|s| s.base.clone())
        .collect();
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for n in 0..40 {
        let (client, write_base, read_base) = (
            client.clone(),
            bases[n % bases.len()].clone(),
            bases[(n + 1) % bases.len()].clone(),
        );
        tasks.push(tokio::spawn(async move {
            let (family, mrn) = (format!("Race{n}"), format!("R-{n}"));
            let id = common::post_patient(&client, &write_base, &family, &mrn).await;
            let read = client
                .get(format!("{read_base}/Patient/{id}"))
                .send()
                .await
                .unwrap();
            assert_eq!(read.status(), 200);
            let search = client
                .get(format!("{read_base}/Patient?_id={id}"))
                .send()
                .await
                .unwrap();
            assert_eq!(search.status(), 200);
            id
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap());
    }
    if let Some(second) = second.as_mut() {
        assert!(second.terminate().await);
    }
    assert!(server.terminate().await);
    let verdict = cli_ok(&server, &["audit", "verify"]);
    assert!(verdict.contains("intact, records 1 to 120"), "{verdict}");
    let store = fhir_server::store::Store::open(&server.database_url, 1, None)
        .await
        .unwrap();
    let tenant = store.tenant_id("default").await.unwrap().unwrap();
    let records = store.audit_records(tenant, 0, 1000).await.unwrap();
    for id in &ids {
        let about = |event: &str| {
            records
                .iter()
                .filter(|r| r.entry.event == event && r.entry.patients.contains(id))
                .count()
        };
        assert_eq!(
            (about("create"), about("read"), about("search-type")),
            (1, 1, 1),
            "{id}"
        );
    }
}

/// 30 creates at once in a tenant with no record yet, each record with every field set
/// (odd characters; empty apart from absent): one chain that verifies, which on
/// PostgreSQL shows the seal its create statement computes in SQL (`store::pg_sealed`)
/// to be the server's own; every field stored as given; each found by its patients.
async fn creates_seal_every_field(server: Server) {
    use fhir_server::store::audit::{Agent, Filter};
    use fhir_server::store::provenance::{Attribution, attributed};
    use fhir_server::store::{Outcome, Store, WriteOp};
    use std::sync::Arc;
    let store = Arc::new(Store::open(&server.database_url, 4, None).await.unwrap());
    store.create_tenant("sealed", None).await.unwrap();
    let tenant = store.tenant_id("sealed").await.unwrap().unwrap();
    let agent_of = |n: usize| Agent {
        user: Some(format!("user-{n}")),
        fhir_user: Some("Practitioner/\u{fc}\"\\".into()),
        client: Some(String::new()),
        token: None,
        address: Some("203.0.113.7".into()),
        user_agent: Some("tab\there\u{7f} \u{20ac}".into()),
        request_id: Some(format!("req-{n}")),
        purpose: n.is_multiple_of(2).then(|| "BTG".into()),
        reason: n.is_multiple_of(2).then(|| "emergency: 'quoted'".into()),
    };
    let mut tasks = Vec::new();
    for n in 0..30 {
        let (store, agent) = (store.clone(), agent_of(n));
        tasks.push(tokio::spawn(async move {
            let attribution = Attribution {
                who: agent.fhir_user.clone(),
                client: String::new(),
                activity: "create".into(),
                agent: Some(Arc::new(agent)),
                audited: Arc::default(),
            };
            // Not an Appointment: those are written alone (`store::claims`), not coalesced.
            let resource = json!({"resourceType": "Communication", "status": "completed",
                "subject": {"reference": format!("Patient/p{n}")},
                "recipient": [{"reference": "Patient/shared"}]});
            let op = WriteOp::Create {
                resource_type: "Communication".into(),
                resource,
                index: fhir_server::index::IndexRows::default(),
                if_none_exist: None,
            };
            match attributed(attribution, store.write(tenant, op))
                .await
                .unwrap()
            {
                Outcome::Created(version) => version.id,
                other => panic!("not created: {other:?}"),
            }
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap());
    }
    let verdict = cli_ok(&server, &["audit", "verify", "--tenant", "sealed"]);
    assert!(verdict.contains("intact, records 1 to 30"), "{verdict}");
    let records = store.audit_records(tenant, 0, 100).await.unwrap();
    assert_eq!(records.len(), 30);
    for (n, id) in ids.iter().enumerate() {
        let request = format!("req-{n}");
        let mine: Vec<_> = records
            .iter()
            .filter(|r| r.entry.agent.request_id.as_deref() == Some(request.as_str()))
            .collect();
        assert_eq!(mine.len(), 1, "{request}");
        let entry = &mine[0].entry;
        assert_eq!(*entry.agent, agent_of(n));
        assert_eq!(
            (entry.event.as_str(), entry.action, entry.status),
            ("create", "C", 200)
        );
        assert_eq!(
            entry.entity.as_deref(),
            Some(format!("Communication/{id}/_history/1").as_str())
        );
        assert_eq!(entry.patients, [format!("p{n}"), "shared".into()]);
        assert_eq!((entry.query.as_ref(), entry.via.as_ref()), (None, None));
    }
    let by_patient = |patient: &str| Filter {
        patient: Some(patient.into()),
        limit: 100,
        ..Filter::default()
    };
    let shared = store
        .audit_search(tenant, &by_patient("shared"))
        .await
        .unwrap();
    let seqs: Vec<i64> = shared.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=30).rev().collect::<Vec<i64>>(), "newest first");
    let one = store.audit_search(tenant, &by_patient("p7")).await.unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].entry.agent.request_id.as_deref(), Some("req-7"));
}

both!(creates_seal_every_field);

mod accesses {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::accesses_are_recorded_and_only_admins_read_them(super::Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::accesses_are_recorded_and_only_admins_read_them(super::Backend::Postgres).await;
    }
}

both!(tampering_is_caught);
both!(one_chain_from_many_clients);

/// A session full of names, identifiers, secrets and tokens, logged at debug level: none
/// of them reaches the log.
async fn logs_carry_no_patient_data(backend: Backend) {
    let args = ["--auth", "smart", "--admin-token", "admin-secret"];
    let env = [("FHIR_LOG", "debug")];
    let Some(server) = Server::start_with(backend, &args, &env).await else {
        eprintln!("skipped: FHIR_TEST_POSTGRES_URL is not set");
        return;
    };
    let secret = "backend-secret-Xq7Zp2Lw9Rt4";
    let backend_token =
        common::signin::backend_client(&server, "backend", secret, "system/*.cruds").await;
    common::signin::public_app(&server, "user/*.cruds openid fhirUser offline_access");
    let (status, _) = form(
        &server,
        "auth/token",
        &[
            ("grant_type", "client_credentials"),
            ("scope", "system/*.cruds"),
        ],
        Some(("backend", "a-wrong-secret-Vb3Nk8")),
    )
    .await;
    assert_eq!(status, 401);
    let patient = json!({"resourceType": "Patient", "id": "lp1",
        "name": [{"family": "Quixotelli", "given": ["Zebulonia"]}],
        "identifier": [{"system": "urn:mrn", "value": "MRN-99887766"}],
        "telecom": [{"system": "phone", "value": "+1-555-0199-321"}],
        "birthDate": "1931-02-28"});
    let (status, body) = with_token(
        &server,
        &backend_token,
        reqwest::Method::PUT,
        "Patient/lp1",
        Some(&patient),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    for path in [
        "Patient?name=Quixotelli&identifier=urn:mrn|MRN-99887766",
        "Patient?birthdate=1931-02-28&phone=%2B1-555-0199-321",
        "Patient/lp1",
    ] {
        let (status, body) = get(&server, &backend_token, path).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (status, _) = with_token(&server, &backend_token, reqwest::Method::POST, "Patient",
        Some(&json!({"resourceType": "Patient", "name": [{"family": "Quixotelli"}], "birthDate": "not-a-date-Quixotelli"}))).await;
    assert_eq!(status, 422);
    cli_ok(
        &server,
        &[
            "user",
            "create",
            "--username",
            "drwho",
            "--password",
            PASSWORD,
            "--role",
            "provider",
            "--fhir-user",
            "Patient/lp1",
        ],
    );
    assert!(
        sign_in(&server, "drwho", "Wrong-Pass-Kq93", STAFF_SCOPE, &[])
            .await
            .is_err()
    );
    let location = sign_in(
        &server,
        "drwho",
        PASSWORD,
        "user/*.cruds openid fhirUser offline_access",
        &[],
    )
    .await
    .unwrap();
    let code = query_value(&location, "code").unwrap();
    let (status, tokens) = exchange(&server, &code, VERIFIER).await;
    assert_eq!(status, 200, "{tokens}");
    let user_token = tokens["access_token"].as_str().unwrap();
    let (status, _) = get(&server, user_token, "Patient?family=Quixotelli").await;
    assert_eq!(status, 200);
    let refresh = tokens["refresh_token"]
        .as_str()
        .unwrap_or("no-refresh-token-issued");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let log = server.log();
    assert!(log.contains("DEBUG"), "the log is at debug level");
    for secret_text in [
        "Quixotelli",
        "Zebulonia",
        "MRN-99887766",
        "555-0199",
        "1931-02-28",
        secret,
        "a-wrong-secret-Vb3Nk8",
        PASSWORD,
        "Wrong-Pass-Kq93",
        &code,
        &backend_token,
        user_token,
        refresh,
    ] {
        assert!(!log.contains(secret_text), "the log holds '{secret_text}'");
    }
}

mod logs {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::logs_carry_no_patient_data(super::Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::logs_carry_no_patient_data(super::Backend::Postgres).await;
    }
}

/// `Patient/{id}/$erase`: the patient and everything that ever named it, history and all,
/// gone; other patients and the practitioner stay; export files holding the patient
/// deleted; the erasure in the trail without the erased data; the chain still whole.
async fn erasure_leaves_only_the_trail(server: Server) {
    let mut server = server;
    let put = |resource: Value| {
        let server = &server;
        async move {
            let reply = common::put_resource(server, &resource).await;
            assert!(reply.status == 200 || reply.status == 201, "{}", reply.text);
        }
    };
    put(json!({"resourceType": "Practitioner", "id": "d1", "name": [{"family": "Stays"}]})).await;
    put(json!({"resourceType": "Patient", "id": "e1", "name": [{"family": "Erasemeplease"}]}))
        .await;
    put(json!({"resourceType": "Patient", "id": "e1", "name": [{"family": "Erasemeplease", "given": ["Second"]}]})).await;
    put(json!({"resourceType": "Patient", "id": "e2", "name": [{"family": "Keepme"}]})).await;
    put(
        json!({"resourceType": "Appointment", "id": "ea1", "status": "proposed",
        "participant": [{"actor": {"reference": "Patient/e1"}, "status": "needs-action"},
            {"actor": {"reference": "Practitioner/d1"}, "status": "accepted"}]}),
    )
    .await;
    put(
        json!({"resourceType": "Observation", "id": "eo1", "status": "final", "code": {"text": "x"},
        "subject": {"reference": "Patient/e1"}}),
    )
    .await;
    put(
        json!({"resourceType": "Observation", "id": "eo2", "status": "final", "code": {"text": "x"},
        "subject": {"reference": "Patient/e2"}}),
    )
    .await;
    common::send(server.client.delete(server.url("Observation/eo1")))
        .await
        .expect(204);
    let exports = server.dir.join("exports");
    for (job, body) in [
        ("job-a", "{\"resourceType\":\"Patient\",\"id\":\"e1\"}\n"),
        (
            "job-b",
            "{\"resourceType\":\"Observation\",\"subject\":{\"reference\":\"Patient/e1\"}}\n",
        ),
        ("job-c", "{\"resourceType\":\"Patient\",\"id\":\"e2\"}\n"),
    ] {
        std::fs::create_dir_all(exports.join(job)).unwrap();
        std::fs::write(exports.join(job).join("x.ndjson"), body).unwrap();
    }
    let (status, answer) = server
        .post_json("Patient/e1/$erase", &json!({"resourceType": "Parameters"}))
        .await;
    assert_eq!(status, 200, "{answer}");
    let erased: Vec<(String, i64)> = answer["parameter"][0]["part"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["valueInteger"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        erased,
        [
            ("Appointment".to_owned(), 1),
            ("Observation".to_owned(), 2),
            ("Patient".to_owned(), 2)
        ]
    );
    assert_eq!(answer["parameter"][1]["valueInteger"], 2);
    assert!(!exports.join("job-a").exists() && !exports.join("job-b").exists());
    assert!(
        exports.join("job-c").exists(),
        "another patient's export stays"
    );
    for gone in [
        "Patient/e1",
        "Patient/e1/_history",
        "Patient/e1/_history/1",
        "Appointment/ea1",
        "Observation/eo1/_history/1",
    ] {
        let reply = common::get(&server, gone).await;
        assert_eq!(reply.status, 404, "{gone}: {}", reply.text);
    }
    for search in [
        "Patient?name=Erasemeplease",
        "Appointment?patient=e1",
        "Observation?subject=Patient/e1",
    ] {
        let reply = common::get(&server, search).await.expect(200);
        assert!(entries(&reply.body).is_empty(), "{search}: {}", reply.text);
    }
    let history = common::get(&server, "_history?_count=1000")
        .await
        .expect(200);
    assert!(
        !history.text.contains("Erasemeplease"),
        "the history is gone too"
    );
    for stays in ["Practitioner/d1", "Patient/e2", "Observation/eo2"] {
        common::get(&server, stays).await.expect(200);
    }
    // The trail keeps what happened, and says what was erased without the data.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let reply = common::get(&server, "AuditEvent?subtype=erase")
        .await
        .expect(200);
    let events = entries(&reply.body);
    assert_eq!(events.len(), 1, "{}", reply.text);
    let query = events[0]["resource"]["entity"][0]["query"]
        .as_str()
        .unwrap();
    let query = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(query)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        query,
        "erased=Appointment:1,Observation:2,Patient:2;exports=2"
    );
    assert!(!reply.text.contains("Erasemeplease"));
    let reads = common::get(&server, "AuditEvent?patient=e1&_count=100")
        .await
        .expect(200);
    assert!(
        entries(&reads.body).len() >= 5,
        "the trail of e1 stays: {}",
        reads.text
    );
    assert!(server.terminate().await);
    let verdict = cli_ok(&server, &["audit", "verify"]);
    assert!(verdict.contains("intact"), "{verdict}");
}

both!(erasure_leaves_only_the_trail);

/// `$erase` while 20 clients write about the patient at once: nothing acknowledged before
/// the erasure began survives it, no write fails with a server error, and the chain still
/// verifies.
async fn erasure_races_writers(server: Server) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;
    let patient = json!({"resourceType": "Patient", "id": "r1", "name": [{"family": "Racer"}]});
    let reply = common::put_resource(&server, &patient).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let acknowledged: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for n in 0..20 {
        let (client, base) = (server.client.clone(), server.base.clone());
        let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let observation = json!({"resourceType": "Observation", "status": "final",
                    "code": {"text": format!("w{n}-{i}")}, "subject": {"reference": "Patient/r1"}});
                let reply = common::send(
                    client
                        .post(format!("{base}/Observation"))
                        .header("content-type", "application/fhir+json")
                        .body(observation.to_string()),
                )
                .await;
                assert!(reply.status < 500, "{}: {}", reply.status, reply.text);
                if reply.status == 201 {
                    let id = reply.body["id"].as_str().unwrap().to_owned();
                    acknowledged.lock().unwrap().push((id, Instant::now()));
                }
                i += 1;
            }
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let began = Instant::now();
    let (status, answer) = server
        .post_json("Patient/r1/$erase", &json!({"resourceType": "Parameters"}))
        .await;
    assert_eq!(status, 200, "{answer}");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    let before: Vec<String> = acknowledged
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, at)| *at < began)
        .map(|(id, _)| id.clone())
        .collect();
    assert!(before.len() >= 20, "the writers ran: {}", before.len());
    for id in &before {
        let reply = common::get(&server, &format!("Observation/{id}")).await;
        assert_eq!(
            reply.status, 404,
            "Observation/{id}, written before the erasure"
        );
    }
    let reply = common::get(&server, "Patient/r1").await;
    assert_eq!(reply.status, 404);
    let verdict = cli_ok(&server, &["audit", "verify"]);
    assert!(verdict.contains("intact"), "{verdict}");
}

both!(erasure_races_writers);

/// A server that keeps audit records a day, with six records (three patients created and
/// read) in its trail; `None` when PostgreSQL is not set up.
async fn server_with_six_records(backend: Backend) -> Option<Server> {
    let args = [
        "--test-clock",
        "--admin-token",
        "admin-secret",
        "--audit-retention-days",
        "1",
    ];
    let Some(server) = Server::start_with(backend, &args, &[]).await else {
        eprintln!("skipped: FHIR_TEST_POSTGRES_URL is not set");
        return None;
    };
    for n in 0..3 {
        let created = server
            .create(
                &server.base.clone(),
                &common::patient(&format!("Old{n}"), &format!("O-{n}")),
            )
            .await;
        common::get(&server, &format!("Patient/{}", common::id_of(&created)))
            .await
            .expect(200);
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    Some(server)
}

/// Retention: records past it are pruned behind a checkpoint signed with the audit key;
/// the rest still verifies from there; a checkpoint changed, or checked with another key,
/// does not.
async fn retention_prunes_behind_a_signed_checkpoint(backend: Backend) {
    let Some(server) = server_with_six_records(backend).await else {
        return;
    };
    server.advance_clock(2 * 86_400).await;
    common::get(&server, "Patient?family=Old0")
        .await
        .expect(200);
    let mut verdict = String::new();
    for _ in 0..50 {
        // The server prunes at its next flush after the clock moved: asked again until
        // it has.
        let (_, out, err) = cli(&server, &["audit", "verify"]);
        verdict = out + &err;
        if verdict.contains("records 7 to 7") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(
        verdict.contains("intact, records 7 to 7"),
        "the six old records were pruned: {verdict}"
    );
    assert!(
        server.dir.join("audit.key").exists(),
        "the audit key was made"
    );
    let (status, _) = server.get_json("AuditEvent/1").await;
    assert_eq!(status, 404, "a pruned record is gone");
    let (status, _) = server.get_json("AuditEvent/7").await;
    assert_eq!(status, 200);
    // Another key does not hold the checkpoint's signature.
    let other = server.dir.join("other.key");
    std::fs::write(&other, [7u8; 32]).unwrap();
    let (ok, _, err) = cli(
        &server,
        &[
            "audit",
            "verify",
            "--audit-key-file",
            other.to_str().unwrap(),
        ],
    );
    assert!(!ok && err.contains("checkpoint at 6"), "{err}");
    // Nor does a checkpoint moved behind the server's back.
    server.sql("UPDATE audit_checkpoint SET seq = 5");
    let (ok, _, err) = cli(&server, &["audit", "verify"]);
    assert!(!ok && err.contains("checkpoint at 5"), "{err}");
}

mod retention {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::retention_prunes_behind_a_signed_checkpoint(super::Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::retention_prunes_behind_a_signed_checkpoint(super::Backend::Postgres).await;
    }
}

/// `count` read records of one anonymous agent, of `Patient/p{n}`, every `every`-th
/// naming the patient `patient` and the rest the patient `other`.
fn reads(
    count: i64,
    every: i64,
    patient: &str,
) -> std::sync::Arc<fhir_server::store::audit_batch::Batch> {
    use fhir_server::store::audit::{Agent, Entry};
    let agent = std::sync::Arc::new(Agent::default());
    let entries = (0..count)
        .map(|n| Entry {
            recorded: 1_000_000 + n,
            event: "read".into(),
            action: "R",
            status: 200,
            agent: agent.clone(),
            entity: Some(format!("Patient/p{n}")),
            query: None,
            via: None,
            patients: vec![if n % every == 0 { patient } else { "other" }.into()],
        })
        .collect::<Vec<_>>();
    std::sync::Arc::new(fhir_server::store::audit_batch::Batch::of(&entries))
}

/// A search by patient finds a patient's records across the epochs `audit_patient` is
/// keyed by (8,192 records each), newest first, page after page.
async fn patient_search_spans_epochs(server: Server) {
    use fhir_server::store::audit::Filter;
    let store = fhir_server::store::Store::open(&server.database_url, 2, None)
        .await
        .unwrap();
    let tenant = store.tenant_id("default").await.unwrap().unwrap();
    let base = store.audit_last_taken(tenant).await.unwrap();
    store
        .append_audit(tenant, reads(20_000, 1000, "rare"))
        .await
        .unwrap();
    let mut filter = Filter {
        patient: Some("rare".into()),
        limit: 7,
        ..Filter::default()
    };
    let mut seen = Vec::new();
    loop {
        let page = store.audit_search(tenant, &filter).await.unwrap();
        seen.extend(page.iter().map(|r| r.seq));
        match page.last() {
            Some(last) if page.len() == filter.limit => filter.before = Some(last.seq),
            _ => break,
        }
    }
    let expected: Vec<i64> = (0..20).rev().map(|k| base + 1 + k * 1000).collect();
    assert_eq!(seen, expected, "every record of the patient, newest first");
    let verdict = cli_ok(&server, &["audit", "verify"]);
    assert!(verdict.contains("intact"), "{verdict}");
}

both!(patient_search_spans_epochs);

/// A SQLite trail of 100 records (every tenth about patient "kept"), appended by the
/// store and then rewritten behind the server's back by `rewrite` (as an older server left
/// it); then `more` records appended by the store as it is now, and the tables looked at
/// by `appended`. Both stretches are searched by patient and by number, and the whole
/// trail verifies.
async fn an_older_trail_grows_on(
    rewrite: impl FnOnce(&Server, i64, &[Stored]),
    (more, appended): (i64, impl FnOnce(&Server)),
) {
    use fhir_server::store::audit::Filter;
    let mut server = Server::start(Backend::Sqlite).await.unwrap();
    assert!(server.terminate().await);
    let entries = |count| reads(count, 10, "kept");
    let open = || fhir_server::store::Store::open(&server.database_url, 2, None);
    let store = open().await.unwrap();
    let tenant = store.tenant_id("default").await.unwrap().unwrap();
    let before = store.audit_last_taken(tenant).await.unwrap();
    store.append_audit(tenant, entries(100)).await.unwrap();
    drop(store);
    let (tid, records) = common::trail::records(&server).await;
    rewrite(&server, tid, &records);
    let store = open().await.unwrap();
    store.append_audit(tenant, entries(more)).await.unwrap();
    appended(&server);
    let filter = Filter {
        patient: Some("kept".into()),
        limit: 100,
        ..Filter::default()
    };
    let found: Vec<i64> = store
        .audit_search(tenant, &filter)
        .await
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    let mut expected: Vec<i64> = (0..100).step_by(10).map(|n| before + 1 + n).collect();
    expected.extend((0..more).step_by(10).map(|n| before + 101 + n));
    expected.reverse();
    assert_eq!(
        found, expected,
        "the patient's records, old and new, newest first"
    );
    for seq in [before + 42, before + 100 + more.min(42)] {
        let record = store.audit_record(tenant, seq).await.unwrap().unwrap();
        let n = (seq - before - 1) % 100;
        assert_eq!(record.entry.entity, Some(format!("Patient/p{n}")));
    }
    drop(store);
    let verdict = cli_ok(&server, &["audit", "verify"]);
    let last = before + 100 + more;
    assert!(
        verdict.contains(&format!("intact, records 1 to {last}")),
        "{verdict}"
    );
}

/// A SQLite trail written before migration 0015 (rows found through an index on
/// `(tid, seq)`) is keyed by its numbers when the server next opens it: it still
/// verifies, is searched by patient and number, and grows on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_sqlite_trail_is_keyed_by_number() {
    let rewrite = |server: &Server, tid: i64, records: &[Stored]| {
        // Rows, as a server before migration 0016 wrote them.
        common::trail::write_rows(server, tid, records);
        // The table as migration 0012 left it, and 0015 not yet applied.
        server.sql(
            "CREATE TABLE audit_old AS SELECT tid, seq, recorded, event, action, status, \
             user_id, fhir_user, client_id, token, address, user_agent, entity, query, via, \
             patients, request_id, purpose, reason, prev, hash FROM audit_log ORDER BY key; \
             DROP TABLE audit_log; ALTER TABLE audit_old RENAME TO audit_log; \
             CREATE UNIQUE INDEX audit_log_key ON audit_log (tid, seq); \
             DELETE FROM schema_migrations WHERE version = 15",
        );
    };
    an_older_trail_grows_on(rewrite, (50, |_: &Server| {})).await;
}

/// Blocks stored before they were compressed (`store::audit_block`) are read beside the
/// compressed ones appended after them: searched by patient and number, and verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncompressed_blocks_are_read_beside_compressed_ones() {
    let both_kinds = |server: &Server| {
        let kinds = common::trail::block_kinds(server);
        assert!(
            kinds.contains(&0) && kinds.contains(&1) && kinds.is_sorted(),
            "older blocks uncompressed, newer compressed: {kinds:?}"
        );
    };
    let rewrite = common::trail::write_uncompressed_blocks;
    an_older_trail_grows_on(rewrite, (100, both_kinds)).await;
}

/// Records the database refuses (here: its trail's table renamed away behind the server's
/// back) stay with the recorder and are appended, in the order they were made, once it
/// takes them again; records made meanwhile follow them.
async fn refused_records_wait_for_the_database(server: Server) {
    use fhir_server::audit::Recorder;
    use fhir_server::store::audit::{Agent, Entry};
    let store = fhir_server::store::Store::open(&server.database_url, 2, None)
        .await
        .unwrap();
    let tenant = store.tenant_id("default").await.unwrap().unwrap();
    let before = store.audit_last_taken(tenant).await.unwrap();
    let recorder = Recorder::new(store.clone(), true, std::time::Duration::from_secs(3600));
    let agent = std::sync::Arc::new(Agent::default());
    // Recent times: records of 1970 would be the server's to prune (past the retention),
    // and its pruning, racing this test, made a checkpoint of them on a slow day.
    let start = fhir_server::clock::now_micros();
    let record = |n: i64| {
        recorder.record(
            tenant,
            Entry {
                recorded: start + n,
                event: "read".into(),
                action: "R",
                status: 200,
                agent: agent.clone(),
                entity: Some(format!("Patient/p{n}/_history/1")),
                query: None,
                via: None,
                patients: vec![format!("p{n}")],
            },
        )
    };
    // The table this database appends to (SQLite: blocks, migration 0016).
    let table = match server.backend {
        Backend::Sqlite => "audit_block",
        Backend::Postgres => "audit_log",
    };
    server.sql(&format!("ALTER TABLE {table} RENAME TO audit_away"));
    (0..3).for_each(record);
    recorder.flush().await;
    (3..5).for_each(record);
    recorder.flush().await;
    assert_eq!(
        store.audit_last_taken(tenant).await.unwrap(),
        before,
        "nothing appended"
    );
    server.sql(&format!("ALTER TABLE audit_away RENAME TO {table}"));
    (5..7).for_each(record);
    recorder.flush().await;
    let records = store.audit_records(tenant, before, 100).await.unwrap();
    let order: Vec<i64> = records.iter().map(|r| r.entry.recorded - start).collect();
    assert_eq!(order, (0..7).collect::<Vec<_>>(), "every record, in order");
    recorder.flush().await;
    let again = store.audit_records(tenant, before, 100).await.unwrap();
    assert_eq!(again.len(), 7, "appended once");
    let verdict = cli_ok(&server, &["audit", "verify"]);
    assert!(verdict.contains("intact"), "{verdict}");
}

both!(refused_records_wait_for_the_database);

/// Pruning never signs a checkpoint over a broken stretch: a record past the retention
/// changed behind the server's back stops the pruning (an error in the log), and `verify`
/// still shows where.
async fn retention_leaves_a_broken_stretch(backend: Backend) {
    let Some(server) = server_with_six_records(backend).await else {
        return;
    };
    match server.backend {
        Backend::Sqlite => {
            let (tid, _) = common::trail::records(&server).await;
            common::trail::edit_in_block(&server, tid, 2, |r| r.entry.status = 404);
        }
        Backend::Postgres => server.sql("UPDATE audit_log SET status = 404 WHERE seq = 2"),
    }
    server.advance_clock(2 * 86_400).await;
    common::get(&server, "Patient?family=Old0")
        .await
        .expect(200);
    let mut log = String::new();
    for _ in 0..100 {
        log = server.log();
        if log.contains("were not pruned") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(log.contains("were not pruned"), "{log}");
    let (ok, _, err) = cli(&server, &["audit", "verify"]);
    assert!(!ok && err.contains("record 2"), "the evidence stays: {err}");
    let (status, _) = server.get_json("AuditEvent/1").await;
    assert_eq!(status, 200, "nothing was pruned");
}

both_backends!(retention_leaves_a_broken_stretch);

/// Searches page through many appended records (on SQLite, blocks of 64) newest first,
/// with nothing skipped or repeated at the blocks' edges; filters find one record deep
/// inside; pruning stops at a block's end (on PostgreSQL, at the record itself) and the
/// rest is read from there.
async fn searches_and_pruning_cross_blocks(server: Server) {
    use fhir_server::store::audit::{Checkpoint, Filter};
    let mut server = server;
    assert!(server.terminate().await);
    let store = fhir_server::store::Store::open(&server.database_url, 2, None)
        .await
        .unwrap();
    let tenant = store.tenant_id("default").await.unwrap().unwrap();
    let before = store.audit_last_taken(tenant).await.unwrap();
    store
        .append_audit(tenant, reads(300, 1, "p"))
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut page_before = None;
    loop {
        let filter = Filter {
            event: Some("read".into()),
            before: page_before,
            limit: 50,
            ..Filter::default()
        };
        let page = store.audit_search(tenant, &filter).await.unwrap();
        let Some(last) = page.last() else { break };
        page_before = Some(last.seq);
        seen.extend(page.iter().map(|r| r.seq));
    }
    let all: Vec<i64> = (before + 1..=before + 300).rev().collect();
    assert_eq!(seen, all, "every record once, newest first");
    let deep = Filter {
        entity: Some("Patient/p150".into()),
        limit: 10,
        ..Filter::default()
    };
    let found = store.audit_search(tenant, &deep).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].seq, before + 151);
    // A record's time (1,000,000 + n, `reads`) as the cutoff: the records before it go.
    let cutoff_seq = before + 101;
    let cutoff = 1_000_000 + 100;
    let (first, last) = store.audit_prunable(tenant, cutoff).await.unwrap().unwrap();
    assert_eq!(first, 1);
    let expected_last = match server.backend {
        Backend::Sqlite => (cutoff_seq - 1) / 64 * 64 - 1,
        Backend::Postgres => cutoff_seq - 1,
    };
    assert_eq!(last, expected_last, "pruned up to a block's end");
    let kept = store.audit_record(tenant, last).await.unwrap().unwrap();
    let checkpoint = Checkpoint {
        seq: last,
        hash: kept.hash.unwrap(),
        recorded: kept.entry.recorded,
        signature: "not checked here".into(),
    };
    store.audit_prune(tenant, &checkpoint).await.unwrap();
    let left = store.audit_records(tenant, -1, 1_000).await.unwrap();
    let numbers: Vec<i64> = left.iter().map(|r| r.seq).collect();
    assert_eq!(numbers, (last + 1..=before + 300).collect::<Vec<_>>());
}

both!(searches_and_pruning_cross_blocks);
