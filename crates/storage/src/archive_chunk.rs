//! Archive chunks (XEP-0313 storage): the messages of one account with one other party that
//! arrived in the same write batch, stored together as one record. No I/O.
//!
//! A row per message cost weft most of its CPU at high rates: every message meant three B-tree
//! inserts with text keys (the table and two indexes). A chunk takes up to [`MAX_MESSAGES`] of
//! them in one row, so the indexes grow by one entry per chunk. Chunks form only within one
//! batch of the archive writer: under load a batch holds thousands of messages and each chunk
//! is full; a lone message is a chunk of one, as cheap to write as the row it replaced.
//!
//! A query going forward reads chunks in the order of their first id, one going backward in
//! the order of their last id, and stops at the first chunk that cannot change its page. The
//! chunks it starts inside of (holding ids on both sides of its bound) are found apart: every
//! chunk spans at most [`MAX_SPAN`] of ids (ids are microseconds), so they lie within it.
//!
//! The record format is written by hand: a few varints and byte strings, for which no crate
//! would be simpler. Per message: the id minus the chunk's first id (varint), a flags byte
//! (bit 0 outgoing, bit 1 a resource follows), the resource (varint length + UTF-8) when
//! flagged, the stanza (varint length + UTF-8). A stored chunk is those records compressed
//! with LZ4 (a block, after its uncompressed length as 4 bytes little-endian): the stanzas
//! of one conversation repeat their names, namespaces and JIDs, and every byte stored is
//! written twice (the WAL, then the database file), which cost more CPU than compressing.

use std::collections::HashMap;

use crate::{ArchiveEntry, ArchivePage, ArchiveQuery, ArchivedMessage, StorageError};

/// Messages in one chunk at most (short ones; [`MAX_BYTES`] closes a chunk of longer ones
/// sooner): a page of 50 reads one to three chunks. Each chunk is a row and an entry in each
/// of five indexes: at 32, inserting them was a third of the archive writer's CPU at 10 pairs.
pub(crate) const MAX_MESSAGES: usize = 128;
/// Stanza bytes in one chunk at most (a chunk closes once it holds more).
pub(crate) const MAX_BYTES: usize = 16 * 1024;
/// Ids one chunk spans at most (a tenth of a second): the window a query searches for the
/// chunks its bound falls inside of.
pub(crate) const MAX_SPAN: i64 = 100_000;
/// The uncompressed size a stored chunk may claim at most (a damaged one may claim anything).
const MAX_RECORDS: usize = 64 << 20;

const OUTGOING: u8 = 1;
const HAS_RESOURCE: u8 = 2;

/// The messages one batch holds for one account with one other party, in id order, without
/// duplicate ids.
pub(crate) struct Group<'a> {
    pub domain: &'a str,
    pub username: &'a str,
    /// A room's archive: no account to check.
    pub of_room: bool,
    pub with: &'a str,
    pub messages: Vec<&'a ArchiveEntry>,
}

/// A chunk ready to store.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Chunk {
    pub first_id: i64,
    pub last_id: i64,
    pub count: i64,
    pub messages: Vec<u8>,
}

/// The batch's entries grouped by account and other party, each group in id order; groups
/// come in the order of their first entry in the batch, so a retried batch groups alike.
pub(crate) fn groups(entries: &[ArchiveEntry]) -> Vec<Group<'_>> {
    // foldhash: seeded per map, several times faster than SipHash on these short keys.
    let mut index: HashMap<(&str, &str, &str), usize, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(64, foldhash::fast::RandomState::default());
    let mut groups: Vec<Group<'_>> = Vec::new();
    for e in entries {
        let key = (e.domain(), e.username(), e.with());
        let i = *index.entry(key).or_insert_with(|| {
            groups.push(Group {
                domain: key.0,
                username: key.1,
                of_room: e.of_room,
                with: key.2,
                messages: Vec::new(),
            });
            groups.len() - 1
        });
        groups[i].messages.push(e);
    }
    for g in &mut groups {
        // Usually sorted already: ids are given in routing order, and queued nearly so.
        g.messages.sort_by_key(|m| m.id);
        g.messages.dedup_by_key(|m| m.id);
    }
    groups
}

/// The group's messages as chunks. The same group always makes the same chunks.
pub(crate) fn chunks(group: &Group<'_>) -> Vec<Chunk> {
    let mut out = Vec::new();
    let mut current: Option<Chunk> = None;
    let mut bytes = 0;
    for m in &group.messages {
        let full = current.as_ref().is_some_and(|c| {
            c.count as usize >= MAX_MESSAGES || bytes >= MAX_BYTES || m.id - c.first_id > MAX_SPAN
        });
        if full {
            out.extend(current.take().map(sealed));
        }
        let c = current.get_or_insert_with(|| {
            bytes = 0;
            Chunk {
                first_id: m.id,
                last_id: m.id,
                count: 0,
                // Full chunks are the common case under load: no regrowth copies.
                messages: Vec::with_capacity(MAX_BYTES + 2048),
            }
        });
        encode(c, m);
        bytes += m.stanza.len();
    }
    out.extend(current.map(sealed));
    out
}

/// The chunk with its records compressed, as stored.
fn sealed(mut c: Chunk) -> Chunk {
    c.messages = lz4_flex::compress_prepend_size(&c.messages);
    c
}

/// A stored chunk's records, uncompressed.
pub(crate) fn records(blob: &[u8]) -> Result<Vec<u8>, StorageError> {
    let (size, block) = blob.split_first_chunk::<4>().ok_or_else(corrupt)?;
    let size = u32::from_le_bytes(*size) as usize;
    if size > MAX_RECORDS {
        return Err(corrupt());
    }
    lz4_flex::decompress(block, size).map_err(|_| corrupt())
}

fn encode(c: &mut Chunk, m: &ArchiveEntry) {
    let resource = m.with_resource();
    encode_record(c, m.id, m.outgoing, resource, m.stanza.as_bytes());
}

fn encode_record(c: &mut Chunk, id: i64, outgoing: bool, resource: Option<&str>, stanza: &[u8]) {
    let out = &mut c.messages;
    put_varint(out, (id - c.first_id) as u64);
    let mut flags = 0;
    if outgoing {
        flags |= OUTGOING;
    }
    if resource.is_some() {
        flags |= HAS_RESOURCE;
    }
    out.push(flags);
    if let Some(r) = resource {
        put_bytes(out, r.as_bytes());
    }
    put_bytes(out, stanza);
    c.last_id = id;
    c.count += 1;
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// One message of a stored chunk, its strings still borrowed.
pub(crate) struct Stored<'a> {
    pub id: i64,
    pub outgoing: bool,
    pub resource: Option<&'a str>,
    stanza: &'a [u8],
}

impl Stored<'_> {
    pub fn to_message(&self, with: &str) -> Result<ArchivedMessage, StorageError> {
        Ok(ArchivedMessage {
            id: self.id,
            with: with.to_owned(),
            with_resource: self.resource.map(str::to_owned),
            outgoing: self.outgoing,
            stanza: std::str::from_utf8(self.stanza)
                .map_err(|_| corrupt())?
                .into(),
        })
    }
}

fn corrupt() -> StorageError {
    StorageError::Corrupt("archive chunk".into())
}

/// The messages of a chunk's records (see [`records`]) whose first id is `first_id`.
pub(crate) fn decode(first_id: i64, mut b: &[u8]) -> Result<Vec<Stored<'_>>, StorageError> {
    fn varint(b: &mut &[u8]) -> Result<u64, StorageError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = b.split_first().ok_or_else(corrupt)?;
            *b = rest;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(corrupt())
    }
    fn bytes<'a>(b: &mut &'a [u8]) -> Result<&'a [u8], StorageError> {
        let n = usize::try_from(varint(b)?).map_err(|_| corrupt())?;
        if n > b.len() {
            return Err(corrupt());
        }
        let (s, rest) = b.split_at(n);
        *b = rest;
        Ok(s)
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let delta = i64::try_from(varint(&mut b)?).map_err(|_| corrupt())?;
        let (&flags, rest) = b.split_first().ok_or_else(corrupt)?;
        b = rest;
        let resource = if flags & HAS_RESOURCE != 0 {
            Some(std::str::from_utf8(bytes(&mut b)?).map_err(|_| corrupt())?)
        } else {
            None
        };
        out.push(Stored {
            id: first_id + delta,
            outgoing: flags & OUTGOING != 0,
            resource,
            stanza: bytes(&mut b)?,
        });
    }
    Ok(out)
}

/// The ids a query's time and RSM bounds allow, as an inclusive range.
pub(crate) fn id_range(q: &ArchiveQuery) -> (i64, i64) {
    let mut lo = i64::MIN;
    let mut hi = i64::MAX;
    if let Some(s) = q.start {
        lo = lo.max(s);
    }
    if let Some(a) = q.after {
        lo = lo.max(a.saturating_add(1));
    }
    if let Some(e) = q.end {
        hi = hi.min(e);
    }
    if let Some(b) = q.before {
        hi = hi.min(b.saturating_sub(1));
    }
    (lo, hi)
}

/// Builds one page of a query from chunks read in the order of their first id (descending
/// when `from_end`): feed each with [`Page::take`] after asking [`Page::done`] whether it can
/// still matter.
pub(crate) struct Page<'q> {
    q: &'q ArchiveQuery,
    lo: i64,
    hi: i64,
    /// Matching messages, at most `max + 1` after each chunk: the smallest ids, or the
    /// largest ones when `from_end`. One beyond the page tells that the page is not the last.
    found: Vec<ArchivedMessage>,
}

impl<'q> Page<'q> {
    pub fn new(q: &'q ArchiveQuery) -> Self {
        let (lo, hi) = id_range(q);
        Page {
            q,
            lo,
            hi,
            found: Vec::new(),
        }
    }

    /// Whether no chunk from `first_id` to `last_id`, nor any read after it, can change the
    /// page: going forward, later chunks start no earlier; going backward, they end no later.
    pub fn done(&self, first_id: i64, last_id: i64) -> bool {
        if self.found.len() <= self.q.max {
            return false;
        }
        if self.q.from_end {
            let lowest = self.found.iter().map(|m| m.id).min().unwrap_or(i64::MIN);
            last_id < lowest
        } else {
            let highest = self.found.iter().map(|m| m.id).max().unwrap_or(i64::MAX);
            first_id > highest
        }
    }

    /// Adds the chunk's messages that match the query.
    pub fn take(&mut self, with: &str, first_id: i64, blob: &[u8]) -> Result<(), StorageError> {
        let resource = self.q.with.as_ref().and_then(|(_, r)| r.as_deref());
        let records = records(blob)?;
        for m in decode(first_id, &records)? {
            if m.id < self.lo || m.id > self.hi {
                continue;
            }
            if resource.is_some() && m.resource != resource {
                continue;
            }
            if self.q.ids.as_ref().is_some_and(|ids| !ids.contains(&m.id)) {
                continue;
            }
            self.found.push(m.to_message(with)?);
        }
        let keep = self.q.max + 1;
        if self.found.len() > keep {
            if self.q.from_end {
                self.found.sort_unstable_by_key(|m| std::cmp::Reverse(m.id));
            } else {
                self.found.sort_unstable_by_key(|m| m.id);
            }
            self.found.truncate(keep);
        }
        Ok(())
    }

    pub fn finish(mut self) -> ArchivePage {
        self.found.sort_unstable_by_key(|m| m.id);
        let complete = self.found.len() <= self.q.max;
        if !complete {
            if self.q.from_end {
                self.found.remove(0);
            } else {
                self.found.pop();
            }
        }
        ArchivePage {
            messages: self.found,
            complete,
        }
    }
}

/// A stored chunk without the messages whose id `keep` refuses, stored anew; `None` when none
/// is left.
pub(crate) fn rewrite(
    first_id: i64,
    blob: &[u8],
    keep: impl Fn(i64) -> bool,
) -> Result<Option<Chunk>, StorageError> {
    let mut out: Option<Chunk> = None;
    let records = records(blob)?;
    for m in decode(first_id, &records)? {
        if !keep(m.id) {
            continue;
        }
        let c = out.get_or_insert_with(|| Chunk {
            first_id: m.id,
            last_id: m.id,
            count: 0,
            messages: Vec::with_capacity(blob.len()),
        });
        encode_record(c, m.id, m.outgoing, m.resource, m.stanza);
    }
    Ok(out.map(sealed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: i64, resource: Option<&str>, outgoing: bool) -> ArchivedMessage {
        ArchivedMessage {
            id,
            with: "romeo@example.org".into(),
            with_resource: resource.map(str::to_owned),
            outgoing,
            stanza: format!("<message xmlns='jabber:client'><body>{id} é</body></message>").into(),
        }
    }

    fn entry(user: &str, m: ArchivedMessage) -> ArchiveEntry {
        ArchiveEntry::of_message("example.org", user, false, &m)
    }

    #[test]
    fn chunks_round_trip_and_close_at_their_limits() {
        let mut entries: Vec<_> = (0..270)
            .map(|i| entry("juliet", message(1_000 + i * 10, Some("phone"), i % 2 == 0)))
            .collect();
        entries.push(entry("juliet", message(3_700 + MAX_SPAN + 700, None, true)));
        entries.push(entry("nurse", message(5, None, false)));
        entries.swap(3, 4); // out of order in the batch
        entries.push(entries[0].clone()); // a duplicate id
        let groups = groups(&entries);
        assert_eq!(groups.len(), 2);
        let chunks = chunks(&groups[0]);
        // 128 + 128 + 14 by count, then the span closes the fourth.
        let counts: Vec<_> = chunks.iter().map(|c| c.count).collect();
        assert_eq!(counts, [128, 128, 14, 1]);
        let mut back = Vec::new();
        for c in &chunks {
            for m in decode(c.first_id, &records(&c.messages).unwrap()).unwrap() {
                back.push(m.to_message("romeo@example.org").unwrap());
            }
            assert!(c.last_id - c.first_id <= MAX_SPAN);
        }
        let mut want: Vec<_> = entries[..271].iter().map(|e| e.message()).collect();
        want.sort_by_key(|m| m.id);
        assert_eq!(back, want);
        // A retried batch makes the same chunks (which the store then skips).
        assert_eq!(super::chunks(&super::groups(&entries)[0]), chunks);
    }

    #[test]
    fn damaged_chunks_are_errors() {
        let entries = [entry("juliet", message(7, Some("pc"), true))];
        let g = groups(&entries).remove(0);
        let c = super::chunks(&g).remove(0);
        let r = records(&c.messages).unwrap();
        for cut in 1..r.len() {
            assert!(decode(c.first_id, &r[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode(0, &[0xff; 11]).is_err());
        for cut in 0..c.messages.len() {
            assert!(records(&c.messages[..cut]).is_err(), "cut at {cut}");
        }
        // A damaged length claims too much.
        let mut big = c.messages.clone();
        big[3] = 0x7f;
        assert!(records(&big).is_err());
    }

    #[test]
    fn rewrite_keeps_the_rest() {
        let entries: Vec<_> = (1..=5)
            .map(|i| entry("juliet", message(i, None, false)))
            .collect();
        let c = super::chunks(&groups(&entries)[0]).remove(0);
        let r = rewrite(c.first_id, &c.messages, |id| id > 2)
            .unwrap()
            .unwrap();
        assert_eq!((r.first_id, r.last_id, r.count), (3, 5, 3));
        assert!(rewrite(c.first_id, &c.messages, |_| false)
            .unwrap()
            .is_none());
    }
}
