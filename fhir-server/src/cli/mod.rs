//! The `fhir-server` commands: `serve` runs the server; `migrate` prepares a database;
//! `reindex` rebuilds the search index; `tenant create` adds a tenant, `tenant export` /
//! `tenant import` move one with everything it has; `import` and `export` move resources
//! in and out; `edi` translates X12; `demo` loads a small
//! practice. Developer tooling (load generators, benchmarks, database statistics) is the
//! `fhir-tools` crate.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::config::{AuthMode, DatabaseConfig, LogFormat, ServeConfig};
use crate::store::{self, Store};
use crate::{app, http, jobs};

mod audit;
mod auth;
mod demo;
mod edi;
mod export;
mod import;
mod messaging;
mod tenant;

#[derive(Parser)]
#[command(
    name = "fhir-server",
    version,
    about = "FHIR R4 server for medical practices"
)]
pub struct Cli {
    /// Log format: human lines or JSON objects.
    #[arg(long, env = "FHIR_LOG_FORMAT", default_value = "human", global = true)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (migrating the database first).
    Serve(Box<ServeConfig>),
    /// Apply the database migrations and exit.
    Migrate(DatabaseConfig),
    /// Rebuild the search index of every resource (after the search parameters changed).
    Reindex(DatabaseConfig),
    /// Manage tenants.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Load resources from NDJSON files, Bundles (e.g. Synthea output) or folders of them.
    Import(import::ImportConfig),
    /// Write a tenant's current resources as NDJSON files, one per type.
    Export(export::ExportConfig),
    /// Load a small practice (clinicians, rooms, hours, patients, appointments in every
    /// state) into a tenant, to try scheduling at once.
    Demo(demo::DemoConfig),
    /// X12: write an 837P from a FHIR Claim, parse and validate 837P/835/999, acknowledge.
    Edi {
        #[command(subcommand)]
        command: edi::EdiCommand,
    },
    /// Register and list the apps, EHRs and backend services that may ask for tokens.
    Client {
        #[command(subcommand)]
        command: auth::ClientCommand,
    },
    /// Add, list and reset the passwords of the people who sign in.
    User {
        #[command(subcommand)]
        command: auth::UserCommand,
    },
    /// Trust the access tokens of outside identity providers (Keycloak, Okta, Entra ID).
    Issuer {
        #[command(subcommand)]
        command: auth::IssuerCommand,
    },
    /// A tenant's messaging settings: channels and the reminder policy.
    Messaging {
        #[command(subcommand)]
        command: messaging::MessagingCommand,
    },
    /// Copy the whole database while the server runs (SQLite's online backup API, or
    /// pg_dump), to restore with `restore`.
    Backup {
        /// The backup file to write (must not exist).
        #[arg(long)]
        out: std::path::PathBuf,
        #[command(flatten)]
        database: DatabaseConfig,
    },
    /// Restore a backup into an empty database (a new SQLite file, or an empty PostgreSQL
    /// database).
    Restore {
        /// The backup file.
        file: std::path::PathBuf,
        #[command(flatten)]
        database: DatabaseConfig,
    },
    /// The embedded database's encryption at rest: encrypt a plain one, change the key.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// The audit trail: verify it, export its head, review break-glass accesses.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// The server's token signing keys.
    Keys {
        #[command(subcommand)]
        command: auth::KeysCommand,
    },
}

#[derive(Subcommand)]
enum DbCommand {
    /// Encrypt a plain SQLite database in place with `--database-key-file`'s key (the
    /// server stopped; the plain file is removed).
    Encrypt {
        #[command(flatten)]
        database: DatabaseConfig,
    },
    /// Change the key of an encrypted SQLite database (the server stopped).
    Rekey {
        /// The file with the new key.
        #[arg(long)]
        new_key_file: std::path::PathBuf,
        #[command(flatten)]
        database: DatabaseConfig,
    },
}

/// `db encrypt`, `db rekey`.
fn db(command: DbCommand) -> Result<(), String> {
    let (database, new_key) = match &command {
        DbCommand::Encrypt { database } => (database, None),
        DbCommand::Rekey {
            new_key_file,
            database,
        } => (
            database,
            Some(store::sqlite_key::read_key_file(new_key_file)?),
        ),
    };
    let key = database_key(database)?.ok_or("give the key: --database-key-file")?;
    let path = std::path::Path::new(
        database
            .url
            .strip_prefix("sqlite://")
            .unwrap_or(&database.url),
    );
    if !path.is_file() {
        return Err(format!("{} is not an SQLite database file", path.display()));
    }
    match new_key {
        None => store::sqlite_key::encrypt(path, &key)?,
        Some(new_key) => store::sqlite_key::rekey(path, &key, &new_key)?,
    }
    println!("done: {}", path.display());
    Ok(())
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant, served at /t/ID/fhir.
    Create {
        /// 1 to 64 letters, digits, '-' or '_'.
        id: String,
        /// A human name for the tenant.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        database: DatabaseConfig,
    },
    /// Write everything a tenant has (every version of every resource, accounts, claims,
    /// waiting jobs, the audit trail) into a folder, to move it with `tenant import`.
    Export {
        /// The folder to write (new or empty).
        dir: std::path::PathBuf,
        /// The tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
        #[command(flatten)]
        database: DatabaseConfig,
    },
    /// Load a folder written by `tenant export` as a tenant (new, or one that holds
    /// nothing), in one transaction; its audit trail is checked before and after.
    Import {
        /// The folder `tenant export` wrote.
        dir: std::path::PathBuf,
        /// The tenant to load it as (default: the exported tenant's id).
        #[arg(long = "as")]
        as_tenant: Option<String>,
        /// This server's audit key, to sign the trail's checkpoint again (as `serve`'s).
        #[arg(long, env = "FHIR_AUDIT_KEY_FILE")]
        audit_key_file: Option<std::path::PathBuf>,
        #[command(flatten)]
        database: DatabaseConfig,
    },
}

/// Threads for blocking work: SQLite searches, file I/O. Each thread that ever allocated
/// keeps its own allocator heap, so an unbounded pool (tokio's default is 512) grew to 60
/// threads under 16 searching clients and held 260 MB; searches are CPU-bound, and more
/// threads than this only wait on each other.
const BLOCKING_THREADS: usize = 16;

/// Parses the command line and runs the command: the whole of `fhir-server`'s `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(config) => serve(*config).await,
            Command::Migrate(database) => {
                open(&database).await?;
                println!("database is up to date");
                Ok(())
            }
            Command::Reindex(database) => reindex(&database).await,
            Command::Tenant { command } => match command {
                TenantCommand::Create { id, name, database } => {
                    create_tenant(&database, &id, name.as_deref()).await
                }
                TenantCommand::Export {
                    dir,
                    tenant,
                    database,
                } => tenant::export(&database, &tenant, &dir).await,
                TenantCommand::Import {
                    dir,
                    as_tenant,
                    audit_key_file,
                    database,
                } => tenant::import(&database, &dir, as_tenant, audit_key_file).await,
            },
            Command::Import(config) => import::run(config).await,
            Command::Export(config) => export::run(config).await,
            Command::Demo(config) => demo::run(config).await,
            Command::Edi { command } => edi::run(command),
            Command::Client { command } => auth::client(command).await,
            Command::User { command } => auth::user(command).await,
            Command::Issuer { command } => auth::issuer(command).await,
            Command::Keys { command } => auth::keys(command).await,
            Command::Messaging { command } => messaging::run(command).await,
            Command::Audit { command } => audit::run(command).await,
            Command::Db { command } => db(command),
            Command::Backup { out, database } => {
                use_database_key(&database)?;
                store::backup::backup(&database.url, &out).await?;
                println!("backed up to {}", out.display());
                Ok(())
            }
            Command::Restore { file, database } => {
                store::backup::restore(&file, &database.url).await?;
                println!("restored {}", file.display());
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter =
        EnvFilter::try_from_env("FHIR_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Human => builder.init(),
    }
}

/// Opens the database (as `open`) and finds a tenant by name, for the commands that work
/// on one tenant's data.
pub(crate) async fn open_tenant(
    database: &DatabaseConfig,
    tenant: &str,
) -> Result<(Store, store::TenantId), String> {
    let store = open(database).await?;
    let id = store
        .tenant_id(tenant)
        .await
        .map_err(|e| format!("cannot read the tenants: {e:?}"))?
        .ok_or_else(|| format!("no tenant '{tenant}'"))?;
    Ok((store, id))
}

/// Opens and migrates the database, and brings its search index up to date.
pub(crate) async fn open(database: &DatabaseConfig) -> Result<Store, String> {
    open_bounded(database, None).await
}

/// `open`, with each statement of a request bounded by `timeout` (the server's).
async fn open_bounded(
    database: &DatabaseConfig,
    timeout: Option<Duration>,
) -> Result<Store, String> {
    use_database_key(database)?;
    let store = Store::open(&database.url, database.db_pool, timeout)
        .await
        .map_err(|e| format!("cannot open the database: {e:?}"))?;
    store::limits::in_background(store.ensure_index_current())
        .await
        .map_err(|e| format!("cannot rebuild the search index: {e:?}"))?;
    store::limits::in_background(store.ensure_claims_current())
        .await
        .map_err(|e| format!("cannot write the claims of stored appointments: {e:?}"))?;
    Ok(store)
}

/// The key of an encrypted SQLite database (`--database-key-file`, else
/// `FHIR_DATABASE_KEY`), if any, for every connection this process opens.
fn use_database_key(database: &DatabaseConfig) -> Result<(), String> {
    match database_key(database)? {
        Some(key) => store::sqlite_key::use_key(&key),
        None => Ok(()),
    }
}

fn database_key(database: &DatabaseConfig) -> Result<Option<String>, String> {
    if database.url.starts_with("postgres://") || database.url.starts_with("postgresql://") {
        return Ok(None);
    }
    match &database.database_key_file {
        Some(file) => store::sqlite_key::read_key_file(file).map(Some),
        None => Ok(std::env::var("FHIR_DATABASE_KEY")
            .ok()
            .filter(|k| !k.is_empty())),
    }
}

async fn reindex(database: &DatabaseConfig) -> Result<(), String> {
    use_database_key(database)?;
    let store = Store::open(&database.url, database.db_pool, None)
        .await
        .map_err(|e| format!("cannot open the database: {e:?}"))?;
    let started = std::time::Instant::now();
    let mut with_controls = 0usize;
    let done = store
        .reindex(
            |done| {
                if done % 10_000 == 0 {
                    eprintln!("reindexed {done} resources");
                }
            },
            |resource| {
                with_controls += 1;
                println!("{resource} holds a control character (shown as U+FFFD in XML; fix it with an update)");
            },
        )
        .await
        .map_err(|e| format!("reindex failed: {e:?}"))?;
    println!(
        "reindexed {done} resources in {:.1}s; {with_controls} hold control characters",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn create_tenant(
    database: &DatabaseConfig,
    id: &str,
    name: Option<&str>,
) -> Result<(), String> {
    if !http::admin::is_valid_tenant_id(id) {
        return Err(format!(
            "invalid tenant id '{id}': use 1 to 64 letters, digits, '-' or '_'"
        ));
    }
    let store = open(database).await?;
    match store.create_tenant(id, name).await {
        Ok(true) => {
            println!("created tenant '{id}': its FHIR base is /t/{id}/fhir");
            Ok(())
        }
        Ok(false) => Err(format!("tenant '{id}' already exists")),
        Err(error) => Err(format!("cannot create the tenant: {error:?}")),
    }
}

async fn serve(config: ServeConfig) -> Result<(), String> {
    http::cors::layer(&config.cors_origins, None).map_err(|e| format!("--cors-origins: {e}"))?;
    crate::auth::proxies::parse_all(&config.trusted_proxies)
        .map_err(|e| format!("--trusted-proxies: {e}"))?;
    crate::auth::rate::Rate::parse(&config.rate_limit).map_err(|e| format!("--rate-limit: {e}"))?;
    crate::auth::rate::Rate::parse(&config.auth_rate_limit)
        .map_err(|e| format!("--auth-rate-limit: {e}"))?;
    check_auth_mode(&config)?;
    let timeout = (config.statement_timeout_ms > 0)
        .then(|| Duration::from_millis(config.statement_timeout_ms));
    let store = open_bounded(&config.database, timeout).await?;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(http::tls::Tls::load(cert, key)?),
        _ => None,
    };
    let limits = http::serve::Limits {
        max_connections: config.max_connections,
        header_timeout: Duration::from_secs(config.header_timeout_seconds.max(1)),
        grace: Duration::from_secs(config.shutdown_grace_seconds),
        tls: tls.clone(),
    };
    let backend = store.backend_name();
    let key_file = config
        .audit_key_file
        .clone()
        .unwrap_or_else(|| crate::audit::retention::default_key_file(&config.database.url));
    let app = app::App::new(store, config);
    app.audit.retain(app.config.audit_retention_days, key_file);
    app.audit.start();
    jobs::start(app.clone());
    crate::workflows::scheduling::waitlist::start(app.clone());
    crate::workflows::messaging::start(app.clone());
    if app.config.auth == AuthMode::Smart {
        app.auth.origins.refresh(&app.store).await;
        tokio::spawn(crate::auth::revoked::follow(
            app.store.clone(),
            app.auth.revoked.clone(),
            app.auth.origins.clone(),
        ));
    }
    let router = http::router(app.clone())?;
    tracing::info!(%address, database = backend, "fhir-server listening");
    // A stable line on stdout for scripts and tests that start the server on port 0.
    let scheme = if tls.is_some() { "https" } else { "http" };
    if let Some(tls) = &tls {
        tls.watch();
    }
    let shutdown = shutdown_signal();
    println!("fhir-server listening on {scheme}://{address}");
    http::serve::serve(listener, router, limits, shutdown).await;
    app.audit.stop().await;
    tracing::info!("stopped");
    Ok(())
}

/// `--auth none` is for a developer's own machine: it is said at every start, and only a
/// loopback address may be listened on (anyone who reached the port could read every
/// patient).
fn check_auth_mode(config: &ServeConfig) -> Result<(), String> {
    if config.auth == AuthMode::Smart {
        return Ok(());
    }
    let loopback = config
        .listen
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|address| address.ip().is_loopback())
        || config.listen.starts_with("localhost:");
    if !loopback {
        return Err(format!(
            "--auth none serves every patient to whoever reaches the port: it listens on a loopback address only, not {}",
            config.listen
        ));
    }
    tracing::warn!(
        "--auth none: NO AUTHORIZATION. Anyone who can reach {} reads and writes every patient. For local development only.",
        config.listen
    );
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed at the call, not at the
/// first poll: a SIGTERM sent just after the "listening" line (a supervisor, a test) is
/// a clean shutdown, not the default action's abrupt exit.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |signal: Option<tokio::signal::unix::Signal>| async move {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let (interrupt, terminate) = signals;
            tokio::select! {
                () = wait(interrupt) => {},
                () = wait(terminate) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
