//! `weft user add|remove|passwd|list`: account management against the configured store.
//! Passwords come from a prompt, or one line of standard input when it is not a terminal, and
//! are stored only as SCRAM-SHA-1 and SCRAM-SHA-256 credentials.

use std::io::{BufRead, IsTerminal};

use anyhow::{bail, Context};
use clap::Subcommand;
use jid::BareJid;
use weft_config::Config;
use weft_sasl::{Hash, ScramCredentials};
use weft_storage::{Storage, StorageError};

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create an account; the password is asked for (or read from standard input).
    Add { jid: String },
    /// Delete an account and its data.
    Remove { jid: String },
    /// Change an account's password.
    Passwd { jid: String },
    /// List accounts, optionally of one domain.
    List { domain: Option<String> },
}

pub async fn run(config: Config, command: UserCommand) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.server.data_dir).ok();
    let storage = Storage::open_sqlite(&config.sqlite_path())
        .await
        .with_context(|| format!("opening {}", config.sqlite_path().display()))?;
    match command {
        UserCommand::Add { jid } => {
            let (domain, user) = account(&config, &jid)?;
            if storage.accounts.account_exists(&domain, &user).await? {
                bail!("{user}@{domain} already exists");
            }
            let creds = credentials(&config, &format!("{user}@{domain}"))?;
            match storage
                .accounts
                .create_account(&domain, &user, &creds)
                .await
            {
                Ok(()) => println!("created {user}@{domain}"),
                Err(StorageError::AlreadyExists) => bail!("{user}@{domain} already exists"),
                Err(e) => return Err(e.into()),
            }
        }
        UserCommand::Remove { jid } => {
            let (domain, user) = account(&config, &jid)?;
            if !storage.accounts.remove_account(&domain, &user).await? {
                bail!("no account {user}@{domain}");
            }
            println!("removed {user}@{domain}");
        }
        UserCommand::Passwd { jid } => {
            let (domain, user) = account(&config, &jid)?;
            if !storage.accounts.account_exists(&domain, &user).await? {
                bail!("no account {user}@{domain}");
            }
            let creds = credentials(&config, &format!("{user}@{domain}"))?;
            storage
                .accounts
                .set_credentials(&domain, &user, &creds)
                .await?;
            println!("password changed for {user}@{domain}");
        }
        UserCommand::List { domain } => {
            for a in storage.accounts.list_accounts(domain.as_deref()).await? {
                println!("{}@{}", a.username, a.domain);
            }
        }
    }
    Ok(())
}

/// Splits and normalises a JID (RFC 7622) into (domain, username); a bare username takes the
/// default domain. The domain must be one this server hosts.
fn account(config: &Config, input: &str) -> anyhow::Result<(String, String)> {
    let text = if input.contains('@') {
        input.to_string()
    } else {
        format!("{input}@{}", config.default_domain())
    };
    let jid = BareJid::new(&text).with_context(|| format!("'{input}' is not a valid JID"))?;
    let Some(node) = jid.node() else {
        bail!("'{input}' has no username part (user@domain)");
    };
    let domain = jid.domain().as_str().to_string();
    if !config.server.domains.iter().any(|d| d == &domain) {
        bail!("this server does not host {domain} (see server.domains)");
    }
    Ok((domain, node.as_str().to_string()))
}

fn credentials(config: &Config, jid: &str) -> anyhow::Result<Vec<ScramCredentials>> {
    let password = read_password(jid)?;
    let i = config.c2s.scram_iterations;
    Ok(vec![
        ScramCredentials::generate(Hash::Sha1, &password, i)?,
        ScramCredentials::generate(Hash::Sha256, &password, i)?,
    ])
}

/// From a hidden prompt on a terminal, else the first line of standard input — never argv,
/// where other users could read it.
fn read_password(jid: &str) -> anyhow::Result<String> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("password for {jid}: "))?;
        let second = rpassword::prompt_password("again: ")?;
        if first != second {
            bail!("the passwords differ");
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    Ok(password)
}
