//! Frames: a big-endian `u32` length, then that many bytes of bincode. The
//! length is checked against [`FRAME_BYTES_MAX`] before anything is
//! allocated, and bincode decodes under the same limit, so a peer sending
//! garbage costs us one closed connection, never a panic or a huge buffer.
//!
//! Frames are cheap to move in bulk: [`encode_frame_into`] appends a whole
//! frame (prefix and payload, contiguous) to a buffer the caller reuses, so
//! many frames leave in one write; [`read_frame_into`] reads into a payload
//! buffer the caller reuses, and is meant to sit on a buffered reader so
//! many small frames arrive in one read.

use bincode::Options;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest frame payload either side accepts. Raft bounds its append
/// messages and snapshot chunks (1 MiB each by default) well below this.
pub const FRAME_BYTES_MAX: u32 = 8 * 1024 * 1024;

/// The size of the length prefix in front of every payload.
pub const FRAME_PREFIX_BYTES: usize = 4;

/// Why a frame could not be read, written or decoded.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The socket failed.
    #[error("peer connection i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection cleanly between frames.
    #[error("peer closed the connection")]
    Closed,
    /// A length prefix above the bound.
    #[error("frame of {bytes} bytes exceeds the {bytes_max}-byte bound")]
    TooLarge {
        /// The announced length.
        bytes: u64,
        /// [`FRAME_BYTES_MAX`].
        bytes_max: u32,
    },
    /// The payload is not a valid encoding of the expected type.
    #[error("frame payload does not decode: {0}")]
    Decode(#[source] bincode::Error),
    /// A value does not encode (or encodes above the bound).
    #[error("value does not encode into a frame: {0}")]
    Encode(#[source] bincode::Error),
}

/// The encoding every frame uses: bincode with fixed-width integers,
/// little-endian, trailing bytes refused.
fn encoding() -> impl Options {
    bincode::DefaultOptions::new().with_fixint_encoding()
}

/// [`encoding`] under a size limit, so a forged length inside the payload
/// cannot allocate more than a frame's worth.
fn codec() -> impl Options {
    encoding().with_limit(u64::from(FRAME_BYTES_MAX))
}

/// Encodes `value` as a frame payload.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, FrameError> {
    codec().serialize(value).map_err(FrameError::Encode)
}

/// Appends one whole frame carrying `value` (the length prefix, then the
/// same payload [`encode`] makes) to `buffer`. On error `buffer` is left as
/// it was.
///
/// The payload is encoded in one pass straight into `buffer`: bincode's own
/// limit would walk the value twice (once to size it), so the bound is
/// enforced by the writer instead, which refuses to grow the frame past
/// [`FRAME_BYTES_MAX`].
pub fn encode_frame_into<T: Serialize>(buffer: &mut Vec<u8>, value: &T) -> Result<(), FrameError> {
    let start = buffer.len();
    buffer.extend_from_slice(&[0u8; FRAME_PREFIX_BYTES]);
    let mut writer = BoundedWriter {
        buffer: &mut *buffer,
        bytes_left: FRAME_BYTES_MAX as usize,
    };
    let encoded = encoding().serialize_into(&mut writer, value);
    if let Err(error) = encoded {
        buffer.truncate(start);
        return Err(FrameError::Encode(error));
    }
    let payload_bytes = buffer.len() - start - FRAME_PREFIX_BYTES;
    // The writer refused anything past FRAME_BYTES_MAX: this cannot fail.
    let length = u32::try_from(payload_bytes).expect("payload bounded by FRAME_BYTES_MAX");
    assert!(
        length <= FRAME_BYTES_MAX,
        "frame payload of {length} bytes exceeds the {FRAME_BYTES_MAX}-byte bound"
    );
    buffer[start..start + FRAME_PREFIX_BYTES].copy_from_slice(&length.to_be_bytes());
    Ok(())
}

/// Appends to a buffer, refusing to write more than `bytes_left` in all.
struct BoundedWriter<'buffer> {
    buffer: &'buffer mut Vec<u8>,
    bytes_left: usize,
}

impl std::io::Write for BoundedWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if bytes.len() > self.bytes_left {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("frame payload exceeds the {FRAME_BYTES_MAX}-byte bound"),
            ));
        }
        self.bytes_left -= bytes.len();
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.write(bytes).map(|_| ())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Decodes a frame payload; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    codec().deserialize(payload).map_err(FrameError::Decode)
}

/// Writes one frame (length prefix and payload, in one write) and flushes
/// it. For a single frame such as the handshake; streams of frames go
/// through [`encode_frame_into`] and one write per batch.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    payload: &[u8],
) -> Result<(), FrameError> {
    let bytes = payload.len() as u64;
    if bytes > u64::from(FRAME_BYTES_MAX) {
        return Err(FrameError::TooLarge {
            bytes,
            bytes_max: FRAME_BYTES_MAX,
        });
    }
    // Bounded just above: the conversion cannot truncate.
    let length = u32::try_from(bytes).expect("frame length checked against FRAME_BYTES_MAX");
    let mut frame = Vec::with_capacity(FRAME_PREFIX_BYTES + payload.len());
    frame.extend_from_slice(&length.to_be_bytes());
    frame.extend_from_slice(payload);
    writer.write_all(&frame).await?;
    // A no-op for a kernel socket, but the simulator's streams send on flush.
    writer.flush().await?;
    Ok(())
}

/// Reads one frame's payload. A clean end of stream before the length
/// prefix is [`FrameError::Closed`].
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Vec<u8>, FrameError> {
    let mut payload = Vec::new();
    read_frame_into(reader, &mut payload).await?;
    Ok(payload)
}

/// Reads one frame's payload into `payload`, replacing its contents and
/// reusing its allocation. A clean end of stream before the length prefix
/// is [`FrameError::Closed`]. The announced length is checked against
/// [`FRAME_BYTES_MAX`] before `payload` grows.
pub async fn read_frame_into<R: AsyncRead + Unpin>(
    reader: &mut R,
    payload: &mut Vec<u8>,
) -> Result<(), FrameError> {
    let mut prefix = [0u8; FRAME_PREFIX_BYTES];
    let mut filled = 0;
    while filled < prefix.len() {
        let read = reader.read(&mut prefix[filled..]).await?;
        if read == 0 {
            if filled == 0 {
                return Err(FrameError::Closed);
            }
            return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        filled += read;
    }
    let length = u32::from_be_bytes(prefix);
    if length > FRAME_BYTES_MAX {
        return Err(FrameError::TooLarge {
            bytes: u64::from(length),
            bytes_max: FRAME_BYTES_MAX,
        });
    }
    payload.clear();
    payload.resize(length as usize, 0);
    reader.read_exact(payload).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::listener::INBOUND_READ_BUFFER_BYTES;
    use tokio::io::BufReader;

    #[tokio::test]
    async fn a_frame_round_trips() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let payload = encode(&(7u64, String::from("cairn"))).unwrap();
        write_frame(&mut client, &payload).await.unwrap();
        let read = read_frame(&mut server).await.unwrap();
        assert_eq!(
            decode::<(u64, String)>(&read).unwrap(),
            (7, "cairn".to_string())
        );
        drop(client);
        assert!(matches!(
            read_frame(&mut server).await,
            Err(FrameError::Closed)
        ));
    }

    #[tokio::test]
    async fn an_oversized_length_is_refused_before_allocating() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        match read_frame(&mut server).await {
            Err(FrameError::TooLarge { bytes, bytes_max }) => {
                assert_eq!(bytes, u64::from(u32::MAX));
                assert_eq!(bytes_max, FRAME_BYTES_MAX);
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn a_forged_inner_length_does_not_allocate() {
        // A Vec<u8> whose length prefix claims 2^62 bytes.
        let mut payload = (1u64 << 62).to_le_bytes().to_vec();
        payload.extend_from_slice(&[1, 2, 3]);
        assert!(matches!(
            decode::<Vec<u8>>(&payload),
            Err(FrameError::Decode(_))
        ));
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut payload = encode(&5u32).unwrap();
        payload.push(0);
        assert!(matches!(
            decode::<u32>(&payload),
            Err(FrameError::Decode(_))
        ));
    }

    #[test]
    fn an_appended_frame_is_the_prefix_and_the_encoded_payload() {
        let mut buffer = vec![9, 9];
        encode_frame_into(&mut buffer, &(7u64, String::from("cairn"))).unwrap();
        encode_frame_into(&mut buffer, &3u32).unwrap();
        let first = encode(&(7u64, String::from("cairn"))).unwrap();
        let second = encode(&3u32).unwrap();
        let mut expected = vec![9, 9];
        for payload in [&first, &second] {
            expected.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            expected.extend_from_slice(payload);
        }
        assert_eq!(buffer, expected);
    }

    #[tokio::test]
    async fn a_payload_at_the_bound_encodes_and_one_byte_more_is_refused() {
        // A Vec<u8> encodes as an 8-byte length and its bytes.
        let at_bound = vec![5u8; FRAME_BYTES_MAX as usize - 8];
        let mut buffer = Vec::new();
        encode_frame_into(&mut buffer, &at_bound).unwrap();
        assert_eq!(buffer.len(), FRAME_PREFIX_BYTES + FRAME_BYTES_MAX as usize);

        let past_bound = vec![5u8; FRAME_BYTES_MAX as usize - 7];
        let mut refused = vec![1, 2, 3];
        assert!(matches!(
            encode_frame_into(&mut refused, &past_bound),
            Err(FrameError::Encode(_))
        ));
        assert_eq!(refused, vec![1, 2, 3], "a refused frame left bytes behind");

        // The frame at the bound is read back whole through a buffered reader.
        let (mut client, server) = tokio::io::duplex(INBOUND_READ_BUFFER_BYTES);
        let mut reader = BufReader::with_capacity(INBOUND_READ_BUFFER_BYTES, server);
        let write = async {
            client.write_all(&buffer).await.unwrap();
            drop(client);
        };
        let read = async {
            let mut payload = Vec::new();
            read_frame_into(&mut reader, &mut payload).await.unwrap();
            assert_eq!(decode::<Vec<u8>>(&payload).unwrap(), at_bound);
            assert!(matches!(
                read_frame_into(&mut reader, &mut payload).await,
                Err(FrameError::Closed)
            ));
        };
        tokio::join!(write, read);
    }

    #[tokio::test]
    async fn a_raw_frame_one_byte_past_the_bound_is_refused_by_both_ends() {
        let past_bound = vec![0u8; FRAME_BYTES_MAX as usize + 1];
        let (mut client, mut server) = tokio::io::duplex(1024);
        match write_frame(&mut client, &past_bound).await {
            Err(FrameError::TooLarge { bytes, bytes_max }) => {
                assert_eq!(bytes, u64::from(FRAME_BYTES_MAX) + 1);
                assert_eq!(bytes_max, FRAME_BYTES_MAX);
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        client
            .write_all(&(FRAME_BYTES_MAX + 1).to_be_bytes())
            .await
            .unwrap();
        assert!(matches!(
            read_frame(&mut server).await,
            Err(FrameError::TooLarge { bytes, .. }) if bytes == u64::from(FRAME_BYTES_MAX) + 1
        ));
    }

    #[tokio::test]
    async fn many_frames_back_to_back_are_read_intact_and_in_order() {
        // Small frames, and every so often one larger than the read buffer,
        // so frames straddle buffer refills and bypass the buffer.
        let values: Vec<(u32, Vec<u8>)> = (0..2000u32)
            .map(|sequence| {
                let bytes = if sequence % 500 == 7 {
                    INBOUND_READ_BUFFER_BYTES + 13
                } else {
                    (sequence as usize * 31) % 700
                };
                (sequence, vec![(sequence % 251) as u8; bytes])
            })
            .collect();
        let mut buffer = Vec::new();
        for value in &values {
            encode_frame_into(&mut buffer, value).unwrap();
        }
        let (mut client, server) = tokio::io::duplex(4096);
        let mut reader = BufReader::with_capacity(INBOUND_READ_BUFFER_BYTES, server);
        let write = async {
            client.write_all(&buffer).await.unwrap();
            drop(client);
        };
        let read = async {
            let mut payload = Vec::new();
            for expected in &values {
                read_frame_into(&mut reader, &mut payload).await.unwrap();
                assert_eq!(&decode::<(u32, Vec<u8>)>(&payload).unwrap(), expected);
            }
            assert!(matches!(
                read_frame_into(&mut reader, &mut payload).await,
                Err(FrameError::Closed)
            ));
        };
        tokio::join!(write, read);
    }

    #[tokio::test]
    async fn a_stream_cut_inside_a_frame_is_an_error_not_a_clean_close() {
        let mut buffer = Vec::new();
        encode_frame_into(&mut buffer, &vec![1u8; 100]).unwrap();
        for cut in [2, FRAME_PREFIX_BYTES + 50] {
            let (mut client, server) = tokio::io::duplex(1024);
            client.write_all(&buffer[..cut]).await.unwrap();
            drop(client);
            let mut reader = BufReader::with_capacity(INBOUND_READ_BUFFER_BYTES, server);
            let mut payload = Vec::new();
            match read_frame_into(&mut reader, &mut payload).await {
                Err(FrameError::Io(error)) => {
                    assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof, "cut {cut}");
                }
                other => panic!("cut at {cut}: expected UnexpectedEof, got {other:?}"),
            }
        }
    }
}
