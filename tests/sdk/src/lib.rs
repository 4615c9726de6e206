//! Official-SDK compatibility tests live in tests/.
