//! The `fanout` scenario: one user with F contacts (subscription `both`), all of them online,
//! changes presence again and again; the server delivers each change to every contact (RFC 6121
//! §4.4.2).
//!
//! First the F contacts log in as clients do (bind, roster get with exactly the user on it,
//! initial presence), then the user (roster get with all F contacts). The user's initial
//! presence must reach every contact, and the probes it causes must bring back every contact's
//! presence (§4.3), or the run fails. Then the user sends `--warmup-changes` unrecorded changes
//! and up to `--changes` measured ones, one at a time (or `--window` in flight): `<show/>`
//! alternates between `away` and `xa`, `<status/>` carries the change's number. A change is complete when the last contact
//! received it; a contact that misses one fails the run.
//!
//! Reports presence deliveries per second (F per change, over the measured changes), the time
//! from a change's send to its last delivery (p50/p99/max over the changes), and server CPU per
//! 1000 deliveries.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use clap::Args;
use serde_json::json;
use tokio::sync::{mpsc, watch, Notify, Semaphore};

use crate::conn::{Conn, Event};
use crate::roster_login::login_with_roster;
use crate::{procstat, report, xml, Common, Ctx, Target};

#[derive(Args)]
pub struct FanoutArgs {
    /// The contacts are PREFIX<first-user> … (--users-prefix, --first-user), this many.
    #[command(flatten)]
    pub common: Common,
    /// The user whose presence changes (a username, e.g. fu1).
    #[arg(long)]
    pub user: String,
    /// Contacts, all online.
    #[arg(long, default_value_t = 500)]
    pub contacts: usize,
    /// Measured presence changes (fewer if --max-seconds runs out first).
    #[arg(long, default_value_t = 200)]
    pub changes: u32,
    /// Unrecorded changes first.
    #[arg(long, default_value_t = 3)]
    pub warmup_changes: u32,
    /// No measured change starts after this many seconds.
    #[arg(long, default_value_t = 60.0)]
    pub max_seconds: f64,
    /// Measured changes in flight at once (1: the next is sent when the last contact got the
    /// previous one; more overlaps the server's work with the generator's reading, and the
    /// latency then includes the wait behind earlier changes).
    #[arg(long, default_value_t = 1)]
    pub window: usize,
}

struct Shared {
    /// The user's bare JID, as contacts see it in `from`.
    user_bare: String,
    contacts: usize,
    /// Per change number (0: the initial presence), how many contacts received it.
    got: RefCell<Vec<usize>>,
    /// When the last contact received change k.
    done_at: RefCell<Vec<Option<Instant>>>,
    /// When the user's session flushed change k.
    sent_at: RefCell<Vec<Option<Instant>>>,
    /// Change numbers a contact saw out of order or twice.
    unexpected: Cell<usize>,
    /// Contacts whose presence reached the user (probe answers and their initial broadcast).
    user_saw: RefCell<HashSet<String>>,
    closed: Cell<usize>,
    progress: Notify,
}

impl Shared {
    /// A contact received presence number `k` from the user.
    fn delivered(&self, k: usize, last: &mut Option<usize>) {
        if last.is_some_and(|l| k <= l) {
            self.unexpected.set(self.unexpected.get() + 1);
            return;
        }
        *last = Some(k);
        let mut got = self.got.borrow_mut();
        if k >= got.len() {
            self.unexpected.set(self.unexpected.get() + 1);
            return;
        }
        got[k] += 1;
        if got[k] == self.contacts {
            self.done_at.borrow_mut()[k] = Some(Instant::now());
            self.progress.notify_waiters();
        }
    }
}

/// The change number a presence from the user carries (0 for one without a status).
fn change_number(el: &str) -> Option<usize> {
    match xml::child_text(el, "status") {
        None => Some(0),
        Some(t) => t.trim().strip_prefix('c')?.parse().ok(),
    }
}

fn from_user(el: &str, bare: &str) -> bool {
    xml::attr(el, "from")
        .is_some_and(|f| f == bare || f.strip_prefix(bare).is_some_and(|r| r.starts_with('/')))
}

fn change(k: usize) -> String {
    let show = if k % 2 == 1 { "away" } else { "xa" };
    format!("<presence xmlns='jabber:client'><show>{show}</show><status>c{k}</status></presence>")
}

pub async fn run(ctx: Ctx, a: FanoutArgs) -> anyhow::Result<bool> {
    ensure!(
        ctx.common.target == Target::Xmpp,
        "fanout needs an XMPP server as target"
    );
    ensure!(a.contacts > 0 && a.changes > 0, "need contacts and changes");
    let ctx = Rc::new(ctx);
    let c = &ctx.common;
    let pid = c.server_pid;
    println!(
        "fanout: {} with {} online contacts {}{}.., {} changes (+{} warm-up), {} {} -> {}, generator on CPUs {}, server on CPUs {}",
        a.user,
        a.contacts,
        c.users_prefix,
        c.first_user,
        a.changes,
        a.warmup_changes,
        c.transport.name(),
        c.mech.sasl_name(),
        ctx.dialer.addr,
        procstat::cpus_allowed("self"),
        pid.map(|p| procstat::cpus_allowed(&p.to_string()))
            .unwrap_or_else(|| "?".into()),
    );
    let total = 1 + (a.warmup_changes + a.changes) as usize;
    let sh = Rc::new(Shared {
        user_bare: format!("{}@{}", a.user, c.domain),
        contacts: a.contacts,
        got: RefCell::new(vec![0; total]),
        done_at: RefCell::new(vec![None; total]),
        sent_at: RefCell::new(vec![None; total]),
        unexpected: Cell::new(0),
        user_saw: RefCell::default(),
        closed: Cell::new(0),
        progress: Notify::new(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let run_start = Instant::now();

    // 1. The contacts, each with the user alone on its roster.
    let permits = std::sync::Arc::new(Semaphore::new(c.concurrency.max(1)));
    let logged_in = Rc::new(Cell::new(0usize));
    let failures = Rc::new(RefCell::new(Vec::<String>::new()));
    for i in 0..a.contacts {
        let permit = permits.clone().acquire_owned().await?;
        let (ctx, sh, stop, logged_in, failures) = (
            ctx.clone(),
            sh.clone(),
            stop_rx.clone(),
            logged_in.clone(),
            failures.clone(),
        );
        tokio::task::spawn_local(async move {
            let user = format!("{}{}", ctx.common.users_prefix, ctx.common.first_user + i);
            let mut last = None;
            let bare = sh.user_bare.clone();
            let result = login_with_roster(&ctx, i, &user, 1, |el| {
                if from_user(el, &bare) && xml::attr(el, "type").is_none() {
                    if let Some(k) = change_number(el) {
                        sh.delivered(k, &mut last);
                    }
                }
            })
            .await;
            drop(permit);
            match result {
                Ok((s, _)) => {
                    logged_in.set(logged_in.get() + 1);
                    contact(s.conn, sh, stop, last).await;
                }
                Err(e) => failures.borrow_mut().push(format!("{user}: {e:#}")),
            }
        });
    }
    while logged_in.get() + failures.borrow().len() < a.contacts {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if let Some(e) = failures.borrow().first() {
        bail!(
            "{} of {} contacts did not log in, e.g. {e}",
            failures.borrow().len(),
            a.contacts
        );
    }
    let contacts_secs = run_start.elapsed().as_secs_f64();
    println!(
        "  {} contacts logged in with their roster in {contacts_secs:.2} s",
        a.contacts
    );

    // 2. The user: its roster lists every contact; its initial presence reaches them all, and
    // the probes bring back every contact's presence.
    let saw = |el: &str, sh: &Shared| {
        if xml::attr(el, "type").is_none() && !from_user(el, &sh.user_bare) {
            if let Some(from) = xml::attr(el, "from") {
                let bare = from.split('/').next().unwrap_or(from).to_owned();
                sh.user_saw.borrow_mut().insert(bare);
                sh.progress.notify_waiters();
            }
        }
    };
    let (s, _) = login_with_roster(&ctx, a.contacts, &a.user, a.contacts, |el| saw(el, &sh))
        .await
        .with_context(|| format!("{} logging in", a.user))?;
    let (send_tx, send_rx) = mpsc::unbounded_channel::<(usize, String)>();
    {
        let (sh, stop) = (sh.clone(), stop_rx.clone());
        tokio::task::spawn_local(async move {
            user_session(s.conn, sh, stop, send_rx, saw).await;
        });
    }
    let ready = |sh: &Shared| {
        sh.got.borrow()[0] == sh.contacts && sh.user_saw.borrow().len() == sh.contacts
    };
    if !wait_for(&sh, ctx.timeout(), ready).await {
        bail!(
            "after {}'s initial presence: {} of {} contacts received it, {} contacts' presence reached {} (probe answers)",
            a.user,
            sh.got.borrow()[0],
            a.contacts,
            sh.user_saw.borrow().len(),
            a.user
        );
    }
    println!(
        "  {} logged in: its initial presence reached all {} contacts and theirs reached it",
        a.user, a.contacts
    );

    // 3. The changes: the warm-up ones one at a time, then up to --window in flight.
    let mut lat = report::histogram();
    let mut measured = 0u32;
    let mut missed = None;
    let warm = a.warmup_changes as usize;
    let window = a.window.max(1);
    let send = |k: usize| {
        send_tx
            .send((k, change(k)))
            .map_err(|_| anyhow::anyhow!("{}'s session ended", a.user))
    };
    let done = |k: usize| move |sh: &Shared| sh.done_at.borrow()[k].is_some();
    for k in 1..=warm.min(total - 1) {
        send(k)?;
        if !wait_for(&sh, ctx.timeout(), done(k)).await {
            missed = Some((k, sh.got.borrow()[k]));
            break;
        }
    }
    let before = procstat::sample(pid);
    let start = Instant::now();
    let mut end = start;
    let (mut next, mut k) = (warm + 1, warm + 1);
    while missed.is_none() && k < total {
        while next < total && next < k + window && start.elapsed().as_secs_f64() < a.max_seconds {
            send(next)?;
            next += 1;
        }
        if k >= next {
            break; // the time bound: nothing left in flight
        }
        if !wait_for(&sh, ctx.timeout(), done(k)).await {
            missed = Some((k, sh.got.borrow()[k]));
            break;
        }
        end = Instant::now();
        measured += 1;
        let sent = sh.sent_at.borrow()[k];
        let done_at = sh.done_at.borrow()[k];
        if let (Some(s), Some(d)) = (sent, done_at) {
            let _ = lat.record(d.saturating_duration_since(s).as_micros().max(1) as u64);
        }
        k += 1;
    }
    let after = procstat::sample(pid);
    let secs = end.saturating_duration_since(start).as_secs_f64().max(1e-6);
    let deliveries = measured as usize * a.contacts;
    let rate = deliveries as f64 / secs;
    let server_cpu = after.cpu_s - before.cpu_s;
    let mut rec = ctx.record("fanout");
    println!(
        "presence changes: {measured} measured, {deliveries} deliveries in {secs:.2} s: {rate:.0} deliveries/s ({:.1} changes/s)",
        measured as f64 / secs
    );
    let lat_text = report::latency(&lat, "fanout", &mut rec);
    println!("send to last delivery: {lat_text}");
    if pid.is_some() {
        println!(
            "server CPU: {server_cpu:.2} s, {:.3} s per 1000 deliveries; generator CPU {:.2} s",
            1000.0 * server_cpu / deliveries.max(1) as f64,
            after.gen_cpu_s - before.gen_cpu_s
        );
    }
    if let Some((k, got)) = missed {
        println!(
            "change {k} reached {got} of {} contacts within {:.0} s",
            a.contacts,
            ctx.timeout().as_secs_f64()
        );
    }
    let unexpected = sh.unexpected.get();
    if unexpected > 0 {
        println!("{unexpected} presences from the user arrived twice or out of order");
    }
    stop_tx.send_replace(true);
    let until = Instant::now() + Duration::from_secs(10);
    while sh.closed.get() < a.contacts + 1 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (k, v) in [
        ("contacts", json!(a.contacts)),
        ("changes", json!(a.changes)),
        ("warmup_changes", json!(a.warmup_changes)),
        ("window", json!(window)),
        ("measured_changes", json!(measured)),
        (
            "missed",
            json!(missed.map_or(0, |(_, got)| a.contacts - got)),
        ),
        ("unexpected", json!(unexpected)),
        ("deliveries", json!(deliveries)),
        ("seconds", json!(report::round3(secs))),
        ("deliveries_per_s", json!(rate.round())),
        (
            "contacts_login_seconds",
            json!(report::round3(contacts_secs)),
        ),
        ("server_cpu_s", json!(report::round3(server_cpu))),
        (
            "server_cpu_s_per_1000",
            json!(report::round3(
                1000.0 * server_cpu / deliveries.max(1) as f64
            )),
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
    Ok(missed.is_none() && unexpected == 0 && measured > 0)
}

/// Waits until `cond` holds or `timeout` passes; whether it held.
async fn wait_for(sh: &Shared, timeout: Duration, cond: impl Fn(&Shared) -> bool) -> bool {
    crate::wait_until(sh, &sh.progress, timeout, cond).await
}

/// A contact: counts the user's presences until the end.
async fn contact(
    mut conn: Conn,
    sh: Rc<Shared>,
    mut stop: watch::Receiver<bool>,
    mut last: Option<usize>,
) {
    loop {
        tokio::select! {
            ev = conn.recv() => match ev {
                Ok(Event::Element(el)) => {
                    if xml::name(&el) == "presence" && xml::attr(&el, "type").is_none() && from_user(&el, &sh.user_bare) {
                        match change_number(&el) {
                            Some(k) => sh.delivered(k, &mut last),
                            None => sh.unexpected.set(sh.unexpected.get() + 1),
                        }
                    }
                }
                Ok(Event::Header) => {}
                Ok(Event::Closed) | Err(_) => break,
            },
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow_and_update() {
                    conn.close().await;
                    break;
                }
            }
        }
    }
    sh.closed.set(sh.closed.get() + 1);
}

/// The user: sends each change when told, and notes the contacts' presences it receives.
async fn user_session(
    mut conn: Conn,
    sh: Rc<Shared>,
    mut stop: watch::Receiver<bool>,
    mut changes: mpsc::UnboundedReceiver<(usize, String)>,
    saw: impl Fn(&str, &Shared),
) {
    loop {
        tokio::select! {
            ev = conn.recv() => match ev {
                Ok(Event::Element(el)) => {
                    if xml::name(&el) == "presence" {
                        saw(&el, &sh);
                    }
                }
                Ok(Event::Header) => {}
                Ok(Event::Closed) | Err(_) => break,
            },
            next = changes.recv() => {
                let Some((k, stanza)) = next else { break };
                if conn.send(stanza).await.is_err() {
                    break;
                }
                sh.sent_at.borrow_mut()[k] = Some(Instant::now());
                if conn.flush().await.is_err() {
                    break;
                }
            }
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow_and_update() {
                    conn.close().await;
                    break;
                }
            }
        }
    }
    sh.closed.set(sh.closed.get() + 1);
}
