//! The authorization server's accounts from the command line: `client create|list`,
//! `user create|list|reset-password`, `issuer add|list|remove` and `keys rotate`, each on
//! `--tenant` (default `default`) of `--database`.

use super::open_tenant;
use crate::auth::accounts::{self, ClientType};
use crate::auth::issuers;
use crate::auth::registry::{self, NewClient};
use crate::config::DatabaseConfig;
use crate::error::FhirError;
use clap::{Args, Subcommand};

#[derive(Args)]
pub struct On {
    /// The tenant.
    #[arg(long, default_value = "default")]
    pub(super) tenant: String,
    #[command(flatten)]
    pub(super) database: DatabaseConfig,
}

#[derive(Subcommand)]
pub enum ClientCommand {
    /// Register a client (an app, an EHR, a backend service).
    Create {
        #[arg(long)]
        id: String,
        #[arg(long = "type", value_enum)]
        client_type: ClientType,
        /// The secret of a confidential-symmetric client; one is made (and printed) when
        /// not given.
        #[arg(long)]
        secret: Option<String>,
        /// A redirect URI (repeat for several); matched exactly.
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// A file with the client's public JWKS (confidential-asymmetric).
        #[arg(long)]
        jwks_file: Option<std::path::PathBuf>,
        /// Where the client publishes its JWKS (confidential-asymmetric).
        #[arg(long)]
        jwks_url: Option<String>,
        /// The scopes it may be granted, space-separated (system/ ones only where listed).
        #[arg(long)]
        scopes: String,
        /// It may make EHR launch contexts (`POST {base}/auth/launch`).
        #[arg(long)]
        may_launch: bool,
        #[command(flatten)]
        on: On,
    },
    /// List the registered clients.
    List {
        #[command(flatten)]
        on: On,
    },
}

/// `user create`.
#[derive(Args)]
pub struct NewUser {
    #[arg(long)]
    username: String,
    #[arg(long)]
    password: String,
    /// admin, provider, front-desk, billing or patient (or a role the tenant defined).
    #[arg(long)]
    role: String,
    /// The user's FHIR resource, e.g. `Practitioner/7` or `Patient/42`.
    #[arg(long)]
    fhir_user: String,
    /// Create that resource when it does not exist.
    #[arg(long)]
    create_patient: bool,
    /// The user must sign in with a TOTP code too (enrolled at the next login).
    #[arg(long)]
    require_totp: bool,
    #[command(flatten)]
    on: On,
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Add a user (a practitioner, staff member, patient or related person).
    Create(NewUser),
    /// List the users.
    List {
        #[command(flatten)]
        on: On,
    },
    /// Print a one-time password reset link, valid 24 hours.
    ResetPassword {
        #[arg(long)]
        username: String,
        #[command(flatten)]
        on: On,
    },
}

/// `issuer add`.
#[derive(Args)]
pub struct NewIssuer {
    /// The `iss` of the provider's tokens (e.g. `https://sso.example/realms/clinic`).
    #[arg(long)]
    issuer: String,
    /// Where its public keys are (https, or http to this machine).
    #[arg(long)]
    jwks_url: String,
    /// The `aud` its tokens must carry to be good here (often this tenant's FHIR base).
    #[arg(long)]
    audience: String,
    /// The most its tokens may grant here, space-separated (system/ ones only where listed).
    #[arg(long)]
    scopes: String,
    /// The claim with the scopes: `scope` (a string) or, for Entra ID, `scp` (an array).
    #[arg(long, default_value = "scope")]
    scope_claim: String,
    /// The claim with the patient in context.
    #[arg(long, default_value = "patient")]
    patient_claim: String,
    /// The claim with the user's FHIR resource.
    #[arg(long, default_value = "fhirUser")]
    fhir_user_claim: String,
    /// The claim naming the user's practice role (a string or an array).
    #[arg(long, default_value = "roles")]
    role_claim: String,
    /// The role of a user whose token names none of the tenant's roles.
    #[arg(long)]
    default_role: Option<String>,
    #[command(flatten)]
    on: On,
}

#[derive(Subcommand)]
pub enum IssuerCommand {
    /// Trust the access tokens of an outside identity provider (Keycloak, Okta, Entra ID).
    Add(NewIssuer),
    /// List the trusted providers.
    List {
        #[command(flatten)]
        on: On,
    },
    /// Stop trusting a provider.
    Remove {
        #[arg(long)]
        issuer: String,
        #[command(flatten)]
        on: On,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Make a new signing key; the old ones stay in the JWKS until their tokens expired.
    Rotate {
        #[command(flatten)]
        database: DatabaseConfig,
    },
}

fn failed(error: FhirError) -> String {
    first_issue(&error, |field| format!("--{}", field.replace('_', "-")))
}

/// An error's first issue as a line, its element named as `name` makes it (a flag).
pub(super) fn first_issue(error: &FhirError, name: impl Fn(&str) -> String) -> String {
    error
        .issues
        .first()
        .map(|issue| match issue.expression.first() {
            Some(field) => format!("{}: {}", name(field), issue.diagnostics),
            None => issue.diagnostics.clone(),
        })
        .unwrap_or_default()
}

pub async fn client(command: ClientCommand) -> Result<(), String> {
    match command {
        ClientCommand::Create {
            id,
            client_type,
            secret,
            redirect_uris,
            jwks_file,
            jwks_url,
            scopes,
            may_launch,
            on,
        } => {
            let (store, tenant) = open_tenant(&on.database, &on.tenant).await?;
            let jwks = match jwks_file {
                Some(path) => Some(
                    serde_json::from_slice(
                        &std::fs::read(&path).map_err(|e| format!("--jwks-file: {e}"))?,
                    )
                    .map_err(|e| format!("--jwks-file: not JSON: {e}"))?,
                ),
                None => None,
            };
            let new = NewClient {
                id: id.clone(),
                client_type,
                secret,
                redirect_uris,
                jwks,
                jwks_url,
                scopes,
                may_launch,
            };
            let made = registry::register_client(&store, tenant, new)
                .await
                .map_err(failed)?;
            println!("client '{id}' registered on tenant '{}'", on.tenant);
            if let Some(secret) = made {
                println!("client secret: {secret}");
            }
            Ok(())
        }
        ClientCommand::List { on } => {
            let (store, tenant) = open_tenant(&on.database, &on.tenant).await?;
            for client in accounts::clients(&store, tenant).await.map_err(failed)? {
                println!("{}", registry::client_summary(&client));
            }
            Ok(())
        }
    }
}

pub async fn user(command: UserCommand) -> Result<(), String> {
    match command {
        UserCommand::Create(new) => {
            let (store, tenant) = open_tenant(&new.on.database, &new.on.tenant).await?;
            let fhir_user = new.fhir_user.clone();
            let username = new.username.clone();
            let user = registry::NewUser {
                username: new.username,
                password: new.password,
                role: new.role,
                fhir_user: new.fhir_user,
                create_resource: new.create_patient,
                require_totp: new.require_totp,
            };
            if registry::add_user(&store, tenant, user)
                .await
                .map_err(failed)?
            {
                println!("created {fhir_user}");
            }
            println!("user '{username}' created on tenant '{}'", new.on.tenant);
            Ok(())
        }
        UserCommand::List { on } => {
            let (store, tenant) = open_tenant(&on.database, &on.tenant).await?;
            for user in accounts::users(&store, tenant).await.map_err(failed)? {
                println!("{}", registry::user_summary(&user));
            }
            Ok(())
        }
        UserCommand::ResetPassword { username, on } => {
            let (store, tenant) = open_tenant(&on.database, &on.tenant).await?;
            let token = registry::reset_token(&store, tenant, &username)
                .await
                .map_err(failed)?;
            let base = if on.tenant == "default" {
                "/fhir".to_owned()
            } else {
                format!("/t/{}/fhir", on.tenant)
            };
            println!("{base}/auth/reset?token={token}");
            println!("(valid 24 hours, once; prefix it with the server's public URL)");
            Ok(())
        }
    }
}

pub async fn issuer(command: IssuerCommand) -> Result<(), String> {
    match command {
        IssuerCommand::Add(new) => {
            let (store, tenant) = open_tenant(&new.on.database, &new.on.tenant).await?;
            let trusted = issuers::TrustedIssuer {
                issuer: new.issuer.clone(),
                jwks_url: new.jwks_url,
                audience: new.audience,
                scopes: new.scopes,
                scope_claim: new.scope_claim,
                patient_claim: new.patient_claim,
                fhir_user_claim: new.fhir_user_claim,
                role_claim: new.role_claim,
                default_role: new.default_role,
            };
            issuers::add(&store, tenant, trusted)
                .await
                .map_err(failed)?;
            println!(
                "tokens of '{}' are trusted on tenant '{}'",
                new.issuer, new.on.tenant
            );
            Ok(())
        }
        IssuerCommand::List { on } => {
            let (store, tenant) = open_tenant(&on.database, &on.tenant).await?;
            for trusted in issuers::issuers(&store, tenant).await.map_err(failed)? {
                println!("{}", trusted.summary());
            }
            Ok(())
        }
        IssuerCommand::Remove { issuer, on } => {
            let (store, tenant) = open_tenant(&on.database, &on.tenant).await?;
            issuers::remove(&store, tenant, &issuer)
                .await
                .map_err(failed)?;
            println!(
                "tokens of '{issuer}' are no longer trusted on tenant '{}'",
                on.tenant
            );
            Ok(())
        }
    }
}

pub async fn keys(command: KeysCommand) -> Result<(), String> {
    match command {
        KeysCommand::Rotate { database } => {
            let store = super::open(&database).await?;
            let kid = crate::auth::keys::rotate(&store).await.map_err(failed)?;
            println!(
                "new signing key {kid}; older keys stay in the JWKS until their tokens expired"
            );
            Ok(())
        }
    }
}
