//! Child processes of the benchmark: real collectors (`anonstats serve` of
//! the collector binary) and the baseline server (this binary's hidden
//! `baseline` command).

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// A server running as a child process, its logs in a file; stopped (and
/// waited for) when dropped.
pub struct ServerProcess {
    child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl ServerProcess {
    /// Runs `program` with `args`, logging to `log`, and waits for the JSON
    /// log line announcing its port.
    pub fn start(
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        log: &Path,
    ) -> anyhow::Result<Self> {
        let file = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            // The stats API answers the benchmark's token, and the secret
            // is the benchmark's (seeded instances must hash alike).
            .env("ANONSTATS_STATS_TOKEN", super::http::BENCH_TOKEN)
            .env_remove("ANONSTATS_BIND")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let mut process = ServerProcess {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log: log.to_owned(),
        };
        let port = process.wait_for_port()?;
        process.addr.set_port(port);
        Ok(process)
    }

    fn wait_for_port(&mut self) -> anyhow::Result<u16> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            for line in text.lines().filter(|l| l.contains("listening")) {
                let port = serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| v["fields"]["port"].as_u64().or(v["port"].as_u64()));
                if let Some(port) = port {
                    return Ok(port as u16);
                }
            }
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("child process exited ({status}) before listening:\n{text}");
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "child process did not listen within 120 s:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Bytes this process has caused to be written to storage so far
    /// (`write_bytes` of `/proc/<pid>/io`, counted when pages are dirtied).
    pub fn written_bytes(&self) -> Option<u64> {
        written_bytes(self.pid())
    }

    /// Peak resident memory so far (VmHWM), in bytes.
    pub fn peak_rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// Asks the process to stop (SIGTERM: it finishes in-flight requests and
    /// commits what it accepted) and waits; kills it after 60 s.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.terminate()
    }

    fn terminate(&mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child.kill()?;
        self.child.wait()?;
        anyhow::bail!("child process {} did not stop on SIGTERM", self.child.id())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The collector binary: `given`, or `anonstats` next to this binary (the
/// same target directory, where `cargo build` puts both). Missing is an
/// error: the benchmark measures a binary, it does not build one.
pub fn collector(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(p) => p.to_owned(),
        None => {
            let exe = std::env::current_exe().context("cannot find the anonstats-bench binary")?;
            exe.with_file_name(format!("anonstats{}", std::env::consts::EXE_SUFFIX))
        }
    };
    anyhow::ensure!(
        path.is_file(),
        "no collector binary at {}: build it first (`cargo build --release` builds the \
         collector and the benchmark) or give --collector PATH",
        path.display()
    );
    Ok(path)
}

/// Whether `anonstats serve` of `collector` has a flag (an older collector
/// may lack some; the benchmark only passes the ones it knows).
pub fn serve_has_flag(collector: &Path, flag: &str) -> bool {
    Command::new(collector)
        .args(["serve", "--help"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split(|c: char| c.is_whitespace() || c == ',' || c == '=')
                .any(|w| w == flag)
        })
        .unwrap_or(false)
}

/// `write_bytes` of `/proc/<pid>/io`.
pub fn written_bytes(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let line = io.lines().find(|l| l.starts_with("write_bytes:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The sum of `write_bytes` over the processes named `postgres` that this
/// user may read: the server's writes when it runs on this machine. Bytes
/// that a process which exits meanwhile wrote are not counted, nor pages
/// that the server's checkpoints write later.
pub fn postgres_written_bytes() -> Option<u64> {
    let mut total = None;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim_end() == "postgres" {
            if let Some(n) = written_bytes(pid) {
                total = Some(total.unwrap_or(0) + n);
            }
        }
    }
    total
}
