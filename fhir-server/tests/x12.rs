//! X12 in the server, on both databases: `Claim/{id}/$submit` writes the 837P, stores it
//! as a Binary and marks the Claim; `$import-835` posts a remittance once (idempotent by
//! TRN02), with its balancing checked; and the `edi` commands.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure
#![allow(clippy::too_many_lines)] // a test reads as one story

mod common;

use base64::Engine;
use common::{JSON, Server, put_ok};
use serde_json::{Value, json};

const NPI: &str = "http://hl7.org/fhir/sid/us-npi";
const EIN: &str = "urn:oid:2.16.840.1.113883.4.4";

async fn post_op(server: &Server, path: &str, content_type: &str, body: String) -> (u16, Value) {
    let post = reqwest::Method::POST;
    server.send_json(post, path, content_type, body).await
}

/// A practice with one claim of 150.00 (two lines) for patient control number PCN-77.
async fn practice(server: &Server) {
    put_ok(server, &json!({"resourceType": "Organization", "id": "clinic", "name": "Hill Clinic",
        "identifier": [{"system": NPI, "value": "1234567893"}, {"system": EIN, "value": "98-7654321"}],
        "telecom": [{"system": "phone", "value": "555-010-3000"}],
        "address": [{"line": ["9 Hill Road"], "city": "Austin", "state": "TX", "postalCode": "787011234"}]})).await;
    put_ok(
        server,
        &json!({"resourceType": "Organization", "id": "payer", "name": "Lone Star Health",
        "identifier": [{"system": "urn:x12:payer-id", "value": "LSH01"}]}),
    )
    .await;
    put_ok(server, &json!({"resourceType": "Patient", "id": "pat", "name": [{"family": "Garcia", "given": ["Ana"]}],
        "gender": "female", "birthDate": "1975-05-05",
        "address": [{"line": ["4 Elm Street"], "city": "Austin", "state": "TX", "postalCode": "78702"}]})).await;
    put_ok(server, &json!({"resourceType": "Coverage", "id": "cov", "status": "active", "subscriberId": "LSH-555",
        "beneficiary": {"reference": "Patient/pat"}, "payor": [{"reference": "Organization/payer"}]})).await;
    put_ok(server, &claim("active")).await;
}

fn claim(status: &str) -> Value {
    json!({"resourceType": "Claim", "id": "clm", "status": status,
        "identifier": [{"system": "urn:x12:clm01", "value": "PCN-77"}],
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
        "use": "claim", "patient": {"reference": "Patient/pat"}, "created": "2026-11-25",
        "provider": {"reference": "Organization/clinic"},
        "priority": {"coding": [{"code": "normal"}]},
        "insurance": [{"sequence": 1, "focal": true, "coverage": {"reference": "Coverage/cov"}}],
        "diagnosis": [{"sequence": 1, "diagnosisCodeableConcept": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M54.50"}]}}],
        "item": [
            {"sequence": 1, "productOrService": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "99214"}]},
             "net": {"value": 110, "currency": "USD"}, "diagnosisSequence": [1], "servicedDate": "2026-11-24"},
            {"sequence": 2, "productOrService": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "97110"}]},
             "net": {"value": 40, "currency": "USD"}, "diagnosisSequence": [1], "servicedDate": "2026-11-24"}],
        "total": {"value": 150, "currency": "USD"}})
}

fn decoded(binary: &Value) -> String {
    let data = binary["data"].as_str().expect("the Binary holds the file");
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap(),
    )
    .unwrap()
}

async fn submit_writes_the_837_and_marks_the_claim(server: Server) {
    practice(&server).await;
    let (status, binary) = post_op(&server, "Claim/clm/$submit", JSON, String::new()).await;
    assert_eq!(status, 200, "{binary}");
    assert_eq!(binary["resourceType"], "Binary");
    assert_eq!(binary["contentType"], "application/edi-x12");
    assert_eq!(binary["securityContext"]["reference"], "Claim/clm");
    let text = decoded(&binary);
    assert!(text.contains("CLM*PCN-77*150***11:B:1*Y*A*Y*Y~"), "{text}");
    let parsed = edi::parse(text.as_bytes()).expect("the 837P parses");
    let (_, set) = parsed.sets().next().unwrap();
    assert!(edi::claim837::validate(&parsed.document, set).is_empty());

    // The Claim is marked submitted and points at the stored file.
    let (_, stored_claim) = server.get_json("Claim/clm").await;
    assert_eq!(stored_claim["meta"]["versionId"], "2");
    assert!(
        stored_claim["meta"]["tag"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["system"] == "urn:x12:claim-state" && t["code"] == "submitted")
    );
    let reference = stored_claim["extension"][0]["valueReference"]["reference"]
        .as_str()
        .unwrap();
    assert_eq!(
        reference,
        format!("Binary/{}", binary["id"].as_str().unwrap())
    );
    let (status, stored) = server.get_json(reference).await;
    assert_eq!(status, 200);
    assert_eq!(decoded(&stored), text);

    // A second submission is refused unless asked for: then it is a new interchange
    // with a new control number.
    let (status, outcome) = post_op(&server, "Claim/clm/$submit", JSON, String::new()).await;
    assert_eq!(status, 409, "{outcome}");
    let (status, again) = post_op(
        &server,
        "Claim/clm/$submit?resubmit=true",
        JSON,
        String::new(),
    )
    .await;
    assert_eq!(status, 200, "{again}");
    let isa13 = |text: &str| text[90..99].to_owned();
    assert_ne!(isa13(&decoded(&again)), isa13(&text));

    // A claim that cannot be an 837P: each problem named, nothing written.
    let mut bad = claim("active");
    bad["id"] = json!("bad");
    bad["item"][0]["diagnosisSequence"] = json!([3]);
    bad["insurance"][0]["coverage"] = json!({"reference": "Coverage/none"});
    put_ok(&server, &bad).await;
    let (status, outcome) = post_op(&server, "Claim/bad/$submit", JSON, String::new()).await;
    assert_eq!(status, 422, "{outcome}");
    let expressions = common::issue_expressions(&outcome);
    assert!(
        expressions.contains(&"Claim.insurance.coverage".to_owned()),
        "{outcome}"
    );
    assert!(
        expressions.contains(&"Claim.item[0].diagnosisSequence".to_owned()),
        "{outcome}"
    );
    let (_, unchanged) = server.get_json("Claim/bad").await;
    assert_eq!(unchanged["meta"]["versionId"], "1");
    let (status, _) = post_op(&server, "Claim/nothing/$submit", JSON, String::new()).await;
    assert_eq!(status, 404);
}
both!(submit_writes_the_837_and_marks_the_claim);

/// An 835 paying PCN-77 (150 charged, 45 contractual, 20 deductible, 85 paid) and a claim
/// the server does not know; `bpr` is the payment total.
fn remittance(trace: &str, bpr: &str) -> String {
    let claims = [
        "CLP*PCN-77*1*150*85*20*12*PAYERCLM1",
        "NM1*QC*1*GARCIA*ANA****MI*LSH-555",
        "SVC*HC:99214*110*65**1",
        "DTM*472*20261124",
        "CAS*CO*45*25",
        "CAS*PR*1*20",
        "AMT*B6*85",
        "SVC*HC:97110*40*20**1",
        "DTM*472*20261124",
        "CAS*CO*45*20",
        "CLP*UNKNOWN-1*4*50*0**12*PAYERCLM2",
        "NM1*QC*1*SMITH*JO****MI*X1",
        "CAS*CO*29*50",
    ];
    remittance_of(trace, "1512345678", bpr, &claims)
}

/// An 835 from the payer `trn03` with these claim segments.
fn remittance_of(trace: &str, trn03: &str, bpr: &str, claims: &[&str]) -> String {
    let mut body = vec![
        format!(
            "BPR*I*{bpr}*C*ACH*CCP*01*111000025*DA*1234*1512345678**01*111000026*DA*5678*20261201"
        ),
        format!("TRN*1*{trace}*{trn03}"),
        "DTM*405*20261130".into(),
        "N1*PR*LONE STAR HEALTH".into(),
        "N3*1 PAYER WAY".into(),
        "N4*DALLAS*TX*75201".into(),
        "PER*BL*EDI DESK*TE*5550109999".into(),
        "N1*PE*HILL CLINIC*XX*1234567893".into(),
        "LX*1".into(),
    ];
    body.extend(claims.iter().map(|c| c.to_string()));
    let mut text = "ISA*00*          *00*          *ZZ*LSH01          *ZZ*HILLCLINIC     *261201*0900*^*00501*000000501*0*T*:~\nGS*HP*LSH01*HILLCLINIC*20261201*0900*501*X*005010X221A1~\nST*835*0001~\n".to_owned();
    for segment in &body {
        text.push_str(segment);
        text.push_str("~\n");
    }
    text.push_str(&format!(
        "SE*{}*0001~\nGE*1*501~\nIEA*1*000000501~\n",
        body.len() + 2
    ));
    text
}

fn parameters<'v>(parameters: &'v Value, name: &str) -> Vec<&'v Value> {
    parameters["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == name)
        .collect()
}

async fn count(server: &Server, resource_type: &str) -> u64 {
    let (_, bundle) = server
        .get_json(&format!("{resource_type}?_summary=count"))
        .await;
    bundle["total"].as_u64().unwrap()
}

async fn an_835_is_posted_once(server: Server) {
    practice(&server).await;
    let (status, result) = post_op(
        &server,
        "$import-835",
        "application/edi-x12",
        remittance("EFT-1", "85"),
    )
    .await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(
        parameters(&result, "outcome")[0]["valueString"],
        "posted: EFT-1"
    );
    assert_eq!(parameters(&result, "claimResponse").len(), 2);
    assert_eq!(
        parameters(&result, "unmatched")[0]["valueString"],
        "UNKNOWN-1"
    );

    let payment_ref =
        parameters(&result, "paymentReconciliation")[0]["valueReference"]["reference"]
            .as_str()
            .unwrap()
            .to_owned();
    let (_, payment) = server.get_json(&payment_ref).await;
    assert_eq!(payment["paymentIdentifier"]["value"], "EFT-1");
    assert_eq!(payment["paymentAmount"]["value"].to_string(), "85.00");
    assert_eq!(payment["detail"][0]["request"]["reference"], "Claim/clm");

    let (_, responses) = server.get_json("ClaimResponse?request=Claim/clm").await;
    let response = &responses["entry"][0]["resource"];
    assert_eq!(response["patient"]["reference"], "Patient/pat");
    assert_eq!(response["payment"]["amount"]["value"].to_string(), "85.00");
    // The deductible keeps its CAS group (PR: the patient owes it) and its reason.
    let deductible = response["item"][0]["adjudication"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["category"]["coding"][0]["code"] == "deductible")
        .unwrap();
    assert_eq!(
        deductible["category"]["coding"][1],
        json!({"system": "https://x12.org/codes/claim-adjustment-group-codes", "code": "PR"})
    );
    assert_eq!(deductible["reason"]["coding"][0]["code"], "1");
    let (_, claim) = server.get_json("Claim/clm").await;
    assert!(
        claim["meta"]["tag"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["code"] == "paid"),
        "{claim}"
    );

    // The same 835 again changes nothing.
    let (status, again) = post_op(
        &server,
        "$import-835",
        "application/edi-x12",
        remittance("EFT-1", "85"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        parameters(&again, "outcome")[0]["valueString"],
        "already-posted: EFT-1"
    );
    assert_eq!(count(&server, "ClaimResponse").await, 2);
    assert_eq!(count(&server, "PaymentReconciliation").await, 1);

    // As a Parameters resource too; an imbalance is refused, naming BPR02.
    let (status, outcome) = post_op(
        &server,
        "$import-835",
        JSON,
        json!({"resourceType": "Parameters", "parameter": [{"name": "file", "valueString": remittance("EFT-2", "90")}]}).to_string(),
    )
    .await;
    assert_eq!(status, 422, "{outcome}");
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("BPR02"),
        "{outcome}"
    );
    assert_eq!(
        count(&server, "PaymentReconciliation").await,
        1,
        "nothing of it was written"
    );
    let (status, outcome) = post_op(
        &server,
        "$import-835",
        "application/edi-x12",
        "ISA*garbage".into(),
    )
    .await;
    assert_eq!(status, 422, "{outcome}");

    // Another payer's trace number EFT-1 is another remittance; it reverses the payment of
    // PCN-77 and pays it again: one update of the Claim.
    let reversal = [
        "CLP*PCN-77*22*-150*-85*-20*12*PAYERCLM1",
        "NM1*QC*1*GARCIA*ANA****MI*LSH-555",
        "CAS*CO*45*-45",
        "CAS*PR*1*-20",
        "CLP*PCN-77*1*150*85*20*12*PAYERCLM3",
        "NM1*QC*1*GARCIA*ANA****MI*LSH-555",
        "CAS*CO*45*45",
        "CAS*PR*1*20",
    ];
    let (status, result) = post_op(
        &server,
        "$import-835",
        "application/edi-x12",
        remittance_of("EFT-1", "1999999999", "0", &reversal),
    )
    .await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(
        parameters(&result, "outcome")[0]["valueString"],
        "posted: EFT-1"
    );
    assert_eq!(parameters(&result, "claim").len(), 1, "{result}");
    assert_eq!(count(&server, "PaymentReconciliation").await, 2);
    let (_, claim) = server.get_json("Claim/clm").await;
    assert!(
        claim["meta"]["tag"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["code"] == "paid")
    );
}
both!(an_835_is_posted_once);

/// The claim of `claim("active")` in a Bundle with what it references, for the commands.
fn claim_bundle() -> Value {
    json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": claim("active")},
        {"resource": {"resourceType": "Organization", "id": "clinic", "name": "Hill Clinic",
            "identifier": [{"system": NPI, "value": "1234567893"}, {"system": EIN, "value": "987654321"}],
            "telecom": [{"system": "phone", "value": "5550103000"}],
            "address": [{"line": ["9 Hill Road"], "city": "Austin", "state": "TX", "postalCode": "787011234"}]}},
        {"resource": {"resourceType": "Organization", "id": "payer", "name": "Lone Star Health", "identifier": [{"value": "LSH01"}]}},
        {"resource": {"resourceType": "Patient", "id": "pat", "name": [{"family": "Garcia"}], "gender": "female",
            "birthDate": "1975-05-05", "address": [{"line": ["4 Elm"], "city": "Austin", "state": "TX", "postalCode": "78702"}]}},
        {"resource": {"resourceType": "Coverage", "id": "cov", "status": "active", "subscriberId": "LSH-555",
            "beneficiary": {"reference": "Patient/pat"}, "payor": [{"reference": "Organization/payer"}]}}]})
}

/// Runs `fhir-server` with these arguments, `stdin` on its standard input.
fn fhir_server(args: &[&str], stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_fhir-server"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// An 837P without the lines that carry the time it was written (ISA, GS, BHT).
fn undated(text: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(text)
        .lines()
        .filter(|l| !["ISA*", "GS*", "BHT*"].iter().any(|p| l.starts_with(p)))
        .map(str::to_owned)
        .collect()
}

/// What `edi parse --to fhir` prints (an array of Bundles) is what `edi to-837` reads,
/// from a file or from standard input (`-`): the two commands compose, one interchange
/// per Bundle.
#[test]
fn parse_to_fhir_composes_with_to_837() {
    let dir = std::env::temp_dir().join(format!("edi-compose-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    std::fs::write(path("claim.json"), claim_bundle().to_string()).unwrap();
    let run = |args: &[&str], stdin: &[u8]| {
        let output = fhir_server(args, stdin);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{args:?}: {stderr}");
        output.stdout
    };
    let original = run(
        &["edi", "to-837", &path("claim.json"), "--control", "21"],
        b"",
    );
    let fhir = run(&["edi", "parse", "-", "--to", "fhir"], &original);
    std::fs::write(path("fhir.json"), &fhir).unwrap();

    let from_file = run(
        &["edi", "to-837", &path("fhir.json"), "--control", "21"],
        b"",
    );
    assert_eq!(undated(&from_file), undated(&original));
    let piped = run(&["edi", "to-837", "-", "--control", "21"], &fhir);
    assert_eq!(undated(&piped), undated(&original));

    // Two Bundles: two interchanges, with consecutive control numbers, both sound.
    let bundles: Value = serde_json::from_slice(&fhir).unwrap();
    let two = json!([bundles[0], bundles[0]]).to_string();
    let out = path("two.837");
    run(
        &["edi", "to-837", "-", "--control", "21", "--out", &out],
        two.as_bytes(),
    );
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("*000000021*0*T*:~") && text.contains("*000000022*0*T*:~"));
    let report = run(&["edi", "validate", &out], b"");
    assert!(
        String::from_utf8_lossy(&report).contains(": OK (2 transaction sets: 837, 837)"),
        "{}",
        String::from_utf8_lossy(&report)
    );

    // A problem names the Bundle it is in.
    let mut broken = bundles.clone();
    broken[0]["entry"][0]["resource"]["diagnosis"] = json!([]);
    let output = fhir_server(&["edi", "to-837", "-"], broken.to_string().as_bytes());
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Bundle 1: Claim.diagnosis"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_edi_commands() {
    let dir = std::env::temp_dir().join(format!("edi-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bundle = claim_bundle();
    let bundle_path = dir.join("claim.json");
    std::fs::write(&bundle_path, bundle.to_string()).unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_fhir-server"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = dir.join("claim.837");
    let output = run(&[
        "edi",
        "to-837",
        bundle_path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--control",
        "12",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = run(&["edi", "validate", out.to_str().unwrap()]);
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains(": OK (1 transaction sets: 837)"));
    let output = run(&["edi", "parse", out.to_str().unwrap(), "--to", "fhir"]);
    let fhir: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        fhir[0]["entry"][0]["resource"]["identifier"][0]["value"],
        "PCN-77"
    );
    let output = run(&["edi", "parse", out.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("2300: CLM"));
    let output = run(&["edi", "ack", out.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("IK5*A~"));

    // Bad input: clear messages, exit status 1.
    let remit = dir.join("bad.835");
    std::fs::write(&remit, remittance("T-1", "99")).unwrap();
    let output = run(&["edi", "validate", remit.to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("BPR02"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let mut broken = bundle.clone();
    broken["entry"][0]["resource"]["diagnosis"] = json!([]);
    std::fs::write(&bundle_path, broken.to_string()).unwrap();
    let output = run(&["edi", "to-837", bundle_path.to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("Claim.diagnosis"));
    let output = run(&["edi", "parse", "/nonexistent.837"]);
    assert!(!output.status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

fn claim_state(claim: &Value) -> Option<String> {
    claim["meta"]["tag"]
        .as_array()?
        .iter()
        .find(|t| t["system"] == "urn:x12:claim-state")
        .and_then(|t| t["code"].as_str())
        .map(str::to_owned)
}

/// The claim state is the server's: no client write sets, changes or drops it.
async fn the_claim_state_survives_every_client_write(server: Server) {
    practice(&server).await;
    let (status, _) = post_op(&server, "Claim/clm/$submit", JSON, String::new()).await;
    assert_eq!(status, 200);

    // 1. A billing system's sync: PUT its own copy, without meta.
    let mut copy = claim("active");
    copy["total"] = json!({"value": 150, "currency": "USD"});
    let (status, stored) = server
        .send_json(reqwest::Method::PUT, "Claim/clm", JSON, copy.to_string())
        .await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(
        claim_state(&stored).as_deref(),
        Some("submitted"),
        "{stored}"
    );
    assert!(
        stored["extension"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["url"] == "urn:x12:submission"))
    );

    // 2. A conditional update by identifier, trying to say it was never sent.
    let mut forged = copy.clone();
    forged.as_object_mut().unwrap().shift_remove("id");
    forged["meta"] = json!({"tag": [{"system": "urn:x12:claim-state", "code": "draft"}]});
    let (status, stored) = server
        .send_json(
            reqwest::Method::PUT,
            "Claim?identifier=urn:x12:clm01|PCN-77",
            JSON,
            forged.to_string(),
        )
        .await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(
        claim_state(&stored).as_deref(),
        Some("submitted"),
        "{stored}"
    );

    // 3. A JSON Patch that removes the tags.
    let (status, stored) = server
        .send_json(
            reqwest::Method::PATCH,
            "Claim/clm",
            "application/json-patch+json",
            json!([{"op": "remove", "path": "/meta/tag"}]).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(
        claim_state(&stored).as_deref(),
        Some("submitted"),
        "{stored}"
    );

    // 4. A transaction PUT.
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": copy, "request": {"method": "PUT", "url": "Claim/clm"}}]});
    let (status, answer) = server.post_json("", &bundle).await;
    assert_eq!(status, 200, "{answer}");
    let (_, stored) = server.get_json("Claim/clm").await;
    assert_eq!(
        claim_state(&stored).as_deref(),
        Some("submitted"),
        "{stored}"
    );
    // ... and the index agrees with the body.
    let (_, found) = server
        .get_json("Claim?_tag=urn:x12:claim-state|submitted")
        .await;
    assert_eq!(found["total"], 1, "{found}");

    // So $submit still refuses to send it twice.
    let (status, outcome) = post_op(&server, "Claim/clm/$submit", JSON, String::new()).await;
    assert_eq!(status, 409, "{outcome}");

    // A client cannot create a claim in a state either.
    let mut other = claim("active");
    other.as_object_mut().unwrap().shift_remove("id");
    other["identifier"] = json!([{"system": "urn:x12:clm01", "value": "PCN-78"}]);
    other["meta"] = json!({"tag": [{"system": "urn:x12:claim-state", "code": "paid"}, {"system": "urn:mine", "code": "kept"}]});
    let (status, created) = server.post_json("Claim", &other).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(claim_state(&created), None, "{created}");
    assert_eq!(created["meta"]["tag"][0]["code"], "kept");

    // Every state change is in the history.
    let (_, history) = server.get_json("Claim/clm/_history").await;
    assert_eq!(history["total"], 6, "{history}");
}
both!(the_claim_state_survives_every_client_write);

/// Only a claim never sent goes without asking; replacements and voids follow a sent one.
async fn a_claim_is_sent_again_only_on_purpose(server: Server) {
    practice(&server).await;
    let (status, _) = post_op(&server, "Claim/clm/$submit", JSON, String::new()).await;
    assert_eq!(status, 200);
    let (status, result) = post_op(
        &server,
        "$import-835",
        "application/edi-x12",
        remittance("EFT-9", "85"),
    )
    .await;
    assert_eq!(status, 200, "{result}");
    let (_, paid) = server.get_json("Claim/clm").await;
    assert_eq!(claim_state(&paid).as_deref(), Some("paid"));

    // A paid claim is not sent again by accident, and stays paid.
    let (status, outcome) = post_op(&server, "Claim/clm/$submit", JSON, String::new()).await;
    assert_eq!(status, 409, "{outcome}");
    let (_, still) = server.get_json("Claim/clm").await;
    assert_eq!(claim_state(&still).as_deref(), Some("paid"));

    // A replacement (frequency 7) may follow.
    let mut replacement = claim("active");
    replacement["related"] = json!([{"relationship": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/related-claim-relationship", "code": "prior"}]},
        "reference": {"value": "PAYERCLM1"}}]);
    put_ok(&server, &replacement).await;
    let (status, binary) = post_op(&server, "Claim/clm/$submit", JSON, String::new()).await;
    assert_eq!(status, 200, "{binary}");
    assert!(decoded(&binary).contains(":B:7*"), "frequency 7");
    let (_, replaced) = server.get_json("Claim/clm").await;
    assert_eq!(
        claim_state(&replaced).as_deref(),
        Some("replacement-submitted")
    );

    // A void (frequency 8) too; then nothing more without asking.
    let mut void = claim("cancelled");
    void["related"] = replaced["related"].clone();
    put_ok(&server, &void).await;
    let (status, binary) = post_op(&server, "Claim/clm/$submit", JSON, String::new()).await;
    assert_eq!(status, 200, "{binary}");
    assert!(decoded(&binary).contains(":B:8*"), "frequency 8");
    let (_, voided) = server.get_json("Claim/clm").await;
    assert_eq!(claim_state(&voided).as_deref(), Some("voided"));
    let (status, _) = post_op(&server, "Claim/clm/$submit", JSON, String::new()).await;
    assert_eq!(status, 409);
    let (status, _) = post_op(
        &server,
        "Claim/clm/$submit?resubmit=true",
        JSON,
        String::new(),
    )
    .await;
    assert_eq!(status, 200);
}
both!(a_claim_is_sent_again_only_on_purpose);

/// A Claim with a server-made id (36 characters) and no CLM01 gets one that fits, kept on
/// the Claim, and the 835 that answers finds it.
async fn a_posted_claim_gets_a_patient_control_number(server: Server) {
    practice(&server).await;
    let mut new = claim("active");
    new.as_object_mut().unwrap().shift_remove("id");
    new.as_object_mut().unwrap().shift_remove("identifier");
    let (status, created) = server.post_json("Claim", &new).await;
    assert_eq!(status, 201);
    let id = created["id"].as_str().unwrap();
    assert!(id.len() > 20);
    let (status, binary) =
        post_op(&server, &format!("Claim/{id}/$submit"), JSON, String::new()).await;
    assert_eq!(status, 200, "{binary}");
    let (_, stored) = server.get_json(&format!("Claim/{id}")).await;
    let number = stored["identifier"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["system"] == "urn:x12:clm01")
        .and_then(|i| i["value"].as_str())
        .expect("a CLM01 kept on the Claim")
        .to_owned();
    assert!(number.len() <= 20, "{number}");
    assert!(
        decoded(&binary).contains(&format!("CLM*{number}*150*")),
        "{}",
        decoded(&binary)
    );
    // A second such claim gets another number.
    let mut second = claim("active");
    second.as_object_mut().unwrap().shift_remove("id");
    second.as_object_mut().unwrap().shift_remove("identifier");
    let (_, created) = server.post_json("Claim", &second).await;
    let second_id = created["id"].as_str().unwrap();
    post_op(
        &server,
        &format!("Claim/{second_id}/$submit"),
        JSON,
        String::new(),
    )
    .await;
    let (_, second_stored) = server.get_json(&format!("Claim/{second_id}")).await;
    assert_ne!(second_stored["identifier"][0]["value"], json!(number));

    // The payer answers with that number, and the 835 finds the claim.
    let segments = [
        format!("CLP*{number}*1*150*150**12*PAYERCLM7"),
        "NM1*QC*1*GARCIA*ANA****MI*LSH-555".to_owned(),
    ];
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let (status, result) = post_op(
        &server,
        "$import-835",
        "application/edi-x12",
        remittance_of("EFT-CLM01", "1512345678", "150", &segments),
    )
    .await;
    assert_eq!(status, 200, "{result}");
    assert!(parameters(&result, "unmatched").is_empty(), "{result}");
    let (_, paid) = server.get_json(&format!("Claim/{id}")).await;
    assert_eq!(claim_state(&paid).as_deref(), Some("paid"), "{paid}");
}
both!(a_posted_claim_gets_a_patient_control_number);

/// Twenty clients submit the same claim at once: the payer gets it once.
async fn concurrent_submissions_send_a_claim_once(server: Server) {
    practice(&server).await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let client = server.client.clone();
        let url = format!("{}/Claim/clm/$submit", server.base);
        tasks.push(tokio::spawn(async move {
            client.post(url).send().await.unwrap().status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| [200, 409, 412].contains(s)),
        "{statuses:?}"
    );
    assert_eq!(count(&server, "Binary").await, 1, "one 837P stored");
    let (_, claim) = server.get_json("Claim/clm").await;
    assert_eq!(claim["meta"]["versionId"], "2", "{claim}");
}
both!(concurrent_submissions_send_a_claim_once);

/// The holes a review found in the claim state: deleting and re-creating a sent Claim,
/// $meta-delete, transaction PATCH and POST, batch PUT, a sync that drops the derived
/// CLM01, a retried replacement, and `resubmit` in a Parameters body.
async fn the_claim_state_has_no_back_doors(server: Server) {
    practice(&server).await;
    let (status, _) = post_op(&server, "Claim/clm/$submit", JSON, String::new()).await;
    assert_eq!(status, 200);
    let state = |claim: &Value| claim_state(claim).unwrap_or_default();

    // Delete, then PUT it back: still sent.
    let (status, _) = server
        .send_json(
            reqwest::Method::DELETE,
            "Claim/clm",
            JSON,
            Value::Null.to_string(),
        )
        .await;
    assert!(status == 200 || status == 204, "{status}");
    let (status, back) = server
        .send_json(
            reqwest::Method::PUT,
            "Claim/clm",
            JSON,
            claim("active").to_string(),
        )
        .await;
    assert_eq!(status, 201, "{back}");
    assert_eq!(state(&back), "submitted", "{back}");
    let (status, _) = post_op(&server, "Claim/clm/$submit", JSON, String::new()).await;
    assert_eq!(status, 409);

    // $meta-delete cannot remove it.
    let remove = json!({"resourceType": "Parameters", "parameter": [{"name": "meta",
        "valueMeta": {"tag": [{"system": "urn:x12:claim-state", "code": "submitted"}]}}]});
    let (_, _) = post_op(&server, "Claim/clm/$meta-delete", JSON, remove.to_string()).await;
    let (_, now) = server.get_json("Claim/clm").await;
    assert_eq!(state(&now), "submitted");

    // Transaction PATCH of a Patient, POST of a Claim, batch PUT of the Claim.
    let tag = json!([{"op": "add", "path": "/meta", "value": {"tag": [{"system": "urn:x12:claim-state", "code": "paid"}]}}]);
    let binary = json!({"resourceType": "Binary", "contentType": "application/json-patch+json",
        "data": base64::engine::general_purpose::STANDARD.encode(tag.to_string())});
    let mut posted = claim("active");
    posted["id"] = json!("other");
    posted["identifier"] = json!([{"system": "urn:x12:clm01", "value": "PCN-99"}]);
    posted["meta"] = json!({"tag": [{"system": "urn:x12:claim-state", "code": "paid"}]});
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": binary, "request": {"method": "PATCH", "url": "Patient/pat"}},
        {"fullUrl": "urn:uuid:7d3e1a52-0000-4000-8000-000000000001", "resource": posted,
         "request": {"method": "POST", "url": "Claim"}}]});
    let (status, answer) = server.post_json("", &bundle).await;
    assert_eq!(status, 200, "{answer}");
    let (_, patient) = server.get_json("Patient/pat").await;
    assert_eq!(claim_state(&patient), None, "{patient}");
    let (_, found) = server
        .get_json("Claim?identifier=urn:x12:clm01|PCN-99")
        .await;
    assert_eq!(claim_state(&found["entry"][0]["resource"]), None, "{found}");
    let mut unsent = claim("active");
    unsent["meta"] = json!({"tag": [{"system": "urn:x12:claim-state", "code": "paid"}]});
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": unsent, "request": {"method": "PUT", "url": "Claim/clm"}}]});
    server.post_json("", &batch).await;
    let (_, now) = server.get_json("Claim/clm").await;
    assert_eq!(state(&now), "submitted");

    // `resubmit` in a Parameters body sends it again on purpose.
    let parameters = json!({"resourceType": "Parameters", "parameter": [{"name": "resubmit", "valueBoolean": true}]});
    let (status, outcome) =
        post_op(&server, "Claim/clm/$submit", JSON, parameters.to_string()).await;
    assert_eq!(status, 200, "{outcome}");

    // A replacement goes once; a retry of it is refused; a void may follow.
    let mut replacement = claim("active");
    replacement["related"] = json!([{"relationship": {"coding": [{"code": "prior"}]}, "reference": {"value": "PAYERCLM1"}}]);
    put_ok(&server, &replacement).await;
    let (status, _) = post_op(&server, "Claim/clm/$submit", JSON, String::new()).await;
    assert_eq!(status, 200);
    let (status, outcome) = post_op(&server, "Claim/clm/$submit", JSON, String::new()).await;
    assert_eq!(status, 409, "{outcome}");
    replacement["status"] = json!("cancelled");
    put_ok(&server, &replacement).await;
    let (status, _) = post_op(&server, "Claim/clm/$submit", JSON, String::new()).await;
    assert_eq!(status, 200);
}
both!(the_claim_state_has_no_back_doors);

/// A derived CLM01 is one no other Claim answers to, a sync that leaves it out keeps it,
/// and an 835 whose CLM01 two Claims bear is refused rather than posted to either.
async fn patient_control_numbers_name_one_claim(server: Server) {
    practice(&server).await;
    // Claim "short1" has no CLM01 and an id that fits, but another claim has CLM01 short1.
    let mut taken = claim("active");
    taken["id"] = json!("holder");
    taken["identifier"] = json!([{"system": "urn:x12:clm01", "value": "short1"}]);
    put_ok(&server, &taken).await;
    let mut short = claim("active");
    short["id"] = json!("short1");
    short.as_object_mut().unwrap().shift_remove("identifier");
    put_ok(&server, &short).await;
    let (status, binary) = post_op(&server, "Claim/short1/$submit", JSON, String::new()).await;
    assert_eq!(status, 200, "{binary}");
    let (_, stored) = server.get_json("Claim/short1").await;
    let number = stored["identifier"][0]["value"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(number, "short1");
    assert!(number.starts_with("FS"), "{number}");
    // A billing system's sync without identifiers keeps it.
    put_ok(&server, &short).await;
    let (_, synced) = server.get_json("Claim/short1").await;
    assert_eq!(synced["identifier"][0]["value"], json!(number), "{synced}");

    // Two claims bear CLM01 PCN-77: the remittance is refused, nothing posted.
    let mut twin = claim("active");
    twin["id"] = json!("twin");
    put_ok(&server, &twin).await;
    let (status, outcome) = post_op(
        &server,
        "$import-835",
        "application/edi-x12",
        remittance("EFT-TWIN", "85"),
    )
    .await;
    assert_eq!(status, 409, "{outcome}");
    assert_eq!(count(&server, "PaymentReconciliation").await, 0);
}
both!(patient_control_numbers_name_one_claim);
