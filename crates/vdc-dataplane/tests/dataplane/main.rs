//! End-to-end tests of the data plane on real sockets: TCP and HTTP
//! proxying, balancing, passive health, live reconfiguration, listeners.

mod http;
mod listener;
mod support;
mod tcp;
