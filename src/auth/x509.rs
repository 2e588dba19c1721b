//! The names in a client certificate: its issuer and subject, read from the DER that rustls
//! verified, as one-line strings that a site's `auth` rules match with allow/deny's patterns,
//! and the subject's common name, which becomes the user.
//!
//! A name is written the way `openssl x509 -subject` once wrote it, most significant part
//! first: `/C=FR/O=Acme/CN=device1` (no commas, which separate alternatives in a pattern).
//! A `/` or `\` inside a value is escaped with `\`, so a value cannot forge a component; a
//! control character, or a string that is not text, makes the name unreadable and the
//! certificate identifies nobody. Only what the walk needs of DER is read: tag, length
//! (definite, at most four length bytes), contents; every read is bounds-checked.

use core::fmt::Write as _;

/// Longest name kept; a longer one identifies nobody.
pub const MAX_NAME: usize = 256;

/// A certificate's name, rendered.
pub type Name = heapless::String<MAX_NAME>;

/// The issuer and the subject of the certificate `der`, or `None` when it is not one this
/// reader can follow.
#[must_use]
pub fn names(der: &[u8]) -> Option<(Name, Name)> {
    let (cert, _) = tlv(der, 0x30)?;
    let (tbs, _) = tlv(cert, 0x30)?;
    let mut rest = tbs;
    // [0] EXPLICIT version, when not v1.
    if rest.first() == Some(&0xA0) {
        rest = any(rest)?.2;
    }
    let (_serial, r) = tlv(rest, 0x02)?;
    let (_sig, r) = tlv(r, 0x30)?;
    let (issuer, r) = tlv(r, 0x30)?;
    let (_validity, r) = tlv(r, 0x30)?;
    let (subject, _) = tlv(r, 0x30)?;
    Some((render(issuer)?, render(subject)?))
}

/// The value of the last `CN=` component of a rendered name (its most specific one), as
/// rendered (with its escapes).
#[must_use]
pub fn common_name(name: &str) -> Option<&str> {
    let mut found = None;
    let (mut start, mut escaped) = (None::<usize>, false);
    let mut take = |from: usize, to: usize| {
        if let Some(v) = name.get(from..to).and_then(|c| c.strip_prefix("CN=")) {
            found = Some(v);
        }
    };
    for (i, c) in name.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '/' => {
                if let Some(s) = start {
                    take(s, i);
                }
                start = Some(i + 1);
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        take(s, name.len());
    }
    found
}

/// One TLV with tag `want`: its contents and what follows it.
fn tlv(buf: &[u8], want: u8) -> Option<(&[u8], &[u8])> {
    if buf.first() != Some(&want) {
        return None;
    }
    any(buf).map(|(_, content, rest)| (content, rest))
}

/// One TLV, whatever its tag: the tag, its contents and what follows it.
fn any(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *buf.first()?;
    let first = *buf.get(1)?;
    let (len, head) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for &b in buf.get(2..2 + n)? {
            len = len.checked_mul(256)?.checked_add(usize::from(b))?;
        }
        (len, 2 + n)
    };
    let end = head.checked_add(len)?;
    Some((tag, buf.get(head..end)?, buf.get(end..)?))
}

/// `Name ::= SEQUENCE OF RelativeDistinguishedName`, each a SET OF `{ type, value }`.
fn render(mut rdns: &[u8]) -> Option<Name> {
    let mut out = Name::new();
    while !rdns.is_empty() {
        let (set, rest) = tlv(rdns, 0x31)?;
        rdns = rest;
        let mut atvs = set;
        while !atvs.is_empty() {
            let (atv, rest) = tlv(atvs, 0x30)?;
            atvs = rest;
            let (oid, r) = tlv(atv, 0x06)?;
            let (tag, value, _) = any(r)?;
            out.push('/').ok()?;
            attribute(&mut out, oid)?;
            out.push('=').ok()?;
            value_text(&mut out, tag, value)?;
        }
    }
    Some(out)
}

/// The attribute's short name, or its OID in dotted form.
fn attribute(out: &mut Name, oid: &[u8]) -> Option<()> {
    let short = match oid {
        [0x55, 0x04, 0x03] => "CN",
        [0x55, 0x04, 0x04] => "SN",
        [0x55, 0x04, 0x05] => "serialNumber",
        [0x55, 0x04, 0x06] => "C",
        [0x55, 0x04, 0x07] => "L",
        [0x55, 0x04, 0x08] => "ST",
        [0x55, 0x04, 0x0A] => "O",
        [0x55, 0x04, 0x0B] => "OU",
        [0x55, 0x04, 0x2A] => "GN",
        [0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x01] => "emailAddress",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xF2, 0x2C, 0x64, 0x01, 0x19] => "DC",
        _ => return dotted(out, oid),
    };
    out.push_str(short).ok()
}

fn dotted(out: &mut Name, oid: &[u8]) -> Option<()> {
    let (&first, rest) = oid.split_first()?;
    write!(out, "{}.{}", first / 40, first % 40).ok()?;
    let mut v: u64 = 0;
    for &b in rest {
        v = v.checked_mul(128)? | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            write!(out, ".{v}").ok()?;
            v = 0;
        }
    }
    Some(())
}

/// A directory string as text: UTF8String, PrintableString, IA5String, TeletexString (read
/// as Latin-1), BMPString (UTF-16).
fn value_text(out: &mut Name, tag: u8, value: &[u8]) -> Option<()> {
    let mut put = |c: char| -> Option<()> {
        if c.is_control() {
            return None;
        }
        if c == '/' || c == '\\' {
            out.push('\\').ok()?;
        }
        out.push(c).ok()
    };
    match tag {
        0x0C | 0x13 | 0x16 => core::str::from_utf8(value).ok()?.chars().try_for_each(&mut put),
        0x14 => value.iter().try_for_each(|&b| put(char::from(b))),
        0x1E => {
            if value.len() % 2 != 0 {
                return None;
            }
            let units = value.chunks_exact(2).map(|p| {
                u16::from(p.first().copied().unwrap_or(0)) << 8
                    | u16::from(p.get(1).copied().unwrap_or(0))
            });
            char::decode_utf16(units).try_for_each(|c| put(c.ok()?))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    /// `SEQUENCE { SET { SEQUENCE { OID, value } } ... }` from (oid, tag, value) triples.
    fn name(parts: &[(&[u8], u8, &[u8])]) -> Vec<u8> {
        let mut rdns = Vec::new();
        for (oid, tag, value) in parts {
            let atv = [wrap(0x06, oid), wrap(*tag, value)].concat();
            rdns.extend(wrap(0x31, &wrap(0x30, &atv)));
        }
        wrap(0x30, &rdns)
    }

    fn wrap(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        match content.len() {
            n @ 0..=127 => v.push(n as u8),
            n @ 128..=255 => v.extend([0x81, n as u8]),
            n => v.extend([0x82, (n >> 8) as u8, n as u8]),
        }
        v.extend_from_slice(content);
        v
    }

    fn cert(issuer: &[u8], subject: &[u8]) -> Vec<u8> {
        let tbs = [
            wrap(0xA0, &wrap(0x02, &[2])),
            wrap(0x02, &[1, 2, 3]),
            wrap(0x30, &wrap(0x06, &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02])),
            issuer.to_vec(),
            wrap(0x30, &[wrap(0x17, b"260101000000Z"), wrap(0x17, b"270101000000Z")].concat()),
            subject.to_vec(),
            wrap(0x30, &[]),
        ]
        .concat();
        wrap(0x30, &[wrap(0x30, &tbs), wrap(0x30, &[]), wrap(0x03, &[0])].concat())
    }

    const CN: &[u8] = &[0x55, 0x04, 0x03];
    const O: &[u8] = &[0x55, 0x04, 0x0A];
    const C: &[u8] = &[0x55, 0x04, 0x06];

    #[test]
    fn issuer_and_subject_are_rendered_most_significant_first() {
        let issuer =
            name(&[(C, 0x13, b"FR"), (O, 0x0C, "Acmé".as_bytes()), (CN, 0x13, b"Router CA")]);
        let subject = name(&[
            (O, 0x0C, b"Acme"),
            (&[0x2A, 0x03, 0x81, 0x01], 0x0C, b"x"),
            (CN, 0x1E, &[0, b'd', 0, b'1']),
        ]);
        let (i, s) = names(&cert(&issuer, &subject)).unwrap();
        assert_eq!(i.as_str(), "/C=FR/O=Acmé/CN=Router CA");
        assert_eq!(s.as_str(), "/O=Acme/1.2.3.129=x/CN=d1");
        assert_eq!(common_name(&s), Some("d1"));
        assert_eq!(common_name("/O=Acme"), None);
    }

    #[test]
    fn a_value_cannot_forge_a_component() {
        let subject = name(&[(CN, 0x0C, b"evil/CN=admin")]);
        let (_, s) = names(&cert(&name(&[]), &subject)).unwrap();
        assert_eq!(s.as_str(), "/CN=evil\\/CN=admin");
        assert_eq!(common_name(&s), Some("evil\\/CN=admin"), "one component, escapes kept");
        let control = name(&[(CN, 0x0C, b"a\nb")]);
        assert!(names(&cert(&name(&[]), &control)).is_none());
    }

    #[test]
    fn what_is_not_a_certificate_names_nobody() {
        let good = cert(&name(&[(CN, 0x13, b"ca")]), &name(&[(CN, 0x13, b"d")]));
        for n in 0..good.len() {
            assert!(names(&good[..n]).is_none(), "cut at {n}");
        }
        assert!(names(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_none());
        assert!(names(&[]).is_none());
    }
}
