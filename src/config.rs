//! Configuration save / load (feature `serde`): a snapshot of a subtree as
//! a self-describing document keyed by node names, and a document applied
//! back to a tree in one transaction.
//!
//! Payloads are type-erased in the tree, so the types that may be saved are
//! listed once in a [`Registry`]. A node is saved when it has a name
//! ([`Node::named`]) and its payload type is registered; its key is the
//! path of names from the snapshot's root, joined by `/` (unnamed nodes add
//! no segment). Each entry records the payload type, so loading into a node
//! of another type is a [`ConfigError::TypeMismatch`], not a garbled value.
//!
//! ```
//! use kame_stm::Node;
//! use kame_stm::config::{Config, ConfigError, Registry};
//!
//! let cryostat = Node::named("cryostat", ());
//! let setpoint = Node::named("setpoint", 4.2_f64);
//! let label = Node::named("label", String::from("run 7"));
//! cryostat.insert(&setpoint)?;
//! cryostat.insert(&label)?;
//! let registry = Registry::new().with::<f64>().with::<String>();
//!
//! let saved = Config::save(&cryostat.snapshot(), &registry)?;
//! let text = serde_json::to_string(&saved).unwrap(); // any serde format
//!
//! cryostat.iterate_commit(|tr| tr[&setpoint] = 1.5);
//! let doc: Config = serde_json::from_str(&text).unwrap();
//! doc.apply(&cryostat, &registry)?; // one transaction
//! assert_eq!(setpoint.read(), 4.2);
//! # Ok::<(), ConfigError>(())
//! ```

use crate::error::TreeError;
use crate::node::{Node, NodeRef};
use crate::snapshot::Snapshot;
use crate::transaction::Transaction;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::any::TypeId;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// A saved configuration: payloads by node path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// One entry per saved node, keyed by its path (`cryostat/heater`).
    pub nodes: BTreeMap<String, Entry>,
}

/// One saved payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The payload's type, as [`std::any::type_name`] spells it.
    #[serde(rename = "type")]
    pub type_name: String,
    /// The payload, as serde serialised it.
    pub value: Value,
}

type SaveFn = fn(&Snapshot, &NodeRef) -> Result<Value, serde_json::Error>;
type LoadFn = fn(&mut Transaction, &NodeRef, Value) -> Result<(), serde_json::Error>;

struct Codec {
    type_name: &'static str,
    save: SaveFn,
    load: LoadFn,
}

/// The payload types a configuration may hold.
#[derive(Default)]
pub struct Registry {
    codecs: HashMap<TypeId, Codec>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.codecs.values().map(|c| c.type_name))
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `P`: nodes with a `P` payload are saved and loaded.
    #[must_use]
    pub fn with<P>(mut self) -> Self
    where
        P: Serialize + for<'de> Deserialize<'de> + Clone + Send + Sync + 'static,
    {
        fn save<P: Serialize + 'static>(
            shot: &Snapshot,
            node: &NodeRef,
        ) -> Result<Value, serde_json::Error> {
            let node: Node<P> = node.downcast().expect("registered by its TypeId");
            serde_json::to_value(&shot[&node])
        }
        fn load<P: for<'de> Deserialize<'de> + 'static>(
            tr: &mut Transaction,
            node: &NodeRef,
            value: Value,
        ) -> Result<(), serde_json::Error> {
            let node: Node<P> = node.downcast().expect("registered by its TypeId");
            tr[&node] = serde_json::from_value(value)?;
            Ok(())
        }
        self.codecs.insert(
            TypeId::of::<P>(),
            Codec {
                type_name: std::any::type_name::<P>(),
                save: save::<P>,
                load: load::<P>,
            },
        );
        self
    }

    fn codec(&self, node: &NodeRef) -> Option<&Codec> {
        self.codecs.get(&node.link.payload_type)
    }
}

/// Why a configuration could not be saved or applied.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConfigError {
    /// No node of the tree has this path.
    UnknownName {
        /// The document's key.
        path: String,
    },
    /// The node at this path holds another payload type than the entry.
    TypeMismatch {
        /// The document's key.
        path: String,
        /// The node's payload type.
        expected: &'static str,
        /// The entry's type.
        found: String,
    },
    /// The node's payload type is not in the [`Registry`].
    Unregistered {
        /// The document's key.
        path: String,
        /// The node's payload type.
        type_name: &'static str,
    },
    /// Two saved nodes of the tree have the same path.
    DuplicatePath {
        /// The path.
        path: String,
    },
    /// The payload did not serialise, or the entry's value does not fit
    /// the type.
    Value {
        /// The document's key.
        path: String,
        /// What serde said.
        message: String,
    },
    /// The transaction applying the document failed.
    Tree(TreeError),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::UnknownName { path } => {
                write!(f, "configuration entry `{path}`: no node has this path")
            }
            ConfigError::TypeMismatch {
                path,
                expected,
                found,
            } => write!(
                f,
                "configuration entry `{path}` holds a {found}, but the node holds a {expected}"
            ),
            ConfigError::Unregistered { path, type_name } => write!(
                f,
                "configuration entry `{path}`: payload type {type_name} is not registered"
            ),
            ConfigError::DuplicatePath { path } => {
                write!(f, "two nodes have the configuration path `{path}`")
            }
            ConfigError::Value { path, message } => {
                write!(f, "configuration entry `{path}`: {message}")
            }
            ConfigError::Tree(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Tree(e) => Some(e),
            _ => None,
        }
    }
}

impl From<TreeError> for ConfigError {
    fn from(e: TreeError) -> Self {
        ConfigError::Tree(e)
    }
}

/// Every named node below (and including) `root`, by path, in tree order.
fn named_nodes(
    root: NodeRef,
    children: impl Fn(&NodeRef) -> Vec<NodeRef>,
) -> Result<Vec<(String, NodeRef)>, ConfigError> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    // Depth first with an explicit stack: trees may be deep.
    let mut stack = vec![(String::new(), root)];
    while let Some((prefix, node)) = stack.pop() {
        let path = match node.name() {
            Some(name) if prefix.is_empty() => name.to_owned(),
            Some(name) => format!("{prefix}/{name}"),
            None => prefix,
        };
        stack.extend(children(&node).into_iter().rev().map(|c| (path.clone(), c)));
        if node.name().is_some() {
            // A hard-linked node met twice on the same path is one entry.
            if !seen.insert(path.clone()) {
                if out
                    .iter()
                    .any(|(p, n): &(String, NodeRef)| *p == path && *n == node)
                {
                    continue;
                }
                return Err(ConfigError::DuplicatePath { path });
            }
            out.push((path, node));
        }
    }
    Ok(out)
}

impl Config {
    /// The payloads of every named node of `shot` whose type is in
    /// `registry` (other nodes are not saved).
    ///
    /// # Errors
    ///
    /// [`ConfigError::DuplicatePath`] when two saved nodes have the same
    /// path, [`ConfigError::Value`] when a payload does not serialise.
    pub fn save(shot: &Snapshot, registry: &Registry) -> Result<Config, ConfigError> {
        let nodes = named_nodes(shot.root(), |n| {
            shot.children(n).into_iter().flatten().collect()
        })?;
        let mut out = BTreeMap::new();
        for (path, node) in nodes {
            let Some(codec) = registry.codec(&node) else {
                continue;
            };
            let value = (codec.save)(shot, &node).map_err(|e| ConfigError::Value {
                path: path.clone(),
                message: e.to_string(),
            })?;
            out.insert(
                path,
                Entry {
                    type_name: codec.type_name.to_owned(),
                    value,
                },
            );
        }
        Ok(Config { nodes: out })
    }

    /// Writes every entry into the node of `root`'s tree with that path, in
    /// one transaction: all of them become visible together, or none. Nodes
    /// without an entry keep their payloads. Returns the committed state.
    ///
    /// # Errors
    ///
    /// [`ConfigError::UnknownName`] for a path no node has,
    /// [`ConfigError::TypeMismatch`] when the node holds another type,
    /// [`ConfigError::Unregistered`] when the node's type is not in
    /// `registry`, [`ConfigError::Value`] when the value does not fit the
    /// type. Nothing is committed then.
    pub fn apply<P: 'static>(
        &self,
        root: &Node<P>,
        registry: &Registry,
    ) -> Result<Snapshot, ConfigError> {
        root.try_iterate_commit(|tr| {
            let nodes = named_nodes(root.to_ref(), |n| {
                tr.children(n).into_iter().flatten().collect()
            })?;
            let by_path: HashMap<&str, &NodeRef> =
                nodes.iter().map(|(p, n)| (p.as_str(), n)).collect();
            for (path, entry) in &self.nodes {
                let node = *by_path
                    .get(path.as_str())
                    .ok_or_else(|| ConfigError::UnknownName { path: path.clone() })?;
                let codec = registry
                    .codec(node)
                    .ok_or_else(|| ConfigError::Unregistered {
                        path: path.clone(),
                        type_name: node.type_name(),
                    })?;
                if codec.type_name != entry.type_name {
                    return Err(ConfigError::TypeMismatch {
                        path: path.clone(),
                        expected: codec.type_name,
                        found: entry.type_name.clone(),
                    });
                }
                (codec.load)(tr, node, entry.value.clone()).map_err(|e| ConfigError::Value {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            }
            Ok(())
        })
    }
}
