//! Matching the `Principal`/`NotPrincipal` element against the caller.

use crate::arn::{is_account_id, Arn};
use crate::context::{Principal, PrincipalKind};
use crate::Principals;

/// How a resource policy statement names the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Naming {
    /// Through the caller's account (`123456789012` or its root ARN): a
    /// delegation to the account, whose own policies must then allow (unless
    /// the caller is that account's root).
    Account,
    /// The caller itself: `*`, its ARN, its role, or its unique id.
    Direct,
}

/// What an `AWS` principal entry names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AwsEntry<'a> {
    Any,
    Account(&'a str),
    User(&'a str),
    Role {
        account: &'a str,
        name: &'a str,
    },
    Session {
        account: &'a str,
        role: &'a str,
        session: &'a str,
    },
    FederatedUser(&'a str),
    UniqueId(&'a str),
}

/// Classify an `AWS` principal entry; `None` if it is not one IAM accepts.
/// Wildcards other than a lone `*` are refused, as IAM does.
pub(crate) fn classify(entry: &str) -> Option<AwsEntry<'_>> {
    if entry == "*" {
        return Some(AwsEntry::Any);
    }
    if entry.contains(['*', '?']) {
        return None;
    }
    if is_account_id(entry) {
        return Some(AwsEntry::Account(entry));
    }
    if entry.len() >= 16
        && ["AIDA", "AROA", "AIPA", "ANPA"].iter().any(|p| entry.starts_with(p))
        && entry.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return Some(AwsEntry::UniqueId(entry));
    }
    let arn = Arn::parse(entry).ok()?;
    if !arn.region.is_empty() || !arn.has_account_id() {
        return None;
    }
    let account = arn.account;
    match arn.service {
        "iam" if arn.is_root() => Some(AwsEntry::Account(account)),
        "iam" if arn.iam_path_name("user").is_some() => Some(AwsEntry::User(entry)),
        "iam" => {
            let (_, name) = arn.iam_path_name("role")?;
            Some(AwsEntry::Role { account, name })
        }
        "sts" => {
            if let Some((role, session)) = arn.assumed_role() {
                Some(AwsEntry::Session { account, role, session })
            } else if arn
                .resource
                .strip_prefix("federated-user/")
                .is_some_and(|n| !n.is_empty())
            {
                Some(AwsEntry::FederatedUser(entry))
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Whether an `AWS` entry names the caller, and how.
fn entry_names(entry: &AwsEntry<'_>, p: &Principal) -> Option<Naming> {
    if let AwsEntry::Any = entry {
        return Some(Naming::Direct);
    }
    if p.kind == PrincipalKind::Anonymous {
        return None;
    }
    let found = match entry {
        AwsEntry::Any => true,
        AwsEntry::Account(account) => {
            if *account != p.account {
                return None;
            }
            return Some(if p.kind == PrincipalKind::Root {
                Naming::Direct
            } else {
                Naming::Account
            });
        }
        AwsEntry::User(arn) => p.kind == PrincipalKind::User && *arn == p.arn,
        AwsEntry::Role { account, name } => {
            matches!(p.kind, PrincipalKind::Role | PrincipalKind::AssumedRole)
                && *account == p.account
                && p.role_name() == Some(name)
        }
        AwsEntry::Session { account, role, session } => {
            p.kind == PrincipalKind::AssumedRole
                && *account == p.account
                && Arn::parse(&p.arn).ok().and_then(|a| a.assumed_role()) == Some((*role, *session))
        }
        AwsEntry::FederatedUser(arn) => *arn == p.arn,
        AwsEntry::UniqueId(id) => p.userid == *id || p.userid.split_once(':').is_some_and(|(head, _)| head == *id),
    };
    found.then_some(Naming::Direct)
}

/// Whether the principals name the caller, and how (the strongest naming).
pub(crate) fn names(principals: &Principals, p: &Principal) -> Option<Naming> {
    if principals.any {
        return Some(Naming::Direct);
    }
    principals
        .aws
        .iter()
        .filter_map(|e| classify(e))
        .filter_map(|e| entry_names(&e, p))
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(classify("*"), Some(AwsEntry::Any));
        assert_eq!(classify("111122223333"), Some(AwsEntry::Account("111122223333")));
        assert_eq!(
            classify("arn:aws:iam::111122223333:root"),
            Some(AwsEntry::Account("111122223333"))
        );
        assert_eq!(
            classify("arn:aws:iam::111122223333:role/path/ci"),
            Some(AwsEntry::Role {
                account: "111122223333",
                name: "ci"
            })
        );
        assert!(matches!(
            classify("arn:aws:sts::111122223333:assumed-role/ci/s1"),
            Some(AwsEntry::Session { .. })
        ));
        assert_eq!(classify("arn:aws:iam::111122223333:user/*"), None);
        assert_eq!(classify("11112222333"), None);
        assert_eq!(classify("arn:aws:ecr:us-east-1:111122223333:repository/x"), None);
        assert_eq!(classify("alice"), None);
        // A path may hold `:`; the name is the last segment.
        assert_eq!(
            classify("arn:aws:iam::111122223333:user/boss:/mallory"),
            Some(AwsEntry::User("arn:aws:iam::111122223333:user/boss:/mallory"))
        );
        assert_eq!(
            classify("arn:aws:iam::111122223333:role/a:b/ci"),
            Some(AwsEntry::Role {
                account: "111122223333",
                name: "ci"
            })
        );
        assert_eq!(classify("arn:aws:iam::111122223333:user/team/"), None);
    }

    #[test]
    fn a_user_arn_names_only_that_user() {
        // mallory (path `/boss:/`) is not boss, and boss is not mallory.
        let boss = Principal::user("111122223333", "boss");
        let mut mallory = Principal::user("111122223333", "mallory");
        mallory.arn = "arn:aws:iam::111122223333:user/boss:/mallory".into();
        let names_boss = Principals {
            aws: vec!["arn:aws:iam::111122223333:user/boss".into()],
            ..Default::default()
        };
        assert_eq!(names(&names_boss, &boss), Some(Naming::Direct));
        assert_eq!(names(&names_boss, &mallory), None);
        let names_mallory = Principals {
            aws: vec![mallory.arn.clone()],
            ..Default::default()
        };
        assert_eq!(names(&names_mallory, &mallory), Some(Naming::Direct));
        assert_eq!(names(&names_mallory, &boss), None);
    }
}
