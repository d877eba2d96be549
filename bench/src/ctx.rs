//! What every scenario is given: the stack, chat-api's address and log, the HTTP client
//! and Kafka's bootstrap address.

use devstack::Paths;
use e2e::Env;
use sea_orm::DatabaseConnection;

pub(crate) struct Ctx<'a> {
    pub(crate) paths: &'a Paths,
    pub(crate) env: &'a Env,
    pub(crate) api_base: String,
    pub(crate) api_log: std::path::PathBuf,
    pub(crate) client: &'a reqwest::Client,
    pub(crate) bootstrap: String,
    /// chat-api's database.
    pub(crate) db: &'a DatabaseConnection,
}
