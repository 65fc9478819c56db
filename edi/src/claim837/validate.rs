//! The 837P implementation checks a receiver makes before it accepts a claim: required
//! loops and segments, codes, amounts, dates, NPI check digits, diagnosis pointers and
//! CLM02 against the line charges. Every problem is an `EdiError` with its kind, so that
//! a 999 can report it (IK3/IK4).

use crate::TransactionSet;
use crate::error::{EdiError, ErrorKind};
use crate::fhir;
use crate::loops::{self, Loop};
use crate::syntax::{Document, Segment};

/// Every problem of one 837P transaction set, in segment order.
pub fn validate(document: &Document, set: &TransactionSet) -> Vec<EdiError> {
    let tree = loops::build(document, set.body(), loops::LOOPS_837P);
    let mut checker = Checker {
        document,
        errors: Vec::new(),
    };
    checker.root(&tree, document.segment(set.st));
    checker.errors.sort_by_key(|e| e.position);
    checker.errors
}

/// The loop a segment (by document index) belongs to, for IK303.
pub fn loop_of(tree: &Loop, index: usize) -> Option<&'static str> {
    if tree.segments.contains(&index) {
        return Some(tree.id);
    }
    tree.children.iter().find_map(|child| loop_of(child, index))
}

struct Checker<'d> {
    document: &'d Document<'d>,
    errors: Vec<EdiError>,
}

impl<'d> Checker<'d> {
    fn missing(&mut self, near: Segment, what: &str, loop_id: &str) {
        self.errors.push(
            EdiError::new(
                near.position,
                what,
                format!("loop {loop_id} needs a {what} segment"),
            )
            .with_kind(ErrorKind::MissingSegment),
        );
    }

    fn require(&mut self, l: &Loop, id: &str, qualifier: Option<&str>) -> Option<Segment<'d>> {
        let found = l.get(self.document, id, qualifier);
        if found.is_none() {
            let near = self
                .document
                .segment(l.segments.first().copied().unwrap_or(0));
            let what = match qualifier {
                Some(q) => format!("{id}*{q}"),
                None => id.to_owned(),
            };
            self.missing(near, &what, l.id);
        }
        found
    }

    fn require_loop<'l>(&mut self, parent: &'l Loop, id: &str, near: Segment) -> Option<&'l Loop> {
        let found = parent.first(id);
        if found.is_none() {
            self.errors.push(
                near.error(format!("loop {} needs loop {id}", parent.id))
                    .with_kind(ErrorKind::MissingSegment),
            );
        }
        found
    }

    /// The loops `id` inside `parent`, of which there must be at least one.
    fn some_loops<'l>(
        &mut self,
        parent: &'l Loop,
        id: &str,
        near: Segment,
        what: &str,
    ) -> Vec<&'l Loop> {
        let found: Vec<&Loop> = parent.children.iter().filter(|l| l.id == id).collect();
        if found.is_empty() {
            self.errors.push(
                near.error(format!("{what} (loop {id})"))
                    .with_kind(ErrorKind::MissingSegment),
            );
        }
        found
    }

    fn element(&mut self, segment: &Segment, n: usize, kind: ErrorKind, message: String) {
        self.errors
            .push(segment.element_error(n, message).with_kind(kind));
    }

    fn required_element(&mut self, segment: &Segment, n: usize) -> bool {
        if segment.element(n).is_empty() {
            self.element(
                segment,
                n,
                ErrorKind::MissingElement,
                format!("{}{n:02} is required", segment.id),
            );
            return false;
        }
        true
    }

    fn code(&mut self, segment: &Segment, n: usize, allowed: &[&str]) {
        let value = segment.element(n);
        if !allowed.contains(&value) {
            self.element(
                segment,
                n,
                missing_or_invalid(value),
                format!("'{value}' is not one of {}", allowed.join(", ")),
            );
        }
    }

    fn amount(&mut self, segment: &Segment, n: usize) -> Option<i64> {
        let value = segment.element(n);
        let cents = fhir::parse_cents(value);
        if cents.is_none() {
            self.element(
                segment,
                n,
                missing_or_invalid(value),
                format!("'{value}' is not an amount"),
            );
        }
        cents
    }

    fn date(&mut self, segment: &Segment, n: usize, value: &str) {
        if !fhir::is_x12_date(value) {
            self.element(
                segment,
                n,
                ErrorKind::InvalidDate,
                format!("'{value}' is not a CCYYMMDD date"),
            );
        }
    }

    fn npi(&mut self, nm1: &Segment) {
        if nm1.element(8) == "XX" && !is_npi(nm1.element(9)) {
            self.element(
                nm1,
                9,
                ErrorKind::InvalidValue,
                format!(
                    "'{}' is not an NPI (10 digits with a valid check digit)",
                    nm1.element(9)
                ),
            );
        }
    }

    fn root(&mut self, tree: &Loop, st: Segment) {
        if let Some(bht) = self.require(tree, "BHT", None) {
            self.code(&bht, 1, &["0019"]);
            self.code(&bht, 2, &["00", "18"]);
            self.date(&bht, 4, bht.element(4));
            self.code(&bht, 6, &["CH", "RP", "31"]);
        }
        for (id, entity) in [("1000A", "41"), ("1000B", "40")] {
            if let Some(l) = self.require_loop(tree, id, st) {
                self.require(l, "NM1", Some(entity));
                if id == "1000A" {
                    self.require(l, "PER", Some("IC"));
                }
            }
        }
        for l in self.some_loops(
            tree,
            "2000A",
            st,
            "the transaction set has no billing provider",
        ) {
            self.billing(l);
        }
    }

    fn billing(&mut self, l: &Loop) {
        let hl = self.document.segment(l.segments[0]);
        if let Some(name) = self.require_loop(l, "2010AA", hl) {
            if let Some(nm1) = self.require(name, "NM1", Some("85")) {
                self.code(&nm1, 8, &["XX"]);
                self.npi(&nm1);
            }
            self.require(name, "N3", None);
            if let Some(n4) = self.require(name, "N4", None)
                && n4.element(3).len() != 9
            {
                self.element(
                    &n4,
                    3,
                    ErrorKind::InvalidValue,
                    "the billing provider's ZIP code has nine digits".into(),
                );
            }
            if name.get(self.document, "REF", Some("EI")).is_none()
                && name.get(self.document, "REF", Some("SY")).is_none()
            {
                let near = self.document.segment(name.segments[0]);
                self.missing(near, "REF*EI", name.id);
            }
        }
        for subscriber in self.some_loops(l, "2000B", hl, "loop 2000A has no subscriber") {
            self.subscriber(subscriber);
        }
    }

    fn subscriber(&mut self, l: &Loop) {
        let hl = self.document.segment(l.segments[0]);
        if let Some(sbr) = self.require(l, "SBR", None) {
            self.code(
                &sbr,
                1,
                &["P", "S", "T", "A", "B", "C", "D", "E", "F", "G", "H", "U"],
            );
            if !sbr.element(2).is_empty() {
                self.code(&sbr, 2, &["18"]);
            }
        }
        for (id, entity) in [("2010BA", "IL"), ("2010BB", "PR")] {
            if let Some(name) = self.require_loop(l, id, hl)
                && let Some(nm1) = self.require(name, "NM1", Some(entity))
            {
                self.required_element(&nm1, 9);
            }
        }
        let patients: Vec<&Loop> = l.loops("2000C").collect();
        for patient in &patients {
            let hl = self.document.segment(patient.segments[0]);
            self.require(patient, "PAT", None);
            if let Some(name) = self.require_loop(patient, "2010CA", hl) {
                self.require(name, "NM1", Some("QC"));
                self.require(name, "N3", None);
                self.require(name, "N4", None);
                if let Some(dmg) = self.require(name, "DMG", None) {
                    self.date(&dmg, 2, dmg.element(2));
                }
            }
            for claim in patient.loops("2300") {
                self.claim(claim);
            }
        }
        let claims: Vec<&Loop> = l.loops("2300").collect();
        if claims.is_empty() && patients.is_empty() {
            self.errors.push(
                hl.error("the subscriber has no claim (loop 2300)")
                    .with_kind(ErrorKind::MissingSegment),
            );
        }
        for claim in claims {
            self.claim(claim);
        }
    }

    /// Checks a claim (2300): CLM, HI, the lines and CLM02 against their charges, and the
    /// NPIs of its providers.
    fn claim(&mut self, l: &Loop) {
        let clm = self.document.segment(l.segments[0]);
        let total = self.clm(l, clm);
        let diagnoses = self.diagnoses(l);
        let charges = self.lines(l, clm, diagnoses);
        if let (Some(total), Some(charges)) = (total, charges)
            && i128::from(total) != charges
        {
            self.element(
                &clm,
                2,
                ErrorKind::Imbalance,
                format!(
                    "CLM02 {} is not the sum of the line charges, {}",
                    fhir::format_cents(total),
                    fhir::format_cents(charges)
                ),
            );
        }
        for (id, entity) in [("2310B", "82"), ("2310C", "77")] {
            if let Some(provider) = l.first(id)
                && let Some(nm1) = provider.get(self.document, "NM1", Some(entity))
            {
                self.npi(&nm1);
            }
        }
    }

    /// Checks CLM (CLM01, CLM05 place and frequency, REF*F8 for a replacement or void);
    /// CLM02, the total, when it is an amount.
    fn clm(&mut self, l: &Loop, clm: Segment) -> Option<i64> {
        let control = clm.element(1);
        if control.is_empty() || control.len() > 20 {
            self.element(
                &clm,
                1,
                ErrorKind::InvalidValue,
                "CLM01 has 1 to 20 characters".into(),
            );
        }
        let total = self.amount(&clm, 2);
        let place = clm.component(5, 1);
        if place.len() != 2 || !place.bytes().all(|b| b.is_ascii_digit()) {
            self.errors.push(
                clm.element_error(5, format!("'{place}' is not a place of service code"))
                    .at_component(1),
            );
        }
        let frequency = clm.component(5, 3);
        if !matches!(frequency, "1" | "6" | "7" | "8") {
            self.errors.push(
                clm.element_error(
                    5,
                    format!("'{frequency}' is not a claim frequency (1, 6, 7, 8)"),
                )
                .at_component(3),
            );
        }
        if matches!(frequency, "7" | "8") && l.get(self.document, "REF", Some("F8")).is_none() {
            self.missing(clm, "REF*F8", l.id);
        }
        total
    }

    /// Checks HI (ABK then ABF codes, at most 12); how many diagnoses it holds (none when
    /// it is missing).
    fn diagnoses(&mut self, l: &Loop) -> usize {
        let Some(hi) = self.require(l, "HI", None) else {
            return 0;
        };
        for (n, element) in hi.elements.iter().enumerate() {
            let qualifier = hi.component(n + 1, 1);
            let expected = if n == 0 { "ABK" } else { "ABF" };
            if qualifier != expected || hi.component(n + 1, 2).is_empty() {
                self.errors.push(
                    hi.element_error(
                        n + 1,
                        format!("'{element}' is not {expected}:an ICD-10-CM code"),
                    )
                    .at_component(1),
                );
            }
        }
        if hi.elements.len() > 12 {
            self.element(
                &hi,
                13,
                ErrorKind::UnexpectedSegment,
                "HI holds at most 12 diagnoses".into(),
            );
        }
        hi.elements.len()
    }

    /// Checks the service lines (one to 50); the sum of their charges, none when one is
    /// not an amount.
    fn lines(&mut self, l: &Loop, clm: Segment, diagnoses: usize) -> Option<i128> {
        let lines: Vec<&Loop> = l.loops("2400").collect();
        if lines.is_empty() {
            self.missing(clm, "LX", l.id);
        }
        if lines.len() > 50 {
            let extra = self.document.segment(lines[50].segments[0]);
            self.errors.push(
                extra
                    .error("a claim has at most 50 service lines")
                    .with_kind(ErrorKind::UnexpectedSegment),
            );
        }
        // In i128: amounts of 15 digits on many lines must not overflow.
        let mut charges = Some(0i128);
        for line in lines {
            let charge = self.line(line, diagnoses);
            charges = charges.zip(charge).map(|(a, b)| a + i128::from(b));
        }
        charges
    }

    /// Checks a service line; its charge.
    fn line(&mut self, l: &Loop, diagnoses: usize) -> Option<i64> {
        let sv1 = self.require(l, "SV1", None)?;
        if !matches!(sv1.component(1, 1), "HC" | "ER" | "IV" | "WK")
            || sv1.component(1, 2).is_empty()
        {
            self.errors.push(
                sv1.element_error(1, "SV101 is HC (or ER, IV, WK) and a procedure code")
                    .at_component(1),
            );
        }
        let charge = self.amount(&sv1, 2);
        self.code(&sv1, 3, &["UN", "MJ"]);
        if sv1.element(4).parse::<f64>().is_err() {
            self.element(
                &sv1,
                4,
                ErrorKind::InvalidValue,
                format!("'{}' is not a quantity", sv1.element(4)),
            );
        }
        let pointers: Vec<&str> = sv1.components(7).collect();
        if pointers.is_empty() || pointers.len() > 4 {
            self.element(
                &sv1,
                7,
                ErrorKind::MissingElement,
                "one to four diagnosis pointers".into(),
            );
        }
        for (c, pointer) in pointers.iter().enumerate() {
            if !pointer
                .parse::<usize>()
                .is_ok_and(|p| (1..=diagnoses).contains(&p))
            {
                self.errors.push(
                    sv1.element_error(7, format!("pointer '{pointer}' names no diagnosis of HI"))
                        .at_component(c + 1),
                );
            }
        }
        if let Some(dtp) = self.require(l, "DTP", Some("472")) {
            match dtp.element(2) {
                "D8" => self.date(&dtp, 3, dtp.element(3)),
                "RD8" => {
                    let (start, end) = dtp.element(3).split_once('-').unwrap_or(("", ""));
                    if !fhir::is_x12_date(start) || !fhir::is_x12_date(end) || start > end {
                        self.element(
                            &dtp,
                            3,
                            ErrorKind::InvalidDate,
                            format!("'{}' is not a date range", dtp.element(3)),
                        );
                    }
                }
                other => self.element(
                    &dtp,
                    2,
                    ErrorKind::InvalidValue,
                    format!("'{other}' is not D8 or RD8"),
                ),
            }
        }
        charge
    }
}

/// An empty element is missing; any other bad value is invalid.
fn missing_or_invalid(value: &str) -> ErrorKind {
    if value.is_empty() {
        ErrorKind::MissingElement
    } else {
        ErrorKind::InvalidValue
    }
}

/// An NPI: ten digits whose last is the Luhn check digit of `80840` and the first nine.
pub fn is_npi(text: &str) -> bool {
    if text.len() != 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let digits: Vec<u32> = format!("80840{}", &text[..9])
        .bytes()
        .map(|b| u32::from(b - b'0'))
        .collect();
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 0 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    let check = (10 - sum % 10) % 10;
    u32::from(text.as_bytes()[9] - b'0') == check
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npi_check_digits() {
        assert!(is_npi("1234567893"));
        assert!(!is_npi("1234567890"));
        assert!(!is_npi("123456789"));
        assert!(!is_npi("12345678ab"));
    }
}
