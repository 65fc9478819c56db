//! `fhir-server bench`: measures create and read-by-id throughput and latency of a running
//! server over real HTTP, at several client counts.
//!
//! Each round runs `clients` concurrent loops for a fixed time: first creating Patients,
//! then reading random ones of those created. It reports requests per second and the p50,
//! p99 and max latency. It only measures; it asserts nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use hyper::Method;

use crate::bench_client::Connection;

#[derive(Debug, Clone, Args)]
pub struct BenchConfig {
    /// The FHIR base URL of the server to measure.
    #[arg(long, default_value = "http://127.0.0.1:8080/fhir")]
    pub url: String,

    /// Client counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub clients: Vec<usize>,

    /// Seconds each phase runs at each client count.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,

    /// Patients to load before the read phases (in addition to those the create phases make).
    #[arg(long, default_value_t = 0)]
    pub preload: usize,

    /// Which phases to run at each client count: `create`, `read` or both. Reads need
    /// patients, from `--preload` or from the create phase.
    #[arg(long, value_delimiter = ',', default_value = "create,read")]
    pub phases: Vec<BenchPhase>,

    /// An access token every request carries (`Authorization: Bearer ...`), to measure a
    /// server under `--auth smart` against the same server under `--auth none`.
    #[arg(long, env = "FHIR_BENCH_TOKEN")]
    pub token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchPhase {
    Create,
    Read,
}

pub struct Phase {
    name: &'static str,
    clients: usize,
    requests: usize,
    errors: u64,
    elapsed: Duration,
    latencies: Vec<u32>,
}

impl Phase {
    /// A phase's result from its answers' latencies (microseconds, sorted).
    pub fn new(
        name: &'static str,
        clients: usize,
        errors: u64,
        elapsed: Duration,
        latencies: Vec<u32>,
    ) -> Phase {
        Phase {
            name,
            clients,
            requests: latencies.len(),
            errors,
            elapsed,
            latencies,
        }
    }

    fn percentile(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let index = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        f64::from(self.latencies[index]) / 1000.0
    }

    pub fn report(&self) {
        println!(
            "{:<7} clients={:<3} requests={:<8} errors={:<5} rate={:>9.0}/s  p50={:>7.2}ms  p99={:>7.2}ms  max={:>8.2}ms",
            self.name,
            self.clients,
            self.requests,
            self.errors,
            self.requests as f64 / self.elapsed.as_secs_f64(),
            self.percentile(0.50),
            self.percentile(0.99),
            self.percentile(1.0),
        );
    }
}

pub async fn run(config: BenchConfig) -> Result<(), String> {
    if let Some(token) = &config.token {
        crate::bench_client::use_token(token);
    }
    let target = Target::reach(&config.url).await?;
    println!(
        "benchmarking {} for {}s per phase",
        target.base, config.seconds
    );
    let duration = Duration::from_secs(config.seconds);
    let mut ids = Vec::new();
    if config.preload > 0 {
        let started = Instant::now();
        let phase = create_until(&target, 64, None, Some(config.preload), &mut ids).await;
        println!(
            "preloaded {} patients in {:.1}s ({} errors)",
            phase.requests,
            started.elapsed().as_secs_f64(),
            phase.errors
        );
    }
    for &clients in &config.clients {
        if config.phases.contains(&BenchPhase::Create) {
            let phase = create_until(&target, clients, Some(duration), None, &mut ids).await;
            phase.report();
        }
        if config.phases.contains(&BenchPhase::Read) {
            if ids.is_empty() {
                return Err("no resource could be created; nothing to read".into());
            }
            let phase = read_for(&target, clients, duration, Arc::new(ids.clone())).await;
            phase.report();
        }
    }
    Ok(())
}

/// A realistic small Patient, varied by `n`.
pub fn patient(n: u64) -> String {
    let family = [
        "Smith", "Garcia", "Nguyen", "Okafor", "Müller", "Rossi", "Kowalski",
    ];
    let given = ["Ana", "John", "Mei", "Chidi", "Lena", "Marco", "Zofia"];
    format!(
        r#"{{"resourceType":"Patient","identifier":[{{"system":"http://example.org/mrn","value":"B{n}"}}],"active":true,"name":[{{"use":"official","family":"{}","given":["{}","Q"]}}],"telecom":[{{"system":"phone","value":"555-{:04}","use":"home"}}],"gender":"{}","birthDate":"19{:02}-{:02}-{:02}","address":[{{"line":["{} Main St"],"city":"Springfield","state":"IL","postalCode":"62701"}}]}}"#,
        family[(n % 7) as usize],
        given[(n / 7 % 7) as usize],
        n % 10_000,
        if n.is_multiple_of(2) {
            "female"
        } else {
            "male"
        },
        n % 100,
        n % 12 + 1,
        n % 28 + 1,
        n % 1000
    )
}

/// The server under test: its FHIR base URL, and that base's path.
pub struct Target {
    pub base: String,
    pub path: String,
}

impl Target {
    /// The server at `base` (`http://host:port/fhir`), once its `metadata` answers.
    pub async fn reach(base: &str) -> Result<Target, String> {
        let base = base.trim_end_matches('/').to_owned();
        // The path of the FHIR base on the server (`/fhir`, `/t/acme/fhir`).
        let path = base
            .strip_prefix("http://")
            .and_then(|rest| rest.find('/').map(|at| rest[at..].to_owned()))
            .unwrap_or_default();
        let metadata = Connection::open(&base)
            .await?
            .send(Method::GET, &format!("{path}/metadata"), &[], Bytes::new())
            .await
            .map_err(|e| format!("cannot reach {base}: {e}"))?;
        if metadata.status != 200 {
            return Err(format!("{base}/metadata answered {}", metadata.status));
        }
        Ok(Target { base, path })
    }
}

/// Creates patients with `clients` loops until `duration` passes or `total` are made.
pub async fn create_until(
    target: &Target,
    clients: usize,
    duration: Option<Duration>,
    total: Option<usize>,
    ids: &mut Vec<String>,
) -> Phase {
    let counter = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients.max(1) {
        let (base, url) = (target.base.clone(), format!("{}/Patient", target.path));
        let (counter, errors) = (counter.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut created = Vec::new();
            let Ok(mut connection) = Connection::open(&base).await else {
                errors.fetch_add(1, Ordering::Relaxed);
                return (latencies, created);
            };
            loop {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                if total.is_some_and(|t| n as usize >= t)
                    || duration.is_some_and(|d| started.elapsed() >= d)
                {
                    break;
                }
                let sent = Instant::now();
                let headers = [
                    ("content-type", "application/fhir+json"),
                    ("prefer", "return=minimal"),
                ];
                let body = Bytes::from(patient(n));
                match connection.send(Method::POST, &url, &headers, body).await {
                    Ok(answer) if answer.status == 201 => {
                        latencies.push(sent.elapsed().as_micros() as u32);
                        let id = answer
                            .location
                            .as_deref()
                            .and_then(|l| l.split("/Patient/").nth(1))
                            .and_then(|rest| rest.split('/').next())
                            .map(str::to_owned);
                        created.extend(id);
                    }
                    Ok(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        match Connection::open(&base).await {
                            Ok(fresh) => connection = fresh,
                            Err(_) => break,
                        }
                    }
                }
            }
            (latencies, created)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        if let Ok((mut l, mut c)) = task.await {
            latencies.append(&mut l);
            ids.append(&mut c);
        }
    }
    latencies.sort_unstable();
    Phase {
        name: "create",
        clients,
        requests: latencies.len(),
        errors: errors.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        latencies,
    }
}

/// Reads random known patients with `clients` loops for `duration`.
async fn read_for(
    target: &Target,
    clients: usize,
    duration: Duration,
    ids: Arc<Vec<String>>,
) -> Phase {
    let path = target.path.clone();
    let paths = move |state: u64| {
        format!(
            "{path}/Patient/{}",
            ids[(state % ids.len() as u64) as usize]
        )
    };
    get_for(target, "read", clients, duration, Arc::new(paths)).await
}

/// The path of one request, from a pseudo-random number.
pub type MakePath = Arc<dyn Fn(u64) -> String + Send + Sync>;

/// GETs the paths `paths` makes with `clients` loops for `duration`; a 200 counts.
pub async fn get_for(
    target: &Target,
    name: &'static str,
    clients: usize,
    duration: Duration,
    paths: MakePath,
) -> Phase {
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task_number in 0..clients.max(1) {
        let (base, paths, errors) = (target.base.clone(), paths.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let Ok(mut connection) = Connection::open(&base).await else {
                errors.fetch_add(1, Ordering::Relaxed);
                return latencies;
            };
            // A small xorshift generator: enough to spread requests, no dependency needed.
            let mut state = 0x9E37_79B9_7F4A_7C15_u64 ^ (task_number as u64 + 1);
            while started.elapsed() < duration {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let url = paths(state);
                let sent = Instant::now();
                match connection.send(Method::GET, &url, &[], Bytes::new()).await {
                    Ok(answer) if answer.status == 200 => {
                        latencies.push(sent.elapsed().as_micros() as u32);
                    }
                    Ok(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        match Connection::open(&base).await {
                            Ok(fresh) => connection = fresh,
                            Err(_) => break,
                        }
                    }
                }
            }
            latencies
        }));
    }
    let latencies = all_latencies(tasks).await;
    Phase {
        name,
        clients,
        requests: latencies.len(),
        errors: errors.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        latencies,
    }
}

/// The latencies every client task measured, together and sorted (a task that failed
/// counts none).
pub async fn all_latencies<T: Ord + Send + 'static>(
    tasks: Vec<tokio::task::JoinHandle<Vec<T>>>,
) -> Vec<T> {
    let mut latencies = Vec::new();
    for task in tasks {
        if let Ok(mut measured) = task.await {
            latencies.append(&mut measured);
        }
    }
    latencies.sort_unstable();
    latencies
}
