//! Version comparison against the committed oracle data in `tests/data/versions/`
//! (see the README there for where each file comes from).

use std::cmp::Ordering;
use std::path::PathBuf;

use kura_scan::version::{compare, is_valid, Scheme};
use proptest::prelude::*;

/// Data files and the scheme each one is checked under.
const FILES: &[(&str, Scheme)] = &[
    ("dpkg.txt", Scheme::Dpkg),
    ("apk.txt", Scheme::Apk),
    ("rpm.txt", Scheme::Rpm),
    ("rpm-upstream.txt", Scheme::Rpm),
    ("pep440.txt", Scheme::Pep440),
    ("semver-npm.txt", Scheme::Semver),
    ("semver.txt", Scheme::Semver),
    ("maven.txt", Scheme::Maven),
    ("maven-docs.txt", Scheme::Maven),
];

fn read(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/versions")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn op_ordering(op: &str) -> Option<Ordering> {
    match op {
        "<" => Some(Ordering::Less),
        "=" => Some(Ordering::Equal),
        ">" => Some(Ordering::Greater),
        _ => None,
    }
}

/// Check one data file; returns (pairs checked, lines skipped) and collects failures.
fn check_file(name: &str, scheme: Scheme, failures: &mut Vec<String>) -> (usize, usize) {
    let (mut checked, mut skipped) = (0, 0);
    for (n, raw) in read(name).lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let at = format!("{name}:{}: `{line}`", n + 1);
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            // apk-tools validity vectors: `version` is valid, `!version` is not.
            [v] => {
                let (v, want) = match v.strip_prefix('!') {
                    Some(v) => (v, false),
                    None => (*v, true),
                };
                if is_valid(scheme, v) != want {
                    failures.push(format!("{at}: is_valid({v:?}) should be {want}"));
                }
                checked += 1;
            }
            [a, op, b] => {
                let (negated, op) = match op.strip_prefix('!') {
                    Some(op) => (true, op),
                    None => (false, *op),
                };
                let Some(want) = op_ordering(op) else {
                    // apk's fuzzy (`~`) and combined operators are not part of `compare`.
                    skipped += 1;
                    continue;
                };
                if !is_valid(scheme, a) || !is_valid(scheme, b) {
                    // apk-tools orders some invalid versions by their valid prefix; we refuse them.
                    if scheme != Scheme::Apk {
                        failures.push(format!("{at}: a version does not parse"));
                    } else if compare(scheme, a, b).is_some() {
                        failures.push(format!("{at}: invalid version compared"));
                    }
                    skipped += 1;
                    continue;
                }
                let got = compare(scheme, a, b);
                let back = compare(scheme, b, a);
                let ok = if negated { got != Some(want) } else { got == Some(want) };
                if !ok {
                    failures.push(format!("{at}: got {got:?}"));
                }
                if back != got.map(Ordering::reverse) {
                    failures.push(format!("{at}: not antisymmetric: reverse gave {back:?}"));
                }
                if got == Some(Ordering::Equal) && compare(scheme, a, a) != Some(Ordering::Equal) {
                    failures.push(format!("{at}: {a} not equal to itself"));
                }
                checked += 1;
            }
            _ => failures.push(format!("{at}: malformed line")),
        }
    }
    (checked, skipped)
}

#[test]
fn oracle_data() {
    let mut failures = Vec::new();
    for &(name, scheme) in FILES {
        let before = failures.len();
        let (checked, skipped) = check_file(name, scheme, &mut failures);
        println!(
            "{name}: {checked} checked, {skipped} skipped, {} failed",
            failures.len() - before
        );
        assert!(checked > 0, "{name}: no data");
    }
    for f in failures.iter().take(60) {
        eprintln!("FAIL {f}");
    }
    assert!(
        failures.is_empty(),
        "{} failing pairs (first ones above)",
        failures.len()
    );
}

/// A version-ish string: mostly characters that version grammars care about.
fn versionish() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(
            prop_oneof![
                Just("0"),
                Just("1"),
                Just("9"),
                Just("10"),
                Just("."),
                Just("-"),
                Just("_"),
                Just("+"),
                Just("~"),
                Just("^"),
                Just(":"),
                Just("!"),
                Just("a"),
                Just("rc"),
                Just("alpha"),
                Just("p"),
                Just("r"),
                Just("dev"),
                Just("post"),
                Just("v"),
                Just("sp"),
                Just("Z"),
            ],
            0..12
        )
        .prop_map(|parts| parts.concat()),
        any::<String>(),
    ]
}

fn scheme() -> impl Strategy<Value = Scheme> {
    proptest::sample::select(Scheme::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Never panics; antisymmetric; reflexive and consistent with `is_valid`.
    #[test]
    fn compare_is_total_and_antisymmetric(s in scheme(), a in versionish(), b in versionish()) {
        let ab = compare(s, &a, &b);
        let ba = compare(s, &b, &a);
        prop_assert_eq!(ab, ba.map(Ordering::reverse));
        prop_assert_eq!(ab.is_some(), is_valid(s, &a) && is_valid(s, &b));
        if is_valid(s, &a) {
            prop_assert_eq!(compare(s, &a, &a), Some(Ordering::Equal));
        }
    }

    /// Transitivity on triples of version-ish strings.
    #[test]
    fn compare_is_transitive(s in scheme(), a in versionish(), b in versionish(), c in versionish()) {
        if let (Some(x), Some(y)) = (compare(s, &a, &b), compare(s, &b, &c)) {
            if x == y || y == Ordering::Equal {
                prop_assert_eq!(compare(s, &a, &c), Some(x));
            } else if x == Ordering::Equal {
                prop_assert_eq!(compare(s, &a, &c), Some(y));
            }
        }
    }
}
