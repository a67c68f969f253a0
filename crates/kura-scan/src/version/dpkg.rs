//! Debian versions: `[epoch:]upstream[-revision]`, ordered as `dpkg --compare-versions` does.
//!
//! Strings are compared in alternating runs of non-digits and digits. Non-digit runs compare
//! character by character with `~` lowest (even below the end of the string), then the end of
//! the run, then letters, then every other character; digit runs compare numerically.

use std::cmp::Ordering;

/// A parsed Debian version, borrowing from its source text.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Version<'a> {
    epoch: u32,
    upstream: &'a str,
    revision: &'a str,
}

/// Parse `v` as dpkg would, rejecting what dpkg rejects outright (empty parts, a non-numeric or
/// too large epoch) and anything with characters outside printable ASCII. Like
/// `dpkg --compare-versions` (which only warns), an upstream part not starting with a digit is
/// accepted.
pub(crate) fn parse(v: &str) -> Option<Version<'_>> {
    let v = v.trim();
    if v.is_empty() || !v.bytes().all(|c| c.is_ascii_graphic()) {
        return None;
    }
    let (epoch, rest) = match v.split_once(':') {
        Some((e, rest)) => {
            if e.is_empty() || !e.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let epoch: u32 = e.parse().ok()?;
            if epoch > i32::MAX as u32 {
                return None;
            }
            (epoch, rest)
        }
        None => (0, v),
    };
    let (upstream, revision) = match rest.rsplit_once('-') {
        Some((u, r)) => {
            if r.is_empty() {
                return None;
            }
            (u, r)
        }
        None => (rest, ""),
    };
    if upstream.is_empty() {
        return None;
    }
    Some(Version {
        epoch,
        upstream,
        revision,
    })
}

/// Compare two Debian versions; `None` if either is invalid.
pub(crate) fn compare(a: &str, b: &str) -> Option<Ordering> {
    let (a, b) = (parse(a)?, parse(b)?);
    Some(
        a.epoch
            .cmp(&b.epoch)
            .then_with(|| cmp_part(a.upstream, b.upstream))
            .then_with(|| cmp_part(a.revision, b.revision)),
    )
}

/// Weight of one byte in a non-digit run; `None` stands for "past the end" or a digit.
fn weight(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

/// Compare an upstream version or revision string the dpkg way.
fn cmp_part(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
    while i < a.len() || j < b.len() {
        // Non-digit run, position by position (a shorter run is padded with "end", weight 0).
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let (wa, wb) = (weight(a.get(i).copied()), weight(b.get(j).copied()));
            if wa != wb {
                return wa.cmp(&wb);
            }
            // Only advance over non-digits: a digit (weight 0) on one side stays for the numeric run.
            if i < a.len() && !digit(a, i) {
                i += 1;
            }
            if j < b.len() && !digit(b, j) {
                j += 1;
            }
        }
        // Digit run, compared numerically.
        let si = i;
        while digit(a, i) {
            i += 1;
        }
        let sj = j;
        while digit(b, j) {
            j += 1;
        }
        let ord = super::cmp_digits(
            std::str::from_utf8(&a[si..i]).unwrap_or(""),
            std::str::from_utf8(&b[sj..j]).unwrap_or(""),
        );
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basics() {
        let lt = |a, b| assert_eq!(compare(a, b), Some(Ordering::Less), "{a} < {b}");
        lt("1.0~rc1", "1.0");
        lt("1.0", "1.0+deb12u1");
        lt("1.0-1", "1:0.1");
        lt("1.0a", "1.0+");
        lt("1.0~~", "1.0~");
        lt("1.0", "1.0a");
        lt("1.9", "1.10");
        assert_eq!(compare("1.0", "1.0-0"), Some(Ordering::Equal));
        assert_eq!(compare("0:1.0", "1.0"), Some(Ordering::Equal));
        assert_eq!(compare("1.00", "1.0"), Some(Ordering::Equal));
        assert!(parse("a:1").is_none());
        assert!(parse("1:").is_none());
        assert!(parse("1.0-").is_none());
        assert!(parse("1.0 1").is_none());
    }
}
