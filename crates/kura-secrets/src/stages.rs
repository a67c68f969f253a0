//! How staging labels move when a version is added (pure; the store applies the result in
//! one compare-and-set). Secrets Manager's rules: the new version takes the labels asked
//! for (`AWSCURRENT` by default), which leave every other version; when `AWSCURRENT` moves,
//! the version it left gets `AWSPREVIOUS`; versions without a label are deprecated and the
//! oldest of them go once a secret has more than [`crate::MAX_VERSIONS`].

use std::collections::BTreeMap;

use crate::{AWSCURRENT, AWSPREVIOUS, MAX_VERSIONS};

/// A version's id and labels, oldest first.
pub type Labels = Vec<(String, Vec<String>)>;

/// What adding a version changes: the existing versions' new labels (only those that
/// changed) and the versions to remove.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Moves {
    /// (version id, its labels now).
    pub relabel: Vec<(String, Vec<String>)>,
    /// Version ids to remove.
    pub remove: Vec<String>,
}

/// Add version `new` with `labels` to `existing` (oldest first).
pub fn add_version(existing: &Labels, new: &str, labels: &[String]) -> Moves {
    let mut now: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let previous_current = existing
        .iter()
        .find(|(_, l)| l.iter().any(|x| x == AWSCURRENT))
        .map(|(id, _)| id.as_str());
    let moves_current = labels.iter().any(|l| l == AWSCURRENT);
    for (id, l) in existing {
        let mut kept: Vec<String> = l.iter().filter(|x| !labels.contains(x)).cloned().collect();
        if moves_current {
            kept.retain(|x| x != AWSPREVIOUS);
            if Some(id.as_str()) == previous_current && id != new {
                kept.push(AWSPREVIOUS.to_string());
            }
        }
        now.insert(id, kept);
    }
    let mut out = Moves::default();
    for (id, l) in existing {
        if &now[id.as_str()] != l {
            out.relabel.push((id.clone(), now[id.as_str()].clone()));
        }
    }
    // Beyond the limit (counting the new version), the oldest unlabeled versions go.
    let mut excess = (existing.len() + 1).saturating_sub(MAX_VERSIONS);
    for (id, _) in existing {
        if excess == 0 {
            break;
        }
        if now[id.as_str()].is_empty() {
            out.remove.push(id.clone());
            out.relabel.retain(|(r, _)| r != id);
            excess -= 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(id: &str, l: &[&str]) -> (String, Vec<String>) {
        (id.into(), l.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn current_moves_and_previous_follows() {
        let ex = vec![v("a", &["AWSPREVIOUS"]), v("b", &["AWSCURRENT", "blue"])];
        let m = add_version(&ex, "c", &["AWSCURRENT".into()]);
        assert_eq!(m.relabel, vec![v("a", &[]), v("b", &["blue", "AWSPREVIOUS"])]);
        assert!(m.remove.is_empty());
    }

    #[test]
    fn a_custom_label_leaves_current_alone() {
        let ex = vec![v("a", &["AWSPREVIOUS"]), v("b", &["AWSCURRENT", "blue"])];
        let m = add_version(&ex, "c", &["blue".into()]);
        assert_eq!(m.relabel, vec![v("b", &["AWSCURRENT"])]);
    }

    #[test]
    fn oldest_unlabeled_versions_go_past_the_limit() {
        let mut ex: Labels = (0..MAX_VERSIONS - 1).map(|i| v(&format!("old{i}"), &[])).collect();
        ex.push(v("cur", &["AWSCURRENT"]));
        let m = add_version(&ex, "new", &["AWSCURRENT".into()]);
        assert_eq!(m.remove, vec!["old0".to_string()]);
        assert_eq!(m.relabel, vec![v("cur", &["AWSPREVIOUS"])]);
    }
}
