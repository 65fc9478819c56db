//! 837P from FHIR: varied claims are generated, checked by the outside validator pyx12
//! (`x12valid`), parsed back by our parser, and mapped back to FHIR without losing a
//! mapped element; bad claims give a list of problems naming the FHIR elements.
//!
//! pyx12 runs when `x12valid` is on the PATH; with `EDI_REQUIRE_PYX12=1` (as `.ci/run`
//! sets) a missing validator fails the test instead of skipping the check.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure
#![allow(clippy::too_many_lines)] // a test reads as one story

use std::process::Command;

use edi::claim837::{self, Envelope};
use edi::fhir::systems;
use serde_json::{Value, json};

fn envelope(control_number: u32) -> Envelope {
    Envelope {
        sender_id: "CLINIC01".into(),
        receiver_id: "CLEARINGHOUSE".into(),
        control_number,
        date: "20261201".into(),
        time: "1200".into(),
        usage: 'T',
    }
}

fn organization(id: &str, name: &str, npi: &str, tax: &str) -> Value {
    json!({"resourceType": "Organization", "id": id, "name": name,
           "identifier": [{"system": systems::NPI, "value": npi},
                          {"system": systems::EIN, "value": tax}],
           "telecom": [{"system": "phone", "value": "(555) 010-2000"}],
           "address": [{"line": ["100 Main Street", "Suite 200"], "city": "Springfield",
                        "state": "IL", "postalCode": "62701-1234"}]})
}

fn payer(id: &str, name: &str, payer_id: &str) -> Value {
    json!({"resourceType": "Organization", "id": id, "name": name,
           "identifier": [{"system": systems::PAYER_ID, "value": payer_id}]})
}

fn person(
    resource_type: &str,
    id: &str,
    family: &str,
    given: &str,
    birth: &str,
    gender: &str,
) -> Value {
    json!({"resourceType": resource_type, "id": id,
           "name": [{"family": family, "given": [given]}],
           "birthDate": birth, "gender": gender,
           "address": [{"line": ["12 Oak Avenue"], "city": "Springfield", "state": "IL",
                        "postalCode": "62704"}]})
}

fn coverage(
    id: &str,
    beneficiary: &str,
    subscriber: Option<&str>,
    relationship: &str,
    payer: &str,
    member: &str,
) -> Value {
    let mut coverage = json!({"resourceType": "Coverage", "id": id, "status": "active",
        "beneficiary": {"reference": beneficiary},
        "relationship": {"coding": [{"system": systems::SUBSCRIBER_RELATIONSHIP, "code": relationship}]},
        "payor": [{"reference": payer}], "subscriberId": member,
        "class": [{"type": {"coding": [{"code": "group"}]}, "value": "GRP-77"}]});
    if let Some(subscriber) = subscriber {
        coverage["subscriber"] = json!({"reference": subscriber});
    }
    coverage
}

fn line(
    sequence: usize,
    code: &str,
    modifiers: &[&str],
    net: &str,
    units: u32,
    pointers: &[usize],
    date: &str,
) -> Value {
    json!({"sequence": sequence,
           "productOrService": {"coding": [{"system": if code.starts_with(char::is_alphabetic) { systems::HCPCS } else { systems::CPT }, "code": code}]},
           "modifier": modifiers.iter().map(|m| json!({"coding": [{"system": systems::CPT_MODIFIER, "code": m}]})).collect::<Vec<_>>(),
           "quantity": {"value": units},
           "net": {"value": net.parse::<serde_json::Number>().unwrap(), "currency": "USD"},
           "diagnosisSequence": pointers,
           "servicedDate": date,
           "locationCodeableConcept": {"coding": [{"system": systems::PLACE_OF_SERVICE, "code": "11"}]}})
}

fn diagnoses(codes: &[&str]) -> Vec<Value> {
    codes
        .iter()
        .enumerate()
        .map(|(i, code)| {
            json!({"sequence": i + 1,
            "diagnosisCodeableConcept": {"coding": [{"system": systems::ICD10CM, "code": code}]}})
        })
        .collect()
}

fn bundle(resources: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": "collection",
           "entry": resources.into_iter().map(|r| json!({"resource": r})).collect::<Vec<_>>()})
}

/// A claim for Jane (her own coverage), one diagnosis, one line.
fn simple_claim() -> Value {
    let claim = json!({"resourceType": "Claim", "id": "c1", "status": "active",
        "identifier": [{"system": systems::PATIENT_CONTROL_NUMBER, "value": "PCN1001"}],
        "type": {"coding": [{"code": "professional"}]}, "use": "claim",
        "patient": {"reference": "Patient/jane"}, "created": "2026-11-20",
        "provider": {"reference": "Organization/clinic"},
        "priority": {"coding": [{"code": "normal"}]},
        "insurance": [{"sequence": 1, "focal": true, "coverage": {"reference": "Coverage/cov1"}}],
        "diagnosis": diagnoses(&["J06.9"]),
        "item": [line(1, "99213", &[], "125.00", 1, &[1], "2026-11-18")],
        "total": {"value": 125.00, "currency": "USD"}});
    bundle(vec![
        claim,
        organization(
            "clinic",
            "Springfield Family Practice",
            "1234567893",
            "12-3456789",
        ),
        payer("acme", "Acme Health Plan", "ACME01"),
        person("Patient", "jane", "Doe", "Jane", "1980-02-29", "female"),
        coverage(
            "cov1",
            "Patient/jane",
            None,
            "self",
            "Organization/acme",
            "MEM12345",
        ),
    ])
}

/// A claim for a child on a parent's coverage, with a secondary coverage, a rendering
/// provider, a facility, 12 diagnoses and 50 lines with 4 modifiers and 4 pointers.
fn large_claim() -> Value {
    let codes = [
        "J06.9", "R05.9", "E11.9", "I10", "Z00.129", "M54.50", "K21.9", "F41.1", "J45.909",
        "L20.9", "H66.90", "R50.9",
    ];
    let items: Vec<Value> = (1..=50)
        .map(|n| {
            line(
                n,
                if n % 5 == 0 { "J3420" } else { "99214" },
                &["25", "59", "XS", "GT"],
                &format!("{}.{:02}", 10 + n, n % 100),
                (n % 3 + 1) as u32,
                &[
                    1 + (n % 12),
                    1 + ((n + 1) % 12),
                    1 + ((n + 2) % 12),
                    1 + ((n + 3) % 12),
                ],
                &format!("2026-11-{:02}", 1 + n % 28),
            )
        })
        .collect();
    let total: i64 = (1..=50)
        .map(|n| (10 + n as i64) * 100 + (n as i64 % 100))
        .sum();
    let claim = json!({"resourceType": "Claim", "id": "c2", "status": "active",
        "identifier": [{"system": systems::PATIENT_CONTROL_NUMBER, "value": "PCN2002"}],
        "type": {"coding": [{"code": "professional"}]}, "use": "claim",
        "patient": {"reference": "Patient/kid"}, "created": "2026-11-30",
        "provider": {"reference": "Organization/clinic"},
        "priority": {"coding": [{"code": "normal"}]},
        "careTeam": [{"sequence": 1, "provider": {"reference": "Practitioner/doc"},
                      "role": {"coding": [{"code": "primary"}]}}],
        "facility": {"reference": "Location/room"},
        "insurance": [
            {"sequence": 1, "focal": true, "coverage": {"reference": "Coverage/parent"},
             "preAuthRef": ["AUTH-555"]},
            {"sequence": 2, "focal": false, "coverage": {"reference": "Coverage/second"}}],
        "diagnosis": diagnoses(&codes),
        "item": items,
        "total": {"value": format!("{}.{:02}", total / 100, total % 100).parse::<serde_json::Number>().unwrap(), "currency": "USD"}});
    let mut doc = person(
        "Practitioner",
        "doc",
        "House",
        "Gregory",
        "1960-06-11",
        "male",
    );
    doc["identifier"] = json!([{"system": systems::NPI, "value": "1003000126"}]);
    let room = json!({"resourceType": "Location", "id": "room", "name": "Springfield Clinic East",
        "identifier": [{"system": systems::NPI, "value": "1497758544"}],
        "address": {"line": ["300 East Road"], "city": "Springfield", "state": "IL", "postalCode": "62702"}});
    bundle(vec![
        claim,
        organization(
            "clinic",
            "Springfield Family Practice",
            "1234567893",
            "12-3456789",
        ),
        payer("acme", "Acme Health Plan", "ACME01"),
        payer("blue", "Blue Plan", "BLUE02"),
        person("Patient", "kid", "Doe", "Timmy", "2015-07-04", "male"),
        person("Patient", "mom", "Doe", "Jane", "1980-02-29", "female"),
        coverage(
            "parent",
            "Patient/kid",
            Some("Patient/mom"),
            "child",
            "Organization/acme",
            "MEM12345",
        ),
        coverage(
            "second",
            "Patient/kid",
            Some("Patient/kid"),
            "self",
            "Organization/blue",
            "BLU777",
        ),
        doc,
        room,
    ])
}

/// `large_claim` sent to the second payer: the focal insurance is sequence 2 (SBR*S in
/// 2000B), the first payer goes in 2320 (SBR*P).
fn secondary_claim() -> Value {
    let mut bundle = large_claim();
    let claim = &mut bundle["entry"][0]["resource"];
    claim["insurance"] = json!([
        {"sequence": 1, "focal": false, "coverage": {"reference": "Coverage/parent"}},
        {"sequence": 2, "focal": true, "coverage": {"reference": "Coverage/second"}}]);
    bundle
}

/// `simple_claim` replacing (frequency 7) or voiding (8) an earlier one.
fn corrected_claim(void: bool) -> Value {
    let mut bundle = simple_claim();
    let claim = &mut bundle["entry"][0]["resource"];
    claim["related"] = json!([{"relationship": {"coding": [{"code": "prior"}]},
                               "reference": {"value": "PAYER-CLM-0099"}}]);
    if void {
        claim["status"] = json!("cancelled");
    }
    bundle
}

/// A drug for a line: its NDC, quantity and unit, and a prescription (`XZ`) or link
/// sequence (`VY`) number.
fn drug(ndc: &str, quantity: &str, unit: &str, reference: Option<(&str, &str)>) -> Value {
    let mut detail = json!({"sequence": 1,
        "productOrService": {"coding": [{"system": systems::NDC, "code": ndc}]},
        "quantity": {"value": quantity.parse::<serde_json::Number>().unwrap(),
                     "system": systems::UCUM, "code": unit}});
    if let Some((qualifier, number)) = reference {
        let url = if qualifier == "XZ" {
            systems::PRESCRIPTION_NUMBER_EXTENSION
        } else {
            systems::LINK_SEQUENCE_EXTENSION
        };
        detail["extension"] = json!([{"url": url, "valueString": number}]);
    }
    detail
}

/// `simple_claim` with two drug lines: one described and identified by its NDC with a
/// prescription number, one with a modifier, a description and a link sequence number.
fn drug_claim() -> Value {
    let mut bundle = simple_claim();
    let claim = &mut bundle["entry"][0]["resource"];
    let mut saline = line(2, "J3490", &[], "67.69", 7, &[1], "2026-11-18");
    saline["productOrService"]["text"] = json!("Sodium chloride see NDC");
    saline["detail"] = json!([drug("00338004938", "7", "mL", Some(("XZ", "2530001")))]);
    let mut heparin = line(3, "J1642", &["JW"], "10.5", 2, &[1], "2026-11-18");
    heparin["productOrService"]["text"] = json!("Hep lock flush");
    heparin["detail"] = json!([drug("08290038005", "2.5", "{unit}", Some(("VY", "1")))]);
    claim["item"]
        .as_array_mut()
        .unwrap()
        .extend([saline, heparin]);
    claim["total"] = json!({"value": 203.19, "currency": "USD"});
    bundle
}

/// A line's mapped facts: code, modifiers, charge in cents, units, pointers, date.
type ItemFacts = (String, Vec<String>, Option<i64>, String, Value, String);

fn pyx12(text: &str, name: &str) {
    let available = Command::new("x12valid").arg("--version").output().is_ok();
    if !available {
        assert!(
            std::env::var("EDI_REQUIRE_PYX12").is_err(),
            "EDI_REQUIRE_PYX12 is set but x12valid (pip install pyx12) is not on the PATH"
        );
        eprintln!("skipped the pyx12 check: x12valid is not installed");
        return;
    }
    let dir = std::env::temp_dir().join(format!("edi-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.837"));
    std::fs::write(&path, text).unwrap();
    let output = Command::new("x12valid").arg(&path).output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        report.contains(": OK") && !report.contains("Failure"),
        "pyx12 rejects {name}:\n{report}\n{text}"
    );
}

fn generated(bundle: &Value, control: u32) -> String {
    claim837::generate(bundle, &envelope(control)).unwrap_or_else(|problems| {
        panic!("problems: {problems:#?}");
    })
}

#[test]
fn varied_claims_pass_pyx12() {
    for (name, bundle) in [
        ("simple", simple_claim()),
        ("large", large_claim()),
        ("secondary", secondary_claim()),
        ("replacement", corrected_claim(false)),
        ("void", corrected_claim(true)),
        ("drug", drug_claim()),
    ] {
        let text = generated(&bundle, 17);
        let parsed =
            edi::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{name}: our parser: {e}"));
        for (_, set) in parsed.sets() {
            let problems = claim837::validate(&parsed.document, set);
            assert!(problems.is_empty(), "{name}: our checks: {problems:#?}");
        }
        pyx12(&text, name);
    }
}

#[test]
fn the_claim_maps_to_the_expected_segments() {
    let text = generated(&simple_claim(), 42);
    let segments: Vec<&str> = text.lines().collect();
    assert_eq!(segments[0].len(), 106);
    assert!(
        segments.contains(&"CLM*PCN1001*125***11:B:1*Y*A*Y*Y~"),
        "{text}"
    );
    assert!(segments.contains(&"HI*ABK:J069~"));
    assert!(segments.contains(&"SV1*HC:99213*125*UN*1***1~"));
    assert!(segments.contains(&"DTP*472*D8*20261118~"));
    assert!(segments.contains(&"SBR*P*18*GRP-77******CI~"));
    assert!(segments.contains(&"NM1*85*2*SPRINGFIELD FAMILY PRACTICE*****XX*1234567893~"));
    assert!(segments.contains(&"N4*SPRINGFIELD*IL*627011234~"));
    assert!(segments.contains(&"REF*EI*123456789~"));
    assert!(segments.contains(&"DMG*D8*19800229*F~"));
    let se = segments.iter().find(|s| s.starts_with("SE*")).unwrap();
    let st = segments.iter().position(|s| s.starts_with("ST*")).unwrap();
    let se_at = segments.iter().position(|s| s.starts_with("SE*")).unwrap();
    assert_eq!(*se, format!("SE*{}*0042~", se_at - st + 1));

    let large = generated(&large_claim(), 43);
    assert!(
        large.contains("HL*3*2*23*0~\nPAT*19~"),
        "2000C for the child"
    );
    assert!(
        large.contains("SBR*S*18*GRP-77******CI~\nOI***Y***Y~"),
        "2320 for the secondary"
    );
    assert!(large.contains("REF*G1*AUTH-555~"));
    assert!(large.contains("NM1*82*1*HOUSE*GREGORY****XX*1003000126~"));
    assert!(large.contains("NM1*77*2*SPRINGFIELD CLINIC EAST*****XX*1497758544~"));
    assert!(
        large.contains("SV1*HC:99214:25:59:XS:GT*11.01*UN*2***2:3:4:5~"),
        "{large}"
    );
    assert_eq!(large.matches("\nLX*").count(), 50);
    let hi = large.lines().find(|l| l.starts_with("HI*")).unwrap();
    assert_eq!(hi.matches(":").count(), 12);

    let replacement = generated(&corrected_claim(false), 44);
    assert!(replacement.contains("11:B:7") && replacement.contains("REF*F8*PAYER-CLM-0099~"));
    let void = generated(&corrected_claim(true), 45);
    assert!(void.contains("11:B:8"));
}

/// Claim → 837P → FHIR → 837P gives the same file, and the FHIR read back holds every
/// mapped element of the original.
#[test]
fn claims_round_trip() {
    for (name, bundle) in [
        ("simple", simple_claim()),
        ("large", large_claim()),
        ("secondary", secondary_claim()),
        ("replacement", corrected_claim(false)),
        ("void", corrected_claim(true)),
        ("drug", drug_claim()),
    ] {
        let text = generated(&bundle, 7);
        let parsed = edi::parse(text.as_bytes()).unwrap();
        let bundles = claim837::to_fhir(&parsed).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(bundles.len(), 1);
        let again = generated(&bundles[0], 7);
        assert_eq!(again, text, "{name}: the 837P of the parsed claim differs");

        let original = &bundle["entry"][0]["resource"];
        let back = bundles[0]["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["resource"])
            .find(|r| r["resourceType"] == "Claim")
            .unwrap();
        assert_eq!(
            back["identifier"][0]["value"],
            original["identifier"][0]["value"]
        );
        assert_eq!(back["status"], original["status"]);
        assert_eq!(
            edi::fhir::cents(&back["total"]["value"]),
            edi::fhir::cents(&original["total"]["value"])
        );
        let codes = |claim: &Value| -> Vec<String> {
            claim["diagnosis"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| {
                    d["diagnosisCodeableConcept"]["coding"][0]["code"]
                        .as_str()
                        .unwrap()
                        .to_owned()
                })
                .collect()
        };
        assert_eq!(codes(back), codes(original));
        let items = |claim: &Value| -> Vec<ItemFacts> {
            claim["item"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| {
                    (
                        i["productOrService"]["coding"][0]["code"]
                            .as_str()
                            .unwrap()
                            .to_owned(),
                        i["modifier"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|m| m["coding"][0]["code"].as_str().unwrap().to_owned())
                            .collect(),
                        edi::fhir::cents(&i["net"]["value"]),
                        i["quantity"]["value"].to_string(),
                        i["diagnosisSequence"].clone(),
                        i["servicedDate"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        };
        assert_eq!(items(back), items(original), "{name}");
        assert_eq!(drugs(back), drugs(original), "{name}");
        assert_eq!(
            back["insurance"].as_array().unwrap().len(),
            original["insurance"].as_array().unwrap().len()
        );
        assert_eq!(
            back["insurance"][0]["preAuthRef"],
            original["insurance"][0]["preAuthRef"]
        );
        assert_eq!(
            back["related"][0]["reference"]["value"],
            original["related"][0]["reference"]["value"]
        );
    }
}

/// Per item: the description, and the drug's NDC, quantity, unit and REF extension.
fn drugs(claim: &Value) -> Vec<(Value, Value, String, Value, Value)> {
    claim["item"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let detail = &i["detail"][0];
            (
                i["productOrService"]["text"].clone(),
                detail["productOrService"]["coding"][0]["code"].clone(),
                detail["quantity"]["value"].to_string(),
                detail["quantity"]["code"].clone(),
                detail["extension"].clone(),
            )
        })
        .collect()
}

/// SV101-7 is the description, not a modifier; the drug is loop 2410 after REF*6R.
#[test]
fn drug_lines_map_to_the_expected_segments() {
    let text = generated(&drug_claim(), 46);
    for segments in [
        "SV1*HC:99213*125*UN*1***1~\nDTP*472*D8*20261118~\nREF*6R*1~\nLX*2~",
        "SV1*HC:J3490:::::Sodium chloride see NDC*67.69*UN*7***1~\nDTP*472*D8*20261118~\n\
         REF*6R*2~\nLIN**N4*00338004938~\nCTP****7*ML~\nREF*XZ*2530001~\nLX*3~",
        "SV1*HC:J1642:JW::::Hep lock flush*10.5*UN*2***1~\nDTP*472*D8*20261118~\n\
         REF*6R*3~\nLIN**N4*08290038005~\nCTP****2.5*UN~\nREF*VY*1~\nSE*",
    ] {
        assert!(text.contains(segments), "{segments} not in\n{text}");
    }
    // A 10-digit NDC with hyphens is written in its 11-digit form.
    let mut bundle = drug_claim();
    bundle["entry"][0]["resource"]["item"][1]["detail"][0]["productOrService"]["coding"][0]["code"] =
        json!("0338-0049-38");
    assert!(generated(&bundle, 46).contains("LIN**N4*00338004938~"));
}

/// An 837P from elsewhere with a described drug line (SV101-7, LIN, CTP, REF*XZ) reads
/// into the description and a detail, and gives the same 837P again.
#[test]
fn a_drug_line_from_elsewhere_survives_the_round_trip() {
    let plain = generated(&simple_claim(), 47);
    let mut lines: Vec<String> = plain.lines().map(str::to_owned).collect();
    for line in &mut lines {
        if line.starts_with("CLM*") {
            *line = line.replace("*125*", "*67.69*");
        }
        if line.starts_with("SV1*") {
            *line = "SV1*HC:J3490:::::Sodium chloride see NDC*67.69*UN*7***1~".into();
        }
    }
    let after = lines.iter().position(|l| l.starts_with("REF*6R")).unwrap() + 1;
    let drug = ["LIN**N4*00338004938~", "CTP****7.00*UN~", "REF*XZ*2530001~"];
    lines.splice(after..after, drug.iter().map(|s| s.to_string()));
    let se = lines.iter().position(|l| l.starts_with("SE*")).unwrap();
    let count = se - lines.iter().position(|l| l.starts_with("ST*")).unwrap() + 1;
    lines[se] = format!("SE*{count}*0047~");
    let text = lines.join("\n") + "\n";

    let parsed = edi::parse(text.as_bytes()).unwrap();
    let bundles = claim837::to_fhir(&parsed).unwrap();
    let item = &bundles[0]["entry"][0]["resource"]["item"][0];
    assert!(item.get("modifier").is_none(), "{item:#}");
    assert_eq!(item["productOrService"]["text"], "Sodium chloride see NDC");
    assert_eq!(item["productOrService"]["coding"][0]["code"], "J3490");
    let detail = &item["detail"][0];
    assert_eq!(
        detail["productOrService"]["coding"][0],
        json!({"system": systems::NDC, "code": "00338004938"})
    );
    assert_eq!(detail["quantity"]["value"].to_string(), "7.00");
    assert_eq!(detail["quantity"]["code"], "{unit}");
    assert_eq!(
        detail["extension"][0],
        json!({"url": systems::PRESCRIPTION_NUMBER_EXTENSION, "valueString": "2530001"})
    );
    assert_eq!(generated(&bundles[0], 47), text);
    pyx12(&text, "drug-from-elsewhere");
}

#[test]
fn missing_and_inconsistent_data_is_listed() {
    let mut bundle = simple_claim();
    {
        let claim = &mut bundle["entry"][0]["resource"];
        claim["total"] = json!({"value": 99.0, "currency": "USD"});
        claim["diagnosis"][0]["diagnosisCodeableConcept"]["coding"][0]["system"] =
            json!("http://snomed.info/sct");
        claim["item"][0]["diagnosisSequence"] = json!([7]);
        claim["item"][0]
            .as_object_mut()
            .unwrap()
            .remove("servicedDate");
    }
    bundle["entry"][1]["resource"]["identifier"] = json!([]);
    bundle["entry"][1]["resource"]["address"][0]["postalCode"] = json!("62701");
    let problems = claim837::generate(&bundle, &envelope(1)).unwrap_err();
    let listed: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    let has = |element: &str, words: &str| {
        assert!(
            problems
                .iter()
                .any(|p| p.element == element && p.message.contains(words)),
            "no problem '{words}' at {element}: {listed:#?}"
        )
    };
    has("Claim.provider", "NPI");
    has("Claim.provider", "tax id");
    has("Claim.provider", "nine digits");
    has("Claim.diagnosis[0]", "ICD-10-CM");
    has("Claim.item[0].diagnosisSequence", "7");
    has("Claim.item[0].servicedDate", "service date");

    // A claim whose Coverage is not given.
    let mut bundle = simple_claim();
    bundle["entry"].as_array_mut().unwrap().remove(4);
    let problems = claim837::generate(&bundle, &envelope(1)).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.element == "Claim.insurance.coverage"),
        "{problems:?}"
    );

    // Too many lines and diagnoses; a total that disagrees.
    let mut bundle = large_claim();
    {
        let claim = &mut bundle["entry"][0]["resource"];
        let extra = claim["item"][0].clone();
        claim["item"].as_array_mut().unwrap().push(extra);
        let extra = claim["diagnosis"][0].clone();
        claim["diagnosis"].as_array_mut().unwrap().push(extra);
    }
    let problems = claim837::generate(&bundle, &envelope(1)).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.element == "Claim.item" && p.message.contains("50"))
    );
    assert!(
        problems
            .iter()
            .any(|p| p.element == "Claim.diagnosis" && p.message.contains("12"))
    );
    assert!(problems.iter().any(|p| p.element == "Claim.total"));

    let problems = claim837::generate(
        &json!({"resourceType": "Bundle", "type": "collection"}),
        &envelope(1),
    )
    .unwrap_err();

    // Values that would break the file, and facts that do not hold together.
    let mut bundle = simple_claim();
    {
        let claim = &mut bundle["entry"][0]["resource"];
        claim["identifier"][0]["value"] = json!("A~B*C");
        claim["diagnosis"][0]["diagnosisCodeableConcept"]["coding"][0]["code"] = json!("J06*9");
        claim["item"][0]["locationCodeableConcept"]["coding"][0]["code"] = json!("1:1");
        claim["item"][0]["modifier"] = json!([{"coding": [{"code": "25~"}]}]);
        claim["item"][0]["quantity"] = json!({"value": 0});
    }
    bundle["entry"][1]["resource"]["identifier"][0]["value"] = json!("1234567890");
    bundle["entry"][4]["resource"]["subscriber"] = json!({"reference": "Organization/acme"});
    let broken = claim837::generate(&bundle, &envelope(1)).unwrap_err();
    for (element, words) in [
        ("Claim.identifier", "* ~ : ^"),
        ("Claim.diagnosis[0]", "J06*9"),
        ("Claim.item[0].locationCodeableConcept", "1:1"),
        ("Claim.item[0].modifier", "25~"),
        ("Claim.item[0].quantity", "units"),
        ("Claim.provider", "check digit"),
        ("Coverage.relationship", "not the patient"),
    ] {
        assert!(
            broken
                .iter()
                .any(|p| p.element == element && p.message.contains(words)),
            "no problem '{words}' at {element}: {broken:#?}"
        );
    }
    assert_eq!(problems[0].element, "Bundle");
}

/// Our own checks (those behind the 999) find what a receiver would reject.
#[test]
fn the_checks_name_segment_and_element() {
    let text = generated(&simple_claim(), 9)
        .replace("CLM*PCN1001*125*", "CLM*PCN1001*130*")
        .replace("DTP*472*D8*20261118~", "DTP*472*D8*20261131~")
        .replace("XX*1234567893~", "XX*1234567890~")
        .replace("SV1*HC:99213*125*UN*1***1~", "SV1*HC:99213*125*UN*1***2~");
    let parsed = edi::parse(text.as_bytes()).unwrap();
    let (_, set) = parsed.sets().next().unwrap();
    let problems = claim837::validate(&parsed.document, set);
    let found: Vec<(String, edi::ErrorKind)> =
        problems.iter().map(|p| (p.reference(), p.kind)).collect();
    for expected in [
        ("CLM02".to_owned(), edi::ErrorKind::Imbalance),
        ("DTP03".to_owned(), edi::ErrorKind::InvalidDate),
        ("NM109".to_owned(), edi::ErrorKind::InvalidValue),
        ("SV107-1".to_owned(), edi::ErrorKind::InvalidValue),
    ] {
        assert!(found.contains(&expected), "{expected:?} not in {found:?}");
    }
    // A claim without lines or diagnoses.
    let full = generated(&simple_claim(), 9);
    let mut lines: Vec<&str> = full.lines().collect();
    lines.retain(|l| {
        !l.starts_with("HI*")
            && !l.starts_with("LX*")
            && !l.starts_with("SV1*")
            && !l.starts_with("DTP*472")
            && !l.starts_with("REF*6R")
    });
    let count = lines.iter().position(|l| l.starts_with("SE*")).unwrap()
        - lines.iter().position(|l| l.starts_with("ST*")).unwrap()
        + 1;
    let se = lines.iter().position(|l| l.starts_with("SE*")).unwrap();
    let fixed = format!("SE*{count}*0009~");
    lines[se] = &fixed;
    let text = lines.join("\n");
    let parsed = edi::parse(text.as_bytes()).unwrap();
    let (_, set) = parsed.sets().next().unwrap();
    let problems = claim837::validate(&parsed.document, set);
    let missing: Vec<&str> = problems
        .iter()
        .filter(|p| p.kind == edi::ErrorKind::MissingSegment)
        .map(|p| p.segment.as_str())
        .collect();
    assert!(
        missing.contains(&"HI") && missing.contains(&"LX"),
        "{problems:#?}"
    );
}

/// Thirty claims that differ in every mapped dimension, in one file of thirty
/// interchanges: our checks and pyx12 accept them all.
#[test]
fn a_varied_suite_passes_pyx12() {
    let mut file = String::new();
    for n in 0..30usize {
        let mut bundle = if n % 2 == 0 {
            simple_claim()
        } else {
            large_claim()
        };
        let claim = &mut bundle["entry"][0]["resource"];
        claim["identifier"][0]["value"] = json!(format!("PCN-{n}"));
        let lines = 1 + (n * 7) % 50;
        let diagnoses = 1 + n % 12;
        let codes = [
            "J06.9", "R05.9", "E11.9", "I10", "Z00.00", "M54.50", "K21.9", "F41.1", "J45.909",
            "L20.9", "H66.90", "R50.9",
        ];
        claim["diagnosis"] = json!(self::diagnoses(&codes[..diagnoses]));
        let items: Vec<Value> = (1..=lines)
            .map(|i| {
                let modifiers = ["25", "59", "XS", "GT"];
                let mut item = line(
                    i,
                    ["99213", "99214", "J3420", "97110", "G0008"][i % 5],
                    &modifiers[..(i + n) % 5],
                    &format!("{}.{:02}", 5 + i, (i * 13) % 100),
                    (1 + i % 4) as u32,
                    &(1..=diagnoses.min(1 + i % 4)).collect::<Vec<_>>(),
                    &format!("2026-10-{:02}", 1 + (i + n) % 30),
                );
                if (i + n) % 7 == 0 {
                    let object = item.as_object_mut().unwrap();
                    object.remove("servicedDate");
                    object.insert(
                        "servicedPeriod".into(),
                        json!({"start": "2026-10-01", "end": "2026-10-03"}),
                    );
                }
                if (i + n) % 5 == 0 {
                    item["locationCodeableConcept"]["coding"][0]["code"] = json!("02");
                }
                item
            })
            .collect();
        let total: i64 = items
            .iter()
            .map(|i| edi::fhir::cents(&i["net"]["value"]).unwrap())
            .sum();
        claim["item"] = json!(items);
        claim["total"] = json!({"value": format!("{}.{:02}", total / 100, total % 100).parse::<serde_json::Number>().unwrap()});
        match n % 5 {
            1 => {
                claim["related"] = json!([{"relationship": {"coding": [{"code": "prior"}]}, "reference": {"value": format!("ICN{n}")}}])
            }
            2 => {
                claim["related"] = json!([{"relationship": {"coding": [{"code": "prior"}]}, "reference": {"value": format!("ICN{n}")}}]);
                claim["status"] = json!("cancelled");
            }
            3 if n % 2 == 1 => {
                claim["insurance"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("preAuthRef");
            }
            _ => {}
        }
        file.push_str(&generated(&bundle, 1000 + n as u32));
    }
    let parsed = edi::parse(file.as_bytes()).unwrap();
    assert_eq!(parsed.interchanges.len(), 30);
    for (_, set) in parsed.sets() {
        let problems = claim837::validate(&parsed.document, set);
        assert!(problems.is_empty(), "{problems:#?}");
    }
    assert_eq!(claim837::to_fhir(&parsed).unwrap().len(), 30);
    pyx12(&file, "suite");
}
