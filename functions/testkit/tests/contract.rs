//! The adapter contract on the in-memory adapters (the same cases run on
//! the AWS adapters against moto in `tests/integration/adapter_contract.rs`).

use videojobs_testkit::contract::{memory_subject, Subject};
use videojobs_testkit::Memory;

async fn subject(_isolated: bool) -> Subject {
    // Every case gets a world of its own: in memory that costs nothing.
    memory_subject(&Memory::default())
}

videojobs_testkit::contract_suite!(subject);
