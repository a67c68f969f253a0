//! The one ARN parser: `arn:partition:service:region:account:resource`.
//!
//! An ARN has exactly six `:`-separated components, and the last one, the
//! resource, may itself contain `:` and `/` (an IAM path such as `/boss:/`
//! may hold any printable character, and so may an S3 key). So an ARN is cut
//! at its first five colons and never at any other: splitting on every `:`
//! or taking the last `/`-segment of the whole text reads a different
//! principal out of `arn:aws:iam::A:user/boss:/mallory` than the one it
//! names. Every place that reads an ARN goes through [`Arn::parse`].
//!
//! The parser follows the grammar only; it does not decode `%` escapes,
//! fold case or check what a component means (a 12-digit account, a known
//! service): callers ask for what they need, e.g. [`Arn::iam_path_name`].

use std::fmt;

/// An ARN cut into its six components (borrowed from the text).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Arn<'a> {
    /// `aws`, `aws-cn`, … (never empty).
    pub partition: &'a str,
    /// `iam`, `sts`, `ecr`, … (never empty).
    pub service: &'a str,
    /// The region (empty for global services such as IAM).
    pub region: &'a str,
    /// The account (12 digits, `aws` for AWS managed policies, or empty).
    pub account: &'a str,
    /// Everything after the fifth `:`, as is (never empty).
    pub resource: &'a str,
}

/// Why a text is not an ARN.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an ARN (arn:partition:service:region:account:resource)")]
pub struct ArnError(pub String);

impl<'a> Arn<'a> {
    /// Parse an ARN: the literal `arn` (lower case, as AWS writes it), then
    /// partition, service, region, account and resource, cut at the first
    /// five `:`. Partition, service and resource must not be empty.
    pub fn parse(text: &'a str) -> Result<Arn<'a>, ArnError> {
        let bad = || ArnError(text.to_string());
        let mut parts = text.splitn(6, ':');
        let (Some("arn"), Some(partition), Some(service), Some(region), Some(account), Some(resource)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(bad());
        };
        if partition.is_empty() || service.is_empty() || resource.is_empty() {
            return Err(bad());
        }
        Ok(Arn {
            partition,
            service,
            region,
            account,
            resource,
        })
    }

    /// Whether the account component is a 12-digit account id.
    pub fn has_account_id(&self) -> bool {
        is_account_id(self.account)
    }

    /// For a resource `<kind>/<path><name>` (IAM users, groups, roles and
    /// policies, e.g. `user/boss:/mallory`): the path (`/` when there is
    /// none; it starts and ends with `/` and may hold `:`) and the name (the
    /// text after the last `/`, never empty). `None` if the resource is of
    /// another kind.
    pub fn iam_path_name(&self, kind: &str) -> Option<(&'a str, &'a str)> {
        let rest = self.resource.strip_prefix(kind)?;
        if !rest.starts_with('/') {
            return None;
        }
        let cut = rest.rfind('/')?;
        let (path, name) = (&rest[..=cut], &rest[cut + 1..]);
        (!name.is_empty()).then_some((path, name))
    }

    /// For an STS session `assumed-role/<role>/<session>`: the role's name
    /// and the session name (neither empty; a session name has no `/`).
    pub fn assumed_role(&self) -> Option<(&'a str, &'a str)> {
        if self.service != "sts" {
            return None;
        }
        let rest = self.resource.strip_prefix("assumed-role/")?;
        let (role, session) = rest.split_once('/')?;
        (!role.is_empty() && !session.is_empty() && !session.contains('/')).then_some((role, session))
    }

    /// Whether this is an account's root (`arn:<p>:iam::<account>:root`).
    pub fn is_root(&self) -> bool {
        self.service == "iam" && self.resource == "root" && self.has_account_id()
    }
}

impl fmt::Display for Arn<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:{}:{}:{}:{}:{}",
            self.partition, self.service, self.region, self.account, self.resource
        )
    }
}

/// Whether `s` is a 12-digit account id.
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_six_components() {
        let a = Arn::parse("arn:aws:ecr:us-east-1:123456789012:repository/team/app").unwrap();
        assert_eq!(
            (a.partition, a.service, a.region, a.account, a.resource),
            ("aws", "ecr", "us-east-1", "123456789012", "repository/team/app")
        );
        assert!(a.has_account_id());
        assert_eq!(a.to_string(), "arn:aws:ecr:us-east-1:123456789012:repository/team/app");
        let managed = Arn::parse("arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly").unwrap();
        assert_eq!(managed.account, "aws");
        assert!(!managed.has_account_id());
        let s3 = Arn::parse("arn:aws:s3:::bucket/a:b/c").unwrap();
        assert_eq!((s3.region, s3.account, s3.resource), ("", "", "bucket/a:b/c"));
    }

    #[test]
    fn a_colon_in_a_path_stays_in_the_resource() {
        // The attack of issue 16: user `mallory` created with path `/boss:/`.
        let a = Arn::parse("arn:aws:iam::123456789012:user/boss:/mallory").unwrap();
        assert_eq!(a.account, "123456789012");
        assert_eq!(a.resource, "user/boss:/mallory");
        assert_eq!(a.iam_path_name("user"), Some(("/boss:/", "mallory")));
        // More colons and slashes, and a path that looks like an ARN.
        let a = Arn::parse("arn:aws:iam::123456789012:user/a:b:c/arn:aws:iam::999999999999:user/x/eve").unwrap();
        assert_eq!(a.account, "123456789012");
        assert_eq!(
            a.iam_path_name("user"),
            Some(("/a:b:c/arn:aws:iam::999999999999:user/x/", "eve"))
        );
        assert_eq!(a.iam_path_name("role"), None);
        let root_looking = Arn::parse("arn:aws:iam::123456789012:user/:root/x").unwrap();
        assert!(!root_looking.is_root());
        assert_eq!(root_looking.iam_path_name("user"), Some(("/:root/", "x")));
        assert_eq!(
            Arn::parse("arn:aws:iam::123456789012:role/svc/deploy")
                .unwrap()
                .iam_path_name("role"),
            Some(("/svc/", "deploy"))
        );
        assert_eq!(
            Arn::parse("arn:aws:iam::123456789012:user/alice")
                .unwrap()
                .iam_path_name("user"),
            Some(("/", "alice"))
        );
        // A kind is a whole segment, and a name is never empty.
        assert_eq!(
            Arn::parse("arn:aws:iam::123456789012:users/alice")
                .unwrap()
                .iam_path_name("user"),
            None
        );
        assert_eq!(
            Arn::parse("arn:aws:iam::123456789012:user/team/")
                .unwrap()
                .iam_path_name("user"),
            None
        );
    }

    #[test]
    fn percent_unicode_and_case_are_taken_literally() {
        let a = Arn::parse("arn:aws:iam::123456789012:user/%2Fboss%3A/mallory").unwrap();
        assert_eq!(a.iam_path_name("user"), Some(("/%2Fboss%3A/", "mallory")));
        let a = Arn::parse("arn:aws:iam::123456789012:user/ünï:cødé/名前").unwrap();
        assert_eq!(a.iam_path_name("user"), Some(("/ünï:cødé/", "名前")));
        // A full-width colon is not a separator.
        let a = Arn::parse("arn:aws:iam::123456789012:user/boss：/mallory").unwrap();
        assert_eq!(a.iam_path_name("user"), Some(("/boss：/", "mallory")));
        // `arn` is lower case; other components keep their case.
        assert!(Arn::parse("ARN:aws:iam::123456789012:root").is_err());
        assert!(Arn::parse("Arn:aws:iam::123456789012:root").is_err());
        let a = Arn::parse("arn:AWS:IAM::123456789012:User/Alice").unwrap();
        assert_eq!((a.partition, a.service), ("AWS", "IAM"));
        assert_eq!(a.iam_path_name("user"), None);
        assert_eq!(a.iam_path_name("User"), Some(("/", "Alice")));
        assert!(!a.is_root());
        // A non-ASCII digit is not an account digit.
        assert!(!Arn::parse("arn:aws:iam::١٢٣٤٥٦٧٨٩٠١٢:root").unwrap().is_root());
    }

    #[test]
    fn roots_and_sessions() {
        assert!(Arn::parse("arn:aws:iam::123456789012:root").unwrap().is_root());
        assert!(!Arn::parse("arn:aws:iam::1234:root").unwrap().is_root());
        assert!(!Arn::parse("arn:aws:sts::123456789012:root").unwrap().is_root());
        let s = Arn::parse("arn:aws:sts::123456789012:assumed-role/ci/build:1").unwrap();
        assert_eq!(s.assumed_role(), Some(("ci", "build:1")));
        assert_eq!(
            Arn::parse("arn:aws:sts::123456789012:assumed-role/ci/a/b")
                .unwrap()
                .assumed_role(),
            None
        );
        assert_eq!(
            Arn::parse("arn:aws:iam::123456789012:assumed-role/ci/s")
                .unwrap()
                .assumed_role(),
            None
        );
        assert_eq!(
            Arn::parse("arn:aws:sts::123456789012:assumed-role//s")
                .unwrap()
                .assumed_role(),
            None
        );
    }

    #[test]
    fn not_arns() {
        for bad in [
            "",
            "arn",
            "arn:aws",
            "arn:aws:iam::123456789012",
            "arn:aws:iam::123456789012:",
            "arn::iam::123456789012:root",
            "arn:aws:::123456789012:root",
            "urn:aws:iam::123456789012:root",
            " arn:aws:iam::123456789012:root",
            "123456789012",
            "*",
        ] {
            assert!(Arn::parse(bad).is_err(), "{bad:?}");
        }
    }
}
