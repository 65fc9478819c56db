//! The end-to-end harness: starts the real `fhir-server` binary on a fresh database
//! (SQLite in a temporary folder, or a new PostgreSQL database) and talks to it over HTTP.
//!
//! PostgreSQL tests run when `FHIR_TEST_POSTGRES_URL` names a server database to connect to
//! (e.g. `postgres://postgres@127.0.0.1:5432/test`); each server gets its own new database.
//! When the variable is set, a PostgreSQL that cannot be reached fails the test; when it is
//! unset, the PostgreSQL half of each test is skipped with a note, unless
//! `FHIR_TEST_REQUIRE_POSTGRES=1` (set by `.ci/run`), when it fails.
#![allow(dead_code)]

pub mod signin;
pub mod smtp;
pub mod trail;
pub mod webdriver;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use reqwest::RequestBuilder;
use reqwest::header::HeaderMap;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const JSON: &str = "application/fhir+json";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A running server on its own database.
pub struct Server {
    child: Option<Child>,
    pub backend: Backend,
    /// `http://127.0.0.1:PORT`
    pub root: String,
    /// `http://127.0.0.1:PORT/fhir`
    pub base: String,
    pub database_url: String,
    pub dir: PathBuf,
    extra_args: Vec<String>,
    extra_env: Vec<(String, String)>,
    pg_database: Option<(String, String)>,
    pub client: reqwest::Client,
}

/// Runs a test body on both backends: `both!(name_of_async_fn);` makes
/// `name_of_async_fn::sqlite` and `name_of_async_fn::postgres`.
#[macro_export]
macro_rules! both {
    ($test:ident) => {
        mod $test {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let server = $crate::common::Server::start($crate::common::Backend::Sqlite).await;
                super::$test(server.expect("the SQLite server starts")).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                match $crate::common::Server::start($crate::common::Backend::Postgres).await {
                    Some(server) => super::$test(server).await,
                    None => eprintln!("skipped: FHIR_TEST_POSTGRES_URL is not set"),
                }
            }
        }
    };
}

/// The PostgreSQL URL the tests use, if any. With `FHIR_TEST_REQUIRE_POSTGRES=1` (as
/// `.ci/run` sets) a missing one fails the test instead of skipping its PostgreSQL half.
fn postgres_admin_url() -> Option<String> {
    let url = std::env::var("FHIR_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let required = std::env::var("FHIR_TEST_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
    assert!(
        url.is_some() || !required,
        "FHIR_TEST_REQUIRE_POSTGRES=1 but FHIR_TEST_POSTGRES_URL is not set"
    );
    url
}

/// Runs SQL on a PostgreSQL server database with psql.
pub fn psql_run(admin_url: &str, sql: &str) {
    psql(admin_url, sql);
}

fn psql(admin_url: &str, sql: &str) {
    let status = std::process::Command::new("psql")
        .arg(admin_url)
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .stdout(Stdio::null())
        .status()
        .expect("psql runs (PostgreSQL client tools are installed)");
    assert!(status.success(), "psql failed: {sql}");
}

impl Server {
    /// Starts a server on a fresh database; `None` for PostgreSQL when it is not configured.
    pub async fn start(backend: Backend) -> Option<Server> {
        Self::start_with(backend, &[], &[]).await
    }

    /// Starts a server with extra `serve` arguments and environment variables.
    pub async fn start_with(
        backend: Backend,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Option<Server> {
        Self::start_prepared(backend, args, env, "").await
    }

    /// Starts a server on a database that `setup` (SQL statements) has prepared first, as
    /// an older server would have left it.
    pub async fn start_prepared(
        backend: Backend,
        args: &[&str],
        env: &[(&str, &str)],
        setup: &str,
    ) -> Option<Server> {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("fhir-test-{unique}"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (database_url, pg_database) = match backend {
            Backend::Sqlite => (dir.join("fhir.db").display().to_string(), None),
            Backend::Postgres => {
                let admin = postgres_admin_url()?;
                let name = format!("fhir_test_{unique}");
                psql(&admin, &format!("CREATE DATABASE {name}"));
                let (prefix, _) = admin.rsplit_once('/').expect("URL has a database");
                (format!("{prefix}/{name}"), Some((admin, name)))
            }
        };
        let mut server = Server {
            child: None,
            backend,
            root: String::new(),
            base: String::new(),
            database_url,
            dir,
            extra_args: args.iter().map(|s| s.to_string()).collect(),
            extra_env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            pg_database,
            client: reqwest::Client::new(),
        };
        if !setup.is_empty() {
            match backend {
                Backend::Sqlite => rusqlite::Connection::open(&server.database_url)
                    .and_then(|conn| conn.execute_batch(setup))
                    .expect("the SQLite set-up runs"),
                Backend::Postgres => psql(&server.database_url, setup),
            }
        }
        server.spawn(None).await;
        Some(server)
    }

    /// Starts the process (again), on `port` if given.
    async fn spawn(&mut self, port: Option<u16>) {
        let listen = format!("127.0.0.1:{}", port.unwrap_or(0));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_fhir-server"));
        command
            .arg("serve")
            .args([
                "--listen",
                &listen,
                "--database",
                &self.database_url,
                "--db-pool",
                "8",
            ])
            .args(&self.extra_args)
            // The tests of the REST API run without authorization, unless a test asks for
            // SMART (`--auth smart`).
            .args(if self.extra_args.iter().any(|a| a == "--auth") {
                &[][..]
            } else {
                &["--auth", "none"][..]
            })
            .env_remove("FHIR_AUTH")
            .env_remove("FHIR_BASE_URL")
            .env_remove("FHIR_ADMIN_TOKEN")
            .env("FHIR_EXPORT_DIR", self.dir.join("exports"))
            // Reads' audit records appended promptly, for the tests that look for them.
            .env("FHIR_AUDIT_FLUSH_MS", "50")
            .env("FHIR_AUDIT_KEY_FILE", self.dir.join("audit.key"))
            .envs(self.extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        let mut child = command.spawn().expect("the server binary starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let address = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(address) = line.strip_prefix("fhir-server listening on ") {
                    return Some(address.to_owned());
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            panic!(
                "the server did not start; see {}",
                self.dir.join("server.log").display()
            )
        });
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.root = address;
        self.base = format!("{}/fhir", self.root);
        self.child = Some(child);
    }

    pub fn port(&self) -> u16 {
        self.root
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port")
    }

    /// Kills the process with SIGKILL: no shutdown, no flush.
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().expect("kill");
            child.wait().await.expect("wait");
        }
    }

    /// Sends SIGTERM and waits for the exit; returns whether it exited successfully.
    pub async fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let pid = child.id().expect("pid");
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill");
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .expect("the server exits after SIGTERM")
            .expect("wait");
        status.success()
    }

    /// Another server process on the same database, with the same settings: a second node
    /// behind a load balancer. Dropping it leaves the database to the first.
    pub async fn sibling(&self) -> Server {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("fhir-test-{unique}"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut server = Server {
            child: None,
            backend: self.backend,
            root: String::new(),
            base: String::new(),
            database_url: self.database_url.clone(),
            dir,
            extra_args: self.extra_args.clone(),
            extra_env: self.extra_env.clone(),
            pg_database: None,
            client: reqwest::Client::new(),
        };
        server.spawn(None).await;
        server
    }

    /// Starts the server again on the same database and port.
    pub async fn restart(&mut self) {
        let port = self.port();
        self.kill9().await;
        self.spawn(Some(port)).await;
    }

    /// Starts the server again, on the same database and port, after `kill9`.
    pub async fn start_again(&mut self) {
        let port = self.port();
        self.spawn(Some(port)).await;
    }

    /// Runs SQL statements on the server's database directly (as another process would).
    pub fn sql(&self, statements: &str) {
        match self.backend {
            Backend::Sqlite => rusqlite::Connection::open(&self.database_url)
                .and_then(|conn| conn.execute_batch(statements))
                .expect("the SQL runs"),
            Backend::Postgres => psql(&self.database_url, statements),
        }
    }

    /// Moves the server's clock (`--test-clock`) ahead by `seconds`, with the admin token
    /// `admin-secret` the tests start such servers with.
    pub async fn advance_clock(&self, seconds: u64) {
        let moved = self
            .client
            .post(format!("{}/admin/clock", self.root))
            .bearer_auth("admin-secret")
            .body(serde_json::json!({"advance_seconds": seconds}).to_string())
            .send()
            .await
            .expect("the server answers");
        assert_eq!(moved.status(), 200, "the clock moves");
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Runs the binary with other arguments (e.g. `tenant create`), on this database.
    pub fn run_cli(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_fhir-server"))
            .env("FHIR_AUDIT_KEY_FILE", self.dir.join("audit.key"))
            .args(args)
            .args(["--database", &self.database_url])
            .output()
            .expect("the binary runs")
    }

    /// `{root}/fhir` or `{root}/t/{tenant}/fhir`.
    pub fn tenant_base(&self, tenant: &str) -> String {
        if tenant == "default" {
            self.base.clone()
        } else {
            format!("{}/t/{tenant}/fhir", self.root)
        }
    }

    /// Creates a tenant through the admin API.
    pub async fn create_tenant(&self, id: &str) {
        let response = self
            .client
            .post(format!("{}/admin/tenants", self.root))
            .json(&serde_json::json!({"id": id, "name": id}))
            .send()
            .await
            .expect("admin API answers");
        assert_eq!(response.status(), 201, "tenant {id} created");
    }

    /// `{base}/{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    /// GET `{base}/{path}`: the status and the body as JSON.
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        self.get_json_url(&self.url(path)).await
    }

    /// GET an absolute `url` (another tenant's base, a link the server gave): the status and
    /// the body as JSON.
    pub async fn get_json_url(&self, url: &str) -> (u16, Value) {
        let response = self.client.get(url).send().await;
        json(response.expect("the server answers")).await
    }

    /// `method` `{base}/{path}` with `body` of `content_type`: the status and the body as JSON.
    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        let response = self
            .client
            .request(method, self.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await;
        json(response.expect("the server answers")).await
    }

    /// POST `{base}/{path}` with a JSON `body`: the status and the body as JSON.
    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let post = reqwest::Method::POST;
        self.send_json(post, path, JSON, body.to_string()).await
    }

    /// POSTs a resource to `{base}/{type}` and returns the created resource (asserting 201).
    pub async fn create(&self, base: &str, resource: &Value) -> Value {
        let resource_type = resource["resourceType"].as_str().expect("resourceType");
        let response = self
            .client
            .post(format!("{base}/{resource_type}"))
            .header("content-type", JSON)
            .body(resource.to_string())
            .send()
            .await
            .expect("create answers");
        let status = response.status();
        let body: Value = response.json().await.expect("JSON body");
        assert_eq!(status, 201, "create failed: {body}");
        body
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        if let Some((admin, name)) = &self.pg_database {
            // Let the killed server's connections go before dropping its database.
            std::thread::sleep(Duration::from_millis(100));
            let _ = std::process::Command::new("psql")
                .arg(admin)
                .args([
                    "-q",
                    "-c",
                    &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Reads a response as JSON, with its status.
pub async fn json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, value)
}

/// POSTs `patient(family, mrn)` to `{base}/Patient` (asserting 201); its id.
pub async fn post_patient(client: &reqwest::Client, base: &str, family: &str, mrn: &str) -> String {
    let created = client
        .post(format!("{base}/Patient"))
        .header("content-type", JSON)
        .body(patient(family, mrn).to_string())
        .send()
        .await
        .expect("the server answers");
    assert_eq!(created.status(), 201);
    let (_, created) = json(created).await;
    created["id"].as_str().expect("an id").to_owned()
}

/// A minimal valid Patient with an identifier.
pub fn patient(family: &str, mrn: &str) -> Value {
    serde_json::json!({
        "resourceType": "Patient",
        "identifier": [{"system": "http://example.org/mrn", "value": mrn}],
        "name": [{"family": family, "given": ["Test"]}],
        "gender": "female",
        "birthDate": "1980-02-29"
    })
}

/// Whether PostgreSQL tests run (`FHIR_TEST_POSTGRES_URL` is set).
pub fn postgres_configured() -> bool {
    postgres_admin_url().is_some()
}

/// Like `both!`, for tests that start their own server (e.g. with `Server::start_with`):
/// `both_backends!(name_of_async_fn);` calls `name_of_async_fn(Backend::Sqlite)` and
/// `name_of_async_fn(Backend::Postgres)` (skipped when PostgreSQL is not configured).
#[macro_export]
macro_rules! both_backends {
    ($test:ident) => {
        mod $test {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$test($crate::common::Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::common::postgres_configured() {
                    super::$test($crate::common::Backend::Postgres).await;
                } else {
                    eprintln!("skipped: FHIR_TEST_POSTGRES_URL is not set");
                }
            }
        }
    };
}

/// The `expression`s of every issue of an OperationOutcome.
pub fn issue_expressions(outcome: &Value) -> Vec<String> {
    outcome["issue"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|issue| issue["expression"].as_array().into_iter().flatten())
        .filter_map(|e| e.as_str().map(str::to_owned))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Requests and Bundles, as the test files use them
// ---------------------------------------------------------------------------------------

/// A response: status, headers, raw text and the body parsed as JSON (`Null` when empty).
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    pub body: Value,
}

impl Reply {
    /// Asserts the status, showing the body when it differs.
    pub fn expect(self, status: u16) -> Reply {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        self
    }

    /// A header that must be present.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header; status {}", self.status))
    }

    /// Asserts the body is an OperationOutcome with at least one issue.
    pub fn expect_outcome(&self) {
        assert_eq!(
            self.body["resourceType"], "OperationOutcome",
            "{}",
            self.text
        );
        assert!(
            self.body["issue"].as_array().is_some_and(|i| !i.is_empty()),
            "{}",
            self.text
        );
    }
}

/// Sends a request; the body must be JSON (or empty).
pub async fn send(request: RequestBuilder) -> Reply {
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("a body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    };
    Reply {
        status,
        headers,
        text,
        body,
    }
}

/// GET `{base}/{path}`.
pub async fn get(server: &Server, path: &str) -> Reply {
    send(server.client.get(server.url(path))).await
}

/// PUTs a resource to `{base}/{type}/{id}`, its own type and id, whatever the answer.
pub async fn put_resource(server: &Server, resource: &Value) -> Reply {
    let path = format!(
        "{}/{}",
        resource["resourceType"].as_str().expect("resourceType"),
        id_of(resource)
    );
    send(
        server
            .client
            .put(server.url(&path))
            .header("content-type", JSON)
            .body(resource.to_string()),
    )
    .await
}

/// PUTs a resource that does not exist yet to `{type}/{id}` (asserting 201); returns it as
/// stored.
pub async fn put_new(server: &Server, resource: &Value) -> Value {
    put_resource(server, resource).await.expect(201).body
}

/// PUTs a new version of an existing resource (asserting 200); returns it as stored.
pub async fn put_update(server: &Server, resource: &Value) -> Value {
    put_resource(server, resource).await.expect(200).body
}

/// PUTs a resource whether or not it exists yet (asserting any 2xx: created or updated);
/// returns the body.
pub async fn put_ok(server: &Server, resource: &Value) -> Value {
    let reply = put_resource(server, resource).await;
    assert!((200..300).contains(&reply.status), "{:?}", reply.text);
    reply.body
}

/// A resource's `id`, which it must have.
pub fn id_of(resource: &Value) -> String {
    resource["id"].as_str().expect("an id").to_owned()
}

/// The entries of a Bundle (none when it has no `entry`).
pub fn entries(bundle: &Value) -> Vec<Value> {
    bundle["entry"].as_array().cloned().unwrap_or_default()
}

/// The ids of the resources of a Bundle's entries, in order (entries without one left out).
pub fn resource_ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["resource"]["id"].as_str().map(str::to_owned))
        .collect()
}

/// The URL of a Bundle's link with this `relation` (`next`, `self`...), if any.
pub fn link(bundle: &Value, relation: &str) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == relation)
        .and_then(|l| l["url"].as_str())
        .map(str::to_owned)
}

/// Every page of a Bundle: `first`, then each page its `next` link (an absolute URL) leads
/// to, in order, each asserted to answer 200.
pub async fn all_pages(server: &Server, first: Value) -> Vec<Value> {
    let mut pages = vec![first];
    while let Some(next) = pages.last().and_then(|page| link(page, "next")) {
        assert!(pages.len() < 1000, "the next links never end");
        pages.push(send(server.client.get(&next)).await.expect(200).body);
    }
    pages
}

/// A set of ids, to compare what was found with what was expected regardless of order.
pub fn set<S: AsRef<str>>(ids: impl IntoIterator<Item = S>) -> BTreeSet<String> {
    ids.into_iter().map(|id| id.as_ref().to_owned()).collect()
}
