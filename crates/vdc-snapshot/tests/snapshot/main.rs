//! Integration tests of vdc-snapshot: real directories under a temp dir,
//! captured, damaged, moved and restored.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod archive;
mod corruption;
mod dedup;
mod find;
mod gc;
mod metadata;
mod roundtrip;
mod stage;
mod support;
