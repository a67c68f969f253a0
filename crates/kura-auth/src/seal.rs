//! Secrets encrypted at rest.
//!
//! A [`MasterKey`] (32 random bytes, normally kept in a file of mode 0600 in
//! the data directory) seals secrets such as IAM secret access keys before
//! they are stored. [`MasterKey::seal`] uses AES-256-GCM with a fresh random
//! 96-bit nonce and binds the result to a `context` (associated data, e.g.
//! `b"iam-secret:AKIA…"`), so a sealed value copied to another row does not
//! open there.
//!
//! Sealed format: `nonce (12 bytes) || ciphertext || tag (16 bytes)`.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit};

/// Length of a [`MasterKey`] in bytes.
pub const KEY_LEN: usize = 32;
/// Length of the nonce that starts every sealed value.
pub const NONCE_LEN: usize = 12;
/// Length of the authentication tag that ends every sealed value.
pub const TAG_LEN: usize = 16;
/// How much longer a sealed value is than its plaintext.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// The key that seals and opens secrets at rest.
///
/// Its `Debug` output never shows the key.
#[derive(Clone)]
pub struct MasterKey([u8; KEY_LEN]);

/// Why a sealed value could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// Shorter than a nonce and a tag: not a sealed value.
    #[error("sealed value is too short ({0} bytes)")]
    TooShort(usize),
    /// Authentication failed: another key or context, or altered bytes.
    #[error("sealed value does not open with this key and context")]
    Authentication,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// A new random key from the operating system's generator.
    ///
    /// # Panics
    ///
    /// If the operating system has no random source to offer, which no
    /// supported platform lacks.
    pub fn generate() -> MasterKey {
        let mut bytes = [0u8; KEY_LEN];
        getrandom::fill(&mut bytes).expect("the OS random number generator failed");
        MasterKey(bytes)
    }

    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> MasterKey {
        MasterKey(bytes)
    }

    /// Reads the key from `path`, or creates it there if the file does not
    /// exist.
    ///
    /// The file holds the key as 64 hex digits and a newline, with mode 0600
    /// (on Unix). Creation is atomic: the key is written and fsynced under a
    /// temporary name in the same directory, then linked to `path` only if
    /// nothing is there yet, so concurrent first starts agree on one key and
    /// a crash never leaves a partial key file. Missing parent directories
    /// are created.
    ///
    /// # Errors
    ///
    /// I/O errors, and [`io::ErrorKind::InvalidData`] if the file exists but
    /// does not hold a key.
    pub fn load_or_create(path: &Path) -> io::Result<MasterKey> {
        match read_key_file(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => return other,
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&dir)?;
        let key = MasterKey::generate();
        let tmp = temp_path(path)?;
        let written = write_new_file(&tmp, format!("{}\n", hex::encode(key.0)).as_bytes());
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        // A hard link fails if `path` exists, so two processes racing to
        // create the key cannot overwrite each other: the loser reads the
        // winner's key. File systems without hard links get a rename, which
        // is still atomic but lets a racing creator replace the key.
        let placed = match fs::hard_link(&tmp, path) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => fs::rename(&tmp, path),
            other => other,
        };
        let _ = fs::remove_file(&tmp);
        match placed {
            Ok(()) => {
                sync_dir(&dir)?;
                Ok(key)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read_key_file(path),
            Err(e) => Err(e),
        }
    }

    /// Encrypts `plaintext` bound to `context` (authenticated, not
    /// encrypted, not stored). Returns `nonce || ciphertext || tag`.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the OS random number generator failed");
        let ciphertext = self
            .cipher()
            .encrypt(
                &nonce.into(),
                Payload {
                    msg: plaintext,
                    aad: context,
                },
            )
            .expect("AES-GCM encrypts anything shorter than 64 GiB");
        let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    /// Decrypts a value made by [`seal`](Self::seal) with the same key and
    /// context.
    ///
    /// # Errors
    ///
    /// [`SealError::TooShort`] for input too short to be sealed,
    /// [`SealError::Authentication`] for a wrong key or context or any
    /// altered byte.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < OVERHEAD {
            return Err(SealError::TooShort(sealed.len()));
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("split at NONCE_LEN");
        self.cipher()
            .decrypt(
                &nonce.into(),
                Payload {
                    msg: ciphertext,
                    aad: context,
                },
            )
            .map_err(|_| SealError::Authentication)
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&self.0.into())
    }
}

fn read_key_file(path: &Path) -> io::Result<MasterKey> {
    let mut text = String::new();
    File::open(path)?
        .take(256)
        .read_to_string(&mut text)
        .map_err(|_| invalid_key_file(path))?;
    let mut bytes = [0u8; KEY_LEN];
    hex::decode_to_slice(text.trim(), &mut bytes).map_err(|_| invalid_key_file(path))?;
    Ok(MasterKey(bytes))
}

fn invalid_key_file(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{} does not hold a master key ({} hex digits)",
            path.display(),
            KEY_LEN * 2
        ),
    )
}

fn temp_path(path: &Path) -> io::Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a file path", path.display()),
        )
    })?;
    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix).map_err(io::Error::other)?;
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".{}.{}.tmp", std::process::id(), hex::encode(suffix)));
    Ok(path.with_file_name(tmp))
}

fn write_new_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        // The mode given to open() is narrowed by the umask, never widened;
        // set it exactly in case the umask is unusual.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(contents)?;
    file.sync_all()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let key = MasterKey::generate();
        for plaintext in [&b""[..], b"x", b"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"] {
            let sealed = key.seal(plaintext, b"iam-secret:AKIA1");
            assert_eq!(sealed.len(), plaintext.len() + OVERHEAD);
            assert_eq!(key.open(&sealed, b"iam-secret:AKIA1").unwrap(), plaintext);
        }
    }

    #[test]
    fn nonces_differ() {
        let key = MasterKey::from_bytes([7; KEY_LEN]);
        let a = key.seal(b"same", b"ctx");
        let b = key.seal(b"same", b"ctx");
        assert_ne!(a, b);
        assert_ne!(a[..NONCE_LEN], b[..NONCE_LEN]);
    }

    #[test]
    fn wrong_context_or_key_fails() {
        let key = MasterKey::generate();
        let sealed = key.seal(b"secret", b"iam-secret:AKIA1");
        assert_eq!(key.open(&sealed, b"iam-secret:AKIA2"), Err(SealError::Authentication));
        assert_eq!(key.open(&sealed, b""), Err(SealError::Authentication));
        assert_eq!(
            MasterKey::generate().open(&sealed, b"iam-secret:AKIA1"),
            Err(SealError::Authentication)
        );
    }

    #[test]
    fn tampering_fails() {
        let key = MasterKey::generate();
        let sealed = key.seal(b"secret value", b"ctx");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert_eq!(key.open(&bad, b"ctx"), Err(SealError::Authentication), "byte {i}");
        }
        assert_eq!(
            key.open(&sealed[..sealed.len() - 1], b"ctx"),
            Err(SealError::Authentication)
        );
        assert_eq!(key.open(&sealed[..OVERHEAD - 1], b"ctx"), Err(SealError::TooShort(27)));
        let mut longer = sealed.clone();
        longer.push(0);
        assert_eq!(key.open(&longer, b"ctx"), Err(SealError::Authentication));
    }

    #[test]
    fn debug_hides_the_key() {
        let key = MasterKey::from_bytes([0xab; KEY_LEN]);
        let shown = format!("{key:?} {key:#?}");
        assert!(!shown.contains("ab"), "{shown}");
        assert!(!shown.contains("171"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn load_or_create_persists_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys").join("master.key");
        let created = MasterKey::load_or_create(&path).unwrap();
        let loaded = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(created.0, loaded.0);
        let sealed = created.seal(b"s", b"c");
        assert_eq!(loaded.open(&sealed, b"c").unwrap(), b"s");
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), KEY_LEN * 2 + 1);
        assert!(text.ends_with('\n'));
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("master.key")]);
    }

    #[cfg(unix)]
    #[test]
    fn key_file_has_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        MasterKey::load_or_create(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    }

    #[test]
    fn load_or_create_rejects_a_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        fs::write(&path, "not a key\n").unwrap();
        let err = MasterKey::load_or_create(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        // The bad file is left alone, never replaced by a new key.
        assert_eq!(fs::read_to_string(&path).unwrap(), "not a key\n");
    }

    #[test]
    fn concurrent_creation_agrees_on_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let keys: Vec<MasterKey> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| MasterKey::load_or_create(&path).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|k| k.0 == keys[0].0));
    }
}
