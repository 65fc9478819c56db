//! Secure messaging between patients and their care team, on both databases, with real
//! sign-ins (the login and consent pages) and a real SMTP server for the notices: threads,
//! replies, attachments read as their message, read receipts, unread counts, and who sees
//! what (the patient, the practitioners in the thread, of the patient's care team or
//! recent visits, the role addressed; nobody else); every bad message refused naming
//! what is wrong; read receipts and replies racing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure
#![allow(clippy::too_many_lines)] // a test reads as one story

mod common;

use std::time::Duration;

use base64::Engine;
use common::signin::{PASSWORD, VERIFIER, exchange, form, put, query_value, sign_in, with_token};
use common::smtp::Smtp;
use common::{Server, entries, issue_expressions};
use serde_json::{Value, json};

const PATIENT_SCOPE: &str = "launch/patient patient/*.cruds openid fhirUser";
const STAFF_SCOPE: &str = "user/*.cruds openid fhirUser";

fn cli_ok(server: &Server, args: &[&str]) {
    let output = server.run_cli(args);
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The people of the practice, by username: their role and resource.
const PEOPLE: &[(&str, &str, &str)] = &[
    ("pat", "patient", "Patient/p1"),
    ("doc", "provider", "Practitioner/d1"),
    ("stranger", "provider", "Practitioner/d2"),
    ("teammate", "provider", "Practitioner/d3"),
    ("seen", "provider", "Practitioner/d4"),
    ("desk", "front-desk", "Practitioner/f1"),
];

/// Tokens of the tests' people and of a backend service.
struct Tokens {
    backend: String,
    people: std::collections::HashMap<&'static str, String>,
}

impl Tokens {
    fn of(&self, username: &str) -> &str {
        &self.people[username]
    }
}

/// A server under `--auth smart` whose notices go to `smtp`; the practice's people,
/// their care team and visits; everyone's tokens. `None` when PostgreSQL is not set up.
async fn practice(backend: common::Backend, smtp: &Smtp) -> Option<(Server, Tokens)> {
    let args = ["--auth", "smart", "--admin-token", "admin-secret"];
    let Some(server) = Server::start_with(backend, &args, &[]).await else {
        eprintln!("skipped: FHIR_TEST_POSTGRES_URL is not set");
        return None;
    };
    cli_ok(
        &server,
        &[
            "client",
            "create",
            "--id",
            "backend",
            "--type",
            "confidential-symmetric",
            "--secret",
            "backend-secret-0123456789",
            "--scopes",
            "system/*.cruds",
        ],
    );
    cli_ok(
        &server,
        &[
            "client",
            "create",
            "--id",
            "app",
            "--type",
            "public",
            "--redirect-uri",
            common::signin::APP_REDIRECT,
            "--scopes",
            "launch/patient patient/*.cruds user/*.cruds openid fhirUser",
        ],
    );
    let (status, token) = form(
        &server,
        "auth/token",
        &[
            ("grant_type", "client_credentials"),
            ("scope", "system/*.cruds"),
        ],
        Some(("backend", "backend-secret-0123456789")),
    )
    .await;
    assert_eq!(status, 200, "{token}");
    let backend_token = token["access_token"].as_str().unwrap().to_owned();
    for (username, _, reference) in PEOPLE {
        let (kind, id) = reference.split_once('/').unwrap();
        let person = json!({"resourceType": kind, "id": id,
            "name": [{"family": username, "given": ["Sam"]}],
            "telecom": [{"system": "email", "value": format!("{username}@example.org")}]});
        put(&server, &backend_token, &person).await;
    }
    put(
        &server,
        &backend_token,
        &json!({"resourceType": "Patient", "id": "p2",
        "name": [{"family": "Other"}]}),
    )
    .await;
    put(
        &server,
        &backend_token,
        &json!({"resourceType": "CareTeam", "id": "t1",
        "status": "active", "subject": {"reference": "Patient/p1"},
        "participant": [{"member": {"reference": "Practitioner/d3"}}]}),
    )
    .await;
    put(
        &server,
        &backend_token,
        &json!({"resourceType": "Appointment", "id": "a1",
        "status": "fulfilled", "start": "2026-10-01T09:00:00Z", "end": "2026-10-01T09:30:00Z",
        "participant": [{"actor": {"reference": "Patient/p1"}, "status": "accepted"},
            {"actor": {"reference": "Practitioner/d4"}, "status": "accepted"}]}),
    )
    .await;
    let mut people = std::collections::HashMap::new();
    for (username, role, reference) in PEOPLE {
        let scope = if *role == "patient" {
            PATIENT_SCOPE
        } else {
            STAFF_SCOPE
        };
        let person = (*username, *role, *reference);
        people.insert(
            *username,
            common::signin::user_token(&server, person, scope).await,
        );
    }
    let settings = json!({"practice": "Maple Street Clinic",
        "email": {"host": "127.0.0.1", "port": smtp.port, "security": "starttls",
            "from": "Maple Street Clinic <messages@clinic.example>", "ca_certificate": smtp.ca},
        "secure": {"attachment_max_bytes": 4096, "portal_url": "https://portal.clinic.example"}});
    let file = std::env::temp_dir().join(format!("secure-{}.json", uuid::Uuid::new_v4().simple()));
    std::fs::write(&file, settings.to_string()).unwrap();
    cli_ok(
        &server,
        &[
            "messaging",
            "set",
            "--file",
            file.to_str().unwrap(),
            "--base-url",
            "http://fhir.test",
        ],
    );
    let tokens = Tokens {
        backend: backend_token,
        people,
    };
    Some((server, tokens))
}

async fn get(server: &Server, token: &str, path: &str) -> (u16, Value) {
    with_token(server, token, reqwest::Method::GET, path, None).await
}

/// `$send-message` with these parameters, as `token`.
async fn send(server: &Server, token: &str, parameters: Value) -> (u16, Value) {
    let body = json!({"resourceType": "Parameters", "parameter": parameters});
    with_token(
        server,
        token,
        reqwest::Method::POST,
        "Communication/$send-message",
        Some(&body),
    )
    .await
}

fn reference(name: &str, to: &str) -> Value {
    json!({"name": name, "valueReference": {"reference": to}})
}

fn role(name: &str) -> Value {
    json!({"name": "recipient", "valueReference": {"identifier": {"system": "urn:fhir-server:role", "value": name}}})
}

fn string(name: &str, text: &str) -> Value {
    json!({"name": name, "valueString": text})
}

fn attachment(content_type: &str, bytes: &[u8]) -> Value {
    json!({"name": "attachment", "valueAttachment": {"contentType": content_type, "title": "photo",
        "data": base64::engine::general_purpose::STANDARD.encode(bytes)}})
}

/// The unread count and the threads' first messages of a mailbox.
async fn mailbox(server: &Server, token: &str) -> (i64, Vec<String>) {
    let (status, found) = get(server, token, "Communication/$mailbox").await;
    assert_eq!(status, 200, "{found}");
    let parameters = found["parameter"].as_array().unwrap();
    let unread = parameters[0]["valueInteger"].as_i64().unwrap();
    let threads = parameters[1..]
        .iter()
        .map(|t| {
            t["part"][0]["valueReference"]["reference"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    (unread, threads)
}

/// Polls `check` for up to 20 seconds until it holds.
async fn eventually(what: &str, check: impl Fn() -> bool) {
    for _ in 0..100 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("never happened: {what}");
}

macro_rules! both_backends {
    ($test:ident) => {
        mod $test {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$test(super::common::Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$test(super::common::Backend::Postgres).await;
            }
        }
    };
}

/// A patient writes to their doctor with a photo; the doctor is told by an email with no
/// part of the message, finds it unread, reads it (the patient sees the read receipt) and
/// replies; the care team and the practitioner of a recent visit may read the thread and
/// its photo, another practitioner and the front desk may not; a thread to the front desk's
/// role reaches the front desk.
async fn threads_receipts_and_who_sees_them(backend: common::Backend) {
    let Some(smtp) = Smtp::start(&[]) else { return };
    let Some((server, tokens)) = practice(backend, &smtp).await else {
        return;
    };
    let photo = b"\x89PNG\r\n\x1a\n a small picture of a rash".to_vec();
    let (status, first) = send(
        &server,
        tokens.of("pat"),
        json!([
            string("topic", "Rash after the new cream"),
            reference("recipient", "Practitioner/d1"),
            string(
                "text",
                "The rash got worse since Tuesday. Should I stop the cream?"
            ),
            attachment("image/png", &photo)
        ]),
    )
    .await;
    assert_eq!(status, 201, "{first}");
    let id = first["id"].as_str().unwrap().to_owned();
    assert_eq!(first["sender"]["reference"], "Patient/p1");
    assert_eq!(first["subject"]["reference"], "Patient/p1");
    assert_eq!(first["topic"]["text"], "Rash after the new cream");
    assert!(first["received"].is_null());
    let binary = first["payload"][1]["contentAttachment"]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        first["payload"][1]["contentAttachment"]["size"],
        photo.len()
    );

    // The doctor is told, by an email that holds nothing of the message.
    eventually("the doctor is told", || !smtp.messages().is_empty()).await;
    let (envelope, mail) = smtp.messages().remove(0);
    assert_eq!(envelope["to"][0], "doc@example.org", "{envelope}");
    assert!(
        mail.contains("secure message") && mail.contains("https://portal.clinic.example"),
        "{mail}"
    );
    for secret in ["rash", "Rash", "cream", "Tuesday", "pat"] {
        assert!(
            !mail.contains(secret),
            "the notice gives away '{secret}': {mail}"
        );
    }

    // Unread for the doctor; none for the patient, who sent it.
    assert_eq!(
        mailbox(&server, tokens.of("doc")).await,
        (1, vec![format!("Communication/{id}")])
    );
    assert_eq!(
        mailbox(&server, tokens.of("pat")).await,
        (0, vec![format!("Communication/{id}")])
    );

    // Who may read the message and its photo.
    for (username, allowed) in [
        ("doc", true),
        ("teammate", true),
        ("seen", true),
        ("pat", true),
        ("stranger", false),
        ("desk", false),
    ] {
        let (status, _) = get(&server, tokens.of(username), &format!("Communication/{id}")).await;
        assert_eq!(
            status == 200,
            allowed,
            "{username} reads the message: {status}"
        );
        let (status, found) = get(&server, tokens.of(username), &binary).await;
        assert_eq!(
            status == 200,
            allowed,
            "{username} reads the photo: {status}"
        );
        if allowed {
            let data = base64::engine::general_purpose::STANDARD
                .decode(found["data"].as_str().unwrap())
                .unwrap();
            assert_eq!(data, photo);
        }
        let (status, _) = get(
            &server,
            tokens.of(username),
            &format!("Communication/{id}/$thread"),
        )
        .await;
        assert_eq!(
            status == 200,
            allowed,
            "{username} reads the thread: {status}"
        );
        let (_, search) = get(
            &server,
            tokens.of(username),
            "Communication?category=urn:fhir-server:CodeSystem/communication-kind|secure-message",
        )
        .await;
        assert_eq!(
            !entries(&search).is_empty(),
            allowed,
            "{username} finds it: {search}"
        );
        // Cut down by _elements or _summary, judged as what it was cut from.
        let (_, cut) = get(
            &server,
            tokens.of(username),
            "Communication?_elements=payload,subject&_count=100",
        )
        .await;
        assert_eq!(
            entries(&cut)
                .iter()
                .any(|e| e["resource"]["id"] == id.as_str()),
            allowed,
            "{username}: {cut}"
        );
        assert!(cut["total"].is_null(), "no total of hidden messages: {cut}");
        let (status, _) = get(
            &server,
            tokens.of(username),
            &format!("Communication/{id}?_elements=payload,subject"),
        )
        .await;
        assert_eq!(
            status == 200,
            allowed,
            "{username} reads it cut down: {status}"
        );
        let (_, files) = get(&server, tokens.of(username), "Binary?_elements=data").await;
        assert!(
            allowed || entries(&files).is_empty(),
            "{username} finds the photo: {files}"
        );
    }
    // Reading the thread above marked it read for the doctor only (the recipient).
    assert_eq!(mailbox(&server, tokens.of("doc")).await.0, 0);
    let (_, seen_by_patient) = get(&server, tokens.of("pat"), &format!("Communication/{id}")).await;
    assert!(
        seen_by_patient["received"].is_string(),
        "the read receipt: {seen_by_patient}"
    );
    let (_, history) = get(
        &server,
        &tokens.backend,
        &format!("Communication/{id}/_history"),
    )
    .await;
    assert_eq!(
        entries(&history).len(),
        2,
        "sent, then read once: {history}"
    );

    // The doctor replies: to the patient, in the thread; the patient is told and reads it.
    let (status, reply) = send(
        &server,
        tokens.of("doc"),
        json!([
            reference("inResponseTo", &format!("Communication/{id}")),
            string("text", "Please stop the cream and send a photo on Friday.")
        ]),
    )
    .await;
    assert_eq!(status, 201, "{reply}");
    assert_eq!(
        reply["partOf"][0]["reference"],
        format!("Communication/{id}")
    );
    assert_eq!(
        reply["inResponseTo"][0]["reference"],
        format!("Communication/{id}")
    );
    assert_eq!(reply["recipient"], json!([{"reference": "Patient/p1"}]));
    assert_eq!(reply["topic"]["text"], "Rash after the new cream");
    eventually("the patient is told", || smtp.messages().len() == 2).await;
    assert_eq!(smtp.messages()[1].0["to"][0], "pat@example.org");
    assert_eq!(mailbox(&server, tokens.of("pat")).await.0, 1);
    let (status, thread) = get(
        &server,
        tokens.of("pat"),
        &format!("Communication/{id}/$thread"),
    )
    .await;
    assert_eq!(status, 200, "{thread}");
    let messages: Vec<Value> = entries(&thread)
        .into_iter()
        .map(|e| e["resource"].clone())
        .collect();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["id"], id.as_str());
    assert!(
        messages[1]["received"].is_string(),
        "read when the thread was read"
    );
    assert_eq!(mailbox(&server, tokens.of("pat")).await.0, 0);
    let (_, receipt) = get(
        &server,
        tokens.of("doc"),
        &format!("Communication/{}", reply["id"].as_str().unwrap()),
    )
    .await;
    assert!(
        receipt["received"].is_string(),
        "the doctor sees the patient read it"
    );

    // A thread to the front desk's role reaches the front desk, not another provider.
    let (status, billing) = send(
        &server,
        tokens.of("pat"),
        json!([
            string("topic", "A question about my bill"),
            role("front-desk"),
            string("text", "Why two charges?")
        ]),
    )
    .await;
    assert_eq!(status, 201, "{billing}");
    let billing_id = billing["id"].as_str().unwrap();
    let (unread, threads) = mailbox(&server, tokens.of("desk")).await;
    assert_eq!(
        (unread, threads),
        (1, vec![format!("Communication/{billing_id}")])
    );
    assert_eq!(mailbox(&server, tokens.of("stranger")).await, (0, vec![]));
    let (status, _) = get(
        &server,
        tokens.of("stranger"),
        &format!("Communication/{billing_id}"),
    )
    .await;
    assert_eq!(status, 404);
    // Someone in the thread answers for the role; the thread stays whole for them.
    let (status, answer) = send(
        &server,
        tokens.of("desk"),
        json!([
            reference("inResponseTo", &format!("Communication/{billing_id}")),
            string("text", "One was the copay.")
        ]),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["sender"]["reference"], "Practitioner/f1");

    // Another patient's thread is not this patient's.
    let (status, other) = send(
        &server,
        &tokens.backend,
        json!([
            reference("sender", "Practitioner/d1"),
            reference("subject", "Patient/p2"),
            string("topic", "Lab results"),
            reference("recipient", "Patient/p2"),
            string("text", "All normal.")
        ]),
    )
    .await;
    assert_eq!(status, 201, "{other}");
    let other_id = other["id"].as_str().unwrap();
    for path in [
        format!("Communication/{other_id}"),
        format!("Communication/{other_id}/$thread"),
    ] {
        let (status, _) = get(&server, tokens.of("pat"), &path).await;
        assert_eq!(status, 404, "{path}");
    }
    assert_eq!(mailbox(&server, tokens.of("pat")).await.1.len(), 2);
    // The patient signed in with user/ scopes (no compartment): still only their threads.
    let location = sign_in(&server, "pat", PASSWORD, STAFF_SCOPE, &[])
        .await
        .unwrap();
    let code = query_value(&location, "code").unwrap();
    let (_, token) = exchange(&server, &code, VERIFIER).await;
    let wide = token["access_token"].as_str().unwrap();
    let (status, _) = get(&server, wide, &format!("Communication/{other_id}")).await;
    assert_eq!(status, 404, "another patient's thread under user/ scopes");
    let (_, search) = get(&server, wide, "Communication?_count=100").await;
    let found: Vec<String> = entries(&search)
        .iter()
        .filter_map(|e| {
            e["resource"]["subject"]["reference"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert!(!found.iter().any(|s| s == "Patient/p2"), "{search}");
}
both_backends!(threads_receipts_and_who_sees_them);

/// Every bad message is refused, naming what is wrong; secure messages and their
/// attachments cannot be written, changed or removed through the REST API by users.
async fn bad_messages_are_refused(backend: common::Backend) {
    let Some(smtp) = Smtp::start(&[]) else { return };
    let Some((server, tokens)) = practice(backend, &smtp).await else {
        return;
    };
    let pat = tokens.of("pat");
    let doc = tokens.of("doc");
    let text = || string("text", "hello");
    let topic = || string("topic", "A question");
    let cases: Vec<(&str, &str, Value, u16, &str)> = vec![
        (
            "another patient as subject",
            pat,
            json!([
                reference("subject", "Patient/p2"),
                topic(),
                reference("recipient", "Practitioner/d1"),
                text()
            ]),
            403,
            "subject",
        ),
        (
            "no such practitioner",
            pat,
            json!([
                topic(),
                reference("recipient", "Practitioner/nobody"),
                text()
            ]),
            422,
            "recipient",
        ),
        (
            "another patient as recipient",
            pat,
            json!([topic(), reference("recipient", "Patient/p2"), text()]),
            422,
            "recipient",
        ),
        (
            "an Observation as recipient",
            pat,
            json!([topic(), reference("recipient", "Observation/o1"), text()]),
            422,
            "recipient",
        ),
        (
            "no such role",
            pat,
            json!([topic(), role("wizard"), text()]),
            422,
            "recipient",
        ),
        (
            "no topic",
            pat,
            json!([reference("recipient", "Practitioner/d1"), text()]),
            422,
            "topic",
        ),
        (
            "a topic of two lines",
            pat,
            json!([
                string("topic", "a\nb"),
                reference("recipient", "Practitioner/d1"),
                text()
            ]),
            422,
            "topic",
        ),
        (
            "no recipient",
            pat,
            json!([topic(), text()]),
            422,
            "recipient",
        ),
        (
            "nothing said",
            pat,
            json!([topic(), reference("recipient", "Practitioner/d1")]),
            422,
            "text",
        ),
        (
            "a control character",
            pat,
            json!([
                topic(),
                reference("recipient", "Practitioner/d1"),
                string("text", "bell \u{7}")
            ]),
            422,
            "text",
        ),
        (
            "a thread without its patient",
            doc,
            json!([
                reference("subject", "Patient/p1"),
                topic(),
                reference("recipient", "Practitioner/d2"),
                text()
            ]),
            422,
            "recipient",
        ),
        (
            "another sender",
            doc,
            json!([
                reference("sender", "Practitioner/d2"),
                reference("subject", "Patient/p1"),
                topic(),
                reference("recipient", "Patient/p1"),
                text()
            ]),
            403,
            "sender",
        ),
        (
            "an attachment type not allowed",
            pat,
            json!([
                topic(),
                reference("recipient", "Practitioner/d1"),
                attachment("application/x-msdownload", b"MZ")
            ]),
            422,
            "attachment",
        ),
        (
            "an attachment too large",
            pat,
            json!([
                topic(),
                reference("recipient", "Practitioner/d1"),
                attachment("application/pdf", &[b'%'; 5000])
            ]),
            413,
            "attachment",
        ),
        (
            "an attachment not base64",
            pat,
            json!([topic(), reference("recipient", "Practitioner/d1"),
            {"name": "attachment", "valueAttachment": {"contentType": "application/pdf", "data": "not base64!"}}]),
            422,
            "attachment",
        ),
        (
            "an answer to nothing",
            pat,
            json!([reference("inResponseTo", "Communication/nothing"), text()]),
            404,
            "inResponseTo",
        ),
        (
            "an unknown parameter",
            pat,
            json!([
                topic(),
                reference("recipient", "Practitioner/d1"),
                text(),
                string("priority", "stat")
            ]),
            400,
            "priority",
        ),
        (
            "a backend without a sender",
            &tokens.backend,
            json!([
                reference("subject", "Patient/p1"),
                topic(),
                reference("recipient", "Patient/p1"),
                text()
            ]),
            422,
            "sender",
        ),
    ];
    for (what, token, parameters, status, name) in cases {
        let (got, outcome) = send(&server, token, parameters).await;
        assert_eq!(got, status, "{what}: {outcome}");
        assert_eq!(outcome["resourceType"], "OperationOutcome", "{what}");
        let expression = format!("Parameters.parameter.where(name = '{name}')");
        assert!(
            issue_expressions(&outcome).contains(&expression),
            "{what}: {outcome}"
        );
    }
    let many: Vec<Value> = (0..25)
        .map(|n| reference("recipient", &format!("Practitioner/x{n}")))
        .collect();
    let mut parameters = vec![topic(), text()];
    parameters.extend(many);
    let (status, _) = send(&server, pat, Value::Array(parameters)).await;
    assert_eq!(status, 422, "too many recipients");
    let (status, _) = with_token(
        &server,
        pat,
        reqwest::Method::POST,
        "Communication/$send-message",
        Some(&json!({"resourceType": "Patient"})),
    )
    .await;
    assert_eq!(status, 400, "not a Parameters body");
    // A token that may only read cannot send.
    let location = sign_in(
        &server,
        "pat",
        PASSWORD,
        "launch/patient patient/*.rs openid fhirUser",
        &[],
    )
    .await
    .unwrap();
    let code = query_value(&location, "code").unwrap();
    let (_, token) = exchange(&server, &code, VERIFIER).await;
    let (status, _) = send(
        &server,
        token["access_token"].as_str().unwrap(),
        json!([topic(), reference("recipient", "Practitioner/d1"), text()]),
    )
    .await;
    assert_eq!(status, 403, "a read-only token sends nothing");
    let no_token = server
        .client
        .post(format!("{}/Communication/$send-message", server.base))
        .header("content-type", "application/fhir+json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), 401);

    // A thread the stranger cannot see cannot be answered by them.
    let (_, first) = send(
        &server,
        pat,
        json!([
            topic(),
            reference("recipient", "Practitioner/d1"),
            text(),
            attachment("text/plain", b"notes")
        ]),
    )
    .await;
    let id = first["id"].as_str().unwrap();
    let binary = first["payload"][1]["contentAttachment"]["url"]
        .as_str()
        .unwrap();
    let (status, _) = send(
        &server,
        tokens.of("stranger"),
        json!([
            reference("inResponseTo", &format!("Communication/{id}")),
            text()
        ]),
    )
    .await;
    assert_eq!(status, 404);

    // Not through the REST API: no forged message, no edit, no removal, no swapped file.
    let mut forged = first.clone();
    forged.as_object_mut().unwrap().remove("id");
    forged["sender"] = json!({"reference": "Practitioner/d1"});
    let mut edited = first.clone();
    edited["payload"] = json!([{"contentString": "I never said that"}]);
    let swapped = json!({"resourceType": "Binary", "id": binary.trim_start_matches("Binary/"),
        "contentType": "text/plain", "securityContext": {"reference": format!("Communication/{id}")},
        "data": "ZXZpbA=="});
    let transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": forged, "request": {"method": "POST", "url": "Communication"}}]});
    // A plain Communication of the front desk's, patched into a message from the doctor.
    let (status, plain) = with_token(
        &server,
        tokens.of("desk"),
        reqwest::Method::POST,
        "Communication",
        Some(
            &json!({"resourceType": "Communication", "status": "completed",
            "subject": {"reference": "Patient/p1"}}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{plain}");
    let patch = json!([{"op": "add", "path": "/category", "value": [{"coding": [{
        "system": "urn:fhir-server:CodeSystem/communication-kind", "code": "secure-message"}]}]},
        {"op": "add", "path": "/sender", "value": {"reference": "Practitioner/d1"}}]);
    let patched = server
        .client
        .patch(format!(
            "{}/Communication/{}",
            server.base,
            plain["id"].as_str().unwrap()
        ))
        .bearer_auth(tokens.of("desk"))
        .header("content-type", "application/json-patch+json")
        .body(patch.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 403, "a patch that would forge a message");
    let writes: Vec<(&str, &str, reqwest::Method, String, Option<Value>)> = vec![
        (
            "a patient's forged message",
            pat,
            reqwest::Method::POST,
            "Communication".into(),
            Some(forged.clone()),
        ),
        (
            "a doctor's edit",
            doc,
            reqwest::Method::PUT,
            format!("Communication/{id}"),
            Some(edited.clone()),
        ),
        (
            "a patient's edit",
            pat,
            reqwest::Method::PUT,
            format!("Communication/{id}"),
            Some(edited),
        ),
        (
            "a removal",
            doc,
            reqwest::Method::DELETE,
            format!("Communication/{id}"),
            None,
        ),
        (
            "a swapped attachment",
            pat,
            reqwest::Method::PUT,
            binary.to_owned(),
            Some(swapped),
        ),
        (
            "a conditional delete",
            doc,
            reqwest::Method::DELETE,
            "Communication?subject=Patient/p1".into(),
            None,
        ),
        (
            "a forged message in a transaction",
            doc,
            reqwest::Method::POST,
            String::new(),
            Some(transaction),
        ),
    ];
    for (what, token, method, path, body) in writes {
        let (status, outcome) = with_token(&server, token, method, &path, body.as_ref()).await;
        assert_eq!(status, 403, "{what}: {outcome}");
    }
    let (_, still) = get(&server, &tokens.backend, &format!("Communication/{id}")).await;
    assert_eq!(still["payload"], first["payload"], "unchanged");
    // A member of staff's bulk export cannot carry them out.
    let export = server
        .client
        .get(format!(
            "{}/$export?_type=Communication,Binary",
            server.base
        ))
        .bearer_auth(doc)
        .header("prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(export.status(), 403, "{}", export.text().await.unwrap());
    // An admin's migration (a backend here) may write them.
    let (status, _) = with_token(
        &server,
        &tokens.backend,
        reqwest::Method::POST,
        "Communication",
        Some(&forged),
    )
    .await;
    assert_eq!(status, 201);
}
both_backends!(bad_messages_are_refused);

/// Thirty replies and thirty readings of one thread at once: every reply is kept, the first
/// message gets exactly one read receipt, each reply's recipient is told once, and nothing
/// is unread once the doctor has read the thread.
async fn replies_and_receipts_race(backend: common::Backend) {
    let Some(smtp) = Smtp::start(&[]) else { return };
    let Some((server, tokens)) = practice(backend, &smtp).await else {
        return;
    };
    let (_, first) = send(
        &server,
        tokens.of("pat"),
        json!([
            string("topic", "Refill"),
            reference("recipient", "Practitioner/d1"),
            string("text", "Please refill.")
        ]),
    )
    .await;
    let id = first["id"].as_str().unwrap().to_owned();
    let replies = (0..30).map(|n| {
        let (server, token, id) = (&server, tokens.of("pat"), id.clone());
        async move {
            send(
                server,
                token,
                json!([
                    reference("inResponseTo", &format!("Communication/{id}")),
                    string("text", &format!("reminder number {n}"))
                ]),
            )
            .await
            .0
        }
    });
    let readings = (0..30).map(|_| {
        let (server, token, id) = (&server, tokens.of("doc"), id.clone());
        async move {
            get(server, token, &format!("Communication/{id}/$thread"))
                .await
                .0
        }
    });
    let (sent, read) = tokio::join!(
        futures::future::join_all(replies),
        futures::future::join_all(readings)
    );
    assert!(sent.iter().all(|s| *s == 201), "{sent:?}");
    assert!(read.iter().all(|s| *s == 200), "{read:?}");
    let (_, history) = get(
        &server,
        &tokens.backend,
        &format!("Communication/{id}/_history"),
    )
    .await;
    assert_eq!(entries(&history).len(), 2, "one read receipt: {history}");
    let (_, thread) = get(
        &server,
        tokens.of("doc"),
        &format!("Communication/{id}/$thread"),
    )
    .await;
    assert_eq!(entries(&thread).len(), 31);
    assert_eq!(mailbox(&server, tokens.of("doc")).await.0, 0);
    eventually("every message told once", || smtp.messages().len() >= 31).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(smtp.messages().len(), 31, "one notice per message");
}
both_backends!(replies_and_receipts_race);
