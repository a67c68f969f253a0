//! Maven versions, ordered like Maven's `ComparableVersion` (checked against Maven 3.8).
//!
//! The (case-insensitive) version splits into items at `.`, at `-` and at every switch between
//! digits and letters. A `-` or a digit/letter switch opens a nested list, so that
//! `1-1 < 1.1`; so does a word at the very end (`1.0.RC = 1.0-RC`). Numbers compare numerically; words compare by qualifier rank
//! `alpha < beta < milestone < rc = cr < snapshot < "" = ga = final = release < sp`, with
//! unknown words after `sp` in lexical order (`a`, `b`, `m` directly followed by a digit mean
//! alpha, beta, milestone). Trailing "null" items (`0`, `""`, `ga`, ...) are dropped, so
//! `1.0.0 = 1 = 1-ga`. When one list runs out, the other's next item decides against "nothing":
//! a number or list is bigger, a pre-release word smaller.

use std::cmp::Ordering;

/// One item of a parsed Maven version.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    /// A number without leading zeros (`""` is zero).
    Int(String),
    /// A qualifier, after aliasing.
    Str(String),
    /// A nested list (opened by `-` or a digit/letter switch).
    List(Vec<Item>),
}

const QUALIFIERS: [&str; 7] = ["alpha", "beta", "milestone", "rc", "snapshot", "", "sp"];
const RELEASE: usize = 5;

impl Item {
    fn number(digits: &str) -> Item {
        Item::Int(digits.trim_start_matches('0').to_string())
    }

    fn word(w: &str, followed_by_digit: bool) -> Item {
        let w = match (w, followed_by_digit) {
            ("a", true) => "alpha",
            ("b", true) => "beta",
            ("m", true) => "milestone",
            ("ga" | "final" | "release", _) => "",
            ("cr", _) => "rc",
            (w, _) => w,
        };
        Item::Str(w.to_string())
    }

    fn is_null(&self) -> bool {
        match self {
            Item::Int(n) => n.is_empty(),
            Item::Str(s) => s.is_empty(),
            Item::List(l) => l.is_empty(),
        }
    }
}

/// Rank of a qualifier: known ones by index, unknown ones after all of them, lexically.
fn qualifier_rank(s: &str) -> (usize, &str) {
    match QUALIFIERS.iter().position(|&q| q == s) {
        Some(i) => (i, ""),
        None => (QUALIFIERS.len(), s),
    }
}

/// Compare an item with "nothing" (the other list has ended).
fn cmp_null(a: &Item) -> Ordering {
    match a {
        Item::Int(n) => {
            if n.is_empty() {
                Ordering::Equal
            } else {
                Ordering::Greater
            }
        }
        Item::Str(s) => qualifier_rank(s).cmp(&(RELEASE, "")),
        Item::List(l) => l.iter().map(cmp_null).find(|o| o.is_ne()).unwrap_or(Ordering::Equal),
    }
}

fn cmp_item(a: &Item, b: &Item) -> Ordering {
    use Item::*;
    match (a, b) {
        (Int(x), Int(y)) => super::cmp_digits(x, y),
        (Int(_), _) => Ordering::Greater,
        (Str(_), Int(_)) => Ordering::Less,
        (Str(x), Str(y)) => qualifier_rank(x).cmp(&qualifier_rank(y)),
        (Str(_), List(_)) => Ordering::Less,
        (List(_), Int(_)) => Ordering::Less,
        (List(_), Str(_)) => Ordering::Greater,
        (List(x), List(y)) => cmp_lists(x, y),
    }
}

fn cmp_lists(a: &[Item], b: &[Item]) -> Ordering {
    for i in 0..a.len().max(b.len()) {
        let o = match (a.get(i), b.get(i)) {
            (Some(x), Some(y)) => cmp_item(x, y),
            (Some(x), None) => cmp_null(x),
            (None, Some(y)) => cmp_null(y).reverse(),
            (None, None) => Ordering::Equal,
        };
        if o.is_ne() {
            return o;
        }
    }
    Ordering::Equal
}

/// Drop trailing null items, looking through trailing lists that are not null themselves.
fn normalize(list: &mut Vec<Item>) {
    let mut i = list.len();
    while i > 0 {
        i -= 1;
        if list[i].is_null() {
            list.remove(i);
        } else if !matches!(list[i], Item::List(_)) {
            break;
        }
    }
}

/// Whether `v` is accepted: non-empty printable ASCII without spaces.
pub(crate) fn is_valid(v: &str) -> bool {
    let v = v.trim();
    !v.is_empty() && v.bytes().all(|c| c.is_ascii_graphic())
}

/// Parse into the top-level item list.
fn parse(v: &str) -> Option<Vec<Item>> {
    if !is_valid(v) {
        return None;
    }
    let v = v.trim().to_ascii_lowercase();
    // levels[k + 1] is the list that will become the last item of levels[k].
    let mut levels: Vec<Vec<Item>> = vec![Vec::new()];
    let bytes = v.as_bytes();
    let mut start = 0;
    let mut digit = false;
    let item = |s: &str, digit: bool| if digit { Item::number(s) } else { Item::word(s, false) };
    for (i, &c) in bytes.iter().enumerate() {
        let cur = levels.last_mut()?;
        match c {
            b'.' | b'-' => {
                cur.push(if i == start {
                    Item::Int(String::new())
                } else {
                    item(&v[start..i], digit)
                });
                start = i + 1;
                if c == b'-' {
                    levels.push(Vec::new());
                }
            }
            b'0'..=b'9' => {
                if !digit && i > start {
                    // As at the end: a word after `.` opens a list (`1.0.RC1 = 1.0-RC1`).
                    if !cur.is_empty() {
                        levels.push(Vec::new());
                    }
                    let cur = levels.last_mut()?;
                    cur.push(Item::word(&v[start..i], true));
                    start = i;
                    levels.push(Vec::new());
                }
                digit = true;
            }
            _ => {
                if digit && i > start {
                    cur.push(Item::number(&v[start..i]));
                    start = i;
                    levels.push(Vec::new());
                }
                digit = false;
            }
        }
    }
    if v.len() > start {
        // A trailing word after `.` opens a list just as after `-` (`1.0.RC1 = 1.0-RC1`).
        if !digit && !levels.last()?.is_empty() {
            levels.push(Vec::new());
        }
        levels.last_mut()?.push(item(&v[start..], digit));
    }
    let mut inner = levels.pop()?;
    normalize(&mut inner);
    while let Some(mut parent) = levels.pop() {
        parent.push(Item::List(inner));
        normalize(&mut parent);
        inner = parent;
    }
    Some(inner)
}

/// Compare two Maven versions; `None` if either is invalid.
pub(crate) fn compare(a: &str, b: &str) -> Option<Ordering> {
    Some(cmp_lists(&parse(a)?, &parse(b)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basics() {
        let lt = |a, b| assert_eq!(compare(a, b), Some(Ordering::Less), "{a} < {b}");
        let eq = |a, b| assert_eq!(compare(a, b), Some(Ordering::Equal), "{a} = {b}");
        lt("1-alpha", "1-beta");
        lt("1-beta", "1-milestone");
        lt("1-milestone", "1-rc");
        lt("1-rc", "1-snapshot");
        lt("1-snapshot", "1");
        lt("1", "1-sp");
        lt("1-sp", "1-foo");
        lt("1-1", "1.1");
        lt("1.0-alpha1", "1.0");
        eq("1-rc", "1-cr");
        eq("1", "1.0.0");
        eq("1-ga", "1-final");
        eq("1.0.0.RELEASE", "1");
        eq("1a1", "1-alpha-1");
    }
}
