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
    fn read(claim: &Value, resources: &Resources, problems: &mut Vec<Problem>) -> Option<Content> {
        let patient = required_in(resources, &claim["patient"], "Claim.patient", problems);
        let provider = required_in(resources, &claim["provider"], "Claim.provider", problems);
        let insurances: Vec<&Value> = {
            let mut all: Vec<&Value> = claim["insurance"]
                .as_array()
                .into_iter()
                .flatten()
                .collect();
            all.sort_by_key(|i| i["sequence"].as_i64().unwrap_or(i64::MAX));
            all
        };
        let focal = insurances
            .iter()
            .find(|i| i["focal"] == true)
            .or(insurances.first())
            .copied();
        let coverage = match focal {
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
        };
        let payer_resource = coverage.and_then(|c| {
            let payor = c["payor"].get(0).unwrap_or(&Value::Null);
            required_in(resources, payor, "Coverage.payor", problems)
        });
        // The services are checked even when a party is missing: every problem at once.
        let services = Services::read(claim, problems);
        let (patient, provider, coverage, payer_resource) =
            (patient?, provider?, coverage?, payer_resource?);

        let billing = Party::of(provider);
        check_npi(&billing, "Claim.provider", problems);
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
        check_address(&billing, "Claim.provider", true, problems);
        if billing.last_or_name.is_empty() {
            problems.push(problem(
                "Claim.provider",
                "the billing provider has no name",
            ));
        }
        let phone = phone(provider).unwrap_or_default();
        if phone.is_empty() {
            problems.push(problem(
                "Claim.provider",
                "the billing provider needs a phone number (telecom or contact.telecom) for the submitter contact",
            ));
        }
        let contact = provider["contact"]
            .get(0)
            .and_then(|c| c["name"]["text"].as_str().or(c["name"]["family"].as_str()))
            .map(clean)
            .unwrap_or_else(|| billing.last_or_name.clone());

        let payer = Party::of(payer_resource);
        let payer_id = payer_identifier(payer_resource);
        if payer_id.is_empty() {
            problems.push(problem(
                "Coverage.payor",
                "the payer has no identifier (its payer id)",
            ));
        }
        if payer.last_or_name.is_empty() {
            problems.push(problem("Coverage.payor", "the payer has no name"));
        }

        let subscriber_resource = coverage["subscriber"]
            .get("reference")
            .and_then(|_| resources.resolve(&coverage["subscriber"]))
            .unwrap_or(patient);
        let relationship = relationship_code(coverage);
        let patient_is_subscriber = relationship == "18";
        if patient_is_subscriber && !std::ptr::eq(subscriber_resource, patient) {
            problems.push(problem(
                "Coverage.relationship",
                "the subscriber is not the patient: say how they are related (spouse, child, ...)",
            ));
        }
        let subscriber = Party::of(subscriber_resource);
        let subscriber_id = coverage["subscriberId"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| {
                coverage["identifier"][0]["value"]
                    .as_str()
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        if subscriber_id.is_empty() {
            problems.push(problem(
                "Coverage.subscriberId",
                "the subscriber's member id is missing",
            ));
        }
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

        let related_prior = claim["related"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| fhir::any_code(&r["relationship"]) == Some("prior"));
        let payer_claim_number = related_prior
            .and_then(|r| r["reference"]["value"].as_str())
            .map(str::to_owned);
        let frequency = super::frequency_code(claim);
        if frequency != "1" && payer_claim_number.is_none() {
            problems.push(problem(
                "Claim.related",
                "a replacement or void needs the payer's claim number (related.reference.value with relationship 'prior')",
            ));
        }

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
            .map(Party::of);
        if let Some(rendering) = &rendering {
            check_npi(rendering, "Claim.careTeam.provider", problems);
        }
        if let Some(rendering) = &rendering
            && rendering.npi.is_none()
        {
            problems.push(problem(
                "Claim.careTeam.provider",
                "the rendering provider needs an NPI",
            ));
        }
        let facility = match claim.get("facility") {
            Some(reference) => {
                let location = required_in(resources, reference, "Claim.facility", problems);
                location.map(|l| {
                    let party = Party::of(l);
                    check_npi(&party, "Claim.facility", problems);
                    check_address(&party, "Claim.facility", false, problems);
                    party
                })
            }
            None => None,
        };

        let mut others = Vec::new();
        for insurance in insurances
            .iter()
            .filter(|i| !std::ptr::eq(**i, focal.unwrap_or(&Value::Null)))
        {
            let Some(other_coverage) = required_in(
                resources,
                &insurance["coverage"],
                "Claim.insurance.coverage",
                problems,
            ) else {
                continue;
            };
            let Some(other_payer) = required_in(
                resources,
                other_coverage["payor"].get(0).unwrap_or(&Value::Null),
                "Coverage.payor",
                problems,
            ) else {
                continue;
            };
            let other_subscriber = other_coverage["subscriber"]
                .get("reference")
                .and_then(|_| resources.resolve(&other_coverage["subscriber"]))
                .unwrap_or(patient);
            let id = other_coverage["subscriberId"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if id.is_empty() {
                problems.push(problem(
                    "Coverage.subscriberId",
                    "the other coverage's member id is missing",
                ));
            }
            let payer_id = payer_identifier(other_payer);
            if payer_id.is_empty() {
                problems.push(problem(
                    "Coverage.payor",
                    "the other payer has no identifier",
                ));
            }
            others.push(OtherInsurance {
                sequence: payer_sequence(insurance["sequence"].as_i64().unwrap_or(2)),
                relationship: relationship_code(other_coverage),
                group: group_number(other_coverage),
                filing: filing_indicator(other_coverage),
                subscriber: Party::of(other_subscriber),
                subscriber_id: id,
                payer: Party::of(other_payer),
                payer_id,
            });
        }

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
    fn read(claim: &Value, problems: &mut Vec<Problem>) -> Services {
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
        let diagnosis_sequences: Vec<i64> = diagnoses.iter().map(|(s, _)| *s).collect();

        let mut lines = Vec::new();
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
        for (i, item) in items.iter().enumerate() {
            if let Some(line) = read_line(item, i, &diagnosis_sequences, problems) {
                lines.push(line);
            }
        }
        let total = lines
            .iter()
            .try_fold(0i64, |sum, l| sum.checked_add(l.charge))
            .unwrap_or_else(|| {
                problems.push(problem(
                    "Claim.item",
                    "the line charges add up to more than X12 can carry",
                ));
                0
            });
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

fn read_line(
    item: &Value,
    index: usize,
    diagnosis_sequences: &[i64],
    problems: &mut Vec<Problem>,
) -> Option<Line> {
    let at = format!("Claim.item[{index}]");
    let before = problems.len();
    let service = &item["productOrService"];
    let code = fhir::code(service, systems::CPT)
        .or_else(|| fhir::code(service, systems::HCPCS))
        .map(str::to_owned);
    if !code.as_deref().is_some_and(|c| code_like(c, 5, 5)) {
        problems.push(problem(
            &format!("{at}.productOrService"),
            "needs a CPT or HCPCS code (five letters and digits)",
        ));
    }
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
    let quantity = item["quantity"]["value"].clone();
    let units = match &quantity {
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
    let date = match (
        item["servicedDate"].as_str(),
        item["servicedPeriod"].as_object(),
    ) {
        (Some(date), _) => fhir::x12_date(date).map(|d| ("D8".to_owned(), d)),
        (None, Some(period)) => {
            let start = period
                .get("start")
                .and_then(Value::as_str)
                .and_then(fhir::x12_date);
            let end = period
                .get("end")
                .and_then(Value::as_str)
                .and_then(fhir::x12_date);
            match (start, end) {
                (Some(s), Some(e)) if s == e => Some(("D8".to_owned(), s)),
                (Some(s), Some(e)) => Some(("RD8".to_owned(), format!("{s}-{e}"))),
                _ => None,
            }
        }
        _ => None,
    };
    if date.is_none() {
        problems.push(problem(
            &format!("{at}.servicedDate"),
            "needs a service date (servicedDate, or servicedPeriod with start and end)",
        ));
    }
    let control = item["extension"]
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
        });
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

fn write(content: &Content, envelope: &Envelope) -> String {
    let mut w = Writer::default();
    envelope.open(&mut w, Some(("HC", "005010X222A1")));
    let set_control = envelope.set_control();
    envelope.start_set(&mut w, "837", &set_control, "005010X222A1");
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
    // 1000A submitter, 1000B receiver.
    content
        .billing
        .nm1(&mut w, "41", "46", &clean(&envelope.sender_id));
    w.segment("PER", &["IC", &content.contact, "TE", &content.phone]);
    content.payer.nm1(&mut w, "40", "46", &content.payer_id);
    // 2000A billing provider.
    w.segment("HL", &["1", "", "20", "1"]);
    if let Some(taxonomy) = &content.billing.taxonomy {
        w.segment("PRV", &["BI", "PXC", taxonomy]);
    }
    content.billing.nm1(
        &mut w,
        "85",
        "XX",
        content.billing.npi.as_deref().unwrap_or_default(),
    );
    content.billing.n3_n4(&mut w);
    if let Some((qualifier, tax_id)) = &content.billing.tax_id {
        w.segment("REF", &[qualifier, tax_id]);
    }
    // 2000B subscriber.
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
        .nm1(&mut w, "IL", "MI", &clean(&content.subscriber_id));
    if !has_dependent {
        content.subscriber.n3_n4(&mut w);
        dmg(&mut w, &content.subscriber);
    }
    content.payer.nm1(&mut w, "PR", "PI", &content.payer_id);
    // 2000C patient.
    if let Some((code, patient)) = &content.dependent {
        w.segment("HL", &["3", "2", "23", "0"]);
        w.segment("PAT", &[code]);
        patient.nm1(&mut w, "QC", "", "");
        patient.n3_n4(&mut w);
        dmg(&mut w, patient);
    }
    // 2300 claim.
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
    if let Some(rendering) = &content.rendering {
        rendering.nm1(
            &mut w,
            "82",
            "XX",
            rendering.npi.as_deref().unwrap_or_default(),
        );
        if let Some(taxonomy) = &rendering.taxonomy {
            w.segment("PRV", &["PE", "PXC", taxonomy]);
        }
    }
    if let Some(facility) = &content.facility {
        facility.nm1(
            &mut w,
            "77",
            "XX",
            facility.npi.as_deref().unwrap_or_default(),
        );
        facility.n3_n4(&mut w);
    }
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
            .nm1(&mut w, "IL", "MI", &clean(&other.subscriber_id));
        other.payer.nm1(&mut w, "PR", "PI", &other.payer_id);
    }
    // 2400 lines.
    for (n, line) in content.lines.iter().enumerate() {
        w.segment("LX", &[&(n + 1).to_string()]);
        let procedure = procedure(line);
        let place = match &line.place {
            Some(place) if *place != content.place => place.as_str(),
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
            drug.write(&mut w);
        }
    }
    envelope.end_set(&mut w, &set_control);
    envelope.close(&mut w, Some(1));
    w.text
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
