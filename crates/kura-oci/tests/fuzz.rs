//! Fuzz target `manifest`: `kura_oci::manifest::inspect`, which parses every
//! manifest body a client PUTs. Properties: it never panics, whatever the
//! bytes, the JSON tree or the mutation of a valid manifest; and a valid
//! manifest built by the generator inspects to exactly the references it was
//! built with (config and layers minus foreign layers, deduplicated, in
//! order; an index's children; the subject).
//!
//! `cargo test --release -p kura-oci --test fuzz` runs the quick CI cases;
//! `KURA_FUZZ_SECS=600` runs each target for ten minutes.

#[path = "support/fuzz_runner.rs"]
mod fuzz_runner;

use fuzz_runner::fuzz;
use kura_oci::manifest::{inspect, MediaType};
use proptest::prelude::*;
use serde_json::{json, Value};

const WORDS: &[&str] = &[
    "schemaVersion",
    "mediaType",
    "config",
    "layers",
    "manifests",
    "subject",
    "artifactType",
    "annotations",
    "digest",
    "size",
    "urls",
    "platform",
    MediaType::OCI_MANIFEST,
    MediaType::OCI_INDEX,
    MediaType::DOCKER_MANIFEST,
    MediaType::DOCKER_LIST,
    MediaType::DOCKER_V1,
    MediaType::DOCKER_V1_SIGNED,
    "application/json",
    "sha256:",
    "sha512:",
    "sha256:1111111111111111111111111111111111111111111111111111111111111111",
    "",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(WORDS).prop_map(str::to_string),
        1 => ".{0,12}",
    ]
}

/// JSON trees whose keys and strings are mostly the manifest's own words.
fn json_tree() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        word().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((word(), inner), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn digest() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-f]{64}".prop_map(|h| format!("sha256:{h}")),
        "[0-9a-f]{128}".prop_map(|h| format!("sha512:{h}")),
    ]
}

fn descriptor(media: &'static str) -> impl Strategy<Value = Value> {
    (digest(), 0i64..1 << 40).prop_map(move |(d, size)| json!({"mediaType": media, "digest": d, "size": size}))
}

/// A layer, foreign (with `urls`) or not.
fn layer() -> impl Strategy<Value = (Value, bool)> {
    (descriptor("application/vnd.oci.image.layer.v1.tar+gzip"), any::<bool>()).prop_map(|(mut d, foreign)| {
        if foreign {
            d["urls"] = json!(["https://example.com/layer"]);
        }
        (d, foreign)
    })
}

/// A valid image manifest or index, with what `inspect` must find in it.
#[derive(Debug, Clone)]
struct Built {
    body: Value,
    blobs: Vec<String>,
    children: Vec<String>,
    subject: Option<String>,
    index: bool,
}

fn image() -> impl Strategy<Value = Built> {
    (
        prop_oneof![Just(MediaType::OCI_MANIFEST), Just(MediaType::DOCKER_MANIFEST)],
        descriptor("application/vnd.oci.image.config.v1+json"),
        proptest::collection::vec(layer(), 0..6),
        proptest::option::of(descriptor(MediaType::OCI_MANIFEST)),
        // Repeat a layer: `inspect` lists each blob once.
        any::<bool>(),
    )
        .prop_map(|(mt, config, mut layers, subject, repeat)| {
            if repeat {
                if let Some(first) = layers.first().cloned() {
                    layers.push(first);
                }
            }
            let mut blobs = vec![config["digest"].as_str().unwrap().to_string()];
            for (l, foreign) in &layers {
                let d = l["digest"].as_str().unwrap().to_string();
                if !foreign && !blobs.contains(&d) {
                    blobs.push(d);
                }
            }
            let mut body = json!({
                "schemaVersion": 2, "mediaType": mt, "config": config,
                "layers": layers.iter().map(|(l, _)| l.clone()).collect::<Vec<_>>(),
            });
            let subject_digest = subject.as_ref().map(|s| s["digest"].as_str().unwrap().to_string());
            if let Some(s) = subject {
                body["subject"] = s;
            }
            Built {
                body,
                blobs,
                children: vec![],
                subject: subject_digest,
                index: false,
            }
        })
}

fn index() -> impl Strategy<Value = Built> {
    (
        prop_oneof![Just(MediaType::OCI_INDEX), Just(MediaType::DOCKER_LIST)],
        proptest::collection::vec(descriptor(MediaType::OCI_MANIFEST), 0..6),
    )
        .prop_map(|(mt, manifests)| {
            let mut children: Vec<String> = Vec::new();
            for m in &manifests {
                let d = m["digest"].as_str().unwrap().to_string();
                if !children.contains(&d) {
                    children.push(d);
                }
            }
            Built {
                body: json!({"schemaVersion": 2, "mediaType": mt, "manifests": manifests}),
                blobs: vec![],
                children,
                subject: None,
                index: true,
            }
        })
}

fn built() -> impl Strategy<Value = Built> {
    prop_oneof![image(), index()]
}

/// One mutation of a JSON value: drop, replace or retype a member anywhere.
#[derive(Debug, Clone)]
enum Mutation {
    Remove(usize),
    Replace(usize, Value),
    Insert(String, Value),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Remove),
        (any::<usize>(), json_tree()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        (word(), json_tree()).prop_map(|(k, v)| Mutation::Insert(k, v)),
    ]
}

/// JSON pointers to every object in the tree, depth first.
fn objects(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                objects(c, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out);
            }
            out.push(at);
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                objects(c, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

fn mutate(mut v: Value, muts: &[Mutation]) -> Value {
    for m in muts {
        let mut objs = Vec::new();
        objects(&v, String::new(), &mut objs);
        let Some(obj) = (match m {
            Mutation::Remove(i) | Mutation::Replace(i, _) => objs.get(i % objs.len().max(1)),
            Mutation::Insert(k, _) => objs.get(k.len() % objs.len().max(1)),
        })
        .and_then(|p| v.pointer_mut(p))
        .and_then(Value::as_object_mut) else {
            break;
        };
        match m {
            Mutation::Remove(i) if !obj.is_empty() => {
                let k = obj.keys().nth(i % obj.len()).cloned().unwrap_or_default();
                obj.remove(&k);
            }
            Mutation::Replace(i, new) if !obj.is_empty() => {
                let k = obj.keys().nth(i % obj.len()).cloned().unwrap_or_default();
                obj.insert(k, new.clone());
            }
            Mutation::Insert(k, new) => {
                obj.insert(k.clone(), new.clone());
            }
            _ => {}
        }
    }
    v
}

fn content_type() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(prop_oneof![
        proptest::sample::select(WORDS).prop_map(str::to_string),
        ".{0,40}",
    ])
}

#[test]
fn manifest_arbitrary_bytes() {
    fuzz(
        "manifest/bytes",
        1000,
        (proptest::collection::vec(any::<u8>(), 0..512), content_type()),
        |(bytes, ct)| {
            let _ = inspect(&bytes, ct.as_deref());
            Ok(())
        },
    );
}

#[test]
fn manifest_json_trees() {
    fuzz("manifest/json", 1000, (json_tree(), content_type()), |(tree, ct)| {
        let _ = inspect(tree.to_string().as_bytes(), ct.as_deref());
        Ok(())
    });
}

#[test]
fn manifest_valid_inspects_to_what_was_built() {
    fuzz("manifest/valid", 500, built(), |b| {
        let info = inspect(b.body.to_string().as_bytes(), None).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let blobs: Vec<String> = info.blobs.iter().map(|d| d.as_str().to_string()).collect();
        let children: Vec<String> = info.children.iter().map(|d| d.as_str().to_string()).collect();
        prop_assert_eq!(blobs, b.blobs);
        prop_assert_eq!(children, b.children);
        prop_assert_eq!(info.subject.as_ref().map(|d| d.as_str().to_string()), b.subject);
        prop_assert_eq!(info.is_index(), b.index);
        Ok(())
    });
}

#[test]
fn manifest_mutations_never_panic() {
    fuzz(
        "manifest/mutated",
        1000,
        (built(), proptest::collection::vec(mutation(), 1..4), content_type()),
        |(b, muts, ct)| {
            let body = mutate(b.body, &muts).to_string();
            let _ = inspect(body.as_bytes(), ct.as_deref());
            // Byte-level damage too: truncate the text anywhere.
            let cut = body.len() / 2;
            let _ = inspect(&body.as_bytes()[..cut], ct.as_deref());
            Ok(())
        },
    );
}
