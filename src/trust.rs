//! Which files doproxy believes. doproxy runs as root with a token that can destroy every
//! droplet of the account, and its config names shell commands it runs: whoever can change
//! the config (or the user data, the template, or the folder they sit in) can make it do
//! anything. So a file it reads its orders from must be owned by the effective user or
//! root, must not be writable by group or others, and must sit in folders (every folder up
//! to `/`) owned by the effective user or root that group and others cannot write, unless
//! the folder has the sticky bit (like `/tmp`: nobody can rename or delete another user's
//! file there). A symlink on the way must be owned by the effective user or root too.
//!
//! [`judge_file`] and [`judge_dir`] are the pure rule; [`check_file`] and
//! [`check_if_present`] apply it to the file system and turn a refusal into one line (exit
//! code 2) saying why and how to fix it.

use crate::error::usage_error;
use anyhow::Result;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// Write permission for the group.
const GROUP_WRITE: u32 = 0o020;
/// Write permission for others.
const OTHER_WRITE: u32 = 0o002;
/// The sticky bit: in such a folder only a file's owner (or the folder's owner, or root) can
/// rename or delete it.
const STICKY: u32 = 0o1000;

/// Why a file or a folder is not trusted (the result of the pure rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The file (or symlink) belongs to this uid: neither the effective user nor root.
    FileOwner(u32),
    /// The file's group or others may write it (the mode's permission bits).
    FileWritable(u32),
    /// The folder belongs to this uid: neither the effective user nor root.
    DirOwner(u32),
    /// The folder's group or others may write it, and it has no sticky bit (its mode).
    DirWritable(u32),
}

/// True for the uids whose files doproxy believes: root and the effective user.
fn trusted_uid(uid: u32, euid: u32) -> bool {
    uid == 0 || uid == euid
}

/// The rule for a file: owned by `euid` or root, not writable by group or others.
pub fn judge_file(uid: u32, mode: u32, euid: u32) -> Option<Problem> {
    if !trusted_uid(uid, euid) {
        Some(Problem::FileOwner(uid))
    } else if mode & (GROUP_WRITE | OTHER_WRITE) != 0 {
        Some(Problem::FileWritable(mode & 0o7777))
    } else {
        None
    }
}

/// The rule for a folder holding a trusted file: owned by `euid` or root, and not writable
/// by group or others unless it has the sticky bit.
pub fn judge_dir(uid: u32, mode: u32, euid: u32) -> Option<Problem> {
    if !trusted_uid(uid, euid) {
        Some(Problem::DirOwner(uid))
    } else if mode & (GROUP_WRITE | OTHER_WRITE) != 0 && mode & STICKY == 0 {
        Some(Problem::DirWritable(mode & 0o7777))
    } else {
        None
    }
}

/// The whole rule for a file and the folder it sits in (the file first).
pub fn judge(
    file_uid: u32,
    file_mode: u32,
    dir_uid: u32,
    dir_mode: u32,
    euid: u32,
) -> Option<Problem> {
    judge_file(file_uid, file_mode, euid).or_else(|| judge_dir(dir_uid, dir_mode, euid))
}

/// The effective user ID of this process.
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// The owner to suggest in a `chown` hint: `root`, or the effective uid.
fn owner_hint(euid: u32) -> String {
    if euid == 0 {
        "root".into()
    } else {
        euid.to_string()
    }
}

/// Who may own trusted files, in words.
fn trusted_words(euid: u32) -> String {
    if euid == 0 {
        "root".into()
    } else {
        format!("root or uid {euid} (the user doproxy runs as)")
    }
}

/// The one-line refusal: `what` and `file` name the file being checked, `at` the file,
/// symlink or folder that broke the rule.
fn refusal(what: &str, file: &Path, at: &Path, link: bool, p: Problem, euid: u32) -> String {
    let f = file.display();
    let a = at.display();
    let who = trusted_words(euid);
    let owner = owner_hint(euid);
    let move_it = "or move the file into a folder only root can write (e.g. /etc/doproxy)";
    match p {
        Problem::FileOwner(uid) if link => format!(
            "refusing {what} {f}: the symlink {a} is owned by uid {uid}, not by {who}, so that user could point it elsewhere; run: chown -h {owner}: {a}, or replace the link with the file"
        ),
        Problem::FileOwner(uid) => format!(
            "refusing {what} {f}: it is owned by uid {uid}, not by {who}, so that user could change what doproxy does; run: chown {owner}: {a}, or move it"
        ),
        Problem::FileWritable(mode) => format!(
            "refusing {what} {f}: it is writable by group or others (mode {mode:04o}); run: chmod go-w {a}"
        ),
        Problem::DirOwner(uid) => format!(
            "refusing {what} {f}: its folder {a} is owned by uid {uid}, not by {who}, so that user could replace the file; run: chown {owner}: {a}, {move_it}"
        ),
        Problem::DirWritable(mode) => format!(
            "refusing {what} {f}: its folder {a} is writable by group or others and has no sticky bit (mode {mode:04o}), so they could replace the file; run: chmod go-w {a}, {move_it}"
        ),
    }
}

/// `path` made absolute against the current folder (not resolved: symlinks stay).
fn absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    let cwd = std::env::current_dir()
        .map_err(|e| usage_error(format!("cannot find the current folder: {e}")))?;
    Ok(cwd.join(path))
}

/// Checks every folder from `dir` (resolved) up to `/` against [`judge_dir`].
fn check_folders(what: &str, file: &Path, dir: &Path, euid: u32) -> Result<()> {
    let real = fs::canonicalize(dir).map_err(|e| {
        usage_error(format!(
            "refusing {what} {}: cannot resolve its folder {}: {e}",
            file.display(),
            dir.display()
        ))
    })?;
    for folder in real.ancestors() {
        let meta = fs::metadata(folder).map_err(|e| {
            usage_error(format!(
                "refusing {what} {}: cannot inspect the folder {}: {e}",
                file.display(),
                folder.display()
            ))
        })?;
        if let Some(p) = judge_dir(meta.uid(), meta.mode(), euid) {
            return Err(usage_error(refusal(what, file, folder, false, p, euid)));
        }
    }
    Ok(())
}

/// Checks the symlinks on the way to `abs`: each must be owned by a trusted user and sit in
/// trusted folders (whoever can change a link chooses the file doproxy reads).
fn check_links(what: &str, file: &Path, abs: &Path, euid: u32) -> Result<()> {
    let mut prefix = PathBuf::new();
    for c in abs.components() {
        prefix.push(c);
        if !matches!(c, Component::Normal(_)) {
            continue;
        }
        let Ok(meta) = fs::symlink_metadata(&prefix) else {
            // Missing: the caller reports it (or resolving fails below).
            return Ok(());
        };
        if meta.file_type().is_symlink() {
            if let Some(p) = judge_file(meta.uid(), 0, euid) {
                return Err(usage_error(refusal(what, file, &prefix, true, p, euid)));
            }
            if let Some(parent) = prefix.parent() {
                check_folders(what, file, parent, euid)?;
            }
        }
    }
    Ok(())
}

/// Refuses (exit code 2, one line) a file doproxy would take orders from — `what` names it
/// in the message, e.g. "config file" — unless it, the symlinks on the way to it and every
/// folder above it pass the rule (see the module documentation). The file must exist.
pub fn check_file(path: &Path, what: &str) -> Result<()> {
    let euid = euid();
    let abs = absolute(path)?;
    check_links(what, path, &abs, euid)?;
    let real = fs::canonicalize(&abs)
        .map_err(|e| usage_error(format!("cannot read {what} {}: {e}", path.display())))?;
    let meta = fs::metadata(&real)
        .map_err(|e| usage_error(format!("cannot read {what} {}: {e}", path.display())))?;
    if let Some(p) = judge_file(meta.uid(), meta.mode(), euid) {
        return Err(usage_error(refusal(what, path, &real, false, p, euid)));
    }
    check_folders(what, path, &crate::fsutil::parent_dir(&real), euid)
}

/// Like [`check_file`] for a file that may not exist yet: then its folder must pass the rule
/// (so nobody untrusted can create it later), if the folder exists; reading a missing file
/// is the reader's error to report.
pub fn check_if_present(path: &Path, what: &str) -> Result<()> {
    let abs = absolute(path)?;
    if fs::symlink_metadata(&abs).is_ok() {
        return check_file(path, what);
    }
    let parent = crate::fsutil::parent_dir(&abs);
    if parent.exists() {
        let euid = euid();
        check_links(what, path, &parent, euid)?;
        check_folders(what, path, &parent, euid)?;
    }
    Ok(())
}

/// Refuses (exit code 2, one line) a folder doproxy runs commands in — `what` names it —
/// unless it, the symlinks on the way to it and every folder above it pass [`judge_dir`].
pub fn check_folder(dir: &Path, what: &str) -> Result<()> {
    let euid = euid();
    let abs = absolute(dir)?;
    check_links(what, dir, &abs, euid)?;
    check_folders(what, dir, &abs, euid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const ME: u32 = 1000;
    const OTHER: u32 = 65534;

    #[test]
    fn the_rule_as_a_table() {
        use Problem::*;
        /// (file uid, file mode, dir uid, dir mode, euid) -> verdict
        type Case = (u32, u32, u32, u32, u32, Option<Problem>);
        let cases: &[Case] = &[
            // The usual setups.
            (0, 0o600, 0, 0o750, 0, None),
            (0, 0o640, 0, 0o755, 0, None),
            (0, 0o644, 0, 0o755, ME, None),
            (ME, 0o600, ME, 0o700, ME, None),
            (ME, 0o600, 0, 0o755, ME, None),
            (0, 0o100_600, 0, 0o040_755, 0, None), // st_mode with the file-type bits
            // A world-writable folder is fine with the sticky bit (/tmp), owned by us or root.
            (0, 0o600, 0, 0o1777, 0, None),
            (ME, 0o600, ME, 0o1777, ME, None),
            (0, 0o600, 0, 0o1770, 0, None),
            // The file's owner.
            (OTHER, 0o600, 0, 0o755, 0, Some(FileOwner(OTHER))),
            (OTHER, 0o600, 0, 0o755, ME, Some(FileOwner(OTHER))),
            (ME, 0o600, 0, 0o755, 0, Some(FileOwner(ME))), // root does not trust a user's file
            // The file's mode.
            (0, 0o620, 0, 0o755, 0, Some(FileWritable(0o620))),
            (0, 0o602, 0, 0o755, 0, Some(FileWritable(0o602))),
            (0, 0o666, 0, 0o755, 0, Some(FileWritable(0o666))),
            (0, 0o100_664, 0, 0o755, 0, Some(FileWritable(0o664))),
            (ME, 0o622, ME, 0o700, ME, Some(FileWritable(0o622))),
            // The file is judged before its folder.
            (OTHER, 0o666, OTHER, 0o777, 0, Some(FileOwner(OTHER))),
            (0, 0o666, 0, 0o777, 0, Some(FileWritable(0o666))),
            // The folder's owner (even with the sticky bit: the owner may delete anything).
            (0, 0o600, OTHER, 0o755, 0, Some(DirOwner(OTHER))),
            (0, 0o600, OTHER, 0o1777, 0, Some(DirOwner(OTHER))),
            (ME, 0o600, OTHER, 0o700, ME, Some(DirOwner(OTHER))),
            // The folder's mode.
            (0, 0o600, 0, 0o777, 0, Some(DirWritable(0o777))),
            (0, 0o600, 0, 0o757, 0, Some(DirWritable(0o757))),
            (0, 0o600, 0, 0o775, 0, Some(DirWritable(0o775))),
            (0, 0o600, 0, 0o2775, 0, Some(DirWritable(0o2775))), // setgid is not sticky
            (0, 0o600, 0, 0o040_777, 0, Some(DirWritable(0o777))),
        ];
        for &(fu, fm, du, dm, euid, want) in cases {
            assert_eq!(
                judge(fu, fm, du, dm, euid),
                want,
                "file {fu}:{fm:o}, dir {du}:{dm:o}, euid {euid}"
            );
        }
    }

    #[test]
    fn a_refusal_says_why_and_how_to_fix_it() {
        let f = Path::new("/srv/d/doproxy.yml");
        let d = Path::new("/srv/d");
        let m = refusal("config file", f, f, false, Problem::FileOwner(OTHER), 0);
        assert!(
            m.contains("owned by uid 65534") && m.contains("chown root: /srv/d/doproxy.yml"),
            "{m}"
        );
        let m = refusal("config file", f, f, false, Problem::FileWritable(0o664), 0);
        assert!(
            m.contains("mode 0664") && m.contains("chmod go-w /srv/d/doproxy.yml"),
            "{m}"
        );
        let m = refusal("config file", f, d, false, Problem::DirWritable(0o777), 0);
        assert!(
            m.contains("folder /srv/d") && m.contains("chmod go-w /srv/d") && m.contains("move"),
            "{m}"
        );
        let m = refusal("userdata_file", f, f, false, Problem::FileOwner(OTHER), ME);
        assert!(
            m.starts_with("refusing userdata_file") && m.contains("chown 1000: "),
            "{m}"
        );
        for p in [
            Problem::FileOwner(1),
            Problem::FileWritable(0o666),
            Problem::DirOwner(1),
            Problem::DirWritable(0o777),
        ] {
            assert!(!refusal("x", f, d, false, p, 0).contains('\n'));
        }
    }

    /// The file-system side, with what a process may do to its own files (the rule's
    /// owner cases need another uid: the integration tests, run as root, cover them).
    #[test]
    fn checks_the_file_and_its_folders() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("doproxy.yml");
        fs::write(&f, "x").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
        check_file(&f, "config file").unwrap();

        fs::set_permissions(&f, fs::Permissions::from_mode(0o660)).unwrap();
        let e = check_file(&f, "config file").unwrap_err();
        assert_eq!(crate::error::exit_code(&e), crate::error::EXIT_USAGE);
        assert!(e.to_string().contains("chmod go-w"), "{e}");
        fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();

        let open = dir.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let g = open.join("doproxy.yml");
        fs::write(&g, "x").unwrap();
        fs::set_permissions(&g, fs::Permissions::from_mode(0o600)).unwrap();
        let e = check_file(&g, "config file").unwrap_err().to_string();
        assert!(e.contains("its folder") && e.contains("sticky"), "{e}");
        // A missing file in that folder: refused too (anyone could create it).
        let e = check_if_present(&open.join("user-data.yml"), "userdata_file")
            .unwrap_err()
            .to_string();
        assert!(e.contains("refusing userdata_file"), "{e}");
        // With the sticky bit it is /tmp's case: accepted.
        fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
        check_file(&g, "config file").unwrap();
        check_if_present(&open.join("user-data.yml"), "userdata_file").unwrap();
        // A missing folder: nothing to check (the reader reports the missing file).
        check_if_present(&dir.path().join("no/such/file"), "userdata_file").unwrap();

        // A link is judged as a link (its owner) and then as its target.
        let link = dir.path().join("link.yml");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        check_file(&link, "config file").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o606)).unwrap();
        assert!(check_file(&link, "config file").is_err());
    }
}
