//! X12 in the server, on both databases: `Claim/{id}/$submit` writes the 837P, stores it
//! as a Binary and marks the Claim; `$import-835` posts a remittance once (idempotent by
//! TRN02), with its balancing checked; and the `edi` commands.

mod common;

use base64::Engine;
use common::{JSON, Server, json};
use serde_json::{Value, json};

const NPI: &str = "http://hl7.org/fhir/sid/us-npi";
const EIN: &str = "urn:oid:2.16.840.1.113883.4.4";

async fn put(server: &Server, resource: Value) {
    let url = format!(
        "{}/{}/{}",
        server.base,
        resource["resourceType"].as_str().unwrap(),
        resource["id"].as_str().unwrap()
    );
    let response = server
        .client
        .put(url)
        .header("content-type", JSON)
        .body(resource.to_string())
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{:?}",
        response.text().await
    );
}

async fn get(server: &Server, path: &str) -> (u16, Value) {
    json(
        server
            .client
            .get(format!("{}/{path}", server.base))
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn post_op(server: &Server, path: &str, content_type: &str, body: String) -> (u16, Value) {
    json(
        server
            .client
            .post(format!("{}/{path}", server.base))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// A practice with one claim of 150.00 (two lines) for patient control number PCN-77.
async fn practice(server: &Server) {
    put(server, json!({"resourceType": "Organization", "id": "clinic", "name": "Hill Clinic",
        "identifier": [{"system": NPI, "value": "1234567893"}, {"system": EIN, "value": "98-7654321"}],
        "telecom": [{"system": "phone", "value": "555-010-3000"}],
        "address": [{"line": ["9 Hill Road"], "city": "Austin", "state": "TX", "postalCode": "787011234"}]})).await;
    put(
        server,
        json!({"resourceType": "Organization", "id": "payer", "name": "Lone Star Health",
        "identifier": [{"system": "urn:x12:payer-id", "value": "LSH01"}]}),
    )
    .await;
    put(server, json!({"resourceType": "Patient", "id": "pat", "name": [{"family": "Garcia", "given": ["Ana"]}],
        "gender": "female", "birthDate": "1975-05-05",
        "address": [{"line": ["4 Elm Street"], "city": "Austin", "state": "TX", "postalCode": "78702"}]})).await;
    put(server, json!({"resourceType": "Coverage", "id": "cov", "status": "active", "subscriberId": "LSH-555",
        "beneficiary": {"reference": "Patient/pat"}, "payor": [{"reference": "Organization/payer"}]})).await;
    put(server, claim("active")).await;
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
    let (_, stored_claim) = get(&server, "Claim/clm").await;
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
    let (status, stored) = get(&server, reference).await;
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
    put(&server, bad).await;
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
    let (_, unchanged) = get(&server, "Claim/bad").await;
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
    let (_, bundle) = get(server, &format!("{resource_type}?_summary=count")).await;
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
    let (_, payment) = get(&server, &payment_ref).await;
    assert_eq!(payment["paymentIdentifier"]["value"], "EFT-1");
    assert_eq!(payment["paymentAmount"]["value"].to_string(), "85.00");
    assert_eq!(payment["detail"][0]["request"]["reference"], "Claim/clm");

    let (_, responses) = get(&server, "ClaimResponse?request=Claim/clm").await;
    let response = &responses["entry"][0]["resource"];
    assert_eq!(response["patient"]["reference"], "Patient/pat");
    assert_eq!(response["payment"]["amount"]["value"].to_string(), "85.00");
    let (_, claim) = get(&server, "Claim/clm").await;
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
    let (_, claim) = get(&server, "Claim/clm").await;
    assert!(
        claim["meta"]["tag"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["code"] == "paid")
    );
}
both!(an_835_is_posted_once);

#[tokio::test]
async fn the_edi_commands() {
    let dir = std::env::temp_dir().join(format!("edi-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": claim("active")},
        {"resource": {"resourceType": "Organization", "id": "clinic", "name": "Hill Clinic",
            "identifier": [{"system": NPI, "value": "1234567893"}, {"system": EIN, "value": "987654321"}],
            "telecom": [{"system": "phone", "value": "5550103000"}],
            "address": [{"line": ["9 Hill Road"], "city": "Austin", "state": "TX", "postalCode": "787011234"}]}},
        {"resource": {"resourceType": "Organization", "id": "payer", "name": "Lone Star Health", "identifier": [{"value": "LSH01"}]}},
        {"resource": {"resourceType": "Patient", "id": "pat", "name": [{"family": "Garcia"}], "gender": "female",
            "birthDate": "1975-05-05", "address": [{"line": ["4 Elm"], "city": "Austin", "state": "TX", "postalCode": "78702"}]}},
        {"resource": {"resourceType": "Coverage", "id": "cov", "status": "active", "subscriberId": "LSH-555",
            "beneficiary": {"reference": "Patient/pat"}, "payor": [{"reference": "Organization/payer"}]}}]});
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
