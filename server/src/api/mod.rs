//! etcd v3 gRPC services (KV, Watch, Lease, Cluster, Maintenance, Lock, Election) and HTTP /health, /metrics.

pub mod proto;
