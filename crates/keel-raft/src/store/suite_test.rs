//! openraft's storage conformance suite against Keel's RocksDB log store and state machine.

use openraft::testing::log::{StoreBuilder, Suite};
use openraft::StorageError;

use super::{open, LogStore, StateMachine};
use crate::typ::TypeConfig;

struct RocksBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for RocksBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let (log, sm) = open(dir.path(), "suite", 1).expect("open store");
        Ok((dir, log, sm))
    }
}

#[tokio::test]
async fn openraft_storage_suite_passes_on_rocksdb() {
    Suite::test_all(RocksBuilder)
        .await
        .expect("openraft storage suite");
}
