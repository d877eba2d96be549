//! Validated task values. Each is built only through `parse`, so a value of these types is
//! always within the rules; the limits are constants shared by the check and its message.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::ValidationError;

pub const USER_ID_MAX_CHARS: usize = 128;
pub const TITLE_MAX_CHARS: usize = 200;
pub const DESCRIPTION_MAX_CHARS: usize = 4_000;
pub const TAGS_MAX_COUNT: usize = 10;
pub const TAG_MAX_CHARS: usize = 32;

/// The owner of a task: the JWT subject. Printable ASCII, no slash or whitespace, bounded.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(String);

impl UserId {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let field = "user_id";
        if raw.is_empty() {
            return Err(ValidationError::new(field, "must not be empty"));
        }
        if raw.chars().count() > USER_ID_MAX_CHARS {
            return Err(ValidationError::new(
                field,
                format!("must be at most {USER_ID_MAX_CHARS} characters"),
            ));
        }
        if !raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | ':' | '|'))
        {
            return Err(ValidationError::new(
                field,
                "may contain only ASCII letters, digits and - _ . @ : |",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UserId {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<UserId> for String {
    fn from(value: UserId) -> Self {
        value.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A task title: trimmed, non-empty, at most [`TITLE_MAX_CHARS`] characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title(String);

impl Title {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let field = "title";
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(ValidationError::new(field, "must not be empty"));
        }
        if trimmed.chars().count() > TITLE_MAX_CHARS {
            return Err(ValidationError::new(
                field,
                format!("must be at most {TITLE_MAX_CHARS} characters"),
            ));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(ValidationError::new(
                field,
                "must not contain control characters",
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A task description: trimmed, at most [`DESCRIPTION_MAX_CHARS`] characters; may be empty.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Description(String);

impl Description {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let trimmed = raw.trim();
        if trimmed.chars().count() > DESCRIPTION_MAX_CHARS {
            return Err(ValidationError::new(
                "description",
                format!("must be at most {DESCRIPTION_MAX_CHARS} characters"),
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// How urgent a task is. Ordered: `Low < Medium < High < Urgent`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    #[default]
    Medium,
    High,
    Urgent,
}

impl Priority {
    pub const ALL: [Priority; 4] = [Self::Low, Self::Medium, Self::High, Self::Urgent];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Urgent => "urgent",
        }
    }

    /// A number that sorts like the priority, for storage.
    pub fn rank(self) -> i16 {
        match self {
            Self::Low => 0,
            Self::Medium => 1,
            Self::High => 2,
            Self::Urgent => 3,
        }
    }

    pub fn from_rank(rank: i16) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.rank() == rank)
    }
}

impl FromStr for Priority {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                ValidationError::new("priority", "must be one of: low, medium, high, urgent")
            })
    }
}

/// A task's tags: each trimmed, lower-cased, inner spaces turned to `-`, only letters, digits,
/// `-` and `_`; duplicates removed (first kept); at most [`TAGS_MAX_COUNT`] tags of at most
/// [`TAG_MAX_CHARS`] characters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tags(Vec<String>);

impl Tags {
    pub fn parse<S: AsRef<str>>(raw: &[S]) -> Result<Self, ValidationError> {
        let field = "tags";
        let mut tags: Vec<String> = Vec::with_capacity(raw.len());
        for tag in raw {
            let normalised = tag
                .as_ref()
                .trim()
                .to_lowercase()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join("-");
            if normalised.is_empty() {
                return Err(ValidationError::new(field, "a tag must not be empty"));
            }
            if normalised.chars().count() > TAG_MAX_CHARS {
                return Err(ValidationError::new(
                    field,
                    format!("each tag must be at most {TAG_MAX_CHARS} characters"),
                ));
            }
            if !normalised
                .chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
            {
                return Err(ValidationError::new(
                    field,
                    format!("tag {normalised:?} may contain only letters, digits, - and _"),
                ));
            }
            if !tags.contains(&normalised) {
                tags.push(normalised);
            }
        }
        if tags.len() > TAGS_MAX_COUNT {
            return Err(ValidationError::new(
                field,
                format!("at most {TAGS_MAX_COUNT} tags are allowed"),
            ));
        }
        Ok(Self(tags))
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    pub fn into_inner(self) -> Vec<String> {
        self.0
    }
}

/// An IANA time zone such as `Europe/Berlin`. UTC by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeZone(chrono_tz::Tz);

impl TimeZone {
    pub const UTC: TimeZone = TimeZone(chrono_tz::UTC);

    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        raw.parse::<chrono_tz::Tz>().map(Self).map_err(|_| {
            ValidationError::new(
                "time_zone",
                format!("{raw:?} is not an IANA time zone name (for example \"Europe/Berlin\" or \"UTC\")"),
            )
        })
    }

    pub fn tz(self) -> chrono_tz::Tz {
        self.0
    }

    pub fn name(self) -> &'static str {
        self.0.name()
    }
}

impl Default for TimeZone {
    fn default() -> Self {
        Self::UTC
    }
}

impl Serialize for TimeZone {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for TimeZone {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_title_is_trimmed_and_bounded() {
        assert_eq!(
            Title::parse("  Buy milk ").map(Title::into_inner),
            Ok("Buy milk".into())
        );
        assert_eq!(Title::parse("   ").map_err(|e| e.field), Err("title"));
        assert!(Title::parse(&"x".repeat(TITLE_MAX_CHARS)).is_ok());
        let too_long = Title::parse(&"x".repeat(TITLE_MAX_CHARS + 1)).expect_err("too long");
        assert!(too_long.message.contains(&TITLE_MAX_CHARS.to_string()));
    }

    #[test]
    fn tags_are_normalised_and_deduplicated() {
        let tags = Tags::parse(&[" Home ", "home", "Big  Project", "a_b"]).expect("valid");
        assert_eq!(tags.as_slice(), ["home", "big-project", "a_b"]);
    }

    #[test]
    fn tags_reject_bad_characters_too_many_and_too_long() {
        assert!(Tags::parse(&["semi;colon"]).is_err());
        assert!(Tags::parse(&[""]).is_err());
        let many: Vec<String> = (0..=TAGS_MAX_COUNT).map(|i| format!("t{i}")).collect();
        assert!(Tags::parse(&many).is_err());
        assert!(Tags::parse(&["x".repeat(TAG_MAX_CHARS + 1)]).is_err());
    }

    #[test]
    fn priorities_parse_and_keep_their_order() {
        assert_eq!("urgent".parse::<Priority>(), Ok(Priority::Urgent));
        assert!("URGENT".parse::<Priority>().is_err());
        assert!(Priority::Low < Priority::Urgent);
        for p in Priority::ALL {
            assert_eq!(Priority::from_rank(p.rank()), Some(p));
        }
    }

    #[test]
    fn time_zones_must_be_iana_names() {
        assert_eq!(
            TimeZone::parse("Europe/Berlin").map(TimeZone::name),
            Ok("Europe/Berlin")
        );
        let err = TimeZone::parse("Mars/Olympus").expect_err("unknown zone");
        assert_eq!(err.field, "time_zone");
        assert!(err.message.contains("Mars/Olympus"));
    }

    #[test]
    fn user_ids_reject_slashes_and_empties() {
        assert!(UserId::parse("user-1@example.com").is_ok());
        assert!(UserId::parse("a/b").is_err());
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse(&"u".repeat(USER_ID_MAX_CHARS + 1)).is_err());
    }
}
