//! Errors of the engine. Domain rejections are [`crate::Response`] values; an `Error` here
//! means the store failed, which the caller must treat as fatal for the node.

/// Engine errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The backing store failed to read (I/O, corruption).
    #[error("state store read failed at key {key_hex}: {message}")]
    StoreRead { key_hex: String, message: String },
    /// A stored value did not decode: the state machine is corrupt.
    #[error("corrupt state-machine value at key {key_hex}: {message}")]
    Corrupt { key_hex: String, message: String },
}

/// Result alias for the engine.
pub type Result<T> = std::result::Result<T, Error>;

/// Lower-case hex of a key, for error messages.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
