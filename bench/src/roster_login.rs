//! The `roster-login` scenario: accounts with a full roster log in as a client does at start-up
//! (RFC 6121 §2.2 and §4.2): SASL, bind, a roster get whose result must list every expected
//! contact with subscription `both`, then initial presence, which makes the server send the
//! presence to subscribed contacts and probe every contact. A ping right after the presence
//! closes the login: servers handle one session's stanzas in order, so its result comes after
//! the presence has been processed, probes included. Sessions stay logged in until the end.
//!
//! Reports logins per second, login time, and how many presences (probe answers) each login
//! received before its ping result.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use clap::Args;
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::conn::Event;
use crate::login::{self, Session};
use crate::{procstat, report, xml, Common, Ctx, Target};

#[derive(Args)]
pub struct RosterLoginArgs {
    #[command(flatten)]
    pub common: Common,
    /// Logins measured: PREFIX<first-user> … PREFIX<first-user + n - 1>.
    #[arg(long, default_value_t = 1000)]
    pub n: usize,
    /// Items every roster result must hold, all with subscription `both`.
    #[arg(long, default_value_t = 200)]
    pub roster_size: usize,
    /// Unrecorded logins first (PREFIX<first-user + n> onwards): code loaded on first use.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// No login starts after this many seconds (the rate counts those that did).
    #[arg(long, default_value_t = 900.0)]
    pub max_seconds: f64,
}

/// What a roster login saw besides its own answers.
#[derive(Default)]
pub struct Seen {
    /// Presences received after the initial presence, up to the ping result.
    pub presences: usize,
}

/// A full client login with roster: bind, roster get (must list `expect_items` items, all
/// `both`), initial presence, and a ping whose result marks the end. `on_presence` sees every
/// presence stanza that arrives before that result.
pub async fn login_with_roster(
    ctx: &Ctx,
    i: usize,
    user: &str,
    expect_items: usize,
    mut on_presence: impl FnMut(&str),
) -> anyhow::Result<(Session, Seen)> {
    let work = async {
        let mut s = ctx.bind_as(i, user).await?;
        s.conn
            .send("<iq xmlns='jabber:client' type='get' id='roster1'><query xmlns='jabber:iq:roster'/></iq>".into())
            .await?;
        s.conn.flush().await?;
        let roster = login::iq_result(&mut s.conn, "roster1").await?;
        let items = xml::descendants(&roster, "item").count();
        let both = xml::descendants(&roster, "item")
            .filter(|it| xml::attr(it, "subscription") == Some("both"))
            .count();
        if items != expect_items || both != expect_items {
            bail!("{user}'s roster has {items} items ({both} both), expected {expect_items} both");
        }
        s.conn
            .send("<presence xmlns='jabber:client'/>".into())
            .await?;
        s.conn
            .send(format!(
                "<iq xmlns='jabber:client' type='get' id='rping' to='{}'><ping xmlns='urn:xmpp:ping'/></iq>",
                ctx.common.domain
            ))
            .await?;
        s.conn.flush().await?;
        let mut seen = Seen::default();
        loop {
            let el = login::next_element(&mut s.conn).await?;
            match xml::name(&el) {
                "presence" => {
                    seen.presences += 1;
                    on_presence(&el);
                }
                "iq" if xml::attr(&el, "id") == Some("rping") => {
                    ensure!(
                        xml::attr(&el, "type") == Some("result"),
                        "ping after the initial presence failed: {}",
                        &*el
                    );
                    break;
                }
                _ => {}
            }
        }
        Ok((s, seen))
    };
    tokio::time::timeout(ctx.timeout(), work)
        .await
        .map_err(|_| anyhow::anyhow!("login with roster timed out"))?
}

struct Stats {
    ok: Cell<usize>,
    failed: Cell<usize>,
    finished: Cell<usize>,
    dropped: Cell<usize>,
    presences: Cell<usize>,
    last_login: Cell<Instant>,
    errors: RefCell<BTreeMap<String, usize>>,
    login_us: RefCell<Histogram<u64>>,
}

fn bump(c: &Cell<usize>, by: usize) {
    c.set(c.get() + by);
}

pub async fn run(ctx: Ctx, a: RosterLoginArgs) -> anyhow::Result<bool> {
    ensure!(
        ctx.common.target == Target::Xmpp,
        "roster-login needs an XMPP server as target"
    );
    let ctx = Rc::new(ctx);
    let c = &ctx.common;
    let pid = c.server_pid;
    println!(
        "roster-login: {} logins of {}{}.. with {} contacts each, {} {} -> {}, generator on CPUs {}, server on CPUs {}",
        a.n,
        c.users_prefix,
        c.first_user,
        a.roster_size,
        c.transport.name(),
        c.mech.sasl_name(),
        ctx.dialer.addr,
        procstat::cpus_allowed("self"),
        pid.map(|p| procstat::cpus_allowed(&p.to_string()))
            .unwrap_or_else(|| "?".into()),
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    // The warm-up sessions stay logged in too (their contacts are offline, like everyone's).
    let mut warm = Vec::new();
    for w in 0..a.warmup {
        let user = format!("{}{}", c.users_prefix, c.first_user + a.n + w);
        match login_with_roster(&ctx, a.n + w, &user, a.roster_size, |_| {}).await {
            Ok((s, _)) => warm.push(s),
            Err(e) => bail!("warm-up login {user}: {e:#}"),
        }
    }
    let stats = Rc::new(Stats {
        ok: Cell::new(0),
        failed: Cell::new(0),
        finished: Cell::new(0),
        dropped: Cell::new(0),
        presences: Cell::new(0),
        last_login: Cell::new(Instant::now()),
        errors: RefCell::default(),
        login_us: RefCell::new(report::histogram()),
    });
    let before = procstat::sample(pid);
    let permits = std::sync::Arc::new(Semaphore::new(c.concurrency.max(1)));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(a.max_seconds);
    let mut launched = 0;
    let mut next_progress = start + Duration::from_secs(5);
    for i in 0..a.n {
        let permit = permits.clone().acquire_owned().await?;
        if Instant::now() >= deadline {
            break;
        }
        tokio::task::spawn_local(session(
            ctx.clone(),
            stats.clone(),
            i,
            a.roster_size,
            stop_rx.clone(),
            permit,
        ));
        launched += 1;
        if Instant::now() >= next_progress {
            println!(
                "  … {} logged in, {} failed",
                stats.ok.get(),
                stats.failed.get()
            );
            next_progress += Duration::from_secs(5);
        }
    }
    let until = Instant::now() + ctx.timeout() + Duration::from_secs(5);
    while stats.ok.get() + stats.failed.get() < launched && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = procstat::sample(pid);
    let (ok, failed) = (stats.ok.get(), stats.failed.get());
    let secs = stats
        .last_login
        .get()
        .saturating_duration_since(start)
        .as_secs_f64()
        .max(1e-6);
    let rate = ok as f64 / secs;
    let per_login = stats.presences.get() as f64 / ok.max(1) as f64;
    println!(
        "logins with roster: {ok} ok, {failed} failed of {launched} started ({} requested) in {secs:.2} s: {rate:.0} logins/s",
        a.n
    );
    for (e, count) in stats.errors.borrow().iter().take(5) {
        println!("  {count} × {e}");
    }
    let mut rec = ctx.record("roster-login");
    let lat = report::latency(&stats.login_us.borrow(), "login", &mut rec);
    println!("login time (SASL to the ping after the initial presence): {lat}");
    println!("presences received per login before its ping result (probe answers): {per_login:.1}");
    let server_cpu = after.cpu_s - before.cpu_s;
    if pid.is_some() {
        println!(
            "server CPU for the logins: {server_cpu:.2} s ({:.2} ms per login)",
            1000.0 * server_cpu / ok.max(1) as f64
        );
    }
    stop_tx.send_replace(true);
    let until = Instant::now() + Duration::from_secs(10);
    while stats.finished.get() < ok && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for mut s in warm {
        s.conn.close().await;
    }
    let dropped = stats.dropped.get();
    if dropped > 0 {
        println!("{dropped} sessions were closed by the server while idle");
    }
    for (k, v) in [
        ("n", json!(launched)),
        ("requested", json!(a.n)),
        ("roster_size", json!(a.roster_size)),
        ("warmup", json!(a.warmup)),
        ("ok", json!(ok)),
        ("failed", json!(failed)),
        ("dropped", json!(dropped)),
        ("login_seconds", json!(report::round3(secs))),
        ("logins_per_s", json!(rate.round())),
        (
            "presences_per_login",
            json!((per_login * 10.0).round() / 10.0),
        ),
        ("server_cpu_s", json!(report::round3(server_cpu))),
        (
            "server_cpu_ms_per_login",
            json!(report::round3(1000.0 * server_cpu / ok.max(1) as f64)),
        ),
        (
            "generator_cpu_s",
            json!(report::round3(after.gen_cpu_s - before.gen_cpu_s)),
        ),
        (
            "server_steal_s",
            json!(report::round3(after.server_steal_s - before.server_steal_s)),
        ),
        ("scram_derivations", json!(ctx.cache.derivations.get())),
    ] {
        rec.insert(k.into(), v);
    }
    ctx.emit(&rec)?;
    Ok(ok == launched && ok > 0 && failed == 0 && dropped == 0)
}

async fn session(
    ctx: Rc<Ctx>,
    stats: Rc<Stats>,
    i: usize,
    roster_size: usize,
    mut stop: watch::Receiver<bool>,
    permit: OwnedSemaphorePermit,
) {
    let t0 = Instant::now();
    let user = format!("{}{}", ctx.common.users_prefix, ctx.common.first_user + i);
    let result = login_with_roster(&ctx, i, &user, roster_size, |_| {}).await;
    drop(permit);
    let (mut s, seen) = match result {
        Ok(r) => r,
        Err(e) => {
            let mut text = format!("{e:#}");
            text.truncate(160);
            *stats.errors.borrow_mut().entry(text).or_default() += 1;
            bump(&stats.failed, 1);
            return;
        }
    };
    let _ = stats
        .login_us
        .borrow_mut()
        .record(t0.elapsed().as_micros() as u64);
    stats.last_login.set(Instant::now());
    bump(&stats.ok, 1);
    bump(&stats.presences, seen.presences);
    loop {
        tokio::select! {
            ev = s.conn.recv() => match ev {
                Ok(Event::Element(_) | Event::Header) => {}
                Ok(Event::Closed) | Err(_) => {
                    bump(&stats.dropped, 1);
                    bump(&stats.finished, 1);
                    return;
                }
            },
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow_and_update() {
                    s.conn.close().await;
                    bump(&stats.finished, 1);
                    return;
                }
            }
        }
    }
}
