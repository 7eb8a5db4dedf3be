//! Frames: a big-endian `u32` length, then that many bytes of bincode. The
//! length is checked against [`FRAME_BYTES_MAX`] before anything is
//! allocated, and bincode decodes under the same limit, so a peer sending
//! garbage costs us one closed connection, never a panic or a huge buffer.

use bincode::Options;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest frame payload either side accepts. Raft bounds its append
/// messages and snapshot chunks (1 MiB each by default) well below this.
pub const FRAME_BYTES_MAX: u32 = 8 * 1024 * 1024;

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

/// The bincode options every frame uses: fixed-width integers and a size
/// limit, so a forged length inside the payload cannot allocate more than
/// a frame's worth.
fn codec() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_limit(u64::from(FRAME_BYTES_MAX))
}

/// Encodes `value` as a frame payload.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, FrameError> {
    codec().serialize(value).map_err(FrameError::Encode)
}

/// Decodes a frame payload; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    codec().deserialize(payload).map_err(FrameError::Decode)
}

/// Writes one frame (length prefix and payload) and flushes it.
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
    writer.write_all(&length.to_be_bytes()).await?;
    writer.write_all(payload).await?;
    writer.flush().await?;
    Ok(())
}

/// Reads one frame's payload. A clean end of stream before the length
/// prefix is [`FrameError::Closed`].
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Vec<u8>, FrameError> {
    let mut prefix = [0u8; 4];
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
    let mut payload = vec![0u8; length as usize];
    reader.read_exact(&mut payload).await?;
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
