//! Runs a browser spec of the dashboard (`services/dashboard/e2e/*.mjs`, Playwright driving Debian's
//! Chromium) against a running stack, and answers the spec's requests that only the test can carry
//! out (stopping and starting nats-server): the spec writes a command line on its stdout
//! (`@@STOP_NATS`, `@@START_NATS`) and waits for `ok` (or `error ...`) on its stdin.

use anyhow::Context as _;
use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The repository's root.
#[must_use]
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// `services/dashboard`.
#[must_use]
pub fn dashboard_dir() -> PathBuf {
    repo_root().join("services/dashboard")
}

/// Checks that the page is built, its npm packages installed and Chromium present; the error says
/// what to run.
///
/// # Errors
/// Something is missing.
pub fn check_prerequisites() -> anyhow::Result<()> {
    let d = dashboard_dir();
    anyhow::ensure!(
        d.join("dist/index.html").is_file(),
        "the dashboard is not built ({}): run `make dashboard` (npm ci && npm run build in services/dashboard)",
        d.join("dist").display()
    );
    anyhow::ensure!(
        d.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run `make dashboard` (npm ci in services/dashboard)"
    );
    anyhow::ensure!(
        std::path::Path::new(&chromium()).is_file(),
        "Chromium not found at {}: `apt-get install -y chromium` (make dashboard does it)",
        chromium()
    );
    Ok(())
}

/// Chromium's path (`SWITCHYARD_CHROMIUM`, default Debian's `/usr/bin/chromium`).
#[must_use]
pub fn chromium() -> String {
    std::env::var("SWITCHYARD_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

/// Where screenshots go: `target/dashboard-screenshots` at the repository's root.
#[must_use]
pub fn screenshot_dir() -> PathBuf {
    repo_root().join("target/dashboard-screenshots")
}

/// Runs `node e2e/<spec>` in `services/dashboard` with `env`; `on_command` carries out each
/// `@@COMMAND` line the spec prints. Returns the spec's other output lines; fails when the spec
/// exits non-zero or runs longer than `timeout`.
///
/// # Errors
/// The spec failed, timed out, or could not be started.
pub fn run_spec(
    spec: &str,
    env: &[(&str, String)],
    timeout: Duration,
    mut on_command: impl FnMut(&str) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<String>> {
    check_prerequisites()?;
    std::fs::create_dir_all(screenshot_dir())?;
    let mut cmd = Command::new("node");
    cmd.arg(format!("e2e/{spec}"))
        .current_dir(dashboard_dir())
        .env("CHROMIUM", chromium())
        .env("SCREENSHOT_DIR", screenshot_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .context("starting node (Node.js 20 is needed)")?;
    let mut stdin = child.stdin.take().context("spec stdin")?;
    let stdout = child.stdout.take().context("spec stdout")?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    loop {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!(
                "{spec} did not finish in {timeout:?}; its output:\n{}",
                out.join("\n")
            );
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                if let Some(command) = line.strip_prefix("@@") {
                    let answer = match on_command(command.trim()) {
                        Ok(()) => "ok".to_string(),
                        Err(e) => format!("error {e:#}"),
                    };
                    writeln!(stdin, "{answer}")?;
                    stdin.flush()?;
                } else {
                    println!("[{spec}] {line}");
                    out.push(line);
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = child.wait()?;
    anyhow::ensure!(
        status.success(),
        "{spec} failed ({status}); its output:\n{}",
        out.join("\n")
    );
    Ok(out)
}

/// A WAV file (16-bit PCM mono, 8 kHz) of `seconds` of a tone: media Chromium plays from any
/// build, so a `<video>` element can play and seek it.
#[must_use]
pub fn wav(seconds: u32) -> Vec<u8> {
    let rate = 8000u32;
    let samples = rate * seconds;
    let mut v = Vec::with_capacity(44 + samples as usize * 2);
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + samples * 2).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&(rate * 2).to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&16u16.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&(samples * 2).to_le_bytes());
    for i in 0..samples {
        let t = f64::from(i) / f64::from(rate);
        let s = (t * 440.0 * std::f64::consts::TAU).sin() * 8000.0;
        v.extend_from_slice(&(s as i16).to_le_bytes());
    }
    v
}
