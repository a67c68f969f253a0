//! Manifest inspection: decide a manifest's media type, check its structure,
//! and list what it references (blobs, child manifests, subject).
//!
//! Manifests are stored byte-exact; this module only reads them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::digest::Digest;

/// Largest manifest accepted, as the spec suggests (4 MiB).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// Well-known manifest media types.
pub struct MediaType;

impl MediaType {
    /// OCI image manifest.
    pub const OCI_MANIFEST: &'static str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index.
    pub const OCI_INDEX: &'static str = "application/vnd.oci.image.index.v1+json";
    /// Docker image manifest v2 schema 2.
    pub const DOCKER_MANIFEST: &'static str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker manifest list.
    pub const DOCKER_LIST: &'static str = "application/vnd.docker.distribution.manifest.list.v2+json";
    /// Docker schema 1 (refused: deprecated and unsigned here).
    pub const DOCKER_V1: &'static str = "application/vnd.docker.distribution.manifest.v1+json";
    /// Docker schema 1, signed.
    pub const DOCKER_V1_SIGNED: &'static str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
}

/// A content descriptor as it appears in manifests and in the referrers index.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Descriptor {
    /// Media type of the referenced content.
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    /// Digest of the referenced content.
    pub digest: String,
    /// Size in bytes.
    pub size: i64,
    /// Artifact type (referrers index entries, OCI 1.1 descriptors).
    #[serde(rename = "artifactType", skip_serializing_if = "Option::is_none", default)]
    pub artifact_type: Option<String>,
    /// Annotations.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub annotations: Option<BTreeMap<String, String>>,
    /// External URLs (Docker foreign layers); such blobs need not be pushed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub urls: Option<Vec<String>>,
    /// Platform of an index entry.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub platform: Option<Value>,
}

#[derive(Deserialize)]
struct RawManifest {
    #[serde(rename = "schemaVersion")]
    schema_version: Option<Value>,
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    #[serde(rename = "artifactType")]
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<BTreeMap<String, String>>,
}

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The body is not a manifest we accept.
    #[error("{0}")]
    Invalid(String),
    /// The media type is one Kura refuses (e.g. Docker schema 1).
    #[error("{0}")]
    Unsupported(String),
}

/// What Kura needs to know about a manifest to store and serve it.
#[derive(Clone, Debug, PartialEq)]
pub struct ManifestInfo {
    /// The media type it is served with.
    pub media_type: String,
    /// Its artifact type for the referrers API (artifactType, else the config's media type).
    pub artifact_type: Option<String>,
    /// The manifest it refers to, if any (OCI 1.1 `subject`).
    pub subject: Option<Digest>,
    /// Blobs it references (config and layers), excluding foreign layers.
    pub blobs: Vec<Digest>,
    /// Child manifests it references (an index's entries).
    pub children: Vec<Digest>,
    /// Its annotations, as served in the referrers index.
    pub annotations: Option<BTreeMap<String, String>>,
}

impl ManifestInfo {
    /// True for indexes and manifest lists.
    pub fn is_index(&self) -> bool {
        self.media_type == MediaType::OCI_INDEX || self.media_type == MediaType::DOCKER_LIST
    }
}

fn parse_descriptor_digest(d: &Descriptor, what: &str) -> Result<Digest, ManifestError> {
    if d.size < 0 {
        return Err(ManifestError::Invalid(format!("{what} has a negative size")));
    }
    d.digest
        .parse()
        .map_err(|e| ManifestError::Invalid(format!("{what} has an invalid digest {:?}: {e}", d.digest)))
}

/// Inspect a manifest body. `content_type` is the PUT's Content-Type header,
/// used when the body carries no `mediaType` (helm, some artifact tools).
pub fn inspect(body: &[u8], content_type: Option<&str>) -> Result<ManifestInfo, ManifestError> {
    let raw: RawManifest = serde_json::from_slice::<Value>(body)
        .map_err(|e| ManifestError::Invalid(format!("manifest is not valid JSON: {e}")))
        .and_then(|v| {
            if !v.is_object() {
                return Err(ManifestError::Invalid("manifest must be a JSON object".into()));
            }
            serde_json::from_value(v)
                .map_err(|e| ManifestError::Invalid(format!("manifest has a malformed field: {e}")))
        })?;
    let header_type = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
        .filter(|c| !c.is_empty() && c != "application/json" && c != "application/octet-stream");

    let media_type = match (&raw.media_type, &header_type) {
        (Some(body_type), _) => body_type.clone(),
        (None, Some(h)) => h.clone(),
        (None, None) => {
            if raw.manifests.is_some() {
                MediaType::OCI_INDEX.to_string()
            } else if raw.config.is_some() {
                MediaType::OCI_MANIFEST.to_string()
            } else {
                return Err(ManifestError::Invalid(
                    "cannot tell the manifest's media type: no mediaType field or Content-Type".into(),
                ));
            }
        }
    };
    if media_type == MediaType::DOCKER_V1 || media_type == MediaType::DOCKER_V1_SIGNED {
        return Err(ManifestError::Unsupported(
            "Docker image manifest schema 1 is not supported; push schema 2 or OCI".into(),
        ));
    }

    let known_image = media_type == MediaType::OCI_MANIFEST || media_type == MediaType::DOCKER_MANIFEST;
    let known_index = media_type == MediaType::OCI_INDEX || media_type == MediaType::DOCKER_LIST;
    if known_image || known_index {
        match &raw.schema_version {
            Some(Value::Number(n)) if n.as_i64() == Some(2) => {}
            _ => return Err(ManifestError::Invalid("schemaVersion must be 2".into())),
        }
    }
    if known_image && raw.manifests.is_some() {
        return Err(ManifestError::Invalid(format!(
            "an image manifest ({media_type}) cannot have a manifests field"
        )));
    }
    if known_index && (raw.config.is_some() || raw.layers.is_some()) {
        return Err(ManifestError::Invalid(format!(
            "an index ({media_type}) cannot have config or layers"
        )));
    }

    let mut blobs = Vec::new();
    let mut children = Vec::new();
    if known_image || (!known_index && raw.config.is_some()) {
        let config = raw
            .config
            .as_ref()
            .ok_or_else(|| ManifestError::Invalid("image manifest has no config descriptor".into()))?;
        blobs.push(parse_descriptor_digest(config, "config")?);
        let layers = match (&raw.layers, known_image) {
            (Some(l), _) => l.as_slice(),
            (None, true) => return Err(ManifestError::Invalid("image manifest has no layers field".into())),
            (None, false) => &[],
        };
        for (i, layer) in layers.iter().enumerate() {
            let d = parse_descriptor_digest(layer, &format!("layer {i}"))?;
            // Foreign layers (Windows base images) live elsewhere and are not pushed.
            if layer.urls.as_ref().is_some_and(|u| !u.is_empty()) {
                continue;
            }
            if !blobs.contains(&d) {
                blobs.push(d);
            }
        }
    }
    if known_index || raw.manifests.is_some() {
        let list = raw
            .manifests
            .as_ref()
            .ok_or_else(|| ManifestError::Invalid("index has no manifests field".into()))?;
        for (i, m) in list.iter().enumerate() {
            let d = parse_descriptor_digest(m, &format!("manifests[{i}]"))?;
            if !children.contains(&d) {
                children.push(d);
            }
        }
    }
    let subject = match &raw.subject {
        Some(s) => Some(parse_descriptor_digest(s, "subject")?),
        None => None,
    };
    let artifact_type = raw.artifact_type.clone().or_else(|| {
        raw.config
            .as_ref()
            .map(|c| c.media_type.clone())
            .filter(|t| !t.is_empty())
    });
    Ok(ManifestInfo {
        media_type,
        artifact_type,
        subject,
        blobs,
        children,
        annotations: raw.annotations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn image_manifest() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D1}","size":2}},"layers":[{{"mediaType":"x","digest":"{D2}","size":3}},{{"mediaType":"f","digest":"{D1}","size":2}}]}}"#,
            MediaType::OCI_MANIFEST
        );
        let info = inspect(body.as_bytes(), None).unwrap();
        assert_eq!(info.blobs.len(), 2);
        assert_eq!(
            info.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
        assert!(!info.is_index());
    }

    #[test]
    fn media_type_from_header_when_body_has_none() {
        let body = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.cncf.helm.config.v1+json","digest":"{D1}","size":2}},"layers":[]}}"#
        );
        let info = inspect(body.as_bytes(), Some("application/vnd.oci.image.manifest.v1+json")).unwrap();
        assert_eq!(info.media_type, MediaType::OCI_MANIFEST);
        assert_eq!(
            info.artifact_type.as_deref(),
            Some("application/vnd.cncf.helm.config.v1+json")
        );
    }

    #[test]
    fn index_and_subject() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{D1}","size":10}}],"subject":{{"mediaType":"x","digest":"{D2}","size":1}},"artifactType":"a/b"}}"#,
            MediaType::OCI_INDEX,
            MediaType::OCI_MANIFEST
        );
        let info = inspect(body.as_bytes(), None).unwrap();
        assert!(info.is_index());
        assert_eq!(info.children.len(), 1);
        assert_eq!(info.subject.unwrap().as_str(), D2);
        assert_eq!(info.artifact_type.as_deref(), Some("a/b"));
    }

    #[test]
    fn refuses_bad_input() {
        assert!(inspect(b"{not json", None).is_err());
        assert!(inspect(b"[]", None).is_err());
        assert!(inspect(b"{}", None).is_err());
        let v1 = r#"{"schemaVersion":1,"mediaType":"application/vnd.docker.distribution.manifest.v1+json"}"#;
        assert!(matches!(
            inspect(v1.as_bytes(), None),
            Err(ManifestError::Unsupported(_))
        ));
        let bad_digest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"x","digest":"sha256:zz","size":1}},"layers":[]}}"#,
            MediaType::OCI_MANIFEST
        );
        assert!(inspect(bad_digest.as_bytes(), None).is_err());
        let no_layers = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"x","digest":"{D1}","size":1}}}}"#,
            MediaType::OCI_MANIFEST
        );
        assert!(inspect(no_layers.as_bytes(), None).is_err());
    }
}
