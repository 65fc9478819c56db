//! `fhir-server bench workload`: the side-by-side workload the peers were measured with,
//! with the server's memory after each phase.
//!
//! 1. ingest 11,000 Patients by transaction Bundles of 500 (half of them share the
//!    identifier `http://example.org/mrn|X1`);
//! 2. read by id at 64 clients;
//! 3. search a name prefix at 16 clients;
//! 4. the lookup with many matches, `identifier=http://example.org/mrn|X1&_count=10`, at
//!    16 clients: with `_total=none`, `_total=estimate` and the default (counted) total;
//! 5. create at 16 clients.
//!
//! With `--pid` (the server's process id, on this machine) it reports the server's
//! resident memory (VmRSS) and its peak (VmHWM) after each phase. It measures; it asserts
//! nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use hyper::Method;

use crate::bench::{MakePath, Target, create_until, get_for, patient};
use crate::bench_client::Connection;

#[derive(Debug, Clone, Args)]
pub struct WorkloadConfig {
    /// The FHIR base URL of the server to measure (an empty tenant).
    #[arg(long, default_value = "http://127.0.0.1:8080/fhir")]
    pub url: String,

    /// Seconds each measured phase runs.
    #[arg(long, default_value_t = 8)]
    pub seconds: u64,

    /// The server's process id, to report its memory after each phase.
    #[arg(long)]
    pub pid: Option<u32>,

    /// Patients to ingest.
    #[arg(long, default_value_t = 11_000)]
    pub patients: usize,
}

/// Patients per transaction Bundle.
const BUNDLE: usize = 500;

pub async fn run(config: WorkloadConfig) -> Result<(), String> {
    let target = Target::reach(&config.url).await?;
    let duration = Duration::from_secs(config.seconds);
    let memory = || config.pid.map(memory_of).unwrap_or_default();
    println!(
        "workload on {} ({}s per phase)",
        target.base, config.seconds
    );

    let started = Instant::now();
    let ids = ingest(&target, config.patients).await?;
    let rate = ids.len() as f64 / started.elapsed().as_secs_f64();
    println!(
        "ingest  {} patients by Bundles of {BUNDLE}: {rate:.0}/s  {}",
        ids.len(),
        memory()
    );

    let ids = Arc::new(ids);
    let path = target.path.clone();
    let read: MakePath =
        Arc::new(move |n| format!("{path}/Patient/{}", ids[(n % ids.len() as u64) as usize]));
    get_for(&target, "read", 64, duration, read).await.report();
    println!("        {}", memory());

    let path = target.path.clone();
    let prefixes = ["smi", "gar", "ngu", "oka", "mul", "ros", "kow"];
    let prefix: MakePath = Arc::new(move |n| {
        format!(
            "{path}/Patient?name={}",
            prefixes[(n % prefixes.len() as u64) as usize]
        )
    });
    get_for(&target, "name", 16, duration, prefix)
        .await
        .report();
    println!("        {}", memory());

    for total in ["&_total=none", "&_total=estimate", ""] {
        let path = format!(
            "{}/Patient?identifier=http://example.org/mrn%7CX1&_count=10{total}",
            target.path
        );
        let lookup: MakePath = Arc::new(move |_| path.clone());
        let name = match total {
            "&_total=none" => "lookup/none",
            "&_total=estimate" => "lookup/estimate",
            _ => "lookup/count",
        };
        get_for(&target, name, 16, duration, lookup).await.report();
        println!("        {}", memory());
    }

    let mut created = Vec::new();
    create_until(&target, 16, Some(duration), None, &mut created)
        .await
        .report();
    println!("        {}", memory());
    Ok(())
}

/// Loads `count` Patients in transaction Bundles of `BUNDLE`, two at a time; their ids.
async fn ingest(target: &Target, count: usize) -> Result<Vec<String>, String> {
    let mut ids = Vec::with_capacity(count);
    let mut connection = Connection::open(&target.base).await?;
    for first in (0..count).step_by(BUNDLE) {
        let entries: Vec<String> = (first..(first + BUNDLE).min(count))
            .map(|n| {
                let mut resource = patient(n as u64);
                if n % 2 == 0 {
                    resource = resource.replacen(&format!("\"B{n}\""), "\"X1\"", 1);
                }
                format!(
                    r#"{{"fullUrl":"urn:uuid:00000000-0000-4000-8000-{n:012}","resource":{resource},"request":{{"method":"POST","url":"Patient"}}}}"#
                )
            })
            .collect();
        let bundle = format!(
            r#"{{"resourceType":"Bundle","type":"transaction","entry":[{}]}}"#,
            entries.join(",")
        );
        let headers = [
            ("content-type", "application/fhir+json"),
            ("prefer", "return=minimal"),
        ];
        let answer = connection
            .send_for_body(Method::POST, &target.path, &headers, Bytes::from(bundle))
            .await?;
        if answer.0 != 200 {
            return Err(format!("a transaction answered {}", answer.0));
        }
        ids.extend(created_ids(&answer.1));
    }
    Ok(ids)
}

/// The ids of the Patients a transaction-response's locations name.
fn created_ids(body: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(body);
    text.split("Patient/")
        .skip(1)
        .filter_map(|rest| rest.split('/').next())
        .filter(|id| id.len() == 36)
        .map(str::to_owned)
        .collect()
}

/// `rss=… MB peak=… MB` of a process, from /proc.
fn memory_of(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024)
    };
    format!(
        "server rss={} MB peak={} MB",
        field("VmRSS:"),
        field("VmHWM:")
    )
}
