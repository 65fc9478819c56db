//! Every setting of `fhir-server serve`: a flag, an environment variable and a safe default.

use clap::{Args, ValueEnum};

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// How requests are authorized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// SMART on FHIR: every request needs an access token of this server's own
    /// authorization server (`{base}/auth/...`).
    Smart,
    /// No authorization at all, for local development only: the server then listens on
    /// loopback addresses only, and says so at every start.
    None,
}

/// Where the database lives.
#[derive(Debug, Clone, Args)]
pub struct DatabaseConfig {
    /// `postgres://user@host/db` for PostgreSQL; otherwise an SQLite file path
    /// (optionally `sqlite://PATH`), created if missing.
    #[arg(
        long = "database",
        env = "FHIR_DATABASE_URL",
        default_value = "./data/fhir.db"
    )]
    pub url: String,

    /// A file that holds the key of an encrypted SQLite database (SQLCipher): a passphrase
    /// of at least 32 characters (`openssl rand -hex 32`). `FHIR_DATABASE_KEY` may hold the
    /// key itself instead. Without either, the SQLite file is not encrypted.
    #[arg(long, env = "FHIR_DATABASE_KEY_FILE")]
    pub database_key_file: Option<std::path::PathBuf>,

    /// Database connections (PostgreSQL pool size; SQLite idle read connections).
    #[arg(long, env = "FHIR_DB_POOL", default_value_t = 16)]
    pub db_pool: u32,
}

/// The settings of the server.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address and port to listen on.
    #[arg(long, env = "FHIR_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,

    #[command(flatten)]
    pub database: DatabaseConfig,

    /// `smart` (the default): requests need a SMART access token. `none`: no
    /// authorization, for local development; only a loopback `--listen` is accepted.
    #[arg(long, env = "FHIR_AUTH", value_enum, default_value = "smart")]
    pub auth: AuthMode,

    /// A PEM certificate chain: the server speaks HTTPS only (TLS 1.3 and 1.2), with HSTS.
    /// Read again when the file changes. Needs `--tls-key`.
    #[arg(long, env = "FHIR_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// The PEM private key of `--tls-cert`.
    #[arg(long, env = "FHIR_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,

    /// Whether every access is recorded in the audit trail. `false` is for measuring what
    /// auditing costs (the benchmark), never for a server with patient data.
    #[arg(long, env = "FHIR_AUDIT", default_value_t = true, action = clap::ArgAction::Set)]
    pub audit: bool,

    /// The most FHIR requests per source address and per client (token bucket): `100/s`,
    /// `6000/min`; `off` for none. Past it: 429 with `Retry-After`.
    #[arg(long, env = "FHIR_RATE_LIMIT", default_value = "off")]
    pub rate_limit: String,

    /// The most requests to the authorization server (sign-in, token, introspection,
    /// revocation) per source address, stricter than `--rate-limit`.
    #[arg(long, env = "FHIR_AUTH_RATE_LIMIT", default_value = "600/min")]
    pub auth_rate_limit: String,

    /// How often the records of reads, searches and refusals are appended to the audit
    /// trail, in milliseconds (writes are recorded in their own transaction). What a
    /// `kill -9` can lose: at most this much of reads' records.
    #[arg(long, env = "FHIR_AUDIT_FLUSH_MS", default_value_t = 1000)]
    pub audit_flush_ms: u64,

    /// How long audit records are kept, in days (HIPAA: six years); older ones are pruned
    /// behind a signed checkpoint. `0`: kept for ever.
    #[arg(long, env = "FHIR_AUDIT_RETENTION_DAYS", default_value_t = 2190)]
    pub audit_retention_days: u64,

    /// The key that signs the audit trail's checkpoints (made on first use; keep it apart
    /// from the database, the same file for every server on one database). Default:
    /// `audit.key` beside an SQLite database, `./data/audit.key` with PostgreSQL.
    #[arg(long, env = "FHIR_AUDIT_KEY_FILE")]
    pub audit_key_file: Option<std::path::PathBuf>,

    /// Reverse proxies whose `Forwarded` / `X-Forwarded-For` / `X-Forwarded-Proto` headers
    /// are believed (for secure cookies, logs and the audit), as addresses or ranges,
    /// comma-separated: `127.0.0.1,10.0.0.0/8`. Default: none.
    #[arg(long, env = "FHIR_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,

    /// Public root URL (e.g. `https://fhir.example.org`), used in fullUrl, Location and
    /// paging links. Default: `http://` + the request's Host header.
    #[arg(long, env = "FHIR_BASE_URL")]
    pub base_url: Option<String>,

    /// Origins allowed to call the API from a browser (CORS), comma-separated, e.g.
    /// `https://app.example.org,http://localhost:3000`; `*` allows any origin. Default:
    /// none (no CORS headers; browsers block cross-origin calls).
    #[arg(long, env = "FHIR_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Largest request body accepted, in bytes; larger ones get 413.
    #[arg(long, env = "FHIR_MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Bearer token for the admin API (`/admin/...`). Without it, the admin API is closed,
    /// except to loopback clients under `--auth none`.
    #[arg(long, env = "FHIR_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Search and history page size when the client gives no `_count`.
    #[arg(long, env = "FHIR_DEFAULT_COUNT", default_value_t = 50)]
    pub default_count: usize,

    /// The largest page a client may ask for with `_count`.
    #[arg(long, env = "FHIR_MAX_COUNT", default_value_t = 1000)]
    pub max_count: usize,

    /// How long `Appointment/$hold` keeps an opening, in seconds; then it is free again.
    #[arg(long, env = "FHIR_HOLD_SECONDS", default_value_t = 300)]
    pub hold_seconds: i64,

    /// How long a waitlisted patient has to take a freed time offered to them, in seconds;
    /// then it is offered to the next.
    #[arg(long, env = "FHIR_WAITLIST_OFFER_SECONDS", default_value_t = 3600)]
    pub waitlist_offer_seconds: i64,

    /// The most entries a batch or transaction Bundle may have; larger ones get 413.
    #[arg(long, env = "FHIR_MAX_BUNDLE_ENTRIES", default_value_t = 20_000)]
    pub max_bundle_entries: usize,

    /// The largest answer a batch or transaction Bundle may get, in bytes: past it a batch
    /// entry is answered 413 on its own, and a transaction is refused whole (413).
    #[arg(long, env = "FHIR_MAX_BUNDLE_RESPONSE_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_bundle_response_bytes: usize,

    /// How long one database statement of a request may run, in milliseconds (0: no
    /// limit); past it the request gets 503. Background work (bulk export, the start-up
    /// reindex, migrations) is not bounded, nor are the command-line tools.
    #[arg(long, env = "FHIR_STATEMENT_TIMEOUT_MS", default_value_t = 30_000)]
    pub statement_timeout_ms: u64,

    /// Where bulk export files are written (one folder per export).
    #[arg(long, env = "FHIR_EXPORT_DIR", default_value = "./data/exports")]
    pub export_dir: std::path::PathBuf,

    /// Seconds a finished bulk export's files are kept before they are removed (24 hours).
    #[arg(long, env = "FHIR_EXPORT_TTL_SECONDS", default_value_t = 86_400)]
    pub export_ttl_seconds: u64,

    /// Seconds after which a running background job whose process stopped renewing its
    /// lease (it died) is taken over by another worker and started over.
    #[arg(long, env = "FHIR_JOB_LEASE_SECONDS", default_value_t = 60)]
    pub job_lease_seconds: u64,

    /// X12 ISA06/GS02: this practice's id with its clearinghouse (for `$submit`).
    #[arg(long, env = "FHIR_X12_SENDER_ID", default_value = "FHIRSERVER")]
    pub x12_sender_id: String,

    /// X12 ISA08/GS03: the clearinghouse's (or payer's) id.
    #[arg(long, env = "FHIR_X12_RECEIVER_ID", default_value = "CLEARINGHOUSE")]
    pub x12_receiver_id: String,

    /// X12 ISA15: `T` (test) or `P` (production) interchanges.
    #[arg(long, env = "FHIR_X12_USAGE", default_value = "T")]
    pub x12_usage: char,

    /// Seconds a client has to send a request's headers (also how long an idle keep-alive
    /// connection is kept); then the connection is closed.
    #[arg(long, env = "FHIR_HEADER_TIMEOUT_SECONDS", default_value_t = 30)]
    pub header_timeout_seconds: u64,

    /// Seconds a client has to send a request's body; then it gets 408.
    #[arg(long, env = "FHIR_BODY_TIMEOUT_SECONDS", default_value_t = 60)]
    pub body_timeout_seconds: u64,

    /// Connections held open at once; more wait in the listen backlog.
    #[arg(long, env = "FHIR_MAX_CONNECTIONS", default_value_t = 512)]
    pub max_connections: usize,

    /// For tests only: `POST /admin/clock {"advance_seconds": N}` moves the server's clock
    /// forward, so that tests of expiry need not sleep. Never on in production.
    #[arg(long, env = "FHIR_TEST_CLOCK", hide = true)]
    pub test_clock: bool,

    /// Seconds to let requests in flight finish on shutdown.
    #[arg(long, env = "FHIR_SHUTDOWN_GRACE_SECONDS", default_value_t = 10)]
    pub shutdown_grace_seconds: u64,
}
