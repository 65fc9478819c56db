//! Scheduling as a front desk uses it, on both databases: `Appointment/$find` computes
//! openings from a Schedule's availability (the SchedulingParameters extension) across a
//! daylight saving change, honours holidays (busy-unavailable Slots), booked appointments,
//! buffers, group capacity, free Slots an EHR publishes, several Schedules at once and the
//! patient's own appointments; and refuses bad questions naming the parameter.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure
#![allow(clippy::too_many_lines)] // a test reads as one story

mod common;

use common::{Server, entries, put_ok};
use serde_json::{Value, json};

const PARAMETERS: &str = "https://medplum.com/fhir/StructureDefinition/SchedulingParameters";

/// A Schedule of `actor`, open `days` from `from` for `hours`, 30-minute visits on a
/// 30-minute grid, in New York, with `extra` sub-extensions.
fn schedule(
    id: &str,
    actor: &str,
    days: &[&str],
    from: &str,
    hours: u32,
    extra: &[Value],
) -> Value {
    let mut subs = vec![
        json!({"url": "availability", "valueTiming": {"repeat": {"dayOfWeek": days, "timeOfDay": [from], "duration": hours, "durationUnit": "h"}}}),
        json!({"url": "duration", "valueDuration": {"value": 30, "unit": "min"}}),
        json!({"url": "alignmentInterval", "valueDuration": {"value": 30, "unit": "min"}}),
        json!({"url": "timezone", "valueCode": "America/New_York"}),
    ];
    subs.extend(extra.iter().cloned());
    json!({"resourceType": "Schedule", "id": id, "active": true, "actor": [{"reference": actor}],
        "extension": [{"url": PARAMETERS, "extension": subs}]})
}

fn appointment(id: &str, actors: &[&str], start: &str, end: &str) -> Value {
    let participant: Vec<Value> = actors
        .iter()
        .map(|a| json!({"actor": {"reference": a}, "status": "accepted"}))
        .collect();
    json!({"resourceType": "Appointment", "id": id, "status": "booked", "start": start, "end": end,
        "participant": participant})
}

fn slot(id: &str, schedule: &str, status: &str, start: &str, end: &str) -> Value {
    json!({"resourceType": "Slot", "id": id, "schedule": {"reference": schedule}, "status": status,
        "start": start, "end": end})
}

async fn find(server: &Server, query: &str) -> (u16, Value) {
    server.get_json(&format!("Appointment/$find?{query}")).await
}

/// The local start times of the openings found.
async fn starts(server: &Server, query: &str) -> Vec<String> {
    let (status, bundle) = find(server, query).await;
    assert_eq!(status, 200, "{bundle}");
    entries(&bundle)
        .iter()
        .map(|e| e["resource"]["start"].as_str().unwrap().to_owned())
        .collect()
}

const WEEKEND: &str = "start=2027-03-13T00:00:00Z&end=2027-03-15T04:00:00Z&_count=100";

async fn finds_openings(server: Server) {
    let every_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    for resource in [
        json!({"resourceType": "Practitioner", "id": "dr1"}),
        json!({"resourceType": "Practitioner", "id": "dr2"}),
        json!({"resourceType": "Location", "id": "room1"}),
        json!({"resourceType": "Patient", "id": "p1"}),
        schedule("s-dr", "Practitioner/dr1", &every_day, "09:00:00", 4, &[]),
        schedule("s-room", "Location/room1", &every_day, "10:00:00", 6, &[]),
    ] {
        put_ok(&server, &resource).await;
    }
    // New York springs forward on Sunday 14 March 2027: 9:00 stays 9:00 local.
    let found = starts(&server, &format!("schedule=Schedule/s-dr&{WEEKEND}")).await;
    assert_eq!(found.len(), 16, "{found:?}");
    assert_eq!(found[0], "2027-03-13T09:00:00-05:00");
    assert_eq!(found[7], "2027-03-13T12:30:00-05:00");
    assert_eq!(found[8], "2027-03-14T09:00:00-04:00");

    // A holiday (busy-unavailable), a booked visit, and a free Slot outside the hours.
    put_ok(
        &server,
        &slot(
            "holiday",
            "Schedule/s-dr",
            "busy-unavailable",
            "2027-03-14T00:00:00-04:00",
            "2027-03-15T00:00:00-04:00",
        ),
    )
    .await;
    put_ok(
        &server,
        &appointment(
            "a1",
            &["Practitioner/dr1"],
            "2027-03-13T09:30:00-05:00",
            "2027-03-13T10:00:00-05:00",
        ),
    )
    .await;
    put_ok(
        &server,
        &slot(
            "extra",
            "Schedule/s-dr",
            "free",
            "2027-03-13T15:00:00-05:00",
            "2027-03-13T16:00:00-05:00",
        ),
    )
    .await;
    let found = starts(&server, &format!("schedule=s-dr&{WEEKEND}")).await;
    assert_eq!(
        found,
        [
            "2027-03-13T09:00:00-05:00",
            "2027-03-13T10:00:00-05:00",
            "2027-03-13T10:30:00-05:00",
            "2027-03-13T11:00:00-05:00",
            "2027-03-13T11:30:00-05:00",
            "2027-03-13T12:00:00-05:00",
            "2027-03-13T12:30:00-05:00",
            "2027-03-13T15:00:00-05:00",
            "2027-03-13T15:30:00-05:00",
        ]
    );
    // A cancelled appointment holds nothing.
    let mut cancelled = appointment(
        "a2",
        &["Practitioner/dr1"],
        "2027-03-13T10:00:00-05:00",
        "2027-03-13T10:30:00-05:00",
    );
    cancelled["status"] = json!("cancelled");
    put_ok(&server, &cancelled).await;
    assert_eq!(
        starts(&server, &format!("schedule=s-dr&{WEEKEND}"))
            .await
            .len(),
        9
    );

    // A practitioner and a room at once (Monday: 9-13 and 10-16 give 10-13), as proposed
    // Appointments naming both; and the patient's own booking elsewhere blocks 10:00.
    let monday = "start=2027-03-15T04:00:00Z&end=2027-03-16T04:00:00Z&_count=100";
    let (status, bundle) = find(
        &server,
        &format!("practitioner=Practitioner/dr1&location=Location/room1&{monday}"),
    )
    .await;
    assert_eq!(status, 200, "{bundle}");
    let first = &entries(&bundle)[0]["resource"];
    assert_eq!(first["status"], "proposed");
    assert_eq!(first["start"], "2027-03-15T10:00:00-04:00");
    assert_eq!(first["end"], "2027-03-15T10:30:00-04:00");
    let actors: Vec<&str> = first["participant"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["actor"]["reference"].as_str().unwrap())
        .collect();
    assert_eq!(actors, ["Practitioner/dr1", "Location/room1"]);
    assert_eq!(entries(&bundle).len(), 6);
    put_ok(
        &server,
        &appointment(
            "elsewhere",
            &["Practitioner/dr2", "Patient/p1"],
            "2027-03-15T10:00:00-04:00",
            "2027-03-15T10:30:00-04:00",
        ),
    )
    .await;
    let found = starts(
        &server,
        &format!("schedule=s-dr&schedule=s-room&patient=Patient/p1&{monday}"),
    )
    .await;
    assert_eq!(found.len(), 5);
    assert_eq!(found[0], "2027-03-15T10:30:00-04:00");

    // The same question as a POSTed Parameters.
    let parameters = json!({"resourceType": "Parameters", "parameter": [
        {"name": "start", "valueDateTime": "2027-03-15T04:00:00Z"},
        {"name": "end", "valueDateTime": "2027-03-16T04:00:00Z"},
        {"name": "schedule", "valueString": "Schedule/s-dr"},
        {"name": "schedule", "valueString": "Schedule/s-room"},
        {"name": "patient", "valueReference": {"reference": "Patient/p1"}},
        {"name": "_count", "valueInteger": 2}]});
    let (status, bundle) = server.post_json("Appointment/$find", &parameters).await;
    assert_eq!(status, 200, "{bundle}");
    assert_eq!(entries(&bundle).len(), 2);
    assert_eq!(
        entries(&bundle)[0]["resource"]["start"],
        "2027-03-15T10:30:00-04:00"
    );
}
both!(finds_openings);

/// Buffers keep preparation and clean-up free; a group visit takes as many patients as
/// its capacity.
async fn buffers_and_capacity(server: Server) {
    let weekdays = ["mon", "tue", "wed", "thu", "fri"];
    let buffered = schedule(
        "s-buf",
        "Practitioner/b1",
        &weekdays,
        "09:00:00",
        3,
        &[
            json!({"url": "bufferBefore", "valueDuration": {"value": 15, "unit": "min"}}),
            json!({"url": "bufferAfter", "valueDuration": {"value": 15, "unit": "min"}}),
        ],
    );
    let group = schedule(
        "s-group",
        "Location/gym",
        &weekdays,
        "09:00:00",
        1,
        &[json!({"url": "slotCapacity", "valueInteger": 2})],
    );
    for resource in [
        json!({"resourceType": "Practitioner", "id": "b1"}),
        json!({"resourceType": "Location", "id": "gym"}),
        buffered,
        group,
    ] {
        put_ok(&server, &resource).await;
    }
    let monday = "start=2027-03-15T04:00:00Z&end=2027-03-16T04:00:00Z&_count=100";
    // Booked 10:00-10:30: with 15 minutes before and after each visit, the next may start
    // at 11:00 (10:30 + 15 of clean-up + 15 of preparation), the one before end at 9:30.
    put_ok(
        &server,
        &appointment(
            "b-a",
            &["Practitioner/b1"],
            "2027-03-15T10:00:00-04:00",
            "2027-03-15T10:30:00-04:00",
        ),
    )
    .await;
    let found = starts(&server, &format!("schedule=s-buf&{monday}")).await;
    assert_eq!(
        found,
        [
            "2027-03-15T09:00:00-04:00",
            "2027-03-15T11:00:00-04:00",
            "2027-03-15T11:30:00-04:00"
        ],
        "the window closes at 12:00; 11:30 is the last start"
    );
    put_ok(
        &server,
        &appointment(
            "g-1",
            &["Location/gym"],
            "2027-03-15T09:00:00-04:00",
            "2027-03-15T09:30:00-04:00",
        ),
    )
    .await;
    let found = starts(&server, &format!("schedule=s-group&{monday}")).await;
    assert_eq!(
        found,
        ["2027-03-15T09:00:00-04:00", "2027-03-15T09:30:00-04:00"],
        "one of two places taken"
    );
    put_ok(
        &server,
        &appointment(
            "g-2",
            &["Location/gym"],
            "2027-03-15T09:00:00-04:00",
            "2027-03-15T09:30:00-04:00",
        ),
    )
    .await;
    let found = starts(&server, &format!("schedule=s-group&{monday}")).await;
    assert_eq!(found, ["2027-03-15T09:30:00-04:00"], "both places taken");
}
both!(buffers_and_capacity);

/// Bad questions: 400 or 422 naming the parameter or the element; the operation is
/// described like every other.
async fn find_refuses_bad_questions(server: Server) {
    put_ok(
        &server,
        &schedule("s1", "Practitioner/x", &["mon"], "09:00:00", 1, &[]),
    )
    .await;
    put_ok(&server, &json!({"resourceType": "Schedule", "id": "bare", "actor": [{"reference": "Practitioner/x"}]})).await;
    // Bad scheduling parameters are refused when written, naming the element: by PUT, by
    // PATCH, in a transaction, and on a HealthcareService.
    let mut mars = schedule("mars", "Practitioner/x", &["mon"], "09:00:00", 1, &[]);
    mars["extension"][0]["extension"][3]["valueCode"] = json!("Mars/Olympus_Mons");
    let (status, outcome) = send(&server, reqwest::Method::PUT, "Schedule/mars", &mars).await;
    assert_eq!(
        (status, outcome["issue"][0]["expression"][0].as_str()),
        (422, Some("Schedule.extension[0].extension[3].valueCode")),
        "{outcome}"
    );
    let patch = json!([{"op": "replace", "path": "/extension/0/extension/1/valueDuration/unit", "value": "fortnight"}]);
    let (status, outcome) = server
        .send_json(
            reqwest::Method::PATCH,
            "Schedule/s1",
            "application/json-patch+json",
            patch.to_string(),
        )
        .await;
    assert_eq!(
        (status, outcome["issue"][0]["expression"][0].as_str()),
        (
            422,
            Some("Schedule.extension[0].extension[1].valueDuration")
        ),
        "{outcome}"
    );
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": mars, "request": {"method": "PUT", "url": "Schedule/mars"}}]});
    assert_eq!(server.post_json("", &bundle).await.0, 422);
    let hours_on_service = json!({"resourceType": "HealthcareService", "id": "hs", "extension": [{"url": PARAMETERS, "extension": [
        {"url": "availability", "valueTiming": {"repeat": {"duration": 1}}}]}]});
    assert_eq!(
        send(
            &server,
            reqwest::Method::PUT,
            "HealthcareService/hs",
            &hours_on_service
        )
        .await
        .0,
        422
    );
    let range = "start=2027-03-15T00:00:00Z&end=2027-03-16T00:00:00Z";
    for (query, status, at) in [
        (
            "schedule=s1&end=2027-03-16T00:00:00Z".to_owned(),
            400,
            "Parameters.parameter.where(name = 'start')",
        ),
        (
            "schedule=s1&start=2027-03-16T00:00:00Z&end=2027-03-15T00:00:00Z".to_owned(),
            400,
            "Parameters.parameter.where(name = 'end')",
        ),
        (
            "schedule=s1&start=2027-01-01T00:00:00Z&end=2027-06-01T00:00:00Z".to_owned(),
            400,
            "Parameters.parameter.where(name = 'end')",
        ),
        (
            "schedule=s1&start=tomorrow&end=2027-03-16T00:00:00Z".to_owned(),
            400,
            "Parameters.parameter.where(name = 'start')",
        ),
        (
            format!("schedule=nope&{range}"),
            400,
            "Parameters.parameter.where(name = 'schedule')",
        ),
        (
            format!("schedule=Schedule/../x&{range}"),
            400,
            "Parameters.parameter.where(name = 'schedule')",
        ),
        (
            range.to_owned(),
            400,
            "Parameters.parameter.where(name = 'schedule')",
        ),
        (
            format!("schedule=s1&_count=0&{range}"),
            400,
            "Parameters.parameter.where(name = '_count')",
        ),
        (
            format!("practitioner=Practitioner/nobody&{range}"),
            400,
            "Parameters.parameter.where(name = 'practitioner')",
        ),
        (format!("schedule=bare&{range}"), 422, "Schedule.extension"),
    ] {
        let (got, outcome) = find(&server, &query).await;
        assert_eq!(got, status, "{query}: {outcome}");
        assert_eq!(
            outcome["issue"][0]["expression"][0], at,
            "{query}: {outcome}"
        );
    }
    let (status, definition) = server
        .get_json("OperationDefinition/Appointment-find")
        .await;
    assert_eq!(status, 200);
    assert_eq!(definition["code"], "find");
    let (_, statement) = server.get_json("metadata").await;
    let appointment = statement["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Appointment")
        .unwrap();
    assert!(
        appointment["operation"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["name"] == "find")
    );
}
both!(find_refuses_bad_questions);

/// Starts a server whose clock the test moves, on `backend`.
async fn clocked(backend: common::Backend) -> Option<Server> {
    let server = Server::start_with(
        backend,
        &["--test-clock", "--admin-token", "admin-secret"],
        &[],
    )
    .await;
    if server.is_none() {
        eprintln!("skipped: FHIR_TEST_POSTGRES_URL is not set");
    }
    server
}

async fn send(server: &Server, method: reqwest::Method, path: &str, body: &Value) -> (u16, Value) {
    server
        .send_json(method, path, common::JSON, body.to_string())
        .await
}

/// Nobody is booked twice, whatever the write path: a plain create, an update, a patch, a
/// transaction; buffers count; a cancelled booking frees its time; a lapsed hold holds
/// nothing; past appointments (an EHR's history) are not checked.
async fn no_double_booking(backend: common::Backend) {
    let Some(server) = clocked(backend).await else {
        return;
    };
    let buffered = schedule(
        "s-dr1",
        "Practitioner/dr1",
        &["mon"],
        "09:00:00",
        8,
        &[json!({"url": "bufferAfter", "valueDuration": {"value": 10, "unit": "min"}})],
    );
    put_ok(&server, &buffered).await;
    let post = |body: Value| {
        let server = &server;
        async move { send(server, reqwest::Method::POST, "Appointment", &body).await }
    };
    let mut first = appointment(
        "a1",
        &["Practitioner/dr1", "Patient/p1"],
        "2027-03-15T10:00:00-04:00",
        "2027-03-15T10:30:00-04:00",
    );
    put_ok(&server, &first).await;
    let (status, outcome) = post(appointment(
        "x",
        &["Practitioner/dr1"],
        "2027-03-15T10:15:00-04:00",
        "2027-03-15T10:45:00-04:00",
    ))
    .await;
    assert_eq!(status, 409, "{outcome}");
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("Practitioner/dr1"),
        "{outcome}"
    );
    let (status, _) = post(appointment(
        "x",
        &["Practitioner/dr1"],
        "2027-03-15T10:35:00-04:00",
        "2027-03-15T11:00:00-04:00",
    ))
    .await;
    assert_eq!(status, 409, "inside the 10 minutes of clean-up");
    let (status, later) = post(appointment(
        "x",
        &["Practitioner/dr1"],
        "2027-03-15T10:40:00-04:00",
        "2027-03-15T11:00:00-04:00",
    ))
    .await;
    assert_eq!(status, 201, "{later}");
    let later_id = later["id"].as_str().unwrap().to_owned();
    let (status, outcome) = post(appointment(
        "x",
        &["Practitioner/dr2", "Patient/p1"],
        "2027-03-15T10:00:00-04:00",
        "2027-03-15T10:30:00-04:00",
    ))
    .await;
    assert_eq!(status, 409, "the patient is booked: {outcome}");
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("Patient/p1")
    );

    // An update and a patch that would move a booking onto another.
    let mut moved = later.clone();
    moved["start"] = json!("2027-03-15T10:20:00-04:00");
    let (status, _) = send(
        &server,
        reqwest::Method::PUT,
        &format!("Appointment/{later_id}"),
        &moved,
    )
    .await;
    assert_eq!(status, 409);
    let patch = json!([{"op": "replace", "path": "/start", "value": "2027-03-15T10:05:00-04:00"}]);
    let (status, _) = server
        .send_json(
            reqwest::Method::PATCH,
            &format!("Appointment/{later_id}"),
            "application/json-patch+json",
            patch.to_string(),
        )
        .await;
    assert_eq!(status, 409);

    // A transaction with a clash rolls back whole.
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": appointment("t1", &["Practitioner/dr3"], "2027-03-15T09:00:00-04:00", "2027-03-15T09:30:00-04:00"),
         "request": {"method": "PUT", "url": "Appointment/t1"}},
        {"resource": appointment("t2", &["Practitioner/dr3"], "2027-03-15T09:15:00-04:00", "2027-03-15T09:45:00-04:00"),
         "request": {"method": "PUT", "url": "Appointment/t2"}}]});
    let (status, outcome) = server.post_json("", &bundle).await;
    assert_eq!(status, 409, "{outcome}");
    assert_eq!(server.get_json("Appointment/t1").await.0, 404);

    // Cancelled: its time is free again; deleted too.
    first["status"] = json!("cancelled");
    put_ok(&server, &first).await;
    let (status, _) = post(appointment(
        "x",
        &["Practitioner/dr1"],
        "2027-03-15T10:00:00-04:00",
        "2027-03-15T10:30:00-04:00",
    ))
    .await;
    assert_eq!(status, 201);

    // A hold that lapses in 5 minutes: the time is taken until then.
    let now = unix_now();
    let mut hold = appointment(
        "h1",
        &["Practitioner/dr4"],
        "2027-03-15T09:00:00-04:00",
        "2027-03-15T09:30:00-04:00",
    );
    hold["status"] = json!("pending");
    hold["extension"] = json!([{"url": "urn:fhir-server:StructureDefinition/hold-expires", "valueInstant": now_plus(now, 300)}]);
    put_ok(&server, &hold).await;
    let competing = appointment(
        "x",
        &["Practitioner/dr4"],
        "2027-03-15T09:00:00-04:00",
        "2027-03-15T09:30:00-04:00",
    );
    assert_eq!(post(competing.clone()).await.0, 409);
    server.advance_clock(301).await;
    assert_eq!(post(competing).await.0, 201, "a lapsed hold holds nothing");

    // History from an EHR: past bookings that overlap are stored as they are.
    for id in ["old1", "old2"] {
        put_ok(
            &server,
            &appointment(
                id,
                &["Practitioner/dr1"],
                "2020-01-06T10:00:00-05:00",
                "2020-01-06T10:30:00-05:00",
            ),
        )
        .await;
    }
}
both_backends!(no_double_booking);

/// Fifty clients book the same time at once (on PostgreSQL half of them through a
/// second server process on the same database): exactly one wins, the others get 409.
async fn a_rush_books_once(backend: common::Backend) {
    let Some(server) = Server::start(backend).await else {
        eprintln!("skipped: FHIR_TEST_POSTGRES_URL is not set");
        return;
    };
    let other = second_process(&server, backend).await;
    let servers = processes(&server, other.as_ref());
    let rush = (0..50).map(|n| {
        let server = servers[n % servers.len()];
        let body = appointment(
            "x",
            &["Practitioner/busy", &format!("Patient/p{n}")],
            "2027-03-15T09:00:00-04:00",
            "2027-03-15T09:30:00-04:00",
        );
        async move {
            send(server, reqwest::Method::POST, "Appointment", &body)
                .await
                .0
        }
    });
    exactly_one_won(&futures::future::join_all(rush).await);
}
both_backends!(a_rush_books_once);

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `now + seconds` as an instant.
fn now_plus(now: u64, seconds: u64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp((now + seconds) as i64).unwrap();
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn parameters_with(opening: &Value) -> Value {
    json!({"resourceType": "Parameters", "parameter": [{"name": "appointment", "resource": opening}]})
}

/// The first opening of Monday 15 March 2027 on `schedule`, for patient p1.
async fn first_opening(server: &Server, schedule: &str) -> Option<Value> {
    let query = format!(
        "schedule={schedule}&patient=Patient/p1&start=2027-03-15T04:00:00Z&end=2027-03-16T04:00:00Z&_count=1"
    );
    let (status, bundle) = find(server, &query).await;
    assert_eq!(status, 200, "{bundle}");
    entries(&bundle).first().map(|e| e["resource"].clone())
}

/// Hold, book, cancel: each step changes what `$find` offers; a hold lapses by itself; a
/// time outside the Schedule's hours is not an opening.
async fn hold_book_cancel(backend: common::Backend) {
    let Some(server) = clocked(backend).await else {
        return;
    };
    put_ok(
        &server,
        &schedule("s-hb", "Practitioner/hb", &["mon"], "09:00:00", 1, &[]),
    )
    .await;
    let opening = first_opening(&server, "s-hb").await.unwrap();
    assert_eq!(opening["start"], "2027-03-15T09:00:00-04:00");
    let (status, held) = server
        .post_json("Appointment/$hold", &parameters_with(&opening))
        .await;
    assert_eq!(status, 201, "{held}");
    assert_eq!(held["status"], "pending");
    assert_eq!(
        held["extension"][1]["url"],
        "urn:fhir-server:StructureDefinition/hold-expires"
    );
    let held_id = held["id"].as_str().unwrap().to_owned();
    let next = first_opening(&server, "s-hb").await.unwrap();
    assert_eq!(
        next["start"], "2027-03-15T09:30:00-04:00",
        "the held time is not offered"
    );
    let (status, _) = server
        .post_json("Appointment/$hold", &parameters_with(&opening))
        .await;
    assert_eq!(status, 409, "held already");

    // Book the hold, then cancel it: its time comes back.
    let by_id = json!({"resourceType": "Parameters", "parameter": [{"name": "appointment-id", "valueString": held_id}]});
    let (status, booked) = server.post_json("Appointment/$book", &by_id).await;
    assert_eq!(status, 200, "{booked}");
    assert_eq!(booked["status"], "booked");
    assert!(
        booked
            .get("extension")
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["url"] != "urn:fhir-server:StructureDefinition/hold-expires")
    );
    let (status, _) = server
        .post_json(
            &format!("Appointment/{held_id}/$book"),
            &json!({"resourceType": "Parameters"}),
        )
        .await;
    assert_eq!(status, 409, "booked already");
    let cancel = json!({"resourceType": "Parameters", "parameter": [{"name": "reason", "valueString": "patient asked"}]});
    let (status, cancelled) = server
        .post_json(&format!("Appointment/{held_id}/$cancel"), &cancel)
        .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(
        (
            cancelled["status"].as_str(),
            cancelled["cancelationReason"]["text"].as_str()
        ),
        (Some("cancelled"), Some("patient asked"))
    );
    assert_eq!(
        first_opening(&server, "s-hb").await.unwrap()["start"],
        "2027-03-15T09:00:00-04:00"
    );
    let (status, _) = server
        .post_json(&format!("Appointment/{held_id}/$cancel"), &cancel)
        .await;
    assert_eq!(status, 409, "cancelled already");

    // A hold lapses: the time is offered again and someone else books it; the lapsed hold
    // can then not be booked.
    let (status, held) = server
        .post_json("Appointment/$hold", &parameters_with(&opening))
        .await;
    assert_eq!(status, 201, "{held}");
    server.advance_clock(301).await;
    assert_eq!(
        first_opening(&server, "s-hb").await.unwrap()["start"],
        "2027-03-15T09:00:00-04:00"
    );
    let (status, direct) = server
        .post_json("Appointment/$book", &parameters_with(&opening))
        .await;
    assert_eq!(status, 201, "{direct}");
    assert_eq!(direct["status"], "booked");
    let lapsed = json!({"resourceType": "Parameters", "parameter": [{"name": "appointment-id", "valueString": held["id"]}]});
    let (status, outcome) = server.post_json("Appointment/$book", &lapsed).await;
    assert_eq!(status, 409, "{outcome}");

    // Outside the hours; nothing to book.
    let mut late = opening.clone();
    late["start"] = json!("2027-03-15T15:00:00-04:00");
    late["end"] = json!("2027-03-15T15:30:00-04:00");
    let (status, outcome) = server
        .post_json("Appointment/$book", &parameters_with(&late))
        .await;
    assert_eq!(status, 409, "{outcome}");
    let (status, outcome) = server
        .post_json("Appointment/$book", &json!({"resourceType": "Parameters"}))
        .await;
    assert_eq!(status, 400, "{outcome}");
    let (status, outcome) = server
        .post_json("Appointment/$hold", &json!({"resourceType": "Parameters"}))
        .await;
    assert_eq!(status, 400, "{outcome}");
}
both_backends!(hold_book_cancel);

/// Fifty `$book` calls for the same opening at once (on PostgreSQL spread over two server
/// processes on one database): exactly one books it.
async fn fifty_book_calls_book_once(backend: common::Backend) {
    let Some(server) = Server::start(backend).await else {
        eprintln!("skipped: FHIR_TEST_POSTGRES_URL is not set");
        return;
    };
    put_ok(
        &server,
        &schedule("s-rush", "Practitioner/rush", &["mon"], "09:00:00", 1, &[]),
    )
    .await;
    let opening = first_opening(&server, "s-rush").await.unwrap();
    let other = second_process(&server, backend).await;
    let servers = processes(&server, other.as_ref());
    let calls = (0..50).map(|n| {
        let server = servers[n % servers.len()];
        let mut mine = opening.clone();
        // Each caller a different patient: only the practitioner's time is contested.
        mine["participant"][1]["actor"]["reference"] = json!(format!("Patient/r{n}"));
        async move {
            server
                .post_json("Appointment/$book", &parameters_with(&mine))
                .await
                .0
        }
    });
    exactly_one_won(&futures::future::join_all(calls).await);
    let (_, booked) = server
        .get_json("Appointment?actor=Practitioner/rush&status=booked")
        .await;
    assert_eq!(entries(&booked).len(), 1);
}
both_backends!(fifty_book_calls_book_once);

/// The life cycle holds on the operations and on every plain write: arrive, check in,
/// complete; a no-show; nothing moves out of a final state; history is stored as it is.
async fn life_cycle(server: Server) {
    let visit =
        |id: &str, start: &str, end: &str| appointment(id, &["Practitioner/lc"], start, end);
    put_ok(
        &server,
        &visit(
            "lc1",
            "2027-03-15T09:00:00-04:00",
            "2027-03-15T09:30:00-04:00",
        ),
    )
    .await;
    let empty = json!({"resourceType": "Parameters"});
    for (operation, status) in [
        ("arrive", "arrived"),
        ("check-in", "checked-in"),
        ("complete", "fulfilled"),
    ] {
        let (got, answer) = server
            .post_json(&format!("Appointment/lc1/${operation}"), &empty)
            .await;
        assert_eq!(
            (got, answer["status"].as_str()),
            (200, Some(status)),
            "{answer}"
        );
    }
    let (got, outcome) = server.post_json("Appointment/lc1/$arrive", &empty).await;
    assert_eq!(got, 409, "{outcome}");
    assert_eq!(outcome["issue"][0]["expression"][0], "Appointment.status");
    // Plain writes are held to the same moves: PUT, PATCH, a transaction.
    let (_, current) = server.get_json("Appointment/lc1").await;
    let mut again = current.clone();
    again["status"] = json!("booked");
    refused_on_every_write_path(&server, &again, "cancelled").await;
    let mut wrong = current.clone();
    wrong["status"] = json!("entered-in-error");
    assert_eq!(
        send(&server, reqwest::Method::PUT, "Appointment/lc1", &wrong)
            .await
            .0,
        200
    );

    // A no-show, and a cancelled appointment that cannot arrive.
    put_ok(
        &server,
        &visit(
            "lc2",
            "2027-03-15T10:00:00-04:00",
            "2027-03-15T10:30:00-04:00",
        ),
    )
    .await;
    let (got, answer) = server.post_json("Appointment/lc2/$no-show", &empty).await;
    assert_eq!((got, answer["status"].as_str()), (200, Some("noshow")));
    let mut cancelled = visit(
        "lc3",
        "2027-03-15T11:00:00-04:00",
        "2027-03-15T11:30:00-04:00",
    );
    cancelled["status"] = json!("cancelled");
    put_ok(&server, &cancelled).await;
    assert_eq!(
        server.post_json("Appointment/lc3/$arrive", &empty).await.0,
        409
    );
    // History from an EHR is stored in whatever state it ended.
    let mut history = visit(
        "lc4",
        "2020-01-06T09:00:00-05:00",
        "2020-01-06T09:30:00-05:00",
    );
    history["status"] = json!("fulfilled");
    put_ok(&server, &history).await;
}
both!(life_cycle);

/// `$reschedule` moves a booking at once: the old one cancelled and linked from the new;
/// onto time the old one held too; and when the new time is taken, nothing changes.
async fn reschedule_moves_atomically(server: Server) {
    put_ok(
        &server,
        &schedule("s-rs", "Practitioner/rs", &["mon"], "09:00:00", 2, &[]),
    )
    .await;
    let opening = first_opening(&server, "s-rs").await.unwrap();
    let (status, first) = server
        .post_json("Appointment/$book", &parameters_with(&opening))
        .await;
    assert_eq!(status, 201, "{first}");
    let first_id = first["id"].as_str().unwrap().to_owned();
    let later = first_opening(&server, "s-rs").await.unwrap();
    assert_eq!(later["start"], "2027-03-15T09:30:00-04:00");
    let (status, moved) = server
        .post_json(
            &format!("Appointment/{first_id}/$reschedule"),
            &parameters_with(&later),
        )
        .await;
    assert_eq!(status, 201, "{moved}");
    assert_eq!(
        (moved["status"].as_str(), moved["start"].as_str()),
        (Some("booked"), Some("2027-03-15T09:30:00-04:00"))
    );
    let previous = moved["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["url"] == "http://hl7.org/fhir/5.0/StructureDefinition/extension-Appointment.previousAppointment")
        .unwrap();
    assert_eq!(
        previous["valueReference"]["reference"],
        format!("Appointment/{first_id}")
    );
    let (_, old) = server.get_json(&format!("Appointment/{first_id}")).await;
    assert_eq!(
        (
            old["status"].as_str(),
            old["cancelationReason"]["text"].as_str()
        ),
        (Some("cancelled"), Some("rescheduled"))
    );
    assert_eq!(
        first_opening(&server, "s-rs").await.unwrap()["start"],
        "2027-03-15T09:00:00-04:00"
    );

    // Fifteen minutes later: onto time it holds itself.
    let moved_id = moved["id"].as_str().unwrap().to_owned();
    let mut nudged = later.clone();
    nudged["start"] = json!("2027-03-15T09:45:00-04:00");
    nudged["end"] = json!("2027-03-15T10:15:00-04:00");
    let (status, nudged_booking) = server
        .post_json(
            &format!("Appointment/{moved_id}/$reschedule"),
            &parameters_with(&nudged),
        )
        .await;
    assert_eq!(status, 201, "{nudged_booking}");

    // Onto someone else's time: 409, and the booking stays where it was.
    let other = appointment(
        "other",
        &["Practitioner/rs"],
        "2027-03-15T10:30:00-04:00",
        "2027-03-15T11:00:00-04:00",
    );
    put_ok(&server, &other).await;
    let nudged_id = nudged_booking["id"].as_str().unwrap().to_owned();
    let mut taken = later.clone();
    taken["start"] = json!("2027-03-15T10:30:00-04:00");
    taken["end"] = json!("2027-03-15T11:00:00-04:00");
    let (status, outcome) = server
        .post_json(
            &format!("Appointment/{nudged_id}/$reschedule"),
            &parameters_with(&taken),
        )
        .await;
    assert_eq!(status, 409, "{outcome}");
    let (_, still) = server.get_json(&format!("Appointment/{nudged_id}")).await;
    assert_eq!(still["status"], "booked");
}
both!(reschedule_moves_atomically);

/// A weekly series books each occurrence at 9:00 local across the spring change, reports
/// the one that clashes, and cancels the rest of the series from any occurrence.
async fn weekly_series(server: Server) {
    put_ok(
        &server,
        &schedule("s-ser", "Practitioner/ser", &["mon"], "09:00:00", 2, &[]),
    )
    .await;
    put_ok(
        &server,
        &appointment(
            "taken",
            &["Practitioner/ser"],
            "2027-03-15T09:00:00-04:00",
            "2027-03-15T09:30:00-04:00",
        ),
    )
    .await;
    let (status, bundle) = find(&server, "schedule=s-ser&patient=Patient/p1&start=2027-03-01T05:00:00Z&end=2027-03-02T05:00:00Z&_count=1").await;
    assert_eq!(status, 200, "{bundle}");
    let first = entries(&bundle)[0]["resource"].clone();
    assert_eq!(first["start"], "2027-03-01T09:00:00-05:00");
    let series = json!({"resourceType": "Parameters", "parameter": [
        {"name": "appointment", "resource": first},
        {"name": "every-days", "valueInteger": 7},
        {"name": "count", "valueInteger": 4}]});
    let (status, answer) = server.post_json("Appointment/$book-series", &series).await;
    assert_eq!(status, 200, "{answer}");
    let occurrences: Vec<(String, String, String)> = answer["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let part = |name: &str| {
                o["part"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|p| p["name"] == name)
                    .cloned()
                    .unwrap_or_default()
            };
            let reference = part("appointment")["valueReference"]["reference"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            (
                part("start")["valueDateTime"].as_str().unwrap().to_owned(),
                part("outcome")["valueCode"].as_str().unwrap().to_owned(),
                reference,
            )
        })
        .collect();
    let starts: Vec<&str> = occurrences.iter().map(|o| o.0.as_str()).collect();
    assert_eq!(
        starts,
        [
            "2027-03-01T09:00:00-05:00",
            "2027-03-08T09:00:00-05:00",
            "2027-03-15T09:00:00-04:00",
            "2027-03-22T09:00:00-04:00"
        ]
    );
    let outcomes: Vec<&str> = occurrences.iter().map(|o| o.1.as_str()).collect();
    assert_eq!(outcomes, ["booked", "booked", "refused", "booked"]);
    let (_, second) = server.get_json(&occurrences[1].2).await;
    let origin = second["extension"].as_array().unwrap().iter()
        .find(|e| e["url"] == "http://hl7.org/fhir/5.0/StructureDefinition/extension-Appointment.originatingAppointment")
        .unwrap();
    assert_eq!(
        origin["valueReference"]["reference"],
        occurrences[0].2.as_str()
    );

    // Cancel from the second occurrence on: the second and the fourth go, the first stays.
    let cancel = json!({"resourceType": "Parameters", "parameter": [
        {"name": "reason", "valueString": "moved away"}, {"name": "rest-of-series", "valueBoolean": true}]});
    let (status, answer) = server
        .post_json(&format!("{}/$cancel", occurrences[1].2), &cancel)
        .await;
    assert_eq!(status, 200, "{answer}");
    let status_of = |reference: String| {
        let server = &server;
        async move {
            server.get_json(&reference).await.1["status"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    assert_eq!(status_of(occurrences[0].2.clone()).await, "booked");
    assert_eq!(status_of(occurrences[1].2.clone()).await, "cancelled");
    assert_eq!(status_of(occurrences[3].2.clone()).await, "cancelled");

    // A series needs an end, and a sensible step.
    for (name, value) in [("count", json!(0)), ("every-days", json!(0))] {
        let mut bad = series.clone();
        bad["parameter"]
            .as_array_mut()
            .unwrap()
            .retain(|p| p["name"] != name);
        bad["parameter"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": name, "valueInteger": value}));
        let (status, outcome) = server.post_json("Appointment/$book-series", &bad).await;
        assert_eq!(status, 400, "{name}: {outcome}");
    }
    let mut endless = series.clone();
    endless["parameter"]
        .as_array_mut()
        .unwrap()
        .retain(|p| p["name"] != "count");
    assert_eq!(
        server
            .post_json("Appointment/$book-series", &endless)
            .await
            .0,
        400
    );
}
both!(weekly_series);

/// `fhir-server demo` loads a practice that `$find` works on at once (twice: the same
/// practice), with appointments in every state and a holiday that closes a day.
async fn demo_practice(server: Server) {
    for _ in 0..2 {
        let output = server.run_cli(&["demo"]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let (status, bundle) = server.get_json("Appointment?_count=100").await;
    assert_eq!(status, 200);
    let mut states: Vec<String> = entries(&bundle)
        .iter()
        .map(|e| e["resource"]["status"].as_str().unwrap().to_owned())
        .collect();
    states.sort();
    states.dedup();
    assert_eq!(
        states,
        [
            "arrived",
            "booked",
            "cancelled",
            "checked-in",
            "entered-in-error",
            "fulfilled",
            "noshow",
            "pending",
            "proposed",
            "waitlist"
        ]
    );
    // The booked visit is on next Monday; its week has openings, and none on Dr Lopez's
    // holiday (Wednesday).
    let (_, booked) = server.get_json("Appointment/demo-booked").await;
    let monday = booked["start"].as_str().unwrap()[..10].to_owned();
    let week = format!("start={monday}&end={}", add_days(&monday, 5));
    let found = starts(
        &server,
        &format!("practitioner=Practitioner/ana-lopez&location=Location/room-1&{week}&_count=200"),
    )
    .await;
    assert!(found.len() > 50, "{found:?}");
    let wednesday = add_days(&monday, 2);
    assert!(
        !found.iter().any(|s| s.starts_with(&wednesday)),
        "{found:?}"
    );
    assert!(
        !found
            .iter()
            .any(|s| s.starts_with(&format!("{monday}T09:00"))),
        "the booked visit's time"
    );
}
both!(demo_practice);

/// `date` (YYYY-MM-DD) plus `days`.
fn add_days(date: &str, days: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let day = time::Date::parse(date, &format).unwrap() + time::Duration::days(days);
    day.format(&format).unwrap()
}

/// Every change of an appointment has a Provenance written with it: the version it made,
/// who (the token's user or client; `anonymous` without authorization) and the activity.
async fn provenance_of_changes(server: Server) {
    let (status, created) = server
        .post_json(
            "Appointment",
            &appointment(
                "x",
                &["Practitioner/pv"],
                "2027-03-15T09:00:00-04:00",
                "2027-03-15T09:30:00-04:00",
            ),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    let cancel = json!({"resourceType": "Parameters", "parameter": [{"name": "reason", "valueString": "ill"}]});
    assert_eq!(
        server
            .post_json(&format!("Appointment/{id}/$cancel"), &cancel)
            .await
            .0,
        200
    );
    let (status, bundle) = server
        .get_json(&format!(
            "Provenance?target=Appointment/{id}&_sort=recorded"
        ))
        .await;
    assert_eq!(status, 200, "{bundle}");
    let seen: Vec<(String, String, String, String)> = entries(&bundle)
        .iter()
        .map(|e| {
            let p = &e["resource"];
            (
                p["target"][0]["reference"].as_str().unwrap().to_owned(),
                p["activity"]["coding"][0]["code"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                p["activity"]["text"].as_str().unwrap().to_owned(),
                p["agent"][0]["who"]["display"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = |version: u32, code: &str, text: &str| {
        (
            format!("Appointment/{id}/_history/{version}"),
            code.to_owned(),
            text.to_owned(),
            "anonymous".to_owned(),
        )
    };
    assert_eq!(
        seen,
        [
            expected(1, "CREATE", "create"),
            expected(2, "UPDATE", "$cancel")
        ]
    );
    // Other types get none.
    let (_, patient) = server
        .post_json("Patient", &json!({"resourceType": "Patient"}))
        .await;
    let (_, none) = server
        .get_json(&format!(
            "Provenance?target=Patient/{}",
            patient["id"].as_str().unwrap()
        ))
        .await;
    assert!(entries(&none).is_empty());
}
both!(provenance_of_changes);

/// Waits (up to 15 s) for the pending offer made to the waitlist request `request`.
async fn offer_for(server: &Server, request: &str) -> Option<Value> {
    for _ in 0..75 {
        let (_, bundle) = server
            .get_json("Appointment?status=pending&_count=100")
            .await;
        let found = entries(&bundle)
            .into_iter()
            .map(|e| e["resource"].clone())
            .find(|a| {
                a["extension"].as_array().into_iter().flatten().any(|e| {
                    e["url"] == "urn:fhir-server:StructureDefinition/waitlist-entry"
                        && e["valueReference"]["reference"] == format!("Appointment/{request}")
                })
            });
        if found.is_some() {
            return found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    None
}

/// Freed time goes to the waitlist: the earliest request that fits is offered it (held,
/// with a CommunicationRequest for the messaging system); an offer not taken in time goes
/// to the next; a booked offer closes its request.
async fn waitlist_offers(backend: common::Backend) {
    let Some(server) = clocked(backend).await else {
        return;
    };
    put_ok(
        &server,
        &schedule("s-wl", "Practitioner/wl", &["mon"], "09:00:00", 2, &[]),
    )
    .await;
    put_ok(
        &server,
        &appointment(
            "wl-booked",
            &["Practitioner/wl", "Patient/pa"],
            "2027-03-15T09:00:00-04:00",
            "2027-03-15T09:30:00-04:00",
        ),
    )
    .await;
    let request = |id: &str, patient: &str, created: &str, with_practitioner: bool| {
        let mut participant =
            vec![json!({"actor": {"reference": patient}, "status": "needs-action"})];
        if with_practitioner {
            participant
                .push(json!({"actor": {"reference": "Practitioner/wl"}, "status": "needs-action"}));
        }
        json!({"resourceType": "Appointment", "id": id, "status": "waitlist", "created": created,
            "requestedPeriod": [{"start": "2027-03-15T00:00:00-04:00", "end": "2027-03-20T00:00:00-04:00"}],
            "participant": participant})
    };
    put_ok(
        &server,
        &request("wl-first", "Patient/pw1", "2026-11-01T00:00:00Z", true),
    )
    .await;
    put_ok(
        &server,
        &request("wl-second", "Patient/pw2", "2026-11-02T00:00:00Z", false),
    )
    .await;
    // Asked for another practitioner: never offered this time.
    let mut elsewhere = request("wl-other", "Patient/pw3", "2026-10-01T00:00:00Z", false);
    elsewhere["participant"]
        .as_array_mut()
        .unwrap()
        .push(json!({"actor": {"reference": "Practitioner/other"}, "status": "needs-action"}));
    put_ok(&server, &elsewhere).await;

    let cancel = json!({"resourceType": "Parameters", "parameter": [{"name": "reason", "valueString": "patient ill"}]});
    assert_eq!(
        server
            .post_json("Appointment/wl-booked/$cancel", &cancel)
            .await
            .0,
        200
    );
    let offer = offer_for(&server, "wl-first")
        .await
        .expect("the first request is offered the time");
    assert_eq!(offer["start"], "2027-03-15T09:00:00-04:00");
    assert!(
        offer["participant"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["actor"]["reference"] == "Patient/pw1")
    );
    let (_, messages) = server
        .get_json("CommunicationRequest?subject=Patient/pw1")
        .await;
    assert_eq!(entries(&messages).len(), 1, "{messages}");
    // The offered time is held: $find does not offer it.
    let next = first_opening(&server, "s-wl").await.unwrap();
    assert_eq!(next["start"], "2027-03-15T09:30:00-04:00");

    // Not taken within the hour: the next request gets it.
    server.advance_clock(3601).await;
    let second = offer_for(&server, "wl-second")
        .await
        .expect("the offer goes to the next");
    let by_id = json!({"resourceType": "Parameters", "parameter": [{"name": "appointment-id", "valueString": second["id"]}]});
    let (status, booked) = server.post_json("Appointment/$book", &by_id).await;
    assert_eq!(status, 200, "{booked}");
    let mut closed = Value::Null;
    for _ in 0..75 {
        closed = server.get_json("Appointment/wl-second").await.1;
        if closed["status"] == "cancelled" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(closed["status"], "cancelled", "{closed}");
    assert!(
        closed["cancelationReason"]["text"]
            .as_str()
            .unwrap()
            .starts_with("booked as Appointment/")
    );
    let (_, other) = server.get_json("Appointment/wl-other").await;
    assert_eq!(
        other["status"], "waitlist",
        "never offered another practitioner's time"
    );

    // Time freed by a plain PUT (not an operation) is offered too: to the first request,
    // still waiting.
    let mut later = appointment(
        "wl-later",
        &["Practitioner/wl", "Patient/pb"],
        "2027-03-15T10:00:00-04:00",
        "2027-03-15T10:30:00-04:00",
    );
    put_ok(&server, &later).await;
    later["status"] = json!("cancelled");
    put_ok(&server, &later).await;
    let mut offered = Value::Null;
    for _ in 0..75 {
        let (_, bundle) = server
            .get_json("Appointment?status=pending&date=2027-03-15T10:00:00-04:00")
            .await;
        if let Some(found) = entries(&bundle).first() {
            offered = found["resource"].clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(
        offered["participant"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["actor"]["reference"] == "Patient/pw1"),
        "{offered}"
    );
}
both_backends!(waitlist_offers);

/// Hostile bookings: an appointment claiming time for thousands of participants, a series
/// of thousands, a week of a year: refused at once, naming what is wrong.
async fn hostile_bookings(server: Server) {
    let many: Vec<String> = (0..2000)
        .map(|n| format!("Practitioner/crowd{n}"))
        .collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let crowd = appointment(
        "crowd",
        &refs,
        "2027-03-15T09:00:00-04:00",
        "2027-03-15T09:30:00-04:00",
    );
    let (status, outcome) = send(&server, reqwest::Method::PUT, "Appointment/crowd", &crowd).await;
    assert_eq!(status, 422, "{outcome}");
    assert_eq!(
        outcome["issue"][0]["expression"][0],
        "Appointment.participant"
    );
    let long = appointment(
        "long",
        &["Practitioner/long"],
        "2027-03-01T09:00:00-05:00",
        "2027-03-20T09:00:00-04:00",
    );
    let (status, outcome) = send(&server, reqwest::Method::PUT, "Appointment/long", &long).await;
    assert_eq!(status, 422, "{outcome}");
    let first = appointment(
        "x",
        &["Practitioner/h"],
        "2027-03-15T09:00:00-04:00",
        "2027-03-15T09:30:00-04:00",
    );
    let series = json!({"resourceType": "Parameters", "parameter": [
        {"name": "appointment", "resource": first}, {"name": "count", "valueInteger": 100_000}]});
    assert_eq!(
        server
            .post_json("Appointment/$book-series", &series)
            .await
            .0,
        400
    );
    let many_schedules: String = (0..50).map(|n| format!("schedule=s{n}&")).collect();
    let (status, _) = find(
        &server,
        &format!("{many_schedules}start=2027-03-15T00:00:00Z&end=2027-03-16T00:00:00Z"),
    )
    .await;
    assert_eq!(status, 400);
}
both!(hostile_bookings);

/// On PostgreSQL, a second server process on `server`'s database (a rush is spread over
/// both); none on SQLite, whose file has one writer.
async fn second_process(server: &Server, backend: common::Backend) -> Option<Server> {
    match backend {
        common::Backend::Postgres => Some(server.sibling().await),
        common::Backend::Sqlite => None,
    }
}

fn processes<'a>(server: &'a Server, other: Option<&'a Server>) -> Vec<&'a Server> {
    std::iter::once(server).chain(other).collect()
}

/// A write of `resource` that the rules refuse is refused (409) by PUT, by a transaction,
/// and by a PATCH of its status to `status`.
async fn refused_on_every_write_path(server: &Server, resource: &Value, status: &str) {
    let path = format!(
        "{}/{}",
        resource["resourceType"].as_str().unwrap(),
        resource["id"].as_str().unwrap()
    );
    let (got, outcome) = send(server, reqwest::Method::PUT, &path, resource).await;
    assert_eq!(got, 409, "PUT {path}: {outcome}");
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": resource, "request": {"method": "PUT", "url": path}}]});
    assert_eq!(
        server.post_json("", &bundle).await.0,
        409,
        "transaction PUT {path}"
    );
    let patch = json!([{"op": "replace", "path": "/status", "value": status}]);
    let (got, _) = server
        .send_json(
            reqwest::Method::PATCH,
            &path,
            "application/json-patch+json",
            patch.to_string(),
        )
        .await;
    assert_eq!(got, 409, "PATCH {path} to {status}");
}

/// Of a rush of fifty, one booked (201) and every other one was refused (409).
fn exactly_one_won(statuses: &[u16]) {
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        49,
        "{statuses:?}"
    );
}

/// A Slot's rules hold on every write: it ends after it starts; entered-in-error is final;
/// a Slot someone is booked into cannot be closed, moved or deleted under them (by PUT,
/// PATCH, DELETE or a transaction); nobody can be booked into a closed Slot; once the
/// booking is cancelled, the Slot is free to close.
async fn slot_rules(server: Server) {
    let (start, end) = ("2027-03-15T09:00:00-04:00", "2027-03-15T09:30:00-04:00");
    put_ok(&server, &slot("s1", "Schedule/dr", "free", start, end)).await;
    let mut booked = appointment("a1", &["Practitioner/dr", "Patient/p1"], start, end);
    booked["slot"] = json!([{"reference": "Slot/s1"}]);
    put_ok(&server, &booked).await;

    let closed = slot("s1", "Schedule/dr", "busy-unavailable", start, end);
    let (status, outcome) = send(&server, reqwest::Method::PUT, "Slot/s1", &closed).await;
    assert_eq!(status, 409, "{outcome}");
    assert_eq!(outcome["issue"][0]["expression"][0], "Slot.status");
    assert!(outcome.to_string().contains("Slot/s1"), "{outcome}");
    refused_on_every_write_path(&server, &closed, "entered-in-error").await;
    let moved = slot(
        "s1",
        "Schedule/dr",
        "free",
        end,
        "2027-03-15T10:00:00-04:00",
    );
    assert_eq!(
        send(&server, reqwest::Method::PUT, "Slot/s1", &moved)
            .await
            .0,
        409
    );
    let (status, _) = server
        .send_json(
            reqwest::Method::DELETE,
            "Slot/s1",
            common::JSON,
            String::new(),
        )
        .await;
    assert_eq!(status, 409);
    // Marking it busy (as an EHR does when it is booked) is no closing.
    put_ok(&server, &slot("s1", "Schedule/dr", "busy", start, end)).await;

    // Cancelled, the appointment no longer holds it: the Slot may close.
    booked["status"] = json!("cancelled");
    put_ok(&server, &booked).await;
    put_ok(&server, &closed).await;
    let mut second = appointment("a2", &["Practitioner/dr", "Patient/p2"], start, end);
    second["slot"] = json!([{"reference": "Slot/s1"}]);
    let (status, outcome) = send(&server, reqwest::Method::PUT, "Appointment/a2", &second).await;
    assert_eq!(status, 409, "{outcome}");
    assert_eq!(outcome["issue"][0]["expression"][0], "Appointment.slot");
    let (status, _) = send(&server, reqwest::Method::POST, "Appointment", &second).await;
    assert_eq!(status, 409);
    // A proposed appointment holds no time: it may name the closed Slot.
    second["status"] = json!("proposed");
    put_ok(&server, &second).await;

    let gone = slot("s2", "Schedule/dr", "entered-in-error", start, end);
    put_ok(&server, &gone).await;
    let back = slot("s2", "Schedule/dr", "free", start, end);
    let (status, outcome) = send(&server, reqwest::Method::PUT, "Slot/s2", &back).await;
    assert_eq!(status, 409, "{outcome}");
    assert_eq!(outcome["issue"][0]["expression"][0], "Slot.status");
    let backwards = slot("s3", "Schedule/dr", "free", end, start);
    let (status, outcome) = send(&server, reqwest::Method::PUT, "Slot/s3", &backwards).await;
    assert_eq!(status, 422, "{outcome}");
    assert_eq!(outcome["issue"][0]["expression"][0], "Slot.end");
}
both!(slot_rules);

/// Twenty-five bookings into one Slot race twenty-five closings of it (on PostgreSQL
/// through two server processes), once with a booking sent first and once with a closing:
/// either the Slot closed and nobody is booked into it, or it stayed open and every closing
/// was refused.
async fn closing_a_slot_races_bookings(backend: common::Backend) {
    let Some(server) = Server::start(backend).await else {
        eprintln!("skipped: FHIR_TEST_POSTGRES_URL is not set");
        return;
    };
    let other = second_process(&server, backend).await;
    let servers = processes(&server, other.as_ref());
    for (group, lead) in [("g0", 0), ("g1", 1)] {
        rush_one_slot(&servers, group, lead).await;
    }
}
both_backends!(closing_a_slot_races_bookings);

/// Fifty requests at once on Slot `group`: the odd ones (even, with `lead` 1) book into it,
/// the others close it.
async fn rush_one_slot(servers: &[&Server], group: &str, lead: usize) {
    let (start, end) = ("2027-03-15T09:00:00-04:00", "2027-03-15T09:30:00-04:00");
    put_ok(
        servers[0],
        &slot(group, "Schedule/class", "free", start, end),
    )
    .await;
    let closed = slot(group, "Schedule/class", "busy-unavailable", start, end);
    let rush = (0..50).map(|n| {
        let server = servers[n % servers.len()];
        let booking = (n + lead) % 2 == 1;
        let (path, body) = if booking {
            let id = format!("{group}-{n}");
            let mut booking = appointment(&id, &[&format!("Patient/p{n}")], start, end);
            booking["slot"] = json!([{"reference": format!("Slot/{group}")}]);
            (format!("Appointment/{id}"), booking)
        } else {
            (format!("Slot/{group}"), closed.clone())
        };
        async move {
            let status = send(server, reqwest::Method::PUT, &path, &body).await.0;
            (booking, status)
        }
    });
    let outcomes = futures::future::join_all(rush).await;
    for (_, status) in &outcomes {
        assert!([200, 201, 409].contains(status), "{outcomes:?}");
    }
    let booked = outcomes.iter().filter(|(b, s)| *b && *s == 201).count();
    let closings = outcomes.iter().filter(|(b, s)| !*b && *s == 200).count();
    let (_, stored) = servers[0].get_json(&format!("Slot/{group}")).await;
    let query = format!("Appointment?slot=Slot/{group}&status=booked&_count=100");
    let (_, bundle) = servers[0].get_json(&query).await;
    assert_eq!(entries(&bundle).len(), booked, "{outcomes:?}");
    if closings > 0 {
        assert_eq!(stored["status"], "busy-unavailable");
        assert_eq!(booked, 0, "booked into a closed Slot: {outcomes:?}");
    } else {
        assert_eq!(stored["status"], "free");
    }
}

/// A database from before the store kept claims (migration 0008): at the next start the
/// server writes the claims of the appointments already booked, buffers and Slots
/// included, so they block their time at once.
async fn claims_of_earlier_appointments(mut server: Server) {
    let buffer = json!({"url": "bufferAfter", "valueDuration": {"value": 15, "unit": "min"}});
    let days = ["mon", "tue", "wed", "thu", "fri"];
    put_ok(
        &server,
        &schedule("dr", "Practitioner/dr", &days, "09:00:00", 8, &[buffer]),
    )
    .await;
    let (start, end) = ("2027-03-15T09:00:00-04:00", "2027-03-15T09:30:00-04:00");
    put_ok(&server, &slot("s1", "Schedule/dr", "free", start, end)).await;
    let mut booked = appointment("a1", &["Practitioner/dr", "Patient/p1"], start, end);
    booked["slot"] = json!([{"reference": "Slot/s1"}]);
    put_ok(&server, &booked).await;
    server.sql(
        "DELETE FROM time_claims; DELETE FROM time_policies; \
         DELETE FROM store_meta WHERE name = 'time_claims_built';",
    );
    server.restart().await;

    let clash = appointment(
        "a2",
        &["Practitioner/dr", "Patient/p2"],
        "2027-03-15T09:40:00-04:00",
        "2027-03-15T10:00:00-04:00",
    );
    let (status, outcome) = send(&server, reqwest::Method::PUT, "Appointment/a2", &clash).await;
    assert_eq!(status, 409, "inside the buffer after a1: {outcome}");
    let closed = slot("s1", "Schedule/dr", "busy-unavailable", start, end);
    assert_eq!(
        send(&server, reqwest::Method::PUT, "Slot/s1", &closed)
            .await
            .0,
        409
    );
    let later = appointment(
        "a3",
        &["Practitioner/dr", "Patient/p2"],
        "2027-03-15T09:45:00-04:00",
        "2027-03-15T10:15:00-04:00",
    );
    put_ok(&server, &later).await;
}
both!(claims_of_earlier_appointments);
