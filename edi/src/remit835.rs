//! 835 remittance advice (005010X221A1) to FHIR: a PaymentReconciliation per transaction
//! set and a ClaimResponse per claim (CLP), with the three balancing rules checked.
//!
//! An 835 is money: posting one that does not add up would put wrong balances on patient
//! accounts, so every amount is read exactly (in cents) and an unbalanced remittance is
//! refused by `to_fhir` (and listed by `balance_errors`), naming the segment and element.
//!
//! Balancing (all in cents):
//! 1. per service line, SVC02 minus the line's CAS amounts equals SVC03;
//! 2. per claim, CLP03 minus every CAS amount of the claim and its lines equals CLP04;
//! 3. per transaction set, BPR02 equals the sum of CLP04 minus the sum of PLB amounts
//!    (a positive PLB amount is money the payer keeps).

use serde_json::{Value, json};

use crate::error::EdiError;
use crate::fhir::{fhir_date, money, parse_cents, systems};
use crate::loops::{LOOPS_835, Loop, build};
use crate::syntax::{Document, Segment};
use crate::{Parsed, TransactionSet};

/// PaymentReconciliation.detail.type: a claim's payment or a provider-level adjustment.
const PAYMENT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/payment-type";
/// ClaimResponse.payment.type.
const EX_PAYMENT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/ex-paymenttype";
/// R4 ClaimResponse.item has no productOrService, so the paid procedure (SVC01) is kept
/// in this extension for matching the line to the claim's.
const SVC01_EXTENSION: &str = "urn:x12:svc01";
/// A CAS segment holds up to 6 (reason, amount, quantity) triplets after CAS01.
const CAS_TRIPLETS: usize = 6;
/// A PLB segment holds up to 6 (reason:reference, amount) pairs after PLB02.
const PLB_PAIRS: usize = 6;

/// One 835 transaction set read into FHIR.
#[derive(Debug, Clone)]
pub struct Remittance {
    /// TRN02, the check/EFT trace number.
    pub trace_number: String,
    /// `TRN03:TRN02`: the trace number is unique only per payer (TRN03, its originating
    /// company id), so this pair is the key that makes posting idempotent. It is also an
    /// identifier (`urn:x12:trn`) of the PaymentReconciliation.
    pub remittance_key: String,
    /// The PaymentReconciliation (BPR/TRN/payer/payee, a detail per claim of type
    /// "payment" and per PLB adjustment of type "adjustment").
    pub payment: Value,
    /// One ClaimResponse per CLP, in order.
    pub claim_responses: Vec<ClaimPayment>,
}

/// One claim (CLP, loop 2100) of a remittance.
#[derive(Debug, Clone)]
pub struct ClaimPayment {
    /// CLP01, the patient control number of the 837 claim (CLM01), to find the Claim.
    pub patient_control_number: String,
    /// CLP02 status code.
    pub status_code: String,
    pub claim_response: Value,
}

/// Every 835 transaction set of a parsed input. Errors (naming segment position and
/// element) for structural problems and for balancing failures: the first of them.
pub fn to_fhir(parsed: &Parsed) -> Result<Vec<Remittance>, EdiError> {
    parsed
        .sets()
        .map(|(_, set)| {
            let reading = read_set(&parsed.document, set)?;
            match reading.problems.into_iter().next() {
                Some(problem) => Err(problem),
                None => Ok(reading.remittance),
            }
        })
        .collect()
}

/// The balancing problems of one parsed input without failing (for `edi validate`); a
/// set that cannot be read at all contributes its structural error instead.
pub fn balance_errors(parsed: &Parsed) -> Vec<EdiError> {
    parsed
        .sets()
        .flat_map(|(_, set)| match read_set(&parsed.document, set) {
            Ok(reading) => reading.problems,
            Err(error) => vec![error],
        })
        .collect()
}

/// A transaction set read: its resources, and its balancing problems (most specific
/// first: a line's before its claim's, the claims' before the set's, since the narrower
/// one is usually the cause of the wider).
struct SetReading {
    remittance: Remittance,
    problems: Vec<EdiError>,
}

/// What the header says about the payment as a whole.
struct Header<'d> {
    bpr: Segment<'d>,
    /// BPR02.
    paid: i64,
    /// BPR16 as a FHIR date.
    date: String,
    /// TRN02.
    trace: String,
    /// TRN03:TRN02.
    key: String,
    /// N102 of N1*PR (1000A).
    payer: &'d str,
    /// The payee (N1*PE, 1000B) as a Reference.
    payee: Value,
    /// BPR04, the payment method.
    method: &'d str,
}

/// A CAS triplet.
struct Adjustment<'d> {
    group: &'d str,
    reason: &'d str,
    cents: i64,
}

/// A claim read, with its balancing problems.
struct Claim {
    paid: i64,
    payment: ClaimPayment,
    problems: Vec<EdiError>,
}

/// A service line read: its ClaimResponse.item, the sum of its adjustments (which the
/// claim's balance needs too) and its own balancing problem.
struct Line {
    item: Value,
    adjusted: i128,
    problem: Option<EdiError>,
}

/// A PLB (reason:reference, amount) pair.
struct ProviderAdjustment {
    identifier: String,
    cents: i64,
    date: String,
}

fn read_set(document: &Document, set: &TransactionSet) -> Result<SetReading, EdiError> {
    // `Parsed` has public fields, so do not trust its indexes to be inside the document.
    if set.st >= set.se || set.se >= document.len() {
        return Err(EdiError::new(
            0,
            "",
            "the transaction set lies outside the document",
        ));
    }
    let st = document.segment(set.st);
    if st.element(1) != "835" {
        return Err(st.element_error(
            1,
            format!("ST01 '{}' is not 835 (a remittance advice)", st.element(1)),
        ));
    }
    let root = build(document, set.body(), LOOPS_835);
    check_placement(document, &root)?;
    let header = read_header(document, &root, &st)?;
    let mut problems = Vec::new();
    let mut claims = Vec::new();
    for claim_loop in root.loops("2000").flat_map(|lx| lx.loops("2100")) {
        let mut claim = read_claim(document, claim_loop, &header)?;
        problems.append(&mut claim.problems);
        claims.push(claim);
    }
    let adjustments = provider_adjustments(document, &root)?;
    problems.extend(payment_balance(&header, &claims, &adjustments));
    let payment = payment_reconciliation(&header, &claims, &adjustments);
    Ok(SetReading {
        remittance: Remittance {
            trace_number: header.trace,
            remittance_key: header.key,
            payment,
            claim_responses: claims.into_iter().map(|c| c.payment).collect(),
        },
        problems,
    })
}

/// A CLP before any LX, or an SVC before any CLP, would otherwise land silently in the
/// loop before it and its money would be left out of the balance: refuse it.
fn check_placement(document: &Document, within: &Loop) -> Result<(), EdiError> {
    // A loop's first segment is its trigger, in its right place by construction.
    let own = if within.id == "HEADER" {
        &within.segments[..]
    } else {
        within.segments.get(1..).unwrap_or(&[])
    };
    for &index in own {
        let segment = document.segment(index);
        let needs = match segment.id {
            "CLP" => "an LX (loop 2000)",
            "SVC" => "a CLP (loop 2100)",
            _ => continue,
        };
        return Err(segment.error(format!(
            "{} is out of place: it must follow {needs}",
            segment.id
        )));
    }
    within
        .children
        .iter()
        .try_for_each(|child| check_placement(document, child))
}

fn read_header<'d>(
    document: &'d Document,
    root: &Loop,
    st: &Segment,
) -> Result<Header<'d>, EdiError> {
    let bpr = root
        .get(document, "BPR", None)
        .ok_or_else(|| st.error("an 835 starts with BPR (financial information), none found"))?;
    let trn = root
        .get(document, "TRN", None)
        .ok_or_else(|| st.error("an 835 has a TRN (reassociation trace number), none found"))?;
    let payer = root
        .first("1000A")
        .and_then(|l| l.get(document, "N1", Some("PR")))
        .ok_or_else(|| st.error("an 835 names its payer in N1*PR (loop 1000A), none found"))?;
    let payee = root
        .first("1000B")
        .and_then(|l| l.get(document, "N1", Some("PE")))
        .ok_or_else(|| st.error("an 835 names its payee in N1*PE (loop 1000B), none found"))?;
    Ok(Header {
        paid: amount(&bpr, 2)?,
        date: date(&bpr, 16)?,
        method: bpr.element(4),
        bpr,
        trace: required(&trn, 2, "the check or EFT trace number")?.to_owned(),
        key: format!("{}:{}", trn.element(3), trn.element(2)),
        payer: required(&payer, 2, "the payer's name")?,
        payee: organization_reference(&payee),
    })
}

/// A payee as a Reference: its name, and its id (N104) with a system when N103 says
/// which kind of id it is (NPI or tax id).
fn organization_reference(n1: &Segment) -> Value {
    let mut reference = json!({});
    put(&mut reference, "display", json!(n1.element(2)));
    let id = n1.element(4);
    let identifier = match n1.element(3) {
        "XX" => json!({"system": systems::NPI, "value": id}),
        "FI" => json!({"system": systems::EIN, "value": id}),
        _ => json!({"value": id}),
    };
    if !id.is_empty() {
        put(&mut reference, "identifier", identifier);
    }
    reference
}

fn read_claim(document: &Document, claim: &Loop, header: &Header) -> Result<Claim, EdiError> {
    let Some(clp) = claim.get(document, "CLP", None) else {
        return Err(EdiError::new(
            0,
            "CLP",
            "a claim loop (2100) without its CLP",
        ));
    };
    let pcn = required(&clp, 1, "the patient control number")?;
    let status = required(&clp, 2, "the claim status code")?;
    let charge = amount(&clp, 3)?;
    let paid = amount(&clp, 4)?;
    let adjustments = adjustments(document, claim)?;
    let patient = claim.get(document, "NM1", Some("QC")).ok_or_else(|| {
        clp.error(format!(
            "claim '{pcn}' has no patient name (NM1*QC, required)"
        ))
    })?;
    let mut lines = Vec::new();
    for (index, line) in claim.loops("2110").enumerate() {
        lines.push(read_line(document, line, index + 1)?);
    }
    let adjusted = total(&adjustments) + lines.iter().map(|l| l.adjusted).sum::<i128>();
    let mut problems: Vec<EdiError> = lines.iter().filter_map(|l| l.problem.clone()).collect();
    if i128::from(charge) - adjusted != i128::from(paid) {
        problems.push(clp.element_error(
            4,
            format!(
                "claim '{pcn}' does not balance: CLP03 {} minus the adjustments (CAS) of the \
                 claim and its lines {} is {}, but CLP04 is {}",
                show(charge.into()),
                show(adjusted),
                show(i128::from(charge) - adjusted),
                show(paid.into())
            ),
        ));
    }
    let mut response = json!({
        "resourceType": "ClaimResponse",
        "status": "active",
        "type": concept(systems::CLAIM_TYPE, "professional"),
        "use": "claim",
        "patient": patient_reference(&patient),
        "created": header.date,
        "insurer": {"display": header.payer},
        "request": {"identifier": {"system": systems::PATIENT_CONTROL_NUMBER, "value": pcn}},
        "outcome": outcome(status),
        "disposition": disposition(status),
    });
    put(&mut response, "identifier", claim_identifiers(&clp));
    put(
        &mut response,
        "item",
        lines.into_iter().map(|l| l.item).collect(),
    );
    put(
        &mut response,
        "adjudication",
        adjustments.iter().map(adjudication).collect(),
    );
    put(&mut response, "total", claim_totals(charge, paid));
    put(&mut response, "payment", claim_payment(header, paid));
    Ok(Claim {
        paid,
        payment: ClaimPayment {
            patient_control_number: pcn.to_owned(),
            status_code: status.to_owned(),
            claim_response: response,
        },
        problems,
    })
}

/// The payer's claim number (CLP07) when sent, and the patient control number (CLP01).
fn claim_identifiers(clp: &Segment) -> Value {
    let mut identifiers = Vec::new();
    if !clp.element(7).is_empty() {
        identifiers.push(json!({"system": systems::PAYER_CLAIM_NUMBER, "value": clp.element(7)}));
    }
    identifiers.push(json!({"system": systems::PATIENT_CONTROL_NUMBER, "value": clp.element(1)}));
    Value::Array(identifiers)
}

fn claim_totals(charge: i64, paid: i64) -> Value {
    json!([
        {"category": concept(systems::ADJUDICATION, "submitted"), "amount": money(charge)},
        {"category": concept(systems::ADJUDICATION, "benefit"), "amount": money(paid)},
    ])
}

fn claim_payment(header: &Header, paid: i64) -> Value {
    json!({
        "type": concept(EX_PAYMENT_TYPE, "complete"),
        "date": header.date,
        "amount": money(paid),
        "identifier": {"system": systems::TRACE_NUMBER, "value": header.trace},
    })
}

/// NM1*QC as a Reference: "LAST, FIRST", and the member id (NM109) when sent.
fn patient_reference(nm1: &Segment) -> Value {
    let (last, first) = (nm1.element(3), nm1.element(4));
    let display = if first.is_empty() {
        last.to_owned()
    } else {
        format!("{last}, {first}")
    };
    let mut reference = json!({"display": display});
    if !nm1.element(9).is_empty() {
        put(
            &mut reference,
            "identifier",
            json!({"value": nm1.element(9)}),
        );
    }
    reference
}

/// ClaimResponse.outcome from CLP02: processed (also when forwarded or reversed) is
/// complete, denied is an error, anything else (not our claim, pricing only) partial.
fn outcome(status: &str) -> &'static str {
    match status {
        "1" | "2" | "3" | "19" | "20" | "21" | "22" => "complete",
        "4" => "error",
        _ => "partial",
    }
}

/// CLP02 in words, for people reading the ClaimResponse.
fn disposition(status: &str) -> String {
    let text = match status {
        "1" => "Processed as primary",
        "2" => "Processed as secondary",
        "3" => "Processed as tertiary",
        "4" => "Denied",
        "19" => "Processed as primary, forwarded to additional payer(s)",
        "20" => "Processed as secondary, forwarded to additional payer(s)",
        "21" => "Processed as tertiary, forwarded to additional payer(s)",
        "22" => "Reversal of previous payment",
        "23" => "Not our claim, forwarded to additional payer(s)",
        "25" => "Predetermination pricing only, no payment",
        other => return format!("Claim status {other}"),
    };
    text.to_owned()
}

fn read_line(document: &Document, line: &Loop, sequence: usize) -> Result<Line, EdiError> {
    let Some(svc) = line.get(document, "SVC", None) else {
        return Err(EdiError::new(
            0,
            "SVC",
            "a service loop (2110) without its SVC",
        ));
    };
    let charge = amount(&svc, 2)?;
    let paid = amount(&svc, 3)?;
    let adjustments = adjustments(document, line)?;
    let allowed = match line.get(document, "AMT", Some("B6")) {
        Some(amt) => Some(amount(&amt, 2)?),
        None => None,
    };
    let adjusted = total(&adjustments);
    let problem = (i128::from(charge) - adjusted != i128::from(paid)).then(|| {
        svc.element_error(
            3,
            format!(
                "service line {sequence} does not balance: SVC02 {} minus the line's \
                 adjustments (CAS) {} is {}, but SVC03 is {}",
                show(charge.into()),
                show(adjusted),
                show(i128::from(charge) - adjusted),
                show(paid.into())
            ),
        )
    });
    let mut entries = vec![
        json!({"category": concept(systems::ADJUDICATION, "submitted"), "amount": money(charge)}),
        json!({"category": concept(systems::ADJUDICATION, "benefit"), "amount": money(paid)}),
    ];
    if let Some(allowed) = allowed {
        entries.push(
            json!({"category": concept(systems::ADJUDICATION, "eligible"), "amount": money(allowed)}),
        );
    }
    entries.extend(adjustments.iter().map(adjudication));
    entries.extend(remarks(document, line));
    let mut item = json!({});
    put(
        &mut item,
        "extension",
        line_extensions(document, line, &svc),
    );
    put(&mut item, "itemSequence", json!(sequence));
    put(&mut item, "adjudication", Value::Array(entries));
    Ok(Line {
        item,
        adjusted,
        problem,
    })
}

/// The remark codes (LQ*HE, RARC) of a line, as adjudication entries with no amount.
fn remarks(document: &Document, line: &Loop) -> Vec<Value> {
    line.find(document, "LQ", Some("HE"))
        .iter()
        .map(|lq| lq.element(2))
        .filter(|code| !code.is_empty())
        .map(|code| json!({"category": concept(systems::RARC, code)}))
        .collect()
}

/// The line item control number (REF*6R, echoed from the 837 so the line can be matched)
/// and the procedure paid (SVC01, with `:` between its components whatever the input's
/// component separator).
fn line_extensions(document: &Document, line: &Loop, svc: &Segment) -> Value {
    let mut extensions = Vec::new();
    if let Some(control) = line
        .get(document, "REF", Some("6R"))
        .map(|r| r.element(2))
        .filter(|c| !c.is_empty())
    {
        extensions.push(json!({"url": systems::LINE_CONTROL_EXTENSION, "valueString": control}));
    }
    let procedure = svc.components(1).collect::<Vec<_>>().join(":");
    if !procedure.is_empty() {
        extensions.push(json!({"url": SVC01_EXTENSION, "valueString": procedure}));
    }
    Value::Array(extensions)
}

/// Every CAS triplet of a loop's own segments (a claim's CAS are not its lines').
fn adjustments<'d>(document: &'d Document, within: &Loop) -> Result<Vec<Adjustment<'d>>, EdiError> {
    let mut all = Vec::new();
    for cas in within.find(document, "CAS", None) {
        all.extend(cas_triplets(&cas)?);
    }
    Ok(all)
}

fn cas_triplets<'d>(cas: &Segment<'d>) -> Result<Vec<Adjustment<'d>>, EdiError> {
    let group = cas.element(1);
    if !matches!(group, "CO" | "OA" | "PI" | "PR") {
        return Err(cas.element_error(
            1,
            format!("CAS01 '{group}' is not an adjustment group (CO, OA, PI or PR)"),
        ));
    }
    let mut found = Vec::new();
    for at in (0..CAS_TRIPLETS).map(|k| 2 + 3 * k) {
        let reason = cas.element(at);
        if reason.is_empty() {
            if !cas.element(at + 1).is_empty() {
                return Err(cas.element_error(at, "an adjustment amount without its reason code"));
            }
            continue;
        }
        found.push(Adjustment {
            group,
            reason,
            cents: amount(cas, at + 1)?,
        });
    }
    if found.is_empty() {
        return Err(cas.element_error(2, "CAS without any adjustment reason"));
    }
    Ok(found)
}

/// A CAS triplet as an adjudication. Every one keeps its CAS group (PR, CO, OA, PI) as
/// a category coding and its reason (CARC) as `reason`, so posting can tell what the
/// patient owes from what is written off. PR-1 and PR-3 are also the deductible and copay
/// categories FHIR has: that coding comes first, the CAS group second.
fn adjudication(adjustment: &Adjustment) -> Value {
    let group = json!({"system": systems::CAS_GROUP, "code": adjustment.group});
    let category = match (adjustment.group, adjustment.reason) {
        ("PR", "1") => {
            json!({"coding": [{"system": systems::ADJUDICATION, "code": "deductible"}, group]})
        }
        ("PR", "3") => {
            json!({"coding": [{"system": systems::ADJUDICATION, "code": "copay"}, group]})
        }
        _ => json!({"coding": [group]}),
    };
    json!({
        "category": category,
        "reason": concept(systems::CARC, adjustment.reason),
        "amount": money(adjustment.cents),
    })
}

/// Every PLB pair of the set (each PLB opens its own FOOTER loop).
fn provider_adjustments(
    document: &Document,
    root: &Loop,
) -> Result<Vec<ProviderAdjustment>, EdiError> {
    let mut all = Vec::new();
    for plb in root
        .loops("FOOTER")
        .flat_map(|footer| footer.find(document, "PLB", None))
    {
        all.extend(plb_pairs(&plb)?);
    }
    Ok(all)
}

fn plb_pairs(plb: &Segment) -> Result<Vec<ProviderAdjustment>, EdiError> {
    required(plb, 1, "the provider identifier")?;
    let date = date(plb, 2)?;
    let mut found = Vec::new();
    for at in (0..PLB_PAIRS).map(|k| 3 + 2 * k) {
        if plb.element(at).is_empty() {
            if !plb.element(at + 1).is_empty() {
                return Err(plb.element_error(at, "an adjustment amount without its reason code"));
            }
            continue;
        }
        let (reason, reference) = (plb.component(at, 1), plb.component(at, 2));
        if reason.is_empty() {
            return Err(plb
                .element_error(at, "the adjustment reason code is missing")
                .at_component(1));
        }
        let identifier = if reference.is_empty() {
            reason.to_owned()
        } else {
            format!("{reason}:{reference}")
        };
        found.push(ProviderAdjustment {
            identifier,
            cents: amount(plb, at + 1)?,
            date: date.clone(),
        });
    }
    if found.is_empty() {
        return Err(plb.element_error(3, "PLB without any adjustment"));
    }
    Ok(found)
}

/// Rule 3: what the payer sent (BPR02) is what it paid on the claims less what it kept.
fn payment_balance(
    header: &Header,
    claims: &[Claim],
    adjustments: &[ProviderAdjustment],
) -> Option<EdiError> {
    let claimed: i128 = claims.iter().map(|c| i128::from(c.paid)).sum();
    let kept: i128 = adjustments.iter().map(|a| i128::from(a.cents)).sum();
    (claimed - kept != i128::from(header.paid)).then(|| {
        header.bpr.element_error(
            2,
            format!(
                "the payment does not balance: the claims' payments (CLP04) {} minus the \
                 provider adjustments (PLB) {} is {}, but BPR02 is {}",
                show(claimed),
                show(kept),
                show(claimed - kept),
                show(header.paid.into())
            ),
        )
    })
}

fn payment_reconciliation(
    header: &Header,
    claims: &[Claim],
    adjustments: &[ProviderAdjustment],
) -> Value {
    let trace = json!({"system": systems::TRACE_NUMBER, "value": header.trace});
    let details: Vec<Value> = claims
        .iter()
        .map(claim_detail)
        .chain(adjustments.iter().map(adjustment_detail))
        .collect();
    let mut resource = json!({
        "resourceType": "PaymentReconciliation",
        "status": "active",
        "identifier": [trace, {"system": systems::REMITTANCE_KEY, "value": header.key}],
        "created": header.date,
        "paymentIssuer": {"display": header.payer},
        "requestor": header.payee,
        "outcome": "complete",
        "paymentDate": header.date,
        "paymentAmount": money(header.paid),
        "paymentIdentifier": trace,
    });
    put(
        &mut resource,
        "disposition",
        json!(payment_method(header.method)),
    );
    put(&mut resource, "detail", Value::Array(details));
    resource
}

/// BPR04 in words ("" when absent or unknown, which leaves the disposition out).
fn payment_method(method: &str) -> &'static str {
    match method {
        "ACH" => "Paid by ACH (EFT)",
        "BOP" => "Paid by the financial institution's option",
        "CHK" => "Paid by check",
        "FWT" => "Paid by wire transfer",
        "NON" => "No payment",
        _ => "",
    }
}

fn claim_detail(claim: &Claim) -> Value {
    json!({
        "type": concept(PAYMENT_TYPE, "payment"),
        "identifier": {
            "system": systems::PATIENT_CONTROL_NUMBER,
            "value": claim.payment.patient_control_number,
        },
        "amount": money(claim.paid),
    })
}

/// A PLB pair as a detail: a positive PLB amount is withheld, so the detail is negative.
fn adjustment_detail(adjustment: &ProviderAdjustment) -> Value {
    json!({
        "type": concept(PAYMENT_TYPE, "adjustment"),
        "identifier": {"value": adjustment.identifier},
        "date": adjustment.date,
        "amount": money(adjustment.cents.saturating_neg()),
    })
}

/// Sums in i128: many 15-digit amounts could overflow i64, and a wrapped sum would
/// "balance" by accident.
fn total(adjustments: &[Adjustment]) -> i128 {
    adjustments.iter().map(|a| i128::from(a.cents)).sum()
}

/// Element `n` as exact cents, or an error at that element.
fn amount(segment: &Segment, n: usize) -> Result<i64, EdiError> {
    let text = segment.element(n);
    parse_cents(text).ok_or_else(|| {
        let problem = if text.is_empty() {
            "is required".to_owned()
        } else {
            format!("'{text}' is not an amount")
        };
        segment.element_error(n, format!("{}{n:02} (an amount) {problem}", segment.id))
    })
}

/// Element `n` (CCYYMMDD) as a FHIR date, or an error at that element.
fn date(segment: &Segment, n: usize) -> Result<String, EdiError> {
    let text = segment.element(n);
    fhir_date(text).ok_or_else(|| {
        segment.element_error(
            n,
            format!("{}{n:02} '{text}' is not a date (CCYYMMDD)", segment.id),
        )
    })
}

/// Element `n`, which must not be empty.
fn required<'d>(segment: &Segment<'d>, n: usize, what: &str) -> Result<&'d str, EdiError> {
    let text = segment.element(n);
    if text.is_empty() {
        return Err(segment.element_error(n, format!("{}{n:02} ({what}) is required", segment.id)));
    }
    Ok(text)
}

/// Cents for a message, with two decimals.
fn show(cents: i128) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

fn concept(system: &str, code: &str) -> Value {
    json!({"coding": [{"system": system, "code": code}]})
}

/// Sets `key` unless `value` is empty: FHIR allows no empty strings, arrays or objects.
fn put(object: &mut Value, key: &str, value: Value) {
    let empty = match &value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    };
    if let (false, Some(map)) = (empty, object.as_object_mut()) {
        map.insert(key.to_owned(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISA: &str = "ISA*00*          *00*          *ZZ*PAYERSENDER    *ZZ*CLINIC         *261201*1200*^*00501*000000123*0*T*:~";

    /// The segments of a balanced 835 body (between ST and SE): a paid claim with a
    /// claim-level adjustment and two lines, a denied claim, and a PLB withholding 25.50
    /// and paying 5.00 interest. 150.00 - (25.50 - 5.00) = 129.50.
    const BODY: &[&str] = &[
        "BPR*I*129.5*C*ACH*CCP*01*011000015*DA*123456789*1512345678**01*011000028*DA*987654321*20261201",
        "TRN*1*EFT12345*1512345678",
        "DTM*405*20261201",
        "N1*PR*ACME HEALTH PLAN",
        "N3*1 PAYER WAY",
        "N4*HARTFORD*CT*06101",
        "PER*BL*EDI SUPPORT*TE*8005551212",
        "N1*PE*MAIN STREET CLINIC*XX*1234567893",
        "LX*1",
        "CLP*PCN001*1*250*150*30*12*PAYERCLM001",
        "CAS*OA*23*10",
        "NM1*QC*1*DOE*JANE****MI*W123456789",
        "DTM*232*20261115",
        "SVC*HC:99213:25*150*90**1",
        "DTM*472*20261115",
        "CAS*CO*45*40",
        "CAS*PR*1*15*1*2*5",
        "REF*6R*LINE1",
        "AMT*B6*110",
        "LQ*HE*N130",
        "SVC*HC:85025*100*70**1",
        "CAS*CO*45*20",
        "CAS*PR*3*10",
        "REF*6R*LINE2",
        "CLP*PCN002*4*80*0**12*PAYERCLM002",
        "CAS*CO*50*80",
        "NM1*QC*1*ROE*RICHARD",
        "PLB*1234567893*20261231*WO:12345*25.5*L6*-5",
    ];

    /// An interchange of one group holding one set per body, with every count and
    /// control number right.
    fn interchange(sets: &[Vec<String>]) -> String {
        let mut text = format!("{ISA}\nGS*HP*PAYERSENDER*CLINIC*20261201*1200*7*X*005010X221A1~\n");
        for (n, body) in sets.iter().enumerate() {
            let control = format!("{:04}", n + 1);
            text.push_str(&format!("ST*835*{control}~\n"));
            for segment in body {
                text.push_str(segment);
                text.push_str("~\n");
            }
            text.push_str(&format!("SE*{}*{control}~\n", body.len() + 2));
        }
        text.push_str(&format!("GE*{}*7~\nIEA*1*000000123~\n", sets.len()));
        text
    }

    fn balanced() -> Vec<String> {
        BODY.iter().map(|s| s.to_string()).collect()
    }

    /// The body with the segment `old` replaced by `new`.
    fn body_with(old: &str, new: &str) -> Vec<String> {
        let mut body = balanced();
        let at = body
            .iter()
            .position(|s| s == old)
            .expect("a fixture segment");
        body[at] = new.to_owned();
        body
    }

    /// The position (from 1, ISA being 1) a body segment has in a one-set interchange.
    fn position(segment: &str) -> usize {
        BODY.iter()
            .position(|s| *s == segment)
            .expect("a fixture segment")
            + 4
    }

    fn run(sets: &[Vec<String>]) -> (Result<Vec<Remittance>, EdiError>, Vec<EdiError>) {
        let text = interchange(sets);
        let parsed = crate::parse(text.as_bytes()).expect("the envelope is right");
        (to_fhir(&parsed), balance_errors(&parsed))
    }

    fn value(money: &Value) -> String {
        money["value"].to_string()
    }

    fn codes(entries: &Value) -> Vec<String> {
        entries
            .as_array()
            .expect("an array")
            .iter()
            .map(|e| {
                e["category"]["coding"][0]["code"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn a_balanced_remittance_becomes_a_payment_and_claim_responses() {
        let (result, problems) = run(&[balanced()]);
        assert!(problems.is_empty(), "{problems:?}");
        let remittances = result.expect("balanced");
        assert_eq!(remittances.len(), 1);
        let remittance = &remittances[0];
        assert_eq!(remittance.trace_number, "EFT12345");

        let payment = &remittance.payment;
        assert_eq!(payment["resourceType"], "PaymentReconciliation");
        assert_eq!(value(&payment["paymentAmount"]), "129.50");
        assert_eq!(payment["paymentDate"], "2026-12-01");
        assert_eq!(
            payment["paymentIdentifier"]["system"],
            systems::TRACE_NUMBER
        );
        assert_eq!(payment["paymentIdentifier"]["value"], "EFT12345");
        assert_eq!(payment["paymentIssuer"]["display"], "ACME HEALTH PLAN");
        assert_eq!(payment["requestor"]["display"], "MAIN STREET CLINIC");
        assert_eq!(payment["requestor"]["identifier"]["system"], systems::NPI);
        let details = payment["detail"].as_array().expect("details");
        let summary: Vec<(String, String, String)> = details
            .iter()
            .map(|d| {
                (
                    d["type"]["coding"][0]["code"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned(),
                    d["identifier"]["value"].as_str().unwrap_or("").to_owned(),
                    value(&d["amount"]),
                )
            })
            .collect();
        let expected = [
            ("payment", "PCN001", "150.00"),
            ("payment", "PCN002", "0.00"),
            ("adjustment", "WO:12345", "-25.50"),
            ("adjustment", "L6", "5.00"),
        ];
        let expected: Vec<(String, String, String)> = expected
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect();
        assert_eq!(summary, expected);
        assert_eq!(
            details[0]["identifier"]["system"],
            systems::PATIENT_CONTROL_NUMBER
        );
        assert_eq!(details[2]["date"], "2026-12-31");

        let claims = &remittance.claim_responses;
        assert_eq!(claims.len(), 2);
        assert_eq!(claims[0].patient_control_number, "PCN001");
        assert_eq!(claims[0].status_code, "1");
        assert_eq!(claims[1].patient_control_number, "PCN002");
        assert_eq!(claims[1].status_code, "4");
    }

    #[test]
    fn a_paid_claim_carries_its_adjudication() {
        let (result, _) = run(&[balanced()]);
        let remittances = result.expect("balanced");
        let response = &remittances[0].claim_responses[0].claim_response;
        assert_eq!(response["resourceType"], "ClaimResponse");
        assert_eq!(response["outcome"], "complete");
        assert_eq!(response["patient"]["display"], "DOE, JANE");
        assert_eq!(response["created"], "2026-12-01");
        assert_eq!(response["insurer"]["display"], "ACME HEALTH PLAN");
        assert_eq!(response["request"]["identifier"]["value"], "PCN001");
        assert_eq!(
            response["identifier"][0]["system"],
            systems::PAYER_CLAIM_NUMBER
        );
        assert_eq!(response["identifier"][0]["value"], "PAYERCLM001");
        assert_eq!(response["identifier"][1]["value"], "PCN001");
        assert_eq!(codes(&response["total"]), ["submitted", "benefit"]);
        assert_eq!(value(&response["total"][0]["amount"]), "250.00");
        assert_eq!(value(&response["total"][1]["amount"]), "150.00");
        assert_eq!(value(&response["payment"]["amount"]), "150.00");
        assert_eq!(response["payment"]["identifier"]["value"], "EFT12345");

        let claim_level = &response["adjudication"];
        assert_eq!(codes(claim_level), ["OA"]);
        assert_eq!(
            claim_level[0]["category"]["coding"][0]["system"],
            systems::CAS_GROUP
        );
        assert_eq!(
            claim_level[0]["reason"]["coding"][0]["system"],
            systems::CARC
        );
        assert_eq!(claim_level[0]["reason"]["coding"][0]["code"], "23");
        assert_eq!(value(&claim_level[0]["amount"]), "10.00");

        let items = response["item"].as_array().expect("items");
        assert_eq!(items.len(), 2);
        let first = &items[0];
        assert_eq!(first["itemSequence"], 1);
        assert_eq!(
            codes(&first["adjudication"]),
            [
                "submitted",
                "benefit",
                "eligible",
                "CO",
                "deductible",
                "PR",
                "N130"
            ]
        );
        let amounts: Vec<String> = first["adjudication"]
            .as_array()
            .expect("adjudication")
            .iter()
            .take(6)
            .map(|a| value(&a["amount"]))
            .collect();
        assert_eq!(
            amounts,
            ["150.00", "90.00", "110.00", "40.00", "15.00", "5.00"]
        );
        assert_eq!(
            first["adjudication"][6]["category"]["coding"][0]["system"],
            systems::RARC
        );
        assert_eq!(
            first["extension"][0]["url"],
            systems::LINE_CONTROL_EXTENSION
        );
        assert_eq!(first["extension"][0]["valueString"], "LINE1");
        assert_eq!(first["extension"][1]["valueString"], "HC:99213:25");
        assert_eq!(items[1]["itemSequence"], 2);
        assert_eq!(
            codes(&items[1]["adjudication"]),
            ["submitted", "benefit", "CO", "copay"]
        );
    }

    /// Every CAS adjustment's (group, reason, amount), read back from its adjudication
    /// entry: the group from the category's CAS group coding, the reason from CARC.
    fn adjustments_of(entries: &Value) -> Vec<(String, String, String)> {
        let code_of = |concept: &Value, system: &str| -> String {
            concept["coding"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["system"] == system)
                .and_then(|c| c["code"].as_str())
                .unwrap_or("")
                .to_owned()
        };
        entries
            .as_array()
            .expect("an array")
            .iter()
            .filter(|e| e.get("reason").is_some())
            .map(|e| {
                (
                    code_of(&e["category"], systems::CAS_GROUP),
                    code_of(&e["reason"], systems::CARC),
                    value(&e["amount"]),
                )
            })
            .collect()
    }

    /// Deductible and copay keep their CAS group (PR) beside their category, as every
    /// other adjustment does: patient responsibility is told from a write-off.
    #[test]
    fn every_adjustment_keeps_its_group_and_reason() {
        let (result, _) = run(&[balanced()]);
        let remittances = result.expect("balanced");
        let response = &remittances[0].claim_responses[0].claim_response;
        let owned = |cases: &[(&str, &str, &str)]| -> Vec<(String, String, String)> {
            cases
                .iter()
                .map(|(g, r, a)| (g.to_string(), r.to_string(), a.to_string()))
                .collect()
        };
        assert_eq!(
            adjustments_of(&response["adjudication"]),
            owned(&[("OA", "23", "10.00")])
        );
        assert_eq!(
            adjustments_of(&response["item"][0]["adjudication"]),
            owned(&[
                ("CO", "45", "40.00"),
                ("PR", "1", "15.00"),
                ("PR", "2", "5.00")
            ])
        );
        assert_eq!(
            adjustments_of(&response["item"][1]["adjudication"]),
            owned(&[("CO", "45", "20.00"), ("PR", "3", "10.00")])
        );
        // A deductible taken as a contractual adjustment is not patient responsibility.
        let (result, _) = run(&[body_with("CAS*PR*1*15*1*2*5", "CAS*CO*1*15**2*5")]);
        let remittances = result.expect("balanced");
        let line = &remittances[0].claim_responses[0].claim_response["item"][0];
        assert_eq!(
            adjustments_of(&line["adjudication"]),
            owned(&[
                ("CO", "45", "40.00"),
                ("CO", "1", "15.00"),
                ("CO", "2", "5.00")
            ])
        );
        assert_eq!(
            codes(&line["adjudication"]),
            ["submitted", "benefit", "eligible", "CO", "CO", "CO", "N130"]
        );
    }

    #[test]
    fn a_denied_claim_is_an_error_outcome_with_its_adjustment() {
        let (result, _) = run(&[balanced()]);
        let remittances = result.expect("balanced");
        let denied = &remittances[0].claim_responses[1].claim_response;
        assert_eq!(denied["outcome"], "error");
        assert_eq!(denied["disposition"], "Denied");
        assert_eq!(denied["patient"]["display"], "ROE, RICHARD");
        assert!(denied.get("item").is_none());
        assert_eq!(codes(&denied["adjudication"]), ["CO"]);
        assert_eq!(value(&denied["adjudication"][0]["amount"]), "80.00");
        assert_eq!(value(&denied["payment"]["amount"]), "0.00");
    }

    #[test]
    fn every_set_is_read() {
        let second = body_with("TRN*1*EFT12345*1512345678", "TRN*1*CHK999*1512345678");
        let (result, problems) = run(&[balanced(), second]);
        assert!(problems.is_empty(), "{problems:?}");
        let traces: Vec<String> = result
            .expect("balanced")
            .into_iter()
            .map(|r| r.trace_number)
            .collect();
        assert_eq!(traces, ["EFT12345", "CHK999"]);
    }

    #[test]
    fn an_unbalanced_line_is_named() {
        let old = "SVC*HC:99213:25*150*90**1";
        let (result, problems) = run(&[body_with(old, "SVC*HC:99213:25*150*95**1")]);
        let error = result.expect_err("the line does not balance");
        assert_eq!(error.segment, "SVC");
        assert_eq!(error.element, Some(3));
        assert_eq!(error.position, position(old));
        assert!(
            error.message.contains("90.00") && error.message.contains("95.00"),
            "{error}"
        );
        assert_eq!(problems, [error]);
    }

    #[test]
    fn an_unbalanced_claim_is_named() {
        let old = "CLP*PCN001*1*250*150*30*12*PAYERCLM001";
        let mut body = body_with(old, "CLP*PCN001*1*250*140*30*12*PAYERCLM001");
        body[0] = BODY[0].replace("*129.5*", "*119.5*");
        let (result, problems) = run(&[body]);
        let error = result.expect_err("the claim does not balance");
        assert_eq!(error.segment, "CLP");
        assert_eq!(error.element, Some(4));
        assert_eq!(error.position, position(old));
        assert!(
            error.message.contains("150.00") && error.message.contains("140.00"),
            "{error}"
        );
        assert_eq!(problems, [error]);
    }

    #[test]
    fn an_unbalanced_payment_is_named_after_the_claims() {
        let mut body = balanced();
        body[0] = BODY[0].replace("*129.5*", "*130*");
        let (result, problems) = run(&[body]);
        let error = result.expect_err("the payment does not balance");
        assert_eq!(error.segment, "BPR");
        assert_eq!(error.element, Some(2));
        assert_eq!(error.position, 4);
        assert!(
            error.message.contains("129.50") && error.message.contains("130.00"),
            "{error}"
        );
        assert_eq!(problems.len(), 1);

        // A claim off by 10 also unbalances the payment: both are listed, the claim first.
        let old = "CLP*PCN001*1*250*150*30*12*PAYERCLM001";
        let (result, problems) = run(&[body_with(old, "CLP*PCN001*1*250*140*30*12*PAYERCLM001")]);
        assert_eq!(result.expect_err("unbalanced").segment, "CLP");
        let where_: Vec<String> = problems.iter().map(EdiError::reference).collect();
        assert_eq!(where_, ["CLP04", "BPR02"]);
    }

    #[test]
    fn garbage_is_an_error_at_its_element() {
        let cases = [
            (
                "CLP*PCN001*1*250*150*30*12*PAYERCLM001",
                "CLP*PCN001*1*ABC*150",
                "CLP03",
            ),
            (
                "CLP*PCN001*1*250*150*30*12*PAYERCLM001",
                "CLP**1*250*150",
                "CLP01",
            ),
            ("CAS*CO*45*40", "CAS*CO*45*1.234", "CAS03"),
            ("CAS*CO*45*40", "CAS*XX*45*40", "CAS01"),
            ("CAS*CO*45*40", "CAS*CO**40", "CAS02"),
            ("AMT*B6*110", "AMT*B6*", "AMT02"),
            (
                "BPR*I*129.5*C*ACH*CCP*01*011000015*DA*123456789*1512345678**01*011000028*DA*987654321*20261201",
                "BPR*I*129.5",
                "BPR16",
            ),
            (BODY[0], &BODY[0].replace("20261201", "20261301"), "BPR16"),
            ("TRN*1*EFT12345*1512345678", "TRN*1", "TRN02"),
            (
                "PLB*1234567893*20261231*WO:12345*25.5*L6*-5",
                "PLB*1234567893*20261231*WO:12345*-",
                "PLB04",
            ),
            (
                "PLB*1234567893*20261231*WO:12345*25.5*L6*-5",
                "PLB*1234567893*20261231*:1*5",
                "PLB03-1",
            ),
            (
                "NM1*QC*1*DOE*JANE****MI*W123456789",
                "NM1*IL*1*DOE*JANE",
                "CLP",
            ),
            ("N1*PR*ACME HEALTH PLAN", "N1*XX*ACME HEALTH PLAN", "ST"),
        ];
        for (old, new, reference) in cases {
            let (result, problems) = run(&[body_with(old, new)]);
            let error = result.expect_err(new);
            assert_eq!(error.reference(), reference, "{new}: {error}");
            assert!(error.position > 0, "{error}");
            assert_eq!(problems, [error]);
        }
    }

    #[test]
    fn misplaced_segments_and_other_sets_are_refused() {
        let mut body = balanced();
        body.insert(9, "SVC*HC:99211*10*10".to_owned());
        let (result, _) = run(&[body]);
        let error = result.expect_err("an SVC before its CLP");
        assert_eq!((error.segment.as_str(), error.position), ("SVC", 13));

        let (result, _) = run(&[body_with("LX*1", "REF*EV*1")]);
        assert_eq!(result.expect_err("a CLP before any LX").segment, "CLP");

        let text = interchange(&[balanced()]).replace("ST*835*", "ST*837*");
        let parsed = crate::parse(text.as_bytes()).expect("the envelope is right");
        let error = to_fhir(&parsed).expect_err("not an 835");
        assert_eq!(error.reference(), "ST01");
    }

    /// Removing any segment or blanking or spoiling any element never panics.
    #[test]
    fn no_input_panics() {
        for at in 0..BODY.len() {
            let mut body = balanced();
            body.remove(at);
            let (_, _) = run(&[body]);
            let elements = BODY[at].split('*').count();
            for element in 1..elements {
                for junk in ["", "X", "-", ":", "99999999999999999.99"] {
                    let mut parts: Vec<&str> = BODY[at].split('*').collect();
                    parts[element] = junk;
                    let mut body = balanced();
                    body[at] = parts.join("*");
                    let (_, _) = run(&[body]);
                }
            }
        }
    }
}
