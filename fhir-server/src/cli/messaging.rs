//! `fhir-server messaging show|set`: a tenant's messaging settings (channels, reminder
//! policy) from the command line, the same document and checks as the admin API's
//! `{base}/auth/admin/messaging`.

use clap::Subcommand;

use super::auth::On;
use super::open_tenant;
use crate::workflows::messaging::settings::{self, MessagingSettings};

#[derive(Subcommand)]
pub enum MessagingCommand {
    /// Print the settings (secrets hidden).
    Show {
        #[command(flatten)]
        on: On,
    },
    /// Replace the settings with a JSON file's (see the README for its fields).
    Set {
        /// The settings document.
        #[arg(long)]
        file: std::path::PathBuf,
        /// The server's public URL (as `serve --base-url`): a channel needs it.
        #[arg(long, env = "FHIR_BASE_URL")]
        base_url: Option<String>,
        #[command(flatten)]
        on: On,
    },
}

pub async fn run(command: MessagingCommand) -> Result<(), String> {
    match command {
        MessagingCommand::Show { on } => {
            let (store, tenant) = open_tenant(&on.database, &on.tenant).await?;
            let shown = settings::load(&store, tenant)
                .await
                .map_err(failed)?
                .shown();
            println!(
                "{}",
                serde_json::to_string_pretty(&shown).unwrap_or_default()
            );
            Ok(())
        }
        MessagingCommand::Set { file, base_url, on } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let new: MessagingSettings =
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
            let (store, tenant) = open_tenant(&on.database, &on.tenant).await?;
            let public_base = base_url.map(|root| {
                let root = root.trim_end_matches('/');
                match on.tenant.as_str() {
                    "default" => format!("{root}/fhir"),
                    name => format!("{root}/t/{name}/fhir"),
                }
            });
            settings::save(&store, tenant, new, public_base)
                .await
                .map_err(failed)?;
            println!("messaging settings of tenant '{}' saved", on.tenant);
            Ok(())
        }
    }
}

/// The first issue, naming its field of the settings document.
fn failed(error: crate::error::FhirError) -> String {
    super::auth::first_issue(&error, str::to_owned)
}
