//! The `mam-query` scenario (issue 19): pages of an account's XEP-0313 message archive, many
//! queries at once against a large archive.
//!
//! First the archive is filled through the server itself, so that every server stores the
//! messages in its own format: `--peer` sends `--fill` chat messages to `--owner` (both logged
//! in with initial presence), `--fill-window` in flight, until the owner has received them
//! all; each is archived for both. The fill's rate is reported too (one pair, archiving on).
//! With `--fill 0 --prefilled N` the archive was written into the server's store beforehand.
//!
//! Then `--clients` sessions of the owner (resources q1, q2, …; bound, no presence) each send
//! one query at a time for `--seconds` (after `--warmup`): `with` the peer and RSM `<max/>`
//! `--page`, first the archive's last page (`<before/>`, what a client asks at start-up), then
//! page after page back through it (`<before>` the first id of the previous page, scrolling
//! back through the history), and from the last page again when the start is reached. Each
//! query is done when its IQ result arrives: it must carry a `<fin/>`, and exactly `--page`
//! results with its queryid must have come before it, unless the `<fin/>` says the page was
//! the last (`complete`) — any other reply counts as an error and fails the run.
//!
//! The measured interval goes on past `--seconds` while fewer than `--min-queries` (twice the
//! clients) completed in it, up to `--max-seconds`: a server whose queries take longer than
//! the interval would otherwise show none.
//!
//! Reports queries per second completed in the measured seconds, the time from sending a query
//! to its IQ result (p50/p99/p99.9/max of queries sent in the measured seconds), server CPU per
//! query, and how many pages came back short at the start of the archive.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use clap::Args;
use futures_util::FutureExt;
use hdrhistogram::Histogram;
use serde_json::json;

use crate::conn::{Conn, Event};
use crate::login::{self, LoginSpec, Session};
use crate::{procstat, report, xml, Common, Ctx, Target};

#[derive(Args)]
pub struct MamQueryArgs {
    #[command(flatten)]
    pub common: Common,
    /// The account whose archive is filled and queried (a username).
    #[arg(long)]
    pub owner: String,
    /// The account that sends the fill messages: the `with` of every query (a username).
    #[arg(long)]
    pub peer: String,
    /// Messages sent from the peer to the owner first (0: the archive is already filled).
    #[arg(long, default_value_t = 100_000)]
    pub fill: u64,
    /// Messages written into the server's store beforehand (with `--fill 0`), for the record.
    #[arg(long, default_value_t = 0)]
    pub prefilled: u64,
    /// Fill messages in flight.
    #[arg(long, default_value_t = 64)]
    pub fill_window: u64,
    /// The fill fails if it takes longer.
    #[arg(long, default_value_t = 600.0)]
    pub max_fill_seconds: f64,
    /// Sessions of the owner querying at once, one query in flight each.
    #[arg(long, default_value_t = 10)]
    pub clients: usize,
    /// Messages per page (RSM `<max/>`).
    #[arg(long, default_value_t = 50)]
    pub page: usize,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Seconds of querying before measuring.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Seconds one query may take before the run fails.
    #[arg(long, default_value_t = 120.0)]
    pub query_timeout: f64,
    /// Queries the measured interval must hold: while fewer have completed in it, it goes on
    /// past --seconds (a server whose queries take longer than the interval would otherwise
    /// show none at all), up to --max-seconds. Default: twice --clients.
    #[arg(long)]
    pub min_queries: Option<u64>,
    /// Longest measured interval, when --min-queries makes it go on.
    #[arg(long, default_value_t = 180.0)]
    pub max_seconds: f64,
}

const NS_MAM: &str = "urn:xmpp:mam:2";

/// The peer's fill messages: a body like the throughput scenario's.
fn fill_message(to: &str, i: u64) -> String {
    format!(
        "<message xmlns='jabber:client' to='{to}' type='chat' id='f{i}'>\
         <body>{i} archived message number {i}</body></message>"
    )
}

/// A MAM query for one page `with` the peer, before `anchor` (None: the last page).
pub fn query(id: &str, with: &str, page: usize, anchor: Option<&str>) -> String {
    let mut s = String::with_capacity(512);
    let _ = write!(
        s,
        "<iq xmlns='jabber:client' type='set' id='{id}'><query xmlns='{NS_MAM}' queryid='{id}'>\
         <x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE' type='hidden'><value>{NS_MAM}</value></field>\
         <field var='with'><value>{with}</value></field></x>\
         <set xmlns='http://jabber.org/protocol/rsm'><max>{page}</max>"
    );
    match anchor {
        Some(a) => {
            let _ = write!(s, "<before>{a}</before>");
        }
        None => s.push_str("<before/>"),
    }
    s.push_str("</set></query></iq>");
    s
}

/// What one query's replies came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// A full page (or the last one): the anchor for the next page back, None to start again
    /// from the end.
    Page { next: Option<String>, short: bool },
    /// Anything else: why.
    Bad(String),
}

/// Judges a query's IQ reply `iq`, after `results` results with its queryid (`first`: the id
/// of the first of them).
pub fn judge(iq: &str, results: usize, first: Option<&str>, page: usize) -> Reply {
    if xml::attr(iq, "type") != Some("result") {
        return Reply::Bad(format!("query failed: {iq}"));
    }
    let Some(fin) = xml::descendants(iq, "fin").next() else {
        return Reply::Bad(format!("result without <fin/>: {iq}"));
    };
    let complete = matches!(xml::attr(fin, "complete"), Some("true" | "1"));
    if results > page {
        return Reply::Bad(format!("{results} results for a page of {page}"));
    }
    if results < page && !complete {
        return Reply::Bad(format!(
            "{results} results for a page of {page}, and the <fin/> does not say complete: {iq}"
        ));
    }
    // The id of the page's first message: from <fin><set><first>, else the first result.
    let first = xml::child_text(fin, "first")
        .filter(|f| !f.is_empty())
        .or(first)
        .map(str::to_owned);
    if complete || first.is_none() {
        Reply::Page {
            next: None,
            short: results < page,
        }
    } else {
        Reply::Page {
            next: first,
            short: false,
        }
    }
}

struct Shared {
    base: Instant,
    measure_from: Duration,
    /// The end of the measured interval: --seconds after the warm-up, or later (--min-queries).
    measure_to: Cell<Duration>,
    done: Cell<u64>,
    in_window: Cell<u64>,
    short: Cell<u64>,
    messages: Cell<u64>,
    errors: Cell<u64>,
    first_error: RefCell<Option<String>>,
    lat_us: RefCell<Histogram<u64>>,
}

impl Shared {
    fn error(&self, why: String) {
        self.errors.set(self.errors.get() + 1);
        self.first_error.borrow_mut().get_or_insert(why);
    }
}

/// Logs `user` in as resource `resource` on connection `i`, optionally with initial presence.
async fn session(
    ctx: &Ctx,
    i: usize,
    user: &str,
    resource: &str,
    presence: bool,
) -> anyhow::Result<Session> {
    let spec = LoginSpec {
        dialer: &ctx.dialer,
        mech: ctx.common.mech,
        cache: &ctx.cache,
        resource,
    };
    let work = async {
        if presence {
            login::login(&spec, i, user, &ctx.common.password).await
        } else {
            login::bind(&spec, i, user, &ctx.common.password).await
        }
    };
    tokio::time::timeout(ctx.timeout(), work)
        .await
        .with_context(|| format!("login of {user}/{resource} timed out"))?
        .with_context(|| format!("login of {user}/{resource}"))
}

/// The fill: `n` messages from the peer to the owner, `window` in flight. Returns seconds.
async fn fill(ctx: &Ctx, a: &MamQueryArgs) -> anyhow::Result<f64> {
    let mut owner = session(ctx, 0, &a.owner, "fill", true).await?;
    let mut peer = session(ctx, 1, &a.peer, "fill", true).await?;
    let to = owner.jid.clone();
    let t = Instant::now();
    let deadline = t + Duration::from_secs_f64(a.max_fill_seconds);
    let (mut sent, mut received) = (0u64, 0u64);
    let mut last_report = t;
    while received < a.fill {
        let credit = (received + a.fill_window).min(a.fill) - sent;
        if credit > 0 {
            for _ in 0..credit {
                sent += 1;
                peer.conn.send(fill_message(&to, sent)).await?;
            }
            peer.conn.flush().await?;
        }
        let ev = tokio::time::timeout_at(deadline.into(), owner.conn.recv())
            .await
            .with_context(|| {
                format!(
                    "the fill took over {} s ({received} of {} messages arrived)",
                    a.max_fill_seconds, a.fill
                )
            })??;
        let mut next = Some(ev);
        while let Some(ev) = next.take() {
            match ev {
                Event::Element(el) => {
                    if xml::name(&el) == "message" {
                        if xml::attr(&el, "type") == Some("error") {
                            bail!("a fill message bounced: {}", &*el);
                        }
                        if xml::child_text(&el, "body").is_some() {
                            received += 1;
                        }
                    }
                }
                Event::Header => {}
                Event::Closed => bail!("the server closed the owner's session during the fill"),
            }
            next = owner.conn.recv().now_or_never().transpose()?;
        }
        // Keep the peer's side read too (receipts, errors), without waiting.
        while let Some(ev) = peer.conn.recv().now_or_never() {
            if let Event::Element(el) = ev? {
                if xml::name(&el) == "message" && xml::attr(&el, "type") == Some("error") {
                    bail!("a fill message bounced: {}", &*el);
                }
            }
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            println!(
                "fill: {received} of {} in {:.0} s",
                a.fill,
                t.elapsed().as_secs_f64()
            );
        }
    }
    let secs = t.elapsed().as_secs_f64();
    owner.conn.close().await;
    peer.conn.close().await;
    Ok(secs)
}

/// One querying session: a query at a time until told to stop.
async fn client(
    sh: Rc<Shared>,
    mut conn: Conn,
    k: usize,
    with: Rc<str>,
    page: usize,
    timeout: Duration,
    stop: Rc<Cell<bool>>,
) {
    let mut anchor: Option<String> = None;
    let mut n = 0u64;
    while !stop.get() {
        n += 1;
        let id = format!("c{k}q{n}");
        let started = sh.base.elapsed();
        let sent_at = Instant::now();
        if conn
            .send(query(&id, &with, page, anchor.as_deref()))
            .await
            .is_err()
            || conn.flush().await.is_err()
        {
            sh.error(format!("client {k}: the connection failed"));
            return;
        }
        let (mut results, mut first): (usize, Option<String>) = (0, None);
        let reply = loop {
            let el = match tokio::time::timeout_at((sent_at + timeout).into(), conn.recv()).await {
                Err(_) => {
                    sh.error(format!(
                        "client {k}: no answer to query {id} in {timeout:?}"
                    ));
                    return;
                }
                Ok(Err(e)) => {
                    sh.error(format!("client {k}: {e:#}"));
                    return;
                }
                Ok(Ok(Event::Closed)) => {
                    sh.error(format!("client {k}: the server closed the session"));
                    return;
                }
                Ok(Ok(Event::Header)) => continue,
                Ok(Ok(Event::Element(el))) => el,
            };
            match xml::name(&el) {
                "message" => {
                    if let Some(r) = xml::descendants(&el, "result").next() {
                        if xml::attr(r, "queryid") == Some(id.as_str()) {
                            results += 1;
                            if first.is_none() {
                                first = xml::attr(r, "id").map(str::to_owned);
                            }
                        }
                    }
                }
                "iq" if xml::attr(&el, "id") == Some(id.as_str()) => {
                    break judge(&el, results, first.as_deref(), page)
                }
                _ => {}
            }
        };
        let took = sent_at.elapsed();
        match reply {
            Reply::Bad(why) => {
                sh.error(format!("client {k}: {why}"));
                return;
            }
            Reply::Page { next, short } => {
                anchor = next;
                if short {
                    sh.short.set(sh.short.get() + 1);
                }
            }
        }
        sh.done.set(sh.done.get() + 1);
        sh.messages.set(sh.messages.get() + results as u64);
        let now = sh.base.elapsed();
        if now >= sh.measure_from && now < sh.measure_to.get() {
            sh.in_window.set(sh.in_window.get() + 1);
        }
        if started >= sh.measure_from && started < sh.measure_to.get() {
            let us = (took.as_micros() as u64).max(1);
            let _ = sh.lat_us.borrow_mut().record(us);
        }
    }
    conn.close().await;
}

pub async fn run(ctx: Ctx, a: MamQueryArgs) -> anyhow::Result<bool> {
    ensure!(
        ctx.common.target == Target::Xmpp,
        "mam-query needs an XMPP server"
    );
    ensure!(
        a.clients >= 1 && a.page >= 1,
        "need --clients ≥ 1 and --page ≥ 1"
    );
    let pid = ctx.common.server_pid;
    let domain = ctx.common.domain.clone();
    println!(
        "mam-query: archive of {}@{domain} with {}@{domain}, fill {}, {} clients, pages of {}, {} {}",
        a.owner,
        a.peer,
        a.fill,
        a.clients,
        a.page,
        ctx.common.transport.name(),
        ctx.dialer.addr
    );
    let fill_s = if a.fill > 0 {
        let s = fill(&ctx, &a).await?;
        println!(
            "fill: {} messages in {s:.1} s ({:.0} msgs/s, each archived for both parties)",
            a.fill,
            a.fill as f64 / s
        );
        Some(s)
    } else {
        None
    };

    let t = Instant::now();
    let mut sessions = Vec::with_capacity(a.clients);
    for k in 0..a.clients {
        let s = session(&ctx, k + 2, &a.owner, &format!("q{}", k + 1), false).await?;
        sessions.push(s);
    }
    println!(
        "{} query sessions ready in {:.2} s",
        a.clients,
        t.elapsed().as_secs_f64()
    );

    let base = Instant::now();
    let sh = Rc::new(Shared {
        base,
        measure_from: Duration::from_secs_f64(a.warmup),
        measure_to: Cell::new(Duration::from_secs_f64(a.warmup + a.seconds)),
        done: Cell::new(0),
        in_window: Cell::new(0),
        short: Cell::new(0),
        messages: Cell::new(0),
        errors: Cell::new(0),
        first_error: RefCell::new(None),
        lat_us: RefCell::new(report::histogram()),
    });
    let with: Rc<str> = format!("{}@{domain}", a.peer).into();
    let stop = Rc::new(Cell::new(false));
    let timeout = Duration::from_secs_f64(a.query_timeout);
    let mut tasks = Vec::new();
    for (k, s) in sessions.into_iter().enumerate() {
        tasks.push(tokio::task::spawn_local(client(
            sh.clone(),
            s.conn,
            k + 1,
            with.clone(),
            a.page,
            timeout,
            stop.clone(),
        )));
    }
    tokio::time::sleep_until((base + sh.measure_from).into()).await;
    let s0 = procstat::sample(pid);
    tokio::time::sleep_until((base + sh.measure_to.get()).into()).await;
    // Too few queries completed: the interval goes on (and ends) while they come in.
    let min_queries = a.min_queries.unwrap_or(2 * a.clients as u64);
    let longest = sh.measure_from + Duration::from_secs_f64(a.max_seconds);
    if sh.in_window.get() < min_queries {
        // Open until enough came in, then closed at that moment.
        sh.measure_to.set(longest);
        while sh.in_window.get() < min_queries && sh.errors.get() == 0 && base.elapsed() < longest {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        sh.measure_to.set(base.elapsed().min(longest));
    }
    let s1 = procstat::sample(pid);
    let seconds = (sh.measure_to.get() - sh.measure_from).as_secs_f64();
    if seconds > a.seconds + 0.05 {
        println!(
            "measured {seconds:.1} s instead of {}: fewer than {min_queries} queries completed",
            a.seconds
        );
    }
    stop.set(true);
    // Queries in flight finish (each bounded by the query timeout).
    for task in tasks {
        let _ = task.await;
    }

    let measured = sh.in_window.get();
    let rate = measured as f64 / seconds;
    let server_cpu = s1.cpu_s - s0.cpu_s;
    let mut rec = ctx.record("mam-query");
    let lat = report::latency(&sh.lat_us.borrow(), "query", &mut rec);
    println!(
        "queries: {rate:.1}/s ({measured} in {seconds:.1} s; {} in all, {} messages, {} short pages \
         at the archive's start), errors {}",
        sh.done.get(),
        sh.messages.get(),
        sh.short.get(),
        sh.errors.get()
    );
    if let Some(e) = sh.first_error.borrow().as_deref() {
        println!("first error: {e}");
    }
    println!("query time: {lat}");
    let per_query_ms = if measured > 0 {
        1000.0 * server_cpu / measured as f64
    } else {
        0.0
    };
    println!(
        "CPU: server {server_cpu:.2} s ({:.0}% of one core), {per_query_ms:.3} ms per query",
        100.0 * server_cpu / seconds
    );
    for (k, v) in [
        ("owner", json!(a.owner)),
        ("peer", json!(a.peer)),
        ("fill", json!(a.fill.max(a.prefilled))),
        ("prefilled", json!(a.prefilled > 0)),
        ("fill_seconds", json!(fill_s.map(report::round3))),
        (
            "fill_msgs_per_s",
            json!(fill_s.map(|s| (a.fill as f64 / s).round())),
        ),
        ("clients", json!(a.clients)),
        ("page", json!(a.page)),
        ("seconds", json!(report::round3(seconds))),
        ("min_queries", json!(min_queries)),
        ("queries_per_s", json!((rate * 10.0).round() / 10.0)),
        ("queries_measured", json!(measured)),
        ("queries", json!(sh.done.get())),
        ("messages", json!(sh.messages.get())),
        ("short_pages", json!(sh.short.get())),
        ("errors", json!(sh.errors.get())),
        ("first_error", json!(sh.first_error.borrow().clone())),
        ("server_cpu_s", json!(report::round3(server_cpu))),
        (
            "server_cpu_ms_per_query",
            json!((per_query_ms * 1000.0).round() / 1000.0),
        ),
        (
            "server_steal_s",
            json!(report::round3(s1.server_steal_s - s0.server_steal_s)),
        ),
        (
            "generator_steal_s",
            json!(report::round3(s1.gen_steal_s - s0.gen_steal_s)),
        ),
    ] {
        rec.insert(k.into(), v);
    }
    ctx.emit(&rec)?;
    Ok(measured > 0 && sh.errors.get() == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_judged() {
        let fin = |attrs: &str, first: &str| {
            format!(
                "<iq type='result' id='q1'><fin xmlns='urn:xmpp:mam:2'{attrs}>\
                 <set xmlns='http://jabber.org/protocol/rsm'><first index='0'>{first}</first>\
                 <last>z</last></set></fin></iq>"
            )
        };
        assert_eq!(
            judge(&fin("", "a7"), 50, Some("x"), 50),
            Reply::Page {
                next: Some("a7".into()),
                short: false
            }
        );
        // The last page back: start again from the end.
        assert_eq!(
            judge(&fin(" complete='true'", "a1"), 20, Some("a1"), 50),
            Reply::Page {
                next: None,
                short: true
            }
        );
        assert!(matches!(
            judge(&fin("", "a7"), 49, Some("a7"), 50),
            Reply::Bad(_)
        ));
        assert!(matches!(
            judge("<iq type='result' id='q1'/>", 50, Some("a"), 50),
            Reply::Bad(_)
        ));
        assert!(matches!(
            judge("<iq type='error' id='q1'><error/></iq>", 0, None, 50),
            Reply::Bad(_)
        ));
        let q = query("q1", "p@localhost", 50, None);
        assert!(q.contains("<before/>") && q.contains("<max>50</max>"));
        assert!(query("q2", "p@localhost", 50, Some("a7")).contains("<before>a7</before>"));
    }
}
