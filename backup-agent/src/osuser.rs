//! OS users for the files and processes a restore hands over: PostgreSQL refuses to run as root,
//! so a restore run as root gives the data directory to `--owner` and runs the server as that user
//! (and signals it, [`signal`]).

use std::path::Path;

/// Whether this process runs as root.
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// (uid, gid) of OS user `name` (through the C library's user database: /etc/passwd, LDAP,
/// sssd, whatever NSS is set up with), or its numeric uid[:gid].
pub fn lookup(name: &str) -> anyhow::Result<(u32, u32)> {
    if let Some((u, g)) = name.split_once(':')
        && let (Ok(u), Ok(g)) = (u.parse(), g.parse())
    {
        return Ok((u, g));
    }
    let c = std::ffi::CString::new(name)
        .map_err(|_| anyhow::anyhow!("OS user {name:?} has a NUL byte"))?;
    if let Some(e) =
        passwd(Key::Name(&c)).map_err(|e| anyhow::anyhow!("looking up OS user {name:?}: {e}"))?
    {
        return Ok((e.uid, e.gid));
    }
    if let Ok(u) = name.parse::<u32>() {
        return Ok((u, u));
    }
    anyhow::bail!("there is no OS user {name:?} (give a user name, or UID:GID)")
}

/// The name of this process's (effective) OS user: what PostgreSQL's peer authentication sees
/// on a socket connection of ours (it asks the same user database).
pub fn current_name() -> anyhow::Result<String> {
    // SAFETY: geteuid(2) takes nothing and cannot fail.
    #[allow(unsafe_code)]
    let uid = unsafe { libc::geteuid() };
    passwd(Key::Uid(uid))
        .map_err(|e| anyhow::anyhow!("looking up uid {uid} (this process): {e}"))?
        .map(|e| e.name)
        .ok_or_else(|| anyhow::anyhow!("uid {uid} (this process) has no user name"))
}

/// One entry of the user database.
struct Passwd {
    name: String,
    uid: u32,
    gid: u32,
}

#[derive(Clone, Copy)]
enum Key<'a> {
    Name(&'a std::ffi::CStr),
    Uid(u32),
}

/// getpwnam_r(3) / getpwuid_r(3): `None` when there is no such user.
fn passwd(key: Key) -> std::io::Result<Option<Passwd>> {
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: `passwd` is plain data (integers and pointers); zeroed is a valid value.
        #[allow(unsafe_code)]
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call: the key (a NUL-terminated string we
        // own), `pw`, `buf` with its true length, and `found`. The strings the C library puts in
        // `pw` point into `buf`, which outlives their use below.
        #[allow(unsafe_code)]
        let rc = unsafe {
            match key {
                Key::Name(n) => libc::getpwnam_r(
                    n.as_ptr(),
                    &mut pw,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    &mut found,
                ),
                Key::Uid(u) => {
                    libc::getpwuid_r(u, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut found)
                }
            }
        };
        if rc == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        if found.is_null() {
            return Ok(None);
        }
        // SAFETY: on success `pw.pw_name` is a NUL-terminated string in `buf`.
        #[allow(unsafe_code)]
        let name = unsafe { std::ffi::CStr::from_ptr(pw.pw_name) };
        return Ok(Some(Passwd {
            name: name.to_string_lossy().into_owned(),
            uid: pw.pw_uid,
            gid: pw.pw_gid,
        }));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What /etc/passwd says of `name`: (uid, gid).
    fn in_etc_passwd(name: &str) -> Option<(u32, u32)> {
        std::fs::read_to_string("/etc/passwd")
            .ok()?
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() > 3 && f[0] == name)
            .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
    }

    #[test]
    fn users_are_looked_up_by_name_number_and_uid() {
        assert_eq!(lookup("root").expect("root"), (0, 0));
        assert_eq!(lookup("999:998").expect("numeric"), (999, 998));
        if let Some(pg) = in_etc_passwd("postgres") {
            assert_eq!(lookup("postgres").expect("postgres"), pg);
        }
        let err = lookup("no-such-user-here")
            .expect_err("unknown")
            .to_string();
        assert!(
            err.contains("there is no OS user \"no-such-user-here\""),
            "{err}"
        );
        assert!(lookup("bad\0name").is_err());
        // SAFETY: geteuid(2) takes nothing and cannot fail.
        #[allow(unsafe_code)]
        let uid = unsafe { libc::geteuid() };
        let me = current_name().expect("this process's user");
        assert_eq!(lookup(&me).expect("me").0, uid);
    }
}
