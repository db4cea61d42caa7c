//! The shell commands of README.md and docs/running.md, run against the real
//! binary: a documented command that the binary no longer accepts (a flag
//! renamed, a subcommand gone) fails this test.
//!
//! Every ```sh block runs, in order, in a temporary directory where the
//! default database does not exist yet, unless the small skip list below
//! names it. How the docs spell the binary (`cargo run --release --`,
//! `anonstats`) is rewritten to the test binary; a block that starts
//! `anonstats serve` is started in the background on a free port, and the
//! documented local address (127.0.0.1:8080) in the blocks after it is
//! rewritten to that port. A command passes when it exits 0; `curl` is
//! run with `--fail-with-body`, so it passes on a 2xx (or 3xx) only.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The documents whose commands are run.
const DOCS: &[&str] = &["README.md", "docs/running.md", "docs/simulate.md"];

/// Blocks that cannot run here, each keyed by a substring that identifies
/// it, with the reason. Anything not listed runs: keep this short.
const SKIP: &[(&str, &str)] = &[
    ("cargo test", "runs this test suite"),
    ("cargo build", "builds the binary this test already has"),
    ("docker", "needs Docker"),
    ("db.internal", "needs the example's PostgreSQL host"),
    ("systemctl", "needs systemd"),
    ("journalctl", "needs systemd"),
];

/// Programs other than the binary that blocks call: a block calling one
/// that is not installed is skipped, saying so.
const OPTIONAL_PROGRAMS: &[&str] = &["sqlite3", "curl"];

/// How the docs spell the binary; each becomes `anonstats`, which is the
/// test binary on the blocks' PATH. Longest first.
const BINARY_SPELLINGS: &[&str] = &[
    "cargo run --release --",
    "cargo run --",
    "./target/release/anonstats",
    "target/release/anonstats",
];

/// The documented address of a local collector.
const ADDRESSES: &[&str] = &["127.0.0.1:8080", "localhost:8080", "0.0.0.0:8080"];

/// Longest a block may run.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(120);

/// Run before each block: curl fails on an HTTP error status.
const PREAMBLE: &str =
    "set -e\ncurl() { command curl --silent --show-error --fail-with-body \"$@\"; }\n";

/// One fenced shell block of a document.
#[derive(Debug, Clone)]
struct Block {
    /// `file:line` of its opening fence.
    origin: String,
    text: String,
}

/// The ```sh (or bash, shell) blocks of a Markdown text.
fn shell_blocks(file: &str, markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut current: Option<Block> = None;
    for (n, line) in markdown.lines().enumerate() {
        let fence = line.trim_start();
        match &mut current {
            Some(block) if fence.starts_with("```") => {
                blocks.push(block.clone());
                current = None;
            }
            Some(block) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
            None if ["```sh", "```bash", "```shell"].contains(&fence.trim_end()) => {
                current = Some(Block {
                    origin: format!("{file}:{}", n + 1),
                    text: String::new(),
                });
            }
            None => {}
        }
    }
    blocks
}

/// The block's commands, with backslash continuations joined.
fn commands(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        match line.strip_suffix('\\') {
            Some(start) => {
                current.push_str(start);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                if !current.trim().is_empty() {
                    out.push(std::mem::take(&mut current));
                }
                current.clear();
            }
        }
    }
    if !current.trim().is_empty() {
        out.push(current);
    }
    out
}

/// Whether a command runs `anonstats serve` (after global options).
fn is_serve(command: &str) -> bool {
    let tokens: Vec<&str> = command.split_whitespace().collect();
    let Some(start) = tokens.iter().position(|t| *t == "anonstats") else {
        return false;
    };
    let mut rest = tokens[start + 1..].iter();
    while let Some(t) = rest.next() {
        if *t == "--log-format" {
            rest.next();
        } else if !t.starts_with('-') {
            return *t == "serve";
        }
    }
    false
}

fn installed(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn free_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// `GET /healthz` answers 200.
fn healthy(address: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(address) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

/// Stops a process group started by [`Runner::spawn`].
fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", "--", &format!("-{}", child.id())])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Reads a file the child wrote its output to.
fn read(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

/// Runs blocks one after the other, in one working directory, with at most
/// one collector in the background.
struct Runner {
    dir: tempfile::TempDir,
    bin: PathBuf,
    server: Option<(Child, String, PathBuf)>,
    /// What happened to each block, for the failure message and the log.
    log: Vec<String>,
    runs: usize,
}

impl Runner {
    fn new() -> Runner {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join(".bin");
        std::fs::create_dir(&bin).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_anonstats"), bin.join("anonstats")).unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        Runner {
            dir,
            bin,
            server: None,
            log: Vec::new(),
            runs: 0,
        }
    }

    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    fn address(&self) -> Option<&str> {
        self.server.as_ref().map(|(_, a, _)| a.as_str())
    }

    /// The command as run here.
    fn rewrite(&self, command: &str) -> String {
        let mut out = command.to_owned();
        for spelling in BINARY_SPELLINGS {
            out = out.replace(spelling, "anonstats");
        }
        if let Some(address) = self.address() {
            for documented in ADDRESSES {
                out = out.replace(documented, address);
            }
        }
        out
    }

    /// `sh -c SCRIPT` in its own process group, with only the environment
    /// the docs assume: no database or collector settings from outside.
    fn spawn(&self, script: &str, bind: &str, output: &Path) -> Child {
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let file = std::fs::File::create(output).unwrap();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &format!("{PREAMBLE}{script}")])
            .current_dir(self.work())
            .env_clear()
            .env("PATH", path)
            .env("HOME", self.dir.path())
            .env("ANONSTATS_BIND", bind)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        if let Some(address) = self.address() {
            cmd.env("ANONSTATS_COLLECTOR", format!("http://{address}"));
        }
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        cmd.spawn().expect("start sh")
    }

    /// Runs one block; `Err` says what failed.
    fn run(&mut self, block: &Block) -> Result<(), String> {
        if let Some((key, reason)) = SKIP.iter().find(|(key, _)| block.text.contains(key)) {
            self.log
                .push(format!("skipped {} ({reason}: `{key}`)", block.origin));
            return Ok(());
        }
        if let Some(p) = OPTIONAL_PROGRAMS
            .iter()
            .find(|p| block.text.contains(&format!("{p} ")) && !installed(p))
        {
            self.log
                .push(format!("skipped {} ({p} is not installed)", block.origin));
            return Ok(());
        }
        // Consecutive commands run as one script, so that they share shell
        // state; a serve command starts a collector in the background.
        let mut script = String::new();
        for command in commands(&block.text) {
            if is_serve(&self.rewrite(&command)) {
                self.finish(&block.origin, &std::mem::take(&mut script))?;
                self.serve(&block.origin, &command)?;
            } else {
                script.push_str(&self.rewrite(&command));
                script.push('\n');
            }
        }
        self.finish(&block.origin, &script)?;
        self.log.push(format!("ran {}", block.origin));
        Ok(())
    }

    fn finish(&mut self, origin: &str, script: &str) -> Result<(), String> {
        if script.trim().is_empty() {
            return Ok(());
        }
        self.runs += 1;
        let output = self.dir.path().join(format!("out-{}", self.runs));
        let mut child = self.spawn(script, "127.0.0.1:0", &output);
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if started.elapsed() > BLOCK_TIMEOUT {
                stop(&mut child);
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        match status {
            Some(s) if s.success() => Ok(()),
            other => Err(format!(
                "{origin}: {}\n--- as run:\n{script}--- output:\n{}",
                match other {
                    Some(s) => format!("failed ({s})"),
                    None => format!("did not finish within {BLOCK_TIMEOUT:?}"),
                },
                read(&output)
            )),
        }
    }

    fn serve(&mut self, origin: &str, command: &str) -> Result<(), String> {
        if let Some((mut old, _, _)) = self.server.take() {
            stop(&mut old);
        }
        // A free port can be taken by another test between our probe and
        // the collector's bind: try another one then.
        let mut result = Ok(());
        for _ in 0..5 {
            result = self.serve_on(origin, command, free_address());
            match &result {
                Err(e) if e.contains("cannot listen") => continue,
                _ => break,
            }
        }
        result
    }

    fn serve_on(&mut self, origin: &str, command: &str, address: String) -> Result<(), String> {
        let command = self.rewrite(command);
        let command = command.trim_end().trim_end_matches('&');
        // The documented addresses now mean the collector started here.
        let mut command = command.to_owned();
        for documented in ADDRESSES {
            command = command.replace(documented, &address);
        }
        self.runs += 1;
        let output = self.dir.path().join(format!("out-{}", self.runs));
        let mut child = self.spawn(&command, &address, &output);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if healthy(&address) {
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                return Err(format!(
                    "{origin}: the collector exited ({status})\n--- as run:\n{command}\n--- output:\n{}",
                    read(&output)
                ));
            }
            if Instant::now() > deadline {
                stop(&mut child);
                return Err(format!(
                    "{origin}: the collector did not answer on {address}\n--- as run:\n{command}\n--- output:\n{}",
                    read(&output)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.server = Some((child, address, output));
        Ok(())
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        if let Some((mut child, _, _)) = self.server.take() {
            stop(&mut child);
        }
    }
}

/// Runs every block of `docs` (name, Markdown) in order.
fn run_docs(docs: &[(&str, String)]) -> Result<Vec<String>, String> {
    let mut runner = Runner::new();
    for (name, text) in docs {
        for block in shell_blocks(name, text) {
            if let Err(e) = runner.run(&block) {
                return Err(format!("{}\n{e}", runner.log.join("\n")));
            }
        }
    }
    Ok(std::mem::take(&mut runner.log))
}

#[test]
fn the_documented_commands_run() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs: Vec<(&str, String)> = DOCS
        .iter()
        .map(|d| (*d, std::fs::read_to_string(root.join(d)).unwrap()))
        .collect();
    let log = run_docs(&docs).unwrap_or_else(|e| panic!("a documented command failed:\n{e}"));
    let ran = log.iter().filter(|l| l.starts_with("ran ")).count();
    assert!(ran >= 3, "too few blocks ran:\n{}", log.join("\n"));
    let _ = writeln!(std::io::stderr(), "{}", log.join("\n"));
}

/// The runner itself: drifting commands fail, the rewriting reaches the
/// collector it started.
#[test]
fn a_drifting_command_fails_the_docs_test() {
    let doc = |body: &str| vec![("doc.md", format!("```sh\n{body}\n```\n"))];
    let serve = "cargo run --release -- serve\n```\n\n```sh\n";
    for drifted in [
        "anonstats serve --no-such-flag",
        "anonstats stats no-such-report",
        "anonstats migrate --datbase x.db",
        &format!("{serve}curl http://127.0.0.1:8080/api/v1/no-such-route"),
    ] {
        assert!(run_docs(&doc(drifted)).is_err(), "{drifted} passed");
    }
    let log = run_docs(&doc(&format!(
        "{serve}curl -i http://127.0.0.1:8080/api/v1/catalog\n\
         anonstats --log-format json stats summary"
    )))
    .unwrap();
    assert_eq!(log, ["ran doc.md:1", "ran doc.md:5"]);
    let log = run_docs(&doc("docker compose up -d")).unwrap();
    assert_eq!(log, ["skipped doc.md:1 (needs Docker: `docker`)"]);
}

#[test]
fn blocks_and_commands_are_read_as_written() {
    let md = "text\n```sh\na \\\n  b\nc\n```\n```json\n{}\n```\n  ```bash\nd\n  ```\n";
    let blocks = shell_blocks("x.md", md);
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[0].origin, "x.md:2");
    assert_eq!(commands(&blocks[0].text), ["a    b", "c"]);
    assert_eq!(commands(&blocks[1].text), ["d"]);
    assert!(is_serve("anonstats serve"));
    assert!(is_serve("X=1 anonstats --log-format json serve --bind 1"));
    assert!(!is_serve("anonstats stats summary --database serve.db"));
    assert!(!is_serve("anonstats simulate"));
}
