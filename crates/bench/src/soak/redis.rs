//! The soak's own Redis: a `redis-server` on a free port, which the soak stops and starts again
//! (a "blip"). The machine's Redis (6379) is never touched.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::Fail;
use crate::procs::{Proc, free_port};

/// A private `redis-server` without persistence: started again, it is empty, as a Redis that
/// lost its memory (a crash, a failover to an empty replica).
#[derive(Debug)]
pub struct PrivateRedis {
    pub port: u16,
    log: PathBuf,
    proc: Option<Proc>,
}

impl PrivateRedis {
    /// Starts it on a free port, logging to `log`.
    pub async fn start(log: PathBuf) -> Result<Self, Fail> {
        let mut redis = Self {
            port: free_port()?,
            log,
            proc: None,
        };
        redis.up().await?;
        Ok(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it again on the same port and waits until it accepts connections.
    pub async fn up(&mut self) -> Result<(), Fail> {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--logfile", &self.log.to_string_lossy()]);
        let mut proc = Proc::spawn("redis-server (soak)", command)?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            proc.check_alive()?;
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!("redis-server did not listen on {}", self.port).into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.proc = Some(proc);
        Ok(())
    }

    /// Kills it (SIGKILL: no goodbye to its clients, as when a host or container dies).
    pub fn down(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            let _ = proc.child.kill();
            let _ = proc.child.wait();
        }
    }
}
