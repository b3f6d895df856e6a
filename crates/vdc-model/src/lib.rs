//! vdc-model
