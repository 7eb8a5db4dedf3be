//! End-to-end test helpers: spawning real `cairn` processes and etcdctl.
