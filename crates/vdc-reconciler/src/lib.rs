//! vdc-reconciler
