//! Alpine versions: `digits{.digits}[letter]{_suffix[digits]}[~hash][-rN]`, ordered like apk-tools.
//!
//! The version is read as a sequence of tokens of increasing kind. Two versions compare token by
//! token while the kinds agree; a digit component with a leading zero (other than the first one)
//! compares as a string. When one version runs out or switches to a different kind, the one with
//! the "earlier" kind is greater (`1.2.1 > 1.2a > 1.2`), except that a pre-release suffix
//! (`_alpha`, `_beta`, `_pre`, `_rc`) always makes its version the lesser.

use std::cmp::Ordering;

/// Token kinds, in the order they may appear (the order matters for comparison).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// A digit component (the first one or a `.`-separated one).
    Digit,
    /// One lowercase letter after the numbers.
    Letter,
    /// `_alpha`, `_p`, ...
    Suffix,
    /// The number after a suffix.
    SuffixNo,
    /// `~` and hex digits.
    Hash,
    /// `-r` and digits.
    Revision,
    /// End of the version.
    End,
}

/// Suffixes by rank; everything below `RELEASE` is a pre-release.
const SUFFIXES: [&str; 9] = ["alpha", "beta", "pre", "rc", "cvs", "svn", "git", "hg", "p"];
const RELEASE: usize = 4;

#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    kind: Kind,
    text: &'a str,
    /// Rank of a suffix token.
    rank: usize,
    /// Whether this digit token is the first component (compared numerically even with a leading zero).
    first: bool,
}

/// Tokenize a whole version; `None` when it is not a valid apk version.
fn tokens(v: &str) -> Option<Vec<Token<'_>>> {
    let tok = |kind, text, rank| Token {
        kind,
        text,
        rank,
        first: false,
    };
    let (digits, mut rest) = super::split_run(v, |c| c.is_ascii_digit());
    if digits.is_empty() {
        return None;
    }
    let mut out = vec![Token {
        first: true,
        ..tok(Kind::Digit, digits, 0)
    }];
    let mut last = Kind::Digit;
    while let Some(c) = rest.bytes().next() {
        let t = match c {
            b'a'..=b'z' if last == Kind::Digit => {
                let (l, r) = rest.split_at(1);
                rest = r;
                tok(Kind::Letter, l, 0)
            }
            b'.' if last == Kind::Digit => {
                let (d, r) = super::split_run(&rest[1..], |c| c.is_ascii_digit());
                if d.is_empty() {
                    return None;
                }
                rest = r;
                tok(Kind::Digit, d, 0)
            }
            b'0'..=b'9' if last == Kind::Suffix => {
                let (d, r) = super::split_run(rest, |c| c.is_ascii_digit());
                rest = r;
                tok(Kind::SuffixNo, d, 0)
            }
            b'_' if last <= Kind::SuffixNo => {
                let (s, r) = super::split_run(&rest[1..], |c| c.is_ascii_lowercase());
                let rank = SUFFIXES.iter().position(|&x| x == s)?;
                rest = r;
                tok(Kind::Suffix, s, rank)
            }
            b'~' if last < Kind::Hash => {
                let (h, r) = super::split_run(&rest[1..], |c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
                if h.is_empty() {
                    return None;
                }
                rest = r;
                tok(Kind::Hash, h, 0)
            }
            b'-' if last < Kind::Revision => {
                let r = rest.strip_prefix("-r")?;
                let (d, r) = super::split_run(r, |c| c.is_ascii_digit());
                if d.is_empty() {
                    return None;
                }
                rest = r;
                tok(Kind::Revision, d, 0)
            }
            _ => return None,
        };
        last = t.kind;
        out.push(t);
    }
    Some(out)
}

/// Whether `v` is a valid apk version.
pub(crate) fn is_valid(v: &str) -> bool {
    tokens(v).is_some()
}

fn cmp_token(a: &Token<'_>, b: &Token<'_>) -> Ordering {
    match a.kind {
        Kind::Digit if !a.first && (a.text.starts_with('0') || b.text.starts_with('0')) => a.text.cmp(b.text),
        Kind::Digit | Kind::SuffixNo | Kind::Revision => super::cmp_digits(a.text, b.text),
        Kind::Suffix => a.rank.cmp(&b.rank),
        Kind::Letter | Kind::Hash | Kind::End => a.text.cmp(b.text),
    }
}

/// Compare two apk versions; `None` if either is invalid.
pub(crate) fn compare(a: &str, b: &str) -> Option<Ordering> {
    let (ta, tb) = (tokens(a)?, tokens(b)?);
    let end = Token {
        kind: Kind::End,
        text: "",
        rank: 0,
        first: false,
    };
    for i in 0.. {
        let x = ta.get(i).copied().unwrap_or(end);
        let y = tb.get(i).copied().unwrap_or(end);
        if x.kind != y.kind {
            let pre = |t: &Token<'_>| t.kind == Kind::Suffix && t.rank < RELEASE;
            return Some(if pre(&x) {
                Ordering::Less
            } else if pre(&y) {
                Ordering::Greater
            } else {
                // The later kind (e.g. the end) loses against more version detail.
                y.kind.cmp(&x.kind)
            });
        }
        if x.kind == Kind::End {
            break;
        }
        let ord = cmp_token(&x, &y);
        if ord != Ordering::Equal {
            return Some(ord);
        }
    }
    Some(Ordering::Equal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basics() {
        let lt = |a, b| assert_eq!(compare(a, b), Some(Ordering::Less), "{a} < {b}");
        lt("1.0_rc1", "1.0");
        lt("1.0", "1.0_p1");
        lt("1.0", "1.0-r1");
        lt("1.0-r1", "1.0.1");
        lt("1.0_alpha_pre2", "1.0_alpha");
        lt("1.2", "1.2a");
        lt("1.2a", "1.2.1");
        lt("1.0~abc-r0", "1.0~abd-r0");
        assert_eq!(compare("1.0", "1.0-r0"), Some(Ordering::Less));
        assert!(!is_valid("1.0bc"));
        assert!(!is_valid("v1.0"));
    }
}
