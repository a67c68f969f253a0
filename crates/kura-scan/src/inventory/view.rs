//! The merged filesystem view of an image's layers.

use std::collections::BTreeMap;

use super::layer::{LayerIndex, Node};
use super::path::{normalize, parent};

/// How many symlinks one lookup may follow (as Linux's `MAXSYMLINKS`).
const MAX_SYMLINK_HOPS: usize = 40;

/// The merged view of an image's layer indexes, lowest layer first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FsView {
    nodes: BTreeMap<String, Node>,
}

/// Stacks layer indexes (lowest first): each layer's opaque directories and whiteouts hide lower
/// contents, then its entries replace lower ones.
pub fn merge(layers: &[LayerIndex]) -> FsView {
    let mut view = FsView::default();
    for layer in layers {
        for dir in &layer.opaque_dirs {
            view.remove_below(dir);
        }
        for path in &layer.whiteouts {
            view.nodes.remove(path);
            view.remove_below(path);
        }
        for (path, node) in &layer.nodes {
            let node = match node {
                // Hard links into lower layers take the target's node as it is now.
                Node::HardLink { target } => match view.nodes.get(target) {
                    Some(n @ Node::File { .. }) => n.clone(),
                    _ => continue,
                },
                n => n.clone(),
            };
            match (&node, view.nodes.get(path)) {
                (Node::Dir, Some(Node::Dir)) => continue,
                (Node::Dir, _) => {}
                // A non-directory replaces a lower directory and everything under it.
                _ => view.remove_below(path),
            }
            view.nodes.insert(path.clone(), node);
        }
    }
    view
}

impl FsView {
    fn remove_below(&mut self, dir: &str) {
        if dir.is_empty() {
            self.nodes.clear();
            return;
        }
        let prefix = format!("{dir}/");
        let doomed: Vec<String> = self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.nodes.remove(&k);
        }
    }

    /// Resolves symlinks in every component of `path` (absolute and relative targets, chains;
    /// `..` never climbs above the root). Returns the normalised path, or `None` on a loop or
    /// too many hops. The result need not exist.
    pub fn resolve(&self, path: &str) -> Option<String> {
        let mut pending: Vec<String> = path
            .split('/')
            .rev()
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect();
        let mut done: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(comp) = pending.pop() {
            match comp.as_str() {
                "." => continue,
                ".." => {
                    done.pop();
                    continue;
                }
                _ => {}
            }
            done.push(comp);
            let here = done.join("/");
            if let Some(Node::Symlink { target }) = self.nodes.get(&here) {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return None;
                }
                done.pop();
                if target.starts_with('/') {
                    done.clear();
                }
                pending.extend(target.split('/').rev().filter(|c| !c.is_empty()).map(String::from));
            }
        }
        Some(done.join("/"))
    }

    /// The node at `path` after resolving symlinks.
    pub fn get(&self, path: &str) -> Option<(String, &Node)> {
        let resolved = self.resolve(path)?;
        let node = self.nodes.get(&resolved)?;
        Some((resolved, node))
    }

    /// The kept text of the file at `path` (symlinks followed).
    pub fn read_text(&self, path: &str) -> Option<&str> {
        match self.get(path)? {
            (_, Node::File { text: Some(t), .. }) => Some(t),
            _ => None,
        }
    }

    /// All entries, by path (symlinks not followed).
    pub fn nodes(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.nodes.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Regular files kept directly under directory `dir` (after resolving `dir`'s symlinks),
    /// as (path, node) pairs.
    pub fn list_dir(&self, dir: &str) -> Vec<(&str, &Node)> {
        let Some(dir) = self.resolve(dir).and_then(|d| normalize(&d)) else {
            return Vec::new();
        };
        let prefix = format!("{dir}/");
        self.nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| parent(k) == dir)
            .map(|(k, v)| (k.as_str(), v))
            .collect()
    }
}
