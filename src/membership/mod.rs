//! Membership: members introduce the peers they add to the rest of the
//! mesh, and spread removals, through the agents' tunnel-only protocol.
//! The threat model is in docs/membership.md.
//!
//! - `record`: signed introduction and removal records, their canonical
//!   encoding and wire form; the signing key derived from the node's key.
//! - `book`: what a node knows (pinned signing keys, the latest event per
//!   member, the peers its config had); pure.
//! - The config side (policy lines, adding and removing introduced peers)
//!   is planned in `plan::membership` and committed like any change.

pub mod book;
pub mod record;
