//! Agent tests with the fake driver: lifecycle and data-plane wiring without
//! real processes.
