//! Rate limits, on both databases: per source address and per client (token buckets,
//! 429 with `Retry-After`), 40 requests at once let through no more than the bucket
//! holds, and it refills as the server's clock moves; the authorization server's stricter
//! limit; bad settings refused at start.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure
#![allow(clippy::too_many_lines)] // a test reads as one story

mod common;

use common::{Backend, Server};

async fn statuses(requests: Vec<reqwest::RequestBuilder>) -> Vec<reqwest::Response> {
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|request| tokio::spawn(async move { request.send().await.unwrap() }))
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

async fn rate_limits(backend: Backend) {
    let args = [
        "--auth",
        "smart",
        "--rate-limit",
        "5/min",
        "--auth-rate-limit",
        "4/min",
        "--trusted-proxies",
        "127.0.0.1",
        "--test-clock",
        "--admin-token",
        "admin-secret",
    ];
    let Some(server) = Server::start_with(backend, &args, &[]).await else {
        eprintln!("skipped: FHIR_TEST_POSTGRES_URL is not set");
        return;
    };
    // 40 at once from one address: the bucket's five get through, the others get 429.
    let client = reqwest::Client::new();
    let metadata = format!("{}/metadata", server.base);
    let answers = statuses((0..40).map(|_| client.get(&metadata)).collect()).await;
    let passed = answers.iter().filter(|a| a.status() == 200).count();
    assert!((5..=7).contains(&passed), "{passed} got through");
    let refused = answers.into_iter().find(|a| a.status() == 429).unwrap();
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=12).contains(&retry_after), "{retry_after}");
    let (_, outcome) = common::json(refused).await;
    assert_eq!(outcome["issue"][0]["code"], "throttled", "{outcome}");
    // Another address (through the trusted proxy) has its own bucket.
    let other = client
        .get(&metadata)
        .header("x-forwarded-for", "198.51.100.7")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    // The bucket refills (one request every 12 s, full after a minute), on the server's
    // clock: a slow machine cannot refill it in the middle of the test.
    server.advance_clock(60).await;
    assert_eq!(client.get(&metadata).send().await.unwrap().status(), 200);

    // One client from many addresses: its own bucket empties.
    let token =
        common::signin::backend_client(&server, "busy", "busy-secret-0123456789", "system/*.rs")
            .await;
    let patients = format!("{}/Patient", server.base);
    let answers = statuses(
        (0..20)
            .map(|n| {
                client
                    .get(&patients)
                    .bearer_auth(&token)
                    .header("x-forwarded-for", format!("203.0.113.{n}"))
            })
            .collect(),
    )
    .await;
    let passed = answers.iter().filter(|a| a.status() == 200).count();
    assert!(
        (5..=7).contains(&passed),
        "{passed} of one client's got through"
    );
    let (_, outcome) = common::json(answers.into_iter().find(|a| a.status() == 429).unwrap()).await;
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("client"),
        "{outcome}"
    );

    // The token endpoint's limit is stricter: four a minute from one address.
    let mut codes = Vec::new();
    for _ in 0..6 {
        let response = client
            .post(format!("{}/auth/token", server.base))
            .header("x-forwarded-for", "192.0.2.44")
            .basic_auth("busy", Some("wrong-secret"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials")
            .send()
            .await
            .unwrap();
        codes.push(response.status().as_u16());
        if response.status() == 429 {
            let retry_after: u64 = response.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=15).contains(&retry_after), "{retry_after}");
        }
    }
    assert_eq!(codes, [401, 401, 401, 401, 429, 429], "{codes:?}");
}

mod rates {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::rate_limits(super::Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::rate_limits(super::Backend::Postgres).await;
    }
}

#[test]
fn bad_rate_settings_are_refused_at_start() {
    for (flag, value) in [("--rate-limit", "5/day"), ("--auth-rate-limit", "many")] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_fhir-server"))
            .args([
                "serve",
                "--auth",
                "none",
                "--listen",
                "127.0.0.1:0",
                "--database",
            ])
            .arg(std::env::temp_dir().join(format!("rate-{}.db", uuid::Uuid::new_v4().simple())))
            .args([flag, value])
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(flag), "{stderr}");
    }
}

/// A self-signed certificate for 127.0.0.1 with `serial`, written to `dir`.
fn make_certificate(dir: &std::path::Path, serial: u32) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let (new_cert, new_key) = (dir.join("cert.new"), dir.join("key.new"));
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args([
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .args(["-set_serial", &serial.to_string()])
        .arg("-keyout")
        .arg(&new_key)
        .arg("-out")
        .arg(&new_cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success());
    std::fs::rename(&new_key, &key).unwrap();
    std::fs::rename(&new_cert, &cert).unwrap();
}

/// The serial number of the certificate the server presents now (openssl s_client).
fn served_serial(port: u16) -> String {
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo | openssl s_client -connect 127.0.0.1:{port} 2>/dev/null | openssl x509 -noout -serial"
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn curl(args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new("curl")
        .args(["-s", "-S", "-D", "-", "-o", "/dev/null", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl runs");
    said(&output)
}

/// Whether a process succeeded, and what it wrote (stdout, then stderr).
fn said(output: &std::process::Output) -> (bool, String) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// HTTPS with a certificate the test makes, checked with curl and openssl: TLS 1.2 and
/// 1.3 answered with HSTS, TLS 1.1 and plain HTTP refused, a renewed certificate served
/// without a restart (and a broken one not taken).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_reloaded_certificates() {
    let dir = std::env::temp_dir().join(format!("tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    make_certificate(&dir, 1001);
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let args = [
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    let server = Server::start_with(Backend::Sqlite, &args, &[])
        .await
        .unwrap();
    assert!(server.root.starts_with("https://"), "{}", server.root);
    let url = format!("{}/metadata", server.base);
    let ca = cert.to_str().unwrap();
    for version in [
        ["--tlsv1.3", "--tls-max", "1.3"],
        ["--tlsv1.2", "--tls-max", "1.2"],
    ] {
        let (ok, answer) = curl(&[&["--cacert", ca], &version[..], &[url.as_str()]].concat());
        assert!(
            ok && answer.starts_with("HTTP/1.1 200"),
            "{version:?}: {answer}"
        );
        assert!(
            answer
                .to_lowercase()
                .contains("strict-transport-security: max-age=31536000; includesubdomains"),
            "{answer}"
        );
    }
    let (ok, answer) = curl(&[
        "--cacert",
        ca,
        "--tlsv1.1",
        "--tls-max",
        "1.1",
        "--ciphers",
        "DEFAULT@SECLEVEL=0",
        &url,
    ]);
    assert!(!ok, "TLS 1.1 is refused: {answer}");
    let plain = url.replace("https://", "http://");
    let (ok, answer) = curl(&[&plain]);
    assert!(
        !ok || !answer.contains("200"),
        "plain HTTP is not served: {answer}"
    );
    // Renewed on disk: served within seconds, no restart.
    assert_eq!(served_serial(server.port()), "serial=03E9");
    make_certificate(&dir, 2002);
    let mut serial = String::new();
    for _ in 0..40 {
        serial = served_serial(server.port());
        if serial == "serial=07D2" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(serial, "serial=07D2", "the renewed certificate is served");
    // A broken file is not taken: the last good certificate stays.
    std::fs::write(&cert, "not a certificate").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(served_serial(server.port()), "serial=07D2");
    assert!(server.log().contains("does not load"), "the log says so");
    let (ok, _) = curl(&[&url]);
    assert!(
        !ok,
        "a client that does not trust the certificate does not connect"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A backup taken while 20 clients write, restored into a new database: every write
/// acknowledged before the backup began is there, and the audit trail verifies.
async fn backup_under_load_restores_acknowledged_writes(server: Server) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for n in 0..20 {
        let (client, base) = (server.client.clone(), server.base.clone());
        let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let (family, mrn) = (format!("Load{n}x{i}"), format!("L-{n}-{i}"));
                let id = common::post_patient(&client, &base, &family, &mrn).await;
                acknowledged.lock().unwrap().push(id);
                i += 1;
            }
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let before: Vec<String> = acknowledged.lock().unwrap().clone();
    let file = server.dir.join("backup.bin");
    let output = server.run_cli(&["backup", "--out", file.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    assert!(before.len() >= 20, "the load ran: {}", before.len());
    let (restored, admin) = match server.backend {
        Backend::Sqlite => (server.dir.join("restored.db").display().to_string(), None),
        Backend::Postgres => {
            let admin = std::env::var("FHIR_TEST_POSTGRES_URL").unwrap();
            let name = format!("restored_{}", uuid::Uuid::new_v4().simple());
            common::psql_run(&admin, &format!("CREATE DATABASE {name}"));
            let (prefix, _) = admin.rsplit_once('/').unwrap();
            (format!("{prefix}/{name}"), Some((admin, name)))
        }
    };
    let restore = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_fhir-server"))
            .args(args)
            .args(["--database", &restored])
            .output()
            .unwrap()
    };
    let output = restore(&["restore", file.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = restore(&["restore", file.to_str().unwrap()]);
    assert!(
        !output.status.success(),
        "a restore over a database that is not empty is refused"
    );
    let output = restore(&["audit", "verify"]);
    let verdict = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && verdict.contains("intact"),
        "{verdict}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let store = fhir_server::store::Store::open(&restored, 2, None)
        .await
        .unwrap();
    let tenant = store.tenant_id("default").await.unwrap().unwrap();
    for id in &before {
        let found = store.read(tenant, "Patient", id).await.unwrap();
        assert!(
            found.is_some(),
            "Patient/{id}, acknowledged before the backup, is restored"
        );
    }
    drop(store);
    if let Some((admin, name)) = admin {
        common::psql_run(
            &admin,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        );
    }
}

both!(backup_under_load_restores_acknowledged_writes);

/// The server on an existing SQLite file with `key_file`; its child process and base URL.
async fn serve_on(
    database: &std::path::Path,
    key_file: &std::path::Path,
) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_fhir-server"))
        .args([
            "serve",
            "--auth",
            "none",
            "--listen",
            "127.0.0.1:0",
            "--database",
        ])
        .arg(database)
        .arg("--database-key-file")
        .arg(key_file)
        .env("FHIR_AUDIT_KEY_FILE", database.with_file_name("audit.key"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    while let Some(line) = lines.next_line().await.unwrap() {
        if let Some(address) = line.strip_prefix("fhir-server listening on ") {
            return (child, format!("{address}/fhir"));
        }
    }
    panic!("the server did not start on {}", database.display());
}

fn holds(path: &std::path::Path, text: &str) -> bool {
    let mut bytes = std::fs::read(path).unwrap_or_default();
    bytes.extend(std::fs::read(format!("{}-wal", path.display())).unwrap_or_default());
    bytes.windows(text.len()).any(|w| w == text.as_bytes())
}

fn cli_with(args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_fhir-server"))
        .args(args)
        .env_remove("FHIR_DATABASE_KEY")
        .output()
        .unwrap();
    said(&output)
}

/// The embedded database encrypted at rest (SQLCipher): no patient's name in the file,
/// its WAL or its backup; nothing opens without the key; the key rotated; a plain database
/// encrypted in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_database_at_rest() {
    let dir = std::env::temp_dir().join(format!("enc-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let (key, key2) = (dir.join("db.key"), dir.join("db2.key"));
    std::fs::write(
        &key,
        format!(
            "{}{}\n",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        ),
    )
    .unwrap();
    std::fs::write(
        &key2,
        format!(
            "{}{}\n",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        ),
    )
    .unwrap();
    let database = dir.join("fhir.db");
    let (db, k, k2) = (
        database.to_str().unwrap(),
        key.to_str().unwrap(),
        key2.to_str().unwrap(),
    );
    let (mut child, base) = serve_on(&database, &key).await;
    let client = reqwest::Client::new();
    let patient = serde_json::json!({"resourceType": "Patient", "id": "z1",
        "name": [{"family": "Zanzibarian", "given": ["Quillon"]}],
        "identifier": [{"system": "urn:mrn", "value": "MRN-ENC-4242"}]});
    let put = client
        .put(format!("{base}/Patient/z1"))
        .header("content-type", common::JSON)
        .body(patient.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    assert_eq!(
        client
            .get(format!("{base}/Patient/z1"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    for name in ["Zanzibarian", "MRN-ENC-4242", "Quillon"] {
        assert!(
            !holds(&database, name),
            "{name} is readable in the file or its WAL"
        );
    }
    child.kill().await.unwrap();
    let (ok, said) = cli_with(&["migrate", "--database", db]);
    assert!(
        !ok && said.contains("encrypted and the key is wrong or missing"),
        "{said}"
    );
    let (ok, said) = cli_with(&[
        "audit",
        "verify",
        "--database",
        db,
        "--database-key-file",
        k,
    ]);
    assert!(ok && said.contains("intact"), "{said}");
    // A backup of it is encrypted too, and restores.
    let backup = dir.join("backup.bin");
    let (ok, said) = cli_with(&[
        "backup",
        "--out",
        backup.to_str().unwrap(),
        "--database",
        db,
        "--database-key-file",
        k,
    ]);
    assert!(ok, "{said}");
    assert!(!holds(&backup, "Zanzibarian"), "the backup is encrypted");
    let restored = dir.join("restored.db");
    let (ok, said) = cli_with(&[
        "restore",
        backup.to_str().unwrap(),
        "--database",
        restored.to_str().unwrap(),
    ]);
    assert!(ok, "{said}");
    let (ok, said) = cli_with(&[
        "audit",
        "verify",
        "--database",
        restored.to_str().unwrap(),
        "--database-key-file",
        k,
    ]);
    assert!(ok && said.contains("intact"), "{said}");
    // A new key: the old one no longer opens it.
    let (ok, said) = cli_with(&[
        "db",
        "rekey",
        "--database",
        db,
        "--database-key-file",
        k,
        "--new-key-file",
        k2,
    ]);
    assert!(ok, "{said}");
    let (ok, _) = cli_with(&["migrate", "--database", db, "--database-key-file", k]);
    assert!(!ok, "the old key is refused");
    let (mut child, base) = serve_on(&database, &key2).await;
    let read = client
        .get(format!("{base}/Patient/z1"))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    child.kill().await.unwrap();
    // A plain database, encrypted in place.
    let plain = dir.join("plain.db");
    let (ok, said) = cli_with(&["migrate", "--database", plain.to_str().unwrap()]);
    assert!(ok, "{said}");
    let conn = rusqlite::Connection::open(&plain).unwrap();
    conn.execute_batch("CREATE TABLE note (text TEXT); INSERT INTO note VALUES ('Plainfellow');")
        .unwrap();
    drop(conn);
    assert!(holds(&plain, "Plainfellow"));
    let (ok, said) = cli_with(&[
        "db",
        "encrypt",
        "--database",
        plain.to_str().unwrap(),
        "--database-key-file",
        k,
    ]);
    assert!(ok, "{said}");
    assert!(!holds(&plain, "Plainfellow"), "encrypted in place");
    let (ok, said) = cli_with(&[
        "migrate",
        "--database",
        plain.to_str().unwrap(),
        "--database-key-file",
        k,
    ]);
    assert!(ok, "{said}");
    let (ok, said) = cli_with(&[
        "db",
        "encrypt",
        "--database",
        plain.to_str().unwrap(),
        "--database-key-file",
        k,
    ]);
    assert!(!ok && said.contains("not a plain database"), "{said}");
    let _ = std::fs::remove_dir_all(&dir);
}
