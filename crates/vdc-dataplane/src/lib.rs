//! vdc-dataplane
