//! Content digests (`algorithm:hex`), as the OCI image spec defines them.

use std::fmt;
use std::str::FromStr;

use sha2::digest::common::hazmat::SerializableState;
use sha2::{Digest as _, Sha256, Sha512};

/// A digest algorithm Kura can verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// SHA-256, the default everywhere.
    Sha256,
    /// SHA-512, allowed by the spec for blobs and manifests.
    Sha512,
}

impl Algorithm {
    /// The algorithm's name as it appears in a digest string.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// Why a digest string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    /// Not of the form `algorithm:encoded`.
    #[error("digest is not of the form algorithm:encoded")]
    Malformed,
    /// The algorithm is well-formed but not one Kura verifies.
    #[error("unsupported digest algorithm {0:?}")]
    Unsupported(String),
    /// The encoded part has the wrong length or characters.
    #[error("digest encoding is invalid for its algorithm")]
    BadEncoding,
}

/// A validated digest: the algorithm and the lowercase hex encoding.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// The algorithm part.
    pub fn algorithm(&self) -> Algorithm {
        if self.0.starts_with("sha512:") {
            Algorithm::Sha512
        } else {
            Algorithm::Sha256
        }
    }

    /// The hex part.
    pub fn hex(&self) -> &str {
        &self.0[self.0.find(':').map(|i| i + 1).unwrap_or(0)..]
    }

    /// The full `algorithm:hex` string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Digest of an in-memory byte slice (manifests, small bodies).
    pub fn of(algorithm: Algorithm, data: &[u8]) -> Digest {
        let mut h = Hasher::new(algorithm);
        h.update(data);
        h.finish()
    }

    /// SHA-256 digest of a byte slice.
    pub fn sha256(data: &[u8]) -> Digest {
        Self::of(Algorithm::Sha256, data)
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (alg, enc) = s.split_once(':').ok_or(DigestError::Malformed)?;
        // The image spec's grammar for the algorithm component.
        let alg_ok = !alg.is_empty()
            && alg
                .split(['+', '.', '_', '-'])
                .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        if !alg_ok || enc.is_empty() {
            return Err(DigestError::Malformed);
        }
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            other => {
                if enc.bytes().all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b)) {
                    return Err(DigestError::Unsupported(other.to_string()));
                }
                return Err(DigestError::Malformed);
            }
        };
        if enc.len() != algorithm.hex_len() || !enc.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(DigestError::BadEncoding);
        }
        Ok(Digest(s.to_string()))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An incremental hasher whose state can be saved and restored, so an upload
/// can be continued later (by any node) without re-reading the bytes so far.
#[derive(Clone)]
pub enum Hasher {
    /// SHA-256 state.
    Sha256(Sha256),
    /// SHA-512 state.
    Sha512(Sha512),
}

impl Hasher {
    /// A fresh hasher.
    pub fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }

    /// The algorithm this hasher computes.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// Feed bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    /// The digest of everything fed so far (the hasher is left untouched).
    pub fn finish(&self) -> Digest {
        let (alg, hex) = match self {
            Hasher::Sha256(h) => ("sha256", hex::encode(h.clone().finalize())),
            Hasher::Sha512(h) => ("sha512", hex::encode(h.clone().finalize())),
        };
        Digest(format!("{alg}:{hex}"))
    }

    /// Serialize the internal state (about a hundred bytes), prefixed by the
    /// algorithm tag.
    pub fn save(&self) -> Vec<u8> {
        let (tag, state): (u8, Vec<u8>) = match self {
            Hasher::Sha256(h) => (1, h.serialize().to_vec()),
            Hasher::Sha512(h) => (2, h.serialize().to_vec()),
        };
        let mut out = Vec::with_capacity(state.len() + 1);
        out.push(tag);
        out.extend_from_slice(&state);
        out
    }

    /// Restore a state written by [`Hasher::save`].
    pub fn restore(bytes: &[u8]) -> Option<Self> {
        let (tag, state) = bytes.split_first()?;
        match tag {
            1 => Sha256::deserialize(state.try_into().ok()?).ok().map(Hasher::Sha256),
            2 => Sha512::deserialize(state.try_into().ok()?).ok().map(Hasher::Sha512),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let d: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            .parse()
            .unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d, Digest::sha256(b""));
        assert_eq!("sha256:abc".parse::<Digest>(), Err(DigestError::BadEncoding));
        assert_eq!("nocolon".parse::<Digest>(), Err(DigestError::Malformed));
        assert!(matches!("md5:abcd".parse::<Digest>(), Err(DigestError::Unsupported(_))));
        assert_eq!(
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855".parse::<Digest>(),
            Err(DigestError::BadEncoding)
        );
        let s512 = Digest::of(Algorithm::Sha512, b"abc");
        assert_eq!(s512.as_str().parse::<Digest>().unwrap().algorithm(), Algorithm::Sha512);
    }

    #[test]
    fn hasher_state_round_trips() {
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let mut a = Hasher::new(alg);
            a.update(b"hello ");
            let saved = a.save();
            let mut b = Hasher::restore(&saved).unwrap();
            a.update(b"world");
            b.update(b"world");
            assert_eq!(a.finish(), b.finish());
            assert_eq!(a.finish(), Digest::of(alg, b"hello world"));
        }
        assert!(Hasher::restore(&[9, 1, 2]).is_none());
    }
}
