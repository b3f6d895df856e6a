//! OCI images on a node: what a spec's `image` names ([`ImageRef`]), a
//! content-addressed store of blobs with each layer unpacked once
//! ([`Store`]), imports from OCI image layouts and their archives
//! ([`layout`]), and pulls from OCI distribution registries. A container's
//! root filesystem is an overlay of its image's unpacked layers
//! ([`Store::lower_dirs`]).

mod error;
pub mod layout;
pub mod pull;
pub mod reference;
pub mod store;
pub mod unpack;

pub use error::ImageError;
pub use reference::{ImageRef, RefError, Reference};
pub use store::{ImageRecord, RunConfig, Store};
