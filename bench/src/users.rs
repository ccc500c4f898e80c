//! `weft-bench users`: creates benchmark accounts directly in weft's SQLite store.
//!
//! `weft user add` starts a process and runs PBKDF2 twice per account (random salts), about
//! 20 ms each; 20,000 accounts would take minutes. Benchmark accounts all share one password,
//! so this derives the SCRAM-SHA-1 and SCRAM-SHA-256 credentials once, with one fixed salt per
//! run, and inserts them through weft's own `AccountStore`. The shared salt also lets the
//! generator derive its salted password once (see `scram.rs`). Never use this for real users.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use sha2::{Digest, Sha256};
use weft_sasl::{Hash, ScramCredentials};
use weft_storage::{Storage, StorageError};

#[derive(Args)]
pub struct UsersArgs {
    /// weft's configuration file (for the database path, domain and SCRAM iterations).
    #[arg(long)]
    pub weft_config: PathBuf,
    /// Accounts to create: PREFIX<first>, …, PREFIX<first + n - 1>.
    #[arg(long)]
    pub n: usize,
    #[arg(long, default_value = "bench")]
    pub users_prefix: String,
    #[arg(long, default_value_t = 1)]
    pub first_user: usize,
    #[arg(long, default_value = "bench-password")]
    pub password: String,
}

pub async fn run(a: UsersArgs) -> anyhow::Result<()> {
    let config = weft_config::Config::load(&a.weft_config)
        .with_context(|| format!("loading {}", a.weft_config.display()))?;
    let path = config.sqlite_path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).ok();
    }
    let storage = Storage::open_sqlite(&path)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    let domain = config.default_domain().to_string();
    let iterations = config.c2s.scram_iterations;
    let salt = &Sha256::digest(format!("weft-bench {}", a.users_prefix))[..16];
    let creds = [
        ScramCredentials::derive(Hash::Sha1, &a.password, salt, iterations)?,
        ScramCredentials::derive(Hash::Sha256, &a.password, salt, iterations)?,
    ];
    let t = Instant::now();
    let (mut created, mut existed) = (0, 0);
    for i in a.first_user..a.first_user + a.n {
        let user = format!("{}{i}", a.users_prefix);
        match storage
            .accounts
            .create_account(&domain, &user, &creds)
            .await
        {
            Ok(()) => created += 1,
            Err(StorageError::AlreadyExists) => existed += 1,
            Err(e) => return Err(e).with_context(|| format!("creating {user}@{domain}")),
        }
    }
    println!(
        "users: {created} created, {existed} already there ({}{}..{}{}@{domain}) in {:.2} s",
        a.users_prefix,
        a.first_user,
        a.users_prefix,
        a.first_user + a.n - 1,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
