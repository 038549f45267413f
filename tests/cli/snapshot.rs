//! What the system tests may change on this host, saved before and put back exactly after: the
//! tool's cache and config, libvirt's hook tree, and whether `/var/cache/libvirt` existed at all.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Trees saved whole (contents, modes, owners, symlinks).
pub const TREES: [&str; 3] = ["/var/cache/libvirt/virt-perf-hook", "/etc/virt-perf-hook", "/etc/libvirt/hooks"];
/// Saved by existence only: libvirtd keeps its own caches in it (QEMU capabilities), which a test
/// may create but need not restore byte for byte; one that was not there is removed again.
pub const EXISTENCE: [&str; 1] = ["/var/cache/libvirt"];
/// A tree holding more than this is not one of ours: refuse rather than copy it.
const MAX_FILE: u64 = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir { mode: u32, uid: u32, gid: u32 },
    File { mode: u32, uid: u32, gid: u32, data: Vec<u8> },
    Link(PathBuf),
    /// A socket, FIFO or device: recorded so it is not removed, never recreated.
    Other,
}

/// One tree as found; empty when its root was missing.
#[derive(Debug, Clone)]
struct Tree {
    root: PathBuf,
    nodes: BTreeMap<PathBuf, Node>,
}

impl Tree {
    fn take(root: &Path) -> Tree {
        let mut nodes = BTreeMap::new();
        walk(root, &mut nodes);
        Tree { root: root.to_path_buf(), nodes }
    }

    /// Puts the tree back; returns what it had to change, one entry each.
    fn restore(&self) -> Vec<String> {
        let now = Tree::take(&self.root);
        let mut changed = Vec::new();
        // Deepest first: what is new or of another kind goes.
        for (path, node) in now.nodes.iter().rev() {
            let keep = match (self.nodes.get(path), node) {
                (Some(Node::Dir { .. }), Node::Dir { .. }) => true,
                (Some(was), is) => std::mem::discriminant(was) == std::mem::discriminant(is),
                (None, _) => false,
            };
            if !keep {
                let gone = match node {
                    Node::Dir { .. } => std::fs::remove_dir_all(path),
                    _ => std::fs::remove_file(path),
                };
                changed.push(format!("removed {}{}", path.display(), gone.err().map(|e| format!(" (failed: {e})")).unwrap_or_default()));
            }
        }
        // Parents first: what is missing or different comes back.
        for (path, was) in &self.nodes {
            let is = std::fs::symlink_metadata(path).ok().and_then(|_| node_of(path));
            if is.as_ref() == Some(was) {
                continue;
            }
            let put = put_back(path, was, is.is_some());
            changed.push(format!("restored {}{}", path.display(), put.err().map(|e| format!(" (failed: {e})")).unwrap_or_default()));
        }
        changed
    }
}

fn walk(path: &Path, nodes: &mut BTreeMap<PathBuf, Node>) {
    let Some(node) = node_of(path) else { return };
    let is_dir = matches!(node, Node::Dir { .. });
    nodes.insert(path.to_path_buf(), node);
    if is_dir {
        let mut names: Vec<PathBuf> = std::fs::read_dir(path).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
        names.sort();
        for p in names {
            walk(&p, nodes);
        }
    }
}

fn node_of(path: &Path) -> Option<Node> {
    let m = std::fs::symlink_metadata(path).ok()?;
    let (mode, uid, gid) = (m.mode() & 0o7777, m.uid(), m.gid());
    let t = m.file_type();
    Some(if t.is_symlink() {
        Node::Link(std::fs::read_link(path).ok()?)
    } else if t.is_dir() {
        Node::Dir { mode, uid, gid }
    } else if t.is_file() {
        assert!(m.len() <= MAX_FILE, "{} is {} bytes: not something a test saves and restores", path.display(), m.len());
        Node::File { mode, uid, gid, data: std::fs::read(path).ok()? }
    } else {
        Node::Other
    })
}

fn put_back(path: &Path, was: &Node, exists: bool) -> std::io::Result<()> {
    match was {
        Node::Dir { mode, uid, gid } => {
            if !exists {
                std::fs::create_dir(path)?;
            }
            std::os::unix::fs::chown(path, Some(*uid), Some(*gid))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode))
        }
        Node::File { mode, uid, gid, data } => {
            std::fs::write(path, data)?;
            std::os::unix::fs::chown(path, Some(*uid), Some(*gid))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode))
        }
        Node::Link(target) => {
            if exists {
                std::fs::remove_file(path)?;
            }
            std::os::unix::fs::symlink(target, path)
        }
        Node::Other => Ok(()),
    }
}

/// The host paths a system test may change, as found; [`HostSnapshot::restore`] puts them back.
#[derive(Debug, Clone)]
pub struct HostSnapshot {
    trees: Vec<Tree>,
    existed: Vec<(PathBuf, bool)>,
}

impl HostSnapshot {
    pub fn take() -> HostSnapshot {
        HostSnapshot {
            trees: TREES.iter().map(|t| Tree::take(Path::new(t))).collect(),
            existed: EXISTENCE.iter().map(|p| (PathBuf::from(p), Path::new(p).symlink_metadata().is_ok())).collect(),
        }
    }

    /// Puts everything back as found and prints (on the real stderr) each thing it had to
    /// change, so a test that leaves something behind is seen even when it passes.
    pub fn restore(&self) -> Vec<String> {
        let mut changed: Vec<String> = self.trees.iter().flat_map(Tree::restore).collect();
        for (path, existed) in &self.existed {
            if !existed && path.symlink_metadata().is_ok() {
                let gone = std::fs::remove_dir_all(path);
                changed.push(format!("removed {}{}", path.display(), gone.err().map(|e| format!(" (failed: {e})")).unwrap_or_default()));
            }
        }
        for c in &changed {
            let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("host snapshot: {c}\n").as_bytes());
        }
        changed
    }
}

#[test]
fn a_tree_comes_back_exactly() {
    let dir = crate::common::TempDir::new("snapshot");
    let root = dir.path().join("t");
    std::fs::create_dir_all(root.join("a")).unwrap();
    std::fs::write(root.join("a/f"), "one").unwrap();
    std::fs::set_permissions(root.join("a/f"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink("/nonexistent", root.join("link")).unwrap();
    let saved = Tree::take(&root);
    std::fs::write(root.join("a/f"), "two").unwrap();
    std::fs::set_permissions(root.join("a/f"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::remove_file(root.join("link")).unwrap();
    std::fs::create_dir_all(root.join("new/deep")).unwrap();
    std::fs::write(root.join("new/deep/x"), "").unwrap();
    std::fs::create_dir(root.join("link")).unwrap();
    assert!(!saved.restore().is_empty());
    assert_eq!(Tree::take(&root).nodes, saved.nodes);
    assert!(saved.restore().is_empty(), "nothing left to do");
    // A tree that was missing is removed again.
    let missing = Tree::take(&dir.path().join("absent"));
    std::fs::create_dir_all(dir.path().join("absent/x")).unwrap();
    missing.restore();
    assert!(!dir.path().join("absent").exists());
}
