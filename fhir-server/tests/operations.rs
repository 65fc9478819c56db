//! Operations as a client discovers and invokes them, on both databases: the
//! CapabilityStatement lists them (with includes and the Bulk Data capability) and their
//! OperationDefinitions are served; `$validate` checks without storing; `$meta`,
//! `$meta-add` and `$meta-delete` read and change tags, profiles and security labels.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure
#![allow(clippy::too_many_lines)] // a test reads as one story

mod common;

use common::{JSON, Server, patient};
use serde_json::{Value, json};

fn of_type<'v>(statement: &'v Value, resource_type: &str) -> &'v Value {
    statement["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == resource_type)
        .unwrap()
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

async fn capabilities_say_what_the_server_does(server: Server) {
    let (status, statement) = server.get_json("metadata").await;
    assert_eq!(status, 200);
    assert!(
        strings(&statement["instantiates"])
            .contains(&"http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data")
    );
    assert!(strings(&statement["patchFormat"]).contains(&"application/fhir+json"));
    let appointment = of_type(&statement, "Appointment");
    let includes = strings(&appointment["searchInclude"]);
    assert!(includes.contains(&"Appointment:patient"), "{includes:?}");
    assert!(includes.contains(&"Appointment:practitioner"));
    let patient = of_type(&statement, "Patient");
    let revincludes = strings(&patient["searchRevInclude"]);
    assert!(
        revincludes.contains(&"Appointment:patient"),
        "{revincludes:?}"
    );
    assert!(revincludes.contains(&"Claim:patient"));

    // Every operation listed has its definition served, and says where it applies.
    let mut listed: Vec<(String, String)> = Vec::new();
    for resource in statement["rest"][0]["resource"].as_array().unwrap() {
        for operation in resource["operation"].as_array().into_iter().flatten() {
            listed.push((
                resource["type"].as_str().unwrap().to_owned(),
                operation["definition"].as_str().unwrap().to_owned(),
            ));
        }
    }
    for operation in statement["rest"][0]["operation"].as_array().unwrap() {
        listed.push(("".into(), operation["definition"].as_str().unwrap().into()));
    }
    for name in ["validate", "meta", "meta-add", "meta-delete"] {
        let on_patient = patient["operation"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["name"] == name);
        assert!(on_patient, "{name} on Patient");
    }
    let claim = of_type(&statement, "Claim");
    assert!(
        claim["operation"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["name"] == "submit")
    );
    let system: Vec<&str> = statement["rest"][0]["operation"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["name"].as_str())
        .collect();
    assert!(
        system.contains(&"export") && system.contains(&"import-835"),
        "{system:?}"
    );
    for id in [
        "Resource-validate",
        "Resource-meta-add",
        "Patient-everything",
        "export",
        "patient-export",
        "group-export",
        "Claim-submit",
        "import-835",
    ] {
        let (status, definition) = server.get_json(&format!("OperationDefinition/{id}")).await;
        assert_eq!(status, 200, "{id}: {definition}");
        assert_eq!(definition["resourceType"], "OperationDefinition");
        let url = definition["url"].as_str().unwrap();
        assert!(listed.iter().any(|(_, d)| d == url), "{url} is listed");
    }
    let (status, _) = server
        .get_json("OperationDefinition/no-such-operation")
        .await;
    assert_eq!(status, 404);
    // The server's own definitions cannot be overwritten.
    let (_, mine) = server.get_json("OperationDefinition/Claim-submit").await;
    let put = reqwest::Method::PUT;
    let (status, _) = server
        .send_json(
            put,
            "OperationDefinition/Claim-submit",
            JSON,
            mine.to_string(),
        )
        .await;
    assert_eq!(status, 409);
}
both!(capabilities_say_what_the_server_does);

async fn validate_checks_without_storing(server: Server) {
    let good = patient("Valid", "v-1");
    let (status, outcome) = server.post_json("Patient/$validate", &good).await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(outcome["issue"][0]["severity"], "information");

    // Invalid: 200 with the errors, each naming its element.
    let bad = json!({"resourceType": "Patient", "gender": "robot", "birthDate": "25/12/1974"});
    let (status, outcome) = server.post_json("Patient/$validate", &bad).await;
    assert_eq!(status, 200, "{outcome}");
    let expressions = common::issue_expressions(&outcome);
    assert!(
        expressions.contains(&"Patient.gender".to_owned()),
        "{outcome}"
    );
    assert!(
        expressions.contains(&"Patient.birthDate".to_owned()),
        "{outcome}"
    );

    // As Parameters, with a mode.
    let parameters = json!({"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": bad}, {"name": "mode", "valueCode": "create"}]});
    let (status, outcome) = server.post_json("Patient/$validate", &parameters).await;
    assert_eq!(status, 200);
    assert!(
        outcome["issue"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["severity"] == "error")
    );

    // Nothing was stored.
    let (_, bundle) = server.get_json("Patient?_summary=count").await;
    assert_eq!(bundle["total"], 0);

    // Update mode: the id must be the URL's; delete mode: the resource must exist.
    let created = server.create(&server.base, &good).await;
    let id = created["id"].as_str().unwrap();
    let mut other = good.clone();
    other["id"] = json!("someone-else");
    let update = json!({"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": other}, {"name": "mode", "valueCode": "update"}]});
    let (status, outcome) = server
        .post_json(&format!("Patient/{id}/$validate"), &update)
        .await;
    assert_eq!(status, 200);
    assert_eq!(outcome["issue"][0]["severity"], "error", "{outcome}");
    let (status, outcome) = server
        .get_json(&format!("Patient/{id}/$validate?mode=delete"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(outcome["issue"][0]["severity"], "information", "{outcome}");
    let (_, outcome) = server
        .get_json("Patient/nobody/$validate?mode=delete")
        .await;
    assert_eq!(outcome["issue"][0]["code"], "not-found", "{outcome}");

    // What cannot be validated: 4xx.
    let (status, _) = server
        .post_json("Patient/$validate?mode=sideways", &good)
        .await;
    assert_eq!(status, 400);
    let (status, _) = server
        .post_json(
            "Patient/$validate?profile=http://example.org/StructureDefinition/mine",
            &good,
        )
        .await;
    assert_eq!(status, 400, "an unknown profile");
    let (status, _) = server
        .post_json("Patient/$validate", &json!({"resourceType": "Observation"}))
        .await;
    assert_eq!(status, 200, "a wrong type is a finding");
    let (_, versions) = server.get_json(&format!("Patient/{id}/_history")).await;
    assert_eq!(versions["total"], 1, "validation never writes");
}
both!(validate_checks_without_storing);

async fn meta_operations_change_tags(server: Server) {
    let created = server.create(&server.base, &patient("Meta", "m-1")).await;
    let id = created["id"].as_str().unwrap();
    let meta = |meta: Value| json!({"resourceType": "Parameters", "parameter": [{"name": "meta", "valueMeta": meta}]});
    let add = meta(
        json!({"tag": [{"system": "http://example.org/tags", "code": "vip"}],
        "profile": ["http://example.org/StructureDefinition/p"],
        "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]}),
    );
    let (status, answer) = server
        .post_json(&format!("Patient/{id}/$meta-add"), &add)
        .await;
    assert_eq!(status, 200, "{answer}");
    let returned = &answer["parameter"][0]["valueMeta"];
    assert_eq!(returned["tag"][0]["code"], "vip");
    assert_eq!(returned["versionId"], "2");
    // Adding again changes nothing in the sets, and makes no version.
    let (_, answer) = server
        .post_json(&format!("Patient/{id}/$meta-add"), &add)
        .await;
    assert_eq!(answer["parameter"][0]["valueMeta"]["versionId"], "2");
    assert_eq!(
        answer["parameter"][0]["valueMeta"]["tag"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let (status, answer) = server.get_json(&format!("Patient/{id}/$meta")).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer["parameter"][0]["valueMeta"]["security"][0]["code"],
        "R"
    );
    let (_, found) = server
        .get_json("Patient?_tag=http://example.org/tags|vip")
        .await;
    assert_eq!(found["total"], 1, "the tag is searchable");

    let remove = meta(json!({"tag": [{"system": "http://example.org/tags", "code": "vip"}]}));
    let (status, answer) = server
        .post_json(&format!("Patient/{id}/$meta-delete"), &remove)
        .await;
    assert_eq!(status, 200);
    assert!(
        answer["parameter"][0]["valueMeta"].get("tag").is_none(),
        "{answer}"
    );
    let (_, found) = server
        .get_json("Patient?_tag=http://example.org/tags|vip")
        .await;
    assert_eq!(found["total"], 0);

    // The server's own claim state cannot be set this way.
    let state = meta(json!({"tag": [{"system": "urn:x12:claim-state", "code": "paid"}]}));
    let (_, answer) = server
        .post_json(&format!("Patient/{id}/$meta-add"), &state)
        .await;
    assert!(
        answer["parameter"][0]["valueMeta"].get("tag").is_none(),
        "{answer}"
    );

    // Bad requests.
    let (status, _) = server.post_json("Patient/nobody/$meta-add", &add).await;
    assert_eq!(status, 404);
    let (status, _) = server
        .post_json(
            &format!("Patient/{id}/$meta-add"),
            &json!({"resourceType": "Parameters"}),
        )
        .await;
    assert_eq!(status, 400);
    let response = server
        .client
        .get(format!("{}/Patient/{id}/$meta-add", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
}
both!(meta_operations_change_tags);

/// Twenty clients add a tag each at once: every tag is there, each change a version.
async fn concurrent_meta_adds_lose_nothing(server: Server) {
    let created = server.create(&server.base, &patient("Race", "r-1")).await;
    let url = format!(
        "{}/Patient/{}/$meta-add",
        server.base,
        created["id"].as_str().unwrap()
    );
    let mut tasks = Vec::new();
    for n in 0..20 {
        let client = server.client.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({"resourceType": "Parameters", "parameter": [{"name": "meta",
                "valueMeta": {"tag": [{"system": "urn:race", "code": format!("t{n}")}]}}]});
            client
                .post(url)
                .header("content-type", JSON)
                .body(body.to_string())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let added = statuses.iter().filter(|s| **s == 200).count();
    assert!(
        statuses.iter().all(|s| [200, 409].contains(s)),
        "{statuses:?}"
    );
    let id = created["id"].as_str().unwrap();
    let (_, now) = server.get_json(&format!("Patient/{id}")).await;
    let tags = now["meta"]["tag"].as_array().map_or(0, Vec::len);
    assert_eq!(tags, added, "every acknowledged tag is kept: {now}");
    assert_eq!(now["meta"]["versionId"], json!((added + 1).to_string()));
}
both!(concurrent_meta_adds_lose_nothing);
