//! vdc-driver
