//! Who is calling: every API request carries a token; the admin token sees
//! everything, a tenant's token only that tenant's apps, streams, events,
//! metrics and bill. Anything of another tenant answers 404, exactly as if
//! it did not exist, so names do not leak.

use std::io::Write;
use std::path::Path;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use vdc_api::ErrorBody;
use vdc_model::InstanceId;

use crate::ControlPlane;

/// The tenant name reserved for the admin token's prefix.
pub(crate) const ADMIN: &str = "admin";

/// Who a request comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    Admin,
    Tenant(String),
}

impl Principal {
    /// Whether this caller may see what belongs to `tenant`.
    pub fn sees(&self, tenant: &str) -> bool {
        match self {
            Principal::Admin => true,
            Principal::Tenant(t) => t == tenant,
        }
    }

    /// The tenant a tenant token is scoped to; `None` for the admin.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Principal::Admin => None,
            Principal::Tenant(t) => Some(t),
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Principal::Admin)
    }
}

/// An instance calling the platform about itself, with the token the node
/// handed it at start. It may only use `/v1/self`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceCaller {
    pub id: InstanceId,
    pub tenant: String,
}

/// What an instance token names: an instance of one incarnation of its
/// app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TokenSubject {
    pub id: InstanceId,
    pub incarnation: String,
}

/// The prefix of instance tokens.
const INSTANCE_PREFIX: &str = "vdci-";

/// The key instance tokens are signed with: `DATA_DIR/instance.key`, made
/// at first start. An instance token is
/// `vdci-APP.COMPONENT.INDEX.INCARNATION.MAC`, MAC being HMAC-SHA256 of
/// `APP/COMPONENT/INDEX@INCARNATION` under this key, so nothing per
/// instance is stored, a token survives a server restart, a token for one
/// instance cannot be turned into another's, and a token of an app that
/// was taken down never works for a later app of the same name.
#[derive(Clone)]
pub(crate) struct InstanceKey([u8; 32]);

impl std::fmt::Debug for InstanceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InstanceKey(..)")
    }
}

impl InstanceKey {
    pub(crate) fn load_or_create(data_dir: &Path) -> std::io::Result<InstanceKey> {
        let path = data_dir.join("instance.key");
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let bytes = from_hex(text.trim()).filter(|b| b.len() == 32).ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "{} does not hold 64 hex digits; remove it to make a new key (running instances then need a restart to call the platform)",
                            path.display()
                        ),
                    )
                })?;
                let mut key = [0u8; 32];
                key.copy_from_slice(&bytes);
                Ok(InstanceKey(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut key);
                write_secret(&path, &to_hex(&key))?;
                Ok(InstanceKey(key))
            }
            Err(e) => Err(e),
        }
    }

    fn mac(&self, id: &InstanceId, incarnation: &str) -> String {
        // A key of any length is accepted by HMAC; this cannot fail.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => return String::new(),
        };
        mac.update(format!("{id}@{incarnation}").as_bytes());
        to_hex(&mac.finalize().into_bytes())
    }

    /// The token handed to instance `id` of the app's `incarnation`.
    pub(crate) fn token_for(&self, id: &InstanceId, incarnation: &str) -> String {
        format!(
            "{INSTANCE_PREFIX}{}.{}.{}.{incarnation}.{}",
            id.app,
            id.component,
            id.index,
            self.mac(id, incarnation)
        )
    }

    /// What a token was made for, if it was made here.
    pub(crate) fn verify(&self, token: &str) -> Option<TokenSubject> {
        let rest = token.strip_prefix(INSTANCE_PREFIX)?;
        let mut parts = rest.splitn(5, '.');
        let (app, component, index, incarnation, mac) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        let id: InstanceId = format!("{app}/{component}/{index}").parse().ok()?;
        same_hash(&self.mac(&id, incarnation), mac).then(|| TokenSubject {
            id,
            incarnation: incarnation.to_owned(),
        })
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A new token for `owner` (a tenant name, or [`ADMIN`]): the owner, a dot,
/// and 256 random bits in hex. The owner part lets the server find the hash
/// to compare with; the random part is the secret.
pub(crate) fn new_token(owner: &str) -> String {
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    format!("vdc-{owner}.{hex}")
}

/// A new app incarnation's id: 64 random bits in hex.
pub(crate) fn new_incarnation() -> String {
    to_hex(&rand::rngs::OsRng.next_u64().to_be_bytes())
}

pub(crate) fn sha256_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The owner named in a well-formed token.
fn owner_of(token: &str) -> Option<&str> {
    let rest = token.strip_prefix("vdc-")?;
    let (owner, secret) = rest.split_once('.')?;
    let well_formed = secret.len() == 64
        && secret.bytes().all(|b| b.is_ascii_hexdigit())
        && (owner == ADMIN || vdc_spec::is_valid_name(owner));
    well_formed.then_some(owner)
}

fn same_hash(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

fn unauthorized(message: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(ErrorBody {
            error: message.to_owned(),
            diagnostics: vec![],
        }),
    )
        .into_response()
}

fn forbidden(message: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        Json(ErrorBody {
            error: message.to_owned(),
            diagnostics: vec![],
        }),
    )
        .into_response()
}

/// The token of a request: `Authorization: Bearer TOKEN`, or for clients
/// that cannot set headers (browser EventSource, WebSocket) the
/// `access_token` query parameter.
fn token_of(request: &Request) -> Option<String> {
    if let Some(value) = request.headers().get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        return Some(
            value
                .strip_prefix("Bearer ")
                .unwrap_or(value)
                .trim()
                .to_owned(),
        );
    }
    request
        .uri()
        .query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("access_token=").map(str::to_owned))
}

/// Middleware: resolves the caller and hands it to the handlers as an
/// extension, or answers 401.
pub(crate) async fn authenticate(
    State(control): State<ControlPlane>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(token) = token_of(&request) else {
        return unauthorized(
            "this API needs a token: send `Authorization: Bearer TOKEN` (vdc login, or VDC_TOKEN)",
        );
    };
    let for_instances = request.uri().path().starts_with("/v1/self");
    if token.starts_with(INSTANCE_PREFIX) {
        let Some(TokenSubject { id, incarnation }) = control.instance_key().verify(&token) else {
            return unauthorized("invalid token");
        };
        // A token works while its instance runs, only for itself, and only
        // for the incarnation of the app it was made for.
        if control.incarnation_of(id.app.as_str()).as_deref() != Some(incarnation.as_str()) {
            return unauthorized("invalid token: its app is gone");
        }
        if !control.instances().iter().any(|s| s.id == id) {
            return unauthorized("invalid token: its instance is not running");
        }
        if !for_instances {
            return forbidden("an instance token can only call /v1/self");
        }
        let tenant = control.tenant_of(id.app.as_str());
        request
            .extensions_mut()
            .insert(InstanceCaller { id, tenant });
        return next.run(request).await;
    }
    if for_instances {
        // Any other token is not an instance's: as unknown as a wrong one.
        return unauthorized(
            "invalid token: /v1/self is for instances, with the token in their VDC_TOKEN",
        );
    }
    let Some(owner) = owner_of(&token) else {
        return unauthorized("malformed token: expected vdc-NAME.<64 hex digits>");
    };
    let hash = sha256_hex(&token);
    let principal = if owner == ADMIN {
        match control.store().admin_token_sha256().await {
            Ok(Some(admin)) if same_hash(&admin, &hash) => Principal::Admin,
            Ok(_) => return unauthorized("invalid token"),
            Err(e) => return crate::api::internal(e.to_string()),
        }
    } else {
        match control.store().tenant(owner).await {
            Ok(Some((tenant, _))) if same_hash(&tenant.token_sha256, &hash) => {
                Principal::Tenant(owner.to_owned())
            }
            Ok(_) => return unauthorized("invalid token"),
            Err(e) => return crate::api::internal(e.to_string()),
        }
    };
    request.extensions_mut().insert(principal);
    next.run(request).await
}

/// Creates the admin token at first start: its hash goes to the store, the
/// token itself to `DATA_DIR/admin.token` (readable by its owner only) and,
/// once, to stderr. Later starts find the hash and do nothing.
pub(crate) async fn bootstrap_admin(
    control: &ControlPlane,
    data_dir: &Path,
) -> Result<(), crate::ServerError> {
    if control.store().admin_token_sha256().await?.is_some() {
        return Ok(());
    }
    let token = new_token(ADMIN);
    let path = data_dir.join("admin.token");
    write_secret(&path, &token).map_err(|source| crate::ServerError::DataDir {
        path: path.display().to_string(),
        source,
    })?;
    control
        .store()
        .create_admin_token(&sha256_hex(&token))
        .await?;
    eprintln!(
        "vdc: created the admin token (shown once; also in {}, readable only by you):\n{token}",
        path.display()
    );
    Ok(())
}

/// Writes a file only its owner can read.
pub(crate) fn write_secret(path: &Path, content: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(content.as_bytes())?;
    file.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_well_formed_and_unique() {
        let a = new_token("acme");
        let b = new_token("acme");
        assert_ne!(a, b);
        assert_eq!(owner_of(&a), Some("acme"));
        assert_eq!(owner_of(&new_token(ADMIN)), Some(ADMIN));
        assert_eq!(sha256_hex("abc").len(), 64);
    }

    #[test]
    fn instance_tokens_name_their_instance_and_incarnation() {
        let key = InstanceKey([7; 32]);
        let id: InstanceId = "payroll/web/0".parse().unwrap();
        let token = key.token_for(&id, "a1b2");
        assert_eq!(
            key.verify(&token),
            Some(TokenSubject {
                id: id.clone(),
                incarnation: "a1b2".into()
            })
        );
        // Another incarnation, instance or key: not this token.
        let forged = token.replace(".a1b2.", ".c3d4.");
        assert_eq!(key.verify(&forged), None);
        let other: InstanceId = "payroll/web/1".parse().unwrap();
        let moved = token.replace("payroll.web.0", "payroll.web.1");
        assert_ne!(key.verify(&moved).map(|s| s.id), Some(other));
        assert_eq!(InstanceKey([8; 32]).verify(&token), None);
        assert_eq!(key.verify("vdci-payroll.web.0.abc"), None);
    }

    #[test]
    fn malformed_tokens_name_no_owner() {
        for bad in [
            "",
            "vdc-",
            "vdc-acme",
            "vdc-acme.",
            "vdc-acme.xyz",
            "vdc-Acme.0000000000000000000000000000000000000000000000000000000000000000",
            "vdc-acme.000000000000000000000000000000000000000000000000000000000000000g",
            "Bearer vdc-acme.0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            assert_eq!(owner_of(bad), None, "{bad}");
        }
    }
}
