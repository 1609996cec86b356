//! The lab's preflight: a missing command or a missing root is found before any
//! namespace is made, and the reason names what to install. Runs everywhere (no root).

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::lab::{missing_tools, unavailable_with, LabConfig};

/// A fresh directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tgc-lab-tools-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        TempDir(dir)
    }

    /// Puts a file `name` there with the given mode.
    fn file(&self, name: &str, mode: u32) -> &Self {
        let path = self.0.join(name);
        std::fs::write(&path, "#!/bin/sh\n").expect("write a fake tool");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        self
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn path_of(dirs: &[&Path]) -> OsString {
    std::env::join_paths(dirs).expect("a PATH")
}

#[test]
fn missing_tools_looks_for_executables_on_every_path_entry() {
    let (first, second) = (TempDir::new(), TempDir::new());
    first.file("ip", 0o755).file("nft", 0o644); // nft is there but not executable
    second.file("tc", 0o700);
    std::fs::create_dir(first.path().join("ss")).unwrap(); // a directory is no tool
    let path = path_of(&[first.path(), second.path()]);

    let tools = ["ip", "tc", "nft", "ss"];
    assert_eq!(missing_tools(Some(&path), &tools), ["nft", "ss"]);
    assert_eq!(
        missing_tools(Some(&path_of(&[second.path()])), &tools),
        ["ip", "nft", "ss"]
    );
    assert_eq!(missing_tools(None, &tools), tools);
    second.file("nft", 0o755);
    assert!(missing_tools(Some(&path), &["ip", "tc", "nft"]).is_empty());
}

#[test]
fn a_lab_without_nft_needs_only_iproute2() {
    let dir = TempDir::new();
    dir.file("ip", 0o755).file("tc", 0o755);
    let path = path_of(&[dir.path()]);
    let shaped = LabConfig::new();

    assert_eq!(shaped.tools(), ["ip", "tc"]);
    assert_eq!(
        unavailable_with(true, Some(path.as_os_str()), &shaped),
        None
    );

    // Loss and the black hole run nft: without it the lab says so before building.
    for config in [shaped.loss(2), shaped.with_nft()] {
        assert_eq!(config.tools(), ["ip", "tc", "nft"]);
        let reason =
            unavailable_with(true, Some(path.as_os_str()), &config).expect("nft is missing");
        assert!(
            reason.contains("needs nft") && reason.contains("apt-get install nftables"),
            "{reason}"
        );
        assert!(!reason.contains("iproute2"), "{reason}");
    }
    assert_eq!(shaped.loss(0).tools(), ["ip", "tc"]);
}

#[test]
fn missing_iproute2_and_missing_root_are_reasons_too() {
    let empty = TempDir::new();
    let path = path_of(&[empty.path()]);
    let reason = unavailable_with(true, Some(path.as_os_str()), &LabConfig::new().loss(1))
        .expect("everything is missing");
    assert!(reason.contains("needs ip, tc, nft"), "{reason}");
    assert!(
        reason.contains("apt-get install iproute2 nftables"),
        "{reason}"
    );

    let reason =
        unavailable_with(false, Some(path.as_os_str()), &LabConfig::new()).expect("not root");
    assert!(reason.contains("needs root"), "{reason}");
}
