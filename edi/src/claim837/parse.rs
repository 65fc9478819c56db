//! 837P back to FHIR: per claim (2300 loop), a collection Bundle with the Claim, the
//! Patient, the Coverages, the billing provider and payer Organizations (a billing
//! provider that is a person becomes a Practitioner), the rendering Practitioner and the
//! facility Location, the exact inverse of `generate` for every element it writes.
//!
//! Resource ids are derived from the X12 ids (NPI, payer id, member id, CLM01), so parsing
//! the same claim twice gives the same resources.

use serde_json::{Map, Value, json};

use super::drug;
use crate::error::EdiError;
use crate::fhir::{self, systems};
use crate::loops::{self, Loop};
use crate::syntax::{Document, Segment};
use crate::{Parsed, TransactionSet};

/// Every claim of every 837P transaction set of a parsed input, as Bundles.
pub fn to_fhir(parsed: &Parsed) -> Result<Vec<Value>, EdiError> {
    let mut bundles = Vec::new();
    for (_, set) in parsed.sets() {
        let st = parsed.document.segment(set.st);
        if st.element(1) != "837" {
            return Err(st.element_error(1, format!("a {} is not an 837", st.element(1))));
        }
        bundles.extend(set_to_fhir(&parsed.document, set)?);
    }
    Ok(bundles)
}

/// An id made of the characters FHIR allows, at most 64.
fn id(prefix: &str, value: &str) -> String {
    let clean: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut id = format!("{prefix}-{clean}");
    id.truncate(64);
    id
}

fn required<'d>(
    document: &'d Document,
    within: &Loop,
    segment: &str,
    qualifier: Option<&str>,
    near: Segment<'_>,
) -> Result<Segment<'d>, EdiError> {
    within.get(document, segment, qualifier).ok_or_else(|| {
        near.error(format!(
            "loop {} has no {segment}{} segment",
            within.id,
            qualifier.map(|q| format!("*{q}")).unwrap_or_default()
        ))
    })
}

fn first_segment<'d>(document: &'d Document, l: &Loop) -> Segment<'d> {
    document.segment(l.segments[0])
}

/// A party's resource from its NM1 loop (NM1, N3, N4, DMG, REF).
fn party(document: &Document, l: &Loop, resource_type: &str, id_value: &str) -> Value {
    let nm1 = first_segment(document, l);
    let mut resource = Map::new();
    resource.insert("resourceType".into(), json!(resource_type));
    resource.insert(
        "id".into(),
        json!(id(&resource_type.to_ascii_lowercase()[..3], id_value)),
    );
    let mut identifiers = Vec::new();
    match nm1.element(8) {
        "XX" => identifiers.push(json!({"system": systems::NPI, "value": nm1.element(9)})),
        "PI" => identifiers.push(json!({"system": systems::PAYER_ID, "value": nm1.element(9)})),
        _ => {}
    }
    if let Some(tax) = l.get(document, "REF", Some("EI")) {
        identifiers.push(json!({"system": systems::EIN, "value": tax.element(2)}));
    } else if let Some(ssn) = l.get(document, "REF", Some("SY")) {
        identifiers.push(json!({"system": systems::SSN, "value": ssn.element(2)}));
    }
    if !identifiers.is_empty() {
        resource.insert("identifier".into(), json!(identifiers));
    }
    if nm1.element(2) == "2" || resource_type == "Organization" || resource_type == "Location" {
        resource.insert("name".into(), json!(nm1.element(3)));
    } else {
        let mut name = Map::new();
        name.insert("family".into(), json!(nm1.element(3)));
        let given: Vec<&str> = [nm1.element(4), nm1.element(5)]
            .into_iter()
            .filter(|g| !g.is_empty())
            .collect();
        if !given.is_empty() {
            name.insert("given".into(), json!(given));
        }
        resource.insert("name".into(), json!([name]));
    }
    if let (Some(n3), Some(n4)) = (l.get(document, "N3", None), l.get(document, "N4", None)) {
        let address = fhir::address_json(
            &[n3.element(1), n3.element(2)],
            n4.element(1),
            n4.element(2),
            n4.element(3),
        );
        resource.insert(
            "address".into(),
            if resource_type == "Location" {
                address
            } else {
                json!([address])
            },
        );
    }
    if let Some(dmg) = l.get(document, "DMG", None) {
        if let Some(date) = fhir::fhir_date(dmg.element(2)) {
            resource.insert("birthDate".into(), json!(date));
        }
        let gender = match dmg.element(3) {
            "F" => "female",
            "M" => "male",
            _ => "unknown",
        };
        resource.insert("gender".into(), json!(gender));
    }
    Value::Object(resource)
}

/// A payer's Organization from its NM1*PR loop (2010BB or 2330B).
fn payer_of(document: &Document, payer_loop: &Loop) -> Value {
    let nm1 = first_segment(document, payer_loop);
    party(
        document,
        payer_loop,
        "Organization",
        &format!("payer-{}", nm1.element(9)),
    )
}

fn reference(resource: &Value) -> Value {
    json!({"reference": format!(
        "{}/{}",
        resource["resourceType"].as_str().unwrap_or_default(),
        resource["id"].as_str().unwrap_or_default()
    )})
}

fn set_to_fhir(document: &Document, set: &TransactionSet) -> Result<Vec<Value>, EdiError> {
    let tree = loops::build(document, set.body(), loops::LOOPS_837P);
    let st = document.segment(set.st);
    let mut bundles = Vec::new();
    let submitter = tree.first("1000A");
    let submitter_phone = submitter
        .and_then(|l| l.get(document, "PER", Some("IC")))
        .map(|per| (per.element(2).to_owned(), per.element(4).to_owned()));
    for billing_loop in tree.loops("2000A") {
        let hl = first_segment(document, billing_loop);
        let name_loop = billing_loop
            .first("2010AA")
            .ok_or_else(|| hl.error("loop 2000A has no billing provider (2010AA)"))?;
        let nm1 = first_segment(document, name_loop);
        let billing_type = if nm1.element(2) == "1" {
            "Practitioner"
        } else {
            "Organization"
        };
        let mut billing = party(document, name_loop, billing_type, nm1.element(9));
        if let Some(prv) = billing_loop
            .get(document, "PRV", Some("BI"))
            .filter(|_| billing_type == "Practitioner")
        {
            billing["qualification"] = json!([{"code": {"coding": [{"system": systems::TAXONOMY, "code": prv.element(3)}]}}]);
        }
        if let Some((contact, phone)) = &submitter_phone {
            billing["telecom"] = json!([{"system": "phone", "value": phone}]);
            if billing_type == "Organization" && !contact.is_empty() {
                billing["contact"] = json!([{"name": {"text": contact}}]);
            }
        }
        for subscriber_loop in billing_loop.loops("2000B") {
            let hl = first_segment(document, subscriber_loop);
            let sbr = required(document, subscriber_loop, "SBR", None, hl)?;
            let member_loop = subscriber_loop
                .first("2010BA")
                .ok_or_else(|| hl.error("loop 2000B has no subscriber (2010BA)"))?;
            let payer_loop = subscriber_loop
                .first("2010BB")
                .ok_or_else(|| hl.error("loop 2000B has no payer (2010BB)"))?;
            let member_nm1 = first_segment(document, member_loop);
            let payer = payer_of(document, payer_loop);
            let subscriber = party(document, member_loop, "Patient", member_nm1.element(9));
            // Claims sit in 2000B (patient = subscriber) or in its 2000C loops.
            let mut claim_parents: Vec<(&Loop, Option<(Value, &str)>)> = Vec::new();
            if subscriber_loop.first("2300").is_some() {
                claim_parents.push((subscriber_loop, None));
            }
            for patient_loop in subscriber_loop.loops("2000C") {
                let hl = first_segment(document, patient_loop);
                let pat = required(document, patient_loop, "PAT", None, hl)?;
                let name_loop = patient_loop
                    .first("2010CA")
                    .ok_or_else(|| hl.error("loop 2000C has no patient (2010CA)"))?;
                let nm1 = first_segment(document, name_loop);
                let key = format!(
                    "{}-{}-{}",
                    member_nm1.element(9),
                    nm1.element(3),
                    nm1.element(4)
                );
                let patient = party(document, name_loop, "Patient", &key);
                claim_parents.push((patient_loop, Some((patient, pat.element(1)))));
            }
            for (parent, dependent) in claim_parents {
                let (patient, relationship) = match &dependent {
                    Some((patient, code)) => (patient.clone(), relationship_from_pat(code)),
                    None => (subscriber.clone(), "self"),
                };
                for claim_loop in parent.loops("2300") {
                    let mut resources = vec![billing.clone(), payer.clone()];
                    let coverage = coverage_of(
                        &sbr,
                        member_nm1.element(9),
                        &patient,
                        dependent.as_ref().map(|_| &subscriber),
                        &payer,
                        relationship,
                        &format!("{}-1", member_nm1.element(9)),
                    );
                    if dependent.is_some() {
                        resources.push(subscriber.clone());
                    }
                    resources.push(patient.clone());
                    let around = Around {
                        billing: &billing,
                        patient: &patient,
                        coverage: &coverage,
                        sbr01: sbr.element(1),
                    };
                    let claim = claim(document, claim_loop, &st, &around, &mut resources)?;
                    resources.push(coverage);
                    resources.insert(0, claim);
                    bundles.push(json!({
                        "resourceType": "Bundle",
                        "type": "collection",
                        "entry": resources.into_iter().map(|r| json!({"resource": r})).collect::<Vec<_>>(),
                    }));
                }
            }
        }
    }
    Ok(bundles)
}

fn relationship_from_pat(code: &str) -> &'static str {
    match code {
        "01" => "spouse",
        "19" => "child",
        "53" => "common",
        "21" => "injured",
        _ => "other",
    }
}

fn relationship_from_sbr(code: &str) -> &'static str {
    match code {
        "18" => "self",
        other => relationship_from_pat(other),
    }
}

fn sequence_of(sbr01: &str) -> i64 {
    match sbr01 {
        "P" => 1,
        "S" => 2,
        "T" => 3,
        "A" => 4,
        "B" => 5,
        "C" => 6,
        "D" => 7,
        "E" => 8,
        "F" => 9,
        "G" => 10,
        "H" => 11,
        _ => 12,
    }
}

#[allow(clippy::too_many_arguments)]
fn coverage_of(
    sbr: &Segment,
    member_id: &str,
    patient: &Value,
    subscriber: Option<&Value>,
    payer: &Value,
    relationship: &str,
    key: &str,
) -> Value {
    let mut coverage = json!({
        "resourceType": "Coverage",
        "id": id("cov", key),
        "status": "active",
        "type": {"coding": [{"system": systems::CLAIM_FILING, "code": sbr.element(9)}]},
        "subscriberId": member_id,
        "beneficiary": reference(patient),
        "relationship": {"coding": [{"system": systems::SUBSCRIBER_RELATIONSHIP, "code": relationship}]},
        "payor": [reference(payer)],
    });
    if let Some(subscriber) = subscriber {
        coverage["subscriber"] = reference(subscriber);
    }
    if !sbr.element(3).is_empty() {
        coverage["class"] = json!([{
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/coverage-class", "code": "group"}]},
            "value": sbr.element(3),
        }]);
    }
    coverage
}

/// What a claim refers to, read from the loops above its 2300.
struct Around<'a> {
    billing: &'a Value,
    patient: &'a Value,
    coverage: &'a Value,
    /// SBR01 of 2000B: the payer's responsibility sequence (P, S, T, ...).
    sbr01: &'a str,
}

fn claim(
    document: &Document,
    claim_loop: &Loop,
    st: &Segment,
    around: &Around,
    resources: &mut Vec<Value>,
) -> Result<Value, EdiError> {
    let Around {
        billing,
        patient,
        coverage,
        sbr01,
    } = *around;
    let clm = first_segment(document, claim_loop);
    let control = clm.element(1);
    let total = fhir::parse_cents(clm.element(2))
        .ok_or_else(|| clm.element_error(2, format!("'{}' is not an amount", clm.element(2))))?;
    let place = clm.component(5, 1);
    let frequency = clm.component(5, 3);
    let mut claim = json!({
        "resourceType": "Claim",
        "id": id("clm", control),
        "identifier": [{"system": systems::PATIENT_CONTROL_NUMBER, "value": control}],
        "status": if frequency == "8" { "cancelled" } else { "active" },
        "type": {"coding": [{"system": systems::CLAIM_TYPE, "code": "professional"}]},
        "use": "claim",
        "patient": reference(patient),
        "created": fhir::fhir_date(document.segment(st.position).element(4)).unwrap_or_default(),
        "provider": reference(billing),
        "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal"}]},
        "total": fhir::money(total),
    });
    if claim["created"] == "" {
        claim.as_object_mut().map(|c| c.remove("created"));
    }
    if let Some(f8) = claim_loop.get(document, "REF", Some("F8")) {
        claim["related"] = json!([{
            "relationship": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/related-claim-relationship", "code": "prior"}]},
            "reference": {"system": systems::PAYER_CLAIM_NUMBER, "value": f8.element(2)},
        }]);
    }
    let mut insurance = json!({
        "sequence": sequence_of(sbr01),
        "focal": true,
        "coverage": reference(coverage),
    });
    if let Some(g1) = claim_loop.get(document, "REF", Some("G1")) {
        insurance["preAuthRef"] = json!([g1.element(2)]);
    }
    let mut insurances = vec![insurance];
    // Diagnoses.
    let hi = required(document, claim_loop, "HI", None, clm)?;
    let mut diagnoses = Vec::new();
    for (n, element) in hi.elements.iter().enumerate() {
        let mut parts = element.split(hi.delimiters.component as char);
        let qualifier = parts.next().unwrap_or_default();
        let code = parts.next().unwrap_or_default();
        if !matches!(qualifier, "ABK" | "ABF" | "BK" | "BF") || code.is_empty() {
            return Err(hi.element_error(
                n + 1,
                format!("'{element}' is not an ICD-10-CM diagnosis (ABK/ABF)"),
            ));
        }
        let mut diagnosis = json!({
            "sequence": n + 1,
            "diagnosisCodeableConcept": {"coding": [{"system": systems::ICD10CM, "code": fhir::icd10_from_x12(code)}]},
        });
        if n == 0 {
            diagnosis["type"] = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/ex-diagnosistype", "code": "principal"}]}]);
        }
        diagnoses.push(diagnosis);
    }
    claim["diagnosis"] = json!(diagnoses);
    // Rendering provider and facility.
    if let Some(rendering_loop) = claim_loop.first("2310B") {
        let nm1 = first_segment(document, rendering_loop);
        let mut practitioner = party(document, rendering_loop, "Practitioner", nm1.element(9));
        if let Some(prv) = rendering_loop.get(document, "PRV", Some("PE")) {
            practitioner["qualification"] = json!([{"code": {"coding": [{"system": systems::TAXONOMY, "code": prv.element(3)}]}}]);
        }
        claim["careTeam"] = json!([{
            "sequence": 1,
            "provider": reference(&practitioner),
            "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claimcareteamrole", "code": "primary"}]},
        }]);
        resources.push(practitioner);
    }
    if let Some(facility_loop) = claim_loop.first("2310C") {
        let nm1 = first_segment(document, facility_loop);
        let key = if nm1.element(9).is_empty() {
            control
        } else {
            nm1.element(9)
        };
        let location = party(document, facility_loop, "Location", key);
        claim["facility"] = reference(&location);
        resources.push(location);
    }
    // Other insurance (2320/2330).
    for (n, other) in claim_loop.loops("2320").enumerate() {
        let sbr = first_segment(document, other);
        let member = other
            .first("2330A")
            .ok_or_else(|| sbr.error("loop 2320 has no 2330A"))?;
        let payer_loop = other
            .first("2330B")
            .ok_or_else(|| sbr.error("loop 2320 has no 2330B"))?;
        let member_nm1 = first_segment(document, member);
        let payer = payer_of(document, payer_loop);
        let relationship = relationship_from_sbr(sbr.element(2));
        let subscriber = if relationship == "self" {
            None
        } else {
            Some(party(document, member, "Patient", member_nm1.element(9)))
        };
        let other_coverage = coverage_of(
            &sbr,
            member_nm1.element(9),
            patient,
            subscriber.as_ref(),
            &payer,
            relationship,
            &format!("{}-{}", member_nm1.element(9), n + 2),
        );
        insurances.push(json!({
            "sequence": sequence_of(sbr.element(1)),
            "focal": false,
            "coverage": reference(&other_coverage),
        }));
        resources.extend(subscriber);
        resources.push(payer);
        resources.push(other_coverage);
    }
    claim["insurance"] = json!(insurances);
    // Lines.
    let mut items = Vec::new();
    for (n, line) in claim_loop.loops("2400").enumerate() {
        let lx = first_segment(document, line);
        let sv1 = required(document, line, "SV1", None, lx)?;
        items.push(item(document, line, &sv1, n + 1, place, hi.elements.len())?);
    }
    if items.is_empty() {
        return Err(clm.error("the claim has no service line (2400)"));
    }
    claim["item"] = json!(items);
    Ok(claim)
}

/// A service line (2400) as a Claim.item: SV1 (SV101-7, the description, as
/// productOrService.text), DTP*472, REF*6R, and its drug (2410) as the item's detail.
fn item(
    document: &Document,
    line: &Loop,
    sv1: &Segment,
    sequence: usize,
    claim_place: &str,
    diagnoses: usize,
) -> Result<Value, EdiError> {
    let (qualifier, code) = (sv1.component(1, 1), sv1.component(1, 2));
    if qualifier != "HC" || code.is_empty() {
        return Err(sv1
            .element_error(1, "SV101 is HC and a CPT/HCPCS code")
            .at_component(1));
    }
    // SV101-3 to -6 are the modifiers; SV101-7 is the description, not a modifier.
    let modifiers: Vec<Value> = (3..=6)
        .map(|c| sv1.component(1, c))
        .filter(|m| !m.is_empty())
        .map(|m| json!({"coding": [{"system": systems::CPT_MODIFIER, "code": m}]}))
        .collect();
    let charge = fhir::parse_cents(sv1.element(2))
        .ok_or_else(|| sv1.element_error(2, format!("'{}' is not an amount", sv1.element(2))))?;
    let system = if code.starts_with(|c: char| c.is_ascii_alphabetic()) {
        systems::HCPCS
    } else {
        systems::CPT
    };
    let place = if sv1.element(5).is_empty() {
        claim_place
    } else {
        sv1.element(5)
    };
    let mut service = json!({"coding": [{"system": system, "code": code}]});
    let description = sv1.component(1, 7);
    if !description.is_empty() {
        service["text"] = json!(description);
    }
    let mut item = json!({
        "sequence": sequence,
        "productOrService": service,
        "net": fhir::money(charge),
        "locationCodeableConcept": {"coding": [{"system": systems::PLACE_OF_SERVICE, "code": place}]},
    });
    if !modifiers.is_empty() {
        item["modifier"] = json!(modifiers);
    }
    let units = sv1.element(4);
    if !units.is_empty() {
        let number: serde_json::Number = units
            .parse()
            .map_err(|_| sv1.element_error(4, format!("'{units}' is not a quantity")))?;
        item["quantity"] = json!({"value": number});
    }
    let mut pointers = Vec::new();
    for pointer in sv1.components(7) {
        match pointer.parse::<usize>() {
            Ok(p) if (1..=diagnoses).contains(&p) => pointers.push(p),
            _ => {
                return Err(sv1.element_error(
                    7,
                    format!(
                        "'{pointer}' does not point at one of the claim's {diagnoses} diagnoses"
                    ),
                ));
            }
        }
    }
    item["diagnosisSequence"] = json!(pointers);
    if let Some(dtp) = line.get(document, "DTP", Some("472")) {
        match dtp.element(2) {
            "D8" => {
                let date = fhir::fhir_date(dtp.element(3))
                    .ok_or_else(|| dtp.element_error(3, "not a CCYYMMDD date"))?;
                item["servicedDate"] = json!(date);
            }
            "RD8" => {
                let (start, end) = dtp.element(3).split_once('-').unwrap_or_default();
                let (start, end) = fhir::fhir_date(start)
                    .zip(fhir::fhir_date(end))
                    .ok_or_else(|| dtp.element_error(3, "not a CCYYMMDD-CCYYMMDD range"))?;
                item["servicedPeriod"] = json!({"start": start, "end": end});
            }
            other => return Err(dtp.element_error(2, format!("'{other}' is not D8 or RD8"))),
        }
    }
    if let Some(reference) = line.get(document, "REF", Some("6R")) {
        item["extension"] =
            json!([{"url": systems::LINE_CONTROL_EXTENSION, "valueString": reference.element(2)}]);
    }
    if let Some(drug) = line.first("2410") {
        item["detail"] = json!([drug::to_fhir(document, drug)?]);
    }
    Ok(item)
}
