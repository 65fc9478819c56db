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

/// The Bundles of the claims of one 837P set: per billing provider (2000A), per subscriber
/// (2000B).
fn set_to_fhir(document: &Document, set: &TransactionSet) -> Result<Vec<Value>, EdiError> {
    let tree = loops::build(document, set.body(), loops::LOOPS_837P);
    let st = document.segment(set.st);
    let submitter_contact = submitter_contact(document, &tree);
    let mut bundles = Vec::new();
    for billing_loop in tree.loops("2000A") {
        let billing = billing_provider(document, billing_loop, submitter_contact.as_ref())?;
        for subscriber_loop in billing_loop.loops("2000B") {
            bundles.extend(subscriber_claims(document, subscriber_loop, &st, &billing)?);
        }
    }
    Ok(bundles)
}

/// The submitter's contact name and phone (1000A PER*IC): `generate` writes the billing
/// provider's there.
fn submitter_contact(document: &Document, tree: &Loop) -> Option<(String, String)> {
    tree.first("1000A")
        .and_then(|l| l.get(document, "PER", Some("IC")))
        .map(|per| (per.element(2).to_owned(), per.element(4).to_owned()))
}

/// The billing provider of a 2000A loop (2010AA): an Organization, or a Practitioner
/// with its taxonomy (PRV*BI), reached at the submitter's phone and contact.
fn billing_provider(
    document: &Document,
    billing_loop: &Loop,
    submitter_contact: Option<&(String, String)>,
) -> Result<Value, EdiError> {
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
        billing["qualification"] =
            json!([{"code": {"coding": [{"system": systems::TAXONOMY, "code": prv.element(3)}]}}]);
    }
    if let Some((contact, phone)) = submitter_contact {
        billing["telecom"] = json!([{"system": "phone", "value": phone}]);
        if billing_type == "Organization" && !contact.is_empty() {
            billing["contact"] = json!([{"name": {"text": contact}}]);
        }
    }
    Ok(billing)
}

/// What a subscriber loop (2000B) gives each of its claims.
struct Subscription<'d> {
    sbr: Segment<'d>,
    /// NM109 of 2010BA.
    member_id: &'d str,
    subscriber: Value,
    payer: Value,
}

/// A patient who is not the subscriber (2000C), with PAT01.
struct Dependent<'d> {
    patient: Value,
    pat01: &'d str,
}

/// The Bundles of the claims of a subscriber loop (2000B): its own claims (the patient is
/// the subscriber) and those of its dependents (2000C).
fn subscriber_claims(
    document: &Document,
    subscriber_loop: &Loop,
    st: &Segment,
    billing: &Value,
) -> Result<Vec<Value>, EdiError> {
    let subscription = subscription(document, subscriber_loop)?;
    let mut bundles = Vec::new();
    for (parent, dependent) in claim_parents(document, subscriber_loop, subscription.member_id)? {
        for claim_loop in parent.loops("2300") {
            bundles.push(claim_bundle(
                document,
                claim_loop,
                st,
                billing,
                &subscription,
                dependent.as_ref(),
            )?);
        }
    }
    Ok(bundles)
}

/// A subscriber loop's SBR, subscriber (2010BA) and payer (2010BB), all required.
fn subscription<'d>(
    document: &'d Document,
    subscriber_loop: &Loop,
) -> Result<Subscription<'d>, EdiError> {
    let hl = first_segment(document, subscriber_loop);
    let sbr = required(document, subscriber_loop, "SBR", None, hl)?;
    let member_loop = subscriber_loop
        .first("2010BA")
        .ok_or_else(|| hl.error("loop 2000B has no subscriber (2010BA)"))?;
    let payer_loop = subscriber_loop
        .first("2010BB")
        .ok_or_else(|| hl.error("loop 2000B has no payer (2010BB)"))?;
    let member_id = first_segment(document, member_loop).element(9);
    let payer = payer_of(document, payer_loop);
    let subscriber = party(document, member_loop, "Patient", member_id);
    Ok(Subscription {
        sbr,
        member_id,
        subscriber,
        payer,
    })
}

/// The loops claims sit in: the subscriber loop (2000B) itself, when it holds claims, and
/// each of its patient loops (2000C) with its dependent.
fn claim_parents<'l, 'd>(
    document: &'d Document,
    subscriber_loop: &'l Loop,
    member_id: &str,
) -> Result<Vec<(&'l Loop, Option<Dependent<'d>>)>, EdiError> {
    let mut parents = Vec::new();
    if subscriber_loop.first("2300").is_some() {
        parents.push((subscriber_loop, None));
    }
    for patient_loop in subscriber_loop.loops("2000C") {
        let hl = first_segment(document, patient_loop);
        let pat = required(document, patient_loop, "PAT", None, hl)?;
        let name_loop = patient_loop
            .first("2010CA")
            .ok_or_else(|| hl.error("loop 2000C has no patient (2010CA)"))?;
        let nm1 = first_segment(document, name_loop);
        let key = format!("{member_id}-{}-{}", nm1.element(3), nm1.element(4));
        let patient = party(document, name_loop, "Patient", &key);
        parents.push((
            patient_loop,
            Some(Dependent {
                patient,
                pat01: pat.element(1),
            }),
        ));
    }
    Ok(parents)
}

/// One claim (2300) as a collection Bundle: the Claim first, then the billing provider,
/// the payer, the subscriber (when not the patient), the patient, what the claim itself
/// names, and the focal Coverage.
fn claim_bundle(
    document: &Document,
    claim_loop: &Loop,
    st: &Segment,
    billing: &Value,
    subscription: &Subscription,
    dependent: Option<&Dependent>,
) -> Result<Value, EdiError> {
    let (patient, relationship) = match dependent {
        Some(dependent) => (&dependent.patient, relationship_from_pat(dependent.pat01)),
        None => (&subscription.subscriber, "self"),
    };
    let mut resources = vec![billing.clone(), subscription.payer.clone()];
    let coverage = coverage_of(
        &subscription.sbr,
        subscription.member_id,
        patient,
        dependent.map(|_| &subscription.subscriber),
        &subscription.payer,
        relationship,
        &format!("{}-1", subscription.member_id),
    );
    if dependent.is_some() {
        resources.push(subscription.subscriber.clone());
    }
    resources.push(patient.clone());
    let around = Around {
        billing,
        patient,
        coverage: &coverage,
        sbr01: subscription.sbr.element(1),
    };
    let claim = claim(document, claim_loop, st, &around, &mut resources)?;
    resources.push(coverage);
    resources.insert(0, claim);
    Ok(json!({
        "resourceType": "Bundle",
        "type": "collection",
        "entry": resources.into_iter().map(|r| json!({"resource": r})).collect::<Vec<_>>(),
    }))
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

/// The Claim of a claim loop (2300); what it names besides the parties `around` (the
/// rendering provider, facility, other payers and their Coverages) goes to `resources`.
fn claim(
    document: &Document,
    claim_loop: &Loop,
    st: &Segment,
    around: &Around,
    resources: &mut Vec<Value>,
) -> Result<Value, EdiError> {
    let clm = first_segment(document, claim_loop);
    let mut claim = claim_of_clm(document, &clm, st, around)?;
    if let Some(f8) = claim_loop.get(document, "REF", Some("F8")) {
        claim["related"] = json!([{
            "relationship": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/related-claim-relationship", "code": "prior"}]},
            "reference": {"system": systems::PAYER_CLAIM_NUMBER, "value": f8.element(2)},
        }]);
    }
    let hi = required(document, claim_loop, "HI", None, clm)?;
    claim["diagnosis"] = json!(diagnoses(&hi)?);
    if let Some(rendering_loop) = claim_loop.first("2310B") {
        let practitioner = rendering_provider(document, rendering_loop);
        claim["careTeam"] = json!([{
            "sequence": 1,
            "provider": reference(&practitioner),
            "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claimcareteamrole", "code": "primary"}]},
        }]);
        resources.push(practitioner);
    }
    if let Some(facility_loop) = claim_loop.first("2310C") {
        let location = facility(document, facility_loop, clm.element(1));
        claim["facility"] = reference(&location);
        resources.push(location);
    }
    let mut insurances = vec![focal_insurance(document, claim_loop, around)];
    for (n, other) in claim_loop.loops("2320").enumerate() {
        insurances.push(other_insurance(
            document,
            other,
            n,
            around.patient,
            resources,
        )?);
    }
    claim["insurance"] = json!(insurances);
    claim["item"] = json!(items(document, claim_loop, &clm, hi.elements.len())?);
    Ok(claim)
}

/// The Claim as CLM gives it: CLM01 its identifier (and id), CLM02 its total, CLM05-3 its
/// status (8, a void, is cancelled); created is the date of ST's BHT.
fn claim_of_clm(
    document: &Document,
    clm: &Segment,
    st: &Segment,
    around: &Around,
) -> Result<Value, EdiError> {
    let control = clm.element(1);
    let total = fhir::parse_cents(clm.element(2))
        .ok_or_else(|| clm.element_error(2, format!("'{}' is not an amount", clm.element(2))))?;
    let frequency = clm.component(5, 3);
    let mut claim = json!({
        "resourceType": "Claim",
        "id": id("clm", control),
        "identifier": [{"system": systems::PATIENT_CONTROL_NUMBER, "value": control}],
        "status": if frequency == "8" { "cancelled" } else { "active" },
        "type": {"coding": [{"system": systems::CLAIM_TYPE, "code": "professional"}]},
        "use": "claim",
        "patient": reference(around.patient),
        "created": fhir::fhir_date(document.segment(st.position).element(4)).unwrap_or_default(),
        "provider": reference(around.billing),
        "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal"}]},
        "total": fhir::money(total),
    });
    if claim["created"] == "" {
        claim.as_object_mut().map(|c| c.remove("created"));
    }
    Ok(claim)
}

/// Claim.diagnosis from HI, in order: the first (ABK) is the principal one.
fn diagnoses(hi: &Segment) -> Result<Vec<Value>, EdiError> {
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
    Ok(diagnoses)
}

/// The rendering provider (2310B) as a Practitioner, with its taxonomy (PRV*PE).
fn rendering_provider(document: &Document, rendering_loop: &Loop) -> Value {
    let nm1 = first_segment(document, rendering_loop);
    let mut practitioner = party(document, rendering_loop, "Practitioner", nm1.element(9));
    if let Some(prv) = rendering_loop.get(document, "PRV", Some("PE")) {
        practitioner["qualification"] =
            json!([{"code": {"coding": [{"system": systems::TAXONOMY, "code": prv.element(3)}]}}]);
    }
    practitioner
}

/// The service facility (2310C) as a Location, its id from its NPI, else from CLM01
/// (`control`).
fn facility(document: &Document, facility_loop: &Loop, control: &str) -> Value {
    let nm1 = first_segment(document, facility_loop);
    let key = if nm1.element(9).is_empty() {
        control
    } else {
        nm1.element(9)
    };
    party(document, facility_loop, "Location", key)
}

/// The Claim.insurance of the 2000B payer: the focal one, with the prior authorization
/// (REF*G1) when there is one.
fn focal_insurance(document: &Document, claim_loop: &Loop, around: &Around) -> Value {
    let mut insurance = json!({
        "sequence": sequence_of(around.sbr01),
        "focal": true,
        "coverage": reference(around.coverage),
    });
    if let Some(g1) = claim_loop.get(document, "REF", Some("G1")) {
        insurance["preAuthRef"] = json!([g1.element(2)]);
    }
    insurance
}

/// The `n`th other insurance (2320/2330A/2330B) as a Claim.insurance; its subscriber
/// (when not the patient), payer and Coverage go to `resources`.
fn other_insurance(
    document: &Document,
    other: &Loop,
    n: usize,
    patient: &Value,
    resources: &mut Vec<Value>,
) -> Result<Value, EdiError> {
    let sbr = first_segment(document, other);
    let member = other
        .first("2330A")
        .ok_or_else(|| sbr.error("loop 2320 has no 2330A"))?;
    let payer_loop = other
        .first("2330B")
        .ok_or_else(|| sbr.error("loop 2320 has no 2330B"))?;
    let member_id = first_segment(document, member).element(9);
    let payer = payer_of(document, payer_loop);
    let relationship = relationship_from_sbr(sbr.element(2));
    let subscriber = if relationship == "self" {
        None
    } else {
        Some(party(document, member, "Patient", member_id))
    };
    let coverage = coverage_of(
        &sbr,
        member_id,
        patient,
        subscriber.as_ref(),
        &payer,
        relationship,
        &format!("{member_id}-{}", n + 2),
    );
    let insurance = json!({
        "sequence": sequence_of(sbr.element(1)),
        "focal": false,
        "coverage": reference(&coverage),
    });
    resources.extend(subscriber);
    resources.push(payer);
    resources.push(coverage);
    Ok(insurance)
}

/// Claim.item from the service lines (2400), of which there must be at least one;
/// `diagnoses` is how many HI holds.
fn items(
    document: &Document,
    claim_loop: &Loop,
    clm: &Segment,
    diagnoses: usize,
) -> Result<Vec<Value>, EdiError> {
    let place = clm.component(5, 1);
    let mut items = Vec::new();
    for (n, line) in claim_loop.loops("2400").enumerate() {
        let lx = first_segment(document, line);
        let sv1 = required(document, line, "SV1", None, lx)?;
        items.push(item(document, line, &sv1, n + 1, place, diagnoses)?);
    }
    if items.is_empty() {
        return Err(clm.error("the claim has no service line (2400)"));
    }
    Ok(items)
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
    let service = product_or_service(sv1)?;
    let modifiers = modifiers(sv1);
    let charge = fhir::parse_cents(sv1.element(2))
        .ok_or_else(|| sv1.element_error(2, format!("'{}' is not an amount", sv1.element(2))))?;
    let place = if sv1.element(5).is_empty() {
        claim_place
    } else {
        sv1.element(5)
    };
    let mut item = json!({
        "sequence": sequence,
        "productOrService": service,
        "net": fhir::money(charge),
        "locationCodeableConcept": {"coding": [{"system": systems::PLACE_OF_SERVICE, "code": place}]},
    });
    if !modifiers.is_empty() {
        item["modifier"] = json!(modifiers);
    }
    if let Some(quantity) = quantity(sv1)? {
        item["quantity"] = json!({"value": quantity});
    }
    item["diagnosisSequence"] = json!(diagnosis_pointers(sv1, diagnoses)?);
    if let Some(dtp) = line.get(document, "DTP", Some("472")) {
        let (element, date) = serviced(&dtp)?;
        item[element] = date;
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

/// productOrService from SV101: `HC` and a code, CPT when it starts with a digit, else
/// HCPCS, with SV101-7 (the description) as its text.
fn product_or_service(sv1: &Segment) -> Result<Value, EdiError> {
    let (qualifier, code) = (sv1.component(1, 1), sv1.component(1, 2));
    if qualifier != "HC" || code.is_empty() {
        return Err(sv1
            .element_error(1, "SV101 is HC and a CPT/HCPCS code")
            .at_component(1));
    }
    let system = if code.starts_with(|c: char| c.is_ascii_alphabetic()) {
        systems::HCPCS
    } else {
        systems::CPT
    };
    let mut service = json!({"coding": [{"system": system, "code": code}]});
    let description = sv1.component(1, 7);
    if !description.is_empty() {
        service["text"] = json!(description);
    }
    Ok(service)
}

/// The item's modifiers: SV101-3 to -6 (SV101-7 is the description, not a modifier).
fn modifiers(sv1: &Segment) -> Vec<Value> {
    (3..=6)
        .map(|c| sv1.component(1, c))
        .filter(|m| !m.is_empty())
        .map(|m| json!({"coding": [{"system": systems::CPT_MODIFIER, "code": m}]}))
        .collect()
}

/// SV104, the units, as a number kept as written; none when the element is empty.
fn quantity(sv1: &Segment) -> Result<Option<serde_json::Number>, EdiError> {
    let units = sv1.element(4);
    if units.is_empty() {
        return Ok(None);
    }
    units
        .parse()
        .map(Some)
        .map_err(|_| sv1.element_error(4, format!("'{units}' is not a quantity")))
}

/// diagnosisSequence from SV107: each pointer names one of the claim's `diagnoses`.
fn diagnosis_pointers(sv1: &Segment, diagnoses: usize) -> Result<Vec<usize>, EdiError> {
    sv1.components(7)
        .map(|pointer| match pointer.parse::<usize>() {
            Ok(p) if (1..=diagnoses).contains(&p) => Ok(p),
            _ => Err(sv1.element_error(
                7,
                format!("'{pointer}' does not point at one of the claim's {diagnoses} diagnoses"),
            )),
        })
        .collect()
}

/// DTP*472 as the item's servicedDate (D8) or servicedPeriod (RD8): the element's name
/// and value.
fn serviced(dtp: &Segment) -> Result<(&'static str, Value), EdiError> {
    match dtp.element(2) {
        "D8" => {
            let date = fhir::fhir_date(dtp.element(3))
                .ok_or_else(|| dtp.element_error(3, "not a CCYYMMDD date"))?;
            Ok(("servicedDate", json!(date)))
        }
        "RD8" => {
            let (start, end) = dtp.element(3).split_once('-').unwrap_or_default();
            let (start, end) = fhir::fhir_date(start)
                .zip(fhir::fhir_date(end))
                .ok_or_else(|| dtp.element_error(3, "not a CCYYMMDD-CCYYMMDD range"))?;
            Ok(("servicedPeriod", json!({"start": start, "end": end})))
        }
        other => Err(dtp.element_error(2, format!("'{other}' is not D8 or RD8"))),
    }
}
