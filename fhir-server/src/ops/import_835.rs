//! `POST [base]/$import-835`: posts an 835 remittance.
//!
//! The body is the X12 itself (`Content-Type: application/edi-x12`, or any text type), or
//! a Parameters resource with a `file` parameter (valueString, or valueBase64Binary).
//! `edi::remit835` reads it (with its balancing rules; an imbalance is a 422 naming the
//! segment and element) into a PaymentReconciliation and a ClaimResponse per claim. Each
//! ClaimResponse is matched to its Claim by the patient control number (the Claim's
//! identifier `urn:x12:clm01`, else its id), and, in one transaction, the
//! PaymentReconciliation and the ClaimResponses are created and each matched Claim is
//! tagged with its new state (`urn:x12:claim-state`: paid, denied, reversed or
//! forwarded), under If-Match so that no concurrent change is lost.
//!
//! Posting is idempotent: an 835 whose trace number (TRN02, with TRN03, the payer that
//! issued it) was posted already changes nothing and answers `already-posted`. When the
//! same 835 is posted twice at the same moment, the If-Match on each matched Claim lets
//! one win and fails the other with 412 (a retry then answers `already-posted`).

use axum::http::StatusCode;
use base64::Engine;
use serde_json::{Value, json};

use super::claim_submit::{read, set_claim_state};
use super::{Operation, Param, returns};
use crate::app::App;
use crate::error::FhirError;
use crate::rest::request::FhirRequest;
use crate::rest::response::FhirResponse;
use crate::store::transaction::TxResult;

const REMITTANCE_KEY: &str = edi::fhir::systems::REMITTANCE_KEY;
const PATIENT_CONTROL_NUMBER: &str = edi::fhir::systems::PATIENT_CONTROL_NUMBER;

/// `[base]/$import-835`, as registered in `ops::OPERATIONS`.
pub const OPERATION: Operation = Operation {
    name: "import-835",
    id: "import-835",
    url: "urn:fhir-server:OperationDefinition/import-835",
    title: "Post an X12 835 remittance",
    description: "Reads an X12 5010 835 (raw, or as the Parameters part 'file'), checks its balancing, and in one transaction writes its ClaimResponses and PaymentReconciliation and the states of the Claims it pays; the same 835 again writes nothing.",
    types: &[],
    system: true,
    type_level: false,
    instance: false,
    affects_state: true,
    parameters: &[
        Param {
            name: "file",
            use_: "in",
            min: 0,
            max: "1",
            type_: "Attachment",
            documentation: "The 835 (or send it raw as the body)",
        },
        returns("Parameters", "What was posted"),
    ],
    handler: |app, request, _| Box::pin(handle(app, request)),
};

pub async fn handle(app: &App, request: &FhirRequest) -> Result<FhirResponse, FhirError> {
    let bytes = body(request)?;
    let parsed = edi::parse(&bytes).map_err(edi_error)?;
    let remittances = edi::remit835::to_fhir(&parsed).map_err(edi_error)?;
    let mut parameters = Vec::new();
    for remittance in remittances {
        parameters.extend(post(app, request, remittance).await?);
    }
    Ok(FhirResponse::value(
        StatusCode::OK,
        json!({"resourceType": "Parameters", "parameter": parameters}),
    ))
}

/// The X12 of the request: the body itself, or the `file` of a Parameters.
fn body(request: &FhirRequest) -> Result<Vec<u8>, FhirError> {
    let content_type = request.header("content-type").unwrap_or_default();
    let fhir = content_type.contains("fhir+json") || content_type.contains("application/json");
    if !fhir {
        return Ok(request.body.to_vec());
    }
    let parameters = request.parse_body()?;
    let file = parameters["parameter"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "file")
        .ok_or_else(|| {
            FhirError::bad_request(
                "Send the 835 as the body (application/edi-x12) or as the Parameters 'file'",
            )
            .at("Parameters.parameter")
        })?;
    if let Some(text) = file["valueString"].as_str() {
        return Ok(text.as_bytes().to_vec());
    }
    let encoded = file["valueBase64Binary"].as_str().unwrap_or_default();
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| {
            FhirError::bad_request("'file' needs valueString or valueBase64Binary")
                .at("Parameters.parameter")
        })
}

/// An X12 problem as a 422 naming segment and element.
fn edi_error(error: edi::EdiError) -> FhirError {
    let at = if error.position == 0 {
        "X12".to_owned()
    } else {
        format!("segment {} ({})", error.position, error.reference())
    };
    FhirError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
        format!("The 835 cannot be posted: {error}"),
    )
    .at(at)
}

/// Posts one remittance; the parameters that report it.
async fn post(
    app: &App,
    request: &FhirRequest,
    remittance: edi::remit835::Remittance,
) -> Result<Vec<Value>, FhirError> {
    let trace = remittance.trace_number.clone();
    let key = remittance.remittance_key.clone();
    if let Some(existing) =
        find(app, request, "PaymentReconciliation", REMITTANCE_KEY, &key).await?
    {
        return Ok(vec![
            json!({"name": "outcome", "valueString": format!("already-posted: {trace}")}),
            json!({"name": "paymentReconciliation", "valueReference": {"reference": format!("PaymentReconciliation/{existing}")}}),
        ]);
    }
    let mut payment = remittance.payment;
    let Matched {
        responses,
        claim_updates,
        unmatched,
    } = match_claims(app, request, remittance.claim_responses, &mut payment).await?;
    let bundle = transaction_bundle(payment, &key, responses, claim_updates);
    let results = crate::interaction::transaction::run(app, request, bundle).await?;
    Ok(report(&trace, &results, unmatched))
}

/// The ClaimResponses of a remittance, matched to the Claims they pay.
#[derive(Default)]
struct Matched {
    /// The transaction entries that create the ClaimResponses, in the 835's order.
    responses: Vec<Value>,
    /// One update per Claim: its id, its content in its new state, the version it was read
    /// at (for If-Match).
    claim_updates: Vec<(String, Value, i64)>,
    /// The patient control numbers (CLP01) that no Claim answers to.
    unmatched: Vec<String>,
}

impl Matched {
    /// Gives a Claim the state of a CLP. A Claim is updated once, with the state of its
    /// last CLP: an 835 may reverse a payment and pay the claim again (CLP02 22, then 1).
    fn set_state(&mut self, id: String, mut claim: Value, version: i64, state: &str) {
        match self
            .claim_updates
            .iter_mut()
            .find(|(known, _, _)| *known == id)
        {
            Some((_, pending, _)) => set_claim_state(pending, state),
            None => {
                set_claim_state(&mut claim, state);
                self.claim_updates.push((id, claim, version));
            }
        }
    }
}

/// Finds the Claim of each ClaimResponse by its patient control number. A matched
/// response then names the Claim and its patient, the payment's detail for it points at
/// the Claim, and the Claim takes the state the CLP gives it.
async fn match_claims(
    app: &App,
    request: &FhirRequest,
    claim_payments: Vec<edi::remit835::ClaimPayment>,
    payment: &mut Value,
) -> Result<Matched, FhirError> {
    let mut matched = Matched::default();
    for (n, claim_payment) in claim_payments.into_iter().enumerate() {
        let mut response = claim_payment.claim_response;
        let number = &claim_payment.patient_control_number;
        match find_claim(app, request, number).await? {
            Some((id, claim, version)) => {
                response["request"] = json!({"reference": format!("Claim/{id}")});
                if claim["patient"].is_object() {
                    response["patient"] = claim["patient"].clone();
                }
                link_detail(payment, number, &id);
                matched.set_state(id, claim, version, state(&claim_payment.status_code));
            }
            None => matched.unmatched.push(number.clone()),
        }
        matched.responses.push(json!({
            "fullUrl": format!("urn:uuid:00000000-0000-4000-8000-{:012}", n + 1),
            "resource": response,
            "request": {"method": "POST", "url": "ClaimResponse"},
        }));
    }
    Ok(matched)
}

/// The transaction that posts a remittance: the PaymentReconciliation first, created only
/// if none has its remittance key yet (`ifNoneExist`), then the ClaimResponses, then the
/// Claims' updates under If-Match, so that no concurrent change of a Claim is lost.
fn transaction_bundle(
    payment: Value,
    key: &str,
    responses: Vec<Value>,
    claim_updates: Vec<(String, Value, i64)>,
) -> Value {
    let if_none_exist = format!("identifier={}", query_value(&token(REMITTANCE_KEY, key)));
    let mut entries = vec![json!({
        "resource": payment,
        "request": {"method": "POST", "url": "PaymentReconciliation", "ifNoneExist": if_none_exist},
    })];
    entries.extend(responses);
    entries.extend(claim_updates.into_iter().map(|(id, claim, version)| {
        json!({
            "resource": claim,
            "request": {"method": "PUT", "url": format!("Claim/{id}"), "ifMatch": format!("W/\"{version}\"")},
        })
    }));
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

/// The parameters that report a posted remittance: the outcome, a reference to each
/// resource written, and the patient control numbers that matched no Claim.
fn report(trace: &str, results: &[TxResult], unmatched: Vec<String>) -> Vec<Value> {
    let mut parameters =
        vec![json!({"name": "outcome", "valueString": format!("posted: {trace}")})];
    for result in results {
        let Some(version) = &result.version else {
            continue;
        };
        let name = match version.resource_type.as_str() {
            "PaymentReconciliation" => "paymentReconciliation",
            "ClaimResponse" => "claimResponse",
            "Claim" => "claim",
            _ => continue,
        };
        parameters.push(json!({"name": name, "valueReference": {"reference": format!("{}/{}", version.resource_type, version.id)}}));
    }
    parameters.extend(
        unmatched
            .into_iter()
            .map(|n| json!({"name": "unmatched", "valueString": n})),
    );
    parameters
}

/// The Claim a CLP01 names: by its identifier `urn:x12:clm01`, else by id; with its
/// current content and version.
async fn find_claim(
    app: &App,
    request: &FhirRequest,
    number: &str,
) -> Result<Option<(String, Value, i64)>, FhirError> {
    let id = match find(app, request, "Claim", PATIENT_CONTROL_NUMBER, number).await? {
        Some(id) => id,
        None if crate::ids::is_valid_id(number) => number.to_owned(),
        None => return Ok(None),
    };
    Ok(read(app, request, "Claim", &id)
        .await?
        .map(|(claim, version)| (id, claim, version)))
}

/// `system|value` as a token search value: the value's `\`, `,`, `$` and `|` escaped, so
/// that whatever an 835 holds is matched as it is.
fn token(system: &str, value: &str) -> String {
    let mut escaped = String::with_capacity(value.len() + 4);
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '$' | '|') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    format!("{system}|{escaped}")
}

/// A value percent-encoded for a query string (`ifNoneExist`).
fn query_value(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The id of the one current resource with this identifier, if any. Two or more are an
/// error: posting a payment to either could be the wrong one.
async fn find(
    app: &App,
    request: &FhirRequest,
    resource_type: &str,
    system: &str,
    value: &str,
) -> Result<Option<String>, FhirError> {
    match with_identifier(app, request, resource_type, system, value)
        .await?
        .as_slice()
    {
        [] => Ok(None),
        [id] => Ok(Some(id.clone())),
        _ => Err(FhirError::conflict(format!(
            "More than one {resource_type} has the identifier {system}|{value}; the remittance cannot tell which it pays"
        ))),
    }
}

/// The ids of (up to two) current resources with this identifier.
pub async fn with_identifier(
    app: &App,
    request: &FhirRequest,
    resource_type: &str,
    system: &str,
    value: &str,
) -> Result<Vec<String>, FhirError> {
    let params = vec![("identifier".to_owned(), token(system, value))];
    let query = crate::interaction::conditional_criteria(resource_type, &params, "A lookup")?;
    let query = crate::search::Query {
        count: Some(2),
        total: crate::search::query::Total::None,
        ..query
    };
    let found =
        crate::store::search::execute(&app.store, request.tenant, &query, app.page_limits())
            .await?;
    Ok(found
        .matches
        .iter()
        .map(|row| row.version.id.clone())
        .collect())
}

/// The Claim's state after a CLP02 status.
fn state(status: &str) -> &'static str {
    match status {
        "1" | "2" | "3" | "19" | "20" | "21" => "paid",
        "4" => "denied",
        "22" => "reversed",
        _ => "forwarded",
    }
}

/// Points the payment detail of a claim at the Claim.
fn link_detail(payment: &mut Value, patient_control_number: &str, claim_id: &str) {
    for detail in payment["detail"].as_array_mut().into_iter().flatten() {
        if detail["identifier"]["value"] == patient_control_number
            && detail["identifier"]["system"] == PATIENT_CONTROL_NUMBER
        {
            detail["request"] = json!({"reference": format!("Claim/{claim_id}")});
        }
    }
}
