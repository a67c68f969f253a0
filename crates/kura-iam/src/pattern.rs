//! `*` and `?` wildcards, as in `Action`, `Resource`, `StringLike` and `ArnLike`.

/// One element of a pattern after policy variables were expanded: a literal
/// character (also what `${*}`, `${?}` and substituted values become) or a
/// wildcard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tok {
    /// This character, itself.
    Lit(char),
    /// `*`: any run of characters, including none.
    Star,
    /// `?`: exactly one character.
    One,
}

/// The tokens of a pattern with no variables: `*` and `?` are wildcards.
pub(crate) fn plain_tokens(pattern: &str) -> Vec<Tok> {
    pattern
        .chars()
        .map(|c| match c {
            '*' => Tok::Star,
            '?' => Tok::One,
            c => Tok::Lit(c),
        })
        .collect()
}

/// The text a token list stands for when read literally (for the `Equals`
/// operators, which know no wildcards).
pub(crate) fn literal(toks: &[Tok]) -> String {
    toks.iter()
        .map(|t| match t {
            Tok::Lit(c) => *c,
            Tok::Star => '*',
            Tok::One => '?',
        })
        .collect()
}

fn same_char(a: char, b: char, ignore_case: bool) -> bool {
    a == b || (ignore_case && a.to_lowercase().eq(b.to_lowercase()))
}

/// Whether `text` matches the token list as a whole.
pub(crate) fn match_tokens(pat: &[Tok], text: &[char], ignore_case: bool) -> bool {
    let (mut pi, mut ti) = (0, 0);
    // The last `*` seen and the text position it has consumed up to; on a
    // mismatch the star swallows one more character and matching resumes.
    let mut star: Option<(usize, usize)> = None;
    while ti < text.len() {
        match pat.get(pi) {
            Some(Tok::Star) => {
                star = Some((pi, ti));
                pi += 1;
                continue;
            }
            Some(Tok::One) => {
                pi += 1;
                ti += 1;
                continue;
            }
            Some(Tok::Lit(c)) if same_char(*c, text[ti], ignore_case) => {
                pi += 1;
                ti += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    pat[pi..].iter().all(|t| *t == Tok::Star)
}

/// Whether `text` matches `pattern` as a whole, where `*` stands for any run
/// of characters (including none), `?` for exactly one character, and every
/// other character for itself; letters compare case-insensitively when
/// `ignore_case` is set.
///
/// IAM matches `Action` entries this way ignoring case (`ecr:get*` covers
/// `ecr:GetAuthorizationToken`) and `Resource` entries respecting case.
pub fn wildcard_match(pattern: &str, text: &str, ignore_case: bool) -> bool {
    let text: Vec<char> = text.chars().collect();
    match_tokens(&plain_tokens(pattern), &text, ignore_case)
}

/// ARN matching for the `Arn*` operators: both sides are split into the six
/// ARN components (`arn`, partition, service, region, account, resource) and
/// matched component by component, so a wildcard never spans a `:` of the
/// first five. A text that is not ARN-shaped matches nothing.
pub(crate) fn arn_match(pat: &[Tok], text: &str) -> bool {
    let Ok(arn) = crate::arn::Arn::parse(text) else {
        return false;
    };
    let text_parts = ["arn", arn.partition, arn.service, arn.region, arn.account, arn.resource];
    let mut pat_parts: Vec<&[Tok]> = Vec::with_capacity(6);
    let mut rest = pat;
    while pat_parts.len() < 5 {
        match rest.iter().position(|t| *t == Tok::Lit(':')) {
            Some(i) => {
                pat_parts.push(&rest[..i]);
                rest = &rest[i + 1..];
            }
            None => break,
        }
    }
    if pat_parts.len() != 5 {
        // `*` alone (or another pattern without five colons) is matched whole.
        let chars: Vec<char> = text.chars().collect();
        return pat_parts.is_empty() && match_tokens(pat, &chars, false);
    }
    pat_parts.push(rest);
    pat_parts.iter().zip(text_parts).all(|(p, t)| {
        let chars: Vec<char> = t.chars().collect();
        match_tokens(p, &chars, false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        let cases = [
            ("ecr:*", "ecr:GetAuthorizationToken", false, true),
            ("ecr:get*", "ecr:GetAuthorizationToken", true, true),
            ("ecr:get*", "ecr:GetAuthorizationToken", false, false),
            ("ecr:?etImage", "ecr:GetImage", false, true),
            ("ecr:?etImage", "ecr:etImage", false, false),
            ("*", "", false, true),
            ("", "", false, true),
            ("", "a", false, false),
            ("a*b?c", "aXXbYc", false, true),
            ("a*b?c", "aXXbc", false, false),
            ("a*a*a*a", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaab", false, false),
            ("**?", "x", false, true),
            ("ÄB*", "äbc", true, true),
        ];
        for (p, t, ic, want) in cases {
            assert_eq!(wildcard_match(p, t, ic), want, "{p:?} vs {t:?}");
        }
    }

    #[test]
    fn arns() {
        let m = |p: &str, t: &str| arn_match(&plain_tokens(p), t);
        assert!(m(
            "arn:aws:ecr:*:111122223333:repository/*",
            "arn:aws:ecr:us-east-1:111122223333:repository/a/b"
        ));
        assert!(!m(
            "arn:aws:ecr:*:111122223333:repository/*",
            "arn:aws:ecr:us-east-1:444455556666:repository/a"
        ));
        assert!(!m("arn:aws:ecr*", "arn:aws:ecr:us-east-1:111122223333:repository/a"));
        assert!(m("*", "arn:aws:ecr:us-east-1:111122223333:repository/a"));
        assert!(m("arn:aws:iam::*:role/x", "arn:aws:iam::111122223333:role/x"));
        assert!(!m("arn:aws:iam::*:role/x", "not-an-arn"));
        assert!(m("arn:aws:s3:::bucket/a:b", "arn:aws:s3:::bucket/a:b"));
    }
}
