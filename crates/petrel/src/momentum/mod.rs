//! `petrel import-momentum`: a Momentum `ecelerity.conf` (bindings, binding
//! groups, `Match_Domain`, global and `Domain` scopes) turned into an
//! `init.lua` and a `sources.toml` that reproduce it. Options outside the
//! subset are listed on the terminal and at the end of `init.lua`.

mod convert;
mod parse;

pub use convert::{Imported, Targets, convert};
pub use parse::{ParseError, Scope, parse};

use std::path::Path;
use std::process::ExitCode;

/// Read `config`, write `init.lua` and `sources.toml` into `out`.
pub(crate) fn run(config: &Path, out: &Path, listen: &str, spool: Option<&Path>, logs: Option<&Path>) -> ExitCode {
    let text = match std::fs::read_to_string(config) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("petrel: cannot read {}: {e}", config.display());
            return ExitCode::FAILURE;
        }
    };
    let root = match parse(&text) {
        Ok(root) => root,
        Err(e) => {
            eprintln!("{}: {e}", config.display());
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = std::fs::create_dir_all(out) {
        eprintln!("petrel: cannot create {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    let out = out.canonicalize().unwrap_or_else(|_| out.to_path_buf());
    let sources_path = out.join("sources.toml");
    let targets = Targets {
        listen: listen.to_string(),
        spool: spool.map_or_else(|| "/var/spool/petrel".to_string(), |p| p.display().to_string()),
        logs: logs.map_or_else(|| "/var/log/petrel".to_string(), |p| p.display().to_string()),
        sources_path: sources_path.display().to_string(),
        origin: config.display().to_string(),
    };
    let imported = convert(&root, &targets);
    for (path, text) in [(out.join("init.lua"), &imported.init_lua), (sources_path, &imported.sources_toml)] {
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("petrel: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {}", path.display());
    }
    if imported.unmapped.is_empty() {
        println!("every option was carried over");
    } else {
        println!("\nnot carried over ({}):", imported.unmapped.len());
        for line in &imported.unmapped {
            println!("  {line}");
        }
    }
    println!("\nnext: petrel validate --policy {}", out.join("init.lua").display());
    ExitCode::SUCCESS
}
