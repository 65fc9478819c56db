//! The authorization server's accounts from the command line: `client create|list`,
//! `user create|list|reset-password` and `keys rotate`, each on `--tenant` (default
//! `default`) of `--database`.

use clap::{Args, Subcommand};
use serde_json::json;
use smart_auth::scope::Scopes;

use super::open_tenant;
use crate::auth::accounts::{self, Client, ClientType, User};
use crate::config::DatabaseConfig;
use crate::store::auth::RecordKind;
use crate::store::{Method, WriteOp};

/// How long a password reset link is good for, in seconds (24 hours).
pub const RESET_LIFETIME: i64 = 24 * 3600;

#[derive(Args)]
pub struct On {
    /// The tenant.
    #[arg(long, default_value = "default")]
    tenant: String,
    #[command(flatten)]
    database: DatabaseConfig,
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

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Make a new signing key; the old ones stay in the JWKS until their tokens expired.
    Rotate {
        #[command(flatten)]
        database: DatabaseConfig,
    },
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
            Scopes::parse(&scopes).map_err(|e| format!("--scopes: {e}"))?;
            if !crate::ids::is_valid_id(&id) {
                return Err("--id: use 1 to 64 letters, digits, '-' or '.'".into());
            }
            let jwks = match jwks_file {
                Some(path) => Some(
                    serde_json::from_slice(
                        &std::fs::read(&path).map_err(|e| format!("--jwks-file: {e}"))?,
                    )
                    .map_err(|e| format!("--jwks-file: not JSON: {e}"))?,
                ),
                None => None,
            };
            let secret = match client_type {
                ClientType::ConfidentialSymmetric => Some(match secret {
                    Some(secret) => secret,
                    None => smart_auth::random_token()?,
                }),
                _ => None,
            };
            if client_type == ClientType::ConfidentialAsymmetric
                && jwks.is_none()
                && jwks_url.is_none()
            {
                return Err(
                    "a confidential-asymmetric client needs --jwks-file or --jwks-url".into(),
                );
            }
            let client = Client {
                id: id.clone(),
                client_type,
                secret_sha256: secret.as_deref().map(smart_auth::sha256_hex),
                redirect_uris,
                scopes,
                jwks,
                jwks_url,
                may_launch,
            };
            accounts::put_client(&store, tenant, &client)
                .await
                .map_err(|e| format!("{e:?}"))?;
            println!("client '{id}' registered on tenant '{}'", on.tenant);
            if let Some(secret) = secret {
                println!("client secret: {secret}");
            }
            Ok(())
        }
        ClientCommand::List { on } => {
            let (store, tenant) = open_tenant(&on.database, &on.tenant).await?;
            for client in accounts::clients(&store, tenant)
                .await
                .map_err(|e| format!("{e:?}"))?
            {
                let listed = json!({"id": client.id, "type": client.client_type, "scopes": client.scopes,
                    "redirect_uris": client.redirect_uris, "jwks_url": client.jwks_url, "may_launch": client.may_launch});
                println!("{listed}");
            }
            Ok(())
        }
    }
}

pub async fn user(command: UserCommand) -> Result<(), String> {
    match command {
        UserCommand::Create(new) => create_user(new).await,
        UserCommand::List { on } => {
            let (store, tenant) = open_tenant(&on.database, &on.tenant).await?;
            for user in accounts::users(&store, tenant)
                .await
                .map_err(|e| format!("{e:?}"))?
            {
                println!(
                    "{}",
                    json!({"username": user.username, "role": user.role, "fhirUser": user.fhir_user, "totp": user.totp_secret.is_some()})
                );
            }
            Ok(())
        }
        UserCommand::ResetPassword { username, on } => {
            let (store, tenant) = open_tenant(&on.database, &on.tenant).await?;
            if accounts::user(&store, tenant, &username)
                .await
                .map_err(|e| format!("{e:?}"))?
                .is_none()
            {
                return Err(format!("no user '{username}'"));
            }
            let token = smart_auth::random_token()?;
            let expires = crate::clock::now_seconds() + RESET_LIFETIME;
            store
                .auth_put(
                    tenant,
                    RecordKind::Reset,
                    &smart_auth::sha256_hex(&token),
                    &json!({"username": username}).to_string(),
                    Some(expires),
                )
                .await
                .map_err(|e| format!("{e:?}"))?;
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

async fn create_user(new: NewUser) -> Result<(), String> {
    let NewUser {
        username,
        password,
        role,
        fhir_user,
        create_patient,
        require_totp,
        on,
    } = new;
    let (store, tenant) = open_tenant(&on.database, &on.tenant).await?;
    smart_auth::password::check_policy(&password, &username)
        .map_err(|e| format!("--password: {}", e.0))?;
    if accounts::role(&store, tenant, &role)
        .await
        .map_err(|e| format!("{e:?}"))?
        .is_none()
    {
        return Err(format!(
            "--role: no role '{role}' (admin, provider, front-desk, billing, patient)"
        ));
    }
    let (resource_type, id) = fhir_user
        .split_once('/')
        .filter(|(t, i)| crate::ids::ResourceType::parse(t).is_some() && crate::ids::is_valid_id(i))
        .ok_or("--fhir-user: expected Type/id, e.g. Practitioner/7")?;
    let exists = store
        .read(tenant, resource_type, id)
        .await
        .map_err(|e| format!("{e:?}"))?
        .is_some_and(|v| !v.is_deleted());
    if !exists && create_patient {
        let resource = json!({"resourceType": resource_type, "id": id});
        let index = crate::index::extract(resource_type, &resource);
        store
            .write(
                tenant,
                WriteOp::Update {
                    resource_type: resource_type.to_owned(),
                    id: id.to_owned(),
                    resource,
                    index,
                    if_match: None,
                    method: Method::Put,
                },
            )
            .await
            .map_err(|e| format!("cannot create {fhir_user}: {e:?}"))?;
        println!("created {fhir_user}");
    } else if !exists {
        return Err(format!(
            "{fhir_user} does not exist (add --create-patient to create it)"
        ));
    }
    let password_hash = smart_auth::password::hash(&password)?;
    let user = User {
        username: username.clone(),
        password_hash,
        role,
        fhir_user,
        totp_required: require_totp,
        totp_secret: None,
        totp_last_step: None,
    };
    if accounts::user(&store, tenant, &username)
        .await
        .map_err(|e| format!("{e:?}"))?
        .is_some()
    {
        return Err(format!("user '{username}' already exists"));
    }
    accounts::put_user(&store, tenant, &user)
        .await
        .map_err(|e| format!("{e:?}"))?;
    println!("user '{username}' created on tenant '{}'", on.tenant);
    Ok(())
}

pub async fn keys(command: KeysCommand) -> Result<(), String> {
    match command {
        KeysCommand::Rotate { database } => {
            let store = super::open(&database).await?;
            let kid = crate::auth::keys::rotate(&store)
                .await
                .map_err(|e| format!("{e:?}"))?;
            println!(
                "new signing key {kid}; older keys stay in the JWKS until their tokens expired"
            );
            Ok(())
        }
    }
}
