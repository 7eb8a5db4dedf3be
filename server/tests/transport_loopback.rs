//! The peer transport over real loopback TCP: two members exchange
//! messages; a member of another cluster, or a connection addressed to
//! another member, is refused; garbage bytes and oversized frames close
//! only the offending connection; a full queue drops instead of growing.

use std::collections::BTreeMap;
use std::time::Duration;

use cairn_core::raft::{Index, Message, MessageBody, NodeId, Term};
use cairn_server::transport::{
    PeerMessage, PeerRequest, SendError, Transport, TransportConfig, TransportEvent,
};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// Every wait in these tests is bounded by this.
const TEST_TIMEOUT: Duration = Duration::from_secs(20);

fn config(cluster_id: u64, member: u64) -> TransportConfig {
    let mut config = TransportConfig::new(cluster_id, NodeId(member), "127.0.0.1:0");
    config.reconnect_backoff_min = Duration::from_millis(10);
    config.reconnect_backoff_max = Duration::from_millis(100);
    config
}

fn heartbeat(from: u64, to: u64, commit: u64) -> PeerMessage {
    PeerMessage::Raft(Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(1),
        body: MessageBody::Heartbeat {
            commit: Index(commit),
            context: Vec::new(),
        },
    })
}

fn url(transport: &Transport) -> Vec<String> {
    vec![format!("http://{}", transport.local_address())]
}

/// Sends `make(n)` every few milliseconds until `events` yields a `Received`
/// message, which is returned. Sending repeatedly tolerates the first
/// messages dropped while the connection is being set up.
async fn send_until_received(
    sender: &Transport,
    to: u64,
    message: PeerMessage,
    events: &mut mpsc::Receiver<TransportEvent>,
) -> (NodeId, PeerMessage) {
    let wait = async {
        loop {
            let _ = sender.send(NodeId(to), message.clone());
            let received = tokio::time::timeout(Duration::from_millis(50), events.recv()).await;
            if let Ok(Some(TransportEvent::Received { from, message })) = received {
                return (from, message);
            }
        }
    };
    tokio::time::timeout(TEST_TIMEOUT, wait)
        .await
        .expect("no message received in time")
}

#[tokio::test]
async fn two_transports_exchange_messages_both_ways() {
    let (mut one, mut one_events) = Transport::bind(config(7, 1)).await.unwrap();
    let (mut two, mut two_events) = Transport::bind(config(7, 2)).await.unwrap();
    one.add_peer(NodeId(2), url(&two));
    let mut peers = BTreeMap::new();
    peers.insert(NodeId(1), url(&one));
    peers.insert(NodeId(2), url(&two)); // itself: skipped
    two.set_peers(&peers);
    assert_eq!(two.peers(), vec![NodeId(1)]);

    let (from, message) = send_until_received(&one, 2, heartbeat(1, 2, 3), &mut two_events).await;
    assert_eq!(from, NodeId(1));
    assert_eq!(message, heartbeat(1, 2, 3));

    let request = PeerMessage::Request {
        request_id: 99,
        request: PeerRequest::LeaseKeepAlive { id: 5 },
    };
    let (from, message) = send_until_received(&two, 1, request.clone(), &mut one_events).await;
    assert_eq!(from, NodeId(2));
    assert_eq!(message, request);

    // Once connected, messages arrive in order.
    for commit in 10..20 {
        one.send(NodeId(2), heartbeat(1, 2, commit)).unwrap();
    }
    let ordered = async {
        let mut next = 10;
        while next < 20 {
            match two_events.recv().await.unwrap() {
                TransportEvent::Received { message, .. } => {
                    if message == heartbeat(1, 2, 3) {
                        continue; // a late duplicate of the set-up traffic
                    }
                    assert_eq!(message, heartbeat(1, 2, next));
                    next += 1;
                }
                TransportEvent::Unreachable { .. } => {}
                other => panic!("unexpected event {other:?}"),
            }
        }
    };
    tokio::time::timeout(TEST_TIMEOUT, ordered).await.unwrap();
}

#[tokio::test]
async fn sending_to_an_unknown_peer_is_refused() {
    let (one, _events) = Transport::bind(config(7, 1)).await.unwrap();
    assert_eq!(
        one.send(NodeId(9), heartbeat(1, 9, 0)),
        Err(SendError::UnknownPeer { peer: NodeId(9) })
    );
    assert_eq!(one.dropped_messages(), 1);
}

/// Sends until the sender hears `Unreachable`, and checks the receiver
/// got nothing.
async fn expect_refused(
    sender: &Transport,
    to: u64,
    sender_events: &mut mpsc::Receiver<TransportEvent>,
    receiver_events: &mut mpsc::Receiver<TransportEvent>,
) {
    let wait = async {
        loop {
            let _ = sender.send(NodeId(to), heartbeat(1, to, 1));
            if let Ok(Some(event)) =
                tokio::time::timeout(Duration::from_millis(50), sender_events.recv()).await
            {
                assert_eq!(event, TransportEvent::Unreachable { peer: NodeId(to) });
                return;
            }
        }
    };
    tokio::time::timeout(TEST_TIMEOUT, wait)
        .await
        .expect("the refused sender never heard Unreachable");
    assert!(
        receiver_events.try_recv().is_err(),
        "a refused peer's message got through"
    );
}

#[tokio::test]
async fn a_member_of_another_cluster_is_refused() {
    let (mut stranger, mut stranger_events) = Transport::bind(config(8, 1)).await.unwrap();
    let (two, mut two_events) = Transport::bind(config(7, 2)).await.unwrap();
    stranger.add_peer(NodeId(2), url(&two));
    expect_refused(&stranger, 2, &mut stranger_events, &mut two_events).await;
}

#[tokio::test]
async fn a_connection_addressed_to_another_member_is_refused() {
    let (mut one, mut one_events) = Transport::bind(config(7, 1)).await.unwrap();
    let (two, mut two_events) = Transport::bind(config(7, 2)).await.unwrap();
    // One believes member 3 lives at two's address.
    one.add_peer(NodeId(3), url(&two));
    expect_refused(&one, 3, &mut one_events, &mut two_events).await;
}

#[tokio::test]
async fn garbage_and_oversized_frames_close_only_that_connection() {
    let (mut one, _one_events) = Transport::bind(config(7, 1)).await.unwrap();
    let (two, mut two_events) = Transport::bind(config(7, 2)).await.unwrap();
    let address = two.local_address();

    // Garbage in place of a handshake.
    let mut garbage = tokio::net::TcpStream::connect(address).await.unwrap();
    garbage
        .write_all(&[0, 0, 0, 5, 1, 2, 3, 4, 5])
        .await
        .unwrap();
    // A frame length far beyond the bound.
    let mut oversized = tokio::net::TcpStream::connect(address).await.unwrap();
    oversized.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    // Both get closed: a read sees end of stream (or a reset).
    for mut stream in [garbage, oversized] {
        let mut buffer = [0u8; 64];
        let read = tokio::time::timeout(
            TEST_TIMEOUT,
            tokio::io::AsyncReadExt::read(&mut stream, &mut buffer),
        )
        .await
        .expect("the bad connection was not closed");
        assert!(matches!(read, Ok(0) | Err(_)), "unexpected read {read:?}");
    }

    // The listener still serves well-behaved peers.
    one.add_peer(NodeId(2), url(&two));
    let (from, _) = send_until_received(&one, 2, heartbeat(1, 2, 1), &mut two_events).await;
    assert_eq!(from, NodeId(1));
}

#[tokio::test]
async fn a_forged_raft_sender_closes_the_connection() {
    let (mut one, _one_events) = Transport::bind(config(7, 1)).await.unwrap();
    let (two, mut two_events) = Transport::bind(config(7, 2)).await.unwrap();
    one.add_peer(NodeId(2), url(&two));
    // Member 1 claims a message from member 3: refused, nothing delivered.
    for _ in 0..5 {
        let _ = one.send(NodeId(2), heartbeat(3, 2, 1));
    }
    // A genuine message still arrives eventually (after a reconnect).
    let (from, message) = send_until_received(&one, 2, heartbeat(1, 2, 4), &mut two_events).await;
    assert_eq!(from, NodeId(1));
    assert_eq!(message, heartbeat(1, 2, 4));
}

#[tokio::test]
async fn a_full_queue_drops_instead_of_growing() {
    // A listener that accepts at the TCP level but never answers the
    // handshake: the peer task sits in its handshake and reads no message.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut sender_config = config(7, 1);
    sender_config.peer_queue_messages_max = 4;
    sender_config.handshake_timeout = Duration::from_secs(30);
    let (mut one, _events) = Transport::bind(sender_config).await.unwrap();
    one.add_peer(
        NodeId(2),
        vec![format!("http://{}", silent.local_addr().unwrap())],
    );
    // The first message wakes the task, which takes it and starts connecting;
    // wait until it has been taken so the queue is empty again.
    one.send(NodeId(2), heartbeat(1, 2, 0)).unwrap();
    let (_accepted, _) = tokio::time::timeout(TEST_TIMEOUT, silent.accept())
        .await
        .unwrap()
        .unwrap();
    for commit in 1..=4 {
        one.send(NodeId(2), heartbeat(1, 2, commit)).unwrap();
    }
    for commit in 5..=20 {
        assert_eq!(
            one.send(NodeId(2), heartbeat(1, 2, commit)),
            Err(SendError::QueueFull {
                peer: NodeId(2),
                queue_messages_max: 4
            })
        );
    }
    assert_eq!(one.dropped_messages(), 16);
}

#[tokio::test]
async fn a_removed_member_is_told_so() {
    let (mut one, mut one_events) = Transport::bind(config(7, 1)).await.unwrap();
    let (mut two, mut two_events) = Transport::bind(config(7, 2)).await.unwrap();
    one.add_peer(NodeId(2), url(&two));
    send_until_received(&one, 2, heartbeat(1, 2, 1), &mut two_events).await;
    two.mark_removed(NodeId(1));
    assert!(two.peers().is_empty());
    // The open connection is closed at the next frame; the reconnect's
    // handshake tells member 1 it was removed.
    let wait = async {
        loop {
            let _ = one.send(NodeId(2), heartbeat(1, 2, 2));
            if let Ok(Some(event)) =
                tokio::time::timeout(Duration::from_millis(50), one_events.recv()).await
            {
                if event == (TransportEvent::RemovedFromCluster { peer: NodeId(2) }) {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(TEST_TIMEOUT, wait)
        .await
        .expect("the removed member never heard it was removed");
    while let Ok(event) = two_events.try_recv() {
        assert_eq!(
            event,
            TransportEvent::Received {
                from: NodeId(1),
                message: heartbeat(1, 2, 1)
            }
        );
    }
}

/// A peer whose process is gone is reported down at once, without any
/// message being sent to it: its kernel closes the connection, and the
/// reconnection finds nothing listening. A peer that is merely silent is
/// never reported down.
#[tokio::test]
async fn a_peer_whose_process_is_gone_is_reported_down() {
    let (mut one, mut one_events) = Transport::bind(config(7, 1)).await.unwrap();
    let (two, mut two_events) = Transport::bind(config(7, 2)).await.unwrap();
    one.add_peer(NodeId(2), url(&two));
    send_until_received(&one, 2, heartbeat(1, 2, 3), &mut two_events).await;

    // Silent but alive: no PeerDown.
    let quiet = tokio::time::timeout(Duration::from_millis(300), async {
        loop {
            if let Some(TransportEvent::PeerDown { peer }) = one_events.recv().await {
                return peer;
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "a live peer was reported down: {quiet:?}");

    drop(two);
    drop(two_events);
    // Well within the idle ping interval (1 s): noticed from the closed
    // connection, not from a failed ping.
    let down = tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            match one_events.recv().await {
                Some(TransportEvent::PeerDown { peer }) => return peer,
                Some(_) => {}
                None => panic!("the event channel closed"),
            }
        }
    })
    .await
    .expect("the dead peer was not reported down");
    assert_eq!(down, NodeId(2));
}
