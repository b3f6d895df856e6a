//! vdc-server
