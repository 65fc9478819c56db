//! A stored record as an IHE Basic Audit Log Patterns (BALP) AuditEvent: rendered only when
//! someone searches the trail, so the trail itself stays compact.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::store::audit::Stored;

const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const EVENT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
const INTERACTION: &str = "http://hl7.org/fhir/restful-interaction";
const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
const PARTICIPATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
/// Where the server's own events (sign-ins, tokens) are named.
pub const EVENT_SYSTEM: &str = "urn:fhir-server:CodeSystem/audit-event";
/// The extension that carries a record's place in the hash chain.
pub const CHAIN_URL: &str = "urn:fhir-server:StructureDefinition/audit-chain";

/// The REST interactions BALP names by `restful-interaction`.
const REST: [&str; 14] = [
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "history-system",
    "create",
    "search-type",
    "search-system",
    "capabilities",
    "transaction",
    "batch",
];

/// The AuditEvent of `record`.
pub fn audit_event(record: &Stored) -> Value {
    let entry = &record.entry;
    let rest = REST.contains(&entry.event.as_str());
    let (event_type, subtype) = if rest {
        (
            json!({"system": EVENT_TYPE, "code": "rest", "display": "RESTful Operation"}),
            json!({"system": INTERACTION, "code": entry.event}),
        )
    } else if entry.event.starts_with('$') {
        (
            json!({"system": EVENT_TYPE, "code": "rest", "display": "RESTful Operation"}),
            json!({"system": INTERACTION, "code": "operation", "display": entry.event}),
        )
    } else {
        (
            json!({"system": DCM, "code": "110114", "display": "User Authentication"}),
            json!({"system": EVENT_SYSTEM, "code": entry.event}),
        )
    };
    let mut event = json!({
        "resourceType": "AuditEvent",
        "id": record.seq.to_string(),
        "type": event_type,
        "subtype": [subtype],
        "action": entry.action,
        "recorded": crate::resource::format_instant(entry.recorded),
        "outcome": outcome(entry.status),
        "outcomeDesc": format!("HTTP {}", entry.status),
        "agent": agents(record),
        "source": {
            "observer": {"display": "fhir-server"},
            "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server"}],
        },
        "entity": entities(record),
    });
    if entry.agent.purpose.is_some() {
        event["purposeOfEvent"] = json!([{"coding": [{"system": ACT_REASON, "code": "BTG", "display": "break the glass"}], "text": entry.agent.reason}]);
    }
    if let Some(hash) = &record.hash {
        event["extension"] = json!([{
            "url": CHAIN_URL,
            "extension": [
                {"url": "seq", "valueString": record.seq.to_string()},
                {"url": "prev", "valueString": record.prev},
                {"url": "hash", "valueString": hash},
            ],
        }]);
    }
    event
}

/// BALP's outcome: 0 success, 4 minor failure (the client's), 8 serious (the server's).
fn outcome(status: u16) -> &'static str {
    match status {
        0..400 => "0",
        400..500 => "4",
        _ => "8",
    }
}

fn agents(record: &Stored) -> Value {
    let entry = &record.entry;
    let agent = &entry.agent;
    // Reads: the client receives (DCM 110152 destination); writes and searches: the
    // client sends (110153 source).
    let client_role = if entry.action == "R" {
        "110152"
    } else {
        "110153"
    };
    let mut client = json!({
        "type": {"coding": [{"system": DCM, "code": client_role}]},
        "who": {"display": agent.client.as_deref().unwrap_or("anonymous")},
        "requestor": agent.user.is_none(),
    });
    if let Some(client_id) = &agent.client {
        client["who"]["identifier"] =
            json!({"system": "urn:fhir-server:client", "value": client_id});
    }
    if let Some(address) = &agent.address {
        client["network"] = json!({"address": address, "type": "2"});
    }
    if let Some(token) = &agent.token {
        client["policy"] = json!([format!("urn:ietf:params:oauth:jti:{token}")]);
    }
    if let Some(user_agent) = &agent.user_agent {
        client["name"] = json!(user_agent);
    }
    let mut agents = vec![client];
    if agent.user.is_some() || agent.fhir_user.is_some() {
        let mut user = json!({
            "type": {"coding": [{"system": PARTICIPATION, "code": "IRCP", "display": "information recipient"}]},
            "who": {},
            "requestor": true,
        });
        if let Some(fhir_user) = &agent.fhir_user {
            user["who"]["reference"] = json!(fhir_user);
        }
        if let Some(name) = &agent.user {
            user["who"]["identifier"] = json!({"system": "urn:fhir-server:user", "value": name});
            user["altId"] = json!(name);
        }
        if agent.purpose.is_some() {
            user["purposeOfUse"] = json!([{"coding": [{"system": ACT_REASON, "code": "BTG"}]}]);
        }
        agents.push(user);
    }
    Value::Array(agents)
}

fn entities(record: &Stored) -> Value {
    let entry = &record.entry;
    let mut entities = Vec::new();
    if let Some(entity) = &entry.entity {
        let what = if entity.contains('/') {
            json!({"reference": entity})
        } else {
            json!({"display": entity})
        };
        let mut object = json!({
            "what": what,
            "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
        });
        if let Some(query) = &entry.query {
            object["role"] = json!({"system": OBJECT_ROLE, "code": "24", "display": "Query"});
            object["query"] = json!(STANDARD.encode(query));
        }
        if let Some(via) = &entry.via {
            object["detail"] = json!([{"type": "via", "valueString": via}]);
        }
        entities.push(object);
    }
    for patient in &entry.patients {
        entities.push(json!({
            "what": {"reference": format!("Patient/{patient}")},
            "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
            "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
        }));
    }
    if let Some(request_id) = &entry.agent.request_id {
        entities.push(json!({
            "what": {"identifier": {"system": "urn:fhir-server:request-id", "value": request_id}},
            "type": {"system": ENTITY_TYPE, "code": "4", "display": "Other"},
        }));
    }
    Value::Array(entities)
}

/// One line of the break-glass report: when, who, what, why, from where.
pub fn break_glass_line(record: &Stored) -> String {
    let entry = &record.entry;
    let agent = &entry.agent;
    json!({
        "seq": record.seq,
        "recorded": crate::resource::format_instant(entry.recorded),
        "user": agent.user,
        "fhirUser": agent.fhir_user,
        "client": agent.client,
        "event": entry.event,
        "entity": entry.entity,
        "patients": entry.patients,
        "status": entry.status,
        "reason": agent.reason,
        "address": agent.address,
    })
    .to_string()
}
