//! The cluster crate's one error type: malformed identities read from
//! configuration or from Redis. Every variant is permanent.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    #[error("node name {0:?} must be 1 to 64 of letters, digits, '.', '_' and '-'")]
    InvalidNodeName(String),
    #[error("node id {0:?} is not of the form name#incarnation")]
    InvalidNodeId(String),
}
