//! Guards `etcdctl snapshot save`: it streams the Maintenance.Snapshot RPC
//! from one member into a file and reports success. For etcd the file is a
//! bbolt database that `snapshot status` can read; for cairn the format is
//! cairn's own, so only the file's existence and size are checked.

use cairn_tests::{Cluster, ServerKind};

#[test]
fn snapshot_save_writes_a_non_empty_file() {
    let cluster = Cluster::start(1);
    let etcdctl = cluster.etcdctl();
    for index in 0..20 {
        etcdctl.put(&format!("snap/{index:02}"), &format!("value {index}"));
    }
    let revision = etcdctl.get(&["snap/", "--prefix"]).revision;
    let path = cluster.scratch_path().join("backup.db");
    let path_text = path.to_string_lossy().into_owned();

    let output = etcdctl
        .run(&["snapshot", "save", &path_text])
        .expect_success();
    assert!(
        output
            .stdout
            .contains(&format!("Snapshot saved at {path_text}")),
        "{output}"
    );
    let size = std::fs::metadata(&path)
        .map(|metadata| metadata.len())
        .unwrap_or(0);
    assert!(
        size > 0,
        "snapshot file {} is empty or missing",
        path.display()
    );
    assert!(
        !cluster.scratch_path().join("backup.db.part").exists(),
        "the partial file is renamed"
    );

    if cluster.server_kind() == ServerKind::Etcd {
        let status = etcdctl
            .run(&["snapshot", "status", &path_text, "-w", "json"])
            .expect_success();
        let json = status.json();
        assert_eq!(json["revision"].as_i64(), Some(revision), "{status}");
        assert!(json["totalKey"].as_i64().unwrap_or(0) >= 20, "{status}");
    }
}
