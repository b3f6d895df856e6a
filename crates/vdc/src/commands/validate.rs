//! `vdc validate FILE`: check a spec without running anything.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::cli::Format;
use crate::exit::{Code, Coded};

/// A spec read from disk and validated, with what a submission needs.
pub struct Loaded {
    pub file: String,
    pub base_dir: PathBuf,
    pub source: String,
    pub validated: vdc_spec::Validated,
}

/// Reads and validates `file`; on errors prints them (rendered with the
/// source line) and returns an error with the invalid-spec exit code.
pub fn load(file: &Path, format: Format) -> anyhow::Result<Loaded> {
    // Read at most one byte past the limit: a huge file is refused without
    // reading it all.
    let mut bytes = Vec::new();
    std::fs::File::open(file)
        .and_then(|f| {
            use std::io::Read;
            f.take(vdc_spec::MAX_SPEC_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
        })
        .with_context(|| format!("cannot read {}", file.display()))?;
    let absolute =
        std::path::absolute(file).with_context(|| format!("cannot resolve {}", file.display()))?;
    let base_dir = absolute
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    let name = file.display().to_string();
    let parsed = vdc_spec::parse_bytes(&bytes, &name, &base_dir);
    // For showing source lines: the text as far as it is UTF-8.
    let source = String::from_utf8_lossy(&bytes).into_owned();
    match parsed {
        Ok(validated) => {
            if format == Format::Table {
                for w in &validated.warnings {
                    eprintln!("{}", w.render(&source));
                }
            }
            Ok(Loaded {
                file: name,
                base_dir,
                source,
                validated,
            })
        }
        Err(diagnostics) => {
            let errors = diagnostics
                .0
                .iter()
                .filter(|d| d.severity == vdc_spec::Severity::Error)
                .count();
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&diagnostics.0)?),
                Format::Table | Format::Csv => {
                    for d in &diagnostics.0 {
                        eprintln!("{}", d.render(&source));
                    }
                }
            }
            Err(anyhow::Error::new(Coded {
                code: Code::InvalidSpec,
                message: format!("{name}: {errors} error(s); nothing was started"),
                printed: false,
            }))
        }
    }
}

pub fn run(file: &Path, format: Format) -> anyhow::Result<()> {
    let loaded = load(file, format)?;
    let spec = &loaded.validated.spec;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(spec)?),
        Format::Table | Format::Csv => {
            let instances: u32 = spec
                .components
                .values()
                .filter(|c| !c.appliance.is_builtin())
                .map(|c| c.replicas.count)
                .sum();
            let reserved = spec.reserved();
            println!(
                "{}: app `{}` is valid: {} component(s), {} instance(s), {} CPU and {} reserved",
                loaded.file,
                spec.name,
                spec.components.len(),
                instances,
                reserved.cpu,
                reserved.memory
            );
        }
    }
    Ok(())
}
