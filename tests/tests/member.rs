//! Guards `etcdctl member list` in its simple, table and JSON forms for a
//! one- and a three-member cluster: every member appears once with its
//! name, a unique non-zero id, and exactly the peer and client URLs it was
//! started with, and every member reports the same membership.

use std::collections::BTreeSet;

use cairn_tests::Cluster;

/// A member as `member list` describes it: (name, peer URLs, client URLs).
type MemberUrls = (String, Vec<String>, Vec<String>);

/// (name, peer URLs, client URLs) of every member, as the cluster should
/// report them.
fn expected_members(cluster: &Cluster) -> BTreeSet<MemberUrls> {
    (0..cluster.size())
        .map(|index| {
            (
                cluster.name(index).to_owned(),
                vec![cluster.peer_url(index)],
                vec![cluster.client_url(index)],
            )
        })
        .collect()
}

/// Reads `member list -w json` from one member: the ids and the
/// (name, peer URLs, client URLs) triples.
fn listed_members(cluster: &Cluster, index: usize) -> (Vec<u64>, BTreeSet<MemberUrls>) {
    let output = cluster
        .etcdctl_for(index)
        .run(&["member", "list", "-w", "json"])
        .expect_success();
    let json = output.json();
    let members = json["members"]
        .as_array()
        .unwrap_or_else(|| panic!("no members:\n{output}"));
    let strings = |value: &serde_json::Value| -> Vec<String> {
        value
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|url| url.as_str().map(str::to_owned))
            .collect()
    };
    let ids = members
        .iter()
        .map(|member| member["ID"].as_u64().unwrap_or(0))
        .collect();
    let triples = members
        .iter()
        .map(|member| {
            let is_learner = member["isLearner"].as_bool().unwrap_or(false);
            assert!(!is_learner, "no member is a learner:\n{output}");
            (
                member["name"].as_str().unwrap_or_default().to_owned(),
                strings(&member["peerURLs"]),
                strings(&member["clientURLs"]),
            )
        })
        .collect();
    (ids, triples)
}

#[test]
fn one_member_lists_itself() {
    let cluster = Cluster::start(1);
    let (ids, members) = listed_members(&cluster, 0);
    assert_eq!(members, expected_members(&cluster));
    assert_eq!(ids.len(), 1);
    assert_ne!(ids[0], 0, "member ids are non-zero");

    // Simple form: "<hex id>, started, <name>, <peer URLs>, <client URLs>, <is learner>".
    let simple = cluster.etcdctl().run(&["member", "list"]).expect_success();
    let expected = format!(
        "{:x}, started, {}, {}, {}, false\n",
        ids[0],
        cluster.name(0),
        cluster.peer_url(0),
        cluster.client_url(0)
    );
    assert_eq!(simple.stdout, expected);

    let table = cluster
        .etcdctl()
        .run(&["member", "list", "-w", "table"])
        .expect_success();
    let lines = table.stdout_lines();
    assert_eq!(
        lines.len(),
        5,
        "border, header, border, one row, border:\n{table}"
    );
    let header: Vec<&str> = lines[1]
        .split('|')
        .map(str::trim)
        .filter(|cell| !cell.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "ID",
            "STATUS",
            "NAME",
            "PEER ADDRS",
            "CLIENT ADDRS",
            "IS LEARNER"
        ]
    );
    let row: Vec<&str> = lines[3]
        .split('|')
        .map(str::trim)
        .filter(|cell| !cell.is_empty())
        .collect();
    let id_hex = format!("{:x}", ids[0]);
    let peer_url = cluster.peer_url(0);
    let client_url = cluster.client_url(0);
    assert_eq!(
        row,
        [
            id_hex.as_str(),
            "started",
            cluster.name(0),
            peer_url.as_str(),
            client_url.as_str(),
            "false"
        ]
    );
}

#[test]
fn three_members_agree_on_the_membership() {
    let cluster = Cluster::start(3);
    let expected = expected_members(&cluster);
    let (reference_ids, _) = listed_members(&cluster, 0);
    let unique: BTreeSet<u64> = reference_ids.iter().copied().collect();
    assert_eq!(unique.len(), 3, "ids are unique: {reference_ids:?}");
    assert!(!unique.contains(&0), "ids are non-zero: {reference_ids:?}");
    for index in 0..cluster.size() {
        let (ids, members) = listed_members(&cluster, index);
        assert_eq!(
            members,
            expected,
            "membership as seen by {}",
            cluster.name(index)
        );
        let ids: BTreeSet<u64> = ids.into_iter().collect();
        assert_eq!(ids, unique, "ids as seen by {}", cluster.name(index));
    }
    let table = cluster
        .etcdctl()
        .run(&["member", "list", "-w", "table"])
        .expect_success();
    assert_eq!(table.stdout_lines().len(), 7, "three rows:\n{table}");
    for index in 0..cluster.size() {
        assert!(table.stdout.contains(cluster.name(index)), "{table}");
    }
}
