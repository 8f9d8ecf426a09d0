//! `petrel spool check` and `petrel spool repair`: offline salvage of a
//! damaged spool (the daemon must not be running on it).

use petrel_lua::PolicyEngine;
use petrel_spool::{SalvageReport, SpoolPaths};
use std::path::{Path, PathBuf};

/// The spool a policy defines, or the directory given with `--path`.
pub(crate) fn spool_paths(path: Option<PathBuf>, policy: &Path) -> anyhow::Result<SpoolPaths> {
    if let Some(dir) = path {
        return Ok(SpoolPaths { meta: dir.clone(), data: dir });
    }
    let engine = PolicyEngine::load(policy, &crate::system_hostname())
        .map_err(|e| anyhow::anyhow!("{}: {e}", policy.display()))?;
    Ok(engine.current().config.spool.clone())
}

pub(crate) fn check(paths: &SpoolPaths) -> anyhow::Result<bool> {
    println!("petrel: reading {} (read-only)…", describe(paths));
    let report = petrel_spool::check(paths)?;
    print_report(&report);
    if report.is_clean() {
        println!("petrel: the spool is whole");
    } else {
        println!("petrel: the spool is damaged; `petrel spool repair --into DIR` salvages it into a fresh spool");
    }
    Ok(report.is_clean())
}

pub(crate) fn repair(paths: &SpoolPaths, into: PathBuf, quarantine: Option<PathBuf>) -> anyhow::Result<()> {
    let quarantine = quarantine.unwrap_or_else(|| into.with_extension("quarantine"));
    let fresh = SpoolPaths { meta: into.clone(), data: into.clone() };
    println!("petrel: salvaging {} into {}…", describe(paths), into.display());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let report = runtime.block_on(petrel_spool::repair(paths, &fresh, &quarantine))?;
    print_report(&report);
    println!(
        "petrel: {} message(s) in the new spool at {}; quarantined records and lost ids in {}",
        report.messages,
        into.display(),
        quarantine.display()
    );
    println!("petrel: point define_spool at the new directory (or move it into place), then start petrel serve");
    Ok(())
}

fn describe(paths: &SpoolPaths) -> String {
    if paths.meta == paths.data {
        paths.data.display().to_string()
    } else {
        format!("{} (meta) and {} (data)", paths.meta.display(), paths.data.display())
    }
}

fn print_report(report: &SalvageReport) {
    let mut t = super::show::table(&["", "count"]);
    t.add_row(["messages readable (meta and body)".to_string(), report.messages.to_string()]);
    t.add_row(["records quarantined".to_string(), report.quarantined.len().to_string()]);
    t.add_row(["ids lost (named in the WAL, records unreadable)".to_string(), report.lost.len().to_string()]);
    t.add_row(["rebuilt by RocksDB repair".to_string(), if report.rebuilt { "yes" } else { "no" }.to_string()]);
    println!("{t}");
    for damage in &report.damage {
        println!("damage: {damage}");
    }
    for (name, why) in report.quarantined.iter().take(50) {
        println!("quarantined: {name}: {why}");
    }
    for id in report.lost.iter().take(50) {
        println!("lost: {id}");
    }
    let more = report.quarantined.len().saturating_sub(50) + report.lost.len().saturating_sub(50);
    if more > 0 {
        println!("… and {more} more (see the quarantine directory after repair)");
    }
}
