//! Standard base64 decoding for etcdctl's `-w json` output.
//!
//! etcdctl prints keys and values as base64 (protobuf `bytes` in JSON). The
//! harness depends on std and serde_json only, so the decoder lives here.

/// The standard alphabet (RFC 4648 section 4).
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Decodes padded standard base64; panics on malformed input, which in
/// etcdctl's output would mean the test reads the wrong field.
pub fn decode_base64(encoded: &str) -> Vec<u8> {
    let trimmed = encoded.trim_end_matches('=');
    let mut decoded = Vec::with_capacity(trimmed.len() * 3 / 4);
    let mut accumulator: u32 = 0;
    let mut bits_held: u32 = 0;
    for character in trimmed.bytes() {
        let Some(sextet) = ALPHABET.iter().position(|&symbol| symbol == character) else {
            panic!(
                "invalid base64 character {:?} in {encoded:?}",
                character as char
            );
        };
        accumulator = (accumulator << 6) | sextet as u32;
        bits_held += 6;
        if bits_held >= 8 {
            bits_held -= 8;
            decoded.push((accumulator >> bits_held) as u8);
            accumulator &= (1 << bits_held) - 1;
        }
    }
    decoded
}

#[cfg(test)]
mod tests {
    use super::decode_base64;

    #[test]
    fn decodes_rfc4648_vectors() {
        let vectors = [
            ("", ""),
            ("Zg==", "f"),
            ("Zm8=", "fo"),
            ("Zm9v", "foo"),
            ("Zm9vYg==", "foob"),
            ("Zm9vYmE=", "fooba"),
            ("Zm9vYmFy", "foobar"),
        ];
        for (encoded, plain) in vectors {
            assert_eq!(
                decode_base64(encoded),
                plain.as_bytes(),
                "decoding {encoded:?}"
            );
        }
    }

    #[test]
    #[should_panic(expected = "invalid base64 character")]
    fn rejects_characters_outside_the_alphabet() {
        decode_base64("Zm9v!");
    }
}
