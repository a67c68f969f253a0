//! Python versions (PEP 440): `[N!]N(.N)*[{a|b|rc}N][.postN][.devN][+local]`.
//!
//! Parsing accepts the spellings PEP 440 normalises (case-insensitive, a leading `v`, `alpha`,
//! `beta`, `c`, `pre`, `preview`, `rev`, `r`, `-N` as a post-release, `-`/`_`/`.` separators,
//! implicit numbers, surrounding whitespace) and orders by epoch, release (trailing zeros
//! ignored), pre-release, post-release, dev-release and local label. A dev release of a final
//! version sorts before all its pre-releases.

use std::cmp::Ordering;

/// A local version segment: numbers sort after words.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Local {
    Word(String),
    Num(u128),
}

/// A parsed PEP 440 version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Version {
    epoch: u128,
    release: Vec<u128>,
    /// 0 = a, 1 = b, 2 = rc, with its number.
    pre: Option<(u8, u128)>,
    post: Option<u128>,
    dev: Option<u128>,
    local: Vec<Local>,
}

/// A tiny cursor over the lowercased input.
struct Cursor<'a> {
    s: &'a str,
}

impl<'a> Cursor<'a> {
    fn eat(&mut self, p: &str) -> bool {
        match self.s.strip_prefix(p) {
            Some(r) => {
                self.s = r;
                true
            }
            None => false,
        }
    }
    fn sep(&mut self) -> bool {
        self.eat(".") || self.eat("-") || self.eat("_")
    }
    fn num(&mut self) -> Option<Option<u128>> {
        let (d, r) = super::split_run(self.s, |c| c.is_ascii_digit());
        if d.is_empty() {
            return Some(None);
        }
        self.s = r;
        d.parse().ok().map(Some)
    }
    /// Try `[sep]word[sep]N?` for one of `words`; restore on failure.
    fn tagged(&mut self, words: &[&str]) -> Option<(usize, Option<u128>)> {
        let save = self.s;
        self.sep();
        for (i, w) in words.iter().enumerate() {
            if self.eat(w) {
                // As in packaging, a separator after the word is taken even when no number follows.
                self.sep();
                match self.num() {
                    Some(n) => return Some((i, n)),
                    None => break,
                }
            }
        }
        self.s = save;
        None
    }
    fn rest(&self) -> &'a str {
        self.s
    }
}

/// Parse a PEP 440 version (as `packaging.version.Version` accepts it).
pub(crate) fn parse(v: &str) -> Option<Version> {
    let lower = v.trim().to_ascii_lowercase();
    let mut c = Cursor { s: &lower };
    c.eat("v");
    let mut epoch = 0;
    let mut release = vec![c.num()??];
    if c.eat("!") {
        epoch = release[0];
        release = vec![c.num()??];
    }
    while c.s.starts_with('.') && c.s[1..].starts_with(|ch: char| ch.is_ascii_digit()) {
        c.eat(".");
        release.push(c.num()??);
    }
    // Longer spellings first so that a prefix does not win.
    const PRE: [&str; 8] = ["alpha", "a", "beta", "b", "preview", "pre", "rc", "c"];
    const PRE_RANK: [u8; 8] = [0, 0, 1, 1, 2, 2, 2, 2];
    let pre = c.tagged(&PRE).map(|(i, n)| (PRE_RANK[i], n.unwrap_or(0)));
    let mut post = None;
    if c.s.starts_with('-') && c.s[1..].starts_with(|ch: char| ch.is_ascii_digit()) {
        c.eat("-");
        post = c.num()?;
    } else if let Some((_, n)) = c.tagged(&["post", "rev", "r"]) {
        post = Some(n.unwrap_or(0));
    }
    let dev = c.tagged(&["dev"]).map(|(_, n)| n.unwrap_or(0));
    let mut local = Vec::new();
    if c.eat("+") {
        let text = c.rest();
        for seg in text.split(['.', '-', '_']) {
            if seg.is_empty() || !seg.bytes().all(|ch| ch.is_ascii_alphanumeric()) {
                return None;
            }
            local.push(match seg.bytes().all(|ch| ch.is_ascii_digit()) {
                true => Local::Num(seg.parse().ok()?),
                false => Local::Word(seg.to_string()),
            });
        }
        c.s = "";
    }
    if !c.rest().is_empty() {
        return None;
    }
    while release.len() > 1 && release.last() == Some(&0) {
        release.pop();
    }
    Some(Version {
        epoch,
        release,
        pre,
        post,
        dev,
        local,
    })
}

/// Sort key for the pre-release slot: dev-only finals first, finals after every pre-release.
fn pre_key(v: &Version) -> (u8, u8, u128) {
    match (v.pre, v.post, v.dev) {
        (None, None, Some(_)) => (0, 0, 0),
        (Some((k, n)), _, _) => (1, k, n),
        (None, _, _) => (2, 0, 0),
    }
}

impl Ord for Version {
    fn cmp(&self, o: &Self) -> Ordering {
        let release = |v: &Version| {
            let mut r = v.release.clone();
            while r.len() > 1 && r.last() == Some(&0) {
                r.pop();
            }
            r
        };
        // Missing post sorts first, missing dev sorts last, missing local sorts first.
        let dev = |v: &Version| v.dev.map_or((1, 0), |d| (0, d));
        self.epoch
            .cmp(&o.epoch)
            .then_with(|| release(self).cmp(&release(o)))
            .then_with(|| pre_key(self).cmp(&pre_key(o)))
            .then_with(|| self.post.cmp(&o.post))
            .then_with(|| dev(self).cmp(&dev(o)))
            .then_with(|| self.local.cmp(&o.local))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// Compare two PEP 440 versions; `None` if either is invalid.
pub(crate) fn compare(a: &str, b: &str) -> Option<Ordering> {
    Some(parse(a)?.cmp(&parse(b)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basics() {
        let lt = |a, b| assert_eq!(compare(a, b), Some(Ordering::Less), "{a} < {b}");
        let eq = |a, b| assert_eq!(compare(a, b), Some(Ordering::Equal), "{a} = {b}");
        lt("1.0.dev1", "1.0a1");
        lt("1.0a1", "1.0b1");
        lt("1.0rc1", "1.0");
        lt("1.0", "1.0.post1");
        lt("1.0", "1.0+local");
        lt("1.0+abc", "1.0+1");
        lt("1.0.post1.dev1", "1.0.post1");
        lt("2.0", "1!0.1");
        eq("1.0RC1", "1.0rc1");
        eq("1.0c1", "1.0rc1");
        eq("1.0", "1.0.0");
        eq("v1.0-1", "1.0.post1");
        eq("1.0-alpha.1", "1.0a1");
        assert!(parse("1.0-").is_none());
        assert!(parse("1.0+").is_none());
        assert!(parse("abc").is_none());
    }
}
