//! Validation over real HTTP: each invalid resource is rejected with the right status (400
//! when the JSON is not an R4 resource, 422 when it breaks a rule) and an OperationOutcome
//! whose `issue.expression` names the offending element; nothing rejected is stored; and no
//! garbage body, however hostile, makes the server fail (5xx) or fall over.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure

mod common;

use common::{JSON, Server, issue_expressions, json};
use serde_json::{Value, json};

/// One invalid write and how it must be rejected.
struct Case {
    what: &'static str,
    method: &'static str,
    /// Below the FHIR base, e.g. `Patient` or `Patient/abc`.
    path: &'static str,
    body: &'static str,
    status: u16,
    /// Every one of these must be among the issues' expressions.
    expressions: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        what: "unknown element",
        method: "POST",
        path: "Patient",
        body: r#"{"resourceType":"Patient","foo":"bar"}"#,
        status: 400,
        expressions: &["Patient.foo"],
    },
    Case {
        what: "wrong JSON type: name as a string",
        method: "POST",
        path: "Patient",
        body: r#"{"resourceType":"Patient","name":"Smith"}"#,
        status: 400,
        expressions: &["Patient.name"],
    },
    Case {
        what: "date in the wrong format",
        method: "POST",
        path: "Patient",
        body: r#"{"resourceType":"Patient","birthDate":"25/12/1974"}"#,
        status: 422,
        expressions: &["Patient.birthDate"],
    },
    Case {
        what: "code outside the required binding",
        method: "POST",
        path: "Patient",
        body: r#"{"resourceType":"Patient","gender":"robot"}"#,
        status: 422,
        expressions: &["Patient.gender"],
    },
    Case {
        what: "empty id on update",
        method: "PUT",
        path: "Patient/abc",
        body: r#"{"resourceType":"Patient","id":""}"#,
        status: 400,
        expressions: &["Patient.id"],
    },
    Case {
        what: "invalid id in the body of an update",
        method: "PUT",
        path: "Patient/abc",
        body: r#"{"resourceType":"Patient","id":"a b!"}"#,
        status: 422,
        expressions: &["Patient.id"],
    },
    Case {
        what: "id of an update that does not match the URL",
        method: "PUT",
        path: "Patient/abc",
        body: r#"{"resourceType":"Patient","id":"abd"}"#,
        status: 400,
        expressions: &["Patient.id"],
    },
    Case {
        what: "update without an id in the body",
        method: "PUT",
        path: "Patient/abc",
        body: r#"{"resourceType":"Patient","gender":"male"}"#,
        status: 400,
        expressions: &["Patient.id"],
    },
    Case {
        what: "Appointment without a participant",
        method: "POST",
        path: "Appointment",
        body: r#"{"resourceType":"Appointment","status":"proposed"}"#,
        status: 422,
        expressions: &["Appointment.participant"],
    },
    Case {
        what: "Appointment with an unknown status",
        method: "POST",
        path: "Appointment",
        body: r#"{"resourceType":"Appointment","status":"maybe",
                  "participant":[{"actor":{"reference":"Patient/1"},"status":"accepted"}]}"#,
        status: 422,
        expressions: &["Appointment.status"],
    },
    Case {
        what: "Slot with an unknown status",
        method: "POST",
        path: "Slot",
        body: r#"{"resourceType":"Slot","schedule":{"reference":"Schedule/1"},"status":"open",
                  "start":"2024-05-01T09:00:00Z","end":"2024-05-01T09:15:00Z"}"#,
        status: 422,
        expressions: &["Slot.status"],
    },
    Case {
        what: "Slot without schedule, start and end",
        method: "POST",
        path: "Slot",
        body: r#"{"resourceType":"Slot","status":"free"}"#,
        status: 422,
        expressions: &["Slot.schedule", "Slot.start", "Slot.end"],
    },
    Case {
        what: "two types of one choice element",
        method: "POST",
        path: "Patient",
        body: r#"{"resourceType":"Patient","deceasedBoolean":true,"deceasedDateTime":"2020-01-01"}"#,
        status: 400,
        expressions: &["Patient.deceasedDateTime"],
    },
    Case {
        what: "null value",
        method: "POST",
        path: "Patient",
        body: r#"{"resourceType":"Patient","gender":null}"#,
        status: 400,
        expressions: &["Patient.gender"],
    },
    Case {
        what: "empty array",
        method: "POST",
        path: "Patient",
        body: r#"{"resourceType":"Patient","name":[]}"#,
        status: 400,
        expressions: &["Patient.name"],
    },
    Case {
        what: "dateTime with a time but no time zone",
        method: "POST",
        path: "Patient",
        body: r#"{"resourceType":"Patient","deceasedDateTime":"2020-01-01T10:00:00"}"#,
        status: 422,
        expressions: &["Patient.deceasedDateTime"],
    },
    Case {
        what: "no resourceType",
        method: "POST",
        path: "Patient",
        body: r#"{"gender":"male"}"#,
        status: 400,
        expressions: &["resourceType"],
    },
    Case {
        what: "unknown resourceType",
        method: "POST",
        path: "Patient",
        body: r#"{"resourceType":"Foo","gender":"male"}"#,
        status: 400,
        expressions: &["Foo.resourceType"],
    },
    Case {
        what: "unknown element in a contained resource",
        method: "POST",
        path: "Patient",
        body: r#"{"resourceType":"Patient","contained":[{"resourceType":"Practitioner","id":"p1","foo":1}]}"#,
        status: 400,
        expressions: &["Patient.contained[0].foo"],
    },
    Case {
        what: "unknown element in a Bundle entry's resource",
        method: "POST",
        path: "Bundle",
        body: r#"{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","foo":1}}]}"#,
        status: 400,
        expressions: &["Bundle.entry[0].resource.foo"],
    },
];

/// Sends `body` with `method` to `{base}/{path}` as FHIR JSON.
async fn send(
    server: &Server,
    method: &str,
    path: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    server.send_json(method, path, JSON, body).await
}

/// The `total` of a type search.
async fn total(server: &Server, resource_type: &str) -> u64 {
    let (status, bundle) = server.get_json(resource_type).await;
    assert_eq!(status, 200, "{bundle}");
    bundle["total"]
        .as_u64()
        .unwrap_or_else(|| panic!("a total: {bundle}"))
}

async fn invalid_resources_are_rejected_with_their_path(server: Server) {
    let mut failures = Vec::new();
    for case in CASES {
        let (status, outcome) = send(&server, case.method, case.path, case.body).await;
        let expressions = issue_expressions(&outcome);
        let missing: Vec<_> = case
            .expressions
            .iter()
            .filter(|e| !expressions.iter().any(|x| x == *e))
            .collect();
        if status != case.status
            || outcome["resourceType"] != "OperationOutcome"
            || !missing.is_empty()
        {
            failures.push(format!(
                "{}: expected {} at {:?}, got {status} {outcome}",
                case.what, case.status, case.expressions
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // An invalid id in the URL is refused before the body is looked at.
    let (status, outcome) = send(
        &server,
        "PUT",
        "Patient/bad!id",
        r#"{"resourceType":"Patient","id":"bad!id"}"#,
    )
    .await;
    assert_eq!(status, 400, "{outcome}");
    assert_eq!(outcome["resourceType"], "OperationOutcome");

    for resource_type in ["Patient", "Appointment", "Slot", "Bundle"] {
        assert_eq!(
            total(&server, resource_type).await,
            0,
            "no {resource_type} was stored"
        );
    }
}
both!(invalid_resources_are_rejected_with_their_path);

/// A valid resource of every case's type passes, so the cases fail for the reason named.
/// A repeated key would silently lose one of its values: it is a 400, and nothing is stored.
async fn repeated_json_keys_are_rejected(server: Server) {
    let body = r#"{"resourceType":"Patient","gender":"male","gender":"female"}"#;
    let (status, outcome) = send(&server, "POST", "Patient", body).await;
    assert_eq!(status, 400, "{outcome}");
    let diagnostics = outcome["issue"][0]["diagnostics"]
        .as_str()
        .unwrap_or_default();
    assert!(diagnostics.contains("repeated key 'gender'"), "{outcome}");
    assert_eq!(total(&server, "Patient").await, 0);
}
both!(repeated_json_keys_are_rejected);

async fn valid_counterparts_are_accepted(server: Server) {
    let valid = [
        json!({"resourceType": "Patient", "gender": "male", "birthDate": "1974-12-25",
               "deceasedDateTime": "2020-01-01T10:00:00+01:00",
               "contained": [{"resourceType": "Practitioner", "id": "p1"}]}),
        json!({"resourceType": "Appointment", "status": "proposed",
               "participant": [{"actor": {"reference": "Patient/1"}, "status": "accepted"}]}),
        json!({"resourceType": "Slot", "schedule": {"reference": "Schedule/1"}, "status": "free",
               "start": "2024-05-01T09:00:00Z", "end": "2024-05-01T09:15:00Z"}),
    ];
    for resource in valid {
        server.create(&server.base, &resource).await;
    }
    let (status, body) = send(
        &server,
        "PUT",
        "Patient/abc",
        r#"{"resourceType":"Patient","id":"abc"}"#,
    )
    .await;
    assert_eq!(status, 201, "{body}");
}
both!(valid_counterparts_are_accepted);

// ---------------------------------------------------------------------------------------
// Robustness

/// A deterministic pseudo-random generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    /// A random JSON value of bounded depth: the "garbage field" of a resource.
    fn junk(&mut self, depth: usize) -> Value {
        match self.below(if depth == 0 { 5 } else { 7 }) {
            0 => Value::Null,
            1 => Value::Bool(self.next().is_multiple_of(2)),
            2 => json!(self.next() as i64),
            3 => {
                let len = self.below(12);
                Value::String(String::from_utf8_lossy(&self.bytes(len)).into_owned())
            }
            4 => json!(""),
            5 => Value::Array((0..self.below(3)).map(|_| self.junk(depth - 1)).collect()),
            _ => {
                let mut object = serde_json::Map::new();
                for _ in 0..self.below(3) {
                    object.insert(format!("k{}", self.below(100)), self.junk(depth - 1));
                }
                Value::Object(object)
            }
        }
    }
}

/// A garbage body and its Content-Type.
struct Garbage {
    content_type: &'static str,
    body: Vec<u8>,
}

fn garbage(content_type: &'static str, body: impl Into<Vec<u8>>) -> Garbage {
    Garbage {
        content_type,
        body: body.into(),
    }
}

/// Every hostile body of the robustness test, the same on every run.
fn garbage_bodies(resource_types: &[String]) -> Vec<Garbage> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut bodies = Vec::new();

    // Random bytes, some of them starting like JSON or XML.
    for i in 0..40 {
        let len = 1 + rng.below(300);
        let mut bytes = rng.bytes(len);
        match i % 4 {
            1 => bytes.insert(0, b'{'),
            2 => bytes
                .splice(0..0, br#"{"resourceType":"Patient","#.iter().copied())
                .for_each(drop),
            3 => bytes.insert(0, b'<'),
            _ => {}
        }
        let content_type = if i % 4 == 3 {
            "application/fhir+xml"
        } else {
            JSON
        };
        bodies.push(garbage(content_type, bytes));
    }

    // A valid Patient in JSON and XML, truncated at every 7th byte.
    let patient = common::patient("Truncated", "t-1").to_string();
    for end in (1..patient.len()).step_by(7) {
        bodies.push(garbage(JSON, &patient.as_bytes()[..end]));
    }
    let patient_xml = r#"<Patient xmlns="http://hl7.org/fhir"><id value="x"/><name><family value="Truncated"/></name><birthDate value="1974-12-25"/></Patient>"#;
    for end in (1..patient_xml.len()).step_by(7) {
        bodies.push(garbage(
            "application/fhir+xml",
            &patient_xml.as_bytes()[..end],
        ));
    }

    // Deep nesting.
    let depth = 10_000;
    bodies.push(garbage(JSON, "[".repeat(depth) + &"]".repeat(depth)));
    bodies.push(garbage(
        JSON,
        r#"{"a":"#.repeat(depth) + "1" + &"}".repeat(depth),
    ));
    let nested_extension = r#"{"url":"http://x","extension":["#.repeat(depth) + &"]}".repeat(depth);
    bodies.push(garbage(
        JSON,
        format!(r#"{{"resourceType":"Patient","extension":[{nested_extension}]}}"#),
    ));
    bodies.push(garbage(
        "application/fhir+xml",
        "<a>".repeat(depth) + &"</a>".repeat(depth),
    ));

    // Huge and odd numbers where numbers and strings belong.
    let huge = "9".repeat(5000);
    for body in [
        format!(r#"{{"resourceType":"Patient","multipleBirthInteger":{huge}}}"#),
        r#"{"resourceType":"Patient","multipleBirthInteger":1e999999}"#.to_owned(),
        r#"{"resourceType":"Patient","multipleBirthInteger":-0.0}"#.to_owned(),
        format!(
            r#"{{"resourceType":"Observation","status":"final","code":{{"text":"x"}},"valueQuantity":{{"value":{huge}e{huge}}}}}"#
        ),
        format!(r#"{{"resourceType":"Patient","birthDate":{huge}}}"#),
        format!(r#"{{"resourceType":"Patient","id":{huge}}}"#),
        huge.clone(),
    ] {
        bodies.push(garbage(JSON, body));
    }

    // Every resource type, with garbage fields.
    for resource_type in resource_types {
        let mut resource = serde_json::Map::new();
        resource.insert("resourceType".into(), json!(resource_type));
        for _ in 0..1 + rng.below(4) {
            let key = match rng.below(3) {
                0 => format!("garbage{}", rng.below(1000)),
                1 => "id".to_owned(),
                _ => "meta".to_owned(),
            };
            resource.insert(key, rng.junk(3));
        }
        // At least one element that no resource has.
        resource.insert("notAnElement".into(), rng.junk(2));
        bodies.push(garbage(JSON, Value::Object(resource).to_string()));
    }
    bodies
}

/// Every resource type the server supports, from its CapabilityStatement.
async fn resource_types(server: &Server) -> Vec<String> {
    let (status, capabilities) = json(
        server
            .client
            .get(format!("{}/metadata", server.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let types: Vec<String> = capabilities["rest"][0]["resource"]
        .as_array()
        .expect("rest.resource")
        .iter()
        .filter_map(|r| r["type"].as_str().map(str::to_owned))
        .collect();
    assert!(types.len() > 100, "every R4 resource type: {}", types.len());
    types
}

async fn garbage_never_breaks_the_server(server: Server) {
    let bodies = garbage_bodies(&resource_types(&server).await);
    assert!(bodies.len() >= 200, "{} bodies", bodies.len());
    let mut failures = Vec::new();
    for (i, garbage) in bodies.iter().enumerate() {
        for (method, path) in [
            ("POST", "Patient"),
            ("POST", "Bundle"),
            ("PUT", "Patient/x"),
        ] {
            let method_ = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let response = server
                .client
                .request(method_, format!("{}/{path}", server.base))
                .header("content-type", garbage.content_type)
                .body(garbage.body.clone())
                .send()
                .await
                .unwrap_or_else(|e| panic!("body #{i} to {method} {path}: no answer ({e})"));
            let status = response.status().as_u16();
            if !(400..500).contains(&status) {
                let preview = String::from_utf8_lossy(&garbage.body[..garbage.body.len().min(120)])
                    .into_owned();
                failures.push(format!(
                    "body #{i} ({preview}) to {method} {path}: {status}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} answer(s) outside 4xx:\n{}",
        failures.len(),
        failures.join("\n")
    );

    let health = server
        .client
        .get(format!("{}/healthz", server.root))
        .send()
        .await
        .expect("the server still answers");
    assert_eq!(health.status(), 200);
    for resource_type in ["Patient", "Bundle"] {
        assert_eq!(
            total(&server, resource_type).await,
            0,
            "no {resource_type} was stored"
        );
    }
}
both!(garbage_never_breaks_the_server);

/// Control characters (below U+0020 but tab, CR and LF) are refused in bodies and in
/// search values, naming where; tab, CR and LF are fine.
async fn control_characters_are_refused(server: Server) {
    for (character, escaped) in [
        ("U+0001", "\\u0001"),
        ("U+0000", "\\u0000"),
        ("U+001F", "\\u001f"),
    ] {
        let body = format!(r#"{{"resourceType":"Patient","name":[{{"family":"Ctrl{escaped}"}}]}}"#);
        let (status, outcome) = send(&server, "POST", "Patient", body).await;
        assert!(
            status == 400 || status == 422,
            "{character}: {status} {outcome}"
        );
        assert!(
            common::issue_expressions(&outcome).contains(&"Patient.name[0].family".to_owned()),
            "{character}: {outcome}"
        );
    }
    let fine = r#"{"resourceType":"Patient","name":[{"family":"Tab\tand\r\nlines"}]}"#;
    let (status, outcome) = send(&server, "POST", "Patient", fine).await;
    assert_eq!(status, 201, "{outcome}");
    for query in [
        "name:contains=%00",
        "name=%01",
        "family:exact=a%1Fb",
        "identifier=x|%00",
    ] {
        let (status, outcome) = json(
            server
                .client
                .get(format!("{}/Patient?{query}", server.base))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 400, "{query}: {outcome}");
    }
    assert_eq!(total(&server, "Patient").await, 1);
}
both!(control_characters_are_refused);

/// A value stored before the validator refused control characters is still served, in
/// XML too, and `reindex` names the resource.
async fn stored_control_characters_do_not_break_answers(server: Server) {
    let (status, created) = send(
        &server,
        "POST",
        "Patient",
        r#"{"resourceType":"Patient","name":[{"family":"Ctrl"}],"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Ctrl</div>"}}"#,
    )
    .await;
    assert_eq!(status, 201);
    let id = created["id"].as_str().unwrap();
    server.sql(match server.backend {
        common::Backend::Sqlite => {
            r"UPDATE resource_versions SET body = CAST(replace(CAST(body AS TEXT), 'Ctrl', 'Ct\u0001rl') AS BLOB);"
        }
        common::Backend::Postgres => {
            r"UPDATE resource_versions SET body = convert_to(replace(convert_from(body, 'UTF8'), 'Ctrl', 'Ct\u0001rl'), 'UTF8');"
        }
    });
    for path in [
        format!("Patient/{id}?_format=xml"),
        format!("Patient/{id}/_history?_format=xml"),
        "Patient?_format=xml".to_owned(),
        format!("Patient/{id}"),
    ] {
        let response = server
            .client
            .get(format!("{}/{path}", server.base))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(status, 200, "{path}: {text}");
        if path.contains("xml") {
            assert!(text.contains("Ct\u{fffd}rl"), "{path}: {text}");
        }
    }
    let output = server.run_cli(&["reindex"]);
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{report}");
    assert!(
        report.contains(&format!("Patient/{id} holds a control character")),
        "{report}"
    );
    assert!(report.contains("1 hold control characters"), "{report}");
}
both!(stored_control_characters_do_not_break_answers);
