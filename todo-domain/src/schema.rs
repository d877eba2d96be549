//! The JSON schemas of the domain's values that serialise as plain strings, for the `utoipa`
//! feature; the structs derive theirs where they are defined. Each is built from the domain's
//! own constants, so a new priority or frequency is documented as soon as it exists.

use std::borrow::Cow;

use utoipa::{
    PartialSchema, ToSchema,
    openapi::{
        RefOr,
        schema::{ObjectBuilder, Schema, Type},
    },
};

use crate::{Frequency, Priority};

fn string_enum(values: impl IntoIterator<Item = &'static str>, description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
        .description(Some(description))
        .into()
}

impl PartialSchema for Priority {
    fn schema() -> RefOr<Schema> {
        string_enum(Priority::ALL.map(Priority::as_str), "How urgent a task is.")
    }
}

impl ToSchema for Priority {
    fn name() -> Cow<'static, str> {
        "Priority".into()
    }
}

impl PartialSchema for Frequency {
    fn schema() -> RefOr<Schema> {
        string_enum(
            Frequency::ALL.map(Frequency::as_str),
            "How a task repeats; a monthly series keeps its anchor day.",
        )
    }
}

impl ToSchema for Frequency {
    fn name() -> Cow<'static, str> {
        "Frequency".into()
    }
}
