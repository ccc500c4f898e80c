//! `weft user add|remove|passwd|list`: account management against the configured store.
//! Passwords come from a prompt, or one line of standard input when it is not a terminal, and
//! are stored only as SCRAM-SHA-1 and SCRAM-SHA-256 credentials.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use weft_config::Config;
use weft_sasl::{Hash, ScramCredentials};
use weft_storage::{Storage, StorageError};

use crate::account_name;

#[derive(Args)]
pub struct UserArgs {
    /// Configuration file (TOML), the same as the server's: accounts live in its data
    /// directory. Without it: ./weft-data under the current directory.
    #[arg(long, short, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: UserCommand,
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create an account; the password is asked for, or read from standard input.
    Add {
        /// The account, e.g. alice@localhost (a bare username takes the first domain).
        jid: String,
        /// Create the database if there is none yet (otherwise a missing database is an
        /// error: it usually means another data directory than the server's).
        #[arg(long)]
        create: bool,
    },
    /// Delete an account and its data.
    Remove { jid: String },
    /// Change an account's password (asked for, or read from standard input).
    Passwd { jid: String },
    /// List accounts, optionally of one domain.
    List { domain: Option<String> },
}

pub async fn run(config: Config, command: UserCommand) -> anyhow::Result<()> {
    // The input first: a mistyped name must not leave a new database behind.
    let account = match &command {
        UserCommand::Add { jid, .. }
        | UserCommand::Remove { jid }
        | UserCommand::Passwd { jid } => {
            Some(account_name::parse(jid, &config.server.domains).map_err(anyhow::Error::msg)?)
        }
        UserCommand::List { .. } => None,
    };
    let db = config.sqlite_path();
    let create = matches!(command, UserCommand::Add { create: true, .. });
    if !db.exists() {
        if !create {
            bail!(
                "no database at {}.\n\
                 The server keeps accounts in its data directory (server.data_dir: {}), which \
                 `weft run` prints at startup; a relative data directory is relative to where \
                 weft runs. Run this command from that directory or with the server's --config, \
                 or pass --create to `user add` to start a new, empty database here.",
                db.display(),
                config.server.data_dir.display()
            );
        }
        eprintln!("weft: creating a new database at {}", db.display());
    } else {
        eprintln!("weft: database {}", db.display());
    }
    let storage = Storage::open_sqlite(&db)
        .await
        .with_context(|| format!("opening {}", db.display()))?;
    let account = || account.clone().expect("parsed above");
    match command {
        UserCommand::Add { .. } => {
            let (domain, user) = account();
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
        UserCommand::Remove { .. } => {
            let (domain, user) = account();
            if !storage.accounts.remove_account(&domain, &user).await? {
                bail!("no account {user}@{domain}");
            }
            println!("removed {user}@{domain}");
        }
        UserCommand::Passwd { .. } => {
            let (domain, user) = account();
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
        eprintln!(
            "Setting the password of {jid}. Standard input works too: with a file or a pipe \
             instead of a terminal, its first line is the password."
        );
        let first = rpassword::prompt_password(format!("password for {jid}: "))?;
        let second = rpassword::prompt_password(format!("password for {jid} again: "))?;
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
