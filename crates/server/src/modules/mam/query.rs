//! XEP-0313 queries: the request (data form fields and XEP-0059 paging) as an
//! [`ArchiveQuery`], and a page as result messages and the closing `<fin/>`.

use minidom::Element;
use rxml::xml_ncname;
use weft_storage::{ArchiveQuery, ArchivedMessage};
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType};
use xmpp_parsers::mam::{Fin, Query};
use xmpp_parsers::rsm::{First, SetResult};

use crate::error::{StanzaError, StanzaErrorCondition};

pub const NS_MAM: &str = "urn:xmpp:mam:2";
const NS_FORWARD: &str = "urn:xmpp:forward:0";
const NS_DELAY: &str = "urn:xmpp:delay";
/// Most ids one `ids` field may name.
const MAX_IDS: usize = 250;

/// A query's filters and page, before the ids it names were checked against the archive.
pub struct Request {
    pub query: ArchiveQuery,
    /// The RSM `<after/>` or `<before/>` id, which must exist (XEP-0313 §4.3.1).
    pub anchor: Option<i64>,
    pub flip: bool,
    pub queryid: Option<String>,
}

fn bad(text: impl Into<String>) -> StanzaError {
    StanzaError::new(StanzaErrorCondition::BadRequest).with_text(text)
}

/// An archive id as the client gave it; ids are decimal, anything else names no message.
pub fn parse_id(text: &str) -> Option<i64> {
    text.trim().parse().ok()
}

fn time_micros(var: &str, text: &str) -> Result<i64, StanzaError> {
    let t: xmpp_parsers::date::DateTime = text
        .trim()
        .parse()
        .map_err(|_| bad(format!("'{var}' is not an XEP-0082 date and time")))?;
    Ok(t.0.timestamp_micros())
}

/// The query as an archive query (XEP-0313 §4.1, §4.3; `default_max` and `max_page` bound
/// the page), or the error for the requester.
pub fn parse(
    payload: &Element,
    default_max: usize,
    max_page: usize,
) -> Result<Request, StanzaError> {
    let q = Query::try_from(payload.clone()).map_err(|e| bad(format!("{e}")))?;
    if q.node.is_some() {
        return Err(StanzaError::new(StanzaErrorCondition::ItemNotFound)
            .with_text("this archive has no nodes"));
    }
    let mut query = ArchiveQuery {
        max: default_max.min(max_page),
        ..Default::default()
    };
    if let Some(form) = &q.form {
        if form.form_type().is_some_and(|t| t != NS_MAM) {
            return Err(bad(format!("FORM_TYPE must be {NS_MAM}")));
        }
        for field in &form.fields {
            let var = field.var.as_deref().unwrap_or("");
            let value = field.values.first().map(String::as_str);
            match (var, value) {
                ("FORM_TYPE", _) | (_, None) if var != "ids" => {}
                ("with", Some(v)) => {
                    let jid = jid::Jid::new(v.trim()).map_err(|_| bad("'with' is not a JID"))?;
                    let resource = jid.resource().map(|r| r.as_str().to_owned());
                    query.with = Some((jid.to_bare().to_string(), resource));
                }
                ("start", Some(v)) => query.start = Some(time_micros(var, v)?),
                ("end", Some(v)) => query.end = Some(time_micros(var, v)?),
                // An id that names no message leaves nothing after or before it to find.
                ("after-id", Some(v)) => query.after = Some(parse_id(v).unwrap_or(i64::MAX)),
                ("before-id", Some(v)) => query.before = Some(parse_id(v).unwrap_or(i64::MIN)),
                ("ids", _) => {
                    if field.values.len() > MAX_IDS {
                        return Err(bad(format!("at most {MAX_IDS} ids per query")));
                    }
                    query.ids = Some(field.values.iter().filter_map(|v| parse_id(v)).collect());
                }
                (other, _) => {
                    return Err(bad(format!("unknown field '{other}' in the query form")));
                }
            }
        }
    }
    let mut anchor = None;
    if let Some(set) = &q.set {
        if set.index.is_some() {
            return Err(
                StanzaError::new(StanzaErrorCondition::FeatureNotImplemented)
                    .with_text("paging by index is not supported; use after or before"),
            );
        }
        if let Some(max) = set.max {
            query.max = max.min(max_page);
        }
        if let Some(after) = set.after.as_deref() {
            let id = parse_id(after).ok_or_else(not_found)?;
            query.after = Some(query.after.map_or(id, |a| a.max(id)));
            anchor = Some(id);
        }
        match set.before.as_deref().map(str::trim) {
            // An empty <before/>: the last page.
            Some("") => query.from_end = true,
            Some(before) => {
                let id = parse_id(before).ok_or_else(not_found)?;
                query.before = Some(query.before.map_or(id, |b| b.min(id)));
                query.from_end = true;
                anchor = Some(id);
            }
            None => {}
        }
    }
    Ok(Request {
        query,
        anchor,
        flip: q.flip_page,
        queryid: q.queryid.map(|id| id.0),
    })
}

/// XEP-0313 §4.3.1: paging from an id the archive does not hold.
pub fn not_found() -> StanzaError {
    StanzaError::new(StanzaErrorCondition::ItemNotFound)
        .with_text("no message in the archive has this id")
}

/// The XEP-0082 form of an id's time.
pub fn stamp(id: i64) -> String {
    let secs = id.div_euclid(1_000_000);
    let millis = (id.rem_euclid(1_000_000) / 1000) as u32;
    crate::modules::time::xep0082(secs, millis)
}

/// One archived message as a result for `to` (XEP-0313 §4.2), sent from the archive's JID.
/// Built with minidom rather than xmpp-parsers' `Result_`: that would parse the archived
/// message into a typed one and serialise it again, where it is carried as it was stored.
pub fn result_message(
    archive: &str,
    to: &str,
    queryid: Option<&str>,
    message: &ArchivedMessage,
) -> Option<Element> {
    let stored: Element = match message.stanza.parse() {
        Ok(el) => el,
        Err(e) => {
            tracing::warn!(
                archive,
                id = message.id,
                "skipping an unreadable archived message: {e}"
            );
            return None;
        }
    };
    let delay = Element::builder("delay", NS_DELAY)
        .attr(xml_ncname!("stamp").into(), stamp(message.id))
        .build();
    let forwarded = Element::builder("forwarded", NS_FORWARD)
        .append(delay)
        .append(stored)
        .build();
    let mut result = Element::builder("result", NS_MAM)
        .attr(xml_ncname!("id").into(), message.id.to_string())
        .append(forwarded);
    if let Some(qid) = queryid {
        result = result.attr(xml_ncname!("queryid").into(), qid);
    }
    Some(
        Element::builder("message", crate::ns::CLIENT)
            .attr(xml_ncname!("from").into(), archive)
            .attr(xml_ncname!("to").into(), to)
            .attr(xml_ncname!("id").into(), format!("mam{}", message.id))
            .append(result.build())
            .build(),
    )
}

/// The `<fin/>` closing a page (XEP-0313 §4.3, XEP-0059 §2.6 for an empty page).
pub fn fin(page: &[ArchivedMessage], complete: bool) -> Element {
    let set = SetResult {
        first: page.first().map(|m| First {
            index: None,
            item: m.id.to_string(),
        }),
        last: page.last().map(|m| m.id.to_string()),
        count: None,
    };
    Fin { complete, set }.into()
}

/// The query form (XEP-0313 §4.1.1), with the extended fields weft supports.
pub fn form() -> Element {
    let fields = vec![
        Field::new("with", FieldType::JidSingle),
        Field::new("start", FieldType::TextSingle),
        Field::new("end", FieldType::TextSingle),
        Field::new("before-id", FieldType::TextSingle),
        Field::new("after-id", FieldType::TextSingle),
        Field::new("ids", FieldType::TextMulti),
    ];
    let form = DataForm::new(DataFormType::Form, NS_MAM, fields);
    Element::builder("query", NS_MAM).append(form).build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(xml: &str) -> Result<Request, StanzaError> {
        parse(&xml.parse().unwrap(), 50, 250)
    }

    #[test]
    fn forms_and_paging() {
        let r = q("<query xmlns='urn:xmpp:mam:2' queryid='f'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>\
             <field var='with'><value>romeo@example.org/phone</value></field>\
             <field var='start'><value>2010-06-07T00:00:00Z</value></field>\
             </x><set xmlns='http://jabber.org/protocol/rsm'><max>10</max><after>42</after></set></query>")
        .ok()
        .unwrap();
        assert_eq!(r.queryid.as_deref(), Some("f"));
        assert_eq!(
            r.query.with,
            Some(("romeo@example.org".into(), Some("phone".into())))
        );
        assert_eq!(r.query.start, Some(1_275_868_800_000_000));
        assert_eq!(
            (r.query.max, r.query.after, r.anchor),
            (10, Some(42), Some(42))
        );
        assert!(!r.query.from_end);
        let last = q("<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><max>1000</max><before/></set></query>").ok().unwrap();
        assert!(last.query.from_end && last.anchor.is_none());
        assert_eq!(last.query.max, 250);
        let plain = q("<query xmlns='urn:xmpp:mam:2'/>").ok().unwrap();
        assert_eq!(plain.query.max, 50);
        assert!(q("<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'><field var='colour'><value>red</value></field></x></query>").is_err());
        assert!(q("<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><after>nope</after></set></query>").is_err());
        assert!(q("<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><index>3</index></set></query>").is_err());
    }

    #[test]
    fn stamps_are_utc_with_milliseconds() {
        assert_eq!(stamp(1_275_868_800_123_456), "2010-06-07T00:00:00.123Z");
    }
}
