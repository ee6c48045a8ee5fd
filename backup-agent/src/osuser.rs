//! OS users for the files and processes a restore hands over: PostgreSQL refuses to run as root,
//! so a restore run as root gives the data directory to `--owner` and runs the server as that user
//! (and signals it, [`signal`]).

use std::path::Path;

/// Whether this process runs as root.
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// (uid, gid) of OS user `name` (from /etc/passwd), or its numeric uid[:gid].
pub fn lookup(name: &str) -> anyhow::Result<(u32, u32)> {
    if let Some((u, g)) = name.split_once(':')
        && let (Ok(u), Ok(g)) = (u.parse(), g.parse())
    {
        return Ok((u, g));
    }
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() > 3 && f[0] == name {
            return Ok((f[2].parse()?, f[3].parse()?));
        }
    }
    if let Ok(u) = name.parse::<u32>() {
        return Ok((u, u));
    }
    anyhow::bail!("there is no OS user {name:?} (give a user name, or UID:GID)")
}

/// The name of this process's (effective) OS user, from /etc/passwd: what PostgreSQL's peer
/// authentication sees on a socket connection of ours.
pub fn current_name() -> anyhow::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self")?.uid();
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[2].parse() == Ok(uid))
        .map(|f| f[0].to_string())
        .ok_or_else(|| anyhow::anyhow!("uid {uid} (this process) has no entry in /etc/passwd"))
}

/// Gives a tree to (uid, gid), never following symbolic links.
pub fn chown_tree(p: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid))?;
    let m = std::fs::symlink_metadata(p)?;
    if m.is_dir() {
        for e in std::fs::read_dir(p)? {
            chown_tree(&e?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Sends `sig` to process `pid` (a child of ours that has not been reaped, so the pid is its own).
pub fn signal(pid: u32, sig: libc::c_int) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(std::io::Error::other)?;
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(pid, sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
