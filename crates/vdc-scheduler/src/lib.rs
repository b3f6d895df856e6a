//! vdc-scheduler
