//! RPM versions: `[epoch:]version[-release]`, ordered like rpm's `rpmvercmp` on each part.
//!
//! Each part is split into alternating runs of digits and letters; anything else is a separator
//! and only matters as a boundary. `~` sorts before everything (even the end of the string), `^`
//! sorts after the end of the string but before any further run. Digit runs compare numerically
//! and beat letter runs. A missing release sorts before any release (`1.0 < 1.0-1`), as rpm's
//! `rpm.ver` ordering does; this keeps the order total (rpm's dependency matching instead treats
//! a missing release as a wildcard, which is not an ordering).

use std::cmp::Ordering;

/// A parsed EVR, borrowing from its source text.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Evr<'a> {
    epoch: &'a str,
    version: &'a str,
    release: Option<&'a str>,
}

/// Split `v` into epoch, version and release the way rpm does: the epoch is a leading run of
/// digits before `:`, the release follows the last `-`. `None` for an empty version or one with
/// whitespace or non-ASCII characters.
pub(crate) fn parse(v: &str) -> Option<Evr<'_>> {
    let v = v.trim();
    if v.is_empty() || !v.bytes().all(|c| c.is_ascii_graphic()) {
        return None;
    }
    let (digits, after) = super::split_run(v, |c| c.is_ascii_digit());
    let (epoch, rest) = match after.strip_prefix(':') {
        Some(rest) => (digits, rest),
        None => ("", v),
    };
    let (version, release) = match rest.rsplit_once('-') {
        Some((ver, rel)) => (ver, Some(rel)),
        None => (rest, None),
    };
    if version.is_empty() {
        return None;
    }
    Some(Evr {
        epoch,
        version,
        release,
    })
}

/// Compare two RPM EVRs; `None` if either is invalid.
pub(crate) fn compare(a: &str, b: &str) -> Option<Ordering> {
    let (a, b) = (parse(a)?, parse(b)?);
    Some(
        super::cmp_digits(a.epoch, b.epoch)
            .then_with(|| vercmp(a.version, b.version))
            .then_with(|| vercmp(a.release.unwrap_or(""), b.release.unwrap_or(""))),
    )
}

/// rpmvercmp on one version or release string.
fn vercmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    let special = |c: &u8| c.is_ascii_alphanumeric() || *c == b'~' || *c == b'^';
    loop {
        // Skip separators.
        while a.first().is_some_and(|c| !special(c)) {
            a = &a[1..];
        }
        while b.first().is_some_and(|c| !special(c)) {
            b = &b[1..];
        }
        let (ca, cb) = (a.first().copied(), b.first().copied());
        if ca == Some(b'~') || cb == Some(b'~') {
            if ca != Some(b'~') {
                return Ordering::Greater;
            }
            if cb != Some(b'~') {
                return Ordering::Less;
            }
            (a, b) = (&a[1..], &b[1..]);
            continue;
        }
        if ca == Some(b'^') || cb == Some(b'^') {
            match (ca, cb) {
                (None, _) => return Ordering::Less,
                (_, None) => return Ordering::Greater,
                (Some(x), _) if x != b'^' => return Ordering::Greater,
                (_, Some(y)) if y != b'^' => return Ordering::Less,
                _ => {}
            }
            (a, b) = (&a[1..], &b[1..]);
            continue;
        }
        let (Some(ca), Some(_)) = (ca, cb) else {
            break;
        };
        let numeric = ca.is_ascii_digit();
        let class = |c: &u8| {
            if numeric {
                c.is_ascii_digit()
            } else {
                c.is_ascii_alphabetic()
            }
        };
        let na = a.iter().take_while(|c| class(c)).count();
        let nb = b.iter().take_while(|c| class(c)).count();
        if nb == 0 {
            // Different kinds of run: a number beats letters.
            return if numeric { Ordering::Greater } else { Ordering::Less };
        }
        let (sa, sb) = (&a[..na], &b[..nb]);
        let ord = if numeric {
            // Digit runs are ASCII, so this cannot fail.
            let (ta, tb) = (
                std::str::from_utf8(sa).unwrap_or(""),
                std::str::from_utf8(sb).unwrap_or(""),
            );
            super::cmp_digits(ta, tb)
        } else {
            sa.cmp(sb)
        };
        if ord != Ordering::Equal {
            return ord;
        }
        (a, b) = (&a[na..], &b[nb..]);
    }
    match (a.is_empty(), b.is_empty()) {
        (true, true) => Ordering::Equal,
        (false, _) => Ordering::Greater,
        (true, false) => Ordering::Less,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basics() {
        let lt = |a, b| assert_eq!(compare(a, b), Some(Ordering::Less), "{a} < {b}");
        lt("1.0~rc1-1", "1.0-1");
        lt("1.0-1", "1.0^git1-1");
        lt("1.0^git1", "1.0.1");
        lt("1.0-1.el9", "1:0.1-1");
        lt("1.0a", "1.0.1");
        assert_eq!(compare("1.0", "1.0-5"), Some(Ordering::Less));
        assert_eq!(compare("0:1.0-1", "1.0-1"), Some(Ordering::Equal));
        assert_eq!(compare("1.0_1", "1.0.1"), Some(Ordering::Equal));
        assert!(parse("").is_none());
    }
}
