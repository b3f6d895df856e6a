//! Identifiers: nodes, instances, and the locators where instances listen.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use vdc_spec::{AppName, ComponentName};

/// The name of a node in the pool.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub String);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One running copy of a component: `app/component/index`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InstanceId {
    pub app: AppName,
    pub component: ComponentName,
    pub index: u32,
}

impl InstanceId {
    pub fn new(app: AppName, component: ComponentName, index: u32) -> Self {
        Self {
            app,
            component,
            index,
        }
    }

    /// A file- and cgroup-safe form: `app.component.index`.
    pub fn slug(&self) -> String {
        format!("{}.{}.{}", self.app, self.component, self.index)
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.app, self.component, self.index)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid instance `{0}`: expected APP/COMPONENT/INDEX, for example shop/web/0")]
pub struct InstanceIdError(pub String);

impl FromStr for InstanceId {
    type Err = InstanceIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || InstanceIdError(s.to_owned());
        let mut parts = s.split('/');
        let (Some(app), Some(component), Some(index), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(err());
        };
        Ok(Self {
            app: app.parse().map_err(|_| err())?,
            component: component.parse().map_err(|_| err())?,
            index: index.parse().map_err(|_| err())?,
        })
    }
}

/// Where an instance's input can be reached right now. Unlike a link's
/// address, a locator changes whenever the instance restarts or moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Locator(pub SocketAddr);

impl fmt::Display for Locator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_id_round_trips() {
        let id: InstanceId = "shop/web/2".parse().unwrap();
        assert_eq!(id.index, 2);
        assert_eq!(id.to_string(), "shop/web/2");
        assert_eq!(id.slug(), "shop.web.2");
    }

    #[test]
    fn instance_id_rejects_bad_forms() {
        for bad in [
            "shop",
            "shop/web",
            "shop/web/x",
            "shop/web/1/2",
            "Shop/web/1",
            "",
        ] {
            assert!(bad.parse::<InstanceId>().is_err(), "{bad}");
        }
    }
}
