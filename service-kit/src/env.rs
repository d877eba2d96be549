//! Reading typed values from the process environment (read, never written): what every
//! service's settings are read with.

use std::{fmt, str::FromStr};

use anyhow::Context as _;

/// The variable, parsed, or `None` when unset or empty. A value that does not parse is an
/// error naming the variable.
pub fn env_opt<T>(name: &str) -> anyhow::Result<Option<T>>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse::<T>()
            .map(Some)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("environment variable {name}={v:?} is not valid")),
        _ => Ok(None),
    }
}

/// The variable, parsed, or `default` when unset or empty.
pub fn env_or<T>(name: &str, default: T) -> anyhow::Result<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    Ok(env_opt(name)?.unwrap_or(default))
}

/// The variable, parsed, or `default` when unset or empty; a value outside `range` is an
/// error naming the variable, the accepted range and `what` the setting means.
pub fn env_in<T>(
    name: &str,
    default: T,
    range: std::ops::RangeInclusive<T>,
    what: &str,
) -> anyhow::Result<T>
where
    T: FromStr + PartialOrd + fmt::Display + Copy,
    T::Err: fmt::Display,
{
    let value = env_or(name, default)?;
    if !range.contains(&value) {
        anyhow::bail!(
            "environment variable {name}={value} is out of range: use {} to {} ({what})",
            range.start(),
            range.end()
        );
    }
    Ok(value)
}
