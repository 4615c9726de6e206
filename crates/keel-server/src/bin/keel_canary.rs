//! `keel-canary`: the `keel` binary built with the `jepsen-canary` feature (kv reads skip
//! ReadIndex). Built only with `--features jepsen-canary`; the fault-injection suite must
//! report it INVALID. Never ship it.

#[path = "../main.rs"]
mod keel;

fn main() -> anyhow::Result<()> {
    keel::main()
}
