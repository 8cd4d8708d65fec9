//! Makes a deployment's first admin key the way the API makes every key (its
//! item and its listing entry, so it can be listed and revoked like any
//! other) and prints it, once. Later keys: `videojobs admin create-key`.
//!
//! ```sh
//! eval "$(aws configure export-credentials --format env)"   # who may write the jobs table
//! AWS_REGION=eu-west-1 cargo run -p videojobs-aws --bin first-admin-key -- --jobs-table <JobsTable> [--user-id admin]
//! ```

use videojobs_aws::{AwsClients, DynamoStore};
use videojobs_core::model::ids::{ApiKey, Role, UserId};
use videojobs_core::ports::{ApiKeyStore, KeyRecord, Principal};

const USAGE: &str = "usage: first-admin-key --jobs-table NAME [--user-id ID]";

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match run(std::env::args().skip(1).collect()).await {
        Ok(key) => {
            println!("{key}");
            eprintln!("The key is shown once: keep it in your secrets manager.");
            std::process::ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Vec<String>) -> Result<String, String> {
    let (mut table, mut user) = (std::env::var("JOBS_TABLE").ok(), "admin".to_owned());
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--jobs-table" => table = args.next(),
            "--user-id" => user = args.next().ok_or(USAGE)?,
            _ => return Err(USAGE.into()),
        }
    }
    let table = table.filter(|t| !t.is_empty()).ok_or(USAGE)?;
    let user: UserId = user.parse().map_err(|e| format!("--user-id: {e}"))?;
    // Only the jobs table is written: the prompts table is never touched here.
    let store = DynamoStore::new(AwsClients::from_env().dynamodb, table, String::new());
    let key = ApiKey::generate();
    let principal = Principal { user_id: user, role: Role::Admin };
    let record = KeyRecord::new(principal, "first admin key", videojobs_core::model::timestamp::now(), None);
    store.save_key_record(&key.hash(), &record).await.map_err(|e| format!("saving the key: {e}"))?;
    eprintln!("Saved key {} for admin {}.", record.key_id, record.principal.user_id);
    Ok(key.expose().to_owned())
}
