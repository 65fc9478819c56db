//! 999 and TA1 for inbound 837s: accepted, rejected with IK3/IK4 naming segment and
//! element, rejected at the envelope; our 999s read back; pyx12 accepts them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure

use edi::Envelope;
use edi::ack::{acknowledge_837, read_999};
use edi::claim837;
use serde_json::json;

fn ours() -> Envelope {
    Envelope {
        sender_id: "CLEARINGHOUSE".into(),
        receiver_id: "CLINIC01".into(),
        control_number: 555,
        date: "20261201".into(),
        time: "1300".into(),
        usage: 'T',
    }
}

/// An 837P made by our generator from a small claim.
fn inbound() -> String {
    let s = edi::fhir::systems::NPI;
    let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Claim", "id": "c9", "status": "active",
            "patient": {"reference": "Patient/p"}, "provider": {"reference": "Organization/o"},
            "insurance": [{"sequence": 1, "focal": true, "coverage": {"reference": "Coverage/v"}}],
            "diagnosis": [{"sequence": 1, "diagnosisCodeableConcept": {"coding": [{"system": edi::fhir::systems::ICD10CM, "code": "R05.9"}]}}],
            "item": [{"sequence": 1, "productOrService": {"coding": [{"system": edi::fhir::systems::CPT, "code": "99212"}]},
                      "net": {"value": 80}, "diagnosisSequence": [1], "servicedDate": "2026-11-02"}]}},
        {"resource": {"resourceType": "Organization", "id": "o", "name": "Clinic",
            "identifier": [{"system": s, "value": "1234567893"}, {"system": edi::fhir::systems::EIN, "value": "123456789"}],
            "telecom": [{"system": "phone", "value": "5550102000"}],
            "address": [{"line": ["1 Main St"], "city": "Salem", "state": "OR", "postalCode": "973011234"}]}},
        {"resource": {"resourceType": "Organization", "id": "payer", "name": "Payer", "identifier": [{"value": "PAYER1"}]}},
        {"resource": {"resourceType": "Patient", "id": "p", "name": [{"family": "Roe", "given": ["Ann"]}],
            "gender": "female", "birthDate": "1990-01-01",
            "address": [{"line": ["2 Elm St"], "city": "Salem", "state": "OR", "postalCode": "97302"}]}},
        {"resource": {"resourceType": "Coverage", "id": "v", "status": "active", "subscriberId": "M1",
            "beneficiary": {"reference": "Patient/p"}, "payor": [{"reference": "Organization/payer"}]}}]});
    claim837::generate(
        &bundle,
        &Envelope {
            sender_id: "CLINIC01".into(),
            receiver_id: "CLEARINGHOUSE".into(),
            control_number: 321,
            date: "20261201".into(),
            time: "1200".into(),
            usage: 'T',
        },
    )
    .unwrap()
}

fn pyx12_accepts(text: &str, name: &str) {
    if std::process::Command::new("x12valid")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("EDI_REQUIRE_PYX12").is_err(),
            "x12valid is required"
        );
        return;
    }
    let path = std::env::temp_dir().join(format!("edi-ack-{}-{name}.999", std::process::id()));
    std::fs::write(&path, text).unwrap();
    let output = std::process::Command::new("x12valid")
        .arg(&path)
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = std::fs::remove_file(&path);
    assert!(
        report.contains(": OK"),
        "pyx12 rejects the {name} 999:\n{report}\n{text}"
    );
}

#[test]
fn a_sound_837_is_accepted() {
    let ack = acknowledge_837(inbound().as_bytes(), &ours());
    assert!(ack.accepted && ack.envelope_accepted);
    let functional = ack.interchange;
    assert!(
        functional.contains("TA1*000000321*261201*1200*A*000~"),
        "{functional}"
    );
    assert_eq!(functional.matches("ISA*").count(), 1, "one control number");
    assert!(
        functional.contains("AK1*HC*321*005010X222A1~"),
        "{functional}"
    );
    assert!(functional.contains("ST*999*0001*005010X231A1~"));
    assert!(functional.contains("AK2*837*0321*005010X222A1~\nIK5*A~"));
    assert!(functional.contains("AK9*A*1*1*1~"));
    edi::parse(functional.as_bytes()).expect("our acknowledgment parses");
    pyx12_accepts(&functional, "accepted");
    let read = read_999(&edi::parse(functional.as_bytes()).unwrap()).unwrap();
    assert_eq!(read.groups[0].status, "A");
    assert_eq!(read.groups[0].sets[0].status, "A");
}

#[test]
fn errors_are_named_in_ik3_and_ik4() {
    let text = inbound()
        .replace("CLM*c9*80*", "CLM*c9*95*")
        .replace("DTP*472*D8*20261102~", "DTP*472*D8*20261302~");
    let ack = acknowledge_837(text.as_bytes(), &ours());
    assert!(!ack.accepted && ack.envelope_accepted);
    let functional = ack.interchange;
    assert!(functional.contains("*A*000~"), "the envelope is fine");
    let clm = text
        .lines()
        .skip(2)
        .position(|l| l.starts_with("CLM*"))
        .unwrap()
        + 1;
    assert!(
        functional.contains(&format!("IK3*CLM*{clm}*2300*8~\nIK4*2**I12*95~")),
        "{functional}"
    );
    assert!(
        functional.contains("IK3*DTP*") && functional.contains("*2400*8~\nIK4*3**8*20261302~"),
        "{functional}"
    );
    assert!(functional.contains("IK5*R*5~"));
    assert!(functional.contains("AK9*R*1*1*0~"));
    pyx12_accepts(&functional, "rejected");
    let read = read_999(&edi::parse(functional.as_bytes()).unwrap()).unwrap();
    let set = &read.groups[0].sets[0];
    assert_eq!(set.status, "R");
    assert!(
        set.errors
            .iter()
            .any(|e| e.contains("CLM") && e.contains("I12")),
        "{:?}",
        set.errors
    );
}

#[test]
fn a_broken_envelope_is_rejected_by_ta1() {
    let text = inbound().replace("IEA*1*000000321~", "IEA*1*000000999~");
    let ack = acknowledge_837(text.as_bytes(), &ours());
    assert!(!ack.accepted && !ack.envelope_accepted);
    assert!(
        !ack.interchange.contains("GS*"),
        "no 999 after a rejected envelope"
    );
    assert!(
        ack.interchange.contains("TA1*000000321*261201*1200*R*001~"),
        "{}",
        ack.interchange
    );
    edi::parse(ack.interchange.as_bytes()).expect("a lone TA1 parses");
    let garbage = acknowledge_837(b"hello", &ours());
    assert!(
        garbage.interchange.contains("*R*"),
        "{}",
        garbage.interchange
    );
}

/// Two functional groups in: one 999 per group, in one group of ours.
#[test]
fn each_group_gets_its_999() {
    let one = inbound();
    let lines: Vec<&str> = one.lines().collect();
    let group: Vec<&str> = lines[1..lines.len() - 1].to_vec();
    let second: Vec<String> = group
        .iter()
        .map(|l| {
            l.replace(
                "GS*HC*CLINIC01*CLEARINGHOUSE*20261201*1200*321*",
                "GS*HC*CLINIC01*CLEARINGHOUSE*20261201*1200*322*",
            )
            .replace("GE*1*321~", "GE*1*322~")
        })
        .collect();
    let text = format!(
        "{}\n{}\n{}\n{}\n",
        lines[0],
        group.join("\n"),
        second.join("\n"),
        lines[lines.len() - 1].replace("IEA*1*", "IEA*2*")
    );
    let ack = acknowledge_837(text.as_bytes(), &ours());
    assert!(ack.accepted, "{}", ack.interchange);
    assert_eq!(ack.interchange.matches("ST*999*").count(), 2);
    assert!(ack.interchange.contains("GE*2*555~"), "{}", ack.interchange);
    assert!(ack.interchange.contains("AK1*HC*321*") && ack.interchange.contains("AK1*HC*322*"));
    let read = read_999(&edi::parse(ack.interchange.as_bytes()).unwrap()).unwrap();
    assert_eq!(read.groups.len(), 2);
    pyx12_accepts(&ack.interchange, "two-groups");
}

/// Wrong counts and control numbers in a group's or set's trailer are reported in the 999,
/// not by rejecting the interchange.
#[test]
fn trailer_errors_are_reported_in_the_999() {
    let text = inbound();
    let se = text
        .lines()
        .find(|l| l.starts_with("SE*"))
        .unwrap()
        .to_owned();
    let wrong_count = text.replace(&se, "SE*3*0321~");
    let ack = acknowledge_837(wrong_count.as_bytes(), &ours());
    assert!(ack.envelope_accepted && !ack.accepted);
    assert!(ack.interchange.contains("*A*000~"), "{}", ack.interchange);
    assert!(
        ack.interchange
            .contains("AK2*837*0321*005010X222A1~\nIK5*R*4~"),
        "{}",
        ack.interchange
    );
    assert!(
        ack.interchange.contains("AK9*R*1*1*0~"),
        "{}",
        ack.interchange
    );
    assert!(
        edi::parse(wrong_count.as_bytes()).is_err(),
        "a strict reading refuses it"
    );
    pyx12_accepts(&ack.interchange, "set-trailer");

    let wrong_group = text.replace("GE*1*321~", "GE*1*999~");
    let ack = acknowledge_837(wrong_group.as_bytes(), &ours());
    assert!(ack.envelope_accepted && !ack.accepted);
    assert!(
        ack.interchange.contains("AK9*R*1*1*1*4~"),
        "{}",
        ack.interchange
    );
}
