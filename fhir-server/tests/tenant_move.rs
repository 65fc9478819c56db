//! Moving a practice between servers (`tenant export` / `tenant import`), on both
//! databases: every version, the accounts (a user signs in on the new server with the
//! old password, a backend with its old secret), the time an appointment holds, and the
//! audit trail, which still verifies there (from its re-signed checkpoint, and against a
//! head exported on the old server). A tampered or cut-off export is refused whole.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure
#![allow(clippy::too_many_lines)] // a test reads as one story

mod common;

use common::signin::{PASSWORD, VERIFIER, exchange, query_value, sign_in, with_token};
use common::{Backend, Server};
use serde_json::{Value, json};

const STAFF_SCOPE: &str = "user/*.cruds openid fhirUser";
const SECRET: &str = "backend-secret-0123456789";

fn cli(server: &Server, args: &[&str]) -> (bool, String) {
    let output = server.run_cli(args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn cli_ok(server: &Server, args: &[&str]) -> String {
    let (ok, text) = cli(server, args);
    assert!(ok, "{args:?}: {text}");
    text
}

async fn backend_token(server: &Server) -> String {
    common::signin::client_token(server, "backend", SECRET, "system/*.cruds").await
}

async fn send(
    server: &Server,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    with_token(server, token, method, path, body.as_ref()).await
}

/// The practice on the old server: versions, a deleted resource, a booked visit, reads.
async fn fill(old: &Server, token: &str) {
    use reqwest::Method;
    common::signin::put_all(
        old,
        token,
        &[
        json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Quil"}]}),
        json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Quill", "given": ["Ada"]}]}),
        json!({"resourceType": "Patient", "id": "gone", "name": [{"family": "Gone"}]}),
        json!({"resourceType": "Practitioner", "id": "d1", "name": [{"family": "Doc"}]}),
        json!({"resourceType": "Appointment", "id": "a1", "status": "booked",
            "start": "2026-12-10T09:00:00Z", "end": "2026-12-10T09:30:00Z",
            "participant": [{"actor": {"reference": "Patient/p1"}, "status": "accepted"},
                {"actor": {"reference": "Practitioner/d1"}, "status": "accepted"}]}),
        ],
    )
    .await;
    let (status, _) = send(old, token, Method::DELETE, "Patient/gone", None).await;
    assert!(status == 200 || status == 204, "{status}");
    let (status, _) = send(old, token, Method::GET, "Patient/p1", None).await;
    assert_eq!(status, 200);
}

/// Waits until the old server pruned the records past retention (its clock moved).
async fn wait_for_pruning(old: &Server) -> String {
    let mut verdict = String::new();
    for _ in 0..50 {
        // Until the key is made, a verify that starts before it cannot check the
        // checkpoint made just after.
        let ok;
        (ok, verdict) = cli(old, &["audit", "verify"]);
        if ok && !verdict.contains("records 1 to") {
            return verdict;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("the old records were not pruned: {verdict}");
}

async fn a_practice_moves_with_everything(backend: Backend, to: Backend) {
    use reqwest::Method;
    let args = [
        "--auth",
        "smart",
        "--admin-token",
        "admin-secret",
        "--test-clock",
        "--audit-retention-days",
        "1",
    ];
    let Some(old) = Server::start_with(backend, &args, &[]).await else {
        eprintln!("skipped: FHIR_TEST_POSTGRES_URL is not set");
        return;
    };
    common::signin::public_app(&old, STAFF_SCOPE);
    let token = common::signin::backend_client(&old, "backend", SECRET, "system/*.cruds").await;
    fill(&old, &token).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // Past retention: the first records are pruned behind a checkpoint.
    old.advance_clock(2 * 86_400).await;
    let token = backend_token(&old).await;
    send(&old, &token, Method::GET, "Patient?family=Quill", None).await;
    wait_for_pruning(&old).await;
    let doc =
        common::signin::user_token(&old, ("doc", "provider", "Practitioner/d1"), STAFF_SCOPE).await;
    let (status, old_p1) = send(&old, &doc, Method::GET, "Patient/p1", None).await;
    assert_eq!(status, 200);
    let (_, old_v1) = send(&old, &doc, Method::GET, "Patient/p1/_history/1", None).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let head = old.dir.join("head.json");
    std::fs::write(&head, cli_ok(&old, &["audit", "head"])).unwrap();

    // A job waiting for its time (of a kind no worker takes), naming its tenant by number.
    old.sql(
        "INSERT INTO jobs (id, tid, kind, status, created_at, updated_at, state, run_at) \
         SELECT 'waiting', tid, 'test-waiting', 'queued', 0, 0, \
         '{\"tenant\": ' || tid || ', \"appointment\": \"a1\"}', 4102444800000000 \
         FROM tenants WHERE id = 'default'",
    );
    let old_tid = query_one(
        &old,
        "SELECT CAST(tid AS TEXT) FROM tenants WHERE id = 'default'",
    );

    // Exported while the old server runs.
    let dir = old.dir.join("moved");
    let exported = cli_ok(&old, &["tenant", "export", dir.to_str().unwrap()]);
    assert!(exported.contains("resource_versions"), "{exported}");
    let (ok, text) = cli(&old, &["tenant", "export", dir.to_str().unwrap()]);
    assert!(!ok && text.contains("not empty"), "{text}");

    let mut new = Server::start_with(to, &args[..4], &[]).await.unwrap();
    assert!(new.terminate().await);
    // The practice gets another number here than there.
    new.sql(
        "INSERT INTO tenants (id, name, created_at) VALUES ('other', NULL, 0); \
         DELETE FROM tenants WHERE id = 'default'; \
         INSERT INTO tenants (id, name, created_at) VALUES ('default', NULL, 0);",
    );
    let imported = cli_ok(&new, &["tenant", "import", dir.to_str().unwrap()]);
    assert!(imported.contains("intact"), "{imported}");
    new.start_again().await;
    let new_tid = query_one(
        &new,
        "SELECT CAST(tid AS TEXT) FROM tenants WHERE id = 'default'",
    );
    assert_ne!(new_tid, old_tid);
    let state: Value = serde_json::from_str(&query_one(
        &new,
        "SELECT state FROM jobs WHERE kind = 'test-waiting'",
    ))
    .unwrap();
    assert_eq!(
        state["tenant"].to_string(),
        new_tid,
        "the waiting job works for the tenant's new number"
    );

    // The resources, their history and their index.
    let token = backend_token(&new).await;
    let (status, p1) = send(&new, &token, Method::GET, "Patient/p1", None).await;
    assert_eq!(status, 200);
    assert_eq!(p1["meta"], old_p1["meta"], "same version, same time");
    let (_, v1) = send(&new, &token, Method::GET, "Patient/p1/_history/1", None).await;
    assert_eq!(v1, old_v1);
    let (_, history) = send(&new, &token, Method::GET, "Patient/p1/_history", None).await;
    assert_eq!(common::entries(&history).len(), 2, "{history}");
    let (status, _) = send(&new, &token, Method::GET, "Patient/gone", None).await;
    assert_eq!(status, 410, "deleted there, deleted here");
    let (_, found) = send(&new, &token, Method::GET, "Patient?family=Quill", None).await;
    assert_eq!(common::resource_ids(&found), ["p1"], "{found}");
    // The booked time is still held.
    let clash = json!({"resourceType": "Appointment", "status": "booked",
        "start": "2026-12-10T09:10:00Z", "end": "2026-12-10T09:40:00Z",
        "participant": [{"actor": {"reference": "Practitioner/d1"}, "status": "accepted"}]});
    let (status, outcome) = send(&new, &token, Method::POST, "Appointment", Some(clash)).await;
    assert_eq!(status, 409, "{outcome}");
    // The user signs in with the password set on the old server.
    let location = sign_in(&new, "doc", PASSWORD, STAFF_SCOPE, &[])
        .await
        .unwrap();
    let (status, tokens) = exchange(&new, &query_value(&location, "code").unwrap(), VERIFIER).await;
    assert_eq!(status, 200, "{tokens}");
    let doc = tokens["access_token"].as_str().unwrap();
    let (status, _) = send(&new, doc, Method::GET, "Patient/p1", None).await;
    assert_eq!(status, 200);

    // The trail: the old head is in it, the checkpoint holds with this server's key, and
    // this server's records continue the chain.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let verdict = cli_ok(&new, &["audit", "verify", "--head", head.to_str().unwrap()]);
    assert!(
        verdict.contains("intact") && !verdict.contains("records 1 to"),
        "{verdict}"
    );
    let old_head: Value = serde_json::from_str(&std::fs::read_to_string(&head).unwrap()).unwrap();
    let new_head: Value = serde_json::from_str(&cli_ok(&new, &["audit", "head"])).unwrap();
    assert!(
        new_head["seq"].as_i64() > old_head["seq"].as_i64(),
        "{new_head} {old_head}"
    );

    // Not twice; not a tampered trail; not a cut-off file.
    let (ok, text) = cli(&new, &["tenant", "import", dir.to_str().unwrap()]);
    assert!(!ok && text.contains("not empty"), "{text}");
    let tampered = copy_export(&dir, &new.dir.join("tampered"));
    edit_first_line(&tampered.join("audit_log.ndjson"), |row| {
        row[2] = json!("delete")
    });
    let (ok, text) = cli(
        &new,
        &[
            "tenant",
            "import",
            tampered.to_str().unwrap(),
            "--as",
            "other",
        ],
    );
    assert!(!ok && text.contains("CHANGED"), "{text}");
    // A record renumbered past what SQLite's trail keys (2^44, migration 0015): the
    // export's chain is checked first, and the gap refuses it whole on either database.
    let beyond = copy_export(&dir, &new.dir.join("beyond"));
    edit_first_line(&beyond.join("audit_log.ndjson"), |row| {
        row[0] = json!(1_i64 << 44)
    });
    let (ok, text) = cli(
        &new,
        &["tenant", "import", beyond.to_str().unwrap(), "--as", "far"],
    );
    assert!(!ok && text.contains("not whole"), "{text}");
    // A current version that is not a valid resource (resources are validated as on any
    // write): the first row is Appointment/a1's only version.
    let invalid = copy_export(&dir, &new.dir.join("invalid"));
    edit_first_line(&invalid.join("resource_versions.ndjson"), |row| {
        assert_eq!(row[..2], [json!("Appointment"), json!("a1")]);
        row[5]["status"] = json!(42);
    });
    let (ok, text) = cli(
        &new,
        &["tenant", "import", invalid.to_str().unwrap(), "--as", "bad"],
    );
    assert!(
        !ok && text.contains("Appointment/a1") && text.contains("status"),
        "{text}"
    );
    let cut = copy_export(&dir, &new.dir.join("cut"));
    let versions = cut.join("resource_versions.ndjson");
    let first = std::fs::read_to_string(&versions)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned();
    std::fs::write(&versions, format!("{first}\n")).unwrap();
    let (ok, text) = cli(
        &new,
        &["tenant", "import", cut.to_str().unwrap(), "--as", "cut"],
    );
    assert!(!ok && text.contains("cut off"), "{text}");
    let (ok, text) = cli(&new, &["audit", "verify", "--tenant", "cut"]);
    assert!(
        !ok && text.contains("no tenant 'cut'"),
        "nothing of it stays: {text}"
    );
}

/// The first column of the first row of a query on the server's database, as text.
fn query_one(server: &Server, sql: &str) -> String {
    match server.backend {
        Backend::Sqlite => rusqlite::Connection::open(&server.database_url)
            .unwrap()
            .query_row(sql, [], |row| row.get(0))
            .unwrap(),
        Backend::Postgres => {
            let output = std::process::Command::new("psql")
                .args([server.database_url.as_str(), "-tAc", sql])
                .output()
                .unwrap();
            assert!(output.status.success(), "{sql}");
            String::from_utf8(output.stdout).unwrap().trim().to_owned()
        }
    }
}

fn copy_export(from: &std::path::Path, to: &std::path::Path) -> std::path::PathBuf {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
    to.to_owned()
}

fn edit_first_line(file: &std::path::Path, edit: impl FnOnce(&mut Vec<Value>)) {
    let text = std::fs::read_to_string(file).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut row: Vec<Value> = serde_json::from_str(&lines[0]).unwrap();
    edit(&mut row);
    lines[0] = Value::Array(row).to_string();
    std::fs::write(file, lines.join("\n") + "\n").unwrap();
}

mod a_practice_moves {
    use super::Backend::{Postgres, Sqlite};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::a_practice_moves_with_everything(Sqlite, Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::a_practice_moves_with_everything(Postgres, Postgres).await;
    }

    /// From the embedded database to production's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_to_postgres() {
        if !crate::common::postgres_configured() {
            return eprintln!("skipped: FHIR_TEST_POSTGRES_URL is not set");
        }
        super::a_practice_moves_with_everything(Sqlite, Postgres).await;
    }
}
