//! Outside FHIR clients against the real server, on both databases: PyPI `fhirpy` and
//! `fhirclient` (`tests/clients/python_clients.py`) and npm `fhir-kit-client`
//! (`tests/clients/node_clients.mjs`) do what their users do, and check the answers as
//! those libraries read them (paging, the CapabilityStatement, get_or_create, operations).
//!
//! The libraries are installed by `.ci/run` (`pip install -r tests/clients/requirements.txt`,
//! `npm install` in `tests/clients`). Without them these tests are skipped with a note,
//! unless `FHIR_TEST_REQUIRE_CLIENTS=1` (set by `.ci/run`), when they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure

mod common;

use std::path::{Path, PathBuf};

use common::Server;

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

fn required() -> bool {
    std::env::var("FHIR_TEST_REQUIRE_CLIENTS").is_ok_and(|v| v == "1")
}

/// Runs `program script base`; false when the program or its libraries are missing.
fn run(program: &str, script: &str, base: &str, ready: bool) -> bool {
    if !ready {
        assert!(
            !required(),
            "{program} or its client libraries are not installed (see tests/clients)"
        );
        eprintln!("skipped: {program} client libraries are not installed (see tests/clients)");
        return false;
    }
    let output = std::process::Command::new(program)
        .arg(clients_dir().join(script))
        .arg(base)
        .current_dir(clients_dir())
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    assert!(
        output.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    true
}

fn python_ready() -> bool {
    std::process::Command::new("python3")
        .args(["-c", "import fhirpy, fhirclient"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn node_ready() -> bool {
    clients_dir().join("node_modules/fhir-kit-client").is_dir()
        && std::process::Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
}

async fn python_clients(server: Server) {
    run("python3", "python_clients.py", &server.base, python_ready());
}
both!(python_clients);

async fn node_client(server: Server) {
    run("node", "node_clients.mjs", &server.base, node_ready());
}
both!(node_client);
