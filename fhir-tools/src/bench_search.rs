//! `fhir-server bench search`: measures the searches a practice runs most, on a running
//! server loaded by `fhir-server generate`.
//!
//! The query values come from the same [`Practice`] the generator made (same `--resources`
//! and `--seed`), so every query asks for data that exist: an existing patient, a week of a
//! practitioner's schedule in the future, a family name borne by a few dozen patients. Each
//! query runs for a fixed time with several clients; the report gives the rate, latency
//! percentiles, the typical result size and every status code seen, so that a query the
//! server refuses (400) or answers empty is as visible as a slow one.
//!
//! By default requests carry `Prefer: handling=strict`, so a parameter the server does not
//! support is refused rather than silently ignored (which would measure another query).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use serde::Deserialize;
use time::Weekday;

use crate::generate::{
    self, MRN_SYSTEM, Practice, Rng, TODAY, format_date, mrn, patient_id, schedule_id,
};

#[derive(Debug, Clone, Args)]
pub struct SearchBenchConfig {
    /// The FHIR base URL of the server to measure.
    #[arg(long, default_value = "http://127.0.0.1:8080/fhir")]
    pub url: String,

    /// Seconds each query runs.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,

    /// Seconds each query runs before measuring, to warm caches.
    #[arg(long, default_value_t = 1)]
    pub warmup: u64,

    /// Concurrent clients.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,

    /// The `--resources` the data were generated with.
    #[arg(long, default_value_t = 1_000_000)]
    pub resources: usize,

    /// The `--seed` the data were generated with.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Only these queries (names as in the report), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub queries: Vec<String>,

    /// Do not send `Prefer: handling=strict`: unsupported parameters are then ignored.
    #[arg(long)]
    pub lenient: bool,
}

/// The targets of the search issue for selective queries, in milliseconds.
const TARGET_P50_MS: f64 = 10.0;
const TARGET_P99_MS: f64 = 50.0;

/// Makes one instance of a query: the resource type and the parameters.
type MakeQuery = fn(&Picker, &mut Rng) -> (String, Vec<(String, String)>);

/// A benchmarked query: its name, whether it selects few resources (and so has latency
/// targets), and how to make one instance of it.
struct QueryKind {
    name: &'static str,
    selective: bool,
    make: MakeQuery,
}

static QUERIES: &[QueryKind] = &[
    QueryKind {
        name: "free-slots",
        selective: true,
        make: |p, rng| {
            let (practitioner, monday) = (rng.below(p.practitioners), *rng.pick(&p.mondays));
            let next = monday
                .checked_add(time::Duration::days(7))
                .unwrap_or(monday);
            let schedule = format!("Schedule/{}", schedule_id(practitioner));
            (
                "Slot".into(),
                vec![
                    pair("schedule", &schedule),
                    pair("status", "free"),
                    pair("start", &format!("ge{}", format_date(monday))),
                    pair("start", &format!("lt{}", format_date(next))),
                ],
            )
        },
    },
    QueryKind {
        name: "patient-appointments",
        selective: true,
        make: |p, rng| {
            let patient = format!("Patient/{}", patient_id(rng.below(p.patients)));
            ("Appointment".into(), vec![pair("patient", &patient)])
        },
    },
    QueryKind {
        name: "name-prefix",
        selective: true,
        make: |p, rng| {
            // What a receptionist types: the start of an existing patient's family name.
            let family = p.practice.patient_person(rng.below(p.patients)).family;
            let prefix: String = family.to_lowercase().chars().take(3).collect();
            ("Patient".into(), vec![pair("name", &prefix)])
        },
    },
    QueryKind {
        name: "identifier",
        selective: true,
        make: |p, rng| {
            let value = format!("{MRN_SYSTEM}|{}", mrn(rng.below(p.patients)));
            ("Patient".into(), vec![pair("identifier", &value)])
        },
    },
    QueryKind {
        name: "appointments-day-status",
        selective: true,
        make: |p, rng| {
            let day = *rng.pick(&p.future_days);
            let next = day.checked_add(time::Duration::days(1)).unwrap_or(day);
            (
                "Appointment".into(),
                vec![
                    pair("date", &format!("ge{}", format_date(day))),
                    pair("date", &format!("lt{}", format_date(next))),
                    pair("status", "booked"),
                ],
            )
        },
    },
    QueryKind {
        name: "chained-name",
        selective: true,
        make: |p, rng| {
            let family = rng.pick(&p.rare_families).to_lowercase();
            (
                "Appointment".into(),
                vec![pair("patient.name", &family), pair("_count", "20")],
            )
        },
    },
    QueryKind {
        name: "chained-identifier",
        selective: true,
        make: |p, rng| {
            let value = format!("{MRN_SYSTEM}|{}", mrn(rng.below(p.patients)));
            (
                "Appointment".into(),
                vec![pair("patient.identifier", &value)],
            )
        },
    },
    QueryKind {
        name: "include",
        selective: true,
        make: |p, rng| {
            let patient = format!("Patient/{}", patient_id(rng.below(p.patients)));
            (
                "Appointment".into(),
                vec![
                    pair("patient", &patient),
                    pair("_include", "Appointment:patient"),
                    pair("_include", "Appointment:practitioner"),
                ],
            )
        },
    },
    QueryKind {
        name: "total-accurate",
        selective: false,
        make: |_, _| {
            (
                "Appointment".into(),
                vec![pair("_total", "accurate"), pair("_count", "1")],
            )
        },
    },
    QueryKind {
        name: "summary-count",
        selective: false,
        make: |_, _| ("Appointment".into(), vec![pair("_summary", "count")]),
    },
];

fn pair(name: &str, value: &str) -> (String, String) {
    (name.to_owned(), value.to_owned())
}

/// What queries pick their values from.
struct Picker {
    practice: Practice,
    patients: usize,
    practitioners: usize,
    /// Mondays of future weeks that the generated slots surely cover.
    mondays: Vec<time::Date>,
    /// Future business days that the generated appointments surely cover.
    future_days: Vec<time::Date>,
    /// Family names borne by a few patients: chained searches with tens of matches.
    rare_families: Vec<&'static str>,
}

impl Picker {
    fn new(practice: Practice) -> Picker {
        let shape = practice.shape.clone();
        // The generator may stop a little before its planned last day: stay well inside.
        let last = shape.past_days + (shape.future_days * 3 / 4).max(1);
        let future_days: Vec<time::Date> = (shape.past_days + 1..=last)
            .map(|d| practice.day(d))
            .collect();
        let mut mondays: Vec<time::Date> = future_days
            .iter()
            .copied()
            .filter(|d| d.weekday() == Weekday::Monday)
            .collect();
        if mondays.is_empty() {
            mondays.push(TODAY);
        }
        let names = practice.family_names_by_frequency();
        let mut rare_families: Vec<&'static str> = names
            .iter()
            .filter(|(_, expected)| (5.0..=15.0).contains(expected))
            .map(|(name, _)| *name)
            .collect();
        if rare_families.is_empty() {
            let mut by_distance = names.clone();
            by_distance.sort_by(|a, b| (a.1 - 10.0).abs().total_cmp(&(b.1 - 10.0).abs()));
            rare_families = by_distance.iter().take(10).map(|(name, _)| *name).collect();
        }
        Picker {
            patients: shape.patients,
            practitioners: shape.practitioners,
            practice,
            mondays,
            future_days,
            rare_families,
        }
    }
}

/// The parts of a search Bundle the report needs; the resources themselves are skipped.
#[derive(Deserialize)]
struct BundleCounts {
    total: Option<u64>,
    #[serde(default)]
    entry: Vec<EntryMode>,
}

#[derive(Deserialize)]
struct EntryMode {
    search: Option<SearchMode>,
}

#[derive(Deserialize)]
struct SearchMode {
    mode: Option<String>,
}

/// One answer.
struct Sample {
    micros: u32,
    status: u16,
    matches: u32,
    includes: u32,
    total: Option<u64>,
}

/// The measurements of one query.
#[derive(Default)]
struct Report {
    elapsed: Duration,
    samples: Vec<Sample>,
    transport_errors: usize,
    /// The first answer that was not 200, for the report.
    first_error: Option<(String, u16, String)>,
    example: String,
}

impl Report {
    /// Adds one client's measurements to the query's; the first error and example seen
    /// are the ones kept.
    fn absorb(&mut self, mut part: Report) {
        self.samples.append(&mut part.samples);
        self.transport_errors += part.transport_errors;
        if self.first_error.is_none() {
            self.first_error = part.first_error;
        }
        if self.example.is_empty() {
            self.example = part.example;
        }
    }
}

/// The server measured, and how the queries are sent to it.
#[derive(Clone)]
struct Server {
    client: reqwest::Client,
    base: String,
    /// Without `Prefer: handling=strict`.
    lenient: bool,
}

impl Server {
    /// Sends one search; returns how long the answer took in microseconds, and its status
    /// and body (an error when the request or the body did not get through).
    async fn search(
        &self,
        resource_type: &str,
        params: &[(String, String)],
    ) -> (u32, reqwest::Result<(u16, Bytes)>) {
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let mut request = self
            .client
            .get(format!("{}/{resource_type}?{query}", self.base))
            .header("accept", "application/fhir+json");
        if !self.lenient {
            request = request.header("prefer", "handling=strict");
        }
        let sent = Instant::now();
        let answer = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                response.bytes().await.map(|body| (status, body))
            }
            Err(error) => Err(error),
        };
        let micros = sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
        (micros, answer)
    }
}

pub async fn run(config: SearchBenchConfig) -> Result<(), String> {
    if config.resources < generate::MIN_RESOURCES {
        return Err(format!(
            "--resources must be at least {}",
            generate::MIN_RESOURCES
        ));
    }
    check_query_names(&config.queries)?;
    // A query that takes longer than this is counted as failed rather than holding the run.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .http1_only()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| e.to_string())?;
    let server = Server {
        client,
        base: config.url.trim_end_matches('/').to_owned(),
        lenient: config.lenient,
    };
    let picker = Arc::new(Picker::new(Practice::new(config.resources, config.seed)));
    check_data(&server, &picker).await?;
    print_header(&config, &server.base);
    let mut misses = Vec::new();
    for (number, kind) in QUERIES.iter().enumerate() {
        if !config.queries.is_empty() && !config.queries.iter().any(|q| q == kind.name) {
            continue;
        }
        let run = |seconds: u64| {
            let duration = Duration::from_secs(seconds);
            measure(&server, &picker, kind, number, config.clients, duration)
        };
        if config.warmup > 0 {
            run(config.warmup).await;
        }
        let report = run(config.seconds).await;
        if let Some(miss) = print_report(kind, &report) {
            misses.push(miss);
        }
    }
    print_misses(&misses);
    Ok(())
}

/// Refuses a misspelt `--queries` name before anything runs, rather than measuring nothing.
fn check_query_names(names: &[String]) -> Result<(), String> {
    for name in names {
        if !QUERIES.iter().any(|q| q.name == name) {
            let known: Vec<&str> = QUERIES.iter().map(|q| q.name).collect();
            return Err(format!(
                "unknown query '{name}'; known: {}",
                known.join(", ")
            ));
        }
    }
    Ok(())
}

/// The run's settings and the report's column titles.
fn print_header(config: &SearchBenchConfig, base: &str) {
    println!(
        "searching {base}: {} clients, {}s per query{}; data of --resources {} --seed {}",
        config.clients,
        config.seconds,
        if config.lenient {
            ""
        } else {
            ", Prefer: handling=strict"
        },
        config.resources,
        config.seed
    );
    println!(
        "{:<24} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>5} {:>7} {:>6}  statuses",
        "query",
        "requests",
        "rate/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "matches",
        "incl",
        "total",
        "empty"
    );
}

/// The verdict: every query that missed its targets, or that all met them.
fn print_misses(misses: &[String]) {
    if misses.is_empty() {
        println!(
            "all selective queries met the targets (p50 < {TARGET_P50_MS} ms, p99 < {TARGET_P99_MS} ms) with non-empty results"
        );
    } else {
        println!("problems:");
        for miss in misses {
            println!("  {miss}");
        }
    }
}

/// Checks that the server holds the data these values come from: a mismatch of
/// `--resources` or `--seed` would otherwise show only as empty results.
async fn check_data(server: &Server, picker: &Picker) -> Result<(), String> {
    let Server { client, base, .. } = server;
    generate::check_server(client, base).await?;
    let last_patient = picker.patients - 1;
    for path in [
        format!("Patient/{}", patient_id(0)),
        format!("Patient/{}", patient_id(last_patient)),
        format!("Schedule/{}", schedule_id(picker.practitioners - 1)),
    ] {
        let status = client
            .get(format!("{base}/{path}"))
            .send()
            .await
            .map_err(|e| format!("cannot read {path}: {e}"))?
            .status();
        if !status.is_success() {
            println!(
                "warning: {path} answered {status}: was the server loaded with `generate --resources {} --seed {}`?",
                picker.practice.shape.resources, picker.practice.seed
            );
        }
    }
    Ok(())
}

/// Runs `kind` for `duration` with `clients` concurrent clients.
async fn measure(
    server: &Server,
    picker: &Arc<Picker>,
    kind: &'static QueryKind,
    number: usize,
    clients: usize,
    duration: Duration,
) -> Report {
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients.max(1))
        .map(|task| {
            let rng = Rng::new(0x005E_A2C4 ^ ((number as u64) << 32) ^ task as u64);
            let (server, picker) = (server.clone(), picker.clone());
            tokio::spawn(client_run(server, picker, kind, rng, started, duration))
        })
        .collect();
    let mut report = Report::default();
    for task in tasks {
        if let Ok(part) = task.await {
            report.absorb(part);
        }
    }
    report.elapsed = started.elapsed();
    report
}

/// One client's requests until the run's time is up, each with fresh values from `rng`.
async fn client_run(
    server: Server,
    picker: Arc<Picker>,
    kind: &'static QueryKind,
    mut rng: Rng,
    started: Instant,
    duration: Duration,
) -> Report {
    let mut report = Report::default();
    while started.elapsed() < duration {
        let (resource_type, params) = (kind.make)(&picker, &mut rng);
        if report.example.is_empty() {
            report.example = readable(&resource_type, &params);
        }
        let (micros, answer) = server.search(&resource_type, &params).await;
        let Ok((status, body)) = answer else {
            report.transport_errors += 1;
            continue;
        };
        if status != 200 && report.first_error.is_none() {
            let text = String::from_utf8_lossy(&body);
            let query = readable(&resource_type, &params);
            report.first_error = Some((query, status, diagnostics(&text)));
        }
        report.samples.push(sample(micros, status, &body));
    }
    report
}

/// A query as a person writes it (not percent-encoded), for the report.
fn readable(resource_type: &str, params: &[(String, String)]) -> String {
    let pairs: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{resource_type}?{}", pairs.join("&"))
}

/// One answer's measurements; for a search Bundle, how many matches and includes it holds.
fn sample(micros: u32, status: u16, body: &[u8]) -> Sample {
    let mut sample = Sample {
        micros,
        status,
        matches: 0,
        includes: 0,
        total: None,
    };
    if status == 200
        && let Ok(bundle) = serde_json::from_slice::<BundleCounts>(body)
    {
        sample.total = bundle.total;
        for entry in &bundle.entry {
            match entry.search.as_ref().and_then(|s| s.mode.as_deref()) {
                Some("include") => sample.includes += 1,
                _ => sample.matches += 1,
            }
        }
    }
    sample
}

/// The diagnostics of an OperationOutcome, or the start of whatever the body is.
fn diagnostics(body: &str) -> String {
    let issues = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["issue"].as_array().cloned())
        .unwrap_or_default();
    let texts: Vec<String> = issues
        .iter()
        .filter_map(|i| i["diagnostics"].as_str().map(str::to_owned))
        .collect();
    if texts.is_empty() {
        body.chars().take(300).collect()
    } else {
        texts.join("; ")
    }
}

fn median<T: Copy + Ord>(mut values: Vec<T>) -> Option<T> {
    values.sort_unstable();
    values.get(values.len() / 2).copied()
}

/// Prints one query's line; returns why it missed the targets, if it did.
fn print_report(kind: &QueryKind, report: &Report) -> Option<String> {
    let mut micros: Vec<u32> = report.samples.iter().map(|s| s.micros).collect();
    micros.sort_unstable();
    let percentile = |p: f64| -> f64 {
        if micros.is_empty() {
            return 0.0;
        }
        let index = ((micros.len() as f64 - 1.0) * p).round() as usize;
        f64::from(micros[index]) / 1000.0
    };
    let ok: Vec<&Sample> = report.samples.iter().filter(|s| s.status == 200).collect();
    let matches = median(ok.iter().map(|s| s.matches).collect());
    let includes = median(ok.iter().map(|s| s.includes).collect());
    let total = median(ok.iter().filter_map(|s| s.total).collect());
    let empty = ok
        .iter()
        .filter(|s| s.matches == 0 && s.total.unwrap_or(0) == 0)
        .count();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    for sample in &report.samples {
        *statuses.entry(sample.status).or_default() += 1;
    }
    let mut status_text: Vec<String> = statuses.iter().map(|(s, n)| format!("{s}x{n}")).collect();
    if report.transport_errors > 0 {
        status_text.push(format!("failed x{}", report.transport_errors));
    }
    let show = |value: Option<u64>| value.map_or_else(|| "-".to_owned(), |v| v.to_string());
    let (p50, p99) = (percentile(0.5), percentile(0.99));
    println!(
        "{:<24} {:>8} {:>8.1} {:>8.2} {:>8.2} {:>8.2} {:>7} {:>5} {:>7} {:>5.0}%  {}",
        kind.name,
        report.samples.len(),
        report.samples.len() as f64 / report.elapsed.as_secs_f64(),
        p50,
        p99,
        percentile(1.0),
        show(matches.map(u64::from)),
        show(includes.map(u64::from)),
        show(total),
        100.0 * empty as f64 / ok.len().max(1) as f64,
        status_text.join(" ")
    );
    println!("    e.g. {}", report.example);
    if let Some((query, status, text)) = &report.first_error {
        println!("    {status} for {query}: {text}");
    }
    let mut problems = Vec::new();
    if ok.len() < report.samples.len() || report.samples.is_empty() {
        problems.push(format!(
            "{} of {} answers not 200",
            report.samples.len() - ok.len(),
            report.samples.len()
        ));
    }
    if !ok.is_empty() && empty * 2 > ok.len() {
        problems.push("mostly empty results".to_owned());
    }
    if kind.selective && !micros.is_empty() {
        if p50 >= TARGET_P50_MS {
            problems.push(format!("p50 {p50:.1} ms >= {TARGET_P50_MS} ms"));
        }
        if p99 >= TARGET_P99_MS {
            problems.push(format!("p99 {p99:.1} ms >= {TARGET_P99_MS} ms"));
        }
    }
    (!problems.is_empty()).then(|| format!("{}: {}", kind.name, problems.join(", ")))
}
