//! Matching the `Principal`/`NotPrincipal` element against the caller.

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

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
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
    let parts: Vec<&str> = entry.splitn(6, ':').collect();
    let [arn, partition, service, region, account, resource] = parts.as_slice() else {
        return None;
    };
    if *arn != "arn" || partition.is_empty() || !region.is_empty() || !is_account_id(account) {
        return None;
    }
    match *service {
        "iam" if *resource == "root" => Some(AwsEntry::Account(account)),
        "iam" if resource.starts_with("user/") && resource.len() > 5 => Some(AwsEntry::User(entry)),
        "iam" if resource.starts_with("role/") && resource.len() > 5 => {
            let name = resource.rsplit('/').next().filter(|n| !n.is_empty())?;
            Some(AwsEntry::Role { account, name })
        }
        "sts" => {
            if let Some(rest) = resource.strip_prefix("assumed-role/") {
                let (role, session) = rest.split_once('/')?;
                if role.is_empty() || session.is_empty() || session.contains('/') {
                    return None;
                }
                Some(AwsEntry::Session { account, role, session })
            } else if resource.strip_prefix("federated-user/").is_some_and(|n| !n.is_empty()) {
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
                && p.arn.ends_with(&format!(":assumed-role/{role}/{session}"))
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
    }
}
