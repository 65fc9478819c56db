//! End-to-end tests of FHIR R4 search (https://hl7.org/fhir/R4/search.html) over HTTP against
//! the real binary, each on SQLite and on PostgreSQL: every parameter type (string, token,
//! date, reference, number, quantity, uri) with its modifiers and prefixes, `:missing`, OR and
//! AND, chains and `_has`, `_include` / `_revinclude` (with `:iterate` and `*`), `_sort`,
//! paging (and its stability while others write), `_total`, `_summary`, `_elements`,
//! `POST _search`, Patient compartments, conditional writes with search criteria, errors, and
//! the index following writes.
//!
//! Every test loads the same fixture with PUT and client ids (organizations, practitioners,
//! patients, schedules, slots, appointments, encounters, coverages, claims, risk assessments,
//! described by the structs below) and compares each search, across all its pages, with the
//! ids a small Rust predicate picks from those structs.
//!
//! Where the spec leaves room, these tests pin the server's documented choices:
//! - dates are ranges (`2020` is the whole year; a Period without end runs forever); `eq`: the
//!   value's range lies within the search range, `ne`: it does not; `gt` / `lt`: the value
//!   reaches after the end / before the start of the search range; `ge` / `le`: it reaches the
//!   search range or after / before it; `sa` / `eb`: it lies wholly after / before it; `ap`:
//!   it overlaps the search range widened by 10% of the search date's distance from now (at
//!   least a day), the spec's recommendation.
//! - `_sort` ascending uses a resource's lowest value (a date's start), descending its highest
//!   (a date's end); resources without a value come last in both directions.
//! - token `:text` is the string search (case- and accent-insensitive prefix) on
//!   CodeableConcept.text, Coding.display and Identifier.type.text.
//! - `:missing=true` means the element is absent: a CodeableConcept with only text, or a
//!   Reference with only an identifier, is present.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure
#![allow(clippy::too_many_lines)] // a test reads as one story

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use common::{JSON, Server, all_pages, entries, get, id_of, link, put_new, put_update, send, set};
use serde_json::{Map, Value, json};
use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

const MRN: &str = "http://example.org/mrn";
const V2_0203: &str = "http://terminology.hl7.org/CodeSystem/v2-0203";
const PROFILE: &str = "http://example.org/fhir/StructureDefinition/";
const OTHER_PROFILE: &str = "http://other.example/profiles/patient";
const UCUM: &str = "http://unitsofmeasure.org";
const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
const FORM: &str = "application/x-www-form-urlencoded";
const DAY: i64 = 86_400_000_000;

// ---------------------------------------------------------------------------------------
// The fixture
// ---------------------------------------------------------------------------------------

/// Something loaded with a client id.
trait Fixture {
    fn id(&self) -> &'static str;
}

/// The ids of the fixtures a search should find.
fn expect<T: Fixture>(items: &[T], keep: impl Fn(&T) -> bool) -> BTreeSet<String> {
    items
        .iter()
        .filter(|item| keep(item))
        .map(|item| item.id().to_owned())
        .collect()
}

struct Org {
    id: &'static str,
    name: &'static str,
    partof: Option<&'static str>,
}

const ORGANIZATIONS: &[Org] = &[
    Org {
        id: "o1",
        name: "Acme Health",
        partof: None,
    },
    Org {
        id: "o2",
        name: "Beta Clinic",
        partof: None,
    },
    Org {
        id: "o3",
        name: "Gamma Care",
        partof: None,
    },
    Org {
        id: "o4",
        name: "Acme Partners",
        partof: Some("o1"),
    },
];

struct Practitioner {
    id: &'static str,
    family: &'static str,
    given: &'static str,
}

const PRACTITIONERS: &[Practitioner] = &[
    Practitioner {
        id: "pr1",
        family: "Smith",
        given: "Jane",
    },
    Practitioner {
        id: "pr2",
        family: "House",
        given: "Gregory",
    },
];

#[derive(Clone, Copy)]
struct Pat {
    id: &'static str,
    family: Option<&'static str>,
    given: &'static [&'static str],
    /// HumanName.text
    text: Option<&'static str>,
    line: Option<&'static str>,
    city: Option<&'static str>,
    gender: Option<&'static str>,
    birth: Option<&'static str>,
    active: Option<bool>,
    organization: Option<&'static str>,
    /// An identifier of system MRN and type MR ("Medical record number").
    mrn: Option<&'static str>,
    /// An identifier without a system, of type SS ("Social security number").
    ssn: Option<&'static str>,
    /// meta.profile
    profile: Option<&'static str>,
    /// A contact and a photo (elements outside the summary).
    contact: bool,
}

const NOBODY: Pat = Pat {
    id: "",
    family: None,
    given: &[],
    text: None,
    line: None,
    city: None,
    gender: None,
    birth: None,
    active: None,
    organization: None,
    mrn: None,
    ssn: None,
    profile: None,
    contact: false,
};

const PATIENTS: &[Pat] = &[
    Pat {
        id: "p1",
        family: Some("Müller"),
        given: &["Anna"],
        line: Some("1 Main Street"),
        city: Some("Springfield"),
        gender: Some("female"),
        birth: Some("1980-05-06"),
        active: Some(true),
        organization: Some("o1"),
        mrn: Some("m1"),
        profile: Some("vip-patient"),
        contact: true,
        ..NOBODY
    },
    Pat {
        id: "p2",
        family: Some("Muller"),
        given: &["Hans", "Peter"],
        city: Some("Springdale"),
        gender: Some("male"),
        birth: Some("1980"),
        active: Some(false),
        organization: Some("o2"),
        mrn: Some("m2"),
        ssn: Some("123-45"),
        ..NOBODY
    },
    Pat {
        id: "p3",
        family: Some("Mullins"),
        given: &["Zoë"],
        city: Some("Shelbyville"),
        gender: Some("female"),
        birth: Some("1980-05"),
        active: Some(true),
        organization: Some("o1"),
        mrn: Some("m3"),
        profile: Some("basic-patient"),
        ..NOBODY
    },
    Pat {
        id: "p4",
        family: Some("Smith"),
        given: &["John", "Jacob"],
        line: Some("12 Spring Road"),
        city: Some("Capital City"),
        gender: Some("male"),
        birth: Some("1975-12-31"),
        organization: Some("o2"),
        mrn: Some("m4"),
        ..NOBODY
    },
    Pat {
        id: "p5",
        family: Some("Smithers"),
        given: &["Waylon"],
        city: Some("Spring Valley"),
        gender: Some("male"),
        birth: Some("1990-01-01"),
        active: Some(true),
        organization: Some("o4"),
        ..NOBODY
    },
    Pat {
        id: "p6",
        family: Some("O'Brien"),
        given: &["Zoe"],
        city: Some("Springfield"),
        gender: Some("female"),
        active: Some(false),
        ssn: Some("987-65"),
        ..NOBODY
    },
    Pat {
        id: "p7",
        family: Some("Núñez"),
        given: &["José"],
        city: Some("Ogdenville"),
        gender: Some("other"),
        birth: Some("2001-03-04"),
        mrn: Some("m7"),
        profile: Some("vip-patient"),
        ..NOBODY
    },
    Pat {
        id: "p8",
        gender: Some("unknown"),
        birth: Some("2020-02-29"),
        ..NOBODY
    },
    Pat {
        id: "p9",
        text: Some("Emil Strauß"),
        birth: Some("1962"),
        active: Some(true),
        organization: Some("o1"),
        ..NOBODY
    },
    Pat {
        id: "p10",
        family: Some("van der Berg"),
        given: &["Lotte"],
        city: Some("SPRINGFIELD"),
        gender: Some("female"),
        birth: Some("1980-12-15"),
        mrn: Some("m10"),
        ..NOBODY
    },
    Pat {
        id: "p11",
        family: Some("Smith"),
        given: &["Anna"],
        gender: Some("female"),
        birth: Some("1975-12-31"),
        organization: Some("o2"),
        profile: Some(OTHER_PROFILE),
        ..NOBODY
    },
    Pat {
        id: "p12",
        family: Some("Anderson"),
        given: &["Mia"],
        line: Some("Springbrook Lane 5"),
        city: Some("Ogdenville"),
        gender: Some("female"),
        birth: Some("1999-07-14"),
        active: Some(true),
        ..NOBODY
    },
];

impl Pat {
    /// The string parts a string parameter of Patient reads.
    fn strings(&self, param: &str) -> Vec<&'static str> {
        let mut parts: Vec<&'static str> = Vec::new();
        match param {
            "name" => {
                parts.extend(self.family);
                parts.extend(self.given);
                parts.extend(self.text);
            }
            "family" => parts.extend(self.family),
            "given" => parts.extend(self.given),
            "address" => {
                parts.extend(self.line);
                parts.extend(self.city);
            }
            "address-city" => parts.extend(self.city),
            other => panic!("no string parameter {other} in the fixture"),
        }
        parts
    }

    /// The full canonical URL of the profile.
    fn profile_url(&self) -> Option<String> {
        self.profile.map(|p| {
            if p.contains("://") {
                p.to_owned()
            } else {
                format!("{PROFILE}{p}")
            }
        })
    }
}

struct Appt {
    id: &'static str,
    status: &'static str,
    start: Option<&'static str>,
    end: Option<&'static str>,
    patient: Option<&'static str>,
    practitioner: Option<&'static str>,
    slot: Option<&'static str>,
}

const APPOINTMENTS: &[Appt] = &[
    Appt {
        id: "a1",
        status: "booked",
        start: Some("2024-03-01T09:00:00Z"),
        end: Some("2024-03-01T09:30:00Z"),
        patient: Some("p1"),
        practitioner: Some("pr1"),
        slot: Some("s1"),
    },
    Appt {
        id: "a2",
        status: "booked",
        start: Some("2024-03-01T14:30:00+02:00"),
        end: Some("2024-03-01T15:00:00+02:00"),
        patient: Some("p2"),
        practitioner: Some("pr2"),
        slot: None,
    },
    Appt {
        id: "a3",
        status: "proposed",
        start: None,
        end: None,
        patient: Some("p1"),
        practitioner: None,
        slot: None,
    },
    Appt {
        id: "a4",
        status: "cancelled",
        start: Some("2024-03-15T10:00:00Z"),
        end: Some("2024-03-15T10:30:00Z"),
        patient: Some("p3"),
        practitioner: Some("pr1"),
        slot: None,
    },
    Appt {
        id: "a5",
        status: "fulfilled",
        start: Some("2023-12-31T23:30:00-01:00"),
        end: Some("2024-01-01T00:00:00-01:00"),
        patient: Some("p4"),
        practitioner: Some("pr2"),
        slot: None,
    },
    Appt {
        id: "a6",
        status: "booked",
        start: Some("2024-04-10T08:00:00Z"),
        end: Some("2024-04-10T08:30:00Z"),
        patient: Some("p6"),
        practitioner: Some("pr1"),
        slot: None,
    },
    Appt {
        id: "a7",
        status: "arrived",
        start: Some("2025-01-01T00:00:00Z"),
        end: Some("2025-01-01T00:30:00Z"),
        patient: None,
        practitioner: Some("pr2"),
        slot: None,
    },
    Appt {
        id: "a8",
        status: "booked",
        start: Some("2024-03-02T00:00:00Z"),
        end: Some("2024-03-02T00:30:00Z"),
        patient: Some("p11"),
        practitioner: None,
        slot: None,
    },
    Appt {
        id: "a9",
        status: "booked",
        start: Some("2030-06-01T12:00:00Z"),
        end: Some("2030-06-01T12:30:00Z"),
        patient: Some("p5"),
        practitioner: Some("pr1"),
        slot: None,
    },
    Appt {
        id: "a10",
        status: "pending",
        start: Some("2024-02-29T16:00:00Z"),
        end: Some("2024-02-29T16:30:00Z"),
        patient: Some("p1"),
        practitioner: Some("pr2"),
        slot: None,
    },
    Appt {
        id: "a11",
        status: "noshow",
        start: Some("2024-03-01T23:59:59Z"),
        end: Some("2024-03-02T00:29:59Z"),
        patient: Some("p9"),
        practitioner: None,
        slot: None,
    },
];

struct Enc {
    id: &'static str,
    status: &'static str,
    patient: Option<&'static str>,
    start: Option<&'static str>,
    end: Option<&'static str>,
    /// Encounter.type: a CodeableConcept with only text.
    type_text: Option<&'static str>,
    /// Encounter.type: a CodeableConcept with a coding (code, display).
    type_coding: Option<(&'static str, &'static str)>,
    appointment: Option<&'static str>,
    /// Encounter.length in minutes (UCUM `min`).
    minutes: Option<u32>,
}

const ENCOUNTERS: &[Enc] = &[
    Enc {
        id: "e1",
        status: "finished",
        patient: Some("p1"),
        start: Some("2024-03-01T09:00:00Z"),
        end: Some("2024-03-01T09:30:00Z"),
        type_text: Some("Routine checkup"),
        type_coding: None,
        appointment: Some("a1"),
        minutes: Some(30),
    },
    Enc {
        id: "e2",
        status: "in-progress",
        patient: Some("p2"),
        start: Some("2024-03-01T12:30:00Z"),
        end: None,
        type_text: Some("Follow-up visit"),
        type_coding: None,
        appointment: Some("a2"),
        minutes: None,
    },
    Enc {
        id: "e3",
        status: "finished",
        patient: Some("p1"),
        start: Some("2023-06-01"),
        end: Some("2023-06-03"),
        type_text: None,
        type_coding: Some(("EMER", "Emergency")),
        appointment: None,
        minutes: Some(2880),
    },
    Enc {
        id: "e4",
        status: "planned",
        patient: Some("p3"),
        start: None,
        end: None,
        type_text: Some("Checkup, annual"),
        type_coding: None,
        appointment: Some("a4"),
        minutes: None,
    },
    Enc {
        id: "e5",
        status: "finished",
        patient: Some("p6"),
        start: None,
        end: Some("2022-01-01T00:00:00Z"),
        type_text: None,
        type_coding: Some(("HH", "Home visit")),
        appointment: None,
        minutes: Some(45),
    },
    Enc {
        id: "e6",
        status: "finished",
        patient: Some("p4"),
        start: Some("2024-01-01T00:00:00Z"),
        end: Some("2024-01-01T01:00:00Z"),
        type_text: None,
        type_coding: None,
        appointment: Some("a5"),
        minutes: Some(60),
    },
    Enc {
        id: "e7",
        status: "finished",
        patient: None,
        start: Some("2024-03-01"),
        end: Some("2024-03-01"),
        type_text: Some("Checkup"),
        type_coding: None,
        appointment: None,
        minutes: None,
    },
];

impl Enc {
    /// The range of Encounter.period; open ends are unbounded.
    fn period(&self) -> Option<(i64, i64)> {
        if self.start.is_none() && self.end.is_none() {
            return None;
        }
        Some((
            self.start.map_or(i64::MIN, |s| range_of(s).0),
            self.end.map_or(i64::MAX, |e| range_of(e).1),
        ))
    }

    /// The texts `type:text` reads: CodeableConcept.text and Coding.display.
    fn type_texts(&self) -> Vec<&'static str> {
        self.type_text
            .into_iter()
            .chain(self.type_coding.map(|(_, display)| display))
            .collect()
    }
}

struct Schedule {
    id: &'static str,
    practitioner: &'static str,
}

const SCHEDULES: &[Schedule] = &[
    Schedule {
        id: "sch1",
        practitioner: "pr1",
    },
    Schedule {
        id: "sch2",
        practitioner: "pr2",
    },
];

struct Slt {
    id: &'static str,
    schedule: &'static str,
    status: &'static str,
    start: &'static str,
    end: &'static str,
}

const SLOTS: &[Slt] = &[
    Slt {
        id: "s1",
        schedule: "sch1",
        status: "busy",
        start: "2024-03-01T09:00:00Z",
        end: "2024-03-01T09:30:00Z",
    },
    Slt {
        id: "s2",
        schedule: "sch1",
        status: "free",
        start: "2024-03-01T09:30:00Z",
        end: "2024-03-01T10:00:00Z",
    },
    Slt {
        id: "s3",
        schedule: "sch2",
        status: "free",
        start: "2024-03-02T10:00:00Z",
        end: "2024-03-02T10:30:00Z",
    },
    Slt {
        id: "s4",
        schedule: "sch2",
        status: "free",
        start: "2024-04-01T10:00:00+02:00",
        end: "2024-04-01T10:30:00+02:00",
    },
    Slt {
        id: "s5",
        schedule: "sch1",
        status: "busy-unavailable",
        start: "2025-01-01T08:00:00Z",
        end: "2025-01-01T08:30:00Z",
    },
];

/// How a Claim names its patient.
#[derive(Clone, Copy)]
enum Subject {
    /// `{"reference": "Patient/<id>"}`
    Reference(&'static str),
    /// `{"identifier": {"system": MRN, "value": <mrn>}}`, no reference.
    Mrn(&'static str),
}

struct Clm {
    id: &'static str,
    patient: Subject,
    /// Claim.payee.party, a Patient.
    payee: Option<&'static str>,
}

const CLAIMS: &[Clm] = &[
    Clm {
        id: "c1",
        patient: Subject::Reference("p1"),
        payee: None,
    },
    Clm {
        id: "c2",
        patient: Subject::Mrn("m2"),
        payee: None,
    },
    Clm {
        id: "c3",
        patient: Subject::Reference("p2"),
        payee: Some("p1"),
    },
    Clm {
        id: "c4",
        patient: Subject::Reference("p3"),
        payee: None,
    },
    Clm {
        id: "c5",
        patient: Subject::Mrn("m1"),
        payee: None,
    },
];

impl Clm {
    fn patient_reference(&self) -> Option<&'static str> {
        match self.patient {
            Subject::Reference(id) => Some(id),
            Subject::Mrn(_) => None,
        }
    }
}

struct Cov {
    id: &'static str,
    beneficiary: &'static str,
    type_text: Option<&'static str>,
    type_display: Option<&'static str>,
}

const COVERAGES: &[Cov] = &[
    Cov {
        id: "cov1",
        beneficiary: "p1",
        type_text: Some("Health insurance plan policy"),
        type_display: None,
    },
    Cov {
        id: "cov2",
        beneficiary: "p2",
        type_text: None,
        type_display: Some("Dental program"),
    },
    Cov {
        id: "cov3",
        beneficiary: "p3",
        type_text: None,
        type_display: None,
    },
    Cov {
        id: "cov4",
        beneficiary: "p4",
        type_text: Some("Dental and vision"),
        type_display: None,
    },
];

struct Risk {
    id: &'static str,
    patient: &'static str,
    probability: Option<f64>,
}

const RISKS: &[Risk] = &[
    Risk {
        id: "ra1",
        patient: "p1",
        probability: Some(0.3),
    },
    Risk {
        id: "ra2",
        patient: "p2",
        probability: Some(0.75),
    },
    Risk {
        id: "ra3",
        patient: "p3",
        probability: Some(0.5),
    },
    Risk {
        id: "ra4",
        patient: "p4",
        probability: Some(0.9),
    },
    Risk {
        id: "ra5",
        patient: "p5",
        probability: None,
    },
    Risk {
        id: "ra6",
        patient: "p6",
        probability: Some(0.52),
    },
];

macro_rules! fixture {
    ($($t:ty),*) => {
        $(impl Fixture for $t {
            fn id(&self) -> &'static str {
                self.id
            }
        })*
    };
}
fixture!(
    Org,
    Practitioner,
    Pat,
    Appt,
    Enc,
    Schedule,
    Slt,
    Clm,
    Cov,
    Risk
);

fn reference(target: &str) -> Value {
    json!({ "reference": target })
}

fn narrative(text: &str) -> Value {
    json!({
        "status": "generated",
        "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{text}</div>")
    })
}

fn organization_json(o: &Org) -> Value {
    let mut r = json!({"resourceType": "Organization", "id": o.id, "name": o.name});
    if let Some(parent) = o.partof {
        r["partOf"] = reference(&format!("Organization/{parent}"));
    }
    r
}

fn practitioner_json(p: &Practitioner) -> Value {
    json!({
        "resourceType": "Practitioner",
        "id": p.id,
        "name": [{"family": p.family, "given": [p.given]}]
    })
}

fn identifier_type(code: &str, text: &str) -> Value {
    json!({"coding": [{"system": V2_0203, "code": code}], "text": text})
}

fn patient_json(p: &Pat) -> Value {
    let mut r = json!({"resourceType": "Patient", "id": p.id, "text": narrative(p.id)});
    let mut identifiers = Vec::new();
    if let Some(mrn) = p.mrn {
        identifiers.push(json!({
            "type": identifier_type("MR", "Medical record number"),
            "system": MRN,
            "value": mrn
        }));
    }
    if let Some(ssn) = p.ssn {
        identifiers.push(json!({
            "type": identifier_type("SS", "Social security number"),
            "value": ssn
        }));
    }
    if !identifiers.is_empty() {
        r["identifier"] = Value::Array(identifiers);
    }
    if let Some(active) = p.active {
        r["active"] = json!(active);
    }
    let mut name = Map::new();
    if let Some(family) = p.family {
        name.insert("family".into(), json!(family));
    }
    if !p.given.is_empty() {
        name.insert("given".into(), json!(p.given));
    }
    if let Some(text) = p.text {
        name.insert("text".into(), json!(text));
    }
    if !name.is_empty() {
        r["name"] = json!([name]);
    }
    if let Some(gender) = p.gender {
        r["gender"] = json!(gender);
    }
    if let Some(birth) = p.birth {
        r["birthDate"] = json!(birth);
    }
    let mut address = Map::new();
    if let Some(line) = p.line {
        address.insert("line".into(), json!([line]));
    }
    if let Some(city) = p.city {
        address.insert("city".into(), json!(city));
    }
    if !address.is_empty() {
        r["address"] = json!([address]);
    }
    if let Some(org) = p.organization {
        r["managingOrganization"] = reference(&format!("Organization/{org}"));
    }
    if p.contact {
        r["photo"] = json!([{"contentType": "image/png", "data": "iVBORw0KGgo="}]);
        r["contact"] = json!([{"name": {"family": "Kin"}, "telecom": [{"system": "phone", "value": "555-0100"}]}]);
    }
    if let Some(profile) = p.profile_url() {
        r["meta"] = json!({ "profile": [profile] });
    }
    r
}

fn appointment_json(a: &Appt) -> Value {
    let mut participants = Vec::new();
    if let Some(patient) = a.patient {
        participants
            .push(json!({"actor": reference(&format!("Patient/{patient}")), "status": "accepted"}));
    }
    if let Some(practitioner) = a.practitioner {
        participants.push(json!({"actor": reference(&format!("Practitioner/{practitioner}")), "status": "accepted"}));
    }
    let mut r = json!({
        "resourceType": "Appointment",
        "id": a.id,
        "status": a.status,
        "participant": participants
    });
    if let (Some(start), Some(end)) = (a.start, a.end) {
        r["start"] = json!(start);
        r["end"] = json!(end);
    }
    if let Some(slot) = a.slot {
        r["slot"] = json!([reference(&format!("Slot/{slot}"))]);
    }
    r
}

fn encounter_json(e: &Enc) -> Value {
    let mut r = json!({
        "resourceType": "Encounter",
        "id": e.id,
        "status": e.status,
        "class": {"system": ACT_CODE, "code": "AMB"}
    });
    if let Some(patient) = e.patient {
        r["subject"] = reference(&format!("Patient/{patient}"));
    }
    let mut period = Map::new();
    if let Some(start) = e.start {
        period.insert("start".into(), json!(start));
    }
    if let Some(end) = e.end {
        period.insert("end".into(), json!(end));
    }
    if !period.is_empty() {
        r["period"] = Value::Object(period);
    }
    if let Some(text) = e.type_text {
        r["type"] = json!([{ "text": text }]);
    }
    if let Some((code, display)) = e.type_coding {
        r["type"] = json!([{"coding": [{"system": ACT_CODE, "code": code, "display": display}]}]);
    }
    if let Some(appointment) = e.appointment {
        r["appointment"] = json!([reference(&format!("Appointment/{appointment}"))]);
    }
    if let Some(minutes) = e.minutes {
        r["length"] = json!({"value": minutes, "unit": "minutes", "system": UCUM, "code": "min"});
    }
    r
}

fn schedule_json(s: &Schedule) -> Value {
    json!({
        "resourceType": "Schedule",
        "id": s.id,
        "actor": [reference(&format!("Practitioner/{}", s.practitioner))]
    })
}

fn slot_json(s: &Slt) -> Value {
    json!({
        "resourceType": "Slot",
        "id": s.id,
        "schedule": reference(&format!("Schedule/{}", s.schedule)),
        "status": s.status,
        "start": s.start,
        "end": s.end
    })
}

fn claim_json(c: &Clm) -> Value {
    let patient = match c.patient {
        Subject::Reference(id) => reference(&format!("Patient/{id}")),
        Subject::Mrn(mrn) => json!({"identifier": {"system": MRN, "value": mrn}}),
    };
    let mut r = json!({
        "resourceType": "Claim",
        "id": c.id,
        "status": "active",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
        "use": "claim",
        "patient": patient,
        "created": "2024-03-02",
        "provider": reference("Organization/o1"),
        "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal"}]},
        "insurance": [{"sequence": 1, "focal": true, "coverage": reference("Coverage/cov1")}]
    });
    if let Some(payee) = c.payee {
        r["payee"] = json!({
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/payeetype", "code": "subscriber"}]},
            "party": reference(&format!("Patient/{payee}"))
        });
    }
    r
}

fn coverage_json(c: &Cov) -> Value {
    let mut r = json!({
        "resourceType": "Coverage",
        "id": c.id,
        "status": "active",
        "beneficiary": reference(&format!("Patient/{}", c.beneficiary)),
        "payor": [reference("Organization/o1")]
    });
    if let Some(text) = c.type_text {
        r["type"] = json!({ "text": text });
    }
    if let Some(display) = c.type_display {
        r["type"] =
            json!({"coding": [{"system": ACT_CODE, "code": "DENTPRG", "display": display}]});
    }
    r
}

fn risk_json(r: &Risk) -> Value {
    let mut v = json!({
        "resourceType": "RiskAssessment",
        "id": r.id,
        "status": "final",
        "subject": reference(&format!("Patient/{}", r.patient))
    });
    if let Some(probability) = r.probability {
        v["prediction"] = json!([{ "probabilityDecimal": probability }]);
    }
    v
}

/// What loading the fixture told us: `meta.lastUpdated` of every Patient.
struct Loaded {
    patient_updated: BTreeMap<String, String>,
}

/// PUTs the whole fixture (every resource new: 201).
async fn load(server: &Server) -> Loaded {
    let mut resources: Vec<Value> = Vec::new();
    resources.extend(ORGANIZATIONS.iter().map(organization_json));
    resources.extend(PRACTITIONERS.iter().map(practitioner_json));
    resources.extend(PATIENTS.iter().map(patient_json));
    resources.extend(SCHEDULES.iter().map(schedule_json));
    resources.extend(SLOTS.iter().map(slot_json));
    resources.extend(APPOINTMENTS.iter().map(appointment_json));
    resources.extend(ENCOUNTERS.iter().map(encounter_json));
    resources.extend(COVERAGES.iter().map(coverage_json));
    resources.extend(CLAIMS.iter().map(claim_json));
    resources.extend(RISKS.iter().map(risk_json));
    let mut patient_updated = BTreeMap::new();
    for resource in &resources {
        let stored = put_new(server, resource).await;
        if stored["resourceType"] == "Patient" {
            patient_updated.insert(
                id_of(&stored),
                stored["meta"]["lastUpdated"]
                    .as_str()
                    .expect("meta.lastUpdated")
                    .to_owned(),
            );
        }
    }
    Loaded { patient_updated }
}

// ---------------------------------------------------------------------------------------
// HTTP helpers
// ---------------------------------------------------------------------------------------

/// `[path]?name=value&...`, every value percent-encoded.
fn query(path: &str, params: &[(&str, &str)]) -> String {
    let encoded = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    format!("{path}?{encoded}")
}

/// `(type, id)` of the entries of a page in one search mode.
fn entries_in_mode(bundle: &Value, mode: &str) -> Vec<(String, String)> {
    entries(bundle)
        .iter()
        .filter(|e| e["search"]["mode"] == mode)
        .map(|e| {
            let resource = &e["resource"];
            (
                resource["resourceType"]
                    .as_str()
                    .expect("a type")
                    .to_owned(),
                id_of(resource),
            )
        })
        .collect()
}

/// The ids of the matches of one page, in order.
fn match_ids(bundle: &Value) -> Vec<String> {
    entries_in_mode(bundle, "match")
        .into_iter()
        .map(|(_, id)| id)
        .collect()
}

/// The first page of a search (asserting 200 and a searchset).
async fn first_page(server: &Server, path: &str) -> Value {
    let page = get(server, path).await.expect(200).body;
    assert_eq!(page["resourceType"], "Bundle", "{path}");
    assert_eq!(page["type"], "searchset", "{path}");
    page
}

/// Every page of a search: the first (asserting 200 and a searchset), then each one its
/// `next` links lead to.
async fn search_pages(server: &Server, path: &str) -> Vec<Value> {
    all_pages(server, first_page(server, path).await).await
}

/// The ids of every match of a search, in order, across all pages (each exactly once).
async fn search_ids(server: &Server, path: &str) -> Vec<String> {
    let ids: Vec<String> = search_pages(server, path)
        .await
        .iter()
        .flat_map(match_ids)
        .collect();
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(
        unique.len(),
        ids.len(),
        "{path}: a match came twice: {ids:?}"
    );
    ids
}

/// Asserts a search finds exactly `expected`.
async fn check(server: &Server, path: &str, expected: &BTreeSet<String>) {
    let found: BTreeSet<String> = search_ids(server, path).await.into_iter().collect();
    assert_eq!(&found, expected, "GET {path}");
}

/// Asserts a search finds exactly `expected`, which must be neither empty nor everything.
async fn check_selective(server: &Server, path: &str, expected: &BTreeSet<String>, all: usize) {
    assert!(
        !expected.is_empty() && expected.len() < all,
        "{path}: the fixture should make this search select something: {expected:?}"
    );
    check(server, path, expected).await;
}

// ---------------------------------------------------------------------------------------
// Expectation helpers
// ---------------------------------------------------------------------------------------

/// Case- and accent-insensitive form of a string, as FHIR string search compares.
fn fold(text: &str) -> String {
    text.nfd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

fn any_starts_with(parts: &[&str], prefix: &str) -> bool {
    parts.iter().any(|p| fold(p).starts_with(&fold(prefix)))
}

fn micros_of_day(year: i32, month: u8, day: u8) -> i64 {
    let date = Date::from_calendar_date(year, Month::try_from(month).expect("a month"), day)
        .expect("a date");
    date.midnight().assume_utc().unix_timestamp() * 1_000_000
}

/// The range a FHIR date, dateTime or instant covers, in microseconds since the epoch:
/// `2020` is the whole year, `2020-03` the month, an instant its second (or millisecond).
fn range_of(text: &str) -> (i64, i64) {
    if text.contains('T') {
        let instant = OffsetDateTime::parse(text, &Rfc3339).expect("an instant");
        let start = (instant.unix_timestamp_nanos() / 1000) as i64;
        let width = match text.split_once('.') {
            Some((_, fraction)) => {
                let digits = fraction.bytes().take_while(u8::is_ascii_digit).count() as u32;
                10_i64.pow(6 - digits.min(6))
            }
            None => 1_000_000,
        };
        return (start, start + width - 1);
    }
    let parts: Vec<i32> = text
        .split('-')
        .map(|p| p.parse().expect("a number"))
        .collect();
    match parts[..] {
        [y] => (micros_of_day(y, 1, 1), micros_of_day(y + 1, 1, 1) - 1),
        [y, m] => {
            let next = if m == 12 {
                micros_of_day(y + 1, 1, 1)
            } else {
                micros_of_day(y, m as u8 + 1, 1)
            };
            (micros_of_day(y, m as u8, 1), next - 1)
        }
        [y, m, d] => {
            let start = micros_of_day(y, m as u8, d as u8);
            (start, start + DAY - 1)
        }
        _ => panic!("not a date: {text}"),
    }
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_micros() as i64
}

/// Whether a value's range meets a date search (`prefix` and the search value's range).
fn date_matches(prefix: &str, (low, high): (i64, i64), search: &str) -> bool {
    let (from, to) = range_of(search);
    match prefix {
        "" | "eq" => low >= from && high <= to,
        "ne" => !(low >= from && high <= to),
        "gt" => high > to,
        "lt" => low < from,
        "ge" => high >= from,
        "le" => low <= to,
        "sa" => low > to,
        "eb" => high < from,
        "ap" => {
            let slack = ((now_micros() - from).abs() / 10).max(DAY);
            low <= to.saturating_add(slack) && high >= from.saturating_sub(slack)
        }
        other => panic!("no prefix {other}"),
    }
}

/// The implicit range of a decimal as written: `0.5` is [0.45, 0.55).
fn precision(text: &str) -> (f64, f64, f64) {
    let value: f64 = text.parse().expect("a decimal");
    let decimals = text.split_once('.').map_or(0, |(_, f)| f.len() as i32);
    let half = 0.5 * 10f64.powi(-decimals);
    (value, value - half, value + half)
}

/// Whether a number meets a number search (`prefix` and the value as written).
fn number_matches(prefix: &str, value: f64, search: &str) -> bool {
    let (target, low, high) = precision(search);
    match prefix {
        "" | "eq" => value >= low && value < high,
        "ne" => !(value >= low && value < high),
        "gt" | "sa" => value > target,
        "lt" | "eb" => value < target,
        "ge" => value >= target,
        "le" => value <= target,
        "ap" => (value - target).abs() <= (target * 0.1).abs(),
        other => panic!("no prefix {other}"),
    }
}

const DATE_PREFIXES: &[&str] = &["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"];

// ---------------------------------------------------------------------------------------
// string
// ---------------------------------------------------------------------------------------

async fn string_search_is_a_case_and_accent_insensitive_prefix(server: Server) {
    load(&server).await;
    let n = PATIENTS.len();
    // name=mül finds Müller and Muller (and Mullins).
    let mul = search_ids(&server, &query("Patient", &[("name", "mül")])).await;
    for id in ["p1", "p2", "p3"] {
        assert!(mul.contains(&id.to_owned()), "name=mül finds {id}: {mul:?}");
    }
    for (param, value) in [
        ("name", "mül"),
        ("name", "MUL"),
        ("name", "muller"),
        ("name", "smith"),
        ("name", "zoe"),
        ("name", "ZOË"),
        ("name", "jo"),
        ("name", "emil"),
        ("name", "o'b"),
        ("name", "van d"),
        ("name", "pet"),
        ("name", "nunez"),
        ("family", "mu"),
        ("family", "SMITH"),
        ("given", "an"),
        ("given", "Ja"),
    ] {
        let expected = expect(PATIENTS, |p| any_starts_with(&p.strings(param), value));
        check_selective(&server, &query("Patient", &[(param, value)]), &expected, n).await;
    }
    // Only a prefix: the middle of a value does not match, and nothing matches nonsense.
    for (param, value) in [("name", "ller"), ("name", "strauß"), ("family", "xyz")] {
        let expected = expect(PATIENTS, |p| any_starts_with(&p.strings(param), value));
        assert!(expected.is_empty());
        check(&server, &query("Patient", &[(param, value)]), &expected).await;
    }
}
both!(string_search_is_a_case_and_accent_insensitive_prefix);

async fn string_exact_and_contains(server: Server) {
    load(&server).await;
    let n = PATIENTS.len();
    for (param, value) in [
        ("family", "Muller"),
        ("family", "Müller"),
        ("given", "Zoë"),
        ("given", "Zoe"),
        ("name", "Smith"),
        ("name", "Emil Strauß"),
        ("address-city", "Springfield"),
    ] {
        let expected = expect(PATIENTS, |p| p.strings(param).contains(&value));
        let path = query("Patient", &[(&format!("{param}:exact"), value)]);
        check_selective(&server, &path, &expected, n).await;
    }
    // :exact is case- and accent-sensitive and whole-value.
    for (param, value) in [("family", "muller"), ("family", "Mül"), ("name", "smith")] {
        let path = query("Patient", &[(&format!("{param}:exact"), value)]);
        check(&server, &path, &BTreeSet::new()).await;
    }
    for (param, value) in [
        ("name", "ith"),
        ("family", "LLE"),
        ("name", "üll"),
        ("name", "rauß"),
        ("name", "an"),
        ("address", "field"),
        ("address-city", "VILLE"),
    ] {
        let expected = expect(PATIENTS, |p| {
            p.strings(param)
                .iter()
                .any(|s| fold(s).contains(&fold(value)))
        });
        let path = query("Patient", &[(&format!("{param}:contains"), value)]);
        check_selective(&server, &path, &expected, n).await;
    }
}
both!(string_exact_and_contains);

async fn string_search_on_address_parts(server: Server) {
    load(&server).await;
    let n = PATIENTS.len();
    for (param, value) in [
        ("address-city", "spring"),
        ("address-city", "SPRINGF"),
        ("address-city", "ogden"),
        ("address", "spring"),
        ("address", "12 spr"),
        ("address", "capital"),
    ] {
        let expected = expect(PATIENTS, |p| any_starts_with(&p.strings(param), value));
        check_selective(&server, &query("Patient", &[(param, value)]), &expected, n).await;
    }
    // address-city=spring: Springfield, SPRINGFIELD, Springdale and Spring Valley, not the
    // "Springbrook Lane" street or the "12 Spring Road" line.
    let ids = search_ids(&server, &query("Patient", &[("address-city", "spring")])).await;
    assert_eq!(
        ids.into_iter().collect::<BTreeSet<_>>(),
        set(["p1", "p2", "p5", "p6", "p10"])
    );
}
both!(string_search_on_address_parts);

// ---------------------------------------------------------------------------------------
// token
// ---------------------------------------------------------------------------------------

async fn token_search_in_every_system_code_form(server: Server) {
    load(&server).await;
    let n = PATIENTS.len();
    let cases: Vec<(&str, String, BTreeSet<String>)> = vec![
        (
            "gender",
            "female".into(),
            expect(PATIENTS, |p| p.gender == Some("female")),
        ),
        (
            "gender",
            "male,other".into(),
            expect(PATIENTS, |p| matches!(p.gender, Some("male" | "other"))),
        ),
        (
            "identifier",
            format!("{MRN}|m1"),
            expect(PATIENTS, |p| p.mrn == Some("m1")),
        ),
        (
            "identifier",
            "m1".into(),
            expect(PATIENTS, |p| p.mrn == Some("m1")),
        ),
        // `|code`: a value without a system.
        (
            "identifier",
            "|123-45".into(),
            expect(PATIENTS, |p| p.ssn == Some("123-45")),
        ),
        ("identifier", "|m1".into(), BTreeSet::new()),
        (
            "identifier",
            "123-45".into(),
            expect(PATIENTS, |p| p.ssn == Some("123-45")),
        ),
        // `system|`: any value in the system.
        (
            "identifier",
            format!("{MRN}|"),
            expect(PATIENTS, |p| p.mrn.is_some()),
        ),
        ("identifier", format!("{MRN}|123-45"), BTreeSet::new()),
        (
            "active",
            "true".into(),
            expect(PATIENTS, |p| p.active == Some(true)),
        ),
        (
            "active",
            "false".into(),
            expect(PATIENTS, |p| p.active == Some(false)),
        ),
    ];
    for (param, value, expected) in cases {
        let path = query("Patient", &[(param, &value)]);
        if expected.is_empty() {
            check(&server, &path, &expected).await;
        } else {
            check_selective(&server, &path, &expected, n).await;
        }
    }
    // Tokens are exact: no prefix, no case folding of codes.
    check(
        &server,
        &query("Patient", &[("gender", "fem")]),
        &BTreeSet::new(),
    )
    .await;
    check(
        &server,
        &query("Patient", &[("gender", "FEMALE")]),
        &BTreeSet::new(),
    )
    .await;
    // Other types: Appointment status, Slot status.
    for status in ["booked", "proposed,cancelled"] {
        let expected = expect(APPOINTMENTS, |a| status.split(',').any(|s| s == a.status));
        let path = query("Appointment", &[("status", status)]);
        check_selective(&server, &path, &expected, APPOINTMENTS.len()).await;
    }
    let expected = expect(SLOTS, |s| s.status == "free");
    let path = query("Slot", &[("status", "free")]);
    check_selective(&server, &path, &expected, SLOTS.len()).await;
}
both!(token_search_in_every_system_code_form);

async fn token_not_includes_resources_without_the_element(server: Server) {
    load(&server).await;
    let mrn_m1 = format!("{MRN}|m1");
    // (parameter, value, which patients lack the element, which match)
    type Case<'a> = (&'a str, &'a str, fn(&Pat) -> bool, fn(&Pat) -> bool);
    let cases: Vec<Case> = vec![
        (
            "gender",
            "female",
            |p| p.gender.is_none(),
            |p| p.gender != Some("female"),
        ),
        (
            "gender",
            "male,female",
            |p| p.gender.is_none(),
            |p| !matches!(p.gender, Some("male" | "female")),
        ),
        (
            "active",
            "true",
            |p| p.active.is_none(),
            |p| p.active != Some(true),
        ),
        (
            "identifier",
            &mrn_m1,
            |p| p.mrn.is_none() && p.ssn.is_none(),
            |p| p.mrn != Some("m1"),
        ),
    ];
    for (param, value, lacks, matches) in cases {
        let expected = expect(PATIENTS, matches);
        // The patients without the element are among the results.
        let lacking = expect(PATIENTS, lacks);
        assert!(!lacking.is_empty() && lacking.is_subset(&expected));
        let path = query("Patient", &[(&format!("{param}:not"), value)]);
        check_selective(&server, &path, &expected, PATIENTS.len()).await;
    }
    let expected = expect(APPOINTMENTS, |a| a.status != "booked");
    check(
        &server,
        &query("Appointment", &[("status:not", "booked")]),
        &expected,
    )
    .await;
}
both!(token_not_includes_resources_without_the_element);

async fn token_text_searches_texts_and_displays(server: Server) {
    load(&server).await;
    for value in ["check", "CHECKUP", "follow", "emerg", "home v", "routine"] {
        let expected = expect(ENCOUNTERS, |e| any_starts_with(&e.type_texts(), value));
        let path = query("Encounter", &[("type:text", value)]);
        check_selective(&server, &path, &expected, ENCOUNTERS.len()).await;
    }
    // Coverage.type is a single CodeableConcept: text or a coding's display.
    for value in ["dent", "health"] {
        let expected = expect(COVERAGES, |c| {
            let texts: Vec<&str> = c.type_text.into_iter().chain(c.type_display).collect();
            any_starts_with(&texts, value)
        });
        let path = query("Coverage", &[("type:text", value)]);
        check_selective(&server, &path, &expected, COVERAGES.len()).await;
    }
    // Identifier.type.text.
    for (value, expected) in [
        ("medical", expect(PATIENTS, |p| p.mrn.is_some())),
        ("SOCIAL sec", expect(PATIENTS, |p| p.ssn.is_some())),
        ("record", BTreeSet::new()),
    ] {
        check(
            &server,
            &query("Patient", &[("identifier:text", value)]),
            &expected,
        )
        .await;
    }
    // The text is not a code.
    check(
        &server,
        &query("Encounter", &[("type", "Checkup")]),
        &BTreeSet::new(),
    )
    .await;
    check(
        &server,
        &query("Encounter", &[("type", "EMER")]),
        &set(["e3"]),
    )
    .await;
}
both!(token_text_searches_texts_and_displays);

async fn token_of_type_matches_identifier_type_and_value(server: Server) {
    load(&server).await;
    for (value, expected) in [
        (format!("{V2_0203}|MR|m1"), set(["p1"])),
        (format!("{V2_0203}|MR|m10"), set(["p10"])),
        (format!("{V2_0203}|SS|123-45"), set(["p2"])),
        (format!("{V2_0203}|SS|m1"), BTreeSet::new()),
        (format!("{V2_0203}|MR|123-45"), BTreeSet::new()),
        ("http://other.example|MR|m1".to_owned(), BTreeSet::new()),
        (
            format!("{V2_0203}|MR|m1,{V2_0203}|SS|987-65"),
            set(["p1", "p6"]),
        ),
    ] {
        check(
            &server,
            &query("Patient", &[("identifier:of-type", &value)]),
            &expected,
        )
        .await;
    }
    // Without the three parts it is an error.
    get(
        &server,
        &query("Patient", &[("identifier:of-type", "MR|m1")]),
    )
    .await
    .expect(400)
    .expect_outcome();
}
both!(token_of_type_matches_identifier_type_and_value);

// ---------------------------------------------------------------------------------------
// date
// ---------------------------------------------------------------------------------------

async fn date_prefixes_on_birthdate(server: Server) {
    load(&server).await;
    for value in [
        "1980",
        "1980-05",
        "1980-05-06",
        "1980-12",
        "1975-12-31",
        "2000",
        "2020-02-29",
    ] {
        for prefix in DATE_PREFIXES {
            let expected = expect(PATIENTS, |p| {
                p.birth
                    .is_some_and(|b| date_matches(prefix, range_of(b), value))
            });
            let path = query("Patient", &[("birthdate", &format!("{prefix}{value}"))]);
            check(&server, &path, &expected).await;
        }
    }
    // Partial dates are ranges: 1980 holds May 1980 and 1980-05-06, not the other way round.
    let path = query("Patient", &[("birthdate", "1980")]);
    check(&server, &path, &set(["p1", "p2", "p3", "p10"])).await;
    let path = query("Patient", &[("birthdate", "1980-05")]);
    check(&server, &path, &set(["p1", "p3"])).await;
}
both!(date_prefixes_on_birthdate);

async fn date_prefixes_on_instants(server: Server) {
    load(&server).await;
    for value in [
        "2024",
        "2024-03",
        "2024-03-01",
        "2024-03-01T09:00:00Z",
        "2024-03-01T10:00:00+01:00",
        "2024-01-01",
        "2024-03-01T12:30:00Z",
    ] {
        for prefix in DATE_PREFIXES {
            let search = format!("{prefix}{value}");
            let expected = expect(APPOINTMENTS, |a| {
                a.start
                    .is_some_and(|s| date_matches(prefix, range_of(s), value))
            });
            check(
                &server,
                &query("Appointment", &[("date", &search)]),
                &expected,
            )
            .await;
            let expected = expect(SLOTS, |s| date_matches(prefix, range_of(s.start), value));
            check(&server, &query("Slot", &[("start", &search)]), &expected).await;
        }
    }
    // A '+' of a zone left unencoded in the URL reads as a space, and still works.
    check(
        &server,
        "Appointment?date=2024-03-01T14:30:00+02:00",
        &set(["a2"]),
    )
    .await;
    // Zones count: 14:30+02:00 is 12:30Z, 23:30-01:00 on New Year's Eve is 2024-01-01.
    let path = query("Appointment", &[("date", "2024-03-01T12:30:00Z")]);
    check(&server, &path, &set(["a2"])).await;
    let path = query("Appointment", &[("date", "2024-01-01")]);
    check(&server, &path, &set(["a5"])).await;
}
both!(date_prefixes_on_instants);

async fn date_prefixes_on_periods_with_open_ends(server: Server) {
    load(&server).await;
    for value in [
        "2024",
        "2024-03-01",
        "2024-03-01T12:00:00Z",
        "2023-06-02",
        "2023",
        "2022",
        "2030",
        "2021",
    ] {
        for prefix in DATE_PREFIXES {
            let expected = expect(ENCOUNTERS, |e| {
                e.period()
                    .is_some_and(|period| date_matches(prefix, period, value))
            });
            let path = query("Encounter", &[("date", &format!("{prefix}{value}"))]);
            check(&server, &path, &expected).await;
        }
    }
    // The encounter still in progress (no end) is after 2030 and not within 2024.
    let ids = search_ids(&server, &query("Encounter", &[("date", "gt2030")])).await;
    assert!(ids.contains(&"e2".to_owned()), "{ids:?}");
    let ids = search_ids(&server, &query("Encounter", &[("date", "2024")])).await;
    assert!(!ids.contains(&"e2".to_owned()), "{ids:?}");
}
both!(date_prefixes_on_periods_with_open_ends);

async fn date_approximately(server: Server) {
    load(&server).await;
    for value in ["1980-05-06", "2020", "1962-06"] {
        let expected = expect(PATIENTS, |p| {
            p.birth
                .is_some_and(|b| date_matches("ap", range_of(b), value))
        });
        let path = query("Patient", &[("birthdate", &format!("ap{value}"))]);
        check_selective(&server, &path, &expected, PATIENTS.len()).await;
    }
    let expected = expect(APPOINTMENTS, |a| {
        a.start
            .is_some_and(|s| date_matches("ap", range_of(s), "2030-06-01"))
    });
    assert!(expected.contains("a9") && !expected.contains("a1"));
    check(
        &server,
        &query("Appointment", &[("date", "ap2030-06-01")]),
        &expected,
    )
    .await;
}
both!(date_approximately);

async fn last_updated_compares_with_meta_last_updated(server: Server) {
    let loaded = load(&server).await;
    let times = &loaded.patient_updated;
    // The instants are all in the same form, so they compare as strings; a resource whose
    // lastUpdated reads the same as the search instant is within its millisecond.
    let middle = times.values().collect::<BTreeSet<_>>();
    let pivot = *middle
        .iter()
        .nth(middle.len() / 2)
        .expect("a middle instant");
    for prefix in ["gt", "ge", "lt", "le", "eq", ""] {
        let expected: BTreeSet<String> = times
            .iter()
            .filter(|(_, t)| match prefix {
                "gt" => *t > pivot,
                "ge" => *t >= pivot,
                "lt" => *t < pivot,
                "le" => *t <= pivot,
                _ => *t == pivot,
            })
            .map(|(id, _)| id.clone())
            .collect();
        let path = query("Patient", &[("_lastUpdated", &format!("{prefix}{pivot}"))]);
        check(&server, &path, &expected).await;
    }
    // A patient written now is after every fixture patient.
    let later = put_new(
        &server,
        &patient_json(&Pat {
            id: "later",
            ..NOBODY
        }),
    )
    .await;
    let last = times.values().max().expect("a patient");
    let expected: BTreeSet<String> = times
        .iter()
        .filter(|(_, t)| *t > last)
        .map(|(id, _)| id.clone())
        .chain([id_of(&later)])
        .collect();
    let path = query("Patient", &[("_lastUpdated", &format!("gt{last}"))]);
    check(&server, &path, &expected).await;
}
both!(last_updated_compares_with_meta_last_updated);

// ---------------------------------------------------------------------------------------
// reference
// ---------------------------------------------------------------------------------------

async fn reference_search_in_every_form(server: Server) {
    load(&server).await;
    let of_p1 = expect(APPOINTMENTS, |a| a.patient == Some("p1"));
    let absolute = format!("{}/Patient/p1", server.base);
    for (param, value) in [
        ("patient", "Patient/p1"),
        ("patient", "p1"),
        ("patient", absolute.as_str()),
        ("actor", "Patient/p1"),
        ("actor:Patient", "p1"),
        ("actor:Patient", "Patient/p1"),
    ] {
        let path = query("Appointment", &[(param, value)]);
        check_selective(&server, &path, &of_p1, APPOINTMENTS.len()).await;
    }
    let of_pr1 = expect(APPOINTMENTS, |a| a.practitioner == Some("pr1"));
    for (param, value) in [
        ("actor", "Practitioner/pr1"),
        ("actor:Practitioner", "pr1"),
        ("practitioner", "pr1"),
    ] {
        check(&server, &query("Appointment", &[(param, value)]), &of_pr1).await;
    }
    // The type modifier excludes other types with the same id.
    check(
        &server,
        &query("Appointment", &[("actor:Practitioner", "p1")]),
        &BTreeSet::new(),
    )
    .await;
    // A bare id on a parameter with a single target type.
    let schedule_base = format!("{}/Schedule/sch1", server.base);
    for value in ["sch1", "Schedule/sch1", schedule_base.as_str()] {
        let expected = expect(SLOTS, |s| s.schedule == "sch1");
        let path = query("Slot", &[("schedule", value)]);
        check_selective(&server, &path, &expected, SLOTS.len()).await;
    }
    let expected = expect(ENCOUNTERS, |e| e.appointment == Some("a1"));
    check(
        &server,
        &query("Encounter", &[("appointment", "a1")]),
        &expected,
    )
    .await;
    // Claim.patient with only an identifier is not a reference to p1.
    let expected = expect(CLAIMS, |c| c.patient_reference() == Some("p1"));
    check(&server, &query("Claim", &[("patient", "p1")]), &expected).await;
    // A reference by identifier.
    for (value, mrn) in [
        (format!("{MRN}|m2"), "m2"),
        (format!("{MRN}|m1"), "m1"),
        ("m1".to_owned(), "m1"),
    ] {
        let expected = expect(CLAIMS, |c| matches!(c.patient, Subject::Mrn(m) if m == mrn));
        check_selective(
            &server,
            &query("Claim", &[("patient:identifier", &value)]),
            &expected,
            CLAIMS.len(),
        )
        .await;
    }
    check(
        &server,
        &query(
            "Claim",
            &[("patient:identifier", "http://other.example|m1")],
        ),
        &BTreeSet::new(),
    )
    .await;
}
both!(reference_search_in_every_form);

/// References in the data are local when relative (`Patient/p2`): those are found by
/// `p2`, `Patient/p2` and by the absolute URL on this server's base. Absolute references are
/// kept as written and found by their URL: one to another server's `Patient/p2` is not this
/// server's p2, so no id search, compartment, chain or include takes it for p2.
async fn reference_search_relative_and_absolute(server: Server) {
    load(&server).await;
    let local = format!("{}/Patient/p2", server.base);
    let foreign = "http://elsewhere.example/fhir/Patient/p2";
    for (id, actor) in [("abs-local", local.as_str()), ("abs-foreign", foreign)] {
        let appointment = json!({
            "resourceType": "Appointment",
            "id": id,
            "status": "booked",
            "participant": [{"actor": reference(actor), "status": "accepted"}]
        });
        put_new(&server, &appointment).await;
    }
    let of_p2 = expect(APPOINTMENTS, |a| a.patient == Some("p2"));
    for value in ["p2", "Patient/p2"] {
        check(
            &server,
            &query("Appointment", &[("patient", value)]),
            &of_p2,
        )
        .await;
    }
    // The absolute URL on this base: the relative references and that URL as written.
    let mut with_local = of_p2.clone();
    with_local.insert("abs-local".into());
    check(
        &server,
        &query("Appointment", &[("patient", &local)]),
        &with_local,
    )
    .await;
    // Another server's patient: found by its URL, and not this server's p2.
    let ids = search_ids(&server, &query("Appointment", &[("patient", foreign)])).await;
    assert!(ids.contains(&"abs-foreign".to_owned()), "{ids:?}");
    check(&server, "Patient/p2/Appointment", &of_p2).await;
    let path = query("Appointment", &[("patient.name", "muller")]);
    let ids = search_ids(&server, &path).await;
    assert!(!ids.contains(&"abs-foreign".to_owned()), "{path}: {ids:?}");
    let path = query(
        "Appointment",
        &[("_id", "abs-foreign"), ("_include", "Appointment:patient")],
    );
    let (matches, included) = matches_and_includes(&server, &path).await;
    assert_eq!(matches, set(["abs-foreign"]));
    assert!(included.is_empty(), "{path}: {included:?}");
    let path = query(
        "Patient",
        &[("_id", "p2"), ("_revinclude", "Appointment:patient")],
    );
    let (_, included) = matches_and_includes(&server, &path).await;
    assert_eq!(
        included,
        typed("Appointment", of_p2.iter().map(String::as_str))
    );
}
both!(reference_search_relative_and_absolute);

/// A reference and a date that the index keeps as a pair (Slot schedule and start,
/// Appointment patient and date, Encounter patient and date) drive the query together; the
/// answers are those of the two clauses, with every date prefix, several targets, a bare
/// id, open-ended periods, and another clause beside them.
async fn reference_and_date_pairs_answer_like_both_clauses(server: Server) {
    load(&server).await;
    let windows: &[&[&str]] = &[
        &["2024-03-01"],
        &["ge2024-03-01", "lt2024-03-03"],
        &["ge2024-02-28T12:00:00Z", "le2024-03-01T09:30:00Z"],
        &["gt2024-03-15"],
        &["2024"],
        &["ne2024-03-01"],
        &["sa2024-02-29"],
        &["eb2024-03-02"],
    ];
    let matches = |range: (i64, i64), window: &[&str]| {
        window.iter().all(|bound| {
            let value = bound.trim_start_matches(char::is_alphabetic);
            let prefix = &bound[..bound.len() - value.len()];
            date_matches(prefix, range, value)
        })
    };
    for window in windows {
        let dates = |param: &'static str| -> Vec<(&str, &str)> {
            window.iter().map(|bound| (param, *bound)).collect()
        };
        for (reference, schedules) in [
            ("sch1", &["sch1"][..]),
            ("Schedule/sch2", &["sch2"]),
            ("sch1,Schedule/sch2", &["sch1", "sch2"]),
        ] {
            let expected = expect(SLOTS, |s| {
                schedules.contains(&s.schedule) && matches(range_of(s.start), window)
            });
            let mut params = dates("start");
            params.push(("schedule", reference));
            check(&server, &query("Slot", &params), &expected).await;
            let expected = expect(SLOTS, |s| {
                schedules.contains(&s.schedule)
                    && matches(range_of(s.start), window)
                    && s.status == "free"
            });
            params.push(("status", "free"));
            check(&server, &query("Slot", &params), &expected).await;
        }
        for (reference, patients) in [
            ("p1", &["p1"][..]),
            ("Patient/p2", &["p2"]),
            ("p1,p11", &["p1", "p11"]),
        ] {
            let expected = expect(APPOINTMENTS, |a| {
                a.patient.is_some_and(|p| patients.contains(&p))
                    && a.start.is_some_and(|s| matches(range_of(s), window))
            });
            let mut params = dates("date");
            params.push(("patient", reference));
            check(&server, &query("Appointment", &params), &expected).await;
            let expected = expect(ENCOUNTERS, |e| {
                e.patient.is_some_and(|p| patients.contains(&p))
                    && e.period().is_some_and(|period| matches(period, window))
            });
            check(&server, &query("Encounter", &params), &expected).await;
        }
    }
}
both!(reference_and_date_pairs_answer_like_both_clauses);

// ---------------------------------------------------------------------------------------
// number, quantity, uri
// ---------------------------------------------------------------------------------------

async fn number_and_quantity_prefixes(server: Server) {
    load(&server).await;
    for value in ["0.5", "0.50", "0.75", "0.3", "1"] {
        for prefix in ["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"] {
            let expected = expect(RISKS, |r| {
                r.probability
                    .is_some_and(|p| number_matches(prefix, p, value))
            });
            let path = query(
                "RiskAssessment",
                &[("probability", &format!("{prefix}{value}"))],
            );
            check(&server, &path, &expected).await;
        }
    }
    let path = query("RiskAssessment", &[("probability", "gt0.5")]);
    check(&server, &path, &set(["ra2", "ra4", "ra6"])).await;
    // Encounter.length is a Duration in UCUM minutes.
    for (search, system_and_code) in [
        ("gt40", ""),
        ("gt40", &*format!("|{UCUM}|min")),
        ("lt50", "||min"),
        ("30", ""),
        ("60.0", &*format!("|{UCUM}|min")),
        ("le2880", "||min"),
        ("ge45", &*format!("|{UCUM}|h")),
        ("ge45", "|http://other.example|min"),
    ] {
        let (prefix, number) =
            search.split_at(search.find(|c: char| c.is_ascii_digit()).unwrap_or(0));
        let unit_matches = system_and_code.is_empty()
            || system_and_code == format!("|{UCUM}|min")
            || system_and_code == "||min";
        let expected = expect(ENCOUNTERS, |e| {
            unit_matches
                && e.minutes
                    .is_some_and(|m| number_matches(prefix, f64::from(m), number))
        });
        let path = query(
            "Encounter",
            &[("length", &format!("{search}{system_and_code}"))],
        );
        check(&server, &path, &expected).await;
    }
}
both!(number_and_quantity_prefixes);

async fn uri_search_with_below_and_above(server: Server) {
    load(&server).await;
    let vip = format!("{PROFILE}vip-patient");
    let expected = expect(PATIENTS, |p| {
        p.profile_url().as_deref() == Some(vip.as_str())
    });
    check_selective(
        &server,
        &query("Patient", &[("_profile", &vip)]),
        &expected,
        PATIENTS.len(),
    )
    .await;
    // Uris are exact: no prefix match without :below.
    check(
        &server,
        &query("Patient", &[("_profile", PROFILE)]),
        &BTreeSet::new(),
    )
    .await;
    let expected = expect(PATIENTS, |p| {
        p.profile_url().is_some_and(|u| u.starts_with(PROFILE))
    });
    check_selective(
        &server,
        &query("Patient", &[("_profile:below", PROFILE)]),
        &expected,
        PATIENTS.len(),
    )
    .await;
    let above = format!("{PROFILE}vip-patient/extended");
    let expected = expect(PATIENTS, |p| {
        p.profile_url().is_some_and(|u| above.starts_with(&u))
    });
    assert_eq!(expected, set(["p1", "p7"]));
    check(
        &server,
        &query("Patient", &[("_profile:above", &above)]),
        &expected,
    )
    .await;
}
both!(uri_search_with_below_and_above);

// ---------------------------------------------------------------------------------------
// :missing, OR, AND
// ---------------------------------------------------------------------------------------

async fn missing_modifier_on_every_type(server: Server) {
    load(&server).await;
    let n = PATIENTS.len();
    // (parameter, whether a patient lacks the element)
    type Case = (&'static str, fn(&Pat) -> bool);
    let patient_cases: Vec<Case> = vec![
        ("family", |p| p.family.is_none()),
        ("name", |p| {
            p.family.is_none() && p.given.is_empty() && p.text.is_none()
        }),
        ("address", |p| p.line.is_none() && p.city.is_none()),
        ("gender", |p| p.gender.is_none()),
        ("active", |p| p.active.is_none()),
        ("birthdate", |p| p.birth.is_none()),
        ("organization", |p| p.organization.is_none()),
        ("identifier", |p| p.mrn.is_none() && p.ssn.is_none()),
    ];
    for (param, missing) in patient_cases {
        let absent = expect(PATIENTS, missing);
        let present = expect(PATIENTS, |p| !missing(p));
        let name = format!("{param}:missing");
        check_selective(&server, &query("Patient", &[(&name, "true")]), &absent, n).await;
        check_selective(&server, &query("Patient", &[(&name, "false")]), &present, n).await;
    }
    let absent = expect(APPOINTMENTS, |a| a.start.is_none());
    check(
        &server,
        &query("Appointment", &[("date:missing", "true")]),
        &absent,
    )
    .await;
    let absent = expect(ENCOUNTERS, |e| e.period().is_none());
    check(
        &server,
        &query("Encounter", &[("date:missing", "true")]),
        &absent,
    )
    .await;
    let absent = expect(ENCOUNTERS, |e| e.patient.is_none());
    check(
        &server,
        &query("Encounter", &[("subject:missing", "true")]),
        &absent,
    )
    .await;
    // A CodeableConcept with only text is present.
    let absent = expect(ENCOUNTERS, |e| {
        e.type_text.is_none() && e.type_coding.is_none()
    });
    assert_eq!(absent, set(["e6"]));
    check(
        &server,
        &query("Encounter", &[("type:missing", "true")]),
        &absent,
    )
    .await;
    let present = expect(ENCOUNTERS, |e| {
        e.type_text.is_some() || e.type_coding.is_some()
    });
    check(
        &server,
        &query("Encounter", &[("type:missing", "false")]),
        &present,
    )
    .await;
    // A Reference with only an identifier is present.
    check(
        &server,
        &query("Claim", &[("patient:missing", "true")]),
        &BTreeSet::new(),
    )
    .await;
    let all = expect(CLAIMS, |_| true);
    check(
        &server,
        &query("Claim", &[("patient:missing", "false")]),
        &all,
    )
    .await;
    get(&server, &query("Patient", &[("gender:missing", "maybe")]))
        .await
        .expect(400)
        .expect_outcome();
}
both!(missing_modifier_on_every_type);

async fn comma_is_or_and_repetition_is_and(server: Server) {
    load(&server).await;
    let n = PATIENTS.len();
    let path = query("Patient", &[("family", "smith,müller")]);
    let expected = expect(PATIENTS, |p| {
        any_starts_with(&p.strings("family"), "smith")
            || any_starts_with(&p.strings("family"), "müller")
    });
    check_selective(&server, &path, &expected, n).await;
    let path = query("Patient", &[("name", "anna"), ("name", "smith")]);
    check(&server, &path, &set(["p11"])).await;
    let path = query("Patient", &[("address-city", "spring"), ("gender", "male")]);
    let expected = expect(PATIENTS, |p| {
        any_starts_with(&p.strings("address-city"), "spring") && p.gender == Some("male")
    });
    check_selective(&server, &path, &expected, n).await;
    let path = query(
        "Patient",
        &[
            ("gender", "male,female"),
            ("birthdate", "ge1980"),
            ("birthdate", "lt1990"),
        ],
    );
    let expected = expect(PATIENTS, |p| {
        matches!(p.gender, Some("male" | "female"))
            && p.birth.is_some_and(|b| {
                date_matches("ge", range_of(b), "1980") && date_matches("lt", range_of(b), "1990")
            })
    });
    check_selective(&server, &path, &expected, n).await;
    // An escaped comma is part of the value.
    let path = query("Encounter", &[("type:text", r"checkup\, annual")]);
    check(&server, &path, &set(["e4"])).await;
    // `_id` takes a list too.
    let path = query("Patient", &[("_id", "p1,p3,nope")]);
    check(&server, &path, &set(["p1", "p3"])).await;
}
both!(comma_is_or_and_repetition_is_and);

// ---------------------------------------------------------------------------------------
// chains and _has
// ---------------------------------------------------------------------------------------

fn patient(id: &str) -> &'static Pat {
    PATIENTS
        .iter()
        .find(|p| p.id == id)
        .expect("a fixture patient")
}

fn organization(id: &str) -> &'static Org {
    ORGANIZATIONS
        .iter()
        .find(|o| o.id == id)
        .expect("a fixture organization")
}

async fn chained_search(server: Server) {
    load(&server).await;
    let n = APPOINTMENTS.len();
    // One level.
    for value in ["smith", "mül", "zoe"] {
        let expected = expect(APPOINTMENTS, |a| {
            a.patient
                .is_some_and(|p| any_starts_with(&patient(p).strings("name"), value))
        });
        for param in ["patient.name", "actor:Patient.name"] {
            check_selective(
                &server,
                &query("Appointment", &[(param, value)]),
                &expected,
                n,
            )
            .await;
        }
    }
    let expected = expect(APPOINTMENTS, |a| {
        a.patient
            .is_some_and(|p| patient(p).gender == Some("female"))
    });
    check_selective(
        &server,
        &query("Appointment", &[("patient.gender", "female")]),
        &expected,
        n,
    )
    .await;
    // Without a type modifier, every target type with the parameter: patients and
    // practitioners named Smith.
    let expected = expect(APPOINTMENTS, |a| {
        a.patient
            .is_some_and(|p| any_starts_with(&patient(p).strings("name"), "smith"))
            || a.practitioner == Some("pr1")
    });
    check_selective(
        &server,
        &query("Appointment", &[("actor.name", "smith")]),
        &expected,
        n,
    )
    .await;
    let expected = expect(APPOINTMENTS, |a| a.practitioner == Some("pr1"));
    check(
        &server,
        &query("Appointment", &[("actor:Practitioner.name", "smith")]),
        &expected,
    )
    .await;
    // Two and three levels.
    let org_named = |org: Option<&str>, prefix: &str| {
        org.is_some_and(|o| any_starts_with(&[organization(o).name], prefix))
    };
    let expected = expect(APPOINTMENTS, |a| {
        a.patient
            .is_some_and(|p| org_named(patient(p).organization, "acme"))
    });
    check_selective(
        &server,
        &query("Appointment", &[("patient.organization.name", "acme")]),
        &expected,
        n,
    )
    .await;
    let expected = expect(APPOINTMENTS, |a| {
        a.patient.is_some_and(|p| {
            patient(p)
                .organization
                .is_some_and(|o| org_named(organization(o).partof, "acme"))
        })
    });
    assert_eq!(expected, set(["a9"]));
    check(
        &server,
        &query(
            "Appointment",
            &[("patient.organization.partof.name", "acme")],
        ),
        &expected,
    )
    .await;
    // Chains to other types: Slot by its schedule's actor, Encounter by its appointment.
    let expected = expect(SLOTS, |s| s.schedule == "sch2");
    check(
        &server,
        &query("Slot", &[("schedule.actor", "Practitioner/pr2")]),
        &expected,
    )
    .await;
    let expected = expect(ENCOUNTERS, |e| {
        e.appointment.is_some_and(|id| {
            APPOINTMENTS
                .iter()
                .any(|a| a.id == id && a.status == "booked")
        })
    });
    check(
        &server,
        &query("Encounter", &[("appointment.status", "booked")]),
        &expected,
    )
    .await;
    // Chains to the target's id and identifier.
    let expected = expect(APPOINTMENTS, |a| a.patient == Some("p1"));
    check(
        &server,
        &query("Appointment", &[("patient._id", "p1")]),
        &expected,
    )
    .await;
    let mrn = format!("{MRN}|m1");
    check(
        &server,
        &query("Appointment", &[("patient.identifier", &mrn)]),
        &expected,
    )
    .await;
    // A chain through a parameter that is not a reference, or to no parameter, is an error.
    get(&server, &query("Appointment", &[("status.name", "x")]))
        .await
        .expect(400)
        .expect_outcome();
    get(&server, &query("Appointment", &[("patient.nope", "x")]))
        .await
        .expect(400)
        .expect_outcome();
}
both!(chained_search);

async fn reverse_chaining_with_has(server: Server) {
    load(&server).await;
    let booked_patients: BTreeSet<&str> = APPOINTMENTS
        .iter()
        .filter(|a| a.status == "booked")
        .filter_map(|a| a.patient)
        .collect();
    let expected = expect(PATIENTS, |p| booked_patients.contains(p.id));
    check_selective(
        &server,
        &query("Patient", &[("_has:Appointment:patient:status", "booked")]),
        &expected,
        PATIENTS.len(),
    )
    .await;
    // Nested: organizations managing a patient who has a booked appointment.
    let expected = expect(ORGANIZATIONS, |o| {
        PATIENTS
            .iter()
            .any(|p| p.organization == Some(o.id) && booked_patients.contains(p.id))
    });
    check_selective(
        &server,
        &query(
            "Organization",
            &[(
                "_has:Patient:organization:_has:Appointment:patient:status",
                "booked",
            )],
        ),
        &expected,
        ORGANIZATIONS.len(),
    )
    .await;
    // _has with a date criterion and combined with a normal one.
    let expected = expect(PATIENTS, |p| {
        p.gender == Some("female")
            && ENCOUNTERS.iter().any(|e| {
                e.patient == Some(p.id) && e.period().is_some_and(|r| date_matches("ge", r, "2024"))
            })
    });
    check(
        &server,
        &query(
            "Patient",
            &[
                ("_has:Encounter:patient:date", "ge2024"),
                ("gender", "female"),
            ],
        ),
        &expected,
    )
    .await;
    // Practitioners with a schedule that has a free slot (a _has through Schedule.actor).
    let expected = expect(PRACTITIONERS, |pr| {
        SCHEDULES.iter().any(|sch| {
            sch.practitioner == pr.id
                && SLOTS
                    .iter()
                    .any(|s| s.schedule == sch.id && s.status == "busy")
        })
    });
    check(
        &server,
        &query(
            "Practitioner",
            &[("_has:Schedule:actor:_has:Slot:schedule:status", "busy")],
        ),
        &expected,
    )
    .await;
    let expected = set([APPOINTMENTS[0].patient.expect("a patient")]);
    check(
        &server,
        &query(
            "Patient",
            &[("_has:Appointment:patient:_id", APPOINTMENTS[0].id)],
        ),
        &expected,
    )
    .await;
    get(
        &server,
        &query("Patient", &[("_has:Appointment:patient", "booked")]),
    )
    .await
    .expect(400)
    .expect_outcome();
}
both!(reverse_chaining_with_has);

// ---------------------------------------------------------------------------------------
// _include and _revinclude
// ---------------------------------------------------------------------------------------

/// Matches and included `(type, id)` of a search's first page, asserting every included
/// resource appears once and is not also a match.
async fn matches_and_includes(
    server: &Server,
    path: &str,
) -> (BTreeSet<String>, BTreeSet<(String, String)>) {
    let page = first_page(server, path).await;
    assert!(link(&page, "next").is_none(), "{path}: one page");
    let matches = entries_in_mode(&page, "match");
    let included = entries_in_mode(&page, "include");
    assert_eq!(
        page["total"].as_u64(),
        Some(matches.len() as u64),
        "{path}: includes are not counted"
    );
    assert_eq!(
        matches.len() + included.len(),
        entries(&page).len(),
        "{path}: every entry is a match or an include"
    );
    let included_set: BTreeSet<(String, String)> = included.iter().cloned().collect();
    assert_eq!(
        included_set.len(),
        included.len(),
        "{path}: an include came twice"
    );
    for m in &matches {
        assert!(
            !included_set.contains(m),
            "{path}: match {m:?} repeated as an include"
        );
    }
    for entry in entries(&page) {
        let resource = &entry["resource"];
        assert_eq!(
            entry["fullUrl"],
            format!(
                "{}/{}/{}",
                server.base,
                resource["resourceType"].as_str().unwrap(),
                id_of(resource)
            ),
        );
    }
    (
        matches.into_iter().map(|(_, id)| id).collect(),
        included_set,
    )
}

fn typed<'a>(
    resource_type: &str,
    ids: impl IntoIterator<Item = &'a str>,
) -> BTreeSet<(String, String)> {
    ids.into_iter()
        .map(|id| (resource_type.to_owned(), id.to_owned()))
        .collect()
}

async fn include_and_revinclude(server: Server) {
    load(&server).await;
    let booked: Vec<&Appt> = APPOINTMENTS
        .iter()
        .filter(|a| a.status == "booked")
        .collect();
    let booked_ids: BTreeSet<String> = booked.iter().map(|a| a.id.to_owned()).collect();
    let path = query(
        "Appointment",
        &[("status", "booked"), ("_include", "Appointment:patient")],
    );
    let (matches, included) = matches_and_includes(&server, &path).await;
    assert_eq!(matches, booked_ids);
    assert_eq!(
        included,
        typed("Patient", booked.iter().filter_map(|a| a.patient))
    );
    let path = query(
        "Appointment",
        &[
            ("status", "booked"),
            ("_include", "Appointment:actor:Practitioner"),
        ],
    );
    let (matches, included) = matches_and_includes(&server, &path).await;
    assert_eq!(matches, booked_ids);
    assert_eq!(
        included,
        typed("Practitioner", booked.iter().filter_map(|a| a.practitioner))
    );
    // Patients through two parameters, and practitioners: each once.
    let path = query(
        "Appointment",
        &[
            ("status", "booked"),
            ("_include", "Appointment:patient"),
            ("_include", "Appointment:actor"),
        ],
    );
    let (_, included) = matches_and_includes(&server, &path).await;
    let mut expected = typed("Patient", booked.iter().filter_map(|a| a.patient));
    expected.extend(typed(
        "Practitioner",
        booked.iter().filter_map(|a| a.practitioner),
    ));
    assert_eq!(included, expected);
    // _revinclude: encounters of the appointments; appointments of a patient.
    let path = query(
        "Appointment",
        &[
            ("_id", "a1,a2,a3"),
            ("_revinclude", "Encounter:appointment"),
        ],
    );
    let (matches, included) = matches_and_includes(&server, &path).await;
    assert_eq!(matches, set(["a1", "a2", "a3"]));
    let expected = ENCOUNTERS
        .iter()
        .filter(|e| matches!(e.appointment, Some("a1" | "a2" | "a3")))
        .map(|e| e.id);
    assert_eq!(included, typed("Encounter", expected));
    let path = query(
        "Patient",
        &[("_id", "p1"), ("_revinclude", "Appointment:patient")],
    );
    let (matches, included) = matches_and_includes(&server, &path).await;
    assert_eq!(matches, set(["p1"]));
    let expected = APPOINTMENTS
        .iter()
        .filter(|a| a.patient == Some("p1"))
        .map(|a| a.id);
    assert_eq!(included, typed("Appointment", expected));
    // A resource that is already a match is not included again.
    let path = query(
        "Organization",
        &[("name", "acme"), ("_include", "Organization:partof")],
    );
    let (matches, included) = matches_and_includes(&server, &path).await;
    assert_eq!(matches, set(["o1", "o4"]));
    assert!(included.is_empty(), "{included:?}");
    // An include of another type than searched needs :iterate.
    get(
        &server,
        &query("Appointment", &[("_include", "Patient:organization")]),
    )
    .await
    .expect(400)
    .expect_outcome();
}
both!(include_and_revinclude);

async fn include_iterate_and_wildcard(server: Server) {
    load(&server).await;
    let booked: Vec<&Appt> = APPOINTMENTS
        .iter()
        .filter(|a| a.status == "booked")
        .collect();
    let path = query(
        "Appointment",
        &[
            ("status", "booked"),
            ("_include", "Appointment:patient"),
            ("_include:iterate", "Patient:organization"),
        ],
    );
    let (_, included) = matches_and_includes(&server, &path).await;
    let mut expected = typed("Patient", booked.iter().filter_map(|a| a.patient));
    expected.extend(typed(
        "Organization",
        booked
            .iter()
            .filter_map(|a| a.patient)
            .filter_map(|p| patient(p).organization),
    ));
    assert_eq!(included, expected);
    // Without :iterate, the second include does not follow the included patients.
    let path = query(
        "Appointment",
        &[("status", "booked"), ("_include", "Appointment:patient")],
    );
    let (_, included) = matches_and_includes(&server, &path).await;
    assert!(included.iter().all(|(t, _)| t == "Patient"));
    // _revinclude:iterate: the patient's appointments, then their encounters.
    let path = query(
        "Patient",
        &[
            ("_id", "p1"),
            ("_revinclude", "Appointment:patient"),
            ("_revinclude:iterate", "Encounter:appointment"),
        ],
    );
    let (_, included) = matches_and_includes(&server, &path).await;
    let appointments: Vec<&str> = APPOINTMENTS
        .iter()
        .filter(|a| a.patient == Some("p1"))
        .map(|a| a.id)
        .collect();
    let mut expected = typed("Appointment", appointments.iter().copied());
    expected.extend(typed(
        "Encounter",
        ENCOUNTERS
            .iter()
            .filter(|e| e.appointment.is_some_and(|a| appointments.contains(&a)))
            .map(|e| e.id),
    ));
    assert_eq!(included, expected);
    // `*`: every reference parameter of the searched type (those that resolve here).
    for wildcard in ["*", "Appointment:*"] {
        let path = query("Appointment", &[("_id", "a1"), ("_include", wildcard)]);
        let (matches, included) = matches_and_includes(&server, &path).await;
        assert_eq!(matches, set(["a1"]));
        let mut expected = typed("Patient", ["p1"]);
        expected.extend(typed("Practitioner", ["pr1"]));
        expected.extend(typed("Slot", ["s1"]));
        assert_eq!(included, expected, "_include={wildcard}");
    }
}
both!(include_iterate_and_wildcard);

// ---------------------------------------------------------------------------------------
// _sort
// ---------------------------------------------------------------------------------------

/// One sort key of a fixture patient: `None` when it has no value (sorted last).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Text(String),
    Int(i64),
}

/// Orders patients by keys (each ascending or descending, missing values last), then `_id`.
/// A sort key of a fixture patient: descending or not, and its value.
type SortBy<'a> = (bool, &'a dyn Fn(&Pat) -> Option<Key>);

fn sorted_patients(keys: &[SortBy]) -> Vec<String> {
    let mut patients: Vec<&Pat> = PATIENTS.iter().collect();
    patients.sort_by(|a, b| {
        for (descending, key) in keys {
            let ordering = match (key(a), key(b)) {
                (None, None) => std::cmp::Ordering::Equal,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(_), None) => std::cmp::Ordering::Less,
                (Some(x), Some(y)) if *descending => y.cmp(&x),
                (Some(x), Some(y)) => x.cmp(&y),
            };
            if ordering.is_ne() {
                return ordering;
            }
        }
        a.id.cmp(b.id)
    });
    patients.iter().map(|p| p.id.to_owned()).collect()
}

async fn sort_by_each_kind_of_key(server: Server) {
    load(&server).await;
    let family = |p: &Pat| p.family.map(|f| Key::Text(fold(f)));
    let gender = |p: &Pat| p.gender.map(|g| Key::Text(g.to_owned()));
    // Ascending by the start of the birth date's range, descending by its end.
    let birth_low = |p: &Pat| p.birth.map(|b| Key::Int(range_of(b).0));
    let birth_high = |p: &Pat| p.birth.map(|b| Key::Int(range_of(b).1));
    // A string parameter with several values: its lowest value ascending, highest descending.
    let name_low = |p: &Pat| {
        p.strings("name")
            .iter()
            .map(|s| fold(s))
            .min()
            .map(Key::Text)
    };
    let name_high = |p: &Pat| {
        p.strings("name")
            .iter()
            .map(|s| fold(s))
            .max()
            .map(Key::Text)
    };
    let id = |p: &Pat| Some(Key::Text(p.id.to_owned()));
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("family,_id", sorted_patients(&[(false, &family)])),
        ("-family,_id", sorted_patients(&[(true, &family)])),
        ("birthdate,_id", sorted_patients(&[(false, &birth_low)])),
        ("-birthdate,_id", sorted_patients(&[(true, &birth_high)])),
        ("gender,_id", sorted_patients(&[(false, &gender)])),
        ("_id", sorted_patients(&[(false, &id)])),
        ("-_id", sorted_patients(&[(true, &id)])),
        ("name,_id", sorted_patients(&[(false, &name_low)])),
        ("-name,_id", sorted_patients(&[(true, &name_high)])),
        (
            "gender,-birthdate,_id",
            sorted_patients(&[(false, &gender), (true, &birth_high)]),
        ),
        (
            "-gender,family,-_id",
            sorted_patients(&[(true, &gender), (false, &family), (true, &id)]),
        ),
    ];
    for (sort, expected) in cases {
        for count in ["100", "4"] {
            let path = query("Patient", &[("_sort", sort), ("_count", count)]);
            assert_eq!(search_ids(&server, &path).await, expected, "GET {path}");
        }
    }
    // Sorting an Appointment search by an instant, with criteria.
    let mut booked: Vec<&Appt> = APPOINTMENTS
        .iter()
        .filter(|a| a.status == "booked")
        .collect();
    booked.sort_by_key(|a| std::cmp::Reverse(a.start.map(|s| range_of(s).0)));
    let expected: Vec<String> = booked.iter().map(|a| a.id.to_owned()).collect();
    let path = query(
        "Appointment",
        &[("status", "booked"), ("_sort", "-date"), ("_count", "2")],
    );
    assert_eq!(search_ids(&server, &path).await, expected, "GET {path}");
}
both!(sort_by_each_kind_of_key);

async fn sort_by_last_updated(server: Server) {
    let loaded = load(&server).await;
    // Rewrite the patients in reverse id order, so the write order is not the load order.
    let mut updated: BTreeMap<String, String> = BTreeMap::new();
    for p in PATIENTS.iter().rev() {
        let mut body = patient_json(p);
        body["language"] = json!("en");
        let stored = put_update(&server, &body).await;
        updated.insert(
            p.id.to_owned(),
            stored["meta"]["lastUpdated"].as_str().unwrap().to_owned(),
        );
    }
    assert_eq!(updated.len(), loaded.patient_updated.len());
    for (sort, descending) in [("_lastUpdated", false), ("-_lastUpdated", true)] {
        let path = query("Patient", &[("_sort", sort), ("_count", "5")]);
        let ids = search_ids(&server, &path).await;
        assert_eq!(
            ids.iter().cloned().collect::<BTreeSet<_>>(),
            updated.keys().cloned().collect::<BTreeSet<_>>()
        );
        let times: Vec<&String> = ids.iter().map(|id| &updated[id]).collect();
        for pair in times.windows(2) {
            let in_order = if descending {
                pair[0] >= pair[1]
            } else {
                pair[0] <= pair[1]
            };
            assert!(in_order, "GET {path}: {ids:?} has times {times:?}");
        }
    }
    for bad in ["nope", "-nope", "_text", "identifier:text"] {
        get(&server, &query("Patient", &[("_sort", bad)]))
            .await
            .expect(400)
            .expect_outcome();
    }
}
both!(sort_by_last_updated);

// ---------------------------------------------------------------------------------------
// paging and totals
// ---------------------------------------------------------------------------------------

async fn paging_visits_every_match_once_both_ways(server: Server) {
    load(&server).await;
    for params in [
        vec![("_count", "3")],
        vec![("gender", "female,male"), ("_count", "2")],
        vec![("_sort", "-birthdate"), ("_count", "5")],
        vec![("_sort", "family"), ("_count", "1")],
    ] {
        let path = query("Patient", &params);
        let count: usize = params
            .iter()
            .find(|(k, _)| *k == "_count")
            .map(|(_, v)| v.parse().unwrap())
            .unwrap();
        let all = expect(PATIENTS, |p| {
            !params.iter().any(|(k, _)| *k == "gender")
                || matches!(p.gender, Some("female" | "male"))
        });
        let pages = search_pages(&server, &path).await;
        assert!(pages.len() > 1, "{path}: several pages");
        let mut forward: Vec<Vec<String>> = Vec::new();
        for page in &pages {
            let ids = match_ids(page);
            assert!(
                !ids.is_empty() && ids.len() <= count,
                "{path}: page size {}",
                ids.len()
            );
            assert_eq!(
                page["total"].as_u64(),
                Some(all.len() as u64),
                "{path}: total"
            );
            for entry in entries(page) {
                let resource = &entry["resource"];
                assert_eq!(
                    entry["fullUrl"],
                    format!("{}/Patient/{}", server.base, id_of(resource))
                );
            }
            let first = link(page, "first").expect("a first link");
            let first_page = send(server.client.get(&first)).await.expect(200).body;
            assert_eq!(
                match_ids(&first_page),
                match_ids(&pages[0]),
                "{path}: first link"
            );
            forward.push(ids);
        }
        let flat: Vec<String> = forward.iter().flatten().cloned().collect();
        let unique: BTreeSet<String> = flat.iter().cloned().collect();
        assert_eq!(unique.len(), flat.len(), "{path}: no match twice");
        assert_eq!(unique, all, "{path}: every match");
        assert!(
            link(&pages[0], "previous").is_none(),
            "{path}: no previous on page 1"
        );
        // Walk back from the last page: the same pages in reverse.
        let mut backward: Vec<Vec<String>> = vec![match_ids(pages.last().unwrap())];
        let mut page = pages.last().unwrap().clone();
        while let Some(previous) = link(&page, "previous") {
            assert!(
                backward.len() <= pages.len(),
                "{path}: previous links never end"
            );
            page = send(server.client.get(&previous)).await.expect(200).body;
            backward.push(match_ids(&page));
        }
        backward.reverse();
        assert_eq!(
            backward, forward,
            "{path}: previous links walk back over the same pages"
        );
        // The self link of a later page reproduces it.
        let second_self = link(&pages[1], "self").expect("a self link");
        let again = send(server.client.get(&second_self)).await.expect(200).body;
        assert_eq!(match_ids(&again), forward[1]);
    }
    // A broken cursor is a 400.
    for bad in ["zz", "123", "6e6f7065"] {
        get(&server, &query("Patient", &[("_page", bad)]))
            .await
            .expect(400)
            .expect_outcome();
    }
}
both!(paging_visits_every_match_once_both_ways);

/// Creates Patients of `family` while a search of that family is paged: no entry comes twice
/// and none that existed at the start is skipped.
async fn paging_is_stable_while_resources_are_created(server: Server) {
    for (family, sort) in [
        ("Stable-plain", None),
        ("Stable-given", Some("given")),
        ("Stable-birth", Some("-birthdate")),
    ] {
        let mut initial = BTreeSet::new();
        for i in 0..10 {
            let p = json!({
                "resourceType": "Patient",
                "name": [{"family": family, "given": [format!("G{:02}", (i * 7) % 10)]}],
                "birthDate": format!("19{:02}-01-01", 50 + (i * 3) % 10)
            });
            initial.insert(id_of(&server.create(&server.base, &p).await));
        }
        let mut params = vec![("family", family), ("_count", "3")];
        if let Some(sort) = sort {
            params.push(("_sort", sort));
        }
        let path = query("Patient", &params);
        let mut page = first_page(&server, &path).await;
        let mut seen: Vec<String> = Vec::new();
        let mut created = BTreeSet::new();
        let mut round = 0;
        loop {
            seen.extend(match_ids(&page));
            // While the first pages are read, new matches that sort before, between and after
            // the ones already seen.
            let new_matches: &[&str] = if round < 9 { &["A", "G05", "Z"] } else { &[] };
            for given in new_matches {
                round += 1;
                let p = json!({
                    "resourceType": "Patient",
                    "name": [{"family": family, "given": [given]}],
                    "birthDate": format!("19{:02}-06-01", 40 + round % 30)
                });
                created.insert(id_of(&server.create(&server.base, &p).await));
            }
            match link(&page, "next") {
                Some(next) => page = send(server.client.get(&next)).await.expect(200).body,
                None => break,
            }
            assert!(seen.len() < 1000, "{path}: paging never ends");
        }
        let unique: BTreeSet<String> = seen.iter().cloned().collect();
        assert_eq!(
            unique.len(),
            seen.len(),
            "{path}: an entry came twice: {seen:?}"
        );
        assert!(
            unique.is_superset(&initial),
            "{path}: a match present at the start was skipped"
        );
        let known: BTreeSet<String> = initial.union(&created).cloned().collect();
        assert!(unique.is_subset(&known), "{path}: only matches");
    }
}
both!(paging_is_stable_while_resources_are_created);

async fn total_modes(server: Server) {
    load(&server).await;
    let females = expect(PATIENTS, |p| p.gender == Some("female")).len() as u64;
    let base = [("gender", "female"), ("_count", "2")];
    let with = |extra: (&'static str, &'static str)| {
        let mut params = base.to_vec();
        params.push(extra);
        query("Patient", &params)
    };
    // Default: present and right, on the first and later pages.
    let pages = search_pages(&server, &query("Patient", &base)).await;
    assert!(pages.len() > 1);
    for page in &pages {
        assert_eq!(page["total"].as_u64(), Some(females));
    }
    for page in search_pages(&server, &with(("_total", "accurate"))).await {
        assert_eq!(page["total"].as_u64(), Some(females));
    }
    for page in search_pages(&server, &with(("_total", "none"))).await {
        assert!(page.get("total").is_none(), "_total=none: {page}");
    }
    // _summary=count: the total, no entries.
    let page = first_page(&server, &with(("_summary", "count"))).await;
    assert_eq!(page["total"].as_u64(), Some(females));
    assert!(entries(&page).is_empty(), "{page}");
    let page = first_page(&server, &query("Appointment", &[("_summary", "count")])).await;
    assert_eq!(page["total"].as_u64(), Some(APPOINTMENTS.len() as u64));
    // A search with no match has total 0.
    let page = first_page(&server, &query("Patient", &[("family", "nobody")])).await;
    assert_eq!(page["total"].as_u64(), Some(0));
    get(&server, &with(("_total", "some")))
        .await
        .expect(400)
        .expect_outcome();
}
both!(total_modes);

// ---------------------------------------------------------------------------------------
// _summary and _elements
// ---------------------------------------------------------------------------------------

fn is_subsetted(resource: &Value) -> bool {
    resource["meta"]["tag"]
        .as_array()
        .is_some_and(|tags| tags.iter().any(|t| t["code"] == "SUBSETTED"))
}

fn keys(resource: &Value) -> BTreeSet<String> {
    resource
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect()
}

async fn only_resource(server: &Server, path: &str) -> Value {
    let page = first_page(server, path).await;
    let found = entries(&page);
    assert_eq!(found.len(), 1, "{path}: one entry");
    found[0]["resource"].clone()
}

async fn summary_and_elements(server: Server) {
    load(&server).await;
    let full = get(&server, "Patient/p1").await.expect(200).body;
    for element in ["contact", "photo", "text", "name", "birthDate"] {
        assert!(full.get(element).is_some(), "the fixture has {element}");
    }
    assert!(!is_subsetted(&full));
    // _summary=true: summary elements only (name is one; contact and photo are not).
    let summary = only_resource(
        &server,
        &query("Patient", &[("_id", "p1"), ("_summary", "true")]),
    )
    .await;
    for element in [
        "name",
        "birthDate",
        "gender",
        "identifier",
        "active",
        "managingOrganization",
    ] {
        assert_eq!(
            summary[element], full[element],
            "_summary=true keeps {element}"
        );
    }
    for element in ["contact", "photo"] {
        assert!(
            summary.get(element).is_none(),
            "_summary=true drops {element}: {summary}"
        );
    }
    assert!(is_subsetted(&summary), "{summary}");
    assert_eq!(summary["id"], "p1");
    // _summary=text: text, id, meta and mandatory elements.
    let text = only_resource(
        &server,
        &query("Patient", &[("_id", "p1"), ("_summary", "text")]),
    )
    .await;
    assert_eq!(text["text"], full["text"]);
    assert!(
        keys(&text).is_subset(&set(["resourceType", "id", "meta", "text"])),
        "{text}"
    );
    assert!(is_subsetted(&text));
    // _summary=data: everything but the text.
    let data = only_resource(
        &server,
        &query("Patient", &[("_id", "p1"), ("_summary", "data")]),
    )
    .await;
    assert!(data.get("text").is_none());
    for element in ["contact", "photo", "name"] {
        assert_eq!(
            data[element], full[element],
            "_summary=data keeps {element}"
        );
    }
    assert!(is_subsetted(&data));
    // _summary=false: the whole resource.
    let whole = only_resource(
        &server,
        &query("Patient", &[("_id", "p1"), ("_summary", "false")]),
    )
    .await;
    assert_eq!(whole, full);
    // _elements: those, plus id, meta and resourceType.
    let some = only_resource(
        &server,
        &query("Patient", &[("_id", "p1"), ("_elements", "name,birthDate")]),
    )
    .await;
    assert_eq!(
        keys(&some),
        set(["resourceType", "id", "meta", "name", "birthDate"])
    );
    assert_eq!(some["name"], full["name"]);
    assert!(is_subsetted(&some));
    // ... and the mandatory elements (Appointment.status and .participant).
    let appointment = only_resource(
        &server,
        &query("Appointment", &[("_id", "a1"), ("_elements", "start")]),
    )
    .await;
    assert_eq!(
        keys(&appointment),
        set([
            "resourceType",
            "id",
            "meta",
            "start",
            "status",
            "participant"
        ])
    );
    // Over several pages too.
    for page in search_pages(
        &server,
        &query("Patient", &[("_elements", "gender"), ("_count", "4")]),
    )
    .await
    {
        for entry in entries(&page) {
            let resource = &entry["resource"];
            assert!(
                keys(resource).is_subset(&set(["resourceType", "id", "meta", "gender"])),
                "{resource}"
            );
        }
    }
    get(&server, &query("Patient", &[("_summary", "maybe")]))
        .await
        .expect(400)
        .expect_outcome();
}
both!(summary_and_elements);

// ---------------------------------------------------------------------------------------
// POST _search, compartments, conditional interactions
// ---------------------------------------------------------------------------------------

async fn post_search_matches_get(server: Server) {
    load(&server).await;
    for params in [
        vec![("name", "mül"), ("gender", "female,male")],
        vec![
            ("birthdate", "ge1980-05"),
            ("_sort", "-birthdate"),
            ("_count", "2"),
        ],
        vec![("address-city", "spring"), ("_count", "1")],
        vec![("identifier", &*format!("{MRN}|m1"))],
    ] {
        let get_ids = search_ids(&server, &query("Patient", &params)).await;
        let form = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&params)
            .finish();
        let reply = send(
            server
                .client
                .post(server.url("Patient/_search"))
                .header("content-type", FORM)
                .body(form.clone()),
        )
        .await
        .expect(200);
        assert_eq!(reply.body["type"], "searchset");
        let mut post_ids = match_ids(&reply.body);
        let mut page = reply.body;
        while let Some(next) = link(&page, "next") {
            page = send(server.client.get(&next)).await.expect(200).body;
            post_ids.extend(match_ids(&page));
        }
        assert_eq!(post_ids, get_ids, "POST {form}");
        assert!(!get_ids.is_empty(), "{form}");
    }
    // The body must be a form.
    send(
        server
            .client
            .post(server.url("Patient/_search"))
            .header("content-type", JSON)
            .body("{}"),
    )
    .await
    .expect(415)
    .expect_outcome();
    // Parameters in the URL and in the body add up.
    let reply = send(
        server
            .client
            .post(server.url("Patient/_search?gender=female"))
            .header("content-type", FORM)
            .body("name=smith"),
    )
    .await
    .expect(200);
    let ids: BTreeSet<String> = match_ids(&reply.body).into_iter().collect();
    assert_eq!(ids, set(["p11"]));
}
both!(post_search_matches_get);

async fn compartment_search(server: Server) {
    load(&server).await;
    for id in ["p1", "p2", "p3"] {
        let expected = expect(APPOINTMENTS, |a| a.patient == Some(id));
        check(&server, &format!("Patient/{id}/Appointment"), &expected).await;
        let expected = expect(ENCOUNTERS, |e| e.patient == Some(id));
        check(&server, &format!("Patient/{id}/Encounter"), &expected).await;
        // Claim.patient or Claim.payee; a Claim naming the patient by identifier only is not in
        // the compartment.
        let expected = expect(CLAIMS, |c| {
            c.patient_reference() == Some(id) || c.payee == Some(id)
        });
        check(&server, &format!("Patient/{id}/Claim"), &expected).await;
        let expected = expect(COVERAGES, |c| c.beneficiary == id);
        check(&server, &format!("Patient/{id}/Coverage"), &expected).await;
    }
    assert_eq!(
        expect(CLAIMS, |c| c.patient_reference() == Some("p1")
            || c.payee == Some("p1")),
        set(["c1", "c3"])
    );
    // With criteria, sorting and paging.
    let expected = expect(APPOINTMENTS, |a| {
        a.patient == Some("p1") && a.status == "booked"
    });
    check(&server, "Patient/p1/Appointment?status=booked", &expected).await;
    let path = "Patient/p1/Appointment?_sort=date&_count=1";
    let mut appointments: Vec<&Appt> = APPOINTMENTS
        .iter()
        .filter(|a| a.patient == Some("p1"))
        .collect();
    appointments.sort_by_key(|a| (a.start.is_none(), a.start.map(|s| range_of(s).0)));
    let expected: Vec<String> = appointments.iter().map(|a| a.id.to_owned()).collect();
    assert_eq!(search_ids(&server, path).await, expected);
    let page = first_page(&server, path).await;
    assert!(
        link(&page, "self")
            .unwrap()
            .starts_with(&format!("{}/Patient/p1/Appointment?", server.base))
    );
    // Nothing for an unknown patient; Organization is not in the Patient compartment.
    check(&server, "Patient/nobody/Appointment", &BTreeSet::new()).await;
    get(&server, "Patient/p1/Organization")
        .await
        .expect(404)
        .expect_outcome();
}
both!(compartment_search);

async fn conditional_writes_with_search_criteria(server: Server) {
    load(&server).await;
    let unique = json!({
        "resourceType": "Patient",
        "name": [{"family": "Unique"}],
        "birthDate": "1970-01-01"
    });
    let create = |criteria: &str| {
        server
            .client
            .post(server.url("Patient"))
            .header("content-type", JSON)
            .header("if-none-exist", criteria.to_owned())
            .body(unique.to_string())
    };
    let criteria = "name=unique&birthdate=1970-01-01";
    let first = send(create(criteria)).await.expect(201).body;
    let again = send(create(criteria)).await.expect(200).body;
    assert_eq!(id_of(&again), id_of(&first));
    check(
        &server,
        &query("Patient", &[("name", "unique")]),
        &set([id_of(&first).as_str()]),
    )
    .await;
    // A second match makes the criteria ambiguous.
    let mut twin = unique.clone();
    twin["gender"] = json!("male");
    server.create(&server.base, &twin).await;
    send(create(criteria)).await.expect(412).expect_outcome();
    // Criteria with unknown parameters are refused rather than matching everything.
    send(create("nonsense=1"))
        .await
        .expect(400)
        .expect_outcome();

    // Conditional update by family and gender: create, then update the one match.
    let put = |family: &str, body: &Value| {
        server
            .client
            .put(server.url(&query(
                "Patient",
                &[("family", family), ("gender", "female")],
            )))
            .header("content-type", JSON)
            .body(body.to_string())
    };
    let body =
        json!({"resourceType": "Patient", "name": [{"family": "Condup"}], "gender": "female"});
    let created = send(put("condup", &body)).await.expect(201).body;
    let mut changed = body.clone();
    changed["birthDate"] = json!("2000-02-02");
    let updated = send(put("condup", &changed)).await.expect(200).body;
    assert_eq!(id_of(&updated), id_of(&created));
    assert_eq!(updated["meta"]["versionId"], "2");
    check(
        &server,
        &query(
            "Patient",
            &[("family", "condup"), ("birthdate", "2000-02-02")],
        ),
        &set([id_of(&created).as_str()]),
    )
    .await;
    // An existing fixture patient matches by family and gender: Smith, female is p11 only.
    let mut smith = patient_json(patient("p11"));
    smith.as_object_mut().unwrap().remove("id");
    smith["birthDate"] = json!("1975-12-30");
    let reply = send(put("smith", &smith)).await.expect(200).body;
    assert_eq!(id_of(&reply), "p11");
    // Two matches: 412.
    server
        .create(
            &server.base,
            &json!({"resourceType": "Patient", "name": [{"family": "Condup"}], "gender": "female"}),
        )
        .await;
    send(put("condup", &changed))
        .await
        .expect(412)
        .expect_outcome();

    // Conditional delete: refuses two matches, deletes one.
    let delete = |family: &str| {
        server.client.delete(server.url(&query(
            "Patient",
            &[("family", family), ("gender", "female")],
        )))
    };
    send(delete("condup")).await.expect(412).expect_outcome();
    let reply = send(server.client.delete(server.url(&query(
        "Patient",
        &[("family", "unique"), ("gender", "male")],
    ))))
    .await;
    assert!(matches!(reply.status, 200 | 204), "{}", reply.text);
    let expected = set([id_of(&first).as_str()]);
    check(
        &server,
        &query("Patient", &[("family", "unique")]),
        &expected,
    )
    .await;
}
both!(conditional_writes_with_search_criteria);

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

async fn malformed_searches_are_400_and_unknown_parameters_ignored(server: Server) {
    load(&server).await;
    for (param, value) in [
        ("birthdate", "notadate"),
        ("birthdate", "gt2020-13"),
        ("name:nonsense", "x"),
        ("gender:exact", "male"),
        ("_sort", "nope"),
        ("_page", "not-a-cursor"),
        ("_count", "many"),
        ("_include", "Appointment"),
        ("probability", "high"),
        ("organization", "a b"),
        ("_id", "a b"),
    ] {
        let resource_type = if param == "probability" {
            "RiskAssessment"
        } else {
            "Patient"
        };
        get(&server, &query(resource_type, &[(param, value)]))
            .await
            .expect(400)
            .expect_outcome();
    }
    // An unknown parameter is ignored, and left out of the self link.
    let expected = expect(PATIENTS, |p| p.gender == Some("female"));
    let path = query("Patient", &[("foo", "bar"), ("gender", "female")]);
    check(&server, &path, &expected).await;
    let page = first_page(&server, &path).await;
    let self_link = link(&page, "self").expect("a self link");
    assert!(!self_link.contains("foo"), "{self_link}");
    assert!(self_link.contains("gender=female"), "{self_link}");
    // ... unless the client asks for strict handling.
    let strict = send(
        server
            .client
            .get(server.url(&path))
            .header("prefer", "handling=strict"),
    )
    .await
    .expect(400);
    strict.expect_outcome();
    let lenient = send(
        server
            .client
            .get(server.url(&path))
            .header("prefer", "handling=lenient"),
    )
    .await
    .expect(200);
    assert_eq!(
        match_ids(&lenient.body)
            .into_iter()
            .collect::<BTreeSet<_>>(),
        expected
    );
}
both!(malformed_searches_are_400_and_unknown_parameters_ignored);

async fn injected_sql_is_just_a_value(server: Server) {
    load(&server).await;
    for (param, value) in [
        ("name", "x'); DROP TABLE resources;--"),
        ("name:contains", "%' OR '1'='1"),
        ("name:exact", "' OR 1=1 --"),
        ("identifier", "x|y' OR '1'='1"),
        ("_profile", "'; DELETE FROM idx_string; --"),
        ("family", "_%"),
        ("name:contains", "_"),
        ("name:contains", "%"),
        ("name:contains", "\\"),
    ] {
        let page = first_page(&server, &query("Patient", &[(param, value)])).await;
        assert_eq!(page["total"].as_u64(), Some(0), "{param}={value}");
        assert!(entries(&page).is_empty());
    }
    // Everything is still there and searchable.
    let page = first_page(&server, &query("Patient", &[("_summary", "count")])).await;
    assert_eq!(page["total"].as_u64(), Some(PATIENTS.len() as u64));
    let expected = expect(PATIENTS, |p| any_starts_with(&p.strings("name"), "mül"));
    check(&server, &query("Patient", &[("name", "mül")]), &expected).await;
    get(&server, "Patient/p1").await.expect(200);
}
both!(injected_sql_is_just_a_value);

// ---------------------------------------------------------------------------------------
// The index follows writes
// ---------------------------------------------------------------------------------------

async fn index_follows_updates_deletes_and_recreation(server: Server) {
    load(&server).await;
    let by_family = |family: &str| query("Patient", &[("family", family)]);
    let mut body = json!({"resourceType": "Patient", "id": "moving", "name": [{"family": "Beforename"}], "gender": "male"});
    put_new(&server, &body).await;
    check(&server, &by_family("beforename"), &set(["moving"])).await;
    // Update: the old name no longer finds it, the new one does; other params follow too.
    body["name"] = json!([{"family": "Aftername"}]);
    body["gender"] = json!("female");
    put_update(&server, &body).await;
    check(&server, &by_family("beforename"), &BTreeSet::new()).await;
    check(&server, &by_family("aftername"), &set(["moving"])).await;
    let expected: BTreeSet<String> = expect(PATIENTS, |p| p.gender == Some("male"));
    check(&server, &query("Patient", &[("gender", "male")]), &expected).await;
    // Chains and _has follow too.
    let appointment = json!({
        "resourceType": "Appointment",
        "id": "moving-appt",
        "status": "booked",
        "participant": [{"actor": reference("Patient/moving"), "status": "accepted"}]
    });
    put_new(&server, &appointment).await;
    check(
        &server,
        &query("Appointment", &[("patient.family", "aftername")]),
        &set(["moving-appt"]),
    )
    .await;
    // Delete: gone from every search.
    send(server.client.delete(server.url("Patient/moving")))
        .await
        .expect(204);
    check(&server, &by_family("aftername"), &BTreeSet::new()).await;
    check(
        &server,
        &query("Patient", &[("_id", "moving")]),
        &BTreeSet::new(),
    )
    .await;
    check(
        &server,
        &query("Appointment", &[("patient.family", "aftername")]),
        &BTreeSet::new(),
    )
    .await;
    let has = query(
        "Patient",
        &[
            ("_has:Appointment:patient:status", "booked"),
            ("_id", "moving"),
        ],
    );
    check(&server, &has, &BTreeSet::new()).await;
    // Re-creation: found again, by its new values only.
    body["name"] = json!([{"family": "Reborn"}]);
    let reply = send(
        server
            .client
            .put(server.url("Patient/moving"))
            .header("content-type", JSON)
            .body(body.to_string()),
    )
    .await;
    assert!(matches!(reply.status, 200 | 201), "{}", reply.text);
    check(&server, &by_family("reborn"), &set(["moving"])).await;
    check(&server, &by_family("aftername"), &BTreeSet::new()).await;
    check(&server, &has, &set(["moving"])).await;
}
both!(index_follows_updates_deletes_and_recreation);

/// Searches past the server's bounds are refused with a clear 400, not run for minutes.
async fn searches_beyond_the_bounds_are_400(server: Server) {
    let many_params: Vec<String> = (0..65).map(|n| format!("family=f{n}")).collect();
    let many_values: Vec<String> = (0..1001).map(|n| format!("id{n}")).collect();
    let sort_keys: Vec<&str> = [
        "family",
        "given",
        "birthdate",
        "gender",
        "address",
        "name",
        "_id",
        "_lastUpdated",
        "telecom",
    ]
    .to_vec();
    let includes: Vec<String> = (0..17)
        .map(|_| "_revinclude=Appointment:patient".to_owned())
        .collect();
    for (query, says) in [
        (many_params.join("&"), "at most 64"),
        (format!("_id={}", many_values.join(",")), "at most 1000"),
        (format!("_sort={}", sort_keys.join(",")), "at most 8"),
        (includes.join("&"), "at most 16"),
        ("_revinclude=*".to_owned(), "not supported"),
        (
            "organization.partof.partof.partof.partof.partof.name=x".to_owned(),
            "deeper",
        ),
    ] {
        let response = server
            .client
            .get(format!("{}/Patient?{query}", server.base))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(status, 400, "{text}");
        assert!(text.contains(says), "{says}: {text}");
    }
    // POST _search is bounded the same way.
    let response = server
        .client
        .post(format!("{}/Patient/_search", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(many_params.join("&"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}
both!(searches_beyond_the_bounds_are_400);

/// The ids, sorted, of a search of Observations by one parameter.
async fn found(server: &Server, name: &str, value: &str) -> Vec<String> {
    let mut ids = search_ids(server, &query("Observation", &[(name, value)])).await;
    ids.sort();
    ids
}

/// Any valid resource can be stored on both databases, however long its indexed strings,
/// and searches past the indexed prefix (512 bytes) still find what they should.
async fn long_values_are_stored_and_found(server: Server) {
    // Prose (repeating words) and random-looking text, past PostgreSQL's b-tree entry size.
    let prose: String = (0..1200)
        .map(|n| format!("word{} ", n % 97))
        .collect::<String>()
        + "needle at the end";
    let random: String = (0..3000u32)
        .map(|n| char::from(b'a' + ((n.wrapping_mul(2_654_435_761) >> 13) % 26) as u8))
        .collect();
    let long_code = "C".repeat(3000);
    let mut other_code = "C".repeat(2999);
    other_code.push('D');
    let observation = |id: &str, text: &str, code: &str| {
        json!({"resourceType": "Observation", "id": id, "status": "final",
            "code": {"coding": [{"system": "http://example.org/long", "code": code}]},
            "valueString": text})
    };
    put_new(&server, &observation("prose", &prose, &long_code)).await;
    put_new(&server, &observation("random", &random, "short")).await;
    let mut near = random.clone();
    near.replace_range(
        2000..2001,
        if &random[2000..2001] == "z" { "y" } else { "z" },
    );
    put_new(&server, &observation("near", &near, &other_code)).await;

    assert_eq!(
        found(&server, "value-string", &prose[..40]).await,
        ["prose"]
    );
    // A search value longer than the indexed prefix.
    assert_eq!(
        found(&server, "value-string", &random[..1500]).await,
        ["near", "random"]
    );
    assert_eq!(
        found(&server, "value-string", &random[..2500]).await,
        ["random"]
    );
    assert_eq!(found(&server, "value-string", &random).await, ["random"]);
    assert_eq!(
        found(&server, "value-string:contains", "needle at the end").await,
        ["prose"]
    );
    assert_eq!(found(&server, "value-string:exact", &near).await, ["near"]);
    // Long codes are told apart.
    let system_and_code = format!("http://example.org/long|{long_code}");
    assert_eq!(found(&server, "code", &system_and_code).await, ["prose"]);
    assert_eq!(found(&server, "code", &other_code).await, ["near"]);
    // Updates keep working on them.
    let mut changed = observation("prose", &format!("{prose} and more"), &long_code);
    changed["status"] = json!("amended");
    put_update(&server, &changed).await;
    assert_eq!(
        found(&server, "value-string:contains", "and more").await,
        ["prose"]
    );
}
both!(long_values_are_stored_and_found);

/// A lookup with more matches than a page pages through them all, both ways, with the
/// total as asked for.
async fn a_lookup_with_many_matches_pages_both_ways(server: Server) {
    let mut created = Vec::new();
    for n in 0..25 {
        let patient = json!({"resourceType": "Patient", "id": format!("many{n:02}"),
            "identifier": [{"system": "http://example.org/mrn", "value": "SHARED"},
                           {"system": "http://example.org/mrn", "value": "SHARED"}]});
        created.push(id_of(&put_new(&server, &patient).await));
    }
    let path = "Patient?identifier=http://example.org/mrn|SHARED&_count=10";
    let pages = search_pages(&server, path).await;
    assert_eq!(pages.len(), 3);
    assert!(
        pages.iter().all(|p| p["total"] == 25),
        "{:?}",
        pages[0]["total"]
    );
    let ids: Vec<String> = pages.iter().flat_map(match_ids).collect();
    let mut expected = created.clone();
    expected.sort();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, expected, "each once");
    // Back from the last page.
    let previous = link(&pages[2], "previous").expect("a previous link");
    let back = send(server.client.get(&previous)).await.expect(200).body;
    assert_eq!(match_ids(&back), match_ids(&pages[1]));
    // The total as asked for.
    let none = get(&server, &format!("{path}&_total=none"))
        .await
        .expect(200)
        .body;
    assert!(none.get("total").is_none());
    let estimate = get(&server, &format!("{path}&_total=estimate"))
        .await
        .expect(200)
        .body;
    assert!(estimate.get("total").is_none() || estimate["total"] == 25);
    let small = get(
        &server,
        "Patient?identifier=http://example.org/mrn|SHARED&_count=30&_total=estimate",
    )
    .await
    .expect(200)
    .body;
    assert_eq!(small["total"], 25);
    let count = get(&server, &format!("{path}&_summary=count"))
        .await
        .expect(200)
        .body;
    assert_eq!(count["total"], 25);
}
both!(a_lookup_with_many_matches_pages_both_ways);
