//! `fhir-tools bench scheduling`: a practice of 50 practitioners and 10 rooms, each with a
//! Schedule open Monday to Friday 08:00–17:00 (30-minute visits) for the whole of 2027,
//! loaded into a running server; then
//! - `$find` for one week of one practitioner (a random practitioner and week), latency;
//! - `$book` by 32 clients of random openings of the first `--book-days` weekdays
//!   (clients collide now and then: the losers get 409), bookings per second;
//! - and afterwards a check over every booked Appointment that no practitioner is booked
//!   twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use hyper::Method;
use serde_json::{Value, json};

use crate::bench::{Phase, Target, get_for};
use crate::bench_client::Connection;

#[derive(Debug, Clone, Args)]
pub struct SchedulingBenchConfig {
    /// The FHIR base URL of the server to measure.
    #[arg(long, default_value = "http://127.0.0.1:8080/fhir")]
    pub url: String,
    /// Seconds each phase runs.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Clients of the `$find` phase.
    #[arg(long, default_value_t = 16)]
    pub find_clients: usize,
    /// Clients of the `$book` phase.
    #[arg(long, default_value_t = 32)]
    pub book_clients: usize,
    /// Weekdays (from 4 January 2027) whose openings the `$book` clients pick from at
    /// random: fewer make them collide more often (the losers get 409).
    #[arg(long, default_value_t = 250)]
    pub book_days: u64,
}

const PRACTITIONERS: u64 = 50;
const ROOMS: u64 = 10;
const PARAMETERS: &str = "https://medplum.com/fhir/StructureDefinition/SchedulingParameters";
/// Monday 4 January 2027, 00:00 UTC, in seconds.
const FIRST_MONDAY: i64 = 1_799_020_800;
const DAY: i64 = 86_400;
/// The visits of a day, 08:00 to 17:00.
const VISITS_A_DAY: i64 = 18;

fn schedule(id: &str, actor: &str) -> Value {
    json!({"resourceType": "Schedule", "id": id, "active": true, "actor": [{"reference": actor}],
        "planningHorizon": {"start": "2027-01-01T00:00:00Z", "end": "2027-12-31T23:59:59Z"},
        "extension": [{"url": PARAMETERS, "extension": [
            {"url": "availability", "valueTiming": {"repeat": {"dayOfWeek": ["mon", "tue", "wed", "thu", "fri"],
                "timeOfDay": ["08:00:00"], "duration": 9, "durationUnit": "h"}}},
            {"url": "duration", "valueDuration": {"value": 30, "unit": "min"}},
            {"url": "alignmentInterval", "valueDuration": {"value": 30, "unit": "min"}},
            {"url": "timezone", "valueCode": "UTC"}]}]})
}

fn instant(seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

async fn put(connection: &mut Connection, path: &str, resource: &Value) -> Result<(), String> {
    let answer = connection
        .send(
            Method::PUT,
            path,
            &[("content-type", "application/fhir+json")],
            Bytes::from(resource.to_string()),
        )
        .await?;
    if (200..300).contains(&answer.status) {
        Ok(())
    } else {
        Err(format!("PUT {path} answered {}", answer.status))
    }
}

async fn load(target: &Target) -> Result<(), String> {
    let mut connection = Connection::open(&target.base).await?;
    let path = &target.path;
    for n in 0..PRACTITIONERS {
        let id = format!("bench-dr{n}");
        put(
            &mut connection,
            &format!("{path}/Practitioner/{id}"),
            &json!({"resourceType": "Practitioner", "id": id}),
        )
        .await?;
        let actor = format!("Practitioner/{id}");
        put(
            &mut connection,
            &format!("{path}/Schedule/bench-s-dr{n}"),
            &schedule(&format!("bench-s-dr{n}"), &actor),
        )
        .await?;
    }
    for n in 0..ROOMS {
        let id = format!("bench-room{n}");
        put(
            &mut connection,
            &format!("{path}/Location/{id}"),
            &json!({"resourceType": "Location", "id": id}),
        )
        .await?;
        let actor = format!("Location/{id}");
        put(
            &mut connection,
            &format!("{path}/Schedule/bench-s-room{n}"),
            &schedule(&format!("bench-s-room{n}"), &actor),
        )
        .await?;
    }
    Ok(())
}

fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// A proposed appointment for practitioner `n` at the `k`-th visit from 4 January 2027.
fn opening(n: u64, k: i64, patient: &str) -> Value {
    let day = k / VISITS_A_DAY;
    let weekday_offset = (day / 5) * 7 + day % 5;
    let start = FIRST_MONDAY + weekday_offset * DAY + 8 * 3600 + (k % VISITS_A_DAY) * 1800;
    json!({"resourceType": "Appointment", "status": "proposed",
        "start": instant(start), "end": instant(start + 1800),
        "participant": [
            {"actor": {"reference": format!("Practitioner/bench-dr{n}")}, "required": "required", "status": "needs-action"},
            {"actor": {"reference": patient}, "required": "required", "status": "needs-action"}],
        "extension": [{"url": "urn:fhir-server:StructureDefinition/appointment-schedule",
            "valueReference": {"reference": format!("Schedule/bench-s-dr{n}")}}]})
}

/// `$book` by `clients` loops for `duration`: the bookings made (201) and refused (409).
async fn book_for(
    target: &Target,
    (clients, days): (usize, u64),
    duration: Duration,
) -> (Phase, u64) {
    let refused = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients.max(1) {
        let (base, path) = (target.base.clone(), target.path.clone());
        let (refused, errors) = (refused.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let Ok(mut connection) = Connection::open(&base).await else {
                errors.fetch_add(1, Ordering::Relaxed);
                return latencies;
            };
            let mut state = 0x9E37_79B9_7F4A_7C15_u64 ^ (client as u64 + 1);
            let mut made = 0u64;
            while started.elapsed() < duration {
                let n = next(&mut state) % PRACTITIONERS;
                let k = (next(&mut state) % (days * VISITS_A_DAY as u64)) as i64;
                made += 1;
                let patient = format!("Patient/bench-{client}-{made}");
                let body = json!({"resourceType": "Parameters", "parameter": [
                    {"name": "appointment", "resource": opening(n, k, &patient)}]});
                let sent = Instant::now();
                let answer = connection
                    .send(
                        Method::POST,
                        &format!("{path}/Appointment/$book"),
                        &[("content-type", "application/fhir+json")],
                        Bytes::from(body.to_string()),
                    )
                    .await;
                match answer {
                    Ok(answer) if answer.status == 201 => {
                        latencies.push(sent.elapsed().as_micros() as u32);
                    }
                    Ok(answer) if answer.status == 409 => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    let latencies = crate::bench::all_latencies(tasks).await;
    let phase = Phase::new(
        "book",
        clients,
        errors.load(Ordering::Relaxed),
        started.elapsed(),
        latencies,
    );
    (phase, refused.load(Ordering::Relaxed))
}

/// Every booked appointment of the benchmark's practitioners, checked for overlaps: the
/// number of bookings and of double bookings.
async fn double_bookings(target: &Target) -> Result<(usize, usize), String> {
    let mut connection = Connection::open(&target.base).await?;
    let mut spans: Vec<(String, String, String)> = Vec::new();
    let mut url = format!("{}/Appointment?status=booked&_count=1000", target.path);
    loop {
        let (status, body) = connection
            .send_for_body(Method::GET, &url, &[], Bytes::new())
            .await?;
        if status != 200 {
            return Err(format!("GET {url} answered {status}"));
        }
        let page: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        for entry in page["entry"].as_array().into_iter().flatten() {
            let resource = &entry["resource"];
            for participant in resource["participant"].as_array().into_iter().flatten() {
                let actor = participant["actor"]["reference"]
                    .as_str()
                    .unwrap_or_default();
                if actor.starts_with("Practitioner/bench-") {
                    let text = |key: &str| resource[key].as_str().unwrap_or_default().to_owned();
                    spans.push((actor.to_owned(), text("start"), text("end")));
                }
            }
        }
        let next = page["link"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["relation"] == "next")
            .and_then(|l| l["url"].as_str());
        match next {
            Some(next) => {
                let at = next.find(&target.path).unwrap_or(0);
                url = next[at..].to_owned();
            }
            None => break,
        }
    }
    // The benchmark's times are all UTC with the same form, so text order is time order.
    spans.sort();
    let doubles = spans
        .windows(2)
        .filter(|pair| pair[0].0 == pair[1].0 && pair[1].1 < pair[0].2)
        .count();
    Ok((spans.len(), doubles))
}

pub async fn run(config: SchedulingBenchConfig) -> Result<(), String> {
    let target = Target::reach(&config.url).await?;
    println!("loading {PRACTITIONERS} practitioners and {ROOMS} rooms with a year of availability");
    load(&target).await?;
    let seconds = Duration::from_secs(config.seconds);
    let path = target.path.clone();
    let weeks = Arc::new(move |state: u64| {
        let n = state % PRACTITIONERS;
        let week = (state >> 16) % 50;
        let start = FIRST_MONDAY + week as i64 * 7 * DAY;
        format!(
            "{path}/Appointment/$find?schedule=bench-s-dr{n}&start={}&end={}&_count=10",
            instant(start),
            instant(start + 7 * DAY)
        )
    });
    get_for(&target, "find", config.find_clients, seconds, weeks)
        .await
        .report();
    let (booked, refused) = book_for(
        &target,
        (config.book_clients, config.book_days.max(1)),
        seconds,
    )
    .await;
    booked.report();
    println!("book: {refused} refused with 409 (the time was taken)");
    let (bookings, doubles) = double_bookings(&target).await?;
    println!(
        "check: {bookings} bookings of the benchmark's practitioners, {doubles} double bookings"
    );
    if doubles > 0 {
        return Err(format!("{doubles} double bookings"));
    }
    Ok(())
}
