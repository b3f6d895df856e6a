//! `vdc image pull|list|inspect|rm|prune|import|export`.

use std::io::{IsTerminal, Write};
use std::path::Path;

use futures_util::StreamExt;
use vdc_api::{
    ErrorBody, ExportImage, ImageDetail, ImageInfo, ImagePullProgress, ImportImage, PruneImages,
    PrunedImages, PullImage,
};

use crate::cli::{Format, ImageCommand, RegistryCommand};
use crate::client::{url_path_escape, Client};
use crate::commands::events::SseReader;
use crate::exit::{fail, Code};
use crate::output::{age, now_ms, print, Table};

pub async fn run(client: &Client, command: ImageCommand, format: Format) -> anyhow::Result<()> {
    match command {
        ImageCommand::Pull { reference } => pull(client, &reference, format).await,
        ImageCommand::List => {
            let images: Vec<ImageInfo> = client.get("/v1/images").await?;
            print(format, &images, |list| table(list))
        }
        ImageCommand::Inspect { reference } => {
            let detail: ImageDetail = client
                .get(&format!(
                    "/v1/images/inspect?name={}",
                    url_path_escape(&reference)
                ))
                .await?;
            print(format, &detail, describe)
        }
        ImageCommand::Rm { reference } => {
            let removed: ImageInfo = client
                .delete_for(&format!("/v1/images?name={}", url_path_escape(&reference)))
                .await?;
            eprintln!("removed {} ({})", removed.name, short(&removed.digest));
            Ok(())
        }
        ImageCommand::Prune { unused_for } => {
            let unused_for_ms = match unused_for {
                Some(text) => parse_age(&text).map_err(|e| fail(Code::Failure, e))?,
                None => 0,
            };
            let pruned: PrunedImages = client
                .post("/v1/images/prune", &PruneImages { unused_for_ms })
                .await?;
            print(format, &pruned, |p| {
                let mut t = Table::new(&["REMOVED"]);
                for name in &p.removed {
                    t.row(vec![name.clone()]);
                }
                t.row(vec![format!("{} freed", size(p.freed_bytes))]);
                t
            })
        }
        ImageCommand::Import { source } => {
            let source = local_source(&source)?;
            let image: ImageInfo = client
                .post("/v1/images/import", &ImportImage { source })
                .await?;
            print(format, &vec![image], |list| table(list))
        }
        ImageCommand::Export {
            reference,
            file,
            tag,
        } => {
            let path = absolute(&file)?;
            let image: ImageInfo = client
                .post(
                    "/v1/images/export",
                    &ExportImage {
                        name: reference,
                        path: path.display().to_string(),
                        tag: Some(tag),
                    },
                )
                .await?;
            eprintln!("{} written to {}", image.name, path.display());
            Ok(())
        }
    }
}

/// `vdc registry login|logout`.
pub async fn registry(client: &Client, command: RegistryCommand) -> anyhow::Result<()> {
    match command {
        RegistryCommand::Login { registry, user } => {
            if std::io::stdin().is_terminal() {
                eprint!("password for {user} at {registry}: ");
                let _ = std::io::stderr().flush();
            }
            let mut password = String::new();
            std::io::stdin().read_line(&mut password)?;
            let password = password.trim_end_matches(['\r', '\n']).to_owned();
            client
                .post_empty_json(
                    "/v1/registries/login",
                    &vdc_api::RegistryLogin {
                        registry: registry.clone(),
                        user,
                        password,
                    },
                )
                .await?;
            eprintln!("logged in to {registry}: this node pulls from it with these credentials");
            Ok(())
        }
        RegistryCommand::Logout { registry } => {
            client
                .post_empty_json(
                    "/v1/registries/logout",
                    &vdc_api::RegistryLogout {
                        registry: registry.clone(),
                    },
                )
                .await?;
            eprintln!("logged out of {registry}");
            Ok(())
        }
    }
}

/// `oci:DIR[:TAG]` / `oci-archive:FILE[:TAG]` as given, or a bare path:
/// a directory is a layout, a file an archive; made absolute (the server
/// reads it from its own machine).
fn local_source(text: &str) -> anyhow::Result<String> {
    for prefix in ["oci-archive:", "oci:"] {
        if let Some(rest) = text.strip_prefix(prefix) {
            let (path, tag) = split_tag(rest);
            let path = absolute(Path::new(path))?;
            return Ok(format!("{prefix}{}{tag}", path.display()));
        }
    }
    let (path, tag) = split_tag(text);
    let path = absolute(Path::new(path))?;
    let prefix = if path.is_dir() {
        "oci:"
    } else {
        "oci-archive:"
    };
    Ok(format!("{prefix}{}{tag}", path.display()))
}

/// `PATH[:TAG]` -> (`PATH`, `:TAG` or ``), when the path exists without
/// the suffix.
fn split_tag(text: &str) -> (&str, String) {
    if Path::new(text).exists() {
        return (text, String::new());
    }
    let name_start = text.rfind('/').map_or(0, |i| i + 1);
    match text[name_start..].rfind(':') {
        Some(i) => (&text[..name_start + i], text[name_start + i..].to_owned()),
        None => (text, String::new()),
    }
}

fn absolute(path: &Path) -> anyhow::Result<std::path::PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_owned());
    }
    Ok(std::env::current_dir()?.join(path))
}

/// Pulls with a progress line (redrawn on a terminal, a line per 10%
/// otherwise).
async fn pull(client: &Client, reference: &str, format: Format) -> anyhow::Result<()> {
    let response = client
        .post_stream(
            "/v1/images/pull",
            &PullImage {
                reference: reference.to_owned(),
            },
        )
        .await?;
    let tty = std::io::stderr().is_terminal();
    let mut body = response.bytes_stream();
    let mut sse = SseReader::default();
    let mut shown_tenth = None;
    while let Some(chunk) = body.next().await {
        for (event, data) in sse.push_events(&chunk?) {
            match event.as_str() {
                "progress" => {
                    let Ok(p) = serde_json::from_str::<ImagePullProgress>(&data) else {
                        continue;
                    };
                    let line = progress_line(reference, &p);
                    if tty {
                        eprint!("\r\x1b[2K{line}");
                        let _ = std::io::stderr().flush();
                    } else {
                        let tenth = (p.done_bytes * 10).checked_div(p.total_bytes).unwrap_or(0);
                        if shown_tenth != Some(tenth) || p.phase == "unpacking" {
                            shown_tenth = Some(tenth);
                            eprintln!("{line}");
                        }
                    }
                }
                "done" => {
                    if tty {
                        eprintln!();
                    }
                    let image: ImageInfo = serde_json::from_str(&data)?;
                    eprintln!("pulled {} ({})", image.name, short(&image.digest));
                    if format == Format::Json {
                        println!("{}", serde_json::to_string_pretty(&image)?);
                    }
                    return Ok(());
                }
                "error" => {
                    if tty {
                        eprintln!();
                    }
                    let body: ErrorBody = serde_json::from_str(&data).unwrap_or(ErrorBody {
                        error: data.clone(),
                        diagnostics: Vec::new(),
                    });
                    return Err(fail(Code::Failure, format!("cannot pull {}", body.error)));
                }
                _ => {}
            }
        }
    }
    Err(fail(
        Code::Failure,
        format!("the server stopped answering before {reference} was pulled"),
    ))
}

fn progress_line(reference: &str, p: &ImagePullProgress) -> String {
    if p.phase == "unpacking" {
        return format!(
            "{reference}: unpacking {} layers",
            p.blobs.len().saturating_sub(1)
        );
    }
    let width = 24;
    let filled = (p.done_bytes * width)
        .checked_div(p.total_bytes)
        .unwrap_or(0) as usize;
    let done_blobs = p.blobs.iter().filter(|(_, d, s)| d == s).count();
    format!(
        "{reference}: [{}{}] {} / {} ({done_blobs}/{} blobs)",
        "#".repeat(filled),
        " ".repeat(width as usize - filled.min(width as usize)),
        size(p.done_bytes),
        size(p.total_bytes),
        p.blobs.len()
    )
}

fn table(images: &[ImageInfo]) -> Table {
    let now = now_ms();
    let mut t = Table::new(&["IMAGE", "DIGEST", "LAYERS", "SIZE", "LAST USED", "USED BY"]);
    for i in images {
        t.row(vec![
            i.name.clone(),
            short(&i.digest),
            i.layers.to_string(),
            size(i.size_bytes),
            format!("{} ago", age(now.saturating_sub(i.last_used_ms))),
            if i.used_by.is_empty() {
                "-".to_owned()
            } else {
                i.used_by.join(",")
            },
        ]);
    }
    t
}

fn describe(d: &ImageDetail) -> Table {
    let mut t = Table::new(&["FIELD", "VALUE"]);
    let rows: Vec<(&str, String)> = vec![
        ("name", d.image.name.clone()),
        ("digest", d.image.digest.clone()),
        ("config", d.config.clone()),
        ("size", size(d.image.size_bytes)),
        ("entrypoint", format!("{:?}", d.entrypoint)),
        ("cmd", format!("{:?}", d.cmd)),
        (
            "workdir",
            d.workdir.clone().unwrap_or_else(|| "/".to_owned()),
        ),
        ("user", d.user.clone().unwrap_or_else(|| "root".to_owned())),
        ("used by", d.image.used_by.join(", ")),
    ];
    for (k, v) in rows {
        t.row(vec![k.to_owned(), v]);
    }
    for e in &d.env {
        t.row(vec!["env".to_owned(), e.clone()]);
    }
    for (n, layer) in d.layer_digests.iter().enumerate() {
        t.row(vec![format!("layer {n}"), layer.clone()]);
    }
    t
}

/// `sha256:0123456789ab`.
fn short(digest: &str) -> String {
    digest.chars().take(19).collect()
}

fn size(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2}GiB", b / (1024.0 * 1024.0 * 1024.0))
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.1}MiB", b / (1024.0 * 1024.0))
    } else if b >= 1024.0 {
        format!("{:.1}KiB", b / 1024.0)
    } else {
        format!("{bytes}B")
    }
}

/// `90s`, `30m`, `12h`, `7d` in milliseconds.
fn parse_age(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (e.g. 30m, 12h, 7d)"))?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("`{text}` is not a duration: use s, m, h or d")),
    };
    Ok(n.saturating_mul(unit_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sources() {
        assert_eq!(parse_age("7d"), Ok(7 * 86_400_000));
        assert_eq!(parse_age("90s"), Ok(90_000));
        assert!(parse_age("7 days").is_err());
        assert_eq!(
            split_tag("/nowhere/web.tar:v2"),
            ("/nowhere/web.tar", ":v2".to_owned())
        );
        assert_eq!(
            split_tag("/nowhere/a:b/web"),
            ("/nowhere/a:b/web", String::new())
        );
        assert_eq!(
            local_source("oci:/srv/images:web").unwrap(),
            "oci:/srv/images:web"
        );
    }

    #[test]
    fn the_progress_line_fits_a_terminal() {
        let p = ImagePullProgress {
            done_bytes: 3 << 20,
            total_bytes: 12 << 20,
            blobs: vec![
                ("a".into(), 1024, 1024),
                ("b".into(), (3 << 20) - 1024, 12 << 20),
            ],
            phase: "fetching".into(),
        };
        assert_eq!(
            progress_line("redis:7", &p),
            "redis:7: [######                  ] 3.0MiB / 12.0MiB (1/2 blobs)"
        );
    }
}
