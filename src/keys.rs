//! `concierge keys`: API keys made, listed and revoked straight in the configured store,
//! for the first key of an installation and for scripts. A made key is printed once.

use anyhow::Context;
use clap::{Args, Subcommand};
use concierge_core::ApiRole;
use concierge_server::auth::Authenticator;

#[derive(Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make a key for the configured tenant and print it (only its hash is stored).
    Create {
        /// widget (the public chat), operator (the console) or admin (everything).
        #[arg(long)]
        role: String,
        /// What the key is for; recorded with every approval it decides.
        #[arg(long)]
        label: String,
    },
    /// The tenant's keys: prefix, role, label, when made and revoked.
    List,
    /// Revoke the key with this prefix (the part after `ck_`, before the next `_`).
    Revoke { prefix: String },
}

pub async fn run(config_file: Option<std::path::PathBuf>, args: KeysArgs) -> anyhow::Result<()> {
    let config = crate::load_config(config_file.as_deref())?;
    let store = concierge_store::open(&config.store_url()).await?;
    store.migrate().await?;
    store
        .upsert_tenant(&concierge_core::Tenant {
            id: config.tenant.id.clone(),
            name: config.tenant.name.clone(),
            tier: config.tenant.tier.clone(),
            created_at: concierge_core::now(),
        })
        .await?;
    let auth = Authenticator::new(&config, store).await?;
    match args.command {
        KeysCommand::Create { role, label } => {
            let role: ApiRole = role.parse().map_err(|e: String| anyhow::anyhow!(e))?;
            let label = label.trim();
            anyhow::ensure!(!label.is_empty() && label.chars().count() <= 100, "the label must be 1 to 100 characters");
            let (key, record) = auth.create_key(role, label).await.context("making the key")?;
            eprintln!(
                "made a {role} key `{}` for tenant {}; it is shown only this once:",
                record.prefix, record.tenant_id
            );
            println!("{key}");
        }
        KeysCommand::List => {
            println!("{:<14} {:<9} {:<26} {:<26} label", "prefix", "role", "created", "revoked");
            for key in auth.keys().await? {
                let revoked = key.revoked_at.map(|t| t.to_rfc3339()).unwrap_or_else(|| "-".into());
                println!(
                    "{:<14} {:<9} {:<26} {:<26} {}",
                    key.prefix,
                    key.role,
                    key.created_at.to_rfc3339(),
                    revoked,
                    key.label
                );
            }
        }
        KeysCommand::Revoke { prefix } => {
            let record = auth.revoke(&prefix).await?;
            println!("revoked `{}` ({} key, {})", record.prefix, record.role, record.label);
        }
    }
    Ok(())
}
