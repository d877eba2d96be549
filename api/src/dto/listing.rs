//! The task listing's edge: the query of `GET /api/{user_id}/tasks` (and of the
//! `list_tasks` tool), its parsing into a store query, the opaque cursors, and the page.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use todo_domain::{Priority, Tags, Title};
use todo_store::{
    ListQuery, Page, SortKey, StatusFilter,
    tasks::{After, LIST_LIMIT_DEFAULT, SortValue},
};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{TaskView, text_without_nul, tool_schema};
use crate::{error::ApiError, openapi as doc};

/// The listing's filters, sort and page: the query of `GET /api/{user_id}/tasks`, and the
/// arguments of the `list_tasks` tool. Every filter is optional; with none, all tasks are
/// listed, oldest first, 50 at a time.
#[derive(Debug, Default, Deserialize, IntoParams, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = tool_schema::tidy)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Text searched in title and description, case-insensitive, e.g. "plants".
    #[serde(default)]
    #[param(schema_with = search)]
    #[schemars(schema_with = "tool_schema::search")]
    pub q: Option<String>,
    /// Which tasks by completion: `pending` (not done yet), `completed`, or `all` (default).
    #[serde(default)]
    #[param(schema_with = status_filter)]
    #[schemars(schema_with = "tool_schema::status")]
    pub status: Option<String>,
    /// Only tasks of this priority.
    #[serde(default)]
    #[param(value_type = Option<Priority>)]
    #[schemars(schema_with = "tool_schema::priority")]
    pub priority: Option<String>,
    /// Only tasks carrying this tag, e.g. "home".
    #[serde(default)]
    #[param(schema_with = doc::tag_filter)]
    #[schemars(schema_with = "tool_schema::tag")]
    pub tag: Option<String>,
    /// Only tasks due before this instant: RFC 3339 with an offset, e.g.
    /// "2026-12-01T00:00:00Z".
    #[serde(default)]
    #[param(schema_with = doc::instant_filter)]
    #[schemars(schema_with = "tool_schema::instant")]
    pub due_before: Option<String>,
    /// Only tasks due at or after this instant: RFC 3339 with an offset, e.g.
    /// "2026-11-24T00:00:00+01:00".
    #[serde(default)]
    #[param(schema_with = doc::instant_filter)]
    #[schemars(schema_with = "tool_schema::instant")]
    pub due_after: Option<String>,
    /// `true`: only pending tasks whose due time has passed.
    #[serde(default)]
    #[schemars(schema_with = "tool_schema::boolean")]
    pub overdue: Option<bool>,
    /// `true`: only repeating tasks; `false`: only one-off tasks.
    #[serde(default)]
    #[schemars(schema_with = "tool_schema::boolean")]
    pub recurring: Option<bool>,
    /// Sort key: `created` (default), `due` (tasks without a due time last), `priority` or
    /// `title`.
    #[serde(default)]
    #[param(schema_with = sort_key)]
    #[schemars(schema_with = "tool_schema::sort")]
    pub sort: Option<String>,
    /// Sort direction: `asc` (default) or `desc`.
    #[serde(default)]
    #[param(schema_with = sort_order)]
    #[schemars(schema_with = "tool_schema::order")]
    pub order: Option<String>,
    /// Page size, 1 to 200 (50 by default).
    #[serde(default)]
    #[param(schema_with = doc::limit)]
    #[schemars(schema_with = "tool_schema::limit", extend("default" = LIST_LIMIT_DEFAULT))]
    pub limit: Option<u64>,
    /// To get the next page, pass the `next_cursor` of the previous page unchanged (with the
    /// same filters and sort). It marks the last task seen, so changes between pages never
    /// make a page skip or repeat a task.
    #[serde(default)]
    #[schemars(schema_with = "tool_schema::cursor")]
    pub cursor: Option<String>,
}

pub const SEARCH_MAX_CHARS: usize = 200;

/// The names the list query accepts, read by the parser and by the OpenAPI document alike.
pub const STATUS_FILTERS: [(&str, StatusFilter); 3] = [
    ("all", StatusFilter::All),
    ("pending", StatusFilter::Pending),
    ("completed", StatusFilter::Completed),
];
pub const SORT_KEYS: [(&str, SortKey); 4] = [
    ("created", SortKey::Created),
    ("due", SortKey::Due),
    ("priority", SortKey::Priority),
    ("title", SortKey::Title),
];
/// `true` for descending.
pub const SORT_ORDERS: [(&str, bool); 2] = [("asc", false), ("desc", true)];

/// The value `raw` names in `table`, the default when absent.
fn one_of<T: Copy + Default>(
    field: &str,
    table: &[(&str, T)],
    raw: Option<&str>,
) -> Result<T, ApiError> {
    let Some(raw) = raw else {
        return Ok(T::default());
    };
    table
        .iter()
        .find(|(name, _)| *name == raw)
        .map(|&(_, value)| value)
        .ok_or_else(|| {
            let names: Vec<&str> = table.iter().map(|(name, _)| *name).collect();
            ApiError::invalid(
                field,
                format!("{field} must be one of: {}", names.join(", ")),
            )
        })
}

impl ListParams {
    pub fn into_query(self, now: DateTime<Utc>) -> Result<ListQuery, ApiError> {
        let status = one_of("status", &STATUS_FILTERS, self.status.as_deref())?;
        let sort = one_of("sort", &SORT_KEYS, self.sort.as_deref())?;
        let descending = one_of("order", &SORT_ORDERS, self.order.as_deref())?;
        let instant =
            |field: &str, raw: Option<String>| -> Result<Option<DateTime<Utc>>, ApiError> {
                raw.map(|r| {
                    DateTime::parse_from_rfc3339(&r)
                        .map(|d| d.with_timezone(&Utc))
                        .map_err(|_| {
                            ApiError::invalid(
                                field,
                                format!(
                                    "{field} must be an RFC 3339 time such as 2026-12-01T09:00:00Z"
                                ),
                            )
                        })
                })
                .transpose()
            };
        let limit = self.limit.unwrap_or(todo_store::tasks::LIST_LIMIT_DEFAULT);
        if limit == 0 || limit > todo_store::tasks::LIST_LIMIT_MAX {
            return Err(ApiError::invalid(
                "limit",
                format!(
                    "limit must be between 1 and {}",
                    todo_store::tasks::LIST_LIMIT_MAX
                ),
            ));
        }
        if let Some(q) = &self.q {
            text_without_nul("q", q)?;
            if q.chars().count() > SEARCH_MAX_CHARS {
                return Err(ApiError::invalid(
                    "q",
                    format!("q must be at most {SEARCH_MAX_CHARS} characters"),
                ));
            }
        }
        let tag = self
            .tag
            .map(|t| Tags::parse(&[t]).map(|tags| tags.into_inner().remove(0)))
            .transpose()
            .map_err(|e| ApiError::invalid("tag", e.message))?;
        Ok(ListQuery {
            search: self.q.map(|q| q.trim().to_owned()),
            status,
            priority: self
                .priority
                .as_deref()
                .map(str::parse::<Priority>)
                .transpose()?,
            tag,
            due_before: instant("due_before", self.due_before)?,
            due_after: instant("due_after", self.due_after)?,
            overdue_at: self.overdue.unwrap_or(false).then_some(now),
            recurring: self.recurring,
            sort,
            descending,
            after: self
                .cursor
                .as_deref()
                .map(|c| decode_cursor(c, descending))
                .transpose()?,
            limit,
        })
    }
}

/// Cursors are opaque to clients. They carry the last task's sort value and id (see
/// [`todo_store::tasks::After`]) in URL-safe characters only:
/// `k2_<kind><order>_<value>_<id>`, where kind `c` (created) and `d` (due) carry an RFC 3339
/// UTC time (`-`: no due time), `p` a priority name and `t` the title's UTF-8 in hex, and
/// order is `a` or `d` (the page's `order`: a cursor reused with the other order is refused,
/// as it would start the wrong slice).
pub fn encode_cursor(after: &After, descending: bool) -> String {
    let time = |t: &DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    let (kind, value) = match &after.key {
        SortValue::Created(at) => ('c', time(at)),
        SortValue::Due(at) => ('d', at.as_ref().map_or_else(|| "-".to_owned(), time)),
        SortValue::Priority(p) => ('p', p.as_str().to_owned()),
        SortValue::Title(title) => ('t', title.bytes().map(|b| format!("{b:02x}")).collect()),
    };
    let order = if descending { 'd' } else { 'a' };
    format!("k2_{kind}{order}_{value}_{}", after.id.simple())
}

fn decode_cursor(raw: &str, descending: bool) -> Result<After, ApiError> {
    let bad = || ApiError::invalid("cursor", "cursor is not one this API returned");
    let mut parts = raw.splitn(4, '_');
    let (Some("k2"), Some(kind_order), Some(value), Some(id)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let (kind, order) = kind_order.split_at_checked(1).ok_or_else(bad)?;
    let made_for = match order {
        "a" => false,
        "d" => true,
        _ => return Err(bad()),
    };
    if made_for != descending {
        return Err(ApiError::invalid(
            "cursor",
            format!(
                "this cursor continues a listing with order={}; ask with that order, or start again without a cursor",
                if made_for { "desc" } else { "asc" }
            ),
        ));
    }
    let time = |v: &str| {
        DateTime::parse_from_rfc3339(v)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| bad())
    };
    let key = match kind {
        "c" => SortValue::Created(time(value)?),
        "d" if value == "-" => SortValue::Due(None),
        "d" => SortValue::Due(Some(time(value)?)),
        "p" => SortValue::Priority(value.parse().map_err(|_| bad())?),
        "t" => {
            let bytes = (0..value.len())
                .step_by(2)
                .map(|i| {
                    value
                        .get(i..i + 2)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                })
                .collect::<Option<Vec<u8>>>()
                .ok_or_else(bad)?;
            let title = String::from_utf8(bytes).map_err(|_| bad())?;
            // A title this API stored; anything else could not match one anyway.
            Title::parse(&title).map_err(|_| bad())?;
            SortValue::Title(title)
        }
        _ => return Err(bad()),
    };
    let id = Uuid::try_parse(id).map_err(|_| bad())?;
    Ok(After { key, id })
}

/// Status, sort and order are documented from the same tables the parser reads.
fn status_filter() -> utoipa::openapi::schema::Object {
    doc::string_enum(STATUS_FILTERS.map(|(name, _)| name))
}

fn sort_key() -> utoipa::openapi::schema::Object {
    doc::string_enum(SORT_KEYS.map(|(name, _)| name))
}

fn sort_order() -> utoipa::openapi::schema::Object {
    doc::string_enum(SORT_ORDERS.map(|(name, _)| name))
}

fn search() -> utoipa::openapi::schema::Object {
    doc::search(SEARCH_MAX_CHARS)
}

/// One page of a listing.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = TaskPage)]
pub struct TaskPageView {
    pub items: Vec<TaskView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    #[schema(nullable)]
    pub next_cursor: Option<String>,
}

impl TaskPageView {
    /// `page` of a listing sorted as `query` asked.
    pub fn new(page: Page, query: &ListQuery) -> Self {
        Self {
            items: page.items.into_iter().map(TaskView::from).collect(),
            next_cursor: page
                .next
                .as_ref()
                .map(|after| encode_cursor(after, query.descending)),
        }
    }
}
