//! Shared by the node tests: start clusters of in-process nodes on
//! loopback, and wait on predicates with deadlines (never fixed sleeps).

#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_core::kv::{PutRequest, RangeRequest};
use cairn_server::node::{
    start, start_on_disk, InitialMember, MemoryDisk, NodeConfig, NodeError, NodeHandle, NodeTask,
    StartMode,
};
use cairn_server::storage::OsDisk;

/// Distinguishes the data dirs of clusters in one test process.
static CLUSTER_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Every wait in the node tests is bounded by this.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Polling period of `wait_for`.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// A fast tick so elections take a fraction of a second.
pub const TEST_TICK: Duration = Duration::from_millis(20);

/// Polls `condition` until it yields `Some`, failing the test after `TEST_TIMEOUT`.
pub async fn wait_for<T, F, Fut>(what: &str, mut condition: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let poll = async {
        loop {
            if let Some(value) = condition().await {
                return value;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    };
    match tokio::time::timeout(TEST_TIMEOUT, poll).await {
        Ok(value) => value,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// Free loopback ports (bound, then released for the nodes to take).
pub fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().unwrap().port())
        .collect()
}

/// Where a test node keeps its log.
pub enum TestDisk {
    /// The real write-ahead log in `config.data_dir` on the OS file system.
    Os,
    /// In memory, with failure injection.
    Memory(MemoryDisk),
}

/// One member slot of a test cluster.
pub struct TestNode {
    pub config: NodeConfig,
    pub disk: TestDisk,
    pub running: Option<(NodeHandle, NodeTask)>,
}

/// A cluster of in-process nodes; its data dirs are removed when dropped.
pub struct TestCluster {
    pub nodes: Vec<TestNode>,
    root: PathBuf,
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some((_, task)) = node.running.take() {
                task.abort();
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

impl TestCluster {
    /// Configures `size` founding members (not started).
    pub fn configure(size: usize, tune: impl Fn(&mut NodeConfig)) -> TestCluster {
        let ports = free_ports(size);
        let root = std::env::temp_dir().join(format!(
            "cairn-node-test-{}-{}",
            std::process::id(),
            CLUSTER_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        let initial: Vec<InitialMember> = ports
            .iter()
            .enumerate()
            .map(|(i, port)| InitialMember {
                name: format!("node-{i}"),
                peer_urls: vec![format!("http://127.0.0.1:{port}")],
            })
            .collect();
        let nodes = ports
            .iter()
            .enumerate()
            .map(|(i, port)| {
                let mut config = NodeConfig::new(
                    format!("node-{i}"),
                    "test-cluster",
                    initial.clone(),
                    StartMode::New,
                    format!("http://127.0.0.1:{port}"),
                    vec![format!("http://127.0.0.1:{}", 30000 + i)],
                    root.join(format!("node-{i}")),
                )
                .unwrap();
                config.tick_interval = TEST_TICK;
                config.request_timeout = Duration::from_secs(3);
                tune(&mut config);
                TestNode {
                    config,
                    disk: TestDisk::Os,
                    running: None,
                }
            })
            .collect();
        TestCluster { nodes, root }
    }

    /// Configures one more member that joins the running cluster (start
    /// it after a MemberAdd); returns its slot.
    pub async fn add_member_slot(&mut self) -> usize {
        let slot = self.nodes.len();
        let port = free_ports(1)[0];
        let mut initial: Vec<InitialMember> = self.nodes[0]
            .config
            .initial_cluster
            .values()
            .cloned()
            .collect();
        let name = format!("node-{slot}");
        let peer_url = format!("http://127.0.0.1:{port}");
        initial.push(InitialMember {
            name: name.clone(),
            peer_urls: vec![peer_url.clone()],
        });
        let template = &self.nodes[0].config;
        let mut config = NodeConfig::new(
            name,
            template.cluster_token.clone(),
            initial,
            StartMode::Existing,
            peer_url,
            vec![format!("http://127.0.0.1:{}", 30000 + slot)],
            self.root.join(format!("node-{slot}")),
        )
        .unwrap();
        config.tick_interval = template.tick_interval;
        config.request_timeout = template.request_timeout;
        config.snapshot_count = template.snapshot_count;
        self.nodes.push(TestNode {
            config,
            disk: TestDisk::Os,
            running: None,
        });
        slot
    }

    /// Configures and starts `size` members.
    pub async fn start(size: usize, tune: impl Fn(&mut NodeConfig)) -> TestCluster {
        let mut cluster = TestCluster::configure(size, tune);
        for i in 0..size {
            cluster.start_node(i).await;
        }
        cluster
    }

    /// Starts (or restarts) node `i` on its disk.
    pub async fn start_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        assert!(node.running.is_none(), "node {i} is already running");
        let started = match &node.disk {
            TestDisk::Os => start_on_disk(node.config.clone(), Arc::new(OsDisk)).await,
            TestDisk::Memory(disk) => {
                let (store, recovery) = disk.open();
                start(node.config.clone(), Box::new(store), recovery).await
            }
        };
        let started = started.unwrap_or_else(|error| panic!("node {i} failed to start: {error}"));
        node.running = Some(started);
    }

    /// Kills node `i` as a crash would.
    pub async fn kill(&mut self, i: usize) {
        let (_, task) = self.nodes[i].running.take().expect("node is running");
        task.abort();
        let _ = tokio::time::timeout(TEST_TIMEOUT, task.wait()).await;
    }

    pub fn handle(&self, i: usize) -> &NodeHandle {
        &self.nodes[i].running.as_ref().expect("node is running").0
    }

    pub fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].running.is_some())
            .collect()
    }

    /// Waits until every running node agrees on one leader among them; returns its slot.
    pub async fn wait_for_leader(&self) -> usize {
        wait_for("a leader all running nodes agree on", || async {
            let mut leader = None;
            for i in self.running() {
                let status = self.handle(i).status().await.ok()?;
                if status.leader == 0 {
                    return None;
                }
                match leader {
                    None => leader = Some(status.leader),
                    Some(known) if known != status.leader => return None,
                    Some(_) => {}
                }
            }
            let leader = leader?;
            self.running()
                .into_iter()
                .find(|&i| self.nodes[i].config.member_id.0 == leader)
        })
        .await
    }

    /// Puts until a put succeeds through node `i` (retrying retryable errors).
    pub async fn put(&self, i: usize, key: &str, value: &str) -> i64 {
        let handle = self.handle(i).clone();
        wait_for(&format!("put {key} through node {i}"), || {
            let handle = handle.clone();
            async move {
                let request = PutRequest {
                    key: key.as_bytes().to_vec(),
                    value: value.as_bytes().to_vec(),
                    ..PutRequest::default()
                };
                match handle.put(request).await {
                    Ok((header, _)) => Some(header.revision),
                    Err(error) if retryable(&error) => None,
                    Err(error) => panic!("put failed: {error}"),
                }
            }
        })
        .await
    }

    /// The value of `key` on node `i`, read linearizably or serializably.
    pub async fn get(
        &self,
        i: usize,
        key: &str,
        serializable: bool,
    ) -> Result<Option<String>, NodeError> {
        let request = RangeRequest {
            key: key.as_bytes().to_vec(),
            serializable,
            ..RangeRequest::default()
        };
        let (_, response) = self.handle(i).range(request).await?;
        Ok(response
            .kvs
            .first()
            .map(|kv| String::from_utf8(kv.value.clone()).unwrap()))
    }

    /// Waits until node `i` serves `key` = `value` with the given read mode.
    pub async fn wait_for_value(&self, i: usize, key: &str, value: &str, serializable: bool) {
        wait_for(&format!("{key}={value} on node {i}"), || async {
            match self.get(i, key, serializable).await {
                Ok(Some(found)) if found == value => Some(()),
                Ok(_) => None,
                Err(error) if retryable(&error) => None,
                Err(error) => panic!("read failed: {error}"),
            }
        })
        .await
    }

    pub async fn shutdown_all(mut self) {
        for i in self.running() {
            if let Some((handle, task)) = self.nodes[i].running.take() {
                let _ = handle.shutdown().await;
                let _ = tokio::time::timeout(TEST_TIMEOUT, task.wait()).await;
            }
        }
    }
}

/// Errors a client retries.
pub fn retryable(error: &NodeError) -> bool {
    matches!(
        error,
        NodeError::NoLeader | NodeError::LeaderChanged | NodeError::Timeout
    )
}
