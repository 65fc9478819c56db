//! The drug of a service line, loop 2410 (LIN, CTP, REF*XZ or REF*VY), both ways. It is
//! kept in one place so that reading and writing stay each other's inverse.
//!
//! FHIR shape: one `Claim.item.detail` (sequence 1) whose productOrService is coded with
//! the NDC system (the 11-digit 5-4-2 form LIN03 carries), whose quantity is CTP04 with
//! the unit CTP05-1 in UCUM, and, when the REF is sent, an extension
//! `urn:x12:prescription-number` (REF*XZ) or `urn:x12:link-sequence-number` (REF*VY)
//! with the number as valueString: R4's Claim.item.detail has no identifier. The 2410
//! loop repeats once, so a line carries at most one drug.

use serde_json::{Value, json};

use super::generate::{Problem, is_quantity, problem};
use crate::error::EdiError;
use crate::fhir::{self, systems};
use crate::loops::Loop;
use crate::syntax::{Document, Writer, clean};

/// CTP05-1 units (X12) and the same units in UCUM.
const UNITS: &[(&str, &str)] = &[
    ("F2", "[iU]"),
    ("GR", "g"),
    ("ME", "mg"),
    ("ML", "mL"),
    ("UN", "{unit}"),
];

/// REF01 qualifiers of loop 2410 and the extension each becomes.
const REFERENCES: &[(&str, &str)] = &[
    ("XZ", systems::PRESCRIPTION_NUMBER_EXTENSION),
    ("VY", systems::LINK_SEQUENCE_EXTENSION),
];

/// REF02 is at most 50 characters.
const MAX_REFERENCE: usize = 50;

/// A line's drug, ready to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Drug {
    /// LIN03: 11 digits.
    ndc: String,
    /// CTP04.
    quantity: String,
    /// CTP05-1.
    unit: &'static str,
    /// REF01 and REF02.
    reference: Option<(&'static str, String)>,
}

impl Drug {
    /// Writes loop 2410.
    pub(super) fn write(&self, w: &mut Writer) {
        w.segment("LIN", &["", "N4", &self.ndc]);
        w.segment("CTP", &["", "", "", &self.quantity, self.unit]);
        if let Some((qualifier, number)) = &self.reference {
            w.segment("REF", &[qualifier, number]);
        }
    }

    /// The drug of a Claim.item (`at` names it): its detail coded with an NDC, if any.
    /// Each problem is listed at its element, and then there is no drug.
    pub(super) fn read(item: &Value, at: &str, problems: &mut Vec<Problem>) -> Option<Drug> {
        let drugs: Vec<(usize, &Value)> = item["detail"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
            .filter(|(_, d)| fhir::code(&d["productOrService"], systems::NDC).is_some())
            .collect();
        let (index, detail) = match drugs.as_slice() {
            [] => return None,
            [one] => *one,
            _ => {
                problems.push(problem(
                    &format!("{at}.detail"),
                    "an 837P line carries at most one drug (one detail coded with an NDC)",
                ));
                return None;
            }
        };
        let at = format!("{at}.detail[{index}]");
        let before = problems.len();
        let code = fhir::code(&detail["productOrService"], systems::NDC).unwrap_or_default();
        let ndc = ndc11(code);
        if ndc.is_none() {
            problems.push(problem(
                &format!("{at}.productOrService"),
                format!(
                    "'{code}' is not an NDC (11 digits, or 10 with hyphens as 4-4-2, 5-3-2 or 5-4-1)"
                ),
            ));
        }
        let (quantity, unit) = quantity(&detail["quantity"], &at, problems);
        let reference = reference(detail, &at, problems);
        if problems.len() > before {
            return None;
        }
        Some(Drug {
            ndc: ndc?,
            quantity,
            unit: unit?,
            reference,
        })
    }
}

/// CTP04 and CTP05-1 from the detail's quantity (its code in UCUM or X12), both required.
fn quantity(
    quantity: &Value,
    at: &str,
    problems: &mut Vec<Problem>,
) -> (String, Option<&'static str>) {
    let value = match &quantity["value"] {
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    if !is_quantity(&value) {
        problems.push(problem(
            &format!("{at}.quantity"),
            "the drug needs a positive quantity (at most 15 digits)",
        ));
    }
    let code = quantity["code"].as_str().unwrap_or_default();
    let unit = UNITS
        .iter()
        .find(|(x12, ucum)| code == *x12 || code == *ucum)
        .map(|(x12, _)| *x12);
    if unit.is_none() {
        problems.push(problem(
            &format!("{at}.quantity.code"),
            format!(
                "'{code}' is not a drug unit: one of [iU], g, mg, mL, {{unit}} (UCUM) or F2, GR, ME, ML, UN (X12)"
            ),
        ));
    }
    (value, unit)
}

/// REF*XZ or REF*VY from the detail's extension, when there is one.
fn reference(
    detail: &Value,
    at: &str,
    problems: &mut Vec<Problem>,
) -> Option<(&'static str, String)> {
    let found: Vec<(&'static str, String)> = detail["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let (qualifier, _) = REFERENCES.iter().find(|(_, url)| e["url"] == *url)?;
            Some((
                *qualifier,
                clean(e["valueString"].as_str().unwrap_or_default()),
            ))
        })
        .collect();
    let element = format!("{at}.extension");
    match found.as_slice() {
        [] => None,
        [(_, number)] if number.is_empty() || number.len() > MAX_REFERENCE => {
            problems.push(problem(
                &element,
                format!("the prescription or link number must be 1 to {MAX_REFERENCE} characters"),
            ));
            None
        }
        [one] => Some(one.clone()),
        _ => {
            problems.push(problem(
                &element,
                "a drug has one prescription number or one link sequence number, not more",
            ));
            None
        }
    }
}

/// An NDC in the 11-digit form X12 carries: as is, or a 10-digit NDC with hyphens padded
/// with a zero in its short part.
fn ndc11(code: &str) -> Option<String> {
    let parts: Vec<&str> = code.split('-').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let widths: Vec<usize> = parts.iter().map(|p| p.len()).collect();
    match (widths.as_slice(), parts.as_slice()) {
        ([11], _) | ([5, 4, 2], _) => Some(parts.concat()),
        ([4, 4, 2], [a, b, c]) => Some(format!("0{a}{b}{c}")),
        ([5, 3, 2], [a, b, c]) => Some(format!("{a}0{b}{c}")),
        ([5, 4, 1], [a, b, c]) => Some(format!("{a}{b}0{c}")),
        _ => None,
    }
}

/// A line's loop 2410 as its Claim.item.detail.
pub(super) fn to_fhir(document: &Document, drug: &Loop) -> Result<Value, EdiError> {
    let lin = document.segment(drug.segments[0]);
    if lin.element(2) != "N4" {
        return Err(lin.element_error(
            2,
            format!(
                "LIN02 '{}' is not N4: only a National Drug Code is read",
                lin.element(2)
            ),
        ));
    }
    let ndc = lin.element(3);
    if ndc.len() != 11 || !ndc.bytes().all(|b| b.is_ascii_digit()) {
        return Err(lin.element_error(3, format!("'{ndc}' is not an 11-digit NDC")));
    }
    let ctp = drug
        .get(document, "CTP", None)
        .ok_or_else(|| lin.error("loop 2410 has no CTP (the drug's quantity)"))?;
    let quantity: serde_json::Number = ctp
        .element(4)
        .parse()
        .map_err(|_| ctp.element_error(4, format!("'{}' is not a quantity", ctp.element(4))))?;
    let unit = UNITS
        .iter()
        .find(|(x12, _)| *x12 == ctp.component(5, 1))
        .map(|(_, ucum)| *ucum)
        .ok_or_else(|| {
            ctp.element_error(
                5,
                format!(
                    "'{}' is not a drug unit (F2, GR, ME, ML or UN)",
                    ctp.component(5, 1)
                ),
            )
            .at_component(1)
        })?;
    let mut detail = json!({
        "sequence": 1,
        "productOrService": {"coding": [{"system": systems::NDC, "code": ndc}]},
        "quantity": {"value": quantity, "unit": unit, "system": systems::UCUM, "code": unit},
    });
    if let Some((url, number)) = REFERENCES.iter().find_map(|(qualifier, url)| {
        drug.get(document, "REF", Some(qualifier))
            .map(|r| (*url, r.element(2)))
    }) {
        detail["extension"] = json!([{"url": url, "valueString": number}]);
    }
    Ok(detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndcs_take_their_11_digit_form() {
        assert_eq!(ndc11("00338004938").as_deref(), Some("00338004938"));
        assert_eq!(ndc11("00338-0049-38").as_deref(), Some("00338004938"));
        assert_eq!(ndc11("0338-0049-38").as_deref(), Some("00338004938"));
        assert_eq!(ndc11("12345-678-90").as_deref(), Some("12345067890"));
        assert_eq!(ndc11("12345-6789-0").as_deref(), Some("12345678900"));
        assert_eq!(ndc11("0338004938"), None);
        assert_eq!(ndc11("0338-0049-3X"), None);
        assert_eq!(ndc11("--"), None);
    }

    #[test]
    fn a_drug_detail_is_checked() {
        let item = json!({"detail": [{"sequence": 1,
            "productOrService": {"coding": [{"system": systems::NDC, "code": "123"}]},
            "quantity": {"value": 0, "code": "box"},
            "extension": [{"url": systems::PRESCRIPTION_NUMBER_EXTENSION, "valueString": "1"},
                          {"url": systems::LINK_SEQUENCE_EXTENSION, "valueString": "2"}]}]});
        let mut problems = Vec::new();
        assert_eq!(Drug::read(&item, "Claim.item[0]", &mut problems), None);
        let elements: Vec<&str> = problems.iter().map(|p| p.element.as_str()).collect();
        assert_eq!(
            elements,
            [
                "Claim.item[0].detail[0].productOrService",
                "Claim.item[0].detail[0].quantity",
                "Claim.item[0].detail[0].quantity.code",
                "Claim.item[0].detail[0].extension",
            ]
        );
    }
}
