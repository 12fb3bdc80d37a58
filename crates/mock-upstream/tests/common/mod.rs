//! Starting the mock on port 0, in-process.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use paas_mock_upstream::{MockConfig, server};

/// A running mock.
pub struct Mock {
    pub addr: SocketAddr,
    pub handle: actix_web::dev::ServerHandle,
}

impl Mock {
    pub async fn start(config: MockConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = server(config, listener).unwrap();
        let handle = server.handle();
        tokio::spawn(server);
        Self { addr, handle }
    }

    /// Defaults with one worker and no waiting, unless the test says otherwise.
    pub fn config() -> MockConfig {
        MockConfig {
            workers: 1,
            chunk_interval: Duration::ZERO,
            ..MockConfig::default()
        }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}
