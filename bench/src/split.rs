//! RFC 6120 §4.2 stream framing for the TCP transports: cuts the incoming byte stream into the
//! stream header, whole top-level elements and the stream end, without parsing them.
//!
//! Incremental so a partially received element is never rescanned from its start more than
//! once per read; it tracks element depth only, because servers send well-formed XML.

use std::ops::Range;

/// One piece of a stream, as a byte range into the caller's buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// `<stream:stream …>` (the prologue `<?xml …?>` is skipped).
    Header(Range<usize>),
    /// A complete first-level child: a stanza, features, SASL or TLS element.
    Element(Range<usize>),
    /// `</stream:stream>`.
    End,
}

#[derive(Debug, Default)]
pub struct Splitter {
    /// Where scanning resumes.
    pos: usize,
    /// 0 before the header, 1 inside the stream, more inside an element.
    depth: usize,
    /// Start of the first-level element being scanned.
    start: usize,
}

/// Index of the end of the markup construct starting at `at` (`buf[at] == b'<'`), if complete.
fn markup_end(buf: &[u8], at: usize) -> Option<usize> {
    let rest = &buf[at..];
    let find = |pat: &[u8]| {
        rest.windows(pat.len())
            .position(|w| w == pat)
            .map(|i| at + i + pat.len() - 1)
    };
    if rest.starts_with(b"<?") {
        return find(b"?>");
    }
    if rest.starts_with(b"<!--") {
        return find(b"-->");
    }
    if rest.starts_with(b"<![CDATA[") {
        return find(b"]]>");
    }
    if (rest.len() < 9 && b"<![CDATA[".starts_with(rest))
        || (rest.len() < 4 && b"<!--".starts_with(rest))
    {
        return None;
    }
    let mut quote = 0u8;
    for (i, &b) in rest.iter().enumerate().skip(1) {
        match b {
            b'\'' | b'"' if quote == 0 => quote = b,
            q if q == quote => quote = 0,
            b'>' if quote == 0 => return Some(at + i),
            _ => {}
        }
    }
    None
}

impl Splitter {
    /// The next complete piece in `buf`, or `None` when more bytes are needed.
    pub fn next(&mut self, buf: &[u8]) -> Option<Piece> {
        loop {
            let at = self.pos + buf[self.pos..].iter().position(|&b| b == b'<')?;
            let Some(end) = markup_end(buf, at) else {
                self.pos = at;
                return None;
            };
            self.pos = end + 1;
            let second = buf.get(at + 1).copied().unwrap_or(0);
            if second == b'?' || second == b'!' {
                continue; // prologue, comment or CDATA: no change of depth
            }
            let is_end = second == b'/';
            let empty = buf[end - 1] == b'/';
            match (self.depth, is_end, empty) {
                (0, false, false) => {
                    self.depth = 1;
                    return Some(Piece::Header(at..end + 1));
                }
                (0, _, _) => {}
                (1, true, _) => {
                    self.depth = 0;
                    return Some(Piece::End);
                }
                (1, false, true) => return Some(Piece::Element(at..end + 1)),
                (1, false, false) => {
                    self.start = at;
                    self.depth = 2;
                }
                (_, true, _) => {
                    self.depth -= 1;
                    if self.depth == 1 {
                        return Some(Piece::Element(self.start..end + 1));
                    }
                }
                (_, false, false) => self.depth += 1,
                (_, false, true) => {}
            }
        }
    }

    /// Drops the bytes already handed out from the front of `buf`, keeping a partial element.
    pub fn compact(&mut self, buf: &mut Vec<u8>) {
        let keep = if self.depth >= 2 {
            self.start
        } else {
            self.pos
        };
        buf.drain(..keep);
        self.pos -= keep;
        self.start = self.start.saturating_sub(keep);
    }

    /// A stream restart (RFC 6120 §4.3.3, after STARTTLS or SASL): expect a new header.
    pub fn restart(&mut self) {
        *self = Splitter::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(chunks: &[&str]) -> Vec<String> {
        let mut s = Splitter::default();
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for c in chunks {
            buf.extend_from_slice(c.as_bytes());
            while let Some(p) = s.next(&buf) {
                out.push(match p {
                    Piece::Header(r) => format!("H{}", String::from_utf8_lossy(&buf[r])),
                    Piece::Element(r) => String::from_utf8_lossy(&buf[r]).into_owned(),
                    Piece::End => "END".into(),
                });
            }
            s.compact(&mut buf);
        }
        out
    }

    #[test]
    fn splits_across_reads() {
        let whole = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' id='a>b'>\
            <stream:features><starttls xmlns='t'/></stream:features><!-- hi -->\
            <message to='x'><body>1 &lt; 2</body></message><proceed xmlns='t'/></stream:stream>";
        let expected = [
            "H<stream:stream xmlns='jabber:client' id='a>b'>",
            "<stream:features><starttls xmlns='t'/></stream:features>",
            "<message to='x'><body>1 &lt; 2</body></message>",
            "<proceed xmlns='t'/>",
            "END",
        ];
        assert_eq!(pieces(&[whole]), expected);
        // Every split point, byte by byte.
        for cut in 1..whole.len() {
            assert_eq!(
                pieces(&[&whole[..cut], &whole[cut..]]),
                expected,
                "cut at {cut}"
            );
        }
    }
}
