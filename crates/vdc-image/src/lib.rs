//! OCI images on a node: what a spec's `image` names ([`ImageRef`]), a
//! content-addressed store of blobs with each layer unpacked once
//! ([`Store`]), imports from OCI image layouts and their archives
//! ([`layout`]), and pulls from OCI distribution registries. A container's
//! root filesystem is an overlay of its image's unpacked layers
//! ([`Store::lower_dirs`]), read before it is mounted with [`rootfs`].

pub mod reference;
pub use reference::{ImageRef, RefError, Reference};

#[cfg(feature = "node")]
mod error;
#[cfg(feature = "node")]
pub mod layout;
#[cfg(feature = "node")]
pub mod pull;
#[cfg(feature = "node")]
pub mod rootfs;
#[cfg(feature = "node")]
pub mod store;
#[cfg(feature = "node")]
pub mod unpack;

#[cfg(feature = "node")]
pub use error::ImageError;
#[cfg(feature = "node")]
pub use store::{ImageRecord, RunConfig, Store};
