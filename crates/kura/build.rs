//! Records the commit the binary is built from, for `kura --version`:
//! `KURA_GIT_COMMIT` from the environment if set (builds from a tarball can
//! pass it), else `git rev-parse` of the checkout, else "unknown". A tree
//! with uncommitted changes gets a `-dirty` suffix.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=KURA_GIT_COMMIT");
    let commit = match std::env::var("KURA_GIT_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_string(),
        _ => from_git().unwrap_or_else(|| "unknown".to_string()),
    };
    println!("cargo:rustc-env=KURA_GIT_COMMIT={commit}");
}

fn from_git() -> Option<String> {
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    // Build again when HEAD moves: HEAD itself (a branch switch), the branch's
    // ref, and packed-refs (a ref packed away) — in a worktree, HEAD lives in
    // the worktree's git dir and the refs in the common one.
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={}", PathBuf::from(&dir).join("HEAD").display());
    }
    if let Some(common) = git(&["rev-parse", "--git-common-dir"]) {
        let common = PathBuf::from(common);
        println!("cargo:rerun-if-changed={}", common.join("packed-refs").display());
        if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={}", common.join(head_ref).display());
        }
    }
    Some(commit)
}
