//! The few system calls the standard library does not offer, each behind a
//! safe function. This is the one module allowed `unsafe` (the crate denies
//! it everywhere else); every block states why it is sound.
#![allow(unsafe_code)]

use std::io;
use std::path::Path;

/// Sets the calling thread's nice value. On Linux a thread has a priority
/// of its own (`PRIO_PROCESS` with 0 names the calling thread); raising
/// the priority (a lower value) needs the privilege to (root,
/// `CAP_SYS_NICE`, or an `RLIMIT_NICE` such as systemd's `LimitNICE=`).
pub fn set_thread_nice(nice: i32) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority takes plain integers and reads no memory.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = nice;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "thread priorities are set on Linux only",
        ))
    }
}

/// The calling thread's nice value (0 where threads have none of their own).
pub fn thread_nice() -> i32 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getpriority takes plain integers and reads no memory.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

/// Asks the kernel to drop the cached pages of `file`, so that the next
/// read comes from the disk. Best effort: an error changes nothing.
pub fn drop_cached_pages(file: &std::fs::File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: the descriptor is open for the whole call; no memory is
        // passed.
        let _ = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

/// Whether this process may create files in `dir`, as the kernel decides for
/// its effective user (permissions, read-only mounts).
pub fn may_create_files_in(dir: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: c_path is a valid NUL-terminated string for the whole call.
    let rc = unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            libc::W_OK | libc::X_OK,
            libc::AT_EACCESS,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
