//! `Claim/[id]/$submit`: the claim as an 837P for the clearinghouse.
//!
//! The Claim and everything its 837P needs (patient, billing provider, coverages and their
//! payers and subscribers, care team, facility) are read from this tenant, the 837P is
//! written by `edi::claim837` (missing or inconsistent data is a 422 listing every
//! problem, each naming its element), and, in one transaction, the file is stored as a
//! Binary (securityContext: the Claim) and the Claim is marked submitted: a tag
//! `urn:x12:claim-state|submitted` and an extension `urn:x12:submission` pointing at the
//! Binary. The answer is the Binary, with the 837P in `data` (base64); its
//! `Content-Location` names it.
//!
//! Each interchange gets the tenant's next control number (ISA13), drawn from the
//! `counters` table, so no two submissions repeat one. A Claim sent already (any state
//! but "never sent") is refused (409) unless the caller asks `?resubmit=true`: a retried
//! request must not send the same claim twice. A replacement (frequency 7) or a void
//! (frequency 8) may follow a submitted, paid, denied or forwarded claim. A Claim without
//! a patient control number (identifier `urn:x12:clm01`) gets one of at most 20
//! characters, kept on the Claim. The state tag is the server's own: clients' writes
//! cannot change or drop it (see `resource::keep_server_owned`).

use axum::http::StatusCode;
use axum::http::header::CONTENT_LOCATION;
use base64::Engine;
use serde_json::{Value, json};

use super::{Operation, Param};
use crate::app::App;
use crate::error::{FhirError, Issue};
use crate::resource::{self, CLAIM_STATE, SUBMISSION_EXTENSION};
use crate::rest::request::FhirRequest;
use crate::rest::response::FhirResponse;

/// `Claim/[id]/$submit`, as registered in `ops::OPERATIONS`.
pub const OPERATION: Operation = Operation {
    name: "submit",
    id: "Claim-submit",
    url: "urn:fhir-server:OperationDefinition/Claim-submit-837P",
    title: "Submit a Claim as an X12 837P",
    description: "Writes the Claim as an X12 5010 837P, stores it as a Binary and records the claim state. A Claim sent already is refused unless resubmit=true; a replacement or a void may follow a submitted, paid, denied or forwarded claim.",
    types: &["Claim"],
    system: false,
    type_level: false,
    instance: true,
    affects_state: true,
    parameters: &[
        Param {
            name: "resubmit",
            use_: "in",
            min: 0,
            max: "1",
            type_: "boolean",
            documentation: "Send a claim that was sent already, on purpose (URL parameter)",
        },
        Param {
            name: "return",
            use_: "out",
            min: 1,
            max: "1",
            type_: "Binary",
            documentation: "The stored 837P",
        },
    ],
    handler: |app, request, target| Box::pin(handle(app, request, target.id().unwrap_or_default())),
};

pub async fn handle(app: &App, request: &FhirRequest, id: &str) -> Result<FhirResponse, FhirError> {
    let (mut claim, version) = read(app, request, "Claim", id)
        .await?
        .ok_or_else(|| FhirError::not_found(format!("Claim/{id} is not known")))?;
    let frequency = edi::claim837::frequency_code(&claim);
    may_submit(claim_state(&claim), frequency, resubmit_asked(request)?)
        .map_err(|why| FhirError::conflict(format!("Claim/{id} cannot be sent: {why}")))?;
    if patient_control_number(&claim).is_none() {
        let number = derived_control_number(app, request, id).await?;
        add_patient_control_number(&mut claim, &number);
    }
    let text = write_837(app, request, &claim).await?;
    let state = match frequency {
        "8" => "voided",
        "7" => "replacement-submitted",
        _ => "submitted",
    };
    let stored = record(app, request, (id, version), claim, state, &text).await?;
    let location = format!(
        "{}/Binary/{}/_history/{}",
        request.base, stored.id, stored.version
    );
    Ok(FhirResponse::version(StatusCode::OK, &stored).header(CONTENT_LOCATION, &location))
}

/// `resubmit=true`, in the URL or in a Parameters body.
fn resubmit_asked(request: &FhirRequest) -> Result<bool, FhirError> {
    Ok(super::input(&super::inputs(request)?, "resubmit") == Some("true"))
}

/// The Claim as an 837P, with everything it draws on; 422 naming each problem.
async fn write_837(app: &App, request: &FhirRequest, claim: &Value) -> Result<String, FhirError> {
    let resources = gather(app, request, claim).await?;
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "collection",
        "entry": std::iter::once(claim).chain(resources.iter())
            .map(|r| json!({"resource": r}))
            .collect::<Vec<_>>(),
    });
    let control = next_counter(app, request, "x12-interchange").await?;
    let envelope = envelope_now(
        &app.config.x12_sender_id,
        &app.config.x12_receiver_id,
        Some((control % 999_999_999 + 1) as u32),
        app.config.x12_usage,
    );
    edi::claim837::generate(&bundle, &envelope).map_err(|problems| FhirError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        issues: problems
            .iter()
            .map(|p| Issue {
                severity: "error",
                code: "required",
                diagnostics: format!("This claim cannot be sent as an 837P: {}", p.message),
                expression: vec![p.element.clone()],
            })
            .collect(),
    })
}

/// Stores the 837P as a Binary and the Claim in its new `state`, in one transaction that
/// holds only if the Claim is still at `version`: of two submissions at once, one wins and
/// the other is a 409. The stored Binary.
async fn record(
    app: &App,
    request: &FhirRequest,
    (id, version): (&str, i64),
    mut claim: Value,
    state: &str,
    text: &str,
) -> Result<crate::store::Version, FhirError> {
    let binary_url = "urn:uuid:6a1d1c0e-7b0a-4c1e-9a51-5b1f0c2d3e4f";
    let binary = json!({
        "resourceType": "Binary",
        "contentType": "application/edi-x12",
        "securityContext": {"reference": format!("Claim/{id}")},
        "data": base64::engine::general_purpose::STANDARD.encode(text.as_bytes()),
    });
    mark_submitted(&mut claim, state, binary_url);
    let results = crate::interaction::transaction::run(
        app,
        request,
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": binary_url, "resource": binary, "request": {"method": "POST", "url": "Binary"}},
            {"resource": claim, "request": {"method": "PUT", "url": format!("Claim/{id}"),
                                            "ifMatch": format!("W/\"{version}\"")}},
        ]}),
    )
    .await
    .map_err(|error| match error.status {
        StatusCode::PRECONDITION_FAILED => FhirError::conflict(format!(
            "Claim/{id} changed while it was being sent (another submission?); nothing was sent"
        )),
        _ => error,
    })?;
    results
        .into_iter()
        .find(|r| r.index == 0)
        .and_then(|r| r.version)
        .ok_or_else(|| FhirError::internal("the Binary was not written"))
}

/// Whether a Claim in `state` (its `urn:x12:claim-state`, `None` when never sent) may be
/// sent with claim frequency `frequency` (1 original, 7 replacement, 8 void); else why not.
///
/// A payer must never get the same claim twice by accident: once sent, an original goes
/// again only when the caller asks on purpose (`?resubmit=true`). A replacement or a void
/// follows a claim the payer has (submitted, paid, denied, forwarded); a replacement sent
/// is not sent again unless asked (the payer's answer to it, paid or denied, allows the
/// next one).
fn may_submit(state: Option<&str>, frequency: &str, resubmit: bool) -> Result<(), String> {
    match (state, frequency) {
        (None, _) => Ok(()),
        _ if resubmit => Ok(()),
        (Some("submitted" | "paid" | "denied" | "forwarded"), "7" | "8") => Ok(()),
        // A replacement sent is not sent again by a retry; it may still be voided.
        (Some("replacement-submitted"), "8") => Ok(()),
        (Some(state), "1") => Err(format!(
            "it was sent already (state {state}); send ?resubmit=true to send the same claim again, \
             or send a replacement (Claim.related with relationship prior) or a void (status cancelled)"
        )),
        (Some(state), _) => Err(format!(
            "a replacement or void follows a claim that was submitted, paid, denied or forwarded, \
             and this one is {state}; send ?resubmit=true to send it anyway"
        )),
    }
}

/// The Claim's patient control number (CLM01), when it has one.
fn patient_control_number(claim: &Value) -> Option<&str> {
    claim["identifier"]
        .as_array()?
        .iter()
        .find(|i| i["system"] == edi::fhir::systems::PATIENT_CONTROL_NUMBER)
        .and_then(|i| i["value"].as_str())
}

/// A CLM01 for a Claim that has none: its id when that fits the 20 characters CLM01
/// allows, else `FS` and the tenant's next claim number (ids the server makes are 36
/// characters). It is kept on the Claim, so the 835 that answers finds it. A candidate
/// another Claim already answers to (as its CLM01, or as its id) is not used: the 835
/// must find one claim.
async fn derived_control_number(
    app: &App,
    request: &FhirRequest,
    id: &str,
) -> Result<String, FhirError> {
    if id.len() <= 20 && is_free(app, request, id, id).await? {
        return Ok(id.to_owned());
    }
    for _ in 0..5 {
        let number = next_counter(app, request, "x12-clm01").await?;
        let candidate = format!("FS{number:08}");
        if is_free(app, request, &candidate, id).await? {
            return Ok(candidate);
        }
    }
    Err(FhirError::conflict(
        "No free patient control number could be found; give the Claim an identifier urn:x12:clm01",
    ))
}

/// Whether no Claim but `own` answers to `number` as its CLM01 or its id.
async fn is_free(
    app: &App,
    request: &FhirRequest,
    number: &str,
    own: &str,
) -> Result<bool, FhirError> {
    let system = edi::fhir::systems::PATIENT_CONTROL_NUMBER;
    let holders = super::import_835::with_identifier(app, request, "Claim", system, number).await?;
    if holders.iter().any(|holder| holder != own) {
        return Ok(false);
    }
    Ok(number == own
        || !crate::ids::is_valid_id(number)
        || read(app, request, "Claim", number).await?.is_none())
}

fn add_patient_control_number(claim: &mut Value, number: &str) {
    let identifier = json!({"system": edi::fhir::systems::PATIENT_CONTROL_NUMBER, "value": number});
    match claim["identifier"].as_array_mut() {
        Some(identifiers) => identifiers.push(identifier),
        None => claim["identifier"] = json!([identifier]),
    }
}

/// Tags the Claim with its new state and points it at the stored file.
fn mark_submitted(claim: &mut Value, state: &str, binary: &str) {
    set_claim_state(claim, state);
    let extension = json!({"url": SUBMISSION_EXTENSION, "valueReference": {"reference": binary}});
    resource::set_server_extension(claim, SUBMISSION_EXTENSION, extension);
}

/// The Claim's `urn:x12:claim-state` tag, if any.
pub fn claim_state(claim: &Value) -> Option<&str> {
    resource::tag_code(claim, CLAIM_STATE)
}

/// Sets the Claim's `urn:x12:claim-state` tag, keeping its other tags and meta.
pub fn set_claim_state(claim: &mut Value, code: &str) {
    resource::set_server_tag(claim, CLAIM_STATE, code);
}

/// A current resource of this tenant and its version; `None` when absent or deleted.
pub async fn read(
    app: &App,
    request: &FhirRequest,
    resource_type: &str,
    id: &str,
) -> Result<Option<(Value, i64)>, FhirError> {
    let Some(version) = app.store.read(request.tenant, resource_type, id).await? else {
        return Ok(None);
    };
    match &version.body {
        Some(body) if !version.is_deleted() => Ok(Some((
            crate::rest::request::parse_json(body)?,
            version.version,
        ))),
        _ => Ok(None),
    }
}

/// The resources a Claim's 837P draws on, as far as they exist (the generator says
/// what is missing).
async fn gather(app: &App, request: &FhirRequest, claim: &Value) -> Result<Vec<Value>, FhirError> {
    let mut wanted: Vec<Value> = vec![claim["patient"].clone(), claim["provider"].clone()];
    wanted.extend(
        claim["facility"]
            .as_object()
            .map(|_| claim["facility"].clone()),
    );
    for member in claim["careTeam"].as_array().into_iter().flatten() {
        wanted.push(member["provider"].clone());
    }
    for insurance in claim["insurance"].as_array().into_iter().flatten() {
        wanted.push(insurance["coverage"].clone());
    }
    let mut found: Vec<Value> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    while let Some(reference) = wanted.pop() {
        let Some((resource_type, id)) = reference["reference"]
            .as_str()
            .and_then(crate::index::parse_reference)
        else {
            continue;
        };
        if !seen.insert(format!("{resource_type}/{id}")) {
            continue;
        }
        let Some((resource, _)) = read(app, request, resource_type, id).await? else {
            continue;
        };
        match resource_type {
            "Coverage" => {
                wanted.extend(resource["payor"].as_array().into_iter().flatten().cloned());
                wanted.push(resource["subscriber"].clone());
            }
            "PractitionerRole" => wanted.push(resource["practitioner"].clone()),
            _ => {}
        }
        found.push(resource);
    }
    Ok(found)
}

/// The next value of one of the tenant's counters (1 the first time).
async fn next_counter(app: &App, request: &FhirRequest, name: &str) -> Result<i64, FhirError> {
    Ok(app.store.next_counter(request.tenant, name).await?)
}

/// An envelope dated now (by the server clock); the control number defaults to seconds into the year plus a
/// day count, unique enough for one sender that does not send twice a second.
pub fn envelope_now(
    sender: &str,
    receiver: &str,
    control: Option<u32>,
    usage: char,
) -> edi::Envelope {
    // The server's clock, so that a test that moves it sees the envelope dated with it.
    let now = time::OffsetDateTime::from_unix_timestamp_nanos(
        i128::from(crate::clock::now_micros()) * 1000,
    )
    .unwrap_or_else(|_| time::OffsetDateTime::now_utc());
    let control = control.unwrap_or_else(|| {
        let seconds = now.unix_timestamp().rem_euclid(1_000_000_000);
        seconds as u32
    });
    edi::Envelope {
        sender_id: sender.to_owned(),
        receiver_id: receiver.to_owned(),
        control_number: control.max(1),
        date: format!(
            "{:04}{:02}{:02}",
            now.year(),
            u8::from(now.month()),
            now.day()
        ),
        time: format!("{:02}{:02}", now.hour(), now.minute()),
        usage: if usage == 'P' { 'P' } else { 'T' },
    }
}

#[cfg(test)]
mod tests {
    use super::may_submit;

    #[test]
    fn only_a_claim_never_sent_goes_without_asking() {
        assert!(may_submit(None, "1", false).is_ok());
        for state in [
            "submitted",
            "paid",
            "denied",
            "reversed",
            "forwarded",
            "voided",
        ] {
            assert!(may_submit(Some(state), "1", false).is_err(), "{state}");
            assert!(may_submit(Some(state), "1", true).is_ok(), "{state}");
        }
        for state in ["submitted", "paid", "denied", "forwarded"] {
            assert!(may_submit(Some(state), "7", false).is_ok(), "{state}");
            assert!(may_submit(Some(state), "8", false).is_ok(), "{state}");
        }
        for state in ["reversed", "voided"] {
            assert!(may_submit(Some(state), "7", false).is_err(), "{state}");
            assert!(may_submit(Some(state), "8", false).is_err(), "{state}");
        }
        assert!(may_submit(Some("replacement-submitted"), "7", false).is_err());
        assert!(may_submit(Some("replacement-submitted"), "8", false).is_ok());
        assert!(may_submit(Some("replacement-submitted"), "7", true).is_ok());
    }
}
