//! The node's data plane: stable local addresses for links, forwarding to the
//! ready instances of the target.
//!
//! A component never learns where the instances it talks to run. Each link
//! gets a listener on an address that stays the same while the app lives; the
//! data plane balances every connection (TCP) or request (HTTP) that arrives
//! there over the target's current [`Endpoint`]s, which the agent replaces
//! live with [`Backends::set`] as instances start, stop, move or fail.
//!
//! Code map:
//! - `balance`: the endpoint set of one target, power-of-two-choices on
//!   peak-EWMA latency times outstanding load, passive health (ejection
//!   after failed connects), draining of endpoints taken out of the set;
//! - `connect`: the [`Binder`] and [`Connector`] seams through which every
//!   listener socket and every upstream connection is made;
//! - `listener`: [`DataPlane`], the accept loops and graceful draining;
//! - `tcp`, `http`: the two proxies; `pool`: reused HTTP upstream connections;
//! - `stats`: atomic counters and the single point where an outcome is
//!   recorded;
//! - `workers`: the data plane's own threads, one single-threaded runtime
//!   each, apart from the control plane's.
//!
//! **Architecture invariant:** counting and balancing on the traffic path
//! take no lock and allocate nothing (the one lock there is the upstream
//! pool's, held for a push or a pop); a failure the network causes never
//! panics, it becomes an error response, a closed connection and a counter.

#![forbid(unsafe_code)]

mod balance;
mod connect;
mod error;
mod http;
mod listener;
mod pool;
mod stats;
mod tcp;
mod workers;

pub use balance::{Backends, Endpoint, EndpointStats};
pub use connect::{Binder, Connector, HostBinder, TcpConnector};
pub use error::{DataPlaneError, ErrorClass};
pub use listener::{
    is_per_connection, DataPlane, DataPlaneConfig, ListenerInfo, ListenerMeasurement, ProxySpec,
};
pub use stats::{EndpointMeasurement, ListenerStats, Measurement};
pub use vdc_spec::Protocol;
