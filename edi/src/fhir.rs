//! Reading and writing the FHIR side: the resources of a Bundle by reference, and the
//! few datatypes the X12 maps use (identifiers, names, addresses, money, dates).

use std::collections::HashMap;

use serde_json::{Value, json};

/// Identifier systems and code systems the maps use.
pub mod systems {
    pub const NPI: &str = "http://hl7.org/fhir/sid/us-npi";
    /// US Employer Identification Number (tax id).
    pub const EIN: &str = "urn:oid:2.16.840.1.113883.4.4";
    pub const SSN: &str = "http://hl7.org/fhir/sid/us-ssn";
    pub const ICD10CM: &str = "http://hl7.org/fhir/sid/icd-10-cm";
    pub const CPT: &str = "http://www.ama-assn.org/go/cpt";
    pub const HCPCS: &str = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets";
    pub const CPT_MODIFIER: &str = "http://www.ama-assn.org/go/cpt-modifier";
    /// National Drug Code (837P LIN03 with LIN02 `N4`, the 11-digit 5-4-2 form).
    pub const NDC: &str = "http://hl7.org/fhir/sid/ndc";
    pub const UCUM: &str = "http://unitsofmeasure.org";
    /// A drug's pharmacy prescription number (837P loop 2410 REF*XZ).
    pub const PRESCRIPTION_NUMBER_EXTENSION: &str = "urn:x12:prescription-number";
    /// The link sequence number tying a compound drug's lines (837P loop 2410 REF*VY).
    pub const LINK_SEQUENCE_EXTENSION: &str = "urn:x12:link-sequence-number";
    pub const PLACE_OF_SERVICE: &str =
        "https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set";
    pub const CLAIM_TYPE: &str = "http://terminology.hl7.org/CodeSystem/claim-type";
    /// The patient control number (CLM01) of a Claim.
    pub const PATIENT_CONTROL_NUMBER: &str = "urn:x12:clm01";
    /// A payer's id as an 837 names it (NM109 of 2010BB).
    pub const PAYER_ID: &str = "urn:x12:payer-id";
    /// A payer's claim control number (835 CLP07, 837 REF*F8).
    pub const PAYER_CLAIM_NUMBER: &str = "urn:x12:payer-claim-control-number";
    /// A check or EFT trace number (835 TRN02).
    pub const TRACE_NUMBER: &str = "urn:x12:trn02";
    /// A remittance's key, `TRN03:TRN02` (the trace number with the payer that issued it).
    pub const REMITTANCE_KEY: &str = "urn:x12:trn";
    /// A line item control number (837 REF*6R, echoed in 835 REF*6R).
    pub const LINE_CONTROL_EXTENSION: &str = "urn:x12:line-item-control-number";
    pub const CARC: &str = "https://x12.org/codes/claim-adjustment-reason-codes";
    pub const RARC: &str = "https://x12.org/codes/remittance-advice-remark-codes";
    pub const CAS_GROUP: &str = "https://x12.org/codes/claim-adjustment-group-codes";
    pub const ADJUDICATION: &str = "http://terminology.hl7.org/CodeSystem/adjudication";
    pub const SUBSCRIBER_RELATIONSHIP: &str =
        "http://terminology.hl7.org/CodeSystem/subscriber-relationship";
    pub const CLAIM_FILING: &str = "https://x12.org/codes/claim-filing-indicator";
    pub const TAXONOMY: &str = "http://nucc.org/provider-taxonomy";
}

/// The resources of a Bundle, by `Type/id` and by fullUrl.
pub struct Resources<'a> {
    by_reference: HashMap<String, &'a Value>,
}

impl<'a> Resources<'a> {
    /// Indexes a Bundle's entries (or a single resource).
    pub fn of_bundle(bundle: &'a Value) -> Resources<'a> {
        let mut by_reference = HashMap::new();
        let mut add = |resource: &'a Value, full_url: Option<&str>| {
            if let (Some(t), Some(id)) =
                (resource["resourceType"].as_str(), resource["id"].as_str())
            {
                by_reference.insert(format!("{t}/{id}"), resource);
            }
            if let Some(url) = full_url {
                by_reference.insert(url.to_owned(), resource);
            }
        };
        if bundle["resourceType"] == "Bundle" {
            for entry in bundle["entry"].as_array().into_iter().flatten() {
                add(&entry["resource"], entry["fullUrl"].as_str());
            }
        } else {
            add(bundle, None);
        }
        Resources { by_reference }
    }

    /// The resource a Reference points at (relative `Type/id`, the tail of an absolute
    /// URL, or a fullUrl), if the Bundle holds it.
    pub fn resolve(&self, reference: &Value) -> Option<&'a Value> {
        let text = reference["reference"].as_str()?;
        if let Some(found) = self.by_reference.get(text) {
            return Some(found);
        }
        let parts: Vec<&str> = text.rsplitn(3, '/').collect();
        match parts.as_slice() {
            [id, resource_type, ..] => self
                .by_reference
                .get(&format!("{resource_type}/{id}"))
                .copied(),
            _ => None,
        }
    }

    /// The first resource of a type.
    pub fn first_of(&self, resource_type: &str) -> Option<&'a Value> {
        let mut found: Vec<(&String, &&Value)> = self
            .by_reference
            .iter()
            .filter(|(_, r)| r["resourceType"] == resource_type)
            .collect();
        found.sort_by_key(|(k, _)| k.as_str());
        found.first().map(|(_, r)| **r)
    }
}

/// The value of the first identifier with this system.
pub fn identifier<'v>(resource: &'v Value, system: &str) -> Option<&'v str> {
    resource["identifier"]
        .as_array()?
        .iter()
        .find(|i| i["system"] == system)
        .and_then(|i| i["value"].as_str())
        .filter(|v| !v.is_empty())
}

/// The code of the first coding with this system in a CodeableConcept.
pub fn code<'v>(concept: &'v Value, system: &str) -> Option<&'v str> {
    concept["coding"]
        .as_array()?
        .iter()
        .find(|c| c["system"] == system)
        .and_then(|c| c["code"].as_str())
}

/// The code of the first coding in a CodeableConcept.
pub fn any_code(concept: &Value) -> Option<&str> {
    concept["coding"]
        .as_array()?
        .iter()
        .find_map(|c| c["code"].as_str())
}

/// A person's name: (family, first given, second given).
pub fn person_name(resource: &Value) -> (String, String, String) {
    let Some(name) = resource["name"].as_array().and_then(|n| {
        n.iter()
            .find(|n| n["use"] == "official")
            .or_else(|| n.first())
    }) else {
        return Default::default();
    };
    let given: Vec<&str> = name["given"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    (
        name["family"].as_str().unwrap_or_default().to_owned(),
        given.first().copied().unwrap_or_default().to_owned(),
        given.get(1).copied().unwrap_or_default().to_owned(),
    )
}

/// An address: (lines, city, state, postal code).
#[derive(Debug, Clone)]
pub struct Address {
    pub lines: Vec<String>,
    pub city: String,
    pub state: String,
    pub postal_code: String,
}

/// The first address of a resource (a Location's single `address` too).
pub fn address(resource: &Value) -> Option<Address> {
    let address = match &resource["address"] {
        Value::Array(all) => all.first()?,
        Value::Object(_) => &resource["address"],
        _ => return None,
    };
    Some(Address {
        lines: address["line"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        city: address["city"].as_str().unwrap_or_default().to_owned(),
        state: address["state"].as_str().unwrap_or_default().to_owned(),
        postal_code: address["postalCode"]
            .as_str()
            .unwrap_or_default()
            .chars()
            .filter(char::is_ascii_digit)
            .collect(),
    })
}

/// A FHIR address from X12 N3/N4 values.
pub fn address_json(lines: &[&str], city: &str, state: &str, postal: &str) -> Value {
    let mut address = serde_json::Map::new();
    let lines: Vec<&str> = lines.iter().copied().filter(|l| !l.is_empty()).collect();
    if !lines.is_empty() {
        address.insert("line".into(), json!(lines));
    }
    if !city.is_empty() {
        address.insert("city".into(), json!(city));
    }
    if !state.is_empty() {
        address.insert("state".into(), json!(state));
    }
    if !postal.is_empty() {
        address.insert("postalCode".into(), json!(postal));
    }
    Value::Object(address)
}

/// Money in cents, from a FHIR decimal (`Money.value`), exactly (no float rounding).
pub fn cents(value: &Value) -> Option<i64> {
    let text = match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => return None,
    };
    parse_cents(&text)
}

/// `"125.5"` → 12550 cents; `None` for more than two decimals or anything not a number.
pub fn parse_cents(text: &str) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
        || fraction.len() > 2
        || whole.len() > 15
    {
        return None;
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let fraction: i64 = format!("{fraction:0<2}").parse().ok()?;
    let value = whole * 100 + fraction;
    Some(if negative { -value } else { value })
}

/// Cents as an X12 decimal: no trailing zeros (`12550` → `125.5`, `10000` → `100`).
pub fn format_cents(cents: impl Into<i128>) -> String {
    let cents: i128 = cents.into();
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    let (whole, fraction) = (cents / 100, cents % 100);
    match fraction {
        0 => format!("{sign}{whole}"),
        f if f % 10 == 0 => format!("{sign}{whole}.{}", f / 10),
        f => format!("{sign}{whole}.{f:02}"),
    }
}

/// Cents as a FHIR decimal with two places.
pub fn money(cents: i64) -> Value {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    let text = format!("{sign}{}.{:02}", abs / 100, abs % 100);
    json!({"value": serde_json::Number::from_string_unchecked(text), "currency": "USD"})
}

/// `2026-11-15` (or a dateTime) → `20261115`.
pub fn x12_date(fhir: &str) -> Option<String> {
    let date = fhir.get(..10)?;
    let digits: String = date.chars().filter(char::is_ascii_digit).collect();
    (digits.len() == 8 && date.as_bytes()[4] == b'-' && date.as_bytes()[7] == b'-')
        .then_some(digits)
}

/// `20261115` → `2026-11-15`; `None` unless a real calendar date.
pub fn fhir_date(x12: &str) -> Option<String> {
    is_x12_date(x12).then(|| format!("{}-{}-{}", &x12[..4], &x12[4..6], &x12[6..]))
}

/// A real calendar date, `CCYYMMDD`.
pub fn is_x12_date(text: &str) -> bool {
    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let year: u32 = text[..4].parse().unwrap_or(0);
    let month: u32 = text[4..6].parse().unwrap_or(0);
    let day: u32 = text[6..].parse().unwrap_or(0);
    let leap = (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    year >= 1800 && (1..=days).contains(&day)
}

/// ICD-10-CM without its dot (`J06.9` → `J069`), as X12 carries it.
pub fn icd10_to_x12(code: &str) -> String {
    code.chars()
        .filter(|c| *c != '.')
        .collect::<String>()
        .to_ascii_uppercase()
}

/// ICD-10-CM with its dot put back after the third character (`J069` → `J06.9`).
pub fn icd10_from_x12(code: &str) -> String {
    if code.len() > 3 && code.is_ascii() {
        format!("{}.{}", &code[..3], &code[3..])
    } else {
        code.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cents_are_exact() {
        assert_eq!(parse_cents("125.5"), Some(12550));
        assert_eq!(parse_cents("0.07"), Some(7));
        assert_eq!(parse_cents("-3"), Some(-300));
        assert_eq!(parse_cents("1.005"), None);
        assert_eq!(parse_cents("abc"), None);
        assert_eq!(parse_cents("."), None);
        assert_eq!(format_cents(12550), "125.5");
        assert_eq!(format_cents(10000), "100");
        assert_eq!(format_cents(7), "0.07");
        assert_eq!(format_cents(-250), "-2.5");
        assert_eq!(money(12550)["value"].to_string(), "125.50");
    }

    #[test]
    fn icd10_dots() {
        assert_eq!(icd10_to_x12("j06.9"), "J069");
        assert_eq!(icd10_from_x12("J069"), "J06.9");
        assert_eq!(icd10_from_x12("R05"), "R05");
    }

    #[test]
    fn dates() {
        assert!(is_x12_date("20240229"));
        assert!(!is_x12_date("20230229"));
        assert!(!is_x12_date("20231301"));
        assert!(!is_x12_date("2023010"));
        assert_eq!(
            x12_date("2026-11-15T10:00:00Z").as_deref(),
            Some("20261115")
        );
        assert_eq!(x12_date("2026-11"), None);
        assert_eq!(fhir_date("20261115").as_deref(), Some("2026-11-15"));
    }
}
