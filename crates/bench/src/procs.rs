//! The processes under test: starting, stopping, and reading their CPU time and memory from
//! `/proc`.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::Fail;

/// Linux reports CPU time in clock ticks of `USER_HZ`, which is 100 on every architecture the
/// kernel's user ABI exposes.
const TICKS_PER_SEC: f64 = 100.0;

/// A child process, stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    pub child: Child,
}

impl Proc {
    pub fn spawn(name: &str, mut command: Command) -> Result<Self, Fail> {
        command.stdout(Stdio::null());
        Self::spawn_with_output(name, command)
    }

    /// [`Proc::spawn`], keeping the output the command was given.
    pub fn spawn_with_output(name: &str, mut command: Command) -> Result<Self, Fail> {
        command.stdin(Stdio::null());
        let child = command
            .spawn()
            .map_err(|err| format!("cannot start {name}: {err}"))?;
        Ok(Self {
            name: name.to_owned(),
            child,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now, in bytes.
    pub fn rss_bytes(&self) -> u64 {
        rss_bytes_of(self.pid())
    }

    /// Fails if the process has exited (it crashed, or could not start).
    pub fn check_alive(&mut self) -> Result<(), Fail> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("{} exited: {status}", self.name).into()),
            Err(err) => Err(format!("{}: {err}", self.name).into()),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Already reaped (stopped on purpose): its pid may belong to another process by now.
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User + system CPU seconds a process has used (0 once it is gone).
pub fn cpu_seconds_of(pid: u32) -> f64 {
    cpu_seconds(pid).unwrap_or(0.0)
}

fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it are plain.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SEC)
}

/// Resident memory of a process now, in bytes (0 once it is gone).
pub fn rss_bytes_of(pid: u32) -> u64 {
    status_kb(pid, "VmRSS:").map_or(0, |kb| kb * 1024)
}

/// Open file descriptors of a process (sockets included); 0 once it is gone.
pub fn open_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count() as u64)
}

/// Threads of a process; 0 once it is gone.
pub fn threads(pid: u32) -> u64 {
    status_kb(pid, "Threads:").unwrap_or(0)
}

fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|line| line.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A port nobody listens on now.
pub fn free_port() -> Result<u16, Fail> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Waits until `url` answers 200, at most `limit`.
pub async fn wait_ready(proc: &mut Proc, url: &str, limit: Duration) -> Result<(), Fail> {
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        proc.check_alive()?;
        if let Ok(response) = client.get(url).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("{} did not answer {url} within {limit:?}", proc.name).into())
}

/// A binary next to this one (the bench is built into the same target directory as the server
/// and the mock), or in `dir` when given.
pub fn sibling(dir: Option<&Path>, name: &str) -> Result<std::path::PathBuf, Fail> {
    let dir = match dir {
        Some(dir) => dir.to_path_buf(),
        None => std::env::current_exe()?
            .parent()
            .ok_or("the bench binary has no directory")?
            .to_path_buf(),
    };
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} not found: build it first (`just bench` does: cargo build --release -p paas-api -p paas-mock-upstream -p paas-bench)",
            path.display()
        )
        .into())
    }
}

/// The highest resident memory of a process while a measurement runs, sampled every 50 ms.
#[derive(Debug)]
pub struct PeakRss {
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl PeakRss {
    pub fn start(pid: u32) -> Self {
        let peak = Arc::new(AtomicU64::new(0));
        let sampled = Arc::clone(&peak);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            loop {
                tick.tick().await;
                if let Some(kb) = status_kb(pid, "VmRSS:") {
                    sampled.fetch_max(kb * 1024, Ordering::Relaxed);
                }
            }
        });
        Self { peak, task }
    }

    pub fn stop(self) -> u64 {
        self.task.abort();
        self.peak.load(Ordering::Relaxed)
    }
}
