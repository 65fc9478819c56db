//! `fhir-server generate`: a realistic medical practice as FHIR R4 resources, and a loader
//! that puts it into a running server.
//!
//! Search, transaction and import benchmarks need the same large, realistic and valid data,
//! so [`Practice`] is a pure function of a target size and a seed: the same arguments give
//! the same resources on any machine, whatever the wall clock says. Ids are structural
//! (`pat-000123`, `sch-0007`, `slot-0007-20261102-0900`, `appt-0000123`), so references are
//! known without reading the server's answers, and a benchmark can pick query values (an
//! existing patient, a practitioner's week, a rare family name) from the shape alone.
//!
//! [`Practice::batches`] yields the resources in dependency order, in batches whose members
//! refer only to earlier batches. The loader finishes a batch before it starts the next, so
//! a server that checks references never sees one to a resource it does not have yet.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use futures::StreamExt;
use serde_json::{Value, json};
use time::Date;
use time::macros::date;

/// The data's "today": slots before it are mostly booked and done, slots after it mostly
/// free. A fixed day rather than the clock, so that the data do not depend on when they
/// are made. A Monday.
pub const TODAY: Date = date!(2026 - 11 - 02);

/// Fewer resources than this cannot make a practice with past and future weeks.
pub const MIN_RESOURCES: usize = 2_000;

/// 15-minute slots per working day: 08:00 to 12:00 and 13:00 to 17:00.
pub const SLOTS_PER_DAY: usize = 32;

/// The system of the patients' medical record numbers.
pub const MRN_SYSTEM: &str = "http://example.org/mrn";

/// The chance that a practitioner is away on a given day (all slots busy-unavailable).
const P_DAY_OFF: f64 = 0.03;
/// The chance that a past slot was booked.
const P_PAST_BOOKED: f64 = 0.88;
/// Of past appointments: fulfilled, then no-show; the rest were cancelled.
const P_FULFILLED: f64 = 0.85;
const P_NOSHOW: f64 = 0.05;
/// Of future appointments, those already cancelled (their slot is free again).
const P_FUTURE_CANCELLED: f64 = 0.07;
/// The chance that a patient sees their own general practitioner rather than anyone.
const P_OWN_PRACTITIONER: f64 = 0.85;
/// Patients and coverages per batch: they do not refer to each other.
const PERSON_BATCH: usize = 2_000;
/// Resources per group of days (at least one whole day).
const DAY_GROUP: usize = 2_000;

/// The chance that a slot `days_ahead` business days after [`TODAY`] is already booked:
/// the next days are nearly full, the far future nearly empty.
fn p_future_booked(days_ahead: usize) -> f64 {
    0.05 + 0.80 * (-(days_ahead as f64) / 12.0).exp()
}

/// Expected resources per past slot: the slot, and if booked the appointment, for a
/// fulfilled one an encounter and a claim, and for any not cancelled a reminder.
fn expected_past_slot() -> f64 {
    let cancelled = 1.0 - P_FULFILLED - P_NOSHOW;
    1.0 + (1.0 - P_DAY_OFF) * P_PAST_BOOKED * (1.0 + 2.0 * P_FULFILLED + (1.0 - cancelled))
}

/// Expected resources per future slot: reminders go out two days ahead.
fn expected_future_slot(days_ahead: usize) -> f64 {
    let reminder = if days_ahead < 2 {
        1.0 - P_FUTURE_CANCELLED
    } else {
        0.0
    };
    1.0 + (1.0 - P_DAY_OFF) * p_future_booked(days_ahead) * (1.0 + reminder)
}

/// How many of `days` business days lie before [`TODAY`] (three fifths).
fn split_days(days: usize) -> (usize, usize) {
    let past = (days * 3).div_ceil(5);
    (past, days - past)
}

/// The sizes of a practice. At 1,000,000 resources: 1 practice and 5 payer organizations,
/// 5 locations, 40 practitioners with a role and a schedule each, 100,000 patients with a
/// coverage each, and about 10 months of slots with their appointments, encounters, claims
/// and reminders. Smaller targets scale the people down and, below 40 practitioners'
/// worth, the number of days.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    /// The target: generation stops after the first whole day that reaches it.
    pub resources: usize,
    pub payers: usize,
    pub locations: usize,
    pub practitioners: usize,
    pub patients: usize,
    /// Business days of slots before [`TODAY`].
    pub past_days: usize,
    /// Business days of slots from [`TODAY`] on that the target is expected to need; the
    /// generator goes on (or stops early) until the target is reached.
    pub future_days: usize,
}

impl Shape {
    pub fn for_resources(resources: usize) -> Shape {
        let resources = resources.max(MIN_RESOURCES);
        let scale = resources as f64 / 1_000_000.0;
        let practitioners = ((40.0 * scale).round() as usize).max(2);
        let locations = ((practitioners as f64 / 8.0).round() as usize).max(1);
        let payers = ((5.0 * scale).round() as usize).clamp(2, PAYER_NAMES.len());
        let patients = resources / 10;
        let fixed = 1 + payers + locations + 3 * practitioners + 2 * patients;
        let per_slot_position =
            resources.saturating_sub(fixed) as f64 / (practitioners * SLOTS_PER_DAY) as f64;
        let mut days = 10;
        loop {
            let (past, future) = split_days(days);
            let expected = past as f64 * expected_past_slot()
                + (0..future).map(expected_future_slot).sum::<f64>();
            if expected >= per_slot_position || days >= 100_000 {
                break;
            }
            days += 1;
        }
        let (past_days, future_days) = split_days(days);
        Shape {
            resources,
            payers,
            locations,
            practitioners,
            patients,
            past_days,
            future_days,
        }
    }
}

/// A small deterministic generator (SplitMix64): enough for test data, no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// A generator for one entity (kind, a, b), independent of the order in which entities
    /// are made: a benchmark can recompute one patient's name without making the others.
    fn derive(seed: u64, kind: u64, a: u64, b: u64) -> Rng {
        let mut rng = Rng(seed ^ kind.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut rng = Rng(rng.next_u64() ^ a.wrapping_mul(0xD1B5_4A32_D192_ED03));
        Rng(rng.next_u64() ^ b.wrapping_mul(0x8CB9_2BA7_2F3D_8DD7))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// A number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Entity kinds for [`Rng::derive`].
const KIND_PATIENT: u64 = 1;
const KIND_PRACTITIONER: u64 = 2;
const KIND_DAY: u64 = 3;
const KIND_COVERAGE: u64 = 4;

pub fn patient_id(index: usize) -> String {
    format!("pat-{index:06}")
}

pub fn mrn(index: usize) -> String {
    format!("MRN{index:06}")
}

pub fn practitioner_id(index: usize) -> String {
    format!("pr-{index:04}")
}

pub fn schedule_id(index: usize) -> String {
    format!("sch-{index:04}")
}

fn role_id(index: usize) -> String {
    format!("role-{index:04}")
}

fn location_id(index: usize) -> String {
    format!("loc-{:02}", index + 1)
}

fn payer_id(index: usize) -> String {
    format!("org-payer-{:02}", index + 1)
}

fn coverage_id(patient: usize) -> String {
    format!("cov-{patient:06}")
}

const PRACTICE_ID: &str = "org-practice";
const PRACTICE_NAME: &str = "Lakeside Family Practice";
const PRACTICE_PHONE: &str = "+1 217-555-0100";

/// A patient's or practitioner's person data, recomputable from the seed and an index.
#[derive(Debug, Clone)]
pub struct Person {
    pub gender: &'static str,
    pub given: Vec<&'static str>,
    pub family: &'static str,
    pub birth_date: Date,
}

impl Person {
    pub fn display(&self) -> String {
        format!("{} {}", self.given[0], self.family)
    }
}

/// A generated practice: its shape, and what the resources are made from.
#[derive(Debug, Clone)]
pub struct Practice {
    pub seed: u64,
    pub shape: Shape,
    /// Business days from the first day of slots: `past_days` before [`TODAY`], then
    /// [`TODAY`] and enough after it for the generator to overshoot its plan.
    days: Vec<Date>,
    /// Indices into [`FAMILY_NAMES`], most common first.
    family_rank: Vec<usize>,
    /// Cumulative weights of `family_rank`, for weighted picking.
    family_cdf: Vec<f64>,
    practitioners: Vec<Person>,
}

impl Practice {
    pub fn new(resources: usize, seed: u64) -> Practice {
        let shape = Shape::for_resources(resources);
        let days = business_days(shape.past_days, 2 * shape.future_days + 20);
        // A fixed order, not the list's, so that common and rare names mix origins.
        let mut family_rank: Vec<usize> = (0..FAMILY_NAMES.len()).collect();
        family_rank.sort_by_key(|&i| fnv(FAMILY_NAMES[i].as_bytes()));
        // Zipf-like: at 100,000 patients the most common name has about 5,000 bearers and
        // the rarest about 30, like real surname distributions.
        let mut total = 0.0;
        let family_cdf = (0..family_rank.len())
            .map(|rank| {
                total += 1.0 / ((rank + 5) as f64).powf(1.1);
                total
            })
            .collect();
        let mut practice = Practice {
            seed,
            shape,
            days,
            family_rank,
            family_cdf,
            practitioners: Vec::new(),
        };
        practice.practitioners = (0..practice.shape.practitioners)
            .map(|j| {
                let mut rng = Rng::derive(seed, KIND_PRACTITIONER, j as u64, 0);
                let mut person = practice.person(&mut rng);
                person.birth_date = date_add(date!(1960 - 01 - 01), rng.below(30 * 365) as i64);
                person
            })
            .collect();
        practice
    }

    /// The resources in dependency order, in batches that refer only to earlier batches.
    pub fn batches(&self) -> Batches {
        Batches {
            practice: self.clone(),
            stage: Stage::Start,
            pending: VecDeque::new(),
            produced: 0,
            next_appointment: 0,
        }
    }

    /// The business day `index` of the slots; [`TODAY`] is `shape.past_days`.
    pub fn day(&self, index: usize) -> Date {
        match self.days.get(index) {
            Some(day) => *day,
            None => {
                let mut day = *self.days.last().unwrap_or(&TODAY);
                for _ in self.days.len()..=index {
                    day = next_business_day(day);
                }
                day
            }
        }
    }

    /// Family names, most common first, with the number of patients expected to bear each.
    pub fn family_names_by_frequency(&self) -> Vec<(&'static str, f64)> {
        let total = self.family_cdf.last().copied().unwrap_or(1.0);
        let mut previous = 0.0;
        self.family_rank
            .iter()
            .zip(&self.family_cdf)
            .map(|(&i, &cumulative)| {
                let share = (cumulative - previous) / total;
                previous = cumulative;
                (FAMILY_NAMES[i], share * self.shape.patients as f64)
            })
            .collect()
    }

    /// Patient `index`'s name, gender and birth date.
    pub fn patient_person(&self, index: usize) -> Person {
        let mut rng = Rng::derive(self.seed, KIND_PATIENT, index as u64, 0);
        self.person(&mut rng)
    }

    fn person(&self, rng: &mut Rng) -> Person {
        let roll = rng.unit();
        let gender = if roll < 0.51 {
            "female"
        } else if roll < 0.985 {
            "male"
        } else if roll < 0.995 {
            "other"
        } else {
            "unknown"
        };
        let names = match gender {
            "female" => FEMALE_NAMES,
            "male" => MALE_NAMES,
            _ if rng.chance(0.5) => FEMALE_NAMES,
            _ => MALE_NAMES,
        };
        let mut given = vec![*rng.pick(names)];
        if rng.chance(0.3) {
            let second = *rng.pick(names);
            if second != given[0] {
                given.push(second);
            }
        }
        let total = self.family_cdf.last().copied().unwrap_or(1.0);
        let target = rng.unit() * total;
        let rank = self
            .family_cdf
            .partition_point(|&c| c <= target)
            .min(self.family_rank.len() - 1);
        let family = FAMILY_NAMES[self.family_rank[rank]];
        // Ages 0 to 95, more adults than children, as in a family practice.
        let age_days = (rng.unit().powf(0.85) * 95.0 * 365.25) as i64;
        let birth_date = date_add(TODAY, -age_days);
        Person {
            gender,
            given,
            family,
            birth_date,
        }
    }

    /// A patient for a slot of practitioner `p`: usually one of their own panel.
    fn pick_patient(&self, rng: &mut Rng, p: usize) -> usize {
        let (patients, practitioners) = (self.shape.patients, self.shape.practitioners);
        if rng.chance(P_OWN_PRACTITIONER) && p < patients {
            let panel = (patients - p).div_ceil(practitioners);
            p + practitioners * rng.below(panel)
        } else {
            rng.below(patients)
        }
    }

    fn payer_of(&self, patient: usize) -> usize {
        Rng::derive(self.seed, KIND_COVERAGE, patient as u64, 0).below(self.shape.payers)
    }

    fn organizations(&self) -> Vec<Value> {
        let mut batch = vec![json!({
            "resourceType": "Organization",
            "id": PRACTICE_ID,
            "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1588667638"}],
            "active": true,
            "type": [coding("http://terminology.hl7.org/CodeSystem/organization-type", "prov", "Healthcare Provider")],
            "name": PRACTICE_NAME,
            "telecom": [
                {"system": "phone", "value": PRACTICE_PHONE, "use": "work"},
                {"system": "email", "value": "frontdesk@lakeside-practice.example.org", "use": "work"}
            ],
            "address": [{"use": "work", "line": ["200 Lakeshore Drive"], "city": "Springfield", "state": "IL", "postalCode": "62703", "country": "US"}]
        })];
        for (k, name) in PAYER_NAMES.iter().enumerate().take(self.shape.payers) {
            batch.push(json!({
                "resourceType": "Organization",
                "id": payer_id(k),
                "identifier": [{"system": "http://example.org/payer-id", "value": format!("PAY{:05}", 10_000 + 137 * k)}],
                "active": true,
                "type": [coding("http://terminology.hl7.org/CodeSystem/organization-type", "pay", "Payer")],
                "name": name,
                "telecom": [{"system": "phone", "value": format!("+1 800-555-{:04}", 1200 + 17 * k), "use": "work"}],
                "address": [{"use": "work", "line": [format!("{} Commerce Plaza", 100 + 25 * k)], "city": "Chicago", "state": "IL", "postalCode": format!("606{:02}", k + 1), "country": "US"}]
            }));
        }
        batch
    }

    fn location_name(&self, k: usize) -> String {
        match LOCATION_AREAS.get(k) {
            Some(area) => format!("{PRACTICE_NAME} – {area}"),
            None => format!("{PRACTICE_NAME} – Site {}", k + 1),
        }
    }

    fn locations(&self) -> Vec<Value> {
        (0..self.shape.locations)
            .map(|k| {
                let (city, zip) = CITIES[k % CITIES.len()];
                json!({
                    "resourceType": "Location",
                    "id": location_id(k),
                    "status": "active",
                    "name": self.location_name(k),
                    "mode": "instance",
                    "type": [coding("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "OF", "Outpatient facility")],
                    "telecom": [{"system": "phone", "value": format!("+1 217-555-{:04}", 110 + k), "use": "work"}],
                    "address": {"use": "work", "line": [format!("{} {}", 10 + 31 * k, STREETS[k % STREETS.len()])], "city": city, "state": "IL", "postalCode": zip, "country": "US"},
                    "physicalType": coding("http://terminology.hl7.org/CodeSystem/location-physical-type", "bu", "Building"),
                    "managingOrganization": {"reference": format!("Organization/{PRACTICE_ID}")}
                })
            })
            .collect()
    }

    fn practitioner_location(&self, p: usize) -> usize {
        p % self.shape.locations
    }

    fn practitioner_display(&self, p: usize) -> String {
        format!("Dr. {}", self.practitioners[p].display())
    }

    fn practitioner_resources(&self) -> Vec<Value> {
        self.practitioners
            .iter()
            .enumerate()
            .map(|(p, person)| {
                let email = format!(
                    "{}.{}@lakeside-practice.example.org",
                    ascii_fold(person.given[0]),
                    ascii_fold(person.family)
                );
                json!({
                    "resourceType": "Practitioner",
                    "id": practitioner_id(p),
                    "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": format!("1{:09}", 234_567_000 + 7919 * p)}],
                    "active": true,
                    "name": [{"use": "official", "family": person.family, "given": person.given, "prefix": ["Dr."]}],
                    "telecom": [
                        {"system": "phone", "value": format!("+1 217-555-{:04}", 200 + p), "use": "work"},
                        {"system": "email", "value": email, "use": "work"}
                    ],
                    "gender": person.gender,
                    "birthDate": format_date(person.birth_date),
                    "qualification": [{"code": coding("http://terminology.hl7.org/CodeSystem/v2-0360|2.7", "MD", "Doctor of Medicine")}]
                })
            })
            .collect()
    }

    fn roles_and_schedules(&self) -> Vec<Value> {
        let first = format_date(self.day(0));
        let last = format_date(self.day(self.days.len() - 1));
        let mut batch = Vec::new();
        for p in 0..self.shape.practitioners {
            let location = self.practitioner_location(p);
            batch.push(json!({
                "resourceType": "PractitionerRole",
                "id": role_id(p),
                "active": true,
                "practitioner": {"reference": format!("Practitioner/{}", practitioner_id(p)), "display": self.practitioner_display(p)},
                "organization": {"reference": format!("Organization/{PRACTICE_ID}")},
                "code": [coding("http://terminology.hl7.org/CodeSystem/practitioner-role", "doctor", "Doctor")],
                "specialty": [coding("http://snomed.info/sct", "394814009", "General practice")],
                "location": [{"reference": format!("Location/{}", location_id(location))}],
                "telecom": [{"system": "phone", "value": format!("+1 217-555-{:04}", 200 + p), "use": "work"}],
                "availableTime": [{"daysOfWeek": ["mon", "tue", "wed", "thu", "fri"], "availableStartTime": "08:00:00", "availableEndTime": "17:00:00"}]
            }));
            batch.push(json!({
                "resourceType": "Schedule",
                "id": schedule_id(p),
                "active": true,
                "serviceType": [service_type()],
                "specialty": [coding("http://snomed.info/sct", "394814009", "General practice")],
                "actor": [
                    {"reference": format!("Practitioner/{}", practitioner_id(p)), "display": self.practitioner_display(p)},
                    {"reference": format!("Location/{}", location_id(location)), "display": self.location_name(location)}
                ],
                "planningHorizon": {"start": first, "end": last},
                "comment": "15-minute appointments, Monday to Friday, 08:00-12:00 and 13:00-17:00"
            }));
        }
        batch
    }

    fn patient(&self, index: usize) -> Value {
        let person = self.patient_person(index);
        // A second generator for the rest, so that the person stays recomputable alone.
        let mut rng = Rng::derive(self.seed, KIND_PATIENT, index as u64, 1);
        let mut telecom = vec![json!({
            "system": "phone",
            "value": format!("+1 217-{:03}-{:04}", 200 + rng.below(800), rng.below(10_000)),
            "use": if rng.chance(0.8) { "mobile" } else { "home" }
        })];
        if rng.chance(0.6) {
            telecom.push(json!({
                "system": "email",
                "value": format!("{}.{}{}@example.com", ascii_fold(person.given[0]), ascii_fold(person.family), rng.below(100)),
                "use": "home"
            }));
        }
        let (city, zip) = *rng.pick(CITIES);
        let street = format!(
            "{} {}",
            1 + rng.below(2_500),
            rng.pick(STREETS) // e.g. "1234 Oak Street"
        );
        let mut address = json!({"use": "home", "type": "both", "line": [street], "city": city, "state": "IL", "postalCode": zip, "country": "US"});
        if rng.chance(0.15)
            && let Some(lines) = address["line"].as_array_mut()
        {
            lines.push(json!(format!("Apt {}", 1 + rng.below(40))));
        }
        json!({
            "resourceType": "Patient",
            "id": patient_id(index),
            "identifier": [{
                "use": "usual",
                "type": coding("http://terminology.hl7.org/CodeSystem/v2-0203", "MR", "Medical record number"),
                "system": MRN_SYSTEM,
                "value": mrn(index)
            }],
            "active": true,
            "name": [{"use": "official", "family": person.family, "given": person.given}],
            "telecom": telecom,
            "gender": person.gender,
            "birthDate": format_date(person.birth_date),
            "address": [address],
            "generalPractitioner": [{"reference": format!("Practitioner/{}", practitioner_id(index % self.shape.practitioners))}],
            "managingOrganization": {"reference": format!("Organization/{PRACTICE_ID}")}
        })
    }

    fn coverage(&self, patient: usize) -> Value {
        let payer = self.payer_of(patient);
        let mut rng = Rng::derive(self.seed, KIND_COVERAGE, patient as u64, 1);
        let plan = rng.below(4);
        json!({
            "resourceType": "Coverage",
            "id": coverage_id(patient),
            "status": "active",
            "type": coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "EHCPOL", "extended healthcare"),
            "subscriber": {"reference": format!("Patient/{}", patient_id(patient))},
            "subscriberId": format!("W{:09}", rng.below(1_000_000_000)),
            "beneficiary": {"reference": format!("Patient/{}", patient_id(patient))},
            "relationship": coding("http://terminology.hl7.org/CodeSystem/subscriber-relationship", "self", "Self"),
            "period": {"start": "2026-01-01", "end": "2026-12-31"},
            "payor": [{"reference": format!("Organization/{}", payer_id(payer)), "display": PAYER_NAMES[payer]}],
            "class": [{
                "type": coding("http://terminology.hl7.org/CodeSystem/coverage-class", "plan", "Plan"),
                "value": format!("P-{}-{plan}", payer + 1),
                "name": PLAN_NAMES[plan]
            }]
        })
    }

    /// Adds business day `d` to `parts`: slots of every practitioner, then appointments,
    /// then encounters and reminders, then claims (each refers only to earlier parts).
    fn day_resources(&self, d: usize, next_appointment: &mut usize, parts: &mut [Vec<Value>; 4]) {
        let date = self.day(d);
        let past = d < self.shape.past_days;
        let ahead = d.saturating_sub(self.shape.past_days);
        let [slots, appointments, encounters, claims] = parts;
        for p in 0..self.shape.practitioners {
            let mut rng = Rng::derive(self.seed, KIND_DAY, p as u64, d as u64);
            let day_off = rng.chance(P_DAY_OFF);
            for k in 0..SLOTS_PER_DAY {
                let minute = if k < 16 {
                    8 * 60 + 15 * k
                } else {
                    13 * 60 + 15 * (k - 16)
                };
                let slot = format!(
                    "slot-{p:04}-{}-{:02}{:02}",
                    compact_date(date),
                    minute / 60,
                    minute % 60
                );
                if day_off {
                    slots.push(self.slot(&slot, p, date, minute, "busy-unavailable"));
                    continue;
                }
                let booked = if past {
                    rng.chance(P_PAST_BOOKED)
                } else {
                    rng.chance(p_future_booked(ahead))
                };
                if !booked {
                    slots.push(self.slot(&slot, p, date, minute, "free"));
                    continue;
                }
                let status = if past {
                    let roll = rng.unit();
                    if roll < P_FULFILLED {
                        "fulfilled"
                    } else if roll < P_FULFILLED + P_NOSHOW {
                        "noshow"
                    } else {
                        "cancelled"
                    }
                } else if rng.chance(P_FUTURE_CANCELLED) {
                    "cancelled"
                } else {
                    "booked"
                };
                let slot_status = if status == "cancelled" {
                    "free"
                } else {
                    "busy"
                };
                slots.push(self.slot(&slot, p, date, minute, slot_status));
                let visit = Visit::new(
                    self,
                    &mut rng,
                    *next_appointment,
                    p,
                    date,
                    minute,
                    slot,
                    status,
                );
                *next_appointment += 1;
                appointments.push(self.appointment(&visit));
                if status == "fulfilled" {
                    encounters.push(self.encounter(&visit));
                    claims.push(self.claim(&visit));
                }
                if status != "cancelled" && (past || ahead < 2) {
                    encounters.push(self.reminder(&visit));
                }
            }
        }
    }

    fn slot(&self, id: &str, p: usize, date: Date, minute: usize, status: &str) -> Value {
        let mut slot = json!({
            "resourceType": "Slot",
            "id": id,
            "serviceType": [service_type()],
            "schedule": {"reference": format!("Schedule/{}", schedule_id(p))},
            "status": status,
            "start": timestamp(date, minute * 60),
            "end": timestamp(date, (minute + 15) * 60)
        });
        if status == "busy-unavailable" {
            slot["comment"] = json!("Practitioner away");
        }
        slot
    }

    fn appointment(&self, visit: &Visit) -> Value {
        let patient = self.patient_person(visit.patient);
        let location = self.practitioner_location(visit.practitioner);
        let (icd, icd_display) = DIAGNOSES[visit.diagnosis];
        let mut appointment = json!({
            "resourceType": "Appointment",
            "id": format!("appt-{:07}", visit.number),
            "status": visit.status,
            "serviceType": [service_type()],
            "appointmentType": coding("http://terminology.hl7.org/CodeSystem/v2-0276", visit.kind, VISIT_KINDS.iter().find(|k| k.0 == visit.kind).map_or("", |k| k.1)),
            "reasonCode": [coding("http://hl7.org/fhir/sid/icd-10", icd, icd_display)],
            "description": format!("{}: {}", visit.kind_text(), icd_display),
            "start": timestamp(visit.date, visit.minute * 60),
            "end": timestamp(visit.date, (visit.minute + 15) * 60),
            "minutesDuration": 15,
            "slot": [{"reference": format!("Slot/{}", visit.slot)}],
            "created": visit.created.clone(),
            "participant": [
                {"actor": {"reference": format!("Patient/{}", patient_id(visit.patient)), "display": patient.display()}, "required": "required", "status": "accepted"},
                {
                    "type": [coding("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "PPRF", "primary performer")],
                    "actor": {"reference": format!("Practitioner/{}", practitioner_id(visit.practitioner)), "display": self.practitioner_display(visit.practitioner)},
                    "required": "required",
                    "status": "accepted"
                },
                {"actor": {"reference": format!("Location/{}", location_id(location)), "display": self.location_name(location)}, "required": "required", "status": "accepted"}
            ]
        });
        if visit.status == "cancelled" {
            appointment["cancelationReason"] = coding(
                "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason",
                "pat",
                "Patient",
            );
        }
        appointment
    }

    fn encounter(&self, visit: &Visit) -> Value {
        let (icd, icd_display) = DIAGNOSES[visit.diagnosis];
        let (code, display) = match visit.kind {
            "CHECKUP" => ("185349003", "Encounter for check up"),
            "FOLLOWUP" => ("390906007", "Follow-up encounter"),
            _ => ("185345009", "Encounter for symptom"),
        };
        let period = json!({"start": visit.encounter_start(), "end": visit.encounter_end()});
        json!({
            "resourceType": "Encounter",
            "id": format!("enc-{:07}", visit.number),
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
            "type": [coding("http://snomed.info/sct", code, display)],
            "serviceType": service_type(),
            "subject": {"reference": format!("Patient/{}", patient_id(visit.patient))},
            "participant": [{
                "type": [coding("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "PPRF", "primary performer")],
                "period": period.clone(),
                "individual": {"reference": format!("Practitioner/{}", practitioner_id(visit.practitioner))}
            }],
            "appointment": [{"reference": format!("Appointment/appt-{:07}", visit.number)}],
            "period": period,
            "reasonCode": [coding("http://hl7.org/fhir/sid/icd-10", icd, icd_display)],
            "location": [{"location": {"reference": format!("Location/{}", location_id(self.practitioner_location(visit.practitioner)))}, "status": "completed"}],
            "serviceProvider": {"reference": format!("Organization/{PRACTICE_ID}")}
        })
    }

    fn claim(&self, visit: &Visit) -> Value {
        let (icd, icd_display) = DIAGNOSES[visit.diagnosis];
        let payer = self.payer_of(visit.patient);
        let location = location_id(self.practitioner_location(visit.practitioner));
        let serviced = format_date(visit.date);
        let mut total = 0;
        let items: Vec<Value> = visit
            .services
            .iter()
            .enumerate()
            .map(|(i, &service)| {
                let (code, display, cents) = SERVICES[service];
                total += cents;
                json!({
                    "sequence": i + 1,
                    "diagnosisSequence": [1],
                    "productOrService": coding("http://www.ama-assn.org/go/cpt", code, display),
                    "servicedDate": serviced,
                    "locationReference": {"reference": format!("Location/{location}")},
                    "quantity": {"value": 1},
                    "unitPrice": money(cents),
                    "net": money(cents),
                    "encounter": [{"reference": format!("Encounter/enc-{:07}", visit.number)}]
                })
            })
            .collect();
        json!({
            "resourceType": "Claim",
            "id": format!("claim-{:07}", visit.number),
            "status": "active",
            "type": coding("http://terminology.hl7.org/CodeSystem/claim-type", "professional", "Professional"),
            "use": "claim",
            "patient": {"reference": format!("Patient/{}", patient_id(visit.patient))},
            "billablePeriod": {"start": visit.encounter_start(), "end": visit.encounter_end()},
            "created": timestamp(date_add(visit.date, 1), 18 * 3600),
            "insurer": {"reference": format!("Organization/{}", payer_id(payer)), "display": PAYER_NAMES[payer]},
            "provider": {"reference": format!("Practitioner/{}", practitioner_id(visit.practitioner))},
            "priority": coding("http://terminology.hl7.org/CodeSystem/processpriority", "normal", "Normal"),
            "diagnosis": [{"sequence": 1, "diagnosisCodeableConcept": coding("http://hl7.org/fhir/sid/icd-10", icd, icd_display)}],
            "insurance": [{"sequence": 1, "focal": true, "coverage": {"reference": format!("Coverage/{}", coverage_id(visit.patient))}}],
            "item": items,
            "total": money(total)
        })
    }

    fn reminder(&self, visit: &Visit) -> Value {
        let location = self.practitioner_location(visit.practitioner);
        let (medium, medium_display) = if visit.number % 10 < 7 {
            ("SMSWRIT", "SMS message")
        } else {
            ("EMAILWRIT", "email")
        };
        let text = format!(
            "Reminder: you have an appointment with {} at {} on {} at {:02}:{:02}. \
             Reply C to confirm, or call {PRACTICE_PHONE} to reschedule.",
            self.practitioner_display(visit.practitioner),
            self.location_name(location),
            format_date(visit.date),
            visit.minute / 60,
            visit.minute % 60
        );
        json!({
            "resourceType": "Communication",
            "id": format!("comm-{:07}", visit.number),
            "status": "completed",
            "category": [coding("http://terminology.hl7.org/CodeSystem/communication-category", "reminder", "Reminder")],
            "medium": [coding("http://terminology.hl7.org/CodeSystem/v3-ParticipationMode", medium, medium_display)],
            "subject": {"reference": format!("Patient/{}", patient_id(visit.patient))},
            "about": [{"reference": format!("Appointment/appt-{:07}", visit.number)}],
            "sent": timestamp(date_add(visit.date, -2), 17 * 3600),
            "recipient": [{"reference": format!("Patient/{}", patient_id(visit.patient))}],
            "sender": {"reference": format!("Organization/{PRACTICE_ID}")},
            "payload": [{"contentString": text}]
        })
    }
}

/// One booked slot, and what its appointment, encounter and claim share.
struct Visit {
    number: usize,
    practitioner: usize,
    patient: usize,
    date: Date,
    /// Minutes after midnight.
    minute: usize,
    slot: String,
    status: &'static str,
    kind: &'static str,
    diagnosis: usize,
    services: Vec<usize>,
    created: String,
    /// Seconds late, and seconds long, the encounter was.
    delay: usize,
    length: usize,
}

impl Visit {
    #[allow(clippy::too_many_arguments)]
    fn new(
        practice: &Practice,
        rng: &mut Rng,
        number: usize,
        practitioner: usize,
        date: Date,
        minute: usize,
        slot: String,
        status: &'static str,
    ) -> Visit {
        let patient = practice.pick_patient(rng, practitioner);
        let diagnosis = rng.below(DIAGNOSES.len());
        let code = DIAGNOSES[diagnosis].0;
        let kind = match code {
            "Z00.00" => "CHECKUP",
            _ => {
                let roll = rng.unit();
                if roll < 0.55 {
                    "ROUTINE"
                } else if roll < 0.95 {
                    "FOLLOWUP"
                } else {
                    "WALKIN"
                }
            }
        };
        // CPT office visits by complexity, with the tests the diagnosis usually brings.
        let service = |code: &str| SERVICES.iter().position(|s| s.0 == code).unwrap_or(0);
        let mut services = vec![match code {
            "Z00.00" => service("99396"),
            "Z23" => service("99212"),
            "E11.9" | "E78.5" | "I10" => service(if rng.chance(0.6) { "99214" } else { "99213" }),
            _ => {
                let roll = rng.unit();
                service(if roll < 0.15 {
                    "99212"
                } else if roll < 0.70 {
                    "99213"
                } else if roll < 0.95 {
                    "99214"
                } else {
                    "99215"
                })
            }
        }];
        match code {
            "Z00.00" => {
                services.push(service("36415"));
                if rng.chance(0.3) {
                    services.push(service("93000"));
                }
            }
            "Z23" => services.push(service("90471")),
            "J02.9" => services.push(service("87880")),
            "N39.0" => services.push(service("81002")),
            "E11.9" | "E78.5" if rng.chance(0.7) => services.push(service("36415")),
            _ => {}
        }
        // Booked between a day and five weeks ahead, but never after TODAY.
        let mut created_day = date_add(date, -(1 + rng.below(35) as i64));
        if created_day >= TODAY {
            created_day = date_add(TODAY, -1 - rng.below(3) as i64);
        }
        let created = timestamp(created_day, 8 * 3600 + rng.below(9 * 3600));
        let delay = rng.below(10 * 60);
        let length = 8 * 60 + rng.below(15 * 60);
        Visit {
            number,
            practitioner,
            patient,
            date,
            minute,
            slot,
            status,
            kind,
            diagnosis,
            services,
            created,
            delay,
            length,
        }
    }

    fn kind_text(&self) -> &'static str {
        match self.kind {
            "CHECKUP" => "Check-up",
            "FOLLOWUP" => "Follow-up",
            "WALKIN" => "Walk-in",
            _ => "Visit",
        }
    }

    fn encounter_start(&self) -> String {
        timestamp(self.date, self.minute * 60 + self.delay)
    }

    fn encounter_end(&self) -> String {
        timestamp(self.date, self.minute * 60 + self.delay + self.length)
    }
}

enum Stage {
    Start,
    Patients(usize),
    Coverages(usize),
    Day(usize),
    Done,
}

/// The resources of a [`Practice`], batch by batch (see [`Practice::batches`]).
pub struct Batches {
    practice: Practice,
    stage: Stage,
    pending: VecDeque<Vec<Value>>,
    produced: usize,
    next_appointment: usize,
}

impl Iterator for Batches {
    type Item = Vec<Value>;

    fn next(&mut self) -> Option<Vec<Value>> {
        loop {
            if let Some(batch) = self.pending.pop_front() {
                self.produced += batch.len();
                return Some(batch);
            }
            let practice = &self.practice;
            let shape = &practice.shape;
            self.stage = match self.stage {
                Stage::Start => {
                    self.pending.push_back(practice.organizations());
                    self.pending.push_back(practice.locations());
                    self.pending.push_back(practice.practitioner_resources());
                    self.pending.push_back(practice.roles_and_schedules());
                    Stage::Patients(0)
                }
                Stage::Patients(from) if from < shape.patients => {
                    let to = (from + PERSON_BATCH).min(shape.patients);
                    self.pending
                        .push_back((from..to).map(|i| practice.patient(i)).collect());
                    Stage::Patients(to)
                }
                Stage::Patients(_) => Stage::Coverages(0),
                Stage::Coverages(from) if from < shape.patients => {
                    let to = (from + PERSON_BATCH).min(shape.patients);
                    self.pending
                        .push_back((from..to).map(|i| practice.coverage(i)).collect());
                    Stage::Coverages(to)
                }
                Stage::Coverages(_) => Stage::Day(0),
                Stage::Day(mut d) => {
                    // Several days in one group when days are small, so that a batch keeps
                    // every client busy; the target is checked after each whole day.
                    let mut parts: [Vec<Value>; 4] = Default::default();
                    let mut made = 0;
                    while d < practice.days.len()
                        && made < DAY_GROUP
                        && !(d >= shape.past_days && self.produced + made >= shape.resources)
                    {
                        practice.day_resources(d, &mut self.next_appointment, &mut parts);
                        made = parts.iter().map(Vec::len).sum();
                        d += 1;
                    }
                    if made == 0 {
                        Stage::Done
                    } else {
                        self.pending
                            .extend(parts.into_iter().filter(|part| !part.is_empty()));
                        Stage::Day(d)
                    }
                }
                Stage::Done => return None,
            };
        }
    }
}

/// `past` business days before [`TODAY`], then [`TODAY`] and `future - 1` after it.
fn business_days(past: usize, future: usize) -> Vec<Date> {
    let mut before = Vec::with_capacity(past);
    let mut day = TODAY;
    while before.len() < past {
        day = date_add(day, -1);
        if is_business_day(day) {
            before.push(day);
        }
    }
    before.reverse();
    let mut day = TODAY;
    for _ in 0..future.max(1) {
        before.push(day);
        day = next_business_day(day);
    }
    before
}

fn next_business_day(day: Date) -> Date {
    let mut day = date_add(day, 1);
    while !is_business_day(day) {
        day = date_add(day, 1);
    }
    day
}

/// Monday to Friday, except New Year, Independence Day and Christmas.
fn is_business_day(day: Date) -> bool {
    use time::{Month, Weekday};
    let holiday = matches!(
        (day.month(), day.day()),
        (Month::January, 1) | (Month::July, 4) | (Month::December, 25)
    );
    !holiday && !matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday)
}

fn date_add(day: Date, days: i64) -> Date {
    day.checked_add(time::Duration::days(days)).unwrap_or(day)
}

pub fn format_date(day: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

fn compact_date(day: Date) -> String {
    format!(
        "{:04}{:02}{:02}",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

/// An instant on `day`, `seconds` after midnight UTC (the practice keeps UTC).
fn timestamp(day: Date, seconds: usize) -> String {
    let day = date_add(day, (seconds / 86_400) as i64);
    let seconds = seconds % 86_400;
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        format_date(day),
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({"coding": [{"system": system, "code": code, "display": display}]})
}

fn service_type() -> Value {
    coding(
        "http://terminology.hl7.org/CodeSystem/service-type",
        "124",
        "General Practice",
    )
}

/// Money with exactly two decimals, as a claim shows it (`110.00`, not `110.0`).
fn money(cents: u64) -> Value {
    let value = format!("{}.{:02}", cents / 100, cents % 100)
        .parse::<serde_json::Number>()
        .unwrap_or_else(|_| serde_json::Number::from(cents / 100));
    json!({"value": value, "currency": "USD"})
}

/// Letters and digits only, accents removed, lower case: for e-mail addresses.
fn ascii_fold(text: &str) -> String {
    let mut folded = String::with_capacity(text.len());
    for c in text.chars().flat_map(char::to_lowercase) {
        let plain = match c {
            'a'..='z' | '0'..='9' => c.to_string(),
            'á' | 'à' | 'â' | 'ä' | 'ã' | 'å' | 'ą' | 'ă' => "a".into(),
            'æ' => "ae".into(),
            'ç' | 'ć' | 'č' => "c".into(),
            'é' | 'è' | 'ê' | 'ë' | 'ę' | 'ě' => "e".into(),
            'í' | 'ì' | 'î' | 'ï' | 'ı' => "i".into(),
            'ñ' | 'ń' => "n".into(),
            'ó' | 'ò' | 'ô' | 'ö' | 'õ' | 'ø' | 'ő' => "o".into(),
            'ú' | 'ù' | 'û' | 'ü' | 'ű' | 'ů' => "u".into(),
            'ý' => "y".into(),
            'ß' => "ss".into(),
            'ł' => "l".into(),
            'ś' | 'š' | 'ş' | 'ș' => "s".into(),
            'ź' | 'ż' | 'ž' => "z".into(),
            'ř' => "r".into(),
            'ğ' => "g".into(),
            'ț' => "t".into(),
            'đ' => "d".into(),
            'ả' | 'ạ' => "a".into(),
            _ => String::new(),
        };
        folded.push_str(&plain);
    }
    folded
}

/// FNV-1a: a stable hash (std's hasher may change between Rust versions).
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    })
}

/// `generate`'s command line.
#[derive(Debug, Clone, Args)]
pub struct GenerateConfig {
    /// The FHIR base URL of the server to load.
    #[arg(long, default_value = "http://127.0.0.1:8080/fhir")]
    pub url: String,

    /// How many resources to make (at least; generation stops after a whole day).
    #[arg(long, default_value_t = 1_000_000)]
    pub resources: usize,

    /// The seed: the same seed and size give the same data.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,

    /// Send the resources as transaction Bundles of this many entries (each a PUT of its
    /// id) instead of one PUT per resource; 0 for single PUTs.
    #[arg(long, default_value_t = 0)]
    pub bundle: usize,

    /// Only generate and count, without a server: shows the shape and the generation rate.
    #[arg(long)]
    pub dry_run: bool,
}

/// One resource ready to send.
#[derive(Clone)]
struct Item {
    resource_type: String,
    id: String,
    body: Bytes,
}

impl Item {
    fn new(resource: &Value) -> Item {
        let text = |key: &str| resource[key].as_str().unwrap_or_default().to_owned();
        Item {
            resource_type: text("resourceType"),
            id: text("id"),
            body: Bytes::from(serde_json::to_vec(resource).unwrap_or_default()),
        }
    }
}

/// What went wrong with one resource.
struct Failure {
    what: String,
    status: Option<u16>,
    body: String,
}

/// How many resources one request carried, and whether the server stored them.
type Outcome = (usize, Result<(), Failure>);

/// The counters the senders update and the progress reporter reads.
#[derive(Default)]
struct Progress {
    done: AtomicUsize,
    failed: AtomicUsize,
}

/// What the loader sent, for the final report.
#[derive(Default)]
struct Tally {
    /// The resources sent, by type.
    per_type: BTreeMap<String, usize>,
    /// The first few failures: enough to see what went wrong without flooding the output.
    failures: Vec<Failure>,
    /// The resources that were not stored.
    failure_count: usize,
}

impl Tally {
    /// Counts a batch by type before it is sent, whether it is then stored or not.
    fn count_types(&mut self, batch: &[Item]) {
        for item in batch {
            *self.per_type.entry(item.resource_type.clone()).or_default() += 1;
        }
    }

    /// Counts the failures among a batch's outcomes (for the reporter too) and keeps the
    /// first few.
    fn record(&mut self, outcomes: Vec<Outcome>, progress: &Progress) {
        for (count, result) in outcomes {
            if let Err(failure) = result {
                progress.failed.fetch_add(count, Ordering::Relaxed);
                self.failure_count += count;
                if self.failures.len() < 5 {
                    self.failures.push(failure);
                }
            }
        }
    }
}

pub async fn run(config: GenerateConfig) -> Result<(), String> {
    if config.resources < MIN_RESOURCES {
        return Err(format!("--resources must be at least {MIN_RESOURCES}"));
    }
    let practice = Practice::new(config.resources, config.seed);
    print_plan(&practice);
    if config.dry_run {
        return dry_run(&practice);
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .http1_only()
        .build()
        .map_err(|e| e.to_string())?;
    let base = config.url.trim_end_matches('/').to_owned();
    check_server(&client, &base).await?;
    let receiver = spawn_generator(&practice)?;
    let progress = Arc::new(Progress::default());
    let started = Instant::now();
    let reporter = spawn_reporter(progress.clone(), practice.shape.resources, started);
    let tally = load(&config, &client, &base, receiver, &progress).await;
    reporter.abort();
    print_summary(&tally, started.elapsed().as_secs_f64(), config.clients);
    if tally.failure_count > 0 {
        return Err(format!("{} resources were not stored", tally.failure_count));
    }
    Ok(())
}

/// Says what will be made before the long part starts, so a wrong size or seed shows at
/// once.
fn print_plan(practice: &Practice) {
    let shape = &practice.shape;
    println!(
        "practice for {} resources (seed {}): {} practitioners, {} locations, {} payers, {} patients, \
         slots on {} business days from {} ({} before {}, about {} from it)",
        shape.resources,
        practice.seed,
        shape.practitioners,
        shape.locations,
        shape.payers,
        shape.patients,
        shape.past_days + shape.future_days,
        format_date(practice.day(0)),
        shape.past_days,
        format_date(TODAY),
        shape.future_days
    );
}

/// Checks that the server at `base` answers `metadata`, so that a wrong URL fails at once
/// rather than as one failure per resource.
pub async fn check_server(client: &reqwest::Client, base: &str) -> Result<(), String> {
    let metadata = client
        .get(format!("{base}/metadata"))
        .send()
        .await
        .map_err(|e| format!("cannot reach {base}: {e}"))?;
    if !metadata.status().is_success() {
        return Err(format!("{base}/metadata answered {}", metadata.status()));
    }
    Ok(())
}

/// Generation and serialization run on their own thread, a few batches ahead, so that the
/// senders never wait for them.
fn spawn_generator(practice: &Practice) -> Result<tokio::sync::mpsc::Receiver<Vec<Item>>, String> {
    let (sender, receiver) = tokio::sync::mpsc::channel::<Vec<Item>>(4);
    let generator = practice.clone();
    std::thread::Builder::new()
        .name("generate".into())
        .spawn(move || {
            for batch in generator.batches() {
                let items = batch.iter().map(Item::new).collect();
                if sender.blocking_send(items).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| format!("cannot start the generator: {e}"))?;
    Ok(receiver)
}

/// Prints the progress every five seconds until aborted: a load of millions takes long
/// enough that silence would look like a hang.
fn spawn_reporter(
    progress: Arc<Progress>,
    target: usize,
    started: Instant,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(5));
        ticks.tick().await;
        let mut last = (0, Instant::now());
        loop {
            ticks.tick().await;
            let now = (progress.done.load(Ordering::Relaxed), Instant::now());
            println!(
                "  {:>9} of ~{target} resources  {:>6.0}/s (now {:>6.0}/s)  {} errors  {:.0}s",
                now.0,
                now.0 as f64 / started.elapsed().as_secs_f64(),
                (now.0 - last.0) as f64 / (now.1 - last.1).as_secs_f64(),
                progress.failed.load(Ordering::Relaxed),
                started.elapsed().as_secs_f64()
            );
            last = now;
        }
    })
}

/// Sends the batches in order, each finished before the next starts (see the module
/// documentation: later batches refer to earlier ones).
async fn load(
    config: &GenerateConfig,
    client: &reqwest::Client,
    base: &str,
    mut receiver: tokio::sync::mpsc::Receiver<Vec<Item>>,
    progress: &Progress,
) -> Tally {
    let mut tally = Tally::default();
    while let Some(batch) = receiver.recv().await {
        tally.count_types(&batch);
        let outcomes = if config.bundle > 0 {
            send_bundles(client, base, &batch, config, progress).await
        } else {
            send_singly(client, base, batch, config, progress).await
        };
        tally.record(outcomes, progress);
    }
    tally
}

/// Sends `batch` as transaction Bundles of `--bundle` entries, `--clients` at a time.
async fn send_bundles(
    client: &reqwest::Client,
    base: &str,
    batch: &[Item],
    config: &GenerateConfig,
    progress: &Progress,
) -> Vec<Outcome> {
    futures::stream::iter(batch.chunks(config.bundle))
        .map(|chunk| async move {
            let result = post_bundle(client, base, chunk).await;
            progress.done.fetch_add(chunk.len(), Ordering::Relaxed);
            (chunk.len(), result)
        })
        .buffer_unordered(config.clients.max(1))
        .collect()
        .await
}

/// Sends `batch` one PUT per resource, `--clients` at a time.
async fn send_singly(
    client: &reqwest::Client,
    base: &str,
    batch: Vec<Item>,
    config: &GenerateConfig,
    progress: &Progress,
) -> Vec<Outcome> {
    futures::stream::iter(batch)
        .map(|item| async move {
            let result = put(client, base, item).await;
            progress.done.fetch_add(1, Ordering::Relaxed);
            (1, result)
        })
        .buffer_unordered(config.clients.max(1))
        .collect()
        .await
}

/// The rate, the counts by type and the first failures.
fn print_summary(tally: &Tally, elapsed: f64, clients: usize) {
    let total: usize = tally.per_type.values().sum();
    println!(
        "loaded {total} resources in {elapsed:.1}s: {:.0}/s with {clients} clients, {} errors",
        total as f64 / elapsed,
        tally.failure_count
    );
    print_counts(&tally.per_type);
    for failure in &tally.failures {
        let status = failure
            .status
            .map_or_else(|| "no answer".to_owned(), |s| s.to_string());
        println!("failed: {} -> {status}\n  {}", failure.what, failure.body);
    }
}

fn print_counts(per_type: &BTreeMap<String, usize>) {
    for (resource_type, count) in per_type {
        println!("  {resource_type:<18} {count:>9}");
    }
}

/// Generates everything without sending it: the counts and the generation rate.
fn dry_run(practice: &Practice) -> Result<(), String> {
    let started = Instant::now();
    let mut per_type: BTreeMap<String, usize> = BTreeMap::new();
    let mut bytes = 0usize;
    for batch in practice.batches() {
        for resource in &batch {
            let item = Item::new(resource);
            bytes += item.body.len();
            *per_type.entry(item.resource_type).or_default() += 1;
        }
    }
    let total: usize = per_type.values().sum();
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "generated {total} resources ({:.0} MiB of JSON, {:.0} bytes each) in {elapsed:.1}s: {:.0}/s",
        bytes as f64 / 1_048_576.0,
        bytes as f64 / total.max(1) as f64,
        total as f64 / elapsed
    );
    print_counts(&per_type);
    Ok(())
}

/// `PUT [type]/[id]` (update as create), retried when the connection fails or the server
/// reports a conflict or overload.
async fn put(client: &reqwest::Client, base: &str, item: Item) -> Result<(), Failure> {
    let url = format!("{base}/{}/{}", item.resource_type, item.id);
    let what = format!("PUT {}/{}", item.resource_type, item.id);
    send(client.put(&url), what, item.body).await
}

/// A transaction Bundle of `items`, each a `PUT [type]/[id]`.
async fn post_bundle(client: &reqwest::Client, base: &str, items: &[Item]) -> Result<(), Failure> {
    let mut body = Vec::with_capacity(items.iter().map(|i| i.body.len() + 96).sum::<usize>() + 64);
    body.extend_from_slice(br#"{"resourceType":"Bundle","type":"transaction","entry":["#);
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(br#"{"resource":"#);
        body.extend_from_slice(&item.body);
        body.extend_from_slice(
            format!(
                r#","request":{{"method":"PUT","url":"{}/{}"}}}}"#,
                item.resource_type, item.id
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(b"]}");
    let what = format!(
        "a transaction of {} ({}/{} ...)",
        items.len(),
        items.first().map_or("", |i| i.resource_type.as_str()),
        items.first().map_or("", |i| i.id.as_str())
    );
    send(client.post(base), what, Bytes::from(body)).await
}

/// Sends a write, retried when the connection fails or the server reports a conflict or
/// overload.
async fn send(request: reqwest::RequestBuilder, what: String, body: Bytes) -> Result<(), Failure> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let Some(request) = request.try_clone() else {
            return Err(Failure {
                what,
                status: None,
                body: "the request cannot be sent again".into(),
            });
        };
        let response = request
            .header("content-type", "application/fhir+json")
            .header("prefer", "return=minimal")
            .body(body.clone())
            .send()
            .await;
        let retry = match response {
            Ok(response) if response.status().is_success() => {
                let _ = response.bytes().await;
                return Ok(());
            }
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.text().await.unwrap_or_default();
                if !matches!(status, 409 | 429 | 503) || attempt >= 5 {
                    return Err(Failure {
                        what,
                        status: Some(status),
                        body,
                    });
                }
                body
            }
            Err(error) if attempt >= 5 => {
                return Err(Failure {
                    what,
                    status: None,
                    body: error.to_string(),
                });
            }
            Err(error) => error.to_string(),
        };
        tracing::debug!(%what, %retry, "retrying");
        tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
    }
}

/// Payers, in order; a practice of the target size uses the first few.
const PAYER_NAMES: &[&str] = &[
    "Aurora Health Insurance",
    "BlueRiver Mutual",
    "Cedar Health Plan",
    "Summit Care Insurance",
    "Prairie State Health",
    "Keystone Assurance",
    "Harbor Health Alliance",
    "Meridian Medical Plan",
    "Northstar Health",
    "Pioneer Benefit Trust",
    "Evergreen Insurance Co.",
    "Unity Health Partners",
];

const PLAN_NAMES: &[&str] = &["Bronze", "Silver", "Gold", "Platinum"];

const LOCATION_AREAS: &[&str] = &[
    "Downtown",
    "North",
    "Westside",
    "Riverside",
    "Hillcrest",
    "East End",
    "Southgate",
    "Lakeview",
];

/// Towns around the practice, with a ZIP code each.
const CITIES: &[(&str, &str)] = &[
    ("Springfield", "62701"),
    ("Springfield", "62702"),
    ("Springfield", "62704"),
    ("Chatham", "62629"),
    ("Rochester", "62563"),
    ("Sherman", "62684"),
    ("Riverton", "62561"),
    ("Petersburg", "62675"),
    ("Jacksonville", "62650"),
    ("Decatur", "62521"),
    ("Lincoln", "62656"),
    ("Taylorville", "62568"),
];

const STREETS: &[&str] = &[
    "Oak Street",
    "Maple Avenue",
    "Cedar Lane",
    "Elm Street",
    "Pine Road",
    "Washington Street",
    "Lincoln Avenue",
    "Jefferson Street",
    "Monroe Street",
    "Madison Avenue",
    "Park Drive",
    "Lake Road",
    "Hill Street",
    "Walnut Court",
    "Chestnut Street",
    "Spring Street",
    "Church Street",
    "Main Street",
    "Mill Road",
    "Cherry Lane",
    "Sunset Drive",
    "Meadow Lane",
    "Grand Avenue",
    "Adams Street",
    "Jackson Boulevard",
];

/// Appointment types (v2 table 0276).
const VISIT_KINDS: &[(&str, &str)] = &[
    ("ROUTINE", "Routine appointment - default if not valued"),
    ("FOLLOWUP", "A follow up visit from a previous appointment"),
    ("CHECKUP", "A routine check-up, such as an annual physical"),
    ("WALKIN", "A previously unscheduled walk-in visit"),
];

/// Common family-practice diagnoses (ICD-10).
const DIAGNOSES: &[(&str, &str)] = &[
    ("J06.9", "Acute upper respiratory infection, unspecified"),
    ("I10", "Essential (primary) hypertension"),
    ("E11.9", "Type 2 diabetes mellitus without complications"),
    ("E78.5", "Hyperlipidemia, unspecified"),
    ("M54.5", "Low back pain"),
    (
        "Z00.00",
        "Encounter for general adult medical examination without abnormal findings",
    ),
    ("J02.9", "Acute pharyngitis, unspecified"),
    ("N39.0", "Urinary tract infection, site not specified"),
    ("F41.1", "Generalized anxiety disorder"),
    (
        "K21.9",
        "Gastro-esophageal reflux disease without esophagitis",
    ),
    ("J45.909", "Unspecified asthma, uncomplicated"),
    ("R51", "Headache"),
    ("Z23", "Encounter for immunization"),
    ("L30.9", "Dermatitis, unspecified"),
    ("H66.90", "Otitis media, unspecified, unspecified ear"),
];

/// Billed services (CPT), with a price in cents.
const SERVICES: &[(&str, &str, u64)] = &[
    (
        "99212",
        "Office visit, established patient, straightforward",
        5_500,
    ),
    (
        "99213",
        "Office visit, established patient, low complexity",
        11_000,
    ),
    (
        "99214",
        "Office visit, established patient, moderate complexity",
        16_500,
    ),
    (
        "99215",
        "Office visit, established patient, high complexity",
        22_000,
    ),
    (
        "99396",
        "Periodic preventive medicine visit, established patient, 40-64 years",
        25_000,
    ),
    ("36415", "Collection of venous blood by venipuncture", 1_500),
    (
        "81002",
        "Urinalysis, non-automated, without microscopy",
        1_200,
    ),
    ("87880", "Rapid strep test (Streptococcus, group A)", 3_500),
    ("90471", "Immunization administration, one vaccine", 3_000),
    (
        "93000",
        "Electrocardiogram, routine, with interpretation and report",
        6_000,
    ),
];

/// Family names from many origins, some with accents, apostrophes or spaces.
const FAMILY_NAMES: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Miller",
    "Davis",
    "Wilson",
    "Anderson",
    "Taylor",
    "Thomas",
    "Moore",
    "Jackson",
    "White",
    "Harris",
    "Martin",
    "Thompson",
    "Clark",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Hill",
    "Green",
    "Adams",
    "Baker",
    "Nelson",
    "Carter",
    "Mitchell",
    "Roberts",
    "Turner",
    "Phillips",
    "Campbell",
    "Parker",
    "Evans",
    "Edwards",
    "Collins",
    "Stewart",
    "Morris",
    "Murphy",
    "Cook",
    "Rogers",
    "Morgan",
    "Cooper",
    "Peterson",
    "Bailey",
    "Reed",
    "Kelly",
    "Howard",
    "Cox",
    "Ward",
    "Richardson",
    "Watson",
    "Brooks",
    "Wood",
    "James",
    "Bennett",
    "Gray",
    "Hughes",
    "Price",
    "Sanders",
    "Myers",
    "Long",
    "Ross",
    "Foster",
    "Powell",
    "Jenkins",
    "Perry",
    "Russell",
    "Sullivan",
    "Bell",
    "Coleman",
    "Butler",
    "Henderson",
    "Barnes",
    "Fisher",
    "Graham",
    "Hamilton",
    "Murray",
    "Kennedy",
    "Wallace",
    "Gordon",
    "Fraser",
    "Duncan",
    "Ferguson",
    "MacDonald",
    "McCarthy",
    "O'Brien",
    "O'Connor",
    "O'Neill",
    "Walsh",
    "Byrne",
    "Ryan",
    "Doyle",
    "Quinn",
    "Lynch",
    "Gallagher",
    "Fitzgerald",
    "Doherty",
    "Kavanagh",
    "Brennan",
    "Burke",
    "Nolan",
    "Dunne",
    "Flanagan",
    "Shaw",
    "Müller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Meyer",
    "Wagner",
    "Becker",
    "Schulz",
    "Hoffmann",
    "Schäfer",
    "Koch",
    "Bauer",
    "Richter",
    "Klein",
    "Wolf",
    "Schröder",
    "Neumann",
    "Schwarz",
    "Zimmermann",
    "Braun",
    "Krüger",
    "Hofmann",
    "Hartmann",
    "Lange",
    "Schmitt",
    "Werner",
    "Schmitz",
    "Krause",
    "Meier",
    "Lehmann",
    "Schmid",
    "Schulze",
    "Maier",
    "Köhler",
    "Herrmann",
    "König",
    "Walter",
    "Mayer",
    "Huber",
    "Kaiser",
    "Fuchs",
    "Peters",
    "Lang",
    "Scholz",
    "Möller",
    "Weiß",
    "Jung",
    "Hahn",
    "Schubert",
    "Vogel",
    "Friedrich",
    "Keller",
    "Günther",
    "Frank",
    "Berger",
    "Winkler",
    "Roth",
    "Beck",
    "Lorenz",
    "García",
    "Rodríguez",
    "Martínez",
    "Hernández",
    "López",
    "González",
    "Pérez",
    "Sánchez",
    "Ramírez",
    "Torres",
    "Flores",
    "Rivera",
    "Gómez",
    "Díaz",
    "Reyes",
    "Morales",
    "Cruz",
    "Ortiz",
    "Gutiérrez",
    "Chávez",
    "Ramos",
    "Ruiz",
    "Álvarez",
    "Mendoza",
    "Castillo",
    "Jiménez",
    "Moreno",
    "Romero",
    "Herrera",
    "Medina",
    "Aguilar",
    "Vargas",
    "Castro",
    "Guzmán",
    "Fernández",
    "Muñoz",
    "Núñez",
    "Rojas",
    "Domínguez",
    "Vázquez",
    "Soto",
    "Delgado",
    "Ibáñez",
    "Peña",
    "Navarro",
    "Serrano",
    "Molina",
    "Suárez",
    "Blanco",
    "Iglesias",
    "Cortés",
    "Santos",
    "Guerrero",
    "Lozano",
    "Cabrera",
    "Campos",
    "Vega",
    "Fuentes",
    "Carrasco",
    "Marín",
    "Silva",
    "Oliveira",
    "Souza",
    "Pereira",
    "Costa",
    "Rodrigues",
    "Almeida",
    "Nascimento",
    "Lima",
    "Araújo",
    "Fernandes",
    "Carvalho",
    "Gonçalves",
    "Ribeiro",
    "Conceição",
    "Gomes",
    "Rossi",
    "Russo",
    "Ferrari",
    "Esposito",
    "Bianchi",
    "Romano",
    "Colombo",
    "Ricci",
    "Marino",
    "Greco",
    "Bruno",
    "Gallo",
    "Conti",
    "De Luca",
    "Mancini",
    "Giordano",
    "Rizzo",
    "Lombardi",
    "Moretti",
    "Barbieri",
    "Fontana",
    "Santoro",
    "Mariani",
    "Rinaldi",
    "Caruso",
    "Ferrara",
    "Galli",
    "Martini",
    "Leone",
    "Longo",
    "Gentile",
    "Martinelli",
    "Vitale",
    "Lombardo",
    "Serra",
    "Coppola",
    "De Santis",
    "D'Angelo",
    "Bernard",
    "Dubois",
    "Robert",
    "Richard",
    "Petit",
    "Durand",
    "Leroy",
    "Moreau",
    "Simon",
    "Laurent",
    "Lefèvre",
    "Michel",
    "Fournier",
    "Girard",
    "Bonnet",
    "Dupont",
    "Lambert",
    "Fontaine",
    "Rousseau",
    "Vincent",
    "Lefebvre",
    "Faure",
    "André",
    "Mercier",
    "Blanc",
    "Guérin",
    "Boyer",
    "Garnier",
    "Chevalier",
    "François",
    "Legrand",
    "Gauthier",
    "Perrin",
    "Roussel",
    "Clément",
    "Gérard",
    "Benoît",
    "de Jong",
    "Jansen",
    "de Vries",
    "van den Berg",
    "van Dijk",
    "Bakker",
    "Janssen",
    "Visser",
    "Smit",
    "Meijer",
    "de Boer",
    "Mulder",
    "de Groot",
    "Bos",
    "Vos",
    "Hansen",
    "Johansen",
    "Olsen",
    "Larsen",
    "Andersen",
    "Pedersen",
    "Nielsen",
    "Kristiansen",
    "Jensen",
    "Karlsson",
    "Nilsson",
    "Eriksson",
    "Larsson",
    "Olsson",
    "Persson",
    "Svensson",
    "Gustafsson",
    "Lindqvist",
    "Jönsson",
    "Åberg",
    "Söderberg",
    "Lindström",
    "Sjöberg",
    "Björk",
    "Ødegaard",
    "Østergaard",
    "Nowak",
    "Kowalski",
    "Wiśniewski",
    "Wójcik",
    "Kowalczyk",
    "Kamiński",
    "Lewandowski",
    "Zieliński",
    "Szymański",
    "Woźniak",
    "Dąbrowski",
    "Kozłowski",
    "Jankowski",
    "Mazur",
    "Kwiatkowski",
    "Krawczyk",
    "Piotrowski",
    "Grabowski",
    "Nowakowski",
    "Pawłowski",
    "Michalski",
    "Novák",
    "Svoboda",
    "Novotný",
    "Dvořák",
    "Černý",
    "Procházka",
    "Kučera",
    "Veselý",
    "Horák",
    "Ivanov",
    "Petrov",
    "Smirnov",
    "Popov",
    "Kuznetsov",
    "Horvat",
    "Kovačević",
    "Babić",
    "Jovanović",
    "Petrović",
    "Nikolić",
    "Nagy",
    "Kovács",
    "Tóth",
    "Szabó",
    "Horváth",
    "Varga",
    "Popescu",
    "Ionescu",
    "Popa",
    "Stoica",
    "Papadopoulos",
    "Georgiou",
    "Nikolaidis",
    "Dimitriou",
    "Yılmaz",
    "Kaya",
    "Demir",
    "Şahin",
    "Çelik",
    "Yıldız",
    "Yıldırım",
    "Öztürk",
    "Aydın",
    "Özdemir",
    "Arslan",
    "Nguyen",
    "Tran",
    "Le",
    "Pham",
    "Hoang",
    "Phan",
    "Vu",
    "Dang",
    "Bui",
    "Do",
    "Ho",
    "Ngo",
    "Duong",
    "Ly",
    "Wang",
    "Li",
    "Zhang",
    "Liu",
    "Chen",
    "Yang",
    "Huang",
    "Zhao",
    "Wu",
    "Zhou",
    "Xu",
    "Sun",
    "Ma",
    "Zhu",
    "Hu",
    "Guo",
    "Lin",
    "He",
    "Gao",
    "Luo",
    "Kim",
    "Lee",
    "Park",
    "Choi",
    "Kang",
    "Cho",
    "Yoon",
    "Jang",
    "Lim",
    "Sato",
    "Suzuki",
    "Takahashi",
    "Tanaka",
    "Watanabe",
    "Ito",
    "Yamamoto",
    "Nakamura",
    "Kobayashi",
    "Kato",
    "Yoshida",
    "Yamada",
    "Sasaki",
    "Yamaguchi",
    "Matsumoto",
    "Inoue",
    "Patel",
    "Shah",
    "Singh",
    "Kumar",
    "Sharma",
    "Gupta",
    "Khan",
    "Ali",
    "Ahmed",
    "Hussain",
    "Rahman",
    "Das",
    "Reddy",
    "Rao",
    "Iyer",
    "Nair",
    "Menon",
    "Pillai",
    "Joshi",
    "Mehta",
    "Chopra",
    "Kapoor",
    "Malhotra",
    "Banerjee",
    "Chatterjee",
    "Mukherjee",
    "Bose",
    "Desai",
    "Verma",
    "Agarwal",
    "Haddad",
    "Khoury",
    "Nasser",
    "Hamdan",
    "Mansour",
    "Saleh",
    "Aziz",
    "Ibrahim",
    "Hassan",
    "Mahmoud",
    "Farouk",
    "Cohen",
    "Levi",
    "Mizrahi",
    "Friedman",
    "Katz",
    "Okafor",
    "Okonkwo",
    "Adeyemi",
    "Balogun",
    "Eze",
    "Nwosu",
    "Obi",
    "Mensah",
    "Boateng",
    "Asante",
    "Owusu",
    "Kamau",
    "Mwangi",
    "Otieno",
    "Wanjiru",
    "Diallo",
    "Traoré",
    "Koné",
    "Diop",
    "Ndiaye",
    "Moyo",
    "Dlamini",
    "Nkosi",
    "Mbeki",
    "Tesfaye",
    "Bekele",
    "Haile",
];

/// Female given names.
const FEMALE_NAMES: &[&str] = &[
    "Mary",
    "Patricia",
    "Jennifer",
    "Linda",
    "Elizabeth",
    "Barbara",
    "Susan",
    "Jessica",
    "Sarah",
    "Karen",
    "Lisa",
    "Nancy",
    "Betty",
    "Margaret",
    "Sandra",
    "Ashley",
    "Kimberly",
    "Emily",
    "Donna",
    "Michelle",
    "Carol",
    "Amanda",
    "Dorothy",
    "Melissa",
    "Deborah",
    "Stephanie",
    "Rebecca",
    "Sharon",
    "Laura",
    "Cynthia",
    "Kathleen",
    "Amy",
    "Angela",
    "Shirley",
    "Anna",
    "Brenda",
    "Pamela",
    "Emma",
    "Nicole",
    "Helen",
    "Samantha",
    "Katherine",
    "Christine",
    "Debra",
    "Rachel",
    "Carolyn",
    "Janet",
    "Catherine",
    "Maria",
    "Heather",
    "Diane",
    "Ruth",
    "Julie",
    "Olivia",
    "Joyce",
    "Virginia",
    "Victoria",
    "Kelly",
    "Lauren",
    "Christina",
    "Joan",
    "Evelyn",
    "Judith",
    "Megan",
    "Andrea",
    "Cheryl",
    "Hannah",
    "Jacqueline",
    "Martha",
    "Gloria",
    "Teresa",
    "Ann",
    "Sara",
    "Madison",
    "Frances",
    "Kathryn",
    "Janice",
    "Jean",
    "Abigail",
    "Alice",
    "Julia",
    "Judy",
    "Sophia",
    "Grace",
    "Denise",
    "Amber",
    "Doris",
    "Marilyn",
    "Danielle",
    "Beverly",
    "Isabella",
    "Theresa",
    "Diana",
    "Natalie",
    "Charlotte",
    "Marie",
    "Sophie",
    "Léa",
    "Chloé",
    "Camille",
    "Manon",
    "Inès",
    "Zoé",
    "Élodie",
    "Amélie",
    "Hélène",
    "Lena",
    "Mia",
    "Leonie",
    "Jana",
    "Anneliese",
    "Käthe",
    "Lucía",
    "Sofía",
    "María",
    "Carmen",
    "Pilar",
    "Mercedes",
    "Ana",
    "Begoña",
    "Guadalupe",
    "Dolores",
    "Giulia",
    "Francesca",
    "Chiara",
    "Alessia",
    "Martina",
    "Giorgia",
    "Ingrid",
    "Astrid",
    "Sigrid",
    "Åsa",
    "Malin",
    "Agnieszka",
    "Katarzyna",
    "Małgorzata",
    "Zofia",
    "Ewa",
    "Olga",
    "Tatiana",
    "Svetlana",
    "Mei",
    "Xiu",
    "Yan",
    "Hui",
    "Yuki",
    "Sakura",
    "Aiko",
    "Min-ji",
    "Ji-woo",
    "Linh",
    "Thảo",
    "Lan",
    "Priya",
    "Ananya",
    "Deepika",
    "Aisha",
    "Fatima",
    "Leila",
    "Yasmin",
    "Amara",
    "Chiamaka",
    "Ngozi",
    "Adaeze",
    "Abena",
    "Zanele",
    "Noa",
    "Tamar",
    "Efua",
];

/// Male given names.
const MALE_NAMES: &[&str] = &[
    "James",
    "Robert",
    "John",
    "Michael",
    "David",
    "William",
    "Richard",
    "Joseph",
    "Thomas",
    "Charles",
    "Christopher",
    "Daniel",
    "Matthew",
    "Anthony",
    "Mark",
    "Donald",
    "Steven",
    "Paul",
    "Andrew",
    "Joshua",
    "Kenneth",
    "Kevin",
    "Brian",
    "George",
    "Timothy",
    "Ronald",
    "Edward",
    "Jason",
    "Jeffrey",
    "Ryan",
    "Jacob",
    "Gary",
    "Nicholas",
    "Eric",
    "Jonathan",
    "Stephen",
    "Larry",
    "Justin",
    "Scott",
    "Brandon",
    "Benjamin",
    "Samuel",
    "Gregory",
    "Alexander",
    "Frank",
    "Patrick",
    "Raymond",
    "Jack",
    "Dennis",
    "Jerry",
    "Tyler",
    "Aaron",
    "Henry",
    "Adam",
    "Douglas",
    "Nathan",
    "Peter",
    "Zachary",
    "Kyle",
    "Walter",
    "Harold",
    "Jeremy",
    "Ethan",
    "Carl",
    "Keith",
    "Roger",
    "Gerald",
    "Christian",
    "Terry",
    "Sean",
    "Arthur",
    "Austin",
    "Noah",
    "Lawrence",
    "Jesse",
    "Joe",
    "Bryan",
    "Billy",
    "Jordan",
    "Albert",
    "Dylan",
    "Bruce",
    "Gabriel",
    "Alan",
    "Juan",
    "Logan",
    "Wayne",
    "Ralph",
    "Roy",
    "Eugene",
    "Randy",
    "Vincent",
    "Russell",
    "Louis",
    "Philip",
    "Bobby",
    "Johnny",
    "Bradley",
    "Lukas",
    "Jonas",
    "Felix",
    "Maximilian",
    "Jürgen",
    "Jörg",
    "Björn",
    "Sören",
    "Günter",
    "Moritz",
    "Luis",
    "José",
    "Jesús",
    "Andrés",
    "Sebastián",
    "Martín",
    "Nicolás",
    "Joaquín",
    "Ramón",
    "Íñigo",
    "Álvaro",
    "Matías",
    "Lorenzo",
    "Giuseppe",
    "Francesco",
    "Alessandro",
    "Matteo",
    "Niccolò",
    "Luca",
    "Hugo",
    "Théo",
    "Mathéo",
    "Clément",
    "Rémi",
    "Jérôme",
    "François",
    "Gaël",
    "Lars",
    "Erik",
    "Magnus",
    "Anders",
    "Øyvind",
    "Piotr",
    "Paweł",
    "Krzysztof",
    "Łukasz",
    "Tomasz",
    "Jiří",
    "Dmitri",
    "Ivan",
    "Sergei",
    "Wei",
    "Jun",
    "Hao",
    "Lei",
    "Hiroshi",
    "Takeshi",
    "Kenji",
    "Min-jun",
    "Seo-jun",
    "Minh",
    "Duc",
    "Quang",
    "Arjun",
    "Rahul",
    "Vikram",
    "Omar",
    "Ahmed",
    "Mohammed",
    "Yusuf",
    "Karim",
    "Chinedu",
    "Emeka",
    "Kwame",
    "Kofi",
    "Tunde",
    "Sipho",
    "Thabo",
    "Yosef",
    "Eitan",
    "Mehmet",
    "Mustafa",
    "Emre",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_data() {
        let a: Vec<Value> = Practice::new(2_000, 7).batches().flatten().collect();
        let b: Vec<Value> = Practice::new(2_000, 7).batches().flatten().collect();
        assert_eq!(a, b);
        let c: Vec<Value> = Practice::new(2_000, 8).batches().flatten().collect();
        assert_ne!(a, c);
    }

    #[test]
    fn reaches_the_target_in_dependency_order() {
        for n in [2_000, 20_000] {
            let practice = Practice::new(n, 1);
            let mut seen = std::collections::HashSet::new();
            let mut total = 0;
            for batch in practice.batches() {
                let ids: Vec<String> = batch
                    .iter()
                    .map(|r| {
                        format!(
                            "{}/{}",
                            r["resourceType"].as_str().unwrap(),
                            r["id"].as_str().unwrap()
                        )
                    })
                    .collect();
                // Every reference points to an earlier batch.
                for resource in &batch {
                    let text = resource.to_string();
                    for part in text.split("\"reference\":\"").skip(1) {
                        let target = part.split('"').next().unwrap();
                        assert!(
                            seen.contains(target),
                            "{target} referenced before it exists"
                        );
                    }
                }
                for id in ids {
                    assert!(seen.insert(id.clone()), "{id} made twice");
                }
                total += batch.len();
            }
            assert!(total >= n && total < n + n / 10, "{total} for {n}");
        }
    }

    #[test]
    fn name_lists_have_no_duplicates() {
        for list in [FAMILY_NAMES, FEMALE_NAMES, MALE_NAMES] {
            let unique: std::collections::HashSet<_> = list.iter().collect();
            assert_eq!(unique.len(), list.len());
        }
        assert_eq!(ascii_fold("Núñez-O'Brien Weiß"), "nunezobrienweiss");
    }
}
