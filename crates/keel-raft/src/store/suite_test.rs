//! openraft's storage conformance suite against Keel's RocksDB log store and state machine.

use openraft::testing::{StoreBuilder, Suite};

use super::{open, LogStore, StateMachine};
use crate::typ::{StorageError, TypeConfig};

struct RocksBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for RocksBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let (log, sm) = open(dir.path(), "suite", 1).expect("open store");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite_passes_on_rocksdb() {
    Suite::test_all(RocksBuilder).expect("openraft storage suite");
}
