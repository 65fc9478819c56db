//! The protocol peers the messaging tests start: a real SMTP server
//! (`tests/messaging/smtp_server.py`, aiosmtpd with STARTTLS required) with a test CA made
//! by openssl, and the helper that starts any of the Python peers.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// A real SMTP server (`tests/messaging/smtp_server.py`) with its own test CA.
pub struct Smtp {
    child: Child,
    pub out: PathBuf,
    pub port: u16,
    pub ca: String,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl {args:?}");
}

/// A CA and a certificate for 127.0.0.1 and localhost signed by it.
pub fn certificates(dir: &Path) -> String {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=Test Relay CA"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    openssl(dir, &ca);
    let mut leaf = vec!["req", "-subj", "/CN=localhost"];
    leaf.extend(ec);
    leaf.extend(["-keyout", "key.pem", "-out", "leaf.csr"]);
    openssl(dir, &leaf);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "cert.pem",
        ],
    );
    std::fs::read_to_string(dir.join("ca.pem")).unwrap()
}

/// Starts `tests/messaging/{script}` with `args` in `dir` and waits for its READY.
pub fn spawn_ready(script: &str, args: &[String], dir: &Path) -> Child {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/messaging")
        .join(script);
    let mut child = Command::new("python3")
        .arg(script)
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 runs");
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut ready,
    )
    .unwrap();
    assert_eq!(ready.trim(), "READY", "the test server starts");
    child
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Smtp {
    /// Starts one (`extra`: `--refuse N`, `--drop N`, `--slow S`); `None` (skipped) when
    /// Python's aiosmtpd is missing, unless the run requires it.
    pub fn start(extra: &[&str]) -> Option<Smtp> {
        let found = Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            assert!(
                std::env::var("FHIR_TEST_REQUIRE_CLIENTS").is_err(),
                "FHIR_TEST_REQUIRE_CLIENTS=1 but Python's aiosmtpd is missing (pip install -r fhir-server/tests/clients/requirements.txt)"
            );
            eprintln!("skipped: Python's aiosmtpd is not installed");
            return None;
        }
        let dir = std::env::temp_dir().join(format!("smtp-{}", uuid::Uuid::new_v4().simple()));
        let out = dir.join("out");
        std::fs::create_dir_all(&out).unwrap();
        let ca = certificates(&dir);
        let port = free_port();
        let mut args = vec![
            port.to_string(),
            "cert.pem".into(),
            "key.pem".into(),
            "out".into(),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let child = spawn_ready("smtp_server.py", &args, &dir);
        Some(Smtp {
            child,
            out,
            port,
            ca,
        })
    }

    /// The kept messages, in order: envelope and text.
    pub fn messages(&self) -> Vec<(Value, String)> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|json| {
                let envelope =
                    serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
                let text = std::fs::read_to_string(json.with_extension("eml")).unwrap();
                (envelope, text)
            })
            .collect()
    }
}
