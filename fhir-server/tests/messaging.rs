//! Appointment reminders by email, as a practice runs them, on both databases, through a
//! real SMTP server (aiosmtpd, STARTTLS required, started by the tests): planned when an
//! appointment is booked, revoked when it is cancelled, sent at their time in the
//! patient's language, recorded as Communications; an SMTP server that refuses or drops
//! the connection is retried without a message lost or sent twice; a server process killed
//! mid-send is relieved and the message delivered once; bad settings are refused
//! naming the field.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure
#![allow(clippy::too_many_lines)] // a test reads as one story

mod common;

use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use common::smtp::{Smtp, free_port, spawn_ready};
use common::{Server, entries, put_ok};
use serde_json::{Value, json};

/// The practice's settings: the relay, a reminder 24 hours before, English and Spanish.
fn settings(smtp: &Smtp) -> Value {
    json!({
        "time_zone": "America/New_York",
        "practice": "Maple Street Clinic",
        "email": {"host": "127.0.0.1", "port": smtp.port, "security": "starttls",
            "from": "Maple Street Clinic <reminders@clinic.example>", "ca_certificate": smtp.ca},
        "reminders": {"before_hours": [24], "channels": ["email"], "detail": "time",
            "templates": {
                "en": {"subject": "Your visit on {date}", "text": "Hello {patient}, see you on {date} at {time}. {practice}"},
                "es": {"subject": "Su cita el {date}", "text": "Hola {patient}, le esperamos el {date} a las {time}. {practice}"}}}
    })
}

/// Saves `document` as the tenant's messaging settings with the command line.
fn set_settings(server: &Server, document: &Value) -> std::process::Output {
    let file =
        std::env::temp_dir().join(format!("messaging-{}.json", uuid::Uuid::new_v4().simple()));
    std::fs::write(&file, document.to_string()).unwrap();
    server.run_cli(&[
        "messaging",
        "set",
        "--file",
        file.to_str().unwrap(),
        "--base-url",
        "http://fhir.test",
    ])
}

async fn start(backend: common::Backend, smtp: &Smtp) -> Option<Server> {
    let server = messaging_server(backend).await?;
    let saved = set_settings(&server, &settings(smtp));
    assert!(
        saved.status.success(),
        "{}",
        String::from_utf8_lossy(&saved.stderr)
    );
    Some(server)
}

/// A server with a clock the test moves and the public URL `http://fhir.test`, on
/// `backend` (`None`, skipped, when PostgreSQL is not configured).
async fn messaging_server(backend: common::Backend) -> Option<Server> {
    let args = [
        "--test-clock",
        "--admin-token",
        "admin-secret",
        "--base-url",
        "http://fhir.test",
    ];
    let server = Server::start_with(backend, &args, &[]).await;
    if server.is_none() {
        eprintln!("skipped: FHIR_TEST_POSTGRES_URL is not set");
    }
    server
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// An instant `hours` from now, on the hour (UTC).
fn hours_ahead(hours: i64) -> String {
    let at = (unix_now() / 3600 + hours) * 3600;
    time::OffsetDateTime::from_unix_timestamp(at)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn booked(id: &str, patient: &str, start: &str, end: &str) -> Value {
    json!({"resourceType": "Appointment", "id": id, "status": "booked", "start": start, "end": end,
        "participant": [{"actor": {"reference": patient}, "status": "accepted"},
            {"actor": {"reference": "Practitioner/dr"}, "status": "accepted"}]})
}

fn patient_with_email(id: &str, email: &str, language: &str) -> Value {
    json!({"resourceType": "Patient", "id": id, "name": [{"family": "Rivera", "given": ["Ana"]}],
        "telecom": [{"system": "phone", "value": "+15550100"}, {"system": "email", "value": email}],
        "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": language}]}, "preferred": true}]})
}

/// Polls `check` for up to 20 seconds until it answers something.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..100 {
        if let Some(found) = check().await {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("never happened: {what}");
}

/// The reminders planned for an appointment, with `status`.
async fn reminders(server: &Server, appointment: &str, status: &str) -> Vec<Value> {
    let (code, bundle) = server
        .get_json(&format!(
            "CommunicationRequest?group-identifier=urn:fhir-server:appointment-reminders|{appointment}&status={status}"
        ))
        .await;
    assert_eq!(code, 200, "{bundle}");
    entries(&bundle)
        .into_iter()
        .map(|e| e["resource"].clone())
        .collect()
}

async fn communications(server: &Server, request: &str) -> Vec<Value> {
    let (_, bundle) = server
        .get_json(&format!(
            "Communication?based-on=CommunicationRequest/{request}"
        ))
        .await;
    entries(&bundle)
        .into_iter()
        .map(|e| e["resource"].clone())
        .collect()
}

/// Ana's visit in 48 hours, booked; once its reminder is planned, the clock moved to its
/// time. The planned reminder.
async fn one_reminder_due(server: &Server) -> Value {
    put_ok(server, &patient_with_email("p1", "ana@example.org", "en")).await;
    let visit = booked("a1", "Patient/p1", &hours_ahead(48), &hours_ahead(49));
    put_ok(server, &visit).await;
    let planned = eventually("the reminder is planned", || async {
        reminders(server, "a1", "active").await.pop()
    })
    .await;
    server.advance_clock(25 * 3600).await;
    planned
}

/// A booked visit gets its reminder planned (a CommunicationRequest 24 hours before); a
/// cancelled one has its reminder revoked; at its time the reminder goes out by email over
/// STARTTLS, in the patient's language, with a Message-ID made from its key, and is
/// recorded as a completed Communication.
async fn reminders_by_email(backend: common::Backend) {
    let Some(smtp) = Smtp::start(&[]) else { return };
    let Some(server) = start(backend, &smtp).await else {
        return;
    };
    put_ok(
        &server,
        &patient_with_email("p1", "ana@example.org", "es-MX"),
    )
    .await;
    put_ok(&server, &patient_with_email("p2", "bo@example.org", "en")).await;
    let (start, end) = (hours_ahead(48), hours_ahead(49));
    put_ok(&server, &booked("a1", "Patient/p1", &start, &end)).await;
    let (later_start, later_end) = (hours_ahead(50), hours_ahead(51));
    let mut other = booked("a2", "Patient/p2", &later_start, &later_end);
    put_ok(&server, &other).await;

    let planned = eventually("a1's reminder is planned", || async {
        reminders(&server, "a1", "active").await.pop()
    })
    .await;
    assert_eq!(
        planned["occurrenceDateTime"].as_str().unwrap().get(..13),
        hours_ahead(24).get(..13)
    );
    assert_eq!(planned["subject"]["reference"], "Patient/p1");
    eventually("a2's reminder is planned", || async {
        reminders(&server, "a2", "active").await.pop()
    })
    .await;
    other["status"] = json!("cancelled");
    put_ok(&server, &other).await;
    let revoked = eventually("a2's reminder is revoked", || async {
        reminders(&server, "a2", "revoked").await.pop()
    })
    .await;
    assert_eq!(
        revoked["statusReason"]["text"],
        "the appointment moved or was cancelled"
    );
    assert!(
        smtp.messages().is_empty(),
        "nothing is sent before its time"
    );

    server.advance_clock(25 * 3600).await;
    let (envelope, text) =
        eventually("the reminder is sent", || async { smtp.messages().pop() }).await;
    assert_eq!(envelope["to"], json!(["ana@example.org"]));
    assert_eq!(envelope["tls"], true, "STARTTLS");
    assert!(text.contains("Hola Ana"), "{text}");
    assert!(text.contains("Maple Street Clinic"), "{text}");
    let id = planned["id"].as_str().unwrap();
    let sent = eventually("the reminder is recorded", || async {
        communications(&server, id).await.pop()
    })
    .await;
    assert_eq!(sent["status"], "completed");
    assert_eq!(sent["medium"][0]["coding"][0]["code"], "EMAILWRIT");
    assert_eq!(sent["medium"][0]["coding"][1]["code"], "email");
    let key = sent["identifier"][0]["value"].as_str().unwrap();
    assert!(
        text.contains(&format!("Message-ID: <{key}@clinic.example>")),
        "{text}"
    );
    eventually("the reminder's request is completed", || async {
        reminders(&server, "a1", "completed").await.pop()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        smtp.messages().len(),
        1,
        "the cancelled visit's reminder is not sent"
    );
}
both_backends!(reminders_by_email);

/// An SMTP server that answers 451 twice and then drops the connection: the reminder is
/// tried again after a growing wait and delivered once, recorded once.
async fn refused_and_dropped_deliveries_are_retried(backend: common::Backend) {
    let Some(smtp) = Smtp::start(&["--refuse", "2", "--drop", "1"]) else {
        return;
    };
    let Some(server) = start(backend, &smtp).await else {
        return;
    };
    let planned = one_reminder_due(&server).await;
    for _ in 0..40 {
        if !smtp.messages().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Towards the next try (after 30, 60, then 120 s), by less than half the send
        // job's lease (120 s): a jump past the lease while a delivery is under way would
        // let a second worker take the job and send it again, as a delivery that really
        // took that long would.
        server.advance_clock(59).await;
    }
    let messages = smtp.messages();
    assert_eq!(
        messages.len(),
        1,
        "delivered after two refusals and a dropped connection"
    );
    assert!(messages[0].1.contains("Hello Ana"));
    let id = planned["id"].as_str().unwrap();
    eventually("the reminder is recorded", || async {
        communications(&server, id).await.pop()
    })
    .await;
    server.advance_clock(3600).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(smtp.messages().len(), 1, "sent once");
    assert_eq!(communications(&server, id).await.len(), 1, "recorded once");
}
both_backends!(refused_and_dropped_deliveries_are_retried);

/// The server process is killed while the relay is still taking the message (DATA sent,
/// no 250 yet): the relay keeps nothing, nothing records the send, and when the job's
/// lease lapses another run takes it up and delivers the message, once, recorded once.
async fn a_process_killed_mid_send_is_relieved(backend: common::Backend) {
    let Some(smtp) = Smtp::start(&["--slow", "3"]) else {
        return;
    };
    let Some(mut server) = start(backend, &smtp).await else {
        return;
    };
    let planned = one_reminder_due(&server).await;
    let started = smtp.out.join("data-0001.started");
    eventually("the relay is taking the message", || async {
        started.exists().then_some(())
    })
    .await;
    server.kill9().await;
    server.start_again().await;
    // The restarted process's clock starts from the system time again.
    server.advance_clock(25 * 3600 + 300).await;
    let id = planned["id"].as_str().unwrap();
    let sent = eventually("the reminder is recorded", || async {
        communications(&server, id).await.pop()
    })
    .await;
    let key = sent["identifier"][0]["value"].as_str().unwrap();
    let messages = smtp.messages();
    assert_eq!(messages.len(), 1, "delivered once");
    assert!(
        messages[0]
            .1
            .contains(&format!("Message-ID: <{key}@clinic.example>"))
    );
    assert!(
        smtp.out.join("data-0002.started").exists(),
        "sent a second time"
    );
    assert_eq!(communications(&server, id).await.len(), 1);
}
both_backends!(a_process_killed_mid_send_is_relieved);

/// Bad settings are refused naming the field, and nothing is saved.
async fn bad_settings_are_refused(backend: common::Backend) {
    let Some(smtp) = Smtp::start(&[]) else { return };
    let Some(server) = start(backend, &smtp).await else {
        return;
    };
    let good = settings(&smtp);
    // The field each spoiling names, and its changes (JSON pointer, value; null removes).
    let pem = "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----";
    let cases: Vec<(&str, Vec<(&str, Value)>)> = vec![
        ("time_zone", vec![("/time_zone", json!("Mars/Olympus"))]),
        (
            "email.security",
            vec![
                ("/email/host", json!("smtp.example.org")),
                ("/email/security", json!("none")),
            ],
        ),
        ("email.from", vec![("/email/from", json!("not an address"))]),
        (
            "email.ca_certificate",
            vec![("/email/ca_certificate", json!(pem))],
        ),
        (
            "reminders.before_hours",
            vec![("/reminders/before_hours", json!([0]))],
        ),
        (
            "reminders.channels[0]",
            vec![("/reminders/channels", json!(["pigeon"]))],
        ),
        (
            "reminders.templates.es.text",
            vec![("/reminders/templates/es/text", json!("for your {reason}"))],
        ),
        (
            "reminders.templates",
            vec![("/reminders/templates/en", Value::Null)],
        ),
        (
            "reminders.quiet_hours.start",
            vec![(
                "/reminders/quiet_hours",
                json!({"start": "25:00", "end": "08:00"}),
            )],
        ),
        ("unknown field", vec![("/colour", json!("blue"))]),
    ];
    for (field, changes) in cases {
        let mut bad = good.clone();
        for (pointer, value) in changes {
            let (parent, name) = pointer.rsplit_once('/').unwrap();
            let parent = bad.pointer_mut(parent).unwrap().as_object_mut().unwrap();
            match value {
                Value::Null => parent.remove(name),
                value => parent.insert(name.to_owned(), value),
            };
        }
        let saved = set_settings(&server, &bad);
        let stderr = String::from_utf8_lossy(&saved.stderr);
        assert!(!saved.status.success(), "{field} accepted");
        let named = field.split(' ').next().unwrap();
        assert!(stderr.contains(named), "{field}: {stderr}");
    }
    // Without --base-url, a channel cannot be turned on.
    let file =
        std::env::temp_dir().join(format!("messaging-{}.json", uuid::Uuid::new_v4().simple()));
    std::fs::write(&file, good.to_string()).unwrap();
    let saved = server.run_cli(&["messaging", "set", "--file", file.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&saved.stderr).contains("--base-url"));
    // What is stored is the good document, its secrets hidden.
    let shown = server.run_cli(&["messaging", "show"]);
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["time_zone"], "America/New_York");
    // The admin API needs a token.
    let response = server
        .client
        .get(format!("{}/auth/admin/messaging", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}
both_backends!(bad_settings_are_refused);

/// Thirty reminders fall due at once, on PostgreSQL for two server processes sharing the
/// database (four workers each), on SQLite for one process's four workers: each reminder
/// is sent exactly once and recorded once.
async fn due_together_each_sent_once(backend: common::Backend) {
    let Some(smtp) = Smtp::start(&[]) else { return };
    let Some(server) = start(backend, &smtp).await else {
        return;
    };
    let other = match backend {
        common::Backend::Postgres => Some(server.sibling().await),
        common::Backend::Sqlite => None,
    };
    let (start, end) = (hours_ahead(48), hours_ahead(49));
    for n in 0..30 {
        put_ok(
            &server,
            &patient_with_email(&format!("p{n}"), &format!("p{n}@example.org"), "en"),
        )
        .await;
        let mut visit = booked(&format!("a{n}"), &format!("Patient/p{n}"), &start, &end);
        // Each with a practitioner of their own: one time, thirty visits.
        visit["participant"][1]["actor"]["reference"] = json!(format!("Practitioner/dr{n}"));
        put_ok(&server, &visit).await;
    }
    eventually("every reminder is planned", || async {
        let (_, bundle) = server
            .get_json("CommunicationRequest?status=active&_summary=count")
            .await;
        (bundle["total"] == 30).then_some(())
    })
    .await;
    for process in std::iter::once(&server).chain(other.as_ref()) {
        process.advance_clock(25 * 3600).await;
    }
    eventually("every reminder is sent", || async {
        (smtp.messages().len() >= 30).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut recipients: Vec<String> = smtp
        .messages()
        .iter()
        .map(|(envelope, _)| envelope["to"][0].as_str().unwrap().to_owned())
        .collect();
    recipients.sort();
    let count = recipients.len();
    recipients.dedup();
    assert_eq!(
        (count, recipients.len()),
        (30, 30),
        "each once: {recipients:?}"
    );
    let (_, bundle) = server
        .get_json("Communication?status=completed&_summary=count")
        .await;
    assert_eq!(bundle["total"], 30);
}
both_backends!(due_together_each_sent_once);

/// A Twilio-compatible Messages API (`tests/messaging/twilio_server.py`).
struct TwilioApi {
    child: Child,
    out: PathBuf,
    port: u16,
}

impl Drop for TwilioApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SID: &str = "AC0123456789";
const TOKEN: &str = "secret0123";

impl TwilioApi {
    fn start(extra: &[&str]) -> TwilioApi {
        let dir = std::env::temp_dir().join(format!("twilio-{}", uuid::Uuid::new_v4().simple()));
        let out = dir.join("out");
        std::fs::create_dir_all(&out).unwrap();
        let port = free_port();
        let mut args = vec![port.to_string(), SID.into(), TOKEN.into(), "out".into()];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let child = spawn_ready("twilio_server.py", &args, &dir);
        TwilioApi { child, out, port }
    }

    /// The messages it took, in order.
    fn messages(&self) -> Vec<Value> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.out)
            .unwrap()
            .map(|e| e.unwrap().path())
            // Not the `.json.part` files the server is still writing.
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|name| serde_json::from_str(&std::fs::read_to_string(name).unwrap()).unwrap())
            .collect()
    }
}

fn sms_settings(api: &TwilioApi) -> Value {
    json!({
        "time_zone": "America/New_York",
        "practice": "Maple Street Clinic",
        "sms": {"api_url": format!("http://127.0.0.1:{}", api.port), "account_sid": SID,
            "auth_token": TOKEN, "from": "+15555550000", "front_desk": "+15555550111"},
        "reminders": {"before_hours": [24], "channels": ["sms"],
            "templates": {
                "en": {"subject": "Visit", "text": "Hello {patient}, see you on {date} at {time}. Reply C to confirm, R to cancel."},
                "es": {"subject": "Cita", "text": "Hola {patient}, le esperamos el {date} a las {time}.", "confirm": ["si"], "cancel": ["anular"]}}}
    })
}

/// Both channels, SMS first.
fn sms_and_email(api: &TwilioApi, smtp: &Smtp) -> Value {
    let mut document = sms_settings(api);
    document["email"] = settings(smtp)["email"].clone();
    document["reminders"]["channels"] = json!(["sms", "email"]);
    document
}

fn patient_with_mobile(id: &str, number: &str) -> Value {
    json!({"resourceType": "Patient", "id": id, "name": [{"family": "Rivera", "given": ["Ana"]}],
        "telecom": [{"system": "phone", "use": "mobile", "value": number}]})
}

/// POSTs a Twilio webhook with `params`, signed with `token` over the public URL (none:
/// unsigned); the status and the answer.
async fn webhook(
    server: &Server,
    hook: &str,
    params: &[(&str, &str)],
    token: Option<&str>,
) -> (u16, String) {
    let pairs: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let public = format!("http://fhir.test/fhir/messaging/twilio/{hook}");
    let mut request = server
        .client
        .post(format!("{}/messaging/twilio/{hook}", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&pairs)
                .finish(),
        );
    if let Some(token) = token {
        let signature = fhir_server::channels::twilio::signature(token, &public, &pairs);
        request = request.header("x-twilio-signature", signature);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// A reminder by SMS, its delivery report, and the patient's replies: signed webhooks only
/// (unsigned and forged ones refused, changing nothing), C confirms the visit, a stranger
/// is sent to the front desk, STOP stops the messages, R cancels the visit (and frees its
/// time), every reply recorded.
async fn sms_reminders_and_replies(backend: common::Backend) {
    let api = TwilioApi::start(&["--fail", "1"]);
    let Some(server) = messaging_server(backend).await else {
        return;
    };
    let saved = set_settings(&server, &sms_settings(&api));
    assert!(
        saved.status.success(),
        "{}",
        String::from_utf8_lossy(&saved.stderr)
    );
    let ana = "+15555550100";
    put_ok(&server, &patient_with_mobile("p1", ana)).await;
    put_ok(
        &server,
        &booked("a1", "Patient/p1", &hours_ahead(48), &hours_ahead(49)),
    )
    .await;
    let planned = eventually("the reminder is planned", || async {
        reminders(&server, "a1", "active").await.pop()
    })
    .await;
    server.advance_clock(25 * 3600).await;
    // The gateway fails the first try (503): tried again after the first wait.
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.advance_clock(60).await;
    let sent = eventually("the SMS is sent", || async { api.messages().pop() }).await;
    assert_eq!(sent["form"]["To"], ana);
    assert_eq!(sent["form"]["From"], "+15555550000");
    assert!(
        sent["form"]["Body"]
            .as_str()
            .unwrap()
            .starts_with("Hello Ana")
    );
    assert_eq!(
        sent["form"]["StatusCallback"],
        "http://fhir.test/fhir/messaging/twilio/status"
    );
    let id = planned["id"].as_str().unwrap();
    let record = eventually("the SMS is recorded", || async {
        communications(&server, id).await.pop()
    })
    .await;
    assert_eq!(record["medium"][0]["coding"][1]["code"], "sms");
    assert_eq!(sent["idempotency"], record["identifier"][0]["value"]);
    assert_eq!(api.messages().len(), 1);

    // Delivery report, signed: the Communication is marked received.
    let report = [
        ("MessageSid", "SM0001"),
        ("MessageStatus", "delivered"),
        ("AccountSid", SID),
    ];
    assert_eq!(
        webhook(&server, "status", &report, Some(TOKEN)).await.0,
        200
    );
    let delivered = communications(&server, id).await.pop().unwrap();
    assert!(delivered["received"].is_string(), "{delivered}");

    // Unsigned, forged, or signed over other parameters: refused, nothing done.
    let confirm = [("From", ana), ("To", "+15555550000"), ("Body", "C")];
    let (status, body) = webhook(&server, "sms", &confirm, None).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        webhook(&server, "sms", &confirm, Some("not-the-token"))
            .await
            .0,
        403
    );
    let (_, visit) = server.get_json("Appointment/a1").await;
    assert!(visit["extension"].is_null(), "{visit}");

    let (status, twiml) = webhook(&server, "sms", &confirm, Some(TOKEN)).await;
    assert_eq!(status, 200);
    assert!(
        twiml.contains("<Response><Message>Thank you: your visit on"),
        "{twiml}"
    );
    let (_, visit) = server.get_json("Appointment/a1").await;
    assert_eq!(
        visit["extension"][0]["url"],
        "urn:fhir-server:StructureDefinition/patient-confirmed"
    );
    let (_, inbound) = server.get_json("Communication?sender=Patient/p1").await;
    assert_eq!(
        inbound["entry"][0]["resource"]["payload"][0]["contentString"],
        "C"
    );

    let stranger = [
        ("From", "+15555550142"),
        ("To", "+15555550000"),
        ("Body", "C"),
    ];
    let (_, twiml) = webhook(&server, "sms", &stranger, Some(TOKEN)).await;
    assert!(twiml.contains("could not match this number"), "{twiml}");
    assert!(twiml.contains("+15555550111"), "{twiml}");

    // R cancels the visit through the scheduling rules.
    let cancel = [("From", ana), ("To", "+15555550000"), ("Body", "r")];
    let (_, twiml) = webhook(&server, "sms", &cancel, Some(TOKEN)).await;
    assert!(twiml.contains("is cancelled"), "{twiml}");
    let (_, visit) = server.get_json("Appointment/a1").await;
    assert_eq!(visit["status"], "cancelled");

    // STOP: the next reminder is not texted.
    let stop = [("From", ana), ("To", "+15555550000"), ("Body", "STOP")];
    let (_, twiml) = webhook(&server, "sms", &stop, Some(TOKEN)).await;
    assert!(twiml.ends_with("<Response></Response>"), "{twiml}");
    put_ok(
        &server,
        &booked(
            "a2",
            "Patient/p1",
            &hours_ahead(26 + 48),
            &hours_ahead(26 + 49),
        ),
    )
    .await;
    let second = eventually("the second reminder is planned", || async {
        reminders(&server, "a2", "active").await.pop()
    })
    .await;
    server.advance_clock(25 * 3600).await;
    let id = second["id"].as_str().unwrap();
    let skipped = eventually("the second reminder is settled", || async {
        communications(&server, id).await.pop()
    })
    .await;
    assert_eq!(skipped["status"], "not-done");
    assert_eq!(api.messages().len(), 1, "nothing texted after STOP");
}
both_backends!(sms_reminders_and_replies);

/// The policy's escalation and deadline: a reminder by SMS 48 hours before; unconfirmed
/// 12 hours later, it goes again by email (not to the patient who confirmed by reply);
/// still unconfirmed 24 hours before the visit, a Task asks the front desk to call. With
/// `release` instead, the unconfirmed visit is cancelled.
async fn escalation_and_deadline(backend: common::Backend) {
    let Some(smtp) = Smtp::start(&[]) else { return };
    let api = TwilioApi::start(&[]);
    let Some(server) = messaging_server(backend).await else {
        return;
    };
    let mut document = sms_and_email(&api, &smtp);
    document["reminders"]["before_hours"] = json!([48]);
    document["reminders"]["escalate_after_hours"] = json!(12);
    document["reminders"]["unconfirmed"] = json!({"hours_before": 24, "action": "task"});
    let saved = set_settings(&server, &document);
    assert!(
        saved.status.success(),
        "{}",
        String::from_utf8_lossy(&saved.stderr)
    );
    for (n, number) in [(1, "+15555550101"), (2, "+15555550102")] {
        let mut patient = patient_with_mobile(&format!("p{n}"), number);
        patient["telecom"]
            .as_array_mut()
            .unwrap()
            .push(json!({"system": "email", "value": format!("p{n}@example.org")}));
        put_ok(&server, &patient).await;
        let (start, end) = (hours_ahead(72), hours_ahead(73));
        let mut visit = booked(&format!("a{n}"), &format!("Patient/p{n}"), &start, &end);
        visit["participant"][1]["actor"]["reference"] = json!(format!("Practitioner/dr{n}"));
        put_ok(&server, &visit).await;
    }
    for visit in ["a1", "a2"] {
        eventually("the reminders are planned", || async {
            reminders(&server, visit, "active").await.pop()
        })
        .await;
    }
    server.advance_clock(25 * 3600).await;
    eventually("both texted", || async {
        (api.messages().len() == 2).then_some(())
    })
    .await;
    let confirm = [
        ("From", "+15555550102"),
        ("To", "+15555550000"),
        ("Body", "C"),
    ];
    assert_eq!(webhook(&server, "sms", &confirm, Some(TOKEN)).await.0, 200);

    server.advance_clock(12 * 3600 + 60).await;
    let (envelope, _) = eventually("the unconfirmed one is emailed", || async {
        smtp.messages().pop()
    })
    .await;
    assert_eq!(envelope["to"], json!(["p1@example.org"]));
    eventually("a1's reminder is complete", || async {
        reminders(&server, "a1", "completed").await.pop()
    })
    .await;
    server.advance_clock(12 * 3600).await;
    let task = eventually("a Task for the front desk", || async {
        let (_, bundle) = server.get_json("Task?focus=Appointment/a1").await;
        entries(&bundle).pop()
    })
    .await;
    assert_eq!(task["resource"]["for"]["reference"], "Patient/p1");
    assert_eq!(task["resource"]["status"], "requested");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        smtp.messages().len(),
        1,
        "the confirmed patient is not emailed"
    );
    let (_, none) = server.get_json("Task?focus=Appointment/a2").await;
    assert!(entries(&none).is_empty(), "no Task for a confirmed visit");

    // `release`: an unconfirmed visit is cancelled at the deadline.
    document["reminders"]["unconfirmed"]["action"] = json!("release");
    assert!(set_settings(&server, &document).status.success());
    let start = hours_ahead(49 + 72);
    let visit = booked("a3", "Patient/p1", &start, &hours_ahead(49 + 73));
    put_ok(&server, &visit).await;
    eventually("a3's reminder is planned", || async {
        reminders(&server, "a3", "active").await.pop()
    })
    .await;
    server.advance_clock(49 * 3600).await;
    eventually("a3 is released", || async {
        let (_, visit) = server.get_json("Appointment/a3").await;
        (visit["status"] == "cancelled").then_some(())
    })
    .await;
}
both_backends!(escalation_and_deadline);

/// A quoted-printable body (RFC 2045) decoded: soft line breaks joined, `=XX` bytes.
fn unquote(text: &str) -> String {
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (bytes[i], hex) {
            (b'=', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The first `http` link in `text` that contains `/messaging/link?t=`.
fn link_in(text: &str, nth: usize) -> String {
    text.split_whitespace()
        .filter(|word| word.contains("/messaging/link?t="))
        .nth(nth)
        .expect("a link")
        .to_owned()
}

/// POSTs the page of a link in a message with its token, as its button does.
async fn post_link(server: &Server, token: String) -> (u16, String) {
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("t", &token)
        .finish();
    let response = server
        .client
        .post(format!("{}/messaging/link", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The links in a reminder email, opened in a real browser: the page asks and only its
/// button confirms; a link works once, a forged one not at all; the cancel link cancels.
async fn links_confirm_and_cancel_in_a_browser(backend: common::Backend) {
    let Some(browser) = common::webdriver::WebDriver::start().await else {
        return;
    };
    let Some(smtp) = Smtp::start(&[]) else { return };
    let Some(server) = messaging_server(backend).await else {
        return;
    };
    let mut document = settings(&smtp);
    document["reminders"]["templates"]["en"]["text"] = json!(
        "Hello {patient}, see you on {date} at {time}.\nConfirm: {confirm_link}\nCancel: {cancel_link}"
    );
    assert!(set_settings(&server, &document).status.success());
    one_reminder_due(&server).await;
    let (_, text) = eventually("the reminder is sent", || async { smtp.messages().pop() }).await;
    let text = unquote(&text);
    // The public URL is http://fhir.test; the test reaches the same path locally.
    let local = |link: String| link.replace("http://fhir.test/fhir", &server.base);
    let (confirm, cancel) = (local(link_in(&text, 0)), local(link_in(&text, 1)));

    browser.go(&confirm).await;
    let (_, visit) = server.get_json("Appointment/a1").await;
    assert!(
        visit["extension"].is_null(),
        "opening the link alone changes nothing"
    );
    browser.click("#go").await;
    assert!(browser.text_of("#said").await.contains("is confirmed"));
    let (_, visit) = server.get_json("Appointment/a1").await;
    assert_eq!(
        visit["extension"][0]["url"],
        "urn:fhir-server:StructureDefinition/patient-confirmed"
    );

    let token_of = |link: &str| link.split("?t=").nth(1).unwrap().to_owned();
    let (status, page) = post_link(&server, token_of(&confirm)).await;
    assert_eq!(status, 410, "{page}");
    assert!(page.contains("used already"));
    let mut forged = token_of(&cancel);
    forged.insert(3, 'x');
    assert_eq!(post_link(&server, forged).await.0, 400);
    let (status, page) = post_link(&server, token_of(&cancel)).await;
    assert_eq!(status, 200, "{page}");
    let (_, visit) = server.get_json("Appointment/a1").await;
    assert_eq!(visit["status"], "cancelled");
    let (status, _) = post_link(&server, token_of(&cancel)).await;
    assert_eq!(status, 409, "the visit changed (cancelled) since");
}
both_backends!(links_confirm_and_cancel_in_a_browser);

/// The figures of `$reminder-stats` summed over its weeks: integers added, and each rate
/// of the one week that has it.
fn stats_totals(stats: &Value) -> std::collections::BTreeMap<String, f64> {
    let mut totals = std::collections::BTreeMap::new();
    for week in stats["parameter"].as_array().unwrap() {
        for part in week["part"].as_array().unwrap() {
            let name = part["name"].as_str().unwrap().to_owned();
            if let Some(n) = part["valueInteger"].as_f64() {
                *totals.entry(name).or_insert(0.0) += n;
            } else if let Some(rate) = part["valueDecimal"].as_f64() {
                totals.insert(name, rate);
            }
        }
    }
    totals
}

/// `$reminder-stats` counts what happened: three visits texted, one confirmed by reply,
/// one cancelled by reply, one missed; a fourth visit, of a patient without a mobile
/// number, not reminded and kept.
async fn reminder_stats_count_what_happened(backend: common::Backend) {
    let api = TwilioApi::start(&[]);
    let Some(server) = messaging_server(backend).await else {
        return;
    };
    assert!(set_settings(&server, &sms_settings(&api)).status.success());
    for n in 1..=4 {
        let mut patient = patient_with_mobile(&format!("p{n}"), &format!("+1555555010{n}"));
        if n == 4 {
            patient["telecom"] =
                json!([{"system": "phone", "use": "home", "value": "+15555550104"}]);
        }
        put_ok(&server, &patient).await;
        let (start, end) = (hours_ahead(48), hours_ahead(49));
        let mut visit = booked(&format!("a{n}"), &format!("Patient/p{n}"), &start, &end);
        visit["participant"][1]["actor"]["reference"] = json!(format!("Practitioner/dr{n}"));
        put_ok(&server, &visit).await;
    }
    for n in 1..=4 {
        eventually("planned", || async {
            reminders(&server, &format!("a{n}"), "active").await.pop()
        })
        .await;
    }
    server.advance_clock(25 * 3600).await;
    eventually("three texted", || async {
        (api.messages().len() == 3).then_some(())
    })
    .await;
    for (n, reply) in [(1, "C"), (2, "R")] {
        let from = format!("+1555555010{n}");
        let params = [
            ("From", from.as_str()),
            ("To", "+15555550000"),
            ("Body", reply),
        ];
        assert_eq!(webhook(&server, "sms", &params, Some(TOKEN)).await.0, 200);
    }
    server.advance_clock(25 * 3600).await;
    for (id, status) in [("a3", "noshow"), ("a4", "fulfilled")] {
        let (_, mut visit) = server.get_json(&format!("Appointment/{id}")).await;
        visit["status"] = json!(status);
        put_ok(&server, &visit).await;
    }
    let today = &hours_ahead(0)[..10];
    let later = &hours_ahead(14 * 24)[..10];
    let (status, stats) = server
        .get_json(&format!("$reminder-stats?start={today}&end={later}"))
        .await;
    assert_eq!(status, 200, "{stats}");
    let totals = stats_totals(&stats);
    let wanted = [
        ("sent-sms", 3.0),
        ("sent-email", 0.0),
        ("appointments", 4.0),
        ("reminded", 3.0),
        ("confirmed", 1.0),
        ("cancelled-by-patient", 1.0),
        ("no-show-rate-reminded", 1.0),
        ("no-show-rate-not-reminded", 0.0),
    ];
    for (name, value) in wanted {
        assert_eq!(totals.get(name), Some(&value), "{name}: {stats}");
    }
    // Bad questions name the parameter.
    for query in [
        "start=2027-01-01",
        "start=2027-01-01&end=2026-01-01",
        "start=soon&end=2027-02-01",
        "start=2027-01-01&end=2028-01-01",
    ] {
        let (status, outcome) = server.get_json(&format!("$reminder-stats?{query}")).await;
        assert_eq!(status, 400, "{query}: {outcome}");
        assert!(
            outcome["issue"][0]["expression"][0]
                .as_str()
                .unwrap()
                .contains("name = '"),
            "{outcome}"
        );
    }
}
both_backends!(reminder_stats_count_what_happened);

/// A reminder call and the IVR line: the call says the template's words and offers the
/// keys, which come back (signed) to the webhook named in its TwiML: 1 confirms. A patient
/// calling the practice hears the next visit and 2 cancels it; 0 puts them through to the
/// front desk; an unknown caller goes straight there; a forged call token is a stranger.
/// The query of the `action` of a TwiML `<Gather>`.
fn action_query(twiml: &str) -> String {
    twiml
        .split("action=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .replace("&amp;", "&")
        .split_once('?')
        .unwrap()
        .1
        .to_owned()
}

/// A Schedule of `actor` open every day, all day (UTC), for 30-minute visits.
fn open_every_day(id: &str, actor: &str) -> Value {
    let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    json!({"resourceType": "Schedule", "id": id, "active": true, "actor": [{"reference": actor}],
        "extension": [{"url": "https://medplum.com/fhir/StructureDefinition/SchedulingParameters", "extension": [
            {"url": "availability", "valueTiming": {"repeat": {"dayOfWeek": days, "timeOfDay": ["00:00:00"], "duration": 23, "durationUnit": "h"}}},
            {"url": "duration", "valueDuration": {"value": 30, "unit": "min"}},
            {"url": "alignmentInterval", "valueDuration": {"value": 30, "unit": "min"}},
            {"url": "timezone", "valueCode": "UTC"}]}]})
}

async fn calls_and_the_ivr_line(backend: common::Backend) {
    let api = TwilioApi::start(&[]);
    let Some(server) = messaging_server(backend).await else {
        return;
    };
    let mut document = sms_settings(&api);
    document["reminders"]["channels"] = json!(["voice"]);
    document["reminders"]["templates"]["en"]["voice"] =
        json!("Hello {patient}, this is a reminder of your visit on {date} at {time}.");
    assert!(set_settings(&server, &document).status.success());
    let ana = "+15555550100";
    let mut patient = patient_with_mobile("p1", ana);
    patient["telecom"][0]["use"] = json!("home");
    put_ok(&server, &patient).await;
    put_ok(
        &server,
        &booked("a1", "Patient/p1", &hours_ahead(48), &hours_ahead(49)),
    )
    .await;
    eventually("planned", || async {
        reminders(&server, "a1", "active").await.pop()
    })
    .await;
    server.advance_clock(25 * 3600).await;
    let call = eventually("the call is placed", || async { api.messages().pop() }).await;
    assert_eq!(call["kind"], "call");
    assert_eq!(call["form"]["To"], ana);
    let twiml = call["form"]["Twiml"].as_str().unwrap();
    assert!(
        twiml.contains("<Say>Hello Ana, this is a reminder of your visit on"),
        "{twiml}"
    );
    assert!(twiml.contains("Press 1 to confirm"), "{twiml}");
    let action = twiml
        .split("action=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .replace("&amp;", "&");
    let query = action.split_once('?').unwrap().1.to_owned();
    assert!(
        action.starts_with("http://fhir.test/fhir/messaging/twilio/voice?r="),
        "{action}"
    );

    // The keys come back to the action URL, signed over it.
    let pressed = |digits: &'static str, query: String, from: &'static str| {
        let server = &server;
        async move {
            let pairs: Vec<(String, String)> = [
                ("From", from),
                ("To", "+15555550000"),
                ("Digits", digits),
                ("CallSid", "CA0001"),
            ]
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
            let suffix = match query.is_empty() {
                true => String::new(),
                false => format!("?{query}"),
            };
            let public = format!("http://fhir.test/fhir/messaging/twilio/voice{suffix}");
            let signature = fhir_server::channels::twilio::signature(TOKEN, &public, &pairs);
            let response = server
                .client
                .post(format!("{}/messaging/twilio/voice{suffix}", server.base))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("x-twilio-signature", signature)
                .body(
                    form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(&pairs)
                        .finish(),
                )
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let (status, answer) = pressed("1", query.clone(), ana).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("your visit is confirmed"), "{answer}");
    let (_, visit) = server.get_json("Appointment/a1").await;
    assert_eq!(
        visit["extension"][0]["url"],
        "urn:fhir-server:StructureDefinition/patient-confirmed"
    );

    // The IVR line: no token; the caller's number finds the patient and the next visit.
    let (_, answer) = pressed("", String::new(), ana).await;
    assert!(answer.contains("Your next visit is on"), "{answer}");
    let ivr_query = action_query(&answer);
    let (_, answer) = pressed("0", ivr_query.clone(), ana).await;
    assert!(answer.contains("<Dial>+15555550111</Dial>"), "{answer}");

    // 3: the next opening with the visit's practitioner, offered; 1 takes it.
    let (_, answer) = pressed("3", ivr_query.clone(), ana).await;
    assert!(
        answer.contains("<Dial>+15555550111</Dial>"),
        "no Schedule, no opening: {answer}"
    );
    put_ok(&server, &open_every_day("s1", "Practitioner/dr")).await;
    let (_, answer) = pressed("3", ivr_query, ana).await;
    assert!(answer.contains("The next opening is on"), "{answer}");
    let offer_query = action_query(&answer);
    let (_, answer) = pressed("1", offer_query.clone(), ana).await;
    assert!(answer.contains("Your visit is moved to"), "{answer}");
    let (_, old) = server.get_json("Appointment/a1").await;
    assert_eq!(old["status"], "cancelled");
    let (_, moved) = server
        .get_json("Appointment?patient=Patient/p1&status=booked")
        .await;
    let moved = entries(&moved)[0]["resource"].clone();
    assert_eq!(
        moved["extension"][0]["valueReference"]["reference"],
        "Appointment/a1"
    );
    assert!(
        moved["start"].as_str().unwrap() < old["start"].as_str().unwrap(),
        "sooner: {moved}"
    );
    let (_, answer) = pressed("1", offer_query, ana).await;
    assert!(
        answer.contains("<Dial>"),
        "an offer is taken once: {answer}"
    );

    // 2 cancels (the moved visit, now the next one).
    let (_, answer) = pressed("", String::new(), ana).await;
    let (_, answer) = pressed("2", action_query(&answer), ana).await;
    assert!(answer.contains("Your visit is cancelled"), "{answer}");
    let (_, visit) = server
        .get_json(&format!("Appointment/{}", moved["id"].as_str().unwrap()))
        .await;
    assert_eq!(visit["status"], "cancelled");
    let (_, answer) = pressed("", String::new(), "+15555550142").await;
    assert!(
        answer.contains("<Dial>+15555550111</Dial>"),
        "an unknown caller: {answer}"
    );
    let (_, answer) = pressed("1", "r=forged.token".into(), ana).await;
    assert!(answer.contains("<Dial>"), "a forged token: {answer}");
}
both_backends!(calls_and_the_ivr_line);

/// A broadcast to the patients with a visit at a closed location, two a minute: texted
/// where they have a mobile, emailed otherwise, passed over when they texted STOP, failed
/// when nothing reaches them; the report counts each, and bad asks are refused naming the
/// parameter.
async fn broadcast_to_a_search(backend: common::Backend) {
    let Some(smtp) = Smtp::start(&[]) else { return };
    let api = TwilioApi::start(&[]);
    let Some(server) = messaging_server(backend).await else {
        return;
    };
    let document = sms_and_email(&api, &smtp);
    assert!(set_settings(&server, &document).status.success());
    for n in 1..=6 {
        // One after the other: the room takes one visit at a time.
        let (start, end) = (hours_ahead(30 + n), hours_ahead(31 + n));
        let mut patient = patient_with_mobile(&format!("b{n}"), &format!("+1555555020{n}"));
        match n {
            4 => patient["telecom"] = json!([{"system": "email", "value": "b4@example.org"}]),
            5 => {
                patient.as_object_mut().unwrap().remove("telecom");
            }
            _ => {}
        }
        put_ok(&server, &patient).await;
        let place = if n == 6 {
            "Location/open"
        } else {
            "Location/closed"
        };
        let mut visit = booked(&format!("v{n}"), &format!("Patient/b{n}"), &start, &end);
        visit["participant"][1]["actor"]["reference"] = json!(format!("Practitioner/dr{n}"));
        visit["participant"]
            .as_array_mut()
            .unwrap()
            .push(json!({"actor": {"reference": place}, "status": "accepted"}));
        put_ok(&server, &visit).await;
    }
    let stop = [
        ("From", "+15555550203"),
        ("To", "+15555550000"),
        ("Body", "STOP"),
    ];
    assert_eq!(webhook(&server, "sms", &stop, Some(TOKEN)).await.0, 200);

    let ask = |search: &str, text: &str, sms_per_minute: i64| {
        json!({"resourceType": "Parameters", "parameter": [
            {"name": "search", "valueString": search},
            {"name": "subject", "valueString": "The clinic is closed tomorrow"},
            {"name": "text", "valueString": text},
            {"name": "per-minute", "valueInteger": 1},
            {"name": "sms-per-minute", "valueInteger": sms_per_minute}]})
    };
    let closed = "Appointment?location=Location/closed&status=booked";
    let text = "Maple Street Clinic is closed tomorrow: we will call you to move your visit.";
    let (status, answer) = server.post_json("$broadcast", &ask(closed, text, 2)).await;
    assert_eq!(status, 202, "{answer}");
    let task = answer["parameter"][0]["valueReference"]["reference"]
        .as_str()
        .unwrap()
        .to_owned();
    // Each channel at its own rate: two texts and the one email at once; the third text
    // (to the number that texted STOP) a minute later.
    eventually("the first two are texted and the email sent", || async {
        (api.messages().len() == 2 && smtp.messages().len() == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(api.messages().len(), 2, "two texts a minute");
    let (_, pending) = server.get_json(&format!("{task}/$broadcast-report")).await;
    assert_eq!(
        pending["parameter"][4]["valueInteger"], 1,
        "the third text waits: {pending}"
    );
    server.advance_clock(60).await;
    let report = eventually("every recipient answered", || async {
        let (_, report) = server.get_json(&format!("{task}/$broadcast-report")).await;
        (report["parameter"][4]["valueInteger"] == 0).then_some(report)
    })
    .await;
    let counts: Vec<(String, i64)> = report["parameter"]
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
    let wanted = [
        ("recipients", 5),
        ("sent", 3),
        ("failed", 1),
        ("opted-out", 1),
        ("pending", 0),
    ];
    assert_eq!(
        counts,
        wanted.map(|(n, v)| (n.to_owned(), v)).to_vec(),
        "{report}"
    );
    let (_, done) = server.get_json(&task).await;
    assert_eq!(done["status"], "completed");
    assert!(
        api.messages()
            .iter()
            .all(|m| m["form"]["To"] != "+15555550206"),
        "only the closed location's patients"
    );

    for (bad, name) in [
        (ask(closed, "", 2), "text"),
        (ask("Observation?code=x", text, 2), "search"),
        (ask(closed, text, 0), "sms-per-minute"),
    ] {
        let (status, outcome) = server.post_json("$broadcast", &bad).await;
        assert_eq!(status, 400, "{outcome}");
        assert!(
            outcome["issue"][0]["expression"][0]
                .as_str()
                .unwrap()
                .contains(name),
            "{outcome}"
        );
    }
}
both_backends!(broadcast_to_a_search);

/// The SMS gateway is down for an hour (seven failed tries, 30 s to 32 min apart): the
/// reminder waits it out and is texted once when the gateway is back.
async fn a_channel_down_for_an_hour(backend: common::Backend) {
    let api = TwilioApi::start(&["--fail", "7"]);
    let Some(server) = messaging_server(backend).await else {
        return;
    };
    assert!(set_settings(&server, &sms_settings(&api)).status.success());
    put_ok(&server, &patient_with_mobile("p1", "+15555550100")).await;
    put_ok(
        &server,
        &booked("a1", "Patient/p1", &hours_ahead(48), &hours_ahead(49)),
    )
    .await;
    let planned = eventually("planned", || async {
        reminders(&server, "a1", "active").await.pop()
    })
    .await;
    server.advance_clock(25 * 3600).await;
    // The clock moves in steps shorter than a job's lease (60 s): a step past it while a
    // send is in flight would hand the job to another worker, which no real clock does.
    let mut waited = 0;
    while api.messages().is_empty() && waited < 240 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        server.advance_clock(45).await;
        waited += 1;
    }
    assert_eq!(api.messages().len(), 1, "texted once the gateway is back");
    let id = planned["id"].as_str().unwrap();
    let sent = eventually("recorded", || async {
        communications(&server, id).await.pop()
    })
    .await;
    assert_eq!(sent["status"], "completed");
    server.advance_clock(7200).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(api.messages().len(), 1, "once");
}
both_backends!(a_channel_down_for_an_hour);

/// A visit released at the confirmation deadline is followed by an offer of the next
/// three openings with its practitioner, by the patient's channel: by SMS, answered with a
/// number (thirty answers at once from the patient's phone book one time, once); by email,
/// a link per time that books it, once.
async fn released_visits_are_offered_new_times(backend: common::Backend) {
    let Some(smtp) = Smtp::start(&[]) else { return };
    let api = TwilioApi::start(&[]);
    let Some(server) = messaging_server(backend).await else {
        return;
    };
    let mut document = sms_and_email(&api, &smtp);
    document["reminders"]["before_hours"] = json!([48]);
    document["reminders"]["unconfirmed"] = json!({"hours_before": 24, "action": "release"});
    assert!(set_settings(&server, &document).status.success());
    put_ok(&server, &open_every_day("s1", "Practitioner/dr")).await;
    put_ok(&server, &open_every_day("s2", "Practitioner/dr2")).await;
    put_ok(&server, &patient_with_mobile("p1", "+15555550101")).await;
    put_ok(&server, &patient_with_email("p2", "p2@example.org", "en")).await;
    let (start, end) = (hours_ahead(72), hours_ahead(73));
    put_ok(&server, &booked("a1", "Patient/p1", &start, &end)).await;
    let mut visit = booked("a2", "Patient/p2", &start, &end);
    visit["participant"][1]["actor"]["reference"] = json!("Practitioner/dr2");
    put_ok(&server, &visit).await;
    for visit in ["a1", "a2"] {
        eventually("the reminders are planned", || async {
            reminders(&server, visit, "active").await.pop()
        })
        .await;
    }
    server.advance_clock(25 * 3600).await;
    eventually("the reminders are sent", || async {
        (api.messages().len() == 1 && smtp.messages().len() == 1).then_some(())
    })
    .await;
    server.advance_clock(24 * 3600 + 60).await;

    // By SMS: the offer, then thirty answers at once; one time is booked.
    let offer = eventually("the offer is texted", || async {
        api.messages()
            .into_iter()
            .find(|m| m["form"]["Body"].as_str().unwrap().contains("reply 1 for"))
    })
    .await;
    assert_eq!(offer["form"]["To"], "+15555550101");
    let (_, released) = server.get_json("Appointment/a1").await;
    assert_eq!(released["status"], "cancelled");
    let (_, tasks) = server.get_json("Task?focus=Appointment/a1").await;
    let task = entries(&tasks)[0]["resource"].clone();
    assert_eq!(task["intent"], "proposal");
    assert_eq!(task["input"].as_array().unwrap().len(), 3, "{task}");
    let answers = (0..30).map(|n| {
        let server = &server;
        async move {
            let digit = ["1", "2", "3"][n % 3];
            let reply = [
                ("From", "+15555550101"),
                ("To", "+15555550000"),
                ("Body", digit),
            ];
            webhook(server, "sms", &reply, Some(TOKEN)).await
        }
    });
    let answered = futures::future::join_all(answers).await;
    assert!(
        answered.iter().all(|(status, _)| *status == 200),
        "{answered:?}"
    );
    let booked_replies = answered
        .iter()
        .filter(|(_, said)| said.contains("Booked"))
        .count();
    assert_eq!(booked_replies, 1, "{answered:?}");
    let (_, now_booked) = server
        .get_json("Appointment?patient=Patient/p1&status=booked")
        .await;
    let now_booked = entries(&now_booked);
    assert_eq!(now_booked.len(), 1, "one time booked");
    let new = &now_booked[0]["resource"];
    assert_eq!(
        new["extension"][0]["valueReference"]["reference"],
        "Appointment/a1"
    );
    let offered: Vec<&str> = task["input"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["valuePeriod"]["start"].as_str().unwrap())
        .collect();
    let new_start = new["start"].as_str().unwrap().replace(".000000", "");
    assert!(
        offered
            .iter()
            .any(|o| o.replace(".000000", "") == new_start),
        "{new} {offered:?}"
    );
    let (_, task) = server
        .get_json(&format!("Task/{}", task["id"].as_str().unwrap()))
        .await;
    assert_eq!(task["status"], "completed");
    assert_eq!(
        task["output"][0]["valueReference"]["reference"],
        format!("Appointment/{}", new["id"].as_str().unwrap())
    );

    // By email: a link per time; the second books it, once.
    let (_, text) = eventually("the offer is emailed", || async {
        smtp.messages()
            .into_iter()
            .find(|(_, text)| text.contains("Choose a new time"))
    })
    .await;
    let text = unquote(&text);
    let local = |link: String| link.replace("http://fhir.test/fhir", &server.base);
    let token_of = |link: &str| link.split("?t=").nth(1).unwrap().to_owned();
    let second = local(link_in(&text, 1));
    let page = server
        .client
        .get(&second)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Book this time?"), "{page}");
    let (status, page) = post_link(&server, token_of(&second)).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Booked"), "{page}");
    let (status, _) = post_link(&server, token_of(&second)).await;
    assert_eq!(status, 410, "a link books once");
    let (_, page) = post_link(&server, token_of(&local(link_in(&text, 0)))).await;
    assert!(
        page.contains("no longer open"),
        "the offer was taken: {page}"
    );
    let (_, p2_booked) = server
        .get_json("Appointment?patient=Patient/p2&status=booked")
        .await;
    assert_eq!(entries(&p2_booked).len(), 1);
}
both_backends!(released_visits_are_offered_new_times);

/// With `patient_preference`, the patient's best-ranked address picks the channel: a
/// patient who ranks their email first is emailed though the policy texts first; one
/// without ranks is texted, as the policy says.
async fn the_patients_preference_picks_the_channel(backend: common::Backend) {
    let Some(smtp) = Smtp::start(&[]) else { return };
    let api = TwilioApi::start(&[]);
    let Some(server) = messaging_server(backend).await else {
        return;
    };
    let mut document = sms_and_email(&api, &smtp);
    document["reminders"]["patient_preference"] = json!(true);
    assert!(set_settings(&server, &document).status.success());
    let mut ranked = patient_with_mobile("p1", "+15555550101");
    ranked["telecom"][0]["rank"] = json!(2);
    ranked["telecom"]
        .as_array_mut()
        .unwrap()
        .push(json!({"system": "email", "value": "p1@example.org", "rank": 1}));
    put_ok(&server, &ranked).await;
    let mut unranked = patient_with_mobile("p2", "+15555550102");
    unranked["telecom"]
        .as_array_mut()
        .unwrap()
        .push(json!({"system": "email", "value": "p2@example.org"}));
    put_ok(&server, &unranked).await;
    for (visit, patient, doctor) in [("a1", "Patient/p1", "dr1"), ("a2", "Patient/p2", "dr2")] {
        let mut booking = booked(visit, patient, &hours_ahead(48), &hours_ahead(49));
        booking["participant"][1]["actor"]["reference"] = json!(format!("Practitioner/{doctor}"));
        put_ok(&server, &booking).await;
        eventually("planned", || async {
            reminders(&server, visit, "active").await.pop()
        })
        .await;
    }
    server.advance_clock(25 * 3600).await;
    eventually("both reminded", || async {
        (api.messages().len() == 1 && smtp.messages().len() == 1).then_some(())
    })
    .await;
    assert_eq!(smtp.messages()[0].0["to"], json!(["p1@example.org"]));
    assert_eq!(api.messages()[0]["form"]["To"], "+15555550102");
}
both_backends!(the_patients_preference_picks_the_channel);
