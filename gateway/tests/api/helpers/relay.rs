//! A TCP relay the tests put between a node and a server it needs (the
//! CQL server, Redis), to cut the link and restore it.

use std::sync::{Arc, Mutex};

use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;

/// A TCP relay in front of a server (CQL, Redis) that a test can cut and
/// restore.
pub struct Relay {
    pub port: u16,
    target: String,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    pub async fn start(target: &str) -> Relay {
        let mut relay = Relay {
            port: 0,
            target: target.to_owned(),
            tasks: Arc::new(Mutex::new(Vec::new())),
        };
        relay.listen().await;
        relay
    }

    pub async fn listen(&mut self) {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("reuseaddr");
        socket
            .bind(format!("127.0.0.1:{}", self.port).parse().expect("addr"))
            .expect("bind relay");
        let listener = socket.listen(64).expect("listen");
        self.port = listener.local_addr().expect("addr").port();
        let target = self.target.clone();
        let tasks = Arc::clone(&self.tasks);
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                let pipe = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().expect("lock").push(pipe);
            }
        });
        self.tasks.lock().expect("lock").push(accept);
    }

    /// Drops the listener and every relayed connection.
    pub fn cut(&self) {
        for task in self.tasks.lock().expect("lock").drain(..) {
            task.abort();
        }
    }
}
