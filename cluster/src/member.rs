//! Who is in the cluster: node names, incarnations and the membership
//! record each node announces.
//!
//! A node's *name* (`PARKME_NODE_ID`, e.g. a StatefulSet pod name) is
//! stable across restarts and is what placement hashes, so a restarted
//! node gets its facilities back. Its *incarnation* is new at every process
//! start, so a restarted node is never mistaken for its old self: a lease
//! held by `node-a#17` is not held by `node-a#18`.
//!
//! This module must never read a clock or the network: incarnations are
//! chosen by the caller.

use std::fmt;
use std::str::FromStr;

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::error::ClusterError;

/// A node's stable name: `[A-Za-z0-9._-]{1,64}`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Encode, Decode)]
#[serde(try_from = "String", into = "String")]
pub struct NodeName(String);

impl NodeName {
    pub fn parse(value: &str) -> Result<Self, ClusterError> {
        let ok = !value.is_empty()
            && value.len() <= 64
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !ok {
            return Err(ClusterError::InvalidNodeName(value.to_owned()));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for NodeName {
    type Error = ClusterError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<NodeName> for String {
    fn from(name: NodeName) -> String {
        name.0
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeName({:?})", self.0)
    }
}

/// One process lifetime of a node, unique per start (the caller picks it,
/// e.g. start time in ms mixed with randomness).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Encode, Decode,
)]
#[serde(transparent)]
pub struct Incarnation(pub u64);

/// A node process: its stable name and this start's incarnation. Written
/// `name#incarnation` on the wire and in Redis.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Encode, Decode)]
pub struct NodeId {
    pub name: NodeName,
    pub incarnation: Incarnation,
}

impl NodeId {
    pub fn new(name: NodeName, incarnation: Incarnation) -> Self {
        Self { name, incarnation }
    }

    /// Another process of the same node (a restart): its leases are ours
    /// to take, since names are unique and that process is gone.
    pub fn is_former_self_of(&self, other: &NodeId) -> bool {
        self.name == other.name && self.incarnation != other.incarnation
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.name, self.incarnation.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

impl FromStr for NodeId {
    type Err = ClusterError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ClusterError::InvalidNodeId(s.to_owned());
        let (name, incarnation) = s.rsplit_once('#').ok_or_else(bad)?;
        let incarnation = incarnation.parse::<u64>().map_err(|_| bad())?;
        Ok(Self {
            name: NodeName::parse(name).map_err(|_| bad())?,
            incarnation: Incarnation(incarnation),
        })
    }
}

/// Whether a node takes new facilities.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Encode, Decode,
)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    /// Serving and taking its share.
    Up,
    /// Draining (SIGTERM): handing its facilities away, taking none.
    Leaving,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Up => "up",
            NodeStatus::Leaving => "leaving",
        }
    }
}

/// What a node announces about itself (with a TTL, renewed every tick).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Member {
    pub id: NodeId,
    /// Base URL other nodes use to reach it (`PARKME_ADVERTISE_URL`).
    pub url: String,
    pub status: NodeStatus,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_round_trip_through_their_text_form() {
        let id = NodeId::new(NodeName::parse("parkme-0").expect("name"), Incarnation(42));
        assert_eq!(id.to_string(), "parkme-0#42");
        assert_eq!("parkme-0#42".parse::<NodeId>().expect("parse"), id);
        assert!("parkme-0".parse::<NodeId>().is_err());
        assert!("a b#1".parse::<NodeId>().is_err());
        assert!("a#x".parse::<NodeId>().is_err());
    }

    #[test]
    fn a_restarted_node_is_not_its_old_self() {
        let name = NodeName::parse("n1").expect("name");
        let old = NodeId::new(name.clone(), Incarnation(1));
        let new = NodeId::new(name, Incarnation(2));
        assert_ne!(old, new);
        assert!(new.is_former_self_of(&old));
        assert!(!new.is_former_self_of(&new));
    }
}
