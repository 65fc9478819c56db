//! FHIR Claim (and the resources it references) to an 837P interchange.
//!
//! What is read, where it goes:
//! - Claim.provider (Organization or Practitioner, with an NPI and a tax id): submitter
//!   (1000A, with a phone from its telecom or contact), billing provider (2010AA);
//! - the focal Claim.insurance's Coverage: SBR (sequence, relationship, group from
//!   Coverage.class `group`, claim filing indicator from Coverage.type), subscriber
//!   (2010BA, Coverage.subscriber or the patient, id Coverage.subscriberId), payer
//!   (Coverage.payor, an Organization: receiver 1000B and 2010BB, id from its identifier
//!   `urn:x12:payer-id` or its first);
//! - Claim.patient: 2000C/2010CA when not the subscriber (PAT from Coverage.relationship);
//! - Claim: CLM01 from identifier `urn:x12:clm01` (else the id), CLM02 the sum of the line
//!   charges (Claim.total must agree), CLM05 place of service (first item's
//!   locationCodeableConcept, else 11) and frequency (1; 7 with Claim.related `prior`;
//!   8 when the Claim is cancelled), REF*F8 from Claim.related.reference, REF*G1 from
//!   the focal insurance's preAuthRef, HI from Claim.diagnosis (ICD-10-CM, up to 12);
//! - Claim.careTeam (role primary, else the first): rendering provider 2310B;
//!   Claim.facility (Location): 2310C;
//! - the other Claim.insurance entries: 2320/2330A/2330B;
//! - Claim.item (up to 50): LX, SV1 (CPT/HCPCS with up to 4 modifiers, the description
//!   from productOrService.text in SV101-7, net charge, units, diagnosis pointers),
//!   DTP*472 (servicedDate or servicedPeriod), REF*6R (extension
//!   `urn:x12:line-item-control-number`, else the sequence), and loop 2410 (LIN, CTP,
//!   REF*XZ/VY) from the item's detail coded with an NDC (see `drug`).
//!
//! Missing or inconsistent data is not written as a broken file: `generate` returns every
//! problem found, each naming the FHIR element.

use serde_json::Value;

use super::drug::Drug;
pub use crate::envelope::Envelope;
use crate::fhir::{self, Resources, systems};
use crate::syntax::{Writer, clean, clean_text};

/// A problem that keeps a claim from being written, naming the FHIR element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub element: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.element, self.message)
    }
}

/// The most diagnoses and service lines an 837P claim holds.
pub const MAX_DIAGNOSES: usize = 12;
pub const MAX_LINES: usize = 50;
/// SV101-7, the procedure description, is at most 80 characters.
pub const MAX_DESCRIPTION: usize = 80;

/// Writes the 837P of the Claim in `bundle` (a Bundle holding the Claim and what it
/// references, or the resources found by the caller).
pub fn generate(bundle: &Value, envelope: &Envelope) -> Result<String, Vec<Problem>> {
    let resources = Resources::of_bundle(bundle);
    let Some(claim) = resources.first_of("Claim") else {
        return Err(vec![problem("Bundle", "holds no Claim")]);
    };
    let mut problems = Vec::new();
    let content = Content::read(claim, &resources, &mut problems);
    match content {
        Some(content) if problems.is_empty() => Ok(write(&content, envelope)),
        _ => Err(problems),
    }
}

pub(super) fn problem(element: &str, message: impl Into<String>) -> Problem {
    Problem {
        element: element.to_owned(),
        message: message.into(),
    }
}

/// A party: a person or an organization, with its ids and address.
#[derive(Debug, Default, Clone)]
struct Party {
    organization: bool,
    last_or_name: String,
    first: String,
    middle: String,
    npi: Option<String>,
    /// The tax id and its REF qualifier: `EI` (employer id) or `SY` (social security).
    tax_id: Option<(&'static str, String)>,
    address: Option<fhir::Address>,
    birth_date: Option<String>,
    gender: Option<&'static str>,
    taxonomy: Option<String>,
}

impl Party {
    fn of(resource: &Value) -> Party {
        let organization = resource["resourceType"] != "Patient"
            && resource["resourceType"] != "Practitioner"
            && resource["resourceType"] != "RelatedPerson";
        let (last_or_name, first, middle) = if organization {
            (
                resource["name"].as_str().unwrap_or_default().to_owned(),
                String::new(),
                String::new(),
            )
        } else {
            fhir::person_name(resource)
        };
        Party {
            organization,
            last_or_name: clean(&last_or_name),
            first: clean(&first),
            middle: clean(&middle),
            npi: fhir::identifier(resource, systems::NPI).map(str::to_owned),
            tax_id: fhir::identifier(resource, systems::EIN)
                .map(|t| ("EI", t))
                .or_else(|| fhir::identifier(resource, systems::SSN).map(|t| ("SY", t)))
                .map(|(qualifier, t)| {
                    (qualifier, t.chars().filter(char::is_ascii_digit).collect())
                }),
            address: fhir::address(resource),
            birth_date: resource["birthDate"].as_str().and_then(fhir::x12_date),
            gender: match resource["gender"].as_str() {
                Some("female") => Some("F"),
                Some("male") => Some("M"),
                Some(_) => Some("U"),
                None => None,
            },
            taxonomy: resource["qualification"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|q| fhir::code(&q["code"], systems::TAXONOMY))
                // An optional fact: one that is not a taxonomy code is left out.
                .filter(|t| code_like(t, 10, 10))
                .map(str::to_owned),
        }
    }

    /// NM1 for this party: entity code, then name, then `XX`/`MI`/`PI` and the id.
    fn nm1(&self, writer: &mut Writer, entity: &str, id_qualifier: &str, id: &str) {
        let kind = if self.organization { "2" } else { "1" };
        let (first, middle) = if self.organization {
            ("", "")
        } else {
            (self.first.as_str(), self.middle.as_str())
        };
        let qualifier = if id.is_empty() { "" } else { id_qualifier };
        writer.segment(
            "NM1",
            &[
                entity,
                kind,
                &self.last_or_name,
                first,
                middle,
                "",
                "",
                qualifier,
                id,
            ],
        );
    }

    fn n3_n4(&self, writer: &mut Writer) {
        if let Some(address) = &self.address {
            let lines: Vec<String> = address.lines.iter().map(|l| clean(l)).collect();
            writer.segment(
                "N3",
                &[
                    lines.first().map_or("", String::as_str),
                    lines.get(1).map_or("", String::as_str),
                ],
            );
            writer.segment(
                "N4",
                &[
                    &clean(&address.city),
                    &clean(&address.state),
                    &address.postal_code,
                ],
            );
        }
    }
}

struct Line {
    code: String,
    /// `HC` (CPT/HCPCS).
    modifiers: Vec<String>,
    /// SV101-7.
    description: Option<String>,
    charge: i64,
    units: String,
    pointers: Vec<String>,
    /// `D8` date or `RD8` range.
    date: (String, String),
    control: String,
    place: Option<String>,
    /// Loop 2410.
    drug: Option<Drug>,
}

struct OtherInsurance {
    sequence: &'static str,
    relationship: &'static str,
    group: String,
    filing: String,
    subscriber: Party,
    subscriber_id: String,
    payer: Party,
    payer_id: String,
}

struct Content {
    billing: Party,
    phone: String,
    contact: String,
    payer: Party,
    payer_id: String,
    subscriber: Party,
    subscriber_id: String,
    sequence: &'static str,
    group: String,
    filing: String,
    /// Patient not the subscriber: PAT01 code and the patient.
    dependent: Option<(&'static str, Party)>,
    control_number: String,
    place: String,
    frequency: &'static str,
    payer_claim_number: Option<String>,
    prior_authorization: Option<String>,
    diagnoses: Vec<String>,
    rendering: Option<Party>,
    facility: Option<Party>,
    others: Vec<OtherInsurance>,
    lines: Vec<Line>,
    total: i64,
}

/// SBR01 for a Claim.insurance sequence.
fn payer_sequence(sequence: i64) -> &'static str {
    match sequence {
        1 => "P",
        2 => "S",
        3 => "T",
        4 => "A",
        5 => "B",
        6 => "C",
        7 => "D",
        8 => "E",
        9 => "F",
        10 => "G",
        11 => "H",
        _ => "U",
    }
}

/// PAT01 / SBR02 individual relationship code from Coverage.relationship.
fn relationship_code(coverage: &Value) -> &'static str {
    match fhir::any_code(&coverage["relationship"]) {
        None | Some("self") => "18",
        Some("spouse") => "01",
        Some("child") => "19",
        Some("common") => "53",
        Some("injured") => "21",
        _ => "G8",
    }
}

impl Content {
    /// What the 837P says, read from the Claim and what it references, each problem listed;
    /// none when a party it cannot go without is missing.
    fn read(claim: &Value, resources: &Resources, problems: &mut Vec<Problem>) -> Option<Content> {
        let patient = required_in(resources, &claim["patient"], "Claim.patient", problems);
        let provider = required_in(resources, &claim["provider"], "Claim.provider", problems);
        let insurances = insurances_in_order(claim);
        let focal = focal_insurance(&insurances);
        let coverage = focal_coverage(focal, resources, problems);
        let payer_resource = coverage.and_then(|c| payer_in(c, resources, problems));
        // The services are checked even when a party is missing: every problem at once.
        let services = Services::read(claim, problems);
        let (patient, provider, coverage, payer_resource) =
            (patient?, provider?, coverage?, payer_resource?);

        let billing = Party::of(provider);
        check_billing(&billing, problems);
        let phone = submitter_phone(provider, problems);
        let contact = submitter_contact(provider, &billing);
        let payer = Party::of(payer_resource);
        let payer_id = payer_identifier(payer_resource);
        check_payer(&payer, &payer_id, problems);
        let Insured {
            subscriber,
            subscriber_id,
            dependent,
        } = Insured::read(coverage, patient, resources, problems);
        let control_number = control_number(claim, problems);
        let frequency = super::frequency_code(claim);
        let payer_claim_number = payer_claim_number(claim, frequency, problems);
        let rendering = rendering_provider(claim, resources, problems);
        let facility = facility(claim, resources, problems);
        let others = other_insurances(&insurances, focal, patient, resources, problems);

        Some(Content {
            billing,
            phone,
            contact,
            payer,
            payer_id,
            subscriber,
            subscriber_id,
            sequence: payer_sequence(focal.and_then(|f| f["sequence"].as_i64()).unwrap_or(1)),
            group: group_number(coverage),
            filing: filing_indicator(coverage),
            dependent,
            control_number,
            place: services.place,
            frequency,
            payer_claim_number,
            prior_authorization: focal
                .and_then(|f| f["preAuthRef"][0].as_str())
                .map(str::to_owned),
            diagnoses: services.diagnoses,
            rendering,
            facility,
            others,
            lines: services.lines,
            total: services.total,
        })
    }
}

/// Claim.insurance in sequence order, the order SBR01 and the 2320 loops follow.
fn insurances_in_order(claim: &Value) -> Vec<&Value> {
    let mut all: Vec<&Value> = claim["insurance"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    all.sort_by_key(|i| i["sequence"].as_i64().unwrap_or(i64::MAX));
    all
}

/// The insurance the claim is sent to: the one marked focal, else the first.
fn focal_insurance<'a>(insurances: &[&'a Value]) -> Option<&'a Value> {
    insurances
        .iter()
        .find(|i| i["focal"] == true)
        .or(insurances.first())
        .copied()
}

/// The focal insurance's Coverage: the subscriber, the payer and SBR come from it.
fn focal_coverage<'a>(
    focal: Option<&Value>,
    resources: &Resources<'a>,
    problems: &mut Vec<Problem>,
) -> Option<&'a Value> {
    match focal {
        Some(insurance) => required_in(
            resources,
            &insurance["coverage"],
            "Claim.insurance.coverage",
            problems,
        ),
        None => {
            problems.push(problem("Claim.insurance", "the claim names no insurance"));
            None
        }
    }
}

/// A Coverage's payer (its first payor), which must be among the resources.
fn payer_in<'a>(
    coverage: &Value,
    resources: &Resources<'a>,
    problems: &mut Vec<Problem>,
) -> Option<&'a Value> {
    let payor = coverage["payor"].get(0).unwrap_or(&Value::Null);
    required_in(resources, payor, "Coverage.payor", problems)
}

/// A Coverage's subscriber: the one it references, else the patient.
fn subscriber_in<'a>(coverage: &Value, patient: &'a Value, resources: &Resources<'a>) -> &'a Value {
    coverage["subscriber"]
        .get("reference")
        .and_then(|_| resources.resolve(&coverage["subscriber"]))
        .unwrap_or(patient)
}

/// The billing provider (2010AA) is who gets paid: a payer needs its NPI, tax id, name
/// and full address.
fn check_billing(billing: &Party, problems: &mut Vec<Problem>) {
    check_npi(billing, "Claim.provider", problems);
    if billing.npi.is_none() {
        problems.push(problem(
            "Claim.provider",
            format!(
                "the billing provider needs an NPI (identifier with system {})",
                systems::NPI
            ),
        ));
    }
    if billing.tax_id.is_none() {
        problems.push(problem(
            "Claim.provider",
            format!(
                "the billing provider needs a tax id (identifier with system {})",
                systems::EIN
            ),
        ));
    }
    check_address(billing, "Claim.provider", true, problems);
    if billing.last_or_name.is_empty() {
        problems.push(problem(
            "Claim.provider",
            "the billing provider has no name",
        ));
    }
}

/// PER04 of the submitter (1000A): the billing provider's phone, which the contact needs.
fn submitter_phone(provider: &Value, problems: &mut Vec<Problem>) -> String {
    let phone = phone(provider).unwrap_or_default();
    if phone.is_empty() {
        problems.push(problem(
            "Claim.provider",
            "the billing provider needs a phone number (telecom or contact.telecom) for the submitter contact",
        ));
    }
    phone
}

/// PER02 of the submitter (1000A): the provider's first contact, else its own name.
fn submitter_contact(provider: &Value, billing: &Party) -> String {
    provider["contact"]
        .get(0)
        .and_then(|c| c["name"]["text"].as_str().or(c["name"]["family"].as_str()))
        .map(clean)
        .unwrap_or_else(|| billing.last_or_name.clone())
}

/// The payer (1000B, 2010BB) is named and identified in the file: both are required.
fn check_payer(payer: &Party, payer_id: &str, problems: &mut Vec<Problem>) {
    if payer_id.is_empty() {
        problems.push(problem(
            "Coverage.payor",
            "the payer has no identifier (its payer id)",
        ));
    }
    if payer.last_or_name.is_empty() {
        problems.push(problem("Coverage.payor", "the payer has no name"));
    }
}

/// The people of the focal Coverage: its subscriber (2010BA) and, when the patient is
/// someone else, the patient as a dependent (2000C).
struct Insured {
    subscriber: Party,
    subscriber_id: String,
    /// PAT01 and the patient.
    dependent: Option<(&'static str, Party)>,
}

impl Insured {
    /// The subscriber, member id and dependent of the focal `coverage` of `patient`.
    fn read(
        coverage: &Value,
        patient: &Value,
        resources: &Resources,
        problems: &mut Vec<Problem>,
    ) -> Insured {
        let subscriber_resource = subscriber_in(coverage, patient, resources);
        let relationship = relationship_code(coverage);
        let patient_is_subscriber = relationship == "18";
        if patient_is_subscriber && !std::ptr::eq(subscriber_resource, patient) {
            problems.push(problem(
                "Coverage.relationship",
                "the subscriber is not the patient: say how they are related (spouse, child, ...)",
            ));
        }
        let subscriber = Party::of(subscriber_resource);
        let subscriber_id = member_id(coverage, problems);
        check_person(
            &subscriber,
            "Coverage.subscriber",
            patient_is_subscriber,
            problems,
        );
        let dependent = if patient_is_subscriber {
            None
        } else {
            let patient_party = Party::of(patient);
            check_person(&patient_party, "Claim.patient", true, problems);
            Some((pat_code(relationship), patient_party))
        };
        Insured {
            subscriber,
            subscriber_id,
            dependent,
        }
    }
}

/// NM109 of the subscriber: Coverage.subscriberId, else the Coverage's first identifier.
fn member_id(coverage: &Value, problems: &mut Vec<Problem>) -> String {
    let id = coverage["subscriberId"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| {
            coverage["identifier"][0]["value"]
                .as_str()
                .map(str::to_owned)
        })
        .unwrap_or_default();
    if id.is_empty() {
        problems.push(problem(
            "Coverage.subscriberId",
            "the subscriber's member id is missing",
        ));
    }
    id
}

/// CLM01: identifier `urn:x12:clm01`, else the Claim's id; it must fit the element as it
/// is, since the payer sends it back in the 835.
fn control_number(claim: &Value, problems: &mut Vec<Problem>) -> String {
    let control_number = fhir::identifier(claim, systems::PATIENT_CONTROL_NUMBER)
        .or(claim["id"].as_str())
        .unwrap_or_default()
        .to_owned();
    if control_number.is_empty() || control_number.len() > 20 || !x12_safe(&control_number) {
        problems.push(problem(
            "Claim.identifier",
            "the patient control number (identifier urn:x12:clm01, else the id) must be 1 to 20 characters without * ~ : ^",
        ));
    }
    control_number
}

/// REF*F8: the payer's number of the claim a replacement or void (`frequency` 7 or 8)
/// stands for, which it cannot go without.
fn payer_claim_number(
    claim: &Value,
    frequency: &str,
    problems: &mut Vec<Problem>,
) -> Option<String> {
    let related_prior = claim["related"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| fhir::any_code(&r["relationship"]) == Some("prior"));
    let payer_claim_number = related_prior
        .and_then(|r| r["reference"]["value"].as_str())
        .map(str::to_owned);
    if frequency != "1" && payer_claim_number.is_none() {
        problems.push(problem(
            "Claim.related",
            "a replacement or void needs the payer's claim number (related.reference.value with relationship 'prior')",
        ));
    }
    payer_claim_number
}

/// The rendering provider (2310B): the careTeam member with role primary, else the first.
fn rendering_provider(
    claim: &Value,
    resources: &Resources,
    problems: &mut Vec<Problem>,
) -> Option<Party> {
    let rendering = claim["careTeam"]
        .as_array()
        .and_then(|team| {
            team.iter()
                .find(|m| fhir::any_code(&m["role"]) == Some("primary"))
                .or(team.first())
        })
        .and_then(|member| resources.resolve(&member["provider"]))
        .map(|r| {
            // A PractitionerRole stands for its practitioner.
            if r["resourceType"] == "PractitionerRole" {
                resources.resolve(&r["practitioner"]).unwrap_or(r)
            } else {
                r
            }
        })
        .map(Party::of)?;
    check_npi(&rendering, "Claim.careTeam.provider", problems);
    if rendering.npi.is_none() {
        problems.push(problem(
            "Claim.careTeam.provider",
            "the rendering provider needs an NPI",
        ));
    }
    Some(rendering)
}

/// The service facility (2310C) from Claim.facility, when the claim names one.
fn facility(claim: &Value, resources: &Resources, problems: &mut Vec<Problem>) -> Option<Party> {
    let reference = claim.get("facility")?;
    let location = required_in(resources, reference, "Claim.facility", problems)?;
    let party = Party::of(location);
    check_npi(&party, "Claim.facility", problems);
    check_address(&party, "Claim.facility", false, problems);
    Some(party)
}

/// The insurances other than the focal one (2320/2330A/2330B), in sequence order.
fn other_insurances(
    insurances: &[&Value],
    focal: Option<&Value>,
    patient: &Value,
    resources: &Resources,
    problems: &mut Vec<Problem>,
) -> Vec<OtherInsurance> {
    insurances
        .iter()
        .filter(|i| !std::ptr::eq(**i, focal.unwrap_or(&Value::Null)))
        .filter_map(|insurance| OtherInsurance::read(insurance, patient, resources, problems))
        .collect()
}

impl OtherInsurance {
    /// One other insurance; none when its Coverage or payer is missing (a problem then).
    fn read(
        insurance: &Value,
        patient: &Value,
        resources: &Resources,
        problems: &mut Vec<Problem>,
    ) -> Option<OtherInsurance> {
        let coverage = required_in(
            resources,
            &insurance["coverage"],
            "Claim.insurance.coverage",
            problems,
        )?;
        let payer = payer_in(coverage, resources, problems)?;
        let subscriber = subscriber_in(coverage, patient, resources);
        let id = coverage["subscriberId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if id.is_empty() {
            problems.push(problem(
                "Coverage.subscriberId",
                "the other coverage's member id is missing",
            ));
        }
        let payer_id = payer_identifier(payer);
        if payer_id.is_empty() {
            problems.push(problem(
                "Coverage.payor",
                "the other payer has no identifier",
            ));
        }
        Some(OtherInsurance {
            sequence: payer_sequence(insurance["sequence"].as_i64().unwrap_or(2)),
            relationship: relationship_code(coverage),
            group: group_number(coverage),
            filing: filing_indicator(coverage),
            subscriber: Party::of(subscriber),
            subscriber_id: id,
            payer: Party::of(payer),
            payer_id,
        })
    }
}

/// The diagnoses and lines of a claim, and what derives from them.
struct Services {
    diagnoses: Vec<String>,
    lines: Vec<Line>,
    /// CLM02: the sum of the line charges, in cents.
    total: i64,
    /// CLM05-1: the first line's place of service, else 11 (office).
    place: String,
}

impl Services {
    /// The diagnoses and service lines of `claim`, and the total and place derived from them.
    fn read(claim: &Value, problems: &mut Vec<Problem>) -> Services {
        let diagnoses = read_diagnoses(claim, problems);
        let diagnosis_sequences: Vec<i64> = diagnoses.iter().map(|(s, _)| *s).collect();
        let lines = read_lines(claim, &diagnosis_sequences, problems);
        let total = sum_charges(&lines, problems);
        check_stated_total(claim, total, problems);
        let place = lines
            .first()
            .and_then(|l| l.place.clone())
            .unwrap_or_else(|| "11".to_owned());
        Services {
            diagnoses: diagnoses.into_iter().map(|(_, c)| c).collect(),
            lines,
            total,
            place,
        }
    }
}

/// Claim.diagnosis as HI writes them: ICD-10-CM codes in sequence order, each with its
/// sequence (the lines point at diagnoses by sequence).
fn read_diagnoses(claim: &Value, problems: &mut Vec<Problem>) -> Vec<(i64, String)> {
    let mut diagnoses: Vec<(i64, String)> = Vec::new();
    for (i, diagnosis) in claim["diagnosis"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let code = fhir::code(&diagnosis["diagnosisCodeableConcept"], systems::ICD10CM);
        match code.map(fhir::icd10_to_x12) {
            Some(code) if !code_like(&code, 3, 7) => problems.push(problem(
                &format!("Claim.diagnosis[{i}]"),
                format!("'{code}' is not an ICD-10-CM code"),
            )),
            Some(code) => {
                diagnoses.push((diagnosis["sequence"].as_i64().unwrap_or(i as i64 + 1), code))
            }
            None => problems.push(problem(
                &format!("Claim.diagnosis[{i}]"),
                format!("needs an ICD-10-CM code ({})", systems::ICD10CM),
            )),
        }
    }
    diagnoses.sort();
    if diagnoses.is_empty() {
        problems.push(problem(
            "Claim.diagnosis",
            "an 837P needs at least one diagnosis",
        ));
    }
    if diagnoses.len() > MAX_DIAGNOSES {
        problems.push(problem(
            "Claim.diagnosis",
            format!(
                "{} diagnoses; an 837P holds at most {MAX_DIAGNOSES}",
                diagnoses.len()
            ),
        ));
    }
    diagnoses
}

/// Claim.item as service lines (2400): one to 50, each read with its problems.
fn read_lines(
    claim: &Value,
    diagnosis_sequences: &[i64],
    problems: &mut Vec<Problem>,
) -> Vec<Line> {
    let items: Vec<&Value> = claim["item"].as_array().into_iter().flatten().collect();
    if items.is_empty() {
        problems.push(problem(
            "Claim.item",
            "an 837P needs at least one service line",
        ));
    }
    if items.len() > MAX_LINES {
        problems.push(problem(
            "Claim.item",
            format!("{} lines; an 837P holds at most {MAX_LINES}", items.len()),
        ));
    }
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| read_line(item, i, diagnosis_sequences, problems))
        .collect()
}

/// CLM02: the sum of the line charges, which must fit in an amount.
fn sum_charges(lines: &[Line], problems: &mut Vec<Problem>) -> i64 {
    lines
        .iter()
        .try_fold(0i64, |sum, l| sum.checked_add(l.charge))
        .unwrap_or_else(|| {
            problems.push(problem(
                "Claim.item",
                "the line charges add up to more than X12 can carry",
            ));
            0
        })
}

/// Claim.total, when stated, must be what CLM02 says: the sum of the line charges.
fn check_stated_total(claim: &Value, total: i64, problems: &mut Vec<Problem>) {
    if let Some(stated) = claim["total"].get("value").and_then(fhir::cents)
        && stated != total
    {
        problems.push(problem(
            "Claim.total",
            format!(
                "{} differs from the sum of the line charges, {}",
                fhir::format_cents(stated),
                fhir::format_cents(total)
            ),
        ));
    }
}

fn required_in<'a>(
    resources: &Resources<'a>,
    reference: &Value,
    element: &str,
    problems: &mut Vec<Problem>,
) -> Option<&'a Value> {
    let found = resources.resolve(reference);
    if found.is_none() {
        problems.push(problem(
            element,
            "is missing or not among the resources given",
        ));
    }
    found
}

fn pat_code(relationship: &'static str) -> &'static str {
    match relationship {
        "01" | "19" | "53" | "21" => relationship,
        _ => "G8",
    }
}

fn payer_identifier(payer: &Value) -> String {
    fhir::identifier(payer, systems::PAYER_ID)
        .or_else(|| payer["identifier"][0]["value"].as_str())
        .map(clean)
        .unwrap_or_default()
}

fn group_number(coverage: &Value) -> String {
    coverage["class"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| fhir::any_code(&c["type"]) == Some("group"))
        .and_then(|c| c["value"].as_str())
        .map(clean)
        .unwrap_or_default()
}

/// SBR09: Coverage.type coded in the X12 claim filing indicator list, else `CI`
/// (commercial).
fn filing_indicator(coverage: &Value) -> String {
    const CODES: &[&str] = &[
        "11", "12", "13", "14", "15", "16", "17", "AM", "BL", "CH", "CI", "DS", "FI", "HM", "LM",
        "MA", "MB", "MC", "OF", "TV", "VA", "WC", "ZZ",
    ];
    fhir::code(&coverage["type"], systems::CLAIM_FILING)
        .filter(|c| CODES.contains(c))
        .unwrap_or("CI")
        .to_owned()
}

fn phone(resource: &Value) -> Option<String> {
    let from = |telecom: &Value| {
        telecom
            .as_array()?
            .iter()
            .find(|t| t["system"] == "phone")
            .and_then(|t| t["value"].as_str())
            .map(|v| v.chars().filter(char::is_ascii_digit).collect::<String>())
            .filter(|v| v.len() >= 10)
    };
    from(&resource["telecom"]).or_else(|| {
        resource["contact"]
            .as_array()?
            .iter()
            .find_map(|c| from(&c["telecom"]))
    })
}

/// An NPI, when there is one, must have its check digit right: a payer rejects the claim
/// otherwise.
fn check_npi(party: &Party, element: &str, problems: &mut Vec<Problem>) {
    if let Some(npi) = &party.npi
        && !super::validate::is_npi(npi)
    {
        problems.push(problem(
            element,
            format!("'{npi}' is not an NPI (ten digits with a valid check digit)"),
        ));
    }
}

/// A value that fits in an element as it is: X12 characters, none of the separators.
fn x12_safe(value: &str) -> bool {
    value
        .chars()
        .all(|c| (c.is_ascii_graphic() || c == ' ') && !matches!(c, '*' | '~' | ':' | '^'))
}

/// `min` to `max` letters and digits.
fn code_like(value: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A positive decimal of at most 15 digits.
pub(super) fn is_quantity(value: &str) -> bool {
    let digits = value.bytes().filter(u8::is_ascii_digit).count();
    (1..=15).contains(&digits)
        && value.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && value.bytes().filter(|&b| b == b'.').count() <= 1
        && value.bytes().any(|b| b.is_ascii_digit() && b != b'0')
}

fn check_address(party: &Party, element: &str, nine_digit_zip: bool, problems: &mut Vec<Problem>) {
    match &party.address {
        None => problems.push(problem(element, "needs an address")),
        Some(address) => {
            if address.lines.is_empty() || address.city.is_empty() || address.state.len() != 2 {
                problems.push(problem(
                    element,
                    "the address needs a line, a city and a two-letter state",
                ));
            }
            let zip = address.postal_code.len();
            if nine_digit_zip && zip != 9 {
                problems.push(problem(
                    element,
                    "the billing provider's postal code must have all nine digits (ZIP+4)",
                ));
            } else if zip != 5 && zip != 9 {
                problems.push(problem(element, "the postal code must have 5 or 9 digits"));
            }
        }
    }
}

fn check_person(party: &Party, element: &str, demographics: bool, problems: &mut Vec<Problem>) {
    if party.last_or_name.is_empty() {
        problems.push(problem(element, "needs a family name"));
    }
    if demographics {
        if party.birth_date.is_none() {
            problems.push(problem(element, "needs a birthDate"));
        }
        if party.gender.is_none() {
            problems.push(problem(element, "needs a gender"));
        }
        check_address(party, element, false, problems);
    }
}

/// Service line `index` (2400) from its Claim.item; none when it has a problem (listed).
fn read_line(
    item: &Value,
    index: usize,
    diagnosis_sequences: &[i64],
    problems: &mut Vec<Problem>,
) -> Option<Line> {
    let at = format!("Claim.item[{index}]");
    let before = problems.len();
    let service = &item["productOrService"];
    let code = procedure_code(service, &at, problems);
    let modifiers = procedure_modifiers(item, &at, problems);
    let units = line_units(item, &at, problems);
    let charge = line_charge(item, &units, &at, problems);
    let pointers = diagnosis_pointers(item, diagnosis_sequences, &at, problems);
    let date = service_date(item, &at, problems);
    let control = line_control_number(item, index);
    let place = place_of_service(item, &at, problems);
    let drug = Drug::read(item, &at, problems);
    if problems.len() > before {
        return None;
    }
    Some(Line {
        code: code?,
        modifiers,
        description: description(service),
        charge: charge?,
        units,
        pointers,
        date: date?,
        control,
        place,
        drug,
    })
}

/// SV101-2: the CPT or HCPCS code of productOrService.
fn procedure_code(service: &Value, at: &str, problems: &mut Vec<Problem>) -> Option<String> {
    let code = fhir::code(service, systems::CPT)
        .or_else(|| fhir::code(service, systems::HCPCS))
        .map(str::to_owned);
    if !code.as_deref().is_some_and(|c| code_like(c, 5, 5)) {
        problems.push(problem(
            &format!("{at}.productOrService"),
            "needs a CPT or HCPCS code (five letters and digits)",
        ));
    }
    code
}

/// SV101-3 to -6: up to four two-character modifiers.
fn procedure_modifiers(item: &Value, at: &str, problems: &mut Vec<Problem>) -> Vec<String> {
    let modifiers: Vec<String> = item["modifier"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(fhir::any_code)
        .map(str::to_owned)
        .collect();
    if modifiers.len() > 4 {
        problems.push(problem(&format!("{at}.modifier"), "at most 4 modifiers"));
    }
    if let Some(bad) = modifiers.iter().find(|m| !code_like(m, 2, 2)) {
        problems.push(problem(
            &format!("{at}.modifier"),
            format!("'{bad}' is not a procedure modifier (two letters or digits)"),
        ));
    }
    modifiers
}

/// SV104: the quantity's value as written, 1 when the item states none.
fn line_units(item: &Value, at: &str, problems: &mut Vec<Problem>) -> String {
    let units = match &item["quantity"]["value"] {
        Value::Null => "1".to_owned(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    if !is_quantity(&units) {
        problems.push(problem(
            &format!("{at}.quantity"),
            "needs a positive number of units (at most 15 digits)",
        ));
    }
    units
}

/// SV102 in cents: net, else unitPrice times a whole number of `units`.
fn line_charge(item: &Value, units: &str, at: &str, problems: &mut Vec<Problem>) -> Option<i64> {
    let charge = item["net"]["value"]
        .as_number()
        .and_then(|_| fhir::cents(&item["net"]["value"]))
        .or_else(|| {
            let unit = fhir::cents(&item["unitPrice"]["value"])?;
            let count: i64 = units.parse().ok()?;
            unit.checked_mul(count)
        });
    if charge.is_none_or(|c| c <= 0) {
        problems.push(problem(
            &format!("{at}.net"),
            "needs a positive charge (net, or unitPrice with a whole quantity)",
        ));
    }
    charge
}

/// SV107: diagnosisSequence as pointers (1 to 4) into HI, which holds the diagnoses in
/// `diagnosis_sequences` order.
fn diagnosis_pointers(
    item: &Value,
    diagnosis_sequences: &[i64],
    at: &str,
    problems: &mut Vec<Problem>,
) -> Vec<String> {
    let mut pointers = Vec::new();
    for sequence in item["diagnosisSequence"].as_array().into_iter().flatten() {
        match sequence
            .as_i64()
            .and_then(|s| diagnosis_sequences.iter().position(|d| *d == s))
        {
            Some(position) => pointers.push((position + 1).to_string()),
            None => problems.push(problem(
                &format!("{at}.diagnosisSequence"),
                format!("{sequence} is not the sequence of a diagnosis of the claim"),
            )),
        }
    }
    if pointers.is_empty() {
        problems.push(problem(
            &format!("{at}.diagnosisSequence"),
            "each line points at one to four diagnoses",
        ));
    }
    if pointers.len() > 4 {
        problems.push(problem(
            &format!("{at}.diagnosisSequence"),
            "at most 4 pointers",
        ));
    }
    pointers
}

/// DTP*472: servicedDate (`D8`), else servicedPeriod (`D8` for one day, `RD8` for more).
fn service_date(item: &Value, at: &str, problems: &mut Vec<Problem>) -> Option<(String, String)> {
    let date = match (
        item["servicedDate"].as_str(),
        item["servicedPeriod"].as_object(),
    ) {
        (Some(date), _) => fhir::x12_date(date).map(|d| ("D8".to_owned(), d)),
        (None, Some(period)) => service_period(period),
        _ => None,
    };
    if date.is_none() {
        problems.push(problem(
            &format!("{at}.servicedDate"),
            "needs a service date (servicedDate, or servicedPeriod with start and end)",
        ));
    }
    date
}

/// A servicedPeriod as DTP*472 dates: both its start and end are needed.
fn service_period(period: &serde_json::Map<String, Value>) -> Option<(String, String)> {
    let date = |key: &str| {
        period
            .get(key)
            .and_then(Value::as_str)
            .and_then(fhir::x12_date)
    };
    match (date("start"), date("end")) {
        (Some(s), Some(e)) if s == e => Some(("D8".to_owned(), s)),
        (Some(s), Some(e)) => Some(("RD8".to_owned(), format!("{s}-{e}"))),
        _ => None,
    }
}

/// REF*6R: extension `urn:x12:line-item-control-number`, else the item's sequence (else
/// its position), for the payer to name the line in the 835.
fn line_control_number(item: &Value, index: usize) -> String {
    item["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["url"] == systems::LINE_CONTROL_EXTENSION)
        .and_then(|e| e["valueString"].as_str())
        .map(clean)
        .unwrap_or_else(|| {
            item["sequence"]
                .as_i64()
                .unwrap_or(index as i64 + 1)
                .to_string()
        })
}

/// SV105: the item's place of service code (two digits), if it has one.
fn place_of_service(item: &Value, at: &str, problems: &mut Vec<Problem>) -> Option<String> {
    let place =
        fhir::code(&item["locationCodeableConcept"], systems::PLACE_OF_SERVICE).map(str::to_owned);
    if let Some(bad) = place
        .as_deref()
        .filter(|p| p.len() != 2 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        problems.push(problem(
            &format!("{at}.locationCodeableConcept"),
            format!("'{bad}' is not a place of service code (two digits)"),
        ));
    }
    place
}

/// SV101-7 from productOrService.text: free text, so its case is kept; cut to the 80
/// characters the element holds rather than refusing the claim for a long label.
fn description(service: &Value) -> Option<String> {
    let mut text = clean_text(service["text"].as_str()?);
    text.truncate(MAX_DESCRIPTION);
    let text = text.trim_end().to_owned();
    (!text.is_empty()).then_some(text)
}

/// SV101: `HC`, the code, the modifiers (SV101-3 to -6) and the description (SV101-7),
/// with the empty modifier places kept before a description.
fn procedure(line: &Line) -> String {
    let mut components = vec!["HC", line.code.as_str()];
    components.extend(line.modifiers.iter().map(String::as_str));
    if let Some(description) = &line.description {
        components.resize(6, "");
        components.push(description);
    }
    components.join(":")
}

/// The interchange of one 837P set, loop by loop in the order of the implementation guide.
fn write(content: &Content, envelope: &Envelope) -> String {
    let mut w = Writer::default();
    envelope.open(&mut w, Some(("HC", "005010X222A1")));
    let set_control = envelope.set_control();
    envelope.start_set(&mut w, "837", &set_control, "005010X222A1");
    write_header(&mut w, content, envelope);
    write_billing_provider(&mut w, content);
    write_subscriber(&mut w, content);
    write_patient(&mut w, content);
    write_claim(&mut w, content);
    write_claim_providers(&mut w, content);
    write_other_insurances(&mut w, content);
    for (n, line) in content.lines.iter().enumerate() {
        write_line(&mut w, n + 1, line, &content.place);
    }
    envelope.end_set(&mut w, &set_control);
    envelope.close(&mut w, Some(1));
    w.text
}

/// BHT, then the submitter (1000A: the billing provider under our sender id, with its
/// contact) and the receiver (1000B: the payer).
fn write_header(w: &mut Writer, content: &Content, envelope: &Envelope) {
    w.segment(
        "BHT",
        &[
            "0019",
            "00",
            &content.control_number,
            &envelope.date,
            &envelope.time,
            "CH",
        ],
    );
    content
        .billing
        .nm1(w, "41", "46", &clean(&envelope.sender_id));
    w.segment("PER", &["IC", &content.contact, "TE", &content.phone]);
    content.payer.nm1(w, "40", "46", &content.payer_id);
}

/// 2000A/2010AA: the billing provider, its taxonomy, address and tax id.
fn write_billing_provider(w: &mut Writer, content: &Content) {
    w.segment("HL", &["1", "", "20", "1"]);
    if let Some(taxonomy) = &content.billing.taxonomy {
        w.segment("PRV", &["BI", "PXC", taxonomy]);
    }
    content.billing.nm1(
        w,
        "85",
        "XX",
        content.billing.npi.as_deref().unwrap_or_default(),
    );
    content.billing.n3_n4(w);
    if let Some((qualifier, tax_id)) = &content.billing.tax_id {
        w.segment("REF", &[qualifier, tax_id]);
    }
}

/// 2000B/2010BA/2010BB: the subscriber (with address and demographics when they are the
/// patient) and the payer.
fn write_subscriber(w: &mut Writer, content: &Content) {
    let has_dependent = content.dependent.is_some();
    w.segment(
        "HL",
        &["2", "1", "22", if has_dependent { "1" } else { "0" }],
    );
    w.segment(
        "SBR",
        &[
            content.sequence,
            if has_dependent { "" } else { "18" },
            &content.group,
            "",
            "",
            "",
            "",
            "",
            &content.filing,
        ],
    );
    content
        .subscriber
        .nm1(w, "IL", "MI", &clean(&content.subscriber_id));
    if !has_dependent {
        content.subscriber.n3_n4(w);
        dmg(w, &content.subscriber);
    }
    content.payer.nm1(w, "PR", "PI", &content.payer_id);
}

/// 2000C/2010CA: the patient, when not the subscriber.
fn write_patient(w: &mut Writer, content: &Content) {
    if let Some((code, patient)) = &content.dependent {
        w.segment("HL", &["3", "2", "23", "0"]);
        w.segment("PAT", &[code]);
        patient.nm1(w, "QC", "", "");
        patient.n3_n4(w);
        dmg(w, patient);
    }
}

/// 2300: CLM, the prior authorization and payer claim number, and the diagnoses (HI).
fn write_claim(w: &mut Writer, content: &Content) {
    let place = format!("{}:B:{}", content.place, content.frequency);
    w.segment(
        "CLM",
        &[
            &content.control_number,
            &fhir::format_cents(content.total),
            "",
            "",
            &place,
            "Y",
            "A",
            "Y",
            "Y",
        ],
    );
    if let Some(auth) = &content.prior_authorization {
        w.segment("REF", &["G1", &clean(auth)]);
    }
    if let Some(number) = &content.payer_claim_number {
        w.segment("REF", &["F8", &clean(number)]);
    }
    let hi: Vec<String> = content
        .diagnoses
        .iter()
        .enumerate()
        .map(|(i, code)| format!("{}:{code}", if i == 0 { "ABK" } else { "ABF" }))
        .collect();
    let hi: Vec<&str> = hi.iter().map(String::as_str).collect();
    w.segment("HI", &hi);
}

/// 2310B the rendering provider and 2310C the service facility, when the claim has them.
fn write_claim_providers(w: &mut Writer, content: &Content) {
    if let Some(rendering) = &content.rendering {
        rendering.nm1(w, "82", "XX", rendering.npi.as_deref().unwrap_or_default());
        if let Some(taxonomy) = &rendering.taxonomy {
            w.segment("PRV", &["PE", "PXC", taxonomy]);
        }
    }
    if let Some(facility) = &content.facility {
        facility.nm1(w, "77", "XX", facility.npi.as_deref().unwrap_or_default());
        facility.n3_n4(w);
    }
}

/// 2320/2330A/2330B for each other insurance: its SBR, OI, subscriber and payer.
fn write_other_insurances(w: &mut Writer, content: &Content) {
    for other in &content.others {
        w.segment(
            "SBR",
            &[
                other.sequence,
                other.relationship,
                &other.group,
                "",
                "",
                "",
                "",
                "",
                &other.filing,
            ],
        );
        w.segment("OI", &["", "", "Y", "", "", "Y"]);
        other
            .subscriber
            .nm1(w, "IL", "MI", &clean(&other.subscriber_id));
        other.payer.nm1(w, "PR", "PI", &other.payer_id);
    }
}

/// 2400: service line `number` (LX), its SV1 (the place only where it differs from the
/// claim's), DTP*472, REF*6R and its drug (2410).
fn write_line(w: &mut Writer, number: usize, line: &Line, claim_place: &str) {
    w.segment("LX", &[&number.to_string()]);
    let procedure = procedure(line);
    let place = match &line.place {
        Some(place) if place != claim_place => place.as_str(),
        _ => "",
    };
    w.segment(
        "SV1",
        &[
            &procedure,
            &fhir::format_cents(line.charge),
            "UN",
            &line.units,
            place,
            "",
            &line.pointers.join(":"),
        ],
    );
    w.segment("DTP", &["472", &line.date.0, &line.date.1]);
    w.segment("REF", &["6R", &line.control]);
    if let Some(drug) = &line.drug {
        drug.write(w);
    }
}

fn dmg(w: &mut Writer, party: &Party) {
    w.segment(
        "DMG",
        &[
            "D8",
            party.birth_date.as_deref().unwrap_or_default(),
            party.gender.unwrap_or("U"),
        ],
    );
}
