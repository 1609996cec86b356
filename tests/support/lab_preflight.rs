//! Whether the network lab can be built here: root, and the commands it runs (`ip`,
//! `tc`, and `nft` where [`LabConfig::with_nft`] or a loss asks for it). Part of
//! `lab.rs`; pure where it can be (`missing_tools`, `unavailable_with`) so that the
//! detection itself is tested.

use std::ffi::OsStr;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;

use nix::libc;

use super::LabConfig;

/// Whether this process may build a lab (effective uid 0).
pub fn is_root() -> bool {
    // Safety: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether the environment says it is CI (`CI=true`): the lab must then be built.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The `tools` that no directory of `path` (a `PATH`-style list) holds as an
/// executable file, in the order given.
pub fn missing_tools<'a>(path: Option<&OsStr>, tools: &[&'a str]) -> Vec<&'a str> {
    let dirs: Vec<_> = path
        .map(std::env::split_paths)
        .into_iter()
        .flatten()
        .collect();
    let found = |tool: &str| {
        dirs.iter().any(|dir| {
            std::fs::metadata(dir.join(tool))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    };
    tools.iter().copied().filter(|tool| !found(tool)).collect()
}

/// Why a lab of this shape cannot be built by a process that is (or is not) root and
/// finds its commands in `path`; `None` when nothing is missing.
pub fn unavailable_with(root: bool, path: Option<&OsStr>, config: &LabConfig) -> Option<String> {
    if !root {
        return Some(format!(
            "the network lab needs root (ip netns, {})",
            config.tools()[1..].join(", ")
        ));
    }
    let missing = missing_tools(path, config.tools());
    if missing.is_empty() {
        return None;
    }
    let mut packages = Vec::new();
    if missing.iter().any(|&t| t != "nft") {
        packages.push("iproute2");
    }
    if missing.contains(&"nft") {
        packages.push("nftables");
    }
    Some(format!(
        "the network lab needs {} (not found in PATH; apt-get install {})",
        missing.join(", "),
        packages.join(" ")
    ))
}

/// Why a lab of this shape cannot be built here (not root, a command missing), or
/// `None` when it can.
pub fn unavailable(config: &LabConfig) -> Option<String> {
    unavailable_with(is_root(), std::env::var_os("PATH").as_deref(), config)
}

/// Why a test of this shape may skip here, or `None` if it must run: nothing is
/// missing, or `CI=true` (then [`Lab::require`] fails with the reason instead).
pub fn skip_reason(config: &LabConfig) -> Option<String> {
    if in_ci() {
        return None;
    }
    unavailable(config)
}

/// Prints `SKIP: <reason>` straight to the process's stderr, so that it shows even
/// where the test harness captures `eprintln!` of passing tests.
pub fn skip(reason: &str) {
    let _ = writeln!(io::stderr(), "SKIP: {reason}");
}
