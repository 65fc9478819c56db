//! Operability over real HTTP: durability across a crash (SIGKILL), health and readiness,
//! request ids, graceful shutdown, JSON logs, the `migrate` command and the admin token.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure
#![allow(clippy::too_many_lines)] // a test reads as one story

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Backend, JSON, Server, json, patient};
use serde_json::Value;

const CLIENTS: usize = 32;
const PATIENTS: usize = 400;

/// The id in a Location header `{base}/Patient/{id}/_history/{version}`.
fn id_from_location(location: &str) -> String {
    let path: Vec<&str> = location.rsplit('/').collect();
    assert!(
        path.len() >= 4 && path[1] == "_history" && path[3] == "Patient",
        "Location {location}"
    );
    path[2].to_owned()
}

/// Creates `PATIENTS` patients from `CLIENTS` concurrent clients; their ids and bodies.
async fn create_concurrently(server: &Server) -> HashMap<String, Value> {
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let http = reqwest::Client::new();
        let url = format!("{}/Patient", server.base);
        tasks.push(tokio::spawn(async move {
            let mut created = Vec::new();
            for n in (client..PATIENTS).step_by(CLIENTS) {
                let response = http
                    .post(&url)
                    .header("content-type", JSON)
                    .body(patient(&format!("Durable{n}"), &format!("d-{n}")).to_string())
                    .send()
                    .await
                    .expect("create answers");
                assert_eq!(response.status(), 201);
                let location = response.headers()["location"]
                    .to_str()
                    .expect("Location")
                    .to_owned();
                let body: Value = response.json().await.expect("JSON body");
                let id = id_from_location(&location);
                assert_eq!(body["id"], id.as_str());
                created.push((id, body));
            }
            created
        }));
    }
    let mut all = HashMap::new();
    for task in tasks {
        all.extend(task.await.expect("client task"));
    }
    assert_eq!(all.len(), PATIENTS, "every create got its own id");
    all
}

async fn writes_survive_a_crash(mut server: Server) {
    let created = create_concurrently(&server).await;
    server.kill9().await;
    server.restart().await;

    for (id, body) in &created {
        let (status, read) = json(
            server
                .client
                .get(format!("{}/Patient/{id}", server.base))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "Patient/{id} after the crash: {read}");
        assert_eq!(&read, body, "Patient/{id} reads back as created");
    }
    let url = format!("{}/Patient?_count=1000", server.base);
    let (status, bundle) = json(server.client.get(url).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(bundle["total"], PATIENTS);
    // Every search hit has its body, and it is one of ours: no half-written resource.
    let entries = bundle["entry"].as_array().expect("entries");
    assert_eq!(entries.len(), PATIENTS);
    for entry in entries {
        let id = entry["resource"]["id"]
            .as_str()
            .expect("a search hit with a body");
        assert_eq!(
            Some(&entry["resource"]),
            created.get(id),
            "search hit Patient/{id}"
        );
    }
}
both!(writes_survive_a_crash);

/// Creates patients from `CLIENTS` clients until the server goes away; the acknowledged
/// ids. The server is killed (SIGKILL) once `kill_after` creates are acknowledged.
async fn create_until_killed(server: &mut Server, kill_after: usize) -> Vec<String> {
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let http = reqwest::Client::new();
        let url = format!("{}/Patient", server.base);
        let acknowledged = acknowledged.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0.. {
                let body = patient(&format!("Crash{client}x{n}"), &format!("c-{client}-{n}"));
                let sent = http
                    .post(&url)
                    .header("content-type", JSON)
                    .body(body.to_string())
                    .send()
                    .await;
                let Ok(response) = sent else { break };
                if response.status() != 201 {
                    break;
                }
                let Some(location) = response.headers().get("location") else {
                    break;
                };
                ids.push(id_from_location(location.to_str().expect("Location")));
                acknowledged.fetch_add(1, Ordering::SeqCst);
            }
            ids
        }));
    }
    // Wait for the load to be under way (or for every client to have stopped on its own).
    while acknowledged.load(Ordering::SeqCst) < kill_after && !tasks.iter().all(|t| t.is_finished())
    {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    server.kill9().await;
    let mut ids = Vec::new();
    for task in tasks {
        ids.extend(task.await.expect("client task"));
    }
    ids
}

async fn acknowledged_writes_survive_a_crash_mid_load(mut server: Server) {
    let acknowledged = create_until_killed(&mut server, 200).await;
    assert!(
        acknowledged.len() >= 200,
        "the load ran until the kill: {}",
        acknowledged.len()
    );
    server.restart().await;

    for id in &acknowledged {
        let (status, read) = json(
            server
                .client
                .get(format!("{}/Patient/{id}", server.base))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            status, 200,
            "acknowledged Patient/{id} after the crash: {read}"
        );
        assert_eq!(read["meta"]["versionId"], "1");
    }
    // Writes in flight at the kill may or may not have landed, but nothing half-way: every
    // search hit has a body, and the total counts exactly the hits.
    let (status, bundle) = json(
        server
            .client
            .get(format!("{}/Patient?_count=1000", server.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let entries = bundle["entry"].as_array().expect("entries");
    let total = bundle["total"].as_u64().expect("total") as usize;
    assert!(total < 1000, "one page holds them all: {total}");
    assert_eq!(entries.len(), total);
    assert!(
        total >= acknowledged.len() && total <= acknowledged.len() + CLIENTS,
        "{total} for {} acknowledged",
        acknowledged.len()
    );
    for entry in entries {
        let id = entry["resource"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("a search hit without a body: {entry}"));
        let (status, read) = json(
            server
                .client
                .get(format!("{}/Patient/{id}", server.base))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "search hit Patient/{id} reads: {read}");
        assert_eq!(read, entry["resource"]);
    }
}
both!(acknowledged_writes_survive_a_crash_mid_load);

async fn health_and_readiness(server: Server) {
    let (status, body) = json(
        server
            .client
            .get(format!("{}/healthz", server.root))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let response = server
        .client
        .get(format!("{}/readyz", server.root))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let (_, body) = json(response).await;
    assert!(body.is_object(), "{body}");
    assert_eq!(body["status"], "ready");
}
both!(health_and_readiness);

async fn every_answer_has_a_request_id(server: Server) {
    let created = server.create(&server.base, &patient("Ids", "i-1")).await;
    let requests = [
        (server.client.get(format!("{}/healthz", server.root)), 200),
        (
            server.client.get(format!(
                "{}/Patient/{}",
                server.base,
                created["id"].as_str().unwrap()
            )),
            200,
        ),
        (
            server
                .client
                .get(format!("{}/Patient/missing", server.base)),
            404,
        ),
        (server.client.get(format!("{}/nowhere", server.root)), 404),
        (
            server
                .client
                .post(format!("{}/Patient", server.base))
                .header("content-type", JSON)
                .body("{"),
            400,
        ),
    ];
    let mut seen = Vec::new();
    for (request, status) in requests {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{}", response.url());
        let id = response
            .headers()
            .get("x-request-id")
            .unwrap_or_else(|| panic!("X-Request-Id on {}", response.url()));
        let id = id.to_str().unwrap().to_owned();
        assert!(
            !id.is_empty() && !seen.contains(&id),
            "a fresh id each time: {id}"
        );
        seen.push(id);
    }

    let response = server
        .client
        .get(format!("{}/Patient/missing", server.base))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["x-request-id"], "abc-123");
}
both!(every_answer_has_a_request_id);

async fn sigterm_shuts_down_cleanly(mut server: Server) {
    server.create(&server.base, &patient("Term", "t-1")).await;
    assert!(
        server.terminate().await,
        "exit code 0 after SIGTERM; log:\n{}",
        server.log()
    );
}
both!(sigterm_shuts_down_cleanly);

async fn json_logs_are_json(backend: Backend) {
    let env = [("FHIR_LOG_FORMAT", "json"), ("FHIR_LOG", "debug")];
    let mut server = Server::start_with(backend, &[], &env)
        .await
        .expect("the server starts");
    server.create(&server.base, &patient("Logged", "l-1")).await;
    let _ = server
        .client
        .get(format!("{}/Patient/missing", server.base))
        .send()
        .await
        .unwrap();
    let _ = server
        .client
        .get(format!(
            "{}/Patient?identifier=secret-mrn-4711",
            server.base
        ))
        .send()
        .await
        .unwrap();
    assert!(server.terminate().await);

    let log = server.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 2, "some log lines: {log}");
    for line in lines {
        let value: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(value.is_object(), "{line}");
    }
    assert!(
        log.contains("request_id"),
        "requests are logged with their id: {log}"
    );
    // Each request's span names its tenant and interaction, never its query.
    assert!(log.contains(r#""interaction":"create""#), "{log}");
    assert!(log.contains(r#""interaction":"read""#), "{log}");
    assert!(log.contains(r#""interaction":"search-type""#), "{log}");
    assert!(log.contains(r#""tenant":"default""#), "{log}");
    assert!(
        !log.contains("secret-mrn-4711"),
        "no query strings in the log: {log}"
    );
}
both_backends!(json_logs_are_json);

async fn migrate_is_idempotent(server: Server) {
    let output = server.run_cli(&["migrate"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "migrate: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("up to date"), "{stdout}");
}
both!(migrate_is_idempotent);

#[test]
fn migrate_prepares_a_fresh_sqlite_database() {
    let dir = std::env::temp_dir().join(format!(
        "fhir-test-migrate-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("fresh.db");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_fhir-server"))
        .args(["migrate", "--database", &path.display().to_string()])
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let exists = path.exists();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(output.status.success(), "migrate: {stderr}");
    assert!(stdout.contains("up to date"), "{stdout}");
    assert!(exists, "the database file was created");
}

async fn admin_token_is_required_when_set(backend: Backend) {
    let server = Server::start_with(backend, &[], &[("FHIR_ADMIN_TOKEN", "secret")])
        .await
        .expect("the server starts");
    let url = format!("{}/admin/tenants", server.root);
    let body = serde_json::json!({"id": "guarded", "name": "Guarded"});

    let (status, outcome) = json(server.client.post(&url).json(&body).send().await.unwrap()).await;
    assert_eq!(status, 401, "{outcome}");
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    let (status, _) = json(
        server
            .client
            .post(&url)
            .bearer_auth("wrong")
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = json(
        server
            .client
            .post(&url)
            .header("authorization", "secret")
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        status, 401,
        "the token alone, without 'Bearer', is not accepted"
    );

    let (status, created) = json(
        server
            .client
            .post(&url)
            .bearer_auth("secret")
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let (status, _) = json(
        server
            .client
            .get(format!("{}/metadata", server.tenant_base("guarded")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
}
both_backends!(admin_token_is_required_when_set);

/// `fhir-server reindex` rebuilds the search index from the stored resources: after it,
/// searches find exactly what they found before, on the live database.
async fn reindex_rebuilds_the_search_index(server: Server) {
    let created = server
        .create(&server.base, &patient("Reindexed", "r-1"))
        .await;
    let id = created["id"].as_str().expect("id").to_owned();
    let find = || async {
        let url = format!("{}/Patient?name=reindexed", server.base);
        let (status, bundle) = json(server.client.get(url).send().await.unwrap()).await;
        assert_eq!(status, 200, "{bundle}");
        bundle["entry"]
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| e["resource"]["id"].as_str().unwrap_or_default().to_owned())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    assert_eq!(find().await, vec![id.clone()]);
    let output = server.run_cli(&["reindex"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "reindex failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("reindexed 1 resources"), "{stdout}");
    assert_eq!(find().await, vec![id]);
}
both!(reindex_rebuilds_the_search_index);

/// Browser apps on a configured origin get CORS answers; other origins get none.
async fn cors_for_configured_origins(backend: Backend) {
    let origin = "https://app.example.org";
    let Some(server) = Server::start_with(
        backend,
        &["--cors-origins", &format!("{origin},http://localhost:3000")],
        &[],
    )
    .await
    else {
        eprintln!("skipped: FHIR_TEST_POSTGRES_URL is not set");
        return;
    };
    let preflight = server
        .client
        .request(reqwest::Method::OPTIONS, format!("{}/Patient", server.base))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type, if-none-exist",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let headers = preflight.headers();
    assert_eq!(headers["access-control-allow-origin"], origin);
    let methods = headers["access-control-allow-methods"].to_str().unwrap();
    assert!(
        methods.contains("POST") && methods.contains("PATCH"),
        "{methods}"
    );
    let allowed = headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    for header in [
        "authorization",
        "content-type",
        "if-none-exist",
        "prefer",
        "if-match",
    ] {
        assert!(allowed.contains(header), "{header} in {allowed}");
    }

    let created = server
        .client
        .post(format!("{}/Patient", server.base))
        .header("origin", origin)
        .header("content-type", JSON)
        .body(patient("Cors", "c-1").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["access-control-allow-origin"], origin);
    let exposed = created.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    for header in [
        "location",
        "etag",
        "content-location",
        "last-modified",
        "x-request-id",
    ] {
        assert!(exposed.contains(header), "{header} in {exposed}");
    }

    // The admin API and the health checks are not opened to browsers.
    let admin = server
        .client
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/admin/tenants", server.root),
        )
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(admin.headers().get("access-control-allow-origin").is_none());

    // Another origin is not let in.
    let other = server
        .client
        .get(format!("{}/metadata", server.base))
        .header("origin", "https://evil.example.com")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}
both_backends!(cors_for_configured_origins);

/// Without configured origins no CORS header is sent, and a bad origin stops the start.
async fn no_cors_by_default(server: Server) {
    let answer = server
        .client
        .get(format!("{}/metadata", server.base))
        .header("origin", "https://app.example.org")
        .send()
        .await
        .unwrap();
    assert!(
        answer
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    let preflight = server
        .client
        .request(reqwest::Method::OPTIONS, format!("{}/Patient", server.base))
        .header("origin", "https://app.example.org")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 405);
    assert!(preflight.headers().contains_key("allow"));
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_fhir-server"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--cors-origins",
            "app.example.org",
        ])
        .args(["--database", &server.dir.join("other.db").to_string_lossy()])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("cors"));
}
both!(no_cors_by_default);

/// Opens a raw connection to the server and sends `text`, holding the connection open.
async fn raw(server: &Server, text: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", server.port()))
        .await
        .expect("connects");
    stream.write_all(text.as_bytes()).await.expect("writes");
    stream
}

/// Reads what the server sends until it closes the connection (or 20 s pass).
async fn read_to_close(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        stream.read_to_end(&mut answer),
    )
    .await;
    assert!(read.is_ok(), "the server closes the connection");
    String::from_utf8_lossy(&answer).into_owned()
}

/// Clients that never finish their headers or body are cut off, and the connection limit
/// keeps them from starving everyone else.
async fn slow_clients_are_cut_off(backend: Backend) {
    let args = [
        "--header-timeout-seconds",
        "1",
        "--body-timeout-seconds",
        "1",
        "--max-connections",
        "20",
    ];
    let Some(server) = Server::start_with(backend, &args, &[]).await else {
        eprintln!("skipped: FHIR_TEST_POSTGRES_URL is not set");
        return;
    };
    let mut slow = Vec::new();
    for _ in 0..40 {
        slow.push(raw(&server, "GET /healthz HTTP/1.1\r\nHost: x\r\n").await);
    }
    let healthy = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(15))
        .build()
        .unwrap()
        .get(format!("{}/healthz", server.root))
        .send()
        .await
        .expect("the server still answers");
    assert_eq!(healthy.status(), 200);
    let answer = read_to_close(&mut slow[0]).await;
    assert!(!answer.contains("200 OK"), "{answer}");

    let mut trickle = raw(
        &server,
        "POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\nContent-Length: 100\r\n\r\n{\"resource",
    )
    .await;
    let answer = read_to_close(&mut trickle).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let log = server.log();
    assert!(log.contains("connection limit reached"), "{log}");
    assert!(
        log.contains("did not send its request headers in time"),
        "{log}"
    );
    assert!(
        log.contains("did not send its request body in time"),
        "{log}"
    );
}
both_backends!(slow_clients_are_cut_off);

/// On SIGTERM, keep-alive clients in the middle of their work get answers (no request is
/// reset), and a client trickling its headers does not hold the shutdown.
async fn sigterm_drains_keep_alive_clients(backend: Backend) {
    let args = [
        "--header-timeout-seconds",
        "2",
        "--shutdown-grace-seconds",
        "60",
    ];
    let Some(mut server) = Server::start_with(backend, &args, &[]).await else {
        eprintln!("skipped: FHIR_TEST_POSTGRES_URL is not set");
        return;
    };
    let created = server.create(&server.base, &patient("Drain", "d-1")).await;
    let url = format!(
        "{}/Patient/{}",
        server.base,
        created["id"].as_str().unwrap()
    );
    let _trickler = raw(&server, "GET /healthz HTTP/1.1\r\nHo").await;
    let mut clients = Vec::new();
    for _ in 0..8 {
        let url = url.clone();
        clients.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let (mut answered, mut reset) = (0, Vec::new());
            let until = std::time::Instant::now() + std::time::Duration::from_secs(4);
            while std::time::Instant::now() < until {
                match client.get(&url).send().await {
                    Ok(response) if response.status() == 200 => {
                        answered += 1;
                        let _ = response.bytes().await;
                    }
                    Ok(response) => reset.push(format!("status {}", response.status())),
                    // Refused: the listener is closed, nothing was sent.
                    Err(error) if error.is_connect() => {
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                    Err(error) => reset.push(format!("{error:?}")),
                }
            }
            (answered, reset)
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let started = std::time::Instant::now();
    assert!(server.terminate().await, "exit 0; log:\n{}", server.log());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "the trickling client held the shutdown"
    );
    for client in clients {
        let (answered, reset) = client.await.unwrap();
        assert!(answered > 0);
        assert!(reset.is_empty(), "requests without an answer: {reset:?}");
    }
}
both_backends!(sigterm_drains_keep_alive_clients);

/// A server started with `--test-clock` lets a test move its clock forward instead of
/// sleeping; without the flag the endpoint does not exist.
async fn the_test_clock_moves_forward(backend: Backend) {
    let Some(server) = Server::start_with(backend, &["--test-clock"], &[]).await else {
        eprintln!("skipped: FHIR_TEST_POSTGRES_URL is not set");
        return;
    };
    let before = server.create(&server.base, &patient("Clock", "c-1")).await;
    let moved = server
        .client
        .post(format!("{}/admin/clock", server.root))
        .body(r#"{"advance_seconds": 172800}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), 200);
    let after = server.create(&server.base, &patient("Clock", "c-2")).await;
    let instant = |r: &Value| r["meta"]["lastUpdated"].as_str().unwrap().to_owned();
    let (day_before, day_after) = (
        instant(&before)[..10].to_owned(),
        instant(&after)[..10].to_owned(),
    );
    assert!(day_after > day_before, "{day_before} then {day_after}");
    let back = server
        .client
        .post(format!("{}/admin/clock", server.root))
        .body(r#"{"advance_seconds": -5}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), 400, "the clock never goes back");

    let Some(plain) = Server::start(backend).await else {
        return;
    };
    let refused = plain
        .client
        .post(format!("{}/admin/clock", plain.root))
        .body(r#"{"advance_seconds": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 404);
}
both_backends!(the_test_clock_moves_forward);
