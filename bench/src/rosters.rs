//! `weft-bench rosters`: mutual (`both`) rosters for the roster scenarios, written straight
//! into each server's store before it starts.
//!
//! The RFC 6121 subscribe/subscribed handshake over the protocol would take four stanzas and
//! four stored changes per pair, hundreds of thousands of them for the login scenario; each
//! server's own store is written instead, in the format that server reads:
//!
//! - weft: its SQLite file (the `roster_items` and `roster_versions` tables of schema 0002) in
//!   one transaction, then read back through `weft-storage`'s `RosterStore`;
//! - Prosody: `DATA/<host>/roster/<user>.dat`, the Lua table `core.rostermanager` loads
//!   (items keyed by bare JID, metadata under `[false]`);
//! - ejabberd: a file of `user contact` lines that `peers/ejabberd-rosters.escript` writes as
//!   `#roster{}` records on the running node.
//!
//! The plan is one bipartite ring: accounts A1…An (`--a-prefix`, `--a-n`) each have `--size`
//! contacts among B1…Bm, A(i) the contacts B(i), B(i+1), … (wrapping around), and every such
//! contact has A(i) on its own roster, both with subscription `both`. The login scenario uses
//! n = m (every roster has `size` items); the fan-out scenario n = 1 (one user, m = `size`
//! contacts with one item each). A accounts never appear on each other's rosters, nor B
//! accounts on each other's.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{ensure, Context};
use clap::Args;
use weft_storage::{Storage, Subscription};

#[derive(Args)]
pub struct RostersArgs {
    /// Accounts whose rosters hold `--size` B contacts: PREFIX1…PREFIX<a-n>.
    #[arg(long)]
    pub a_prefix: String,
    #[arg(long)]
    pub a_n: usize,
    /// The contacts: PREFIX1…PREFIX<b-n>.
    #[arg(long)]
    pub b_prefix: String,
    #[arg(long)]
    pub b_n: usize,
    /// Contacts on each A roster (at most --b-n).
    #[arg(long)]
    pub size: usize,
    #[arg(long, default_value = "localhost")]
    pub domain: String,
    /// Write into this weft's SQLite store (the accounts must exist: `weft-bench users`).
    #[arg(long)]
    pub weft_config: Option<PathBuf>,
    /// Write Prosody roster files under this data_path (DIR/<domain>/roster/<user>.dat).
    #[arg(long)]
    pub prosody_data: Option<PathBuf>,
    /// Write `user contact` lines (usernames, one direction per line) for
    /// peers/ejabberd-rosters.escript.
    #[arg(long)]
    pub ejabberd_pairs: Option<PathBuf>,
}

/// Every account's roster: username → contacts' usernames (all `both`).
pub fn plan(a: &RostersArgs) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    ensure!(
        a.size >= 1 && a.size <= a.b_n && a.a_n >= 1,
        "need 1 ≤ --size ≤ --b-n and --a-n ≥ 1"
    );
    let name = |p: &str, i: usize| format!("{p}{}", i + 1);
    let mut rosters: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for i in 0..a.a_n {
        let user = name(&a.a_prefix, i);
        for j in 0..a.size {
            let contact = name(&a.b_prefix, (i + j) % a.b_n);
            rosters
                .entry(contact.clone())
                .or_default()
                .push(user.clone());
            rosters.entry(user.clone()).or_default().push(contact);
        }
    }
    Ok(rosters)
}

pub async fn run(a: RostersArgs) -> anyhow::Result<()> {
    let t = Instant::now();
    let rosters = plan(&a)?;
    let items: usize = rosters.values().map(Vec::len).sum();
    if let Some(config) = &a.weft_config {
        weft(config, &rosters).await?;
    }
    if let Some(dir) = &a.prosody_data {
        prosody(dir, &a.domain, &rosters)?;
    }
    if let Some(file) = &a.ejabberd_pairs {
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(file).with_context(|| format!("creating {}", file.display()))?,
        );
        for (user, contacts) in &rosters {
            for c in contacts {
                writeln!(out, "{user} {c}")?;
            }
        }
        out.flush()?;
    }
    println!(
        "rosters: {} accounts, {items} items ({}1..{}{} with {} contacts each among {}1..{}{}) in {:.2} s",
        rosters.len(),
        a.a_prefix,
        a.a_prefix,
        a.a_n,
        a.size,
        a.b_prefix,
        a.b_prefix,
        a.b_n,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// weft: every item in one transaction (one `put_roster_item` per item, a transaction each,
/// would take minutes), then the first account of each side read back through the store.
async fn weft(config: &Path, rosters: &BTreeMap<String, Vec<String>>) -> anyhow::Result<()> {
    let config = weft_config::Config::load(config)
        .with_context(|| format!("loading {}", config.display()))?;
    let path = config.sqlite_path();
    let domain = config.default_domain().to_string();
    // Opened through weft-storage first: the schema is migrated and the accounts are there.
    let storage = Storage::open_sqlite(&path)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    {
        let mut db = rusqlite::Connection::open(&path)?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.execute_batch("PRAGMA foreign_keys = ON")?;
        let tx = db.transaction()?;
        {
            let mut item = tx.prepare(
                "INSERT OR REPLACE INTO roster_items (domain, username, contact, name, \
                 subscription, pending_out, pending_in, approved, listed, pending_in_stanza) \
                 VALUES (?1, ?2, ?3, NULL, 'both', 0, 0, 0, 1, NULL)",
            )?;
            let mut version = tx.prepare(
                "INSERT INTO roster_versions (domain, username, version) VALUES (?1, ?2, 1) \
                 ON CONFLICT (domain, username) DO UPDATE SET version = roster_versions.version + 1",
            )?;
            for (user, contacts) in rosters {
                for c in contacts {
                    item.execute((&domain, user, format!("{c}@{domain}")))
                        .with_context(|| {
                            format!("roster item {user} → {c} (does {user} exist?)")
                        })?;
                }
                version.execute((&domain, user))?;
            }
        }
        tx.commit()?;
    }
    // Read back through the store: the rows are what weft reads.
    for (user, contacts) in rosters.iter().take(1).chain(rosters.iter().last()) {
        let (_, items) = storage.roster.roster(&domain, user).await?;
        ensure!(
            items.len() == contacts.len()
                && items
                    .iter()
                    .all(|i| i.subscription == Subscription::Both && i.listed),
            "weft's store gives {user} {} items, expected {} with subscription both",
            items.len(),
            contacts.len()
        );
    }
    drop(storage);
    Ok(())
}

/// Prosody 0.12: one file per account, as `datamanager` stores the `roster` keyval store.
fn prosody(
    data: &Path,
    domain: &str,
    rosters: &BTreeMap<String, Vec<String>>,
) -> anyhow::Result<()> {
    // datamanager's file names: every non-alphanumeric byte as %xx.
    let encode = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02x}")
                }
            })
            .collect()
    };
    let dir = data.join(encode(domain)).join("roster");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for (user, contacts) in rosters {
        let mut text =
            String::from("return {\n\t[false] = {\n\t\tversion = 1;\n\t\tpending = {};\n\t};\n");
        for c in contacts {
            text.push_str(&format!(
                "\t[\"{c}@{domain}\"] = {{\n\t\tsubscription = \"both\";\n\t\tgroups = {{}};\n\t}};\n"
            ));
        }
        text.push_str("};\n");
        let file = dir.join(format!("{}.dat", encode(user)));
        std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a_n: usize, b_n: usize, size: usize) -> RostersArgs {
        RostersArgs {
            a_prefix: "rl".into(),
            a_n,
            b_prefix: "rc".into(),
            b_n,
            size,
            domain: "localhost".into(),
            weft_config: None,
            prosody_data: None,
            ejabberd_pairs: None,
        }
    }

    #[test]
    fn ring_is_mutual_and_even() {
        let r = plan(&args(5, 5, 3)).unwrap();
        assert_eq!(r.len(), 10);
        assert!(r.values().all(|c| c.len() == 3), "{r:?}");
        assert_eq!(r["rl5"], ["rc5", "rc1", "rc2"]);
        // Every item has its mirror.
        for (u, cs) in &r {
            for c in cs {
                assert!(r[c].contains(u), "{u} → {c} without {c} → {u}");
            }
        }
    }

    #[test]
    fn star() {
        let r = plan(&args(1, 4, 4)).unwrap();
        assert_eq!(r["rl1"], ["rc1", "rc2", "rc3", "rc4"]);
        assert_eq!(r["rc3"], ["rl1"]);
        assert!(plan(&args(1, 4, 5)).is_err());
    }
}
