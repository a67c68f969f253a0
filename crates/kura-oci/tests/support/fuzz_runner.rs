//! The runner every fuzz target uses (kura-oci, kura-auth, kura-registry and
//! kura-iam include this file with `#[path]`): a proptest strategy and a
//! property, run for a fixed number of cases (the default, quick enough for
//! CI) or, with `KURA_FUZZ_SECS=<n>`, in batches with fresh random seeds
//! until `n` seconds have passed. Each run prints the target's name, the
//! cases it ran and how long it took. A failure (a panic counts) is shrunk by
//! proptest and reported with the minimal input, which then belongs in the
//! target's regression cases.

use std::fmt::Debug;
use std::time::{Duration, Instant};

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestCaseResult, TestError, TestRunner};

/// Cases per batch in long mode.
const LONG_BATCH: u32 = 2_000;

/// Run `property` over values of `strategy`: `cases` of them, or for
/// `KURA_FUZZ_SECS` seconds when that is set.
pub fn fuzz<S>(name: &str, cases: u32, strategy: S, property: impl Fn(S::Value) -> TestCaseResult)
where
    S: Strategy,
    S::Value: Debug,
{
    let budget = std::env::var("KURA_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map(Duration::from_secs);
    let start = Instant::now();
    let mut total: u64 = 0;
    loop {
        let batch = if budget.is_some() { LONG_BATCH } else { cases };
        // A fresh runner draws a fresh random seed (or PROPTEST_RNG_SEED's).
        let mut runner = TestRunner::new(Config {
            cases: batch,
            failure_persistence: None,
            ..Config::default()
        });
        match runner.run(&strategy, &property) {
            Ok(()) => total += u64::from(batch),
            Err(TestError::Fail(why, input)) => {
                panic!("fuzz {name}: failed after {total}+ cases: {why}\nminimal failing input: {input:?}")
            }
            Err(TestError::Abort(why)) => panic!("fuzz {name}: aborted after {total}+ cases: {why}"),
        }
        match budget {
            Some(b) if start.elapsed() < b => continue,
            _ => break,
        }
    }
    eprintln!(
        "fuzz {name}: {total} cases in {:.1} s, no failure",
        start.elapsed().as_secs_f64()
    );
}
