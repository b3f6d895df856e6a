//! What a spec's `image` names: an image in a registry (Docker's short
//! forms resolved as Docker resolves them: `redis` is
//! `docker.io/library/redis:latest`), or a local file: an OCI image layout
//! directory (`oci:DIR[:TAG]`) or a tar of one (`oci-archive:FILE[:TAG]`),
//! relative to the spec's directory. The local forms are skopeo's.

use std::fmt;
use std::path::{Path, PathBuf};

pub use oci_spec::distribution::Reference;

/// An image, by where it comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageRef {
    /// In a registry, by tag or digest (or both: the digest wins).
    Registry(Reference),
    /// An OCI image layout directory, and the tag (`org.opencontainers.image.ref.name`)
    /// of the image in its index; without one the index must hold one image.
    Layout { path: PathBuf, tag: Option<String> },
    /// A tar of an OCI image layout, as `skopeo copy … oci-archive:FILE` writes.
    Archive { path: PathBuf, tag: Option<String> },
}

/// Why a text is not an image reference.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    #[error("an image reference cannot be empty")]
    Empty,
    #[error("`{text}` has no path after `{prefix}:`")]
    NoPath { text: String, prefix: &'static str },
    #[error("`{tag}` is not a valid tag: expected letters, digits, `_`, `.` and `-`, at most 128, not starting with `.` or `-`")]
    Tag { tag: String },
    #[error("`{text}` is not a valid image reference: {reason}")]
    Invalid { text: String, reason: String },
}

impl ImageRef {
    /// Reads `text`; a local path is taken relative to `base` (the spec's
    /// directory) unless it is absolute.
    pub fn parse(text: &str, base: &Path) -> Result<ImageRef, RefError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(RefError::Empty);
        }
        for (prefix, archive) in [("oci-archive", true), ("oci", false)] {
            let Some(rest) = text.strip_prefix(prefix).and_then(|r| r.strip_prefix(':')) else {
                continue;
            };
            let (path, tag) = split_local(rest);
            if path.is_empty() {
                return Err(RefError::NoPath {
                    text: text.to_owned(),
                    prefix,
                });
            }
            if let Some(tag) = &tag {
                check_tag(tag)?;
            }
            let path = base.join(path);
            return Ok(if archive {
                ImageRef::Archive { path, tag }
            } else {
                ImageRef::Layout { path, tag }
            });
        }
        let reference: Reference =
            text.parse()
                .map_err(|e: oci_spec::distribution::ParseError| {
                    let mut reason = e.to_string();
                    if text.chars().any(|c| c.is_ascii_uppercase()) && !text.contains('@') {
                        reason = "repository names are lowercase".to_owned();
                    } else if text.contains('@')
                        && matches!(
                            e,
                            oci_spec::distribution::ParseError::ReferenceInvalidFormat
                                | oci_spec::distribution::ParseError::DigestInvalidLength
                        )
                    {
                        reason = "a digest is `sha256:` and 64 hexadecimal digits".to_owned();
                    }
                    RefError::Invalid {
                        text: text.to_owned(),
                        reason,
                    }
                })?;
        Ok(ImageRef::Registry(reference))
    }

    /// True when the image comes from a file next to the spec.
    pub fn is_local(&self) -> bool {
        !matches!(self, ImageRef::Registry(_))
    }
}

/// `PATH[:TAG]`: a tag is what follows the last `:` after the last `/`.
fn split_local(rest: &str) -> (&str, Option<String>) {
    let name_start = rest.rfind('/').map_or(0, |i| i + 1);
    match rest[name_start..].rfind(':') {
        Some(i) => {
            let at = name_start + i;
            (&rest[..at], Some(rest[at + 1..].to_owned()))
        }
        None => (rest, None),
    }
}

/// A tag as the distribution spec has it: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
fn check_tag(tag: &str) -> Result<(), RefError> {
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok && tag.len() <= 128 {
        Ok(())
    } else {
        Err(RefError::Tag {
            tag: tag.to_owned(),
        })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageRef::Registry(r) => write!(f, "{r}"),
            ImageRef::Layout { path, tag } | ImageRef::Archive { path, tag } => {
                let prefix = if matches!(self, ImageRef::Archive { .. }) {
                    "oci-archive"
                } else {
                    "oci"
                };
                write!(f, "{prefix}:{}", path.display())?;
                match tag {
                    Some(tag) => write!(f, ":{tag}"),
                    None => Ok(()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> String {
        match ImageRef::parse(text, Path::new("/srv/shop")) {
            Ok(r) => r.to_string(),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn short_forms_resolve_as_docker_does() {
        for (text, whole) in [
            ("redis", "docker.io/library/redis:latest"),
            ("redis:7", "docker.io/library/redis:7"),
            ("docker.io/library/redis:7", "docker.io/library/redis:7"),
            ("bitnami/redis", "docker.io/bitnami/redis:latest"),
            ("index.docker.io/library/redis", "docker.io/library/redis:latest"),
            (
                "registry.example:5000/shop/web:1.4",
                "registry.example:5000/shop/web:1.4",
            ),
            ("localhost:5000/web", "localhost:5000/web:latest"),
            (
                "web@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "docker.io/library/web@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            ),
        ] {
            assert_eq!(parsed(text), whole, "{text}");
        }
    }

    #[test]
    fn local_files_are_relative_to_the_spec() {
        assert_eq!(
            parsed("oci-archive:images/web.tar"),
            "oci-archive:/srv/shop/images/web.tar"
        );
        assert_eq!(parsed("oci:images/web"), "oci:/srv/shop/images/web");
        assert_eq!(parsed("oci:images/web:1.4"), "oci:/srv/shop/images/web:1.4");
        assert_eq!(parsed("oci:/opt/images/web:v2"), "oci:/opt/images/web:v2");
        assert_eq!(
            parsed("oci-archive:../x.v1:2/web.tar"),
            "oci-archive:/srv/shop/../x.v1:2/web.tar"
        );
        assert!(ImageRef::parse("oci:a", Path::new("/")).unwrap().is_local());
        assert!(!ImageRef::parse("a", Path::new("/")).unwrap().is_local());
    }

    #[test]
    fn mistakes_say_what_is_wrong() {
        for (text, error) in [
            ("", "error: an image reference cannot be empty"),
            ("oci:", "error: `oci:` has no path after `oci:`"),
            ("oci-archive::v1", "error: `oci-archive::v1` has no path after `oci-archive:`"),
            ("oci:web:-x", "error: `-x` is not a valid tag: expected letters, digits, `_`, `.` and `-`, at most 128, not starting with `.` or `-`"),
            ("Shop/Web", "error: `Shop/Web` is not a valid image reference: repository names are lowercase"),
            ("web:1.4:5", "error: `web:1.4:5` is not a valid image reference: invalid reference format"),
            ("web@sha256:abc", "error: `web@sha256:abc` is not a valid image reference: a digest is `sha256:` and 64 hexadecimal digits"),
            ("web@md5:0123456789abcdef0123456789abcdef", "error: `web@md5:0123456789abcdef0123456789abcdef` is not a valid image reference: unsupported digest algorithm"),
        ] {
            assert_eq!(parsed(text), error, "{text:?}");
        }
    }
}
