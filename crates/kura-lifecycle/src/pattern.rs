//! `tagPatternList` wildcards.

/// Whether `tag` matches `pattern` as a whole, where each `*` in the pattern
/// stands for any run of characters (including none) and every other
/// character stands for itself, case-sensitively.
///
/// This is how AWS describes `tagPatternList` filters: `prod*` matches tags
/// that begin with `prod` (`prod`, `prod1`, `production-team1`), and `*prod*`
/// matches tags that contain `prod` (`repo-production`, `prod-team`). A
/// pattern without `*` matches only the identical tag.
pub fn wildcard_match(pattern: &str, tag: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), tag.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // The last `*` seen and the tag position it has consumed up to; on a
    // mismatch the star takes one more byte and matching resumes after it.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::wildcard_match;

    #[test]
    fn wildcards() {
        let cases = [
            ("prod*", "prod", true),
            ("prod*", "prod1", true),
            ("prod*", "production-team1", true),
            ("prod*", "xprod", false),
            ("*prod*", "repo-production", true),
            ("*prod*", "prod-team", true),
            ("*prod*", "pro-d", false),
            ("prod", "prod", true),
            ("prod", "prod1", false),
            ("prod", "Prod", false),
            ("*", "anything", true),
            ("*", "", true),
            ("", "", true),
            ("", "a", false),
            ("v*.*.*", "v1.2.3", true),
            ("v*.*.*", "v1.2", false),
            ("*-rc*", "1.0-rc2", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYc-", false),
            ("*test*1*2*3", "my-test-1-2-3", true),
            ("test*1*2*3*", "test123", true),
            ("**", "x", true),
            ("a*a*a*a", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab", false),
        ];
        for (pattern, tag, want) in cases {
            assert_eq!(wildcard_match(pattern, tag), want, "{pattern:?} vs {tag:?}");
        }
    }
}
