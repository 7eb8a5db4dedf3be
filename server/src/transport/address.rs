//! Peer URLs as etcd's flags spell them (`http://10.0.0.1:2380`) turned into
//! the `host:port` a socket connects to or listens on.

/// Why a URL does not name a socket address.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// No `host:port` could be read from it.
    #[error("peer URL {url:?} has no host:port")]
    NoHostPort {
        /// The URL.
        url: String,
    },
    /// A scheme other than http or https (or none).
    #[error("peer URL {url:?} has unsupported scheme {scheme:?}")]
    UnsupportedScheme {
        /// The URL.
        url: String,
        /// Its scheme.
        scheme: String,
    },
}

/// The `host:port` of a URL such as `http://127.0.0.1:2380`, or of a bare
/// `127.0.0.1:2380`. Paths are ignored. Credentials in URLs are not allowed
/// (an `@` makes the URL invalid).
pub fn socket_address(url: &str) -> Result<String, AddressError> {
    let rest = match url.split_once("://") {
        Some((scheme, rest)) => {
            if scheme != "http" && scheme != "https" {
                return Err(AddressError::UnsupportedScheme {
                    url: url.to_string(),
                    scheme: scheme.to_string(),
                });
            }
            rest
        }
        None => url,
    };
    let host_port = rest.split('/').next().unwrap_or_default();
    let has_port = host_port
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !has_port || host_port.contains('@') {
        return Err(AddressError::NoHostPort {
            url: url.to_string(),
        });
    }
    Ok(host_port.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_bare_addresses_are_read() {
        assert_eq!(
            socket_address("http://127.0.0.1:2380").unwrap(),
            "127.0.0.1:2380"
        );
        assert_eq!(
            socket_address("https://node-1:2380/").unwrap(),
            "node-1:2380"
        );
        assert_eq!(socket_address("10.0.0.3:2380").unwrap(), "10.0.0.3:2380");
        assert_eq!(socket_address("http://[::1]:2380").unwrap(), "[::1]:2380");
    }

    #[test]
    fn malformed_urls_are_refused() {
        assert!(socket_address("http://127.0.0.1").is_err());
        assert!(socket_address("unix://socket:1").is_err());
        assert!(socket_address("http://user@host:1").is_err());
        assert!(socket_address(":2380").is_err());
    }
}
