//! The commands. Each receives a finished [`Ctx`] from the front end and never looks at argv.

use std::io::{Read, Write};
use std::path::PathBuf;

use crate::core::config::Config;
use crate::core::rewrite;
use crate::support::error::{Error, Result};
use crate::support::paths::{Paths, CONFIG_ENV};

pub mod apply;
pub mod check;
pub mod define;
pub mod events;
pub mod exporter;
pub mod filter;
pub mod hook;
pub mod refresh;
pub mod status;
pub mod sweep;
pub mod top;
pub mod watch;

/// What every command needs: where things are and which config to read.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub paths: Paths,
    pub config_path: PathBuf,
}

impl Ctx {
    pub fn load_config(&self) -> Result<Config> {
        Config::load(&self.config_path)
    }
}

/// `--config`, else `$VIRT_PERF_HOOK_CONFIG`, else the default under the root.
pub fn config_path(paths: &Paths, flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| paths.default_config())
}

/// The config, or the defaults with a warning (silenced by `-q`): `events` and `refresh` are
/// useful before any config exists (packaging runs `refresh` at install time).
pub(crate) fn config_or_default(ctx: &Ctx, what: &str) -> Config {
    ctx.load_config().unwrap_or_else(|e| {
        log::warn!("{e}; {what}");
        Config::default()
    })
}

/// Reads FILE or stdin (`None`/`-`), bounded by the XML size cap, as UTF-8.
pub fn read_input(input: Option<&str>) -> Result<String> {
    let limit = rewrite::MAX_XML_BYTES as u64;
    // Domain XML is typically 5-50 KB: start big enough to read it in one or two calls.
    let mut buf = Vec::with_capacity(64 * 1024);
    let (name, res) = match input {
        None | Some("-") => ("stdin".to_string(), std::io::stdin().lock().take(limit + 1).read_to_end(&mut buf)),
        Some(path) => {
            let meta = std::fs::metadata(path).map_err(|e| Error::io(path, "read", e))?;
            if meta.is_dir() {
                return Err(Error::Usage(format!("{path} is a directory, not a domain XML file")));
            }
            let file = std::fs::File::open(path).map_err(|e| Error::io(path, "open", e))?;
            (path.to_string(), file.take(limit + 1).read_to_end(&mut buf))
        }
    };
    res.map_err(|e| Error::io(&name, "read", e))?;
    if buf.len() as u64 > limit {
        return Err(Error::Xml(format!("{name} is larger than the {} MiB limit", limit >> 20)));
    }
    String::from_utf8(buf).map_err(|e| {
        Error::Xml(format!("{name} is not UTF-8 text (invalid byte at offset {})", e.utf8_error().valid_up_to()))
    })
}

/// Writes a report to stdout; a reader that went away (`| head`) is not an error.
pub(crate) fn write_stdout(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::io("stdout", "write to", e)),
    }
}

/// A JSON report on stdout, pretty-printed (`events`, `check`, `status` with `--json`).
pub(crate) fn print_json(value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Other(format!("cannot encode JSON: {e}")))?;
    write_stdout(&format!("{text}\n"))
}
