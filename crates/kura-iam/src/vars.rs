//! Policy variables: `${key}`, `${key, 'default'}` and the `${*}`, `${?}`,
//! `${$}` escapes.

use crate::context::RequestContext;
use crate::pattern::{plain_tokens, Tok};

/// Expand `text` against the request into a token list.
///
/// With `variables` off (policy version `2008-10-17`) the text is taken as is.
/// Otherwise each `${key}` is replaced by the request's single value for
/// `key` (literally: a `*` in a user name is no wildcard); `${key, 'text'}`
/// falls back to `text` when the request has no value; `${*}`, `${?}` and
/// `${$}` stand for a literal `*`, `?` and `$`. A `${` without a closing `}`
/// is plain text.
///
/// Returns `None` when a variable has no value and no default (IAM: the
/// resource or condition value then matches nothing).
pub(crate) fn expand(text: &str, variables: bool, ctx: &RequestContext) -> Option<Vec<Tok>> {
    if !variables || !text.contains("${") {
        return Some(plain_tokens(text));
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '$' && chars.get(i + 1) == Some(&'{') {
            if let Some(end) = closing_brace(&chars, i + 2) {
                let inner: String = chars[i + 2..end].iter().collect();
                let value = resolve(inner.trim(), ctx)?;
                out.extend(value.chars().map(Tok::Lit));
                i = end + 1;
                continue;
            }
        }
        out.push(match chars[i] {
            '*' => Tok::Star,
            '?' => Tok::One,
            c => Tok::Lit(c),
        });
        i += 1;
    }
    Some(out)
}

/// The index of the `}` that closes a variable starting at `start`, skipping
/// a single-quoted default value.
fn closing_brace(chars: &[char], start: usize) -> Option<usize> {
    let mut quoted = false;
    for (i, &c) in chars.iter().enumerate().skip(start) {
        match c {
            '\'' => quoted = !quoted,
            '}' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

fn resolve(inner: &str, ctx: &RequestContext) -> Option<String> {
    match inner {
        "*" | "?" | "$" => return Some(inner.to_string()),
        _ => {}
    }
    let (name, default) = match inner.split_once(',') {
        Some((name, default)) => {
            let d = default.trim();
            let d = d.strip_prefix('\'').and_then(|d| d.strip_suffix('\'')).unwrap_or(d);
            (name.trim(), Some(d))
        }
        None => (inner, None),
    };
    match ctx.key_values(name) {
        Some(v) if v.len() == 1 => Some(v[0].clone()),
        _ => default.map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Principal;
    use crate::pattern::literal;

    #[test]
    fn expansion() {
        let ctx = RequestContext::new(Principal::user("111122223333", "a*b"), "ecr:X", "*", "111122223333");
        let e = |t: &str| expand(t, true, &ctx).map(|toks| literal(&toks));
        assert_eq!(e("home/${aws:username}/*").as_deref(), Some("home/a*b/*"));
        assert_eq!(
            expand("${aws:username}", true, &ctx),
            Some(vec![Tok::Lit('a'), Tok::Lit('*'), Tok::Lit('b')])
        );
        assert_eq!(e("${aws:nothing}"), None);
        assert_eq!(e("${aws:nothing, 'dflt'}").as_deref(), Some("dflt"));
        assert_eq!(e("${aws:nothing,'a}b'}").as_deref(), Some("a}b"));
        assert_eq!(e("x${*}${?}${$}").as_deref(), Some("x*?$"));
        assert_eq!(expand("${*}", true, &ctx), Some(vec![Tok::Lit('*')]));
        assert_eq!(e("open ${ brace").as_deref(), Some("open ${ brace"));
        assert_eq!(e("${aws:PrincipalAccount}").as_deref(), Some("111122223333"));
        assert_eq!(
            expand("${aws:username}", false, &ctx).map(|t| literal(&t)).as_deref(),
            Some("${aws:username}")
        );
    }
}
