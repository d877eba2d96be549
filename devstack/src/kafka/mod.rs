//! Apache Kafka from the official jars: a single-node KRaft broker+controller
//! ([`broker`]), and Kafka's own command-line tools ([`tools`]) run with
//! `java -cp 'libs/*'` for topic administration ([`admin`]) and reading topics back
//! ([`console`]).

mod admin;
mod broker;
mod console;
mod template;
mod tools;

pub use admin::{alter_topic_config, consumer_group_lag, topic_end_offset};
pub(crate) use admin::{create_topics, describe_topics};
pub use broker::BrokerJvm;
pub(crate) use broker::{BrokerPorts, start_broker};
pub use console::{
    Record, TimedRecord, consume, consume_timed, output_properties as console_output_properties,
    parse_record,
};
pub use template::seed as seed_broker;
pub(crate) use tools::write_tools_log_config;

/// Retention of every topic devstack creates: 7 days.
pub(crate) const RETENTION_MS: u64 = 7 * 24 * 60 * 60 * 1000;
