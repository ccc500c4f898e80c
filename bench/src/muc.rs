//! The `muc` scenario (XEP-0045): one room with many occupants, a slice of them talking, then
//! more users joining the full room.
//!
//! 1. Occupant 0 creates the room and accepts the instant configuration (§10.1.2, every server
//!    locks a new room until then); the other occupants log in and join it (no history), a
//!    join being complete with the self-presence (status 110). Not measured.
//! 2. `--senders` of the occupants send `--messages` groupchat messages, `--window` in flight
//!    over all of them; a message is complete when every occupant (its sender included: the
//!    room reflects it, §7.4) received it. Reports deliveries per second and the time from a
//!    message's send to its last delivery (p50/p99), and server CPU per 1000 deliveries.
//! 3. `--joins` more users, logged in beforehand, join the room with its usual discussion
//!    history (each server's default), `--join-window` joins in flight: a join is complete with
//!    the joiner's self-presence, which comes after the presence of every occupant (§7.2.3),
//!    all of which it must have received. Reports joins per second and join time p50/p99.
//!
//! A message that does not reach every occupant, or a join that does not complete, within
//! `--timeout` fails the run.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use clap::Args;
use serde_json::json;
use tokio::sync::{mpsc, watch, Notify, Semaphore};

use crate::conn::{Conn, Event};
use crate::login::{self, Session};
use crate::{procstat, report, xml, Common, Ctx, Target};

const NS_MUC: &str = "http://jabber.org/protocol/muc";

#[derive(Args)]
pub struct MucArgs {
    /// Occupants and joiners are PREFIX<first-user> … (--users-prefix, --first-user).
    #[command(flatten)]
    pub common: Common,
    /// The room's local part.
    #[arg(long, default_value = "bench")]
    pub room: String,
    /// The MUC service (default conference.DOMAIN).
    #[arg(long)]
    pub service: Option<String>,
    /// Occupants in the room while messages flow.
    #[arg(long, default_value_t = 500)]
    pub occupants: usize,
    /// Occupants that send (the first ones).
    #[arg(long, default_value_t = 10)]
    pub senders: usize,
    /// Measured messages (fewer if --max-seconds runs out first).
    #[arg(long, default_value_t = 2000)]
    pub messages: usize,
    /// Unrecorded messages first, one at a time.
    #[arg(long, default_value_t = 5)]
    pub warmup_messages: usize,
    /// Measured messages in flight at once, over all senders.
    #[arg(long, default_value_t = 16)]
    pub window: usize,
    /// Users who join the full room afterwards (0: no join run).
    #[arg(long, default_value_t = 100)]
    pub joins: usize,
    /// Joins in flight at once.
    #[arg(long, default_value_t = 8)]
    pub join_window: usize,
    /// No measured message or join starts after this many seconds (each phase).
    #[arg(long, default_value_t = 60.0)]
    pub max_seconds: f64,
}

struct Shared {
    occupants: usize,
    /// Per message number, how many occupants received it.
    got: RefCell<Vec<usize>>,
    done_at: RefCell<Vec<Option<Instant>>>,
    sent_at: RefCell<Vec<Option<Instant>>>,
    /// Deliveries beyond one per occupant, or of numbers never sent.
    unexpected: Cell<usize>,
    /// Joins of the join run that completed, and when.
    joined_at: RefCell<Vec<Option<Instant>>>,
    join_sent_at: RefCell<Vec<Option<Instant>>>,
    /// Joiners whose self-presence came before the presence of every occupant.
    short_joins: Cell<usize>,
    closed: Cell<usize>,
    progress: Notify,
}

impl Shared {
    fn delivered(&self, k: usize) {
        let mut got = self.got.borrow_mut();
        match got.get_mut(k) {
            Some(n) if *n < self.occupants => {
                *n += 1;
                if *n == self.occupants {
                    self.done_at.borrow_mut()[k] = Some(Instant::now());
                    self.progress.notify_waiters();
                }
            }
            _ => self.unexpected.set(self.unexpected.get() + 1),
        }
    }
}

fn message(room: &str, k: usize) -> String {
    format!("<message xmlns='jabber:client' to='{room}' type='groupchat' id='m{k}'><body>m{k}</body></message>")
}

/// The message number of a groupchat message from the room (None for history, which carries
/// a delay, and for anything else).
fn message_number(el: &str) -> Option<usize> {
    if xml::name(el) != "message" || xml::attr(el, "type") != Some("groupchat") {
        return None;
    }
    if xml::has_child(el, "delay") {
        return None;
    }
    xml::child_text(el, "body")?.strip_prefix('m')?.parse().ok()
}

/// Whether `el` is the room's presence for our own occupant (XEP-0045 §7.2.3, status 110).
fn self_presence(el: &str) -> bool {
    xml::name(el) == "presence"
        && xml::descendants(el, "status").any(|s| xml::attr(s, "code") == Some("110"))
}

fn join_presence(room: &str, nick: &str, history: bool) -> String {
    let history = if history {
        ""
    } else {
        "<history maxstanzas='0'/>"
    };
    format!("<presence xmlns='jabber:client' to='{room}/{nick}'><x xmlns='{NS_MUC}'>{history}</x></presence>")
}

/// Sends the join and reads up to the self-presence: the self-presence and how many other
/// occupants' presences came before it. A presence error fails.
async fn join(
    conn: &mut Conn,
    room: &str,
    nick: &str,
    history: bool,
) -> anyhow::Result<(String, usize)> {
    conn.send(join_presence(room, nick, history)).await?;
    conn.flush().await?;
    let mut others = 0;
    loop {
        let el = login::next_element(conn).await?;
        if xml::name(&el) != "presence" {
            continue;
        }
        if xml::attr(&el, "type") == Some("error") {
            bail!("joining {room} as {nick} failed: {}", &*el);
        }
        if self_presence(&el) {
            return Ok((el.to_string(), others));
        }
        if xml::attr(&el, "from").is_some_and(|f| f.starts_with(room)) {
            others += 1;
        }
    }
}

pub async fn run(ctx: Ctx, a: MucArgs) -> anyhow::Result<bool> {
    ensure!(
        ctx.common.target == Target::Xmpp,
        "muc needs an XMPP server as target"
    );
    ensure!(
        a.occupants > 0 && a.senders > 0 && a.senders <= a.occupants && a.messages > 0,
        "need occupants, 1..=occupants senders, and messages"
    );
    let ctx = Rc::new(ctx);
    let c = &ctx.common;
    let pid = c.server_pid;
    let service = a
        .service
        .clone()
        .unwrap_or_else(|| format!("conference.{}", c.domain));
    let room = format!("{}@{service}", a.room);
    println!(
        "muc: {room} with {} occupants ({}{}..), {} senders, {} messages ({} in flight), then {} joins ({} in flight), {} {} -> {}, generator on CPUs {}, server on CPUs {}",
        a.occupants,
        c.users_prefix,
        c.first_user,
        a.senders,
        a.messages,
        a.window,
        a.joins,
        a.join_window,
        c.transport.name(),
        c.mech.sasl_name(),
        ctx.dialer.addr,
        procstat::cpus_allowed("self"),
        pid.map(|p| procstat::cpus_allowed(&p.to_string()))
            .unwrap_or_else(|| "?".into()),
    );
    let total = a.warmup_messages + a.messages;
    let sh = Rc::new(Shared {
        occupants: a.occupants,
        got: RefCell::new(vec![0; total]),
        done_at: RefCell::new(vec![None; total]),
        sent_at: RefCell::new(vec![None; total]),
        unexpected: Cell::new(0),
        joined_at: RefCell::new(vec![None; a.joins]),
        join_sent_at: RefCell::new(vec![None; a.joins]),
        short_joins: Cell::new(0),
        closed: Cell::new(0),
        progress: Notify::new(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let nick = |i: usize| format!("{}{}", c.users_prefix, c.first_user + i);

    // 1. The room: created by occupant 0, configured as an instant room where it was new.
    let fill_start = Instant::now();
    let mut owner = ctx.login(0).await.context("occupant 0 logging in")?;
    let (own, _) =
        tokio::time::timeout(ctx.timeout(), join(&mut owner.conn, &room, &nick(0), false))
            .await
            .context("creating the room timed out")??;
    if xml::descendants(&own, "status").any(|s| xml::attr(s, "code") == Some("201")) {
        owner.conn.send(format!(
            "<iq xmlns='jabber:client' type='set' to='{room}' id='instant'><query xmlns='{NS_MUC}#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"
        )).await?;
        owner.conn.flush().await?;
        tokio::time::timeout(ctx.timeout(), login::iq_result(&mut owner.conn, "instant"))
            .await
            .context("the instant room's configuration timed out")??;
    }
    let mut senders = Vec::new();
    let spawn_occupant = |s: Session, i: usize, senders: &mut Vec<_>| {
        let rx = (i < a.senders).then(|| {
            let (tx, rx) = mpsc::unbounded_channel::<(usize, String)>();
            senders.push(tx);
            rx
        });
        let (sh, stop) = (sh.clone(), stop_rx.clone());
        tokio::task::spawn_local(occupant(s.conn, sh, stop, rx));
    };
    spawn_occupant(owner, 0, &mut senders);

    // The other occupants, `--concurrency` logins and joins in flight.
    let permits = std::sync::Arc::new(Semaphore::new(c.concurrency.max(1)));
    let (joined_tx, mut joined_rx) = mpsc::unbounded_channel::<(usize, anyhow::Result<Session>)>();
    for i in 1..a.occupants {
        let permit = permits.clone().acquire_owned().await?;
        let (ctx, room, joined_tx, nick) = (ctx.clone(), room.clone(), joined_tx.clone(), nick(i));
        tokio::task::spawn_local(async move {
            let work = async {
                let mut s = ctx.login(i).await?;
                join(&mut s.conn, &room, &nick, false).await?;
                Ok(s)
            };
            let result = tokio::time::timeout(ctx.timeout() * 2, work)
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("login and join timed out")));
            drop(permit);
            let _ = joined_tx.send((i, result));
        });
    }
    drop(joined_tx);
    let mut failures = Vec::new();
    while let Some((i, result)) = joined_rx.recv().await {
        match result {
            Ok(s) => spawn_occupant(s, i, &mut senders),
            Err(e) => failures.push(format!("{}: {e:#}", nick(i))),
        }
    }
    if let Some(e) = failures.first() {
        bail!(
            "{} of {} occupants did not join, e.g. {e}",
            failures.len(),
            a.occupants
        );
    }
    let fill_secs = fill_start.elapsed().as_secs_f64();
    println!(
        "  {} occupants in {room} after {fill_secs:.2} s",
        a.occupants
    );

    // 2. Messages: the warm-up ones one at a time, then up to --window in flight.
    let send = |k: usize| {
        senders[k % senders.len()]
            .send((k, message(&room, k)))
            .map_err(|_| anyhow::anyhow!("a sender's session ended"))
    };
    let done = |k: usize| move |sh: &Shared| sh.done_at.borrow()[k].is_some();
    let mut missed = None;
    for k in 0..a.warmup_messages {
        send(k)?;
        if !wait_for(&sh, ctx.timeout(), done(k)).await {
            missed = Some((k, sh.got.borrow()[k]));
            break;
        }
    }
    let mut lat = report::histogram();
    let mut measured = 0usize;
    let before = procstat::sample(pid);
    let start = Instant::now();
    let mut end = start;
    let window = a.window.max(1);
    let (mut next, mut k) = (a.warmup_messages, a.warmup_messages);
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
        if let (Some(s), Some(d)) = (sh.sent_at.borrow()[k], sh.done_at.borrow()[k]) {
            let _ = lat.record(d.saturating_duration_since(s).as_micros().max(1) as u64);
        }
        k += 1;
    }
    let after = procstat::sample(pid);
    let secs = end.saturating_duration_since(start).as_secs_f64().max(1e-6);
    let deliveries = measured * a.occupants;
    let rate = deliveries as f64 / secs;
    let server_cpu = after.cpu_s - before.cpu_s;
    let mut rec = ctx.record("muc");
    println!(
        "groupchat: {measured} messages measured, {deliveries} deliveries in {secs:.2} s: {rate:.0} deliveries/s ({:.0} messages/s)",
        measured as f64 / secs
    );
    println!(
        "send to last delivery: {}",
        report::latency(&lat, "muc", &mut rec)
    );
    if pid.is_some() {
        println!(
            "server CPU: {server_cpu:.2} s, {:.4} s per 1000 deliveries",
            1000.0 * server_cpu / deliveries.max(1) as f64
        );
    }
    if let Some((k, got)) = missed {
        println!(
            "message {k} reached {got} of {} occupants within {:.0} s",
            a.occupants,
            ctx.timeout().as_secs_f64()
        );
    }

    // 3. Joins into the full room: the joiners log in first (not measured).
    let mut join_lat = report::histogram();
    let (mut joins_done, mut join_secs, mut join_failed) = (0usize, 0.0f64, None::<String>);
    if missed.is_none() && a.joins > 0 {
        let (ready_tx, mut ready_rx) =
            mpsc::unbounded_channel::<(usize, anyhow::Result<Session>)>();
        for j in 0..a.joins {
            let permit = permits.clone().acquire_owned().await?;
            let (ctx, ready_tx) = (ctx.clone(), ready_tx.clone());
            tokio::task::spawn_local(async move {
                let result = ctx.login(a.occupants + j).await;
                drop(permit);
                let _ = ready_tx.send((j, result));
            });
        }
        drop(ready_tx);
        let mut joiners = Vec::new();
        while let Some((j, result)) = ready_rx.recv().await {
            match result {
                Ok(s) => joiners.push((j, s)),
                Err(e) => bail!("joiner {} did not log in: {e:#}", nick(a.occupants + j)),
            }
        }
        joiners.sort_by_key(|(j, _)| std::cmp::Reverse(*j));
        let in_room_before = a.occupants;
        let join_start = Instant::now();
        let mut join_end = join_start;
        let (mut started, mut next_done) = (0usize, 0usize);
        let joined = |j: usize| move |sh: &Shared| sh.joined_at.borrow()[j].is_some();
        while next_done < a.joins {
            while started < a.joins
                && started < next_done + a.join_window.max(1)
                && join_start.elapsed().as_secs_f64() < a.max_seconds
            {
                let (j, s) = joiners.pop().expect("one joiner per join");
                let (sh, stop, room, nick) = (
                    sh.clone(),
                    stop_rx.clone(),
                    room.clone(),
                    nick(a.occupants + j),
                );
                // Everyone in the room before this join, at least: the fill's occupants and
                // the joins completed before it started.
                let expect = in_room_before + next_done;
                tokio::task::spawn_local(joiner(s.conn, sh, stop, room, nick, j, expect));
                started += 1;
            }
            if started <= next_done {
                break; // the time bound
            }
            if !wait_for(&sh, ctx.timeout(), joined(next_done)).await {
                join_failed = Some(format!(
                    "join {next_done} did not complete within {:.0} s",
                    ctx.timeout().as_secs_f64()
                ));
                break;
            }
            join_end = Instant::now();
            if let (Some(s), Some(d)) = (
                sh.join_sent_at.borrow()[next_done],
                sh.joined_at.borrow()[next_done],
            ) {
                let _ = join_lat.record(d.saturating_duration_since(s).as_micros().max(1) as u64);
            }
            next_done += 1;
        }
        joins_done = next_done;
        join_secs = join_end
            .saturating_duration_since(join_start)
            .as_secs_f64()
            .max(1e-6);
        println!(
            "joins into the {in_room_before}-occupant room: {joins_done} in {join_secs:.2} s: {:.0} joins/s, join time {}",
            joins_done as f64 / join_secs,
            report::latency(&join_lat, "join", &mut rec)
        );
        if let Some(e) = &join_failed {
            println!("{e}");
        }
        if sh.short_joins.get() > 0 {
            println!(
                "{} joiners got their self-presence before every occupant's presence",
                sh.short_joins.get()
            );
        }
    }
    let unexpected = sh.unexpected.get();
    if unexpected > 0 {
        println!("{unexpected} groupchat messages arrived twice or were never sent");
    }
    stop_tx.send_replace(true);
    let until = Instant::now() + Duration::from_secs(10);
    while sh.closed.get() < a.occupants + joins_done && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let join_rate = if joins_done > 0 {
        joins_done as f64 / join_secs
    } else {
        0.0
    };
    for (k, v) in [
        ("occupants", json!(a.occupants)),
        ("senders", json!(a.senders)),
        ("window", json!(window)),
        ("messages", json!(a.messages)),
        ("measured_messages", json!(measured)),
        (
            "missed",
            json!(missed.map_or(0, |(_, got)| a.occupants - got)),
        ),
        ("unexpected", json!(unexpected)),
        ("deliveries", json!(deliveries)),
        ("seconds", json!(report::round3(secs))),
        ("deliveries_per_s", json!(rate.round())),
        ("fill_seconds", json!(report::round3(fill_secs))),
        ("server_cpu_s", json!(report::round3(server_cpu))),
        (
            "server_cpu_s_per_1000",
            json!((1e6 * server_cpu / deliveries.max(1) as f64).round() / 1000.0),
        ),
        ("joins", json!(a.joins)),
        ("join_window", json!(a.join_window)),
        ("joins_done", json!(joins_done)),
        ("join_seconds", json!(report::round3(join_secs))),
        ("joins_per_s", json!((join_rate * 10.0).round() / 10.0)),
        ("short_joins", json!(sh.short_joins.get())),
        ("scram_derivations", json!(ctx.cache.derivations.get())),
    ] {
        rec.insert(k.into(), v);
    }
    ctx.emit(&rec)?;
    let joins_ok =
        a.joins == 0 || (join_failed.is_none() && joins_done > 0 && sh.short_joins.get() == 0);
    Ok(missed.is_none() && unexpected == 0 && measured > 0 && joins_ok)
}

/// Waits until `cond` holds or `timeout` passes; whether it held.
async fn wait_for(sh: &Shared, timeout: Duration, cond: impl Fn(&Shared) -> bool) -> bool {
    crate::wait_until(sh, &sh.progress, timeout, cond).await
}

/// An occupant: counts the room's messages; a sender also sends what it is told to.
async fn occupant(
    mut conn: Conn,
    sh: Rc<Shared>,
    mut stop: watch::Receiver<bool>,
    mut sends: Option<mpsc::UnboundedReceiver<(usize, String)>>,
) {
    loop {
        tokio::select! {
            ev = conn.recv() => match ev {
                Ok(Event::Element(el)) => {
                    if let Some(k) = message_number(&el) {
                        sh.delivered(k);
                    }
                }
                Ok(Event::Header) => {}
                Ok(Event::Closed) | Err(_) => break,
            },
            next = async { sends.as_mut()?.recv().await }, if sends.is_some() => {
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

/// A joiner of the join run: joins with the room's usual history, notes when its
/// self-presence came and whether every occupant's presence came before it, then stays.
async fn joiner(
    mut conn: Conn,
    sh: Rc<Shared>,
    mut stop: watch::Receiver<bool>,
    room: String,
    nick: String,
    j: usize,
    expect_others: usize,
) {
    sh.join_sent_at.borrow_mut()[j] = Some(Instant::now());
    match join(&mut conn, &room, &nick, true).await {
        Ok((_, others)) => {
            if others < expect_others {
                sh.short_joins.set(sh.short_joins.get() + 1);
            }
            sh.joined_at.borrow_mut()[j] = Some(Instant::now());
            sh.progress.notify_waiters();
        }
        Err(e) => {
            println!("{nick}: {e:#}");
            sh.closed.set(sh.closed.get() + 1);
            return;
        }
    }
    loop {
        tokio::select! {
            ev = conn.recv() => match ev {
                Ok(Event::Element(_)) | Ok(Event::Header) => {}
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
