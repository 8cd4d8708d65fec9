//! `GET /videos/jobs` with its filters (docs/DECISIONS.md, "Filters on the
//! job list"): which index, which key condition and which filter expression a
//! [`JobFilter`] becomes, and the bounded loop that fills a page.
//!
//! - `parent_job_id` reads the sparse `by_parent` index (only that parent's
//!   children); everything else reads `by_user`.
//! - `created_after`/`created_before` are a key condition on `created_key`
//!   (`{created_at}#{job_id}`): only the window is read.
//! - `status`, `workflow_type` and `tag` are a filter expression on the
//!   attributes `by_user` projects: DynamoDB reads (and charges for) the
//!   entries it drops, so a page reads at most [`ROUNDS_PER_PAGE`] batches.
//! - Every job found is checked again as it is now (`JobFilter::matches`):
//!   the index lags the table.

use super::{index_keys, s, DynamoStore, Item, INDEX_BY_PARENT, INDEX_BY_USER};
use crate::errors::store_error;
use std::collections::HashMap;
use videojobs_core::model::ids::{JobId, UserId};
use videojobs_core::model::job::{timestamp, Job};
use videojobs_core::model::listing::JobFilter;
use videojobs_core::ports::{ListError, Page, PageRequest};

/// The most index reads one filtered page makes before it answers with what
/// it found and a cursor.
pub const ROUNDS_PER_PAGE: usize = 5;
/// How many index entries one filtered read looks at (a page's worth or this,
/// whichever is more): index entries are small, so a selective filter finds
/// its page in fewer reads.
pub const ENTRIES_PER_ROUND: u32 = 100;

/// One listing query, as DynamoDB takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ListingQuery {
    /// `by_user` or `by_parent`.
    pub index: &'static str,
    /// The partition and, with a time window, the sort key's range.
    pub key_condition: String,
    /// Whatever the index can test beyond its keys; `None` on `by_parent` (keys only).
    pub filter_expression: Option<String>,
    /// The names the expressions use.
    pub names: HashMap<String, String>,
    /// The values the expressions use.
    pub values: HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
    /// The attributes of a position in this index, in a cursor.
    pub cursor_fields: [&'static str; 4],
    /// The attribute that holds the partition (`user_id` or `parent_job_id`).
    pub partition: &'static str,
    /// Its value.
    pub partition_value: String,
}

/// The query `filter` makes of `user`'s jobs.
pub fn listing_query(user: &UserId, filter: &JobFilter) -> ListingQuery {
    let mut names = HashMap::new();
    let mut values = HashMap::new();
    let (index, partition, partition_value) = match &filter.parent_job_id {
        Some(parent) => (INDEX_BY_PARENT, "parent_job_id", parent.to_string()),
        None => (INDEX_BY_USER, "user_id", user.to_string()),
    };
    names.insert("#partition".into(), partition.into());
    values.insert(":partition".into(), s(partition_value.clone()));
    let mut key_condition = "#partition = :partition".to_owned();
    // A stored `created_key` is `{time}#{id}`: it sorts after its own time, so
    // `>= after` keeps a job made at `after` and `< before` drops one made at `before`.
    match (filter.created_after, filter.created_before) {
        (Some(after), Some(before)) => {
            key_condition.push_str(" AND #created BETWEEN :after AND :before");
            values.insert(":after".into(), s(timestamp::format(after)));
            values.insert(":before".into(), s(timestamp::format(before)));
        }
        (Some(after), None) => {
            key_condition.push_str(" AND #created >= :after");
            values.insert(":after".into(), s(timestamp::format(after)));
        }
        (None, Some(before)) => {
            key_condition.push_str(" AND #created < :before");
            values.insert(":before".into(), s(timestamp::format(before)));
        }
        (None, None) => {}
    }
    if filter.created_after.is_some() || filter.created_before.is_some() {
        // DynamoDB refuses a name or a value that no expression uses.
        names.insert("#created".into(), "created_key".into());
    }
    let mut tests = Vec::new();
    if index == INDEX_BY_USER {
        if !filter.statuses.is_empty() {
            let placeholders: Vec<String> = (0..filter.statuses.len()).map(|i| format!(":status{i}")).collect();
            for (placeholder, status) in placeholders.iter().zip(&filter.statuses) {
                values.insert(placeholder.clone(), s(status.as_str()));
            }
            names.insert("#status".into(), "status".into());
            tests.push(format!("#status IN ({})", placeholders.join(", ")));
        }
        if let Some(workflow) = filter.workflow_type {
            names.insert("#workflow".into(), "workflow_type".into());
            values.insert(":workflow".into(), s(workflow.as_str()));
            tests.push("#workflow = :workflow".into());
        }
        if let Some(tag) = &filter.tag {
            names.insert("#tags".into(), "tags".into());
            values.insert(":tag".into(), s(tag.as_str()));
            tests.push("contains(#tags, :tag)".into());
        }
    }
    ListingQuery {
        index,
        key_condition,
        filter_expression: (!tests.is_empty()).then(|| tests.join(" AND ")),
        names,
        values,
        cursor_fields: ["pk", "sk", partition, "created_key"],
        partition,
        partition_value,
    }
}

impl ListingQuery {
    /// The position a cursor names, refused unless it is one of this
    /// listing's and inside its time window (DynamoDB refuses a start key
    /// outside the key condition: that would be a 500, not a 400).
    fn start_after(&self, cursor: &str, filter: &JobFilter) -> Result<Item, ListError> {
        crate::cursor::decode(cursor, &self.cursor_fields, |fields| {
            let created = fields.get("created_key").and_then(|k| k.split_once('#')).and_then(|(at, _)| timestamp::parse(at));
            fields.get(self.partition) == Some(&self.partition_value)
                && fields.get("pk").and_then(|pk| pk.strip_prefix("JOB#")).is_some_and(|id| id.parse::<JobId>().is_ok())
                && fields.get("sk").map(String::as_str) == Some("JOB")
                && created.is_some_and(|at| filter.admits_creation_time(at))
        })
    }
}

impl DynamoStore {
    /// A page of `user`'s jobs that pass `filter`: index reads until the page
    /// is full, the index ends or [`ROUNDS_PER_PAGE`] reads are spent.
    pub(super) async fn filtered_jobs(&self, user: &UserId, filter: &JobFilter, page: &PageRequest) -> Result<Page<Job>, ListError> {
        let query = listing_query(user, filter);
        let mut start = page.cursor.as_deref().map(|c| query.start_after(c, filter)).transpose()?;
        let wanted = page.limit as usize;
        let per_round = if query.filter_expression.is_some() { page.limit.max(ENTRIES_PER_ROUND) } else { page.limit };
        let mut found: Vec<Item> = Vec::new();
        let mut next: Option<Item> = None;
        for _ in 0..ROUNDS_PER_PAGE {
            let out = self
                .client
                .query()
                .table_name(&self.jobs_table)
                .index_name(query.index)
                .key_condition_expression(&query.key_condition)
                .set_filter_expression(query.filter_expression.clone())
                .set_expression_attribute_names(Some(query.names.clone()))
                .set_expression_attribute_values(Some(query.values.clone()))
                .scan_index_forward(false)
                .limit(per_round as i32)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| store_error("Query", e))?;
            found.extend(out.items.unwrap_or_default());
            if found.len() >= wanted {
                // Full: the next page starts after the last entry this one
                // keeps, unless the index ended right there.
                let cut_short = found.len() > wanted;
                found.truncate(wanted);
                next = if cut_short || out.last_evaluated_key.is_some() { found.last().cloned() } else { None };
                break;
            }
            match out.last_evaluated_key {
                Some(last) => {
                    next = Some(last.clone());
                    start = Some(last);
                }
                None => {
                    next = None;
                    break;
                }
            }
        }
        let next_cursor = next.map(|last| crate::cursor::encode(&last, &query.cursor_fields)).transpose()?;
        let jobs = self.jobs_by_keys(&index_keys(found)).await?;
        // The index lags the table: each job is checked as it is now.
        let items = jobs.into_iter().filter(|job| &job.user_id == user && filter.matches(job)).collect();
        Ok(Page { items, next_cursor })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap as Map;

    fn filter(pairs: &[(&str, &str)]) -> JobFilter {
        let params: Map<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        JobFilter::parse(|name| params.get(name).cloned()).unwrap()
    }

    fn alice() -> UserId {
        "alice".parse().unwrap()
    }

    /// DynamoDB refuses a query with a name or a value its expressions do not use.
    fn every_name_and_value_is_used(query: &ListingQuery) {
        let expressions = format!("{} {}", query.key_condition, query.filter_expression.clone().unwrap_or_default());
        for placeholder in query.names.keys().chain(query.values.keys()) {
            let used =
                expressions.split(|c: char| !(c.is_alphanumeric() || c == '#' || c == ':' || c == '_')).any(|word| word == placeholder);
            assert!(used, "{placeholder} is unused in {expressions}");
        }
    }

    #[test]
    fn every_filter_uses_every_name_and_value_it_sends() {
        let parent = JobId::generate();
        let cases: Vec<Vec<(&str, &str)>> = vec![
            vec![],
            vec![("status", "failed")],
            vec![("status", "failed,expired"), ("workflow_type", "text_to_video"), ("tag", "promo")],
            vec![("created_after", "2026-12-01T00:00:00Z")],
            vec![("created_before", "2026-12-01T00:00:00Z"), ("tag", "q4")],
            vec![("created_after", "2026-12-01T00:00:00Z"), ("created_before", "2026-12-02T00:00:00Z")],
            vec![("parent_job_id", parent.as_str()), ("status", "failed"), ("tag", "x")],
        ];
        for case in cases {
            every_name_and_value_is_used(&listing_query(&alice(), &filter(&case)));
        }
    }

    #[test]
    fn no_filter_reads_the_users_index_with_no_filter_expression() {
        let query = listing_query(&alice(), &JobFilter::default());
        assert_eq!(query.index, INDEX_BY_USER);
        assert_eq!(query.key_condition, "#partition = :partition");
        assert_eq!(query.filter_expression, None);
        assert_eq!(query.values[":partition"], s("alice"));
    }

    #[test]
    fn status_workflow_and_tag_become_one_filter_expression() {
        let query = listing_query(&alice(), &filter(&[("status", "failed,expired"), ("workflow_type", "text_to_video"), ("tag", "promo")]));
        assert_eq!(
            query.filter_expression.as_deref(),
            Some("#status IN (:status0, :status1) AND #workflow = :workflow AND contains(#tags, :tag)")
        );
        assert_eq!((query.values[":status1"].clone(), query.values[":tag"].clone()), (s("expired"), s("promo")));
        assert_eq!(query.names["#tags"], "tags");
    }

    #[test]
    fn a_time_window_is_a_key_condition_on_the_creation_key() {
        let both =
            listing_query(&alice(), &filter(&[("created_after", "2026-12-01T00:00:00Z"), ("created_before", "2026-12-02T00:00:00Z")]));
        assert_eq!(both.key_condition, "#partition = :partition AND #created BETWEEN :after AND :before");
        assert_eq!(both.values[":after"], s("2026-12-01T00:00:00.000Z"));
        let after = listing_query(&alice(), &filter(&[("created_after", "2026-12-01T00:00:00Z")]));
        assert!(after.key_condition.ends_with("#created >= :after"));
        let before = listing_query(&alice(), &filter(&[("created_before", "2026-12-01T00:00:00Z")]));
        assert!(before.key_condition.ends_with("#created < :before"));
    }

    #[test]
    fn a_parent_reads_the_parent_index_and_leaves_the_rest_to_the_items() {
        let parent = JobId::generate();
        let query = listing_query(&alice(), &filter(&[("parent_job_id", parent.as_str()), ("status", "failed")]));
        assert_eq!((query.index, query.partition), (INDEX_BY_PARENT, "parent_job_id"));
        assert_eq!(query.filter_expression, None, "by_parent holds keys only");
        assert_eq!(query.cursor_fields, ["pk", "sk", "parent_job_id", "created_key"]);
    }

    #[test]
    fn a_cursor_outside_the_time_window_or_of_another_listing_is_refused() {
        let job = JobId::generate();
        let position = |created: &str| -> Item {
            HashMap::from([
                ("pk".to_owned(), s(format!("JOB#{job}"))),
                ("sk".to_owned(), s("JOB")),
                ("user_id".to_owned(), s("alice")),
                ("created_key".to_owned(), s(format!("{created}#{job}"))),
            ])
        };
        let windowed = filter(&[("created_after", "2026-12-01T00:00:00Z")]);
        let query = listing_query(&alice(), &windowed);
        let inside = crate::cursor::encode(&position("2026-12-05T00:00:00.000Z"), &query.cursor_fields).unwrap();
        let outside = crate::cursor::encode(&position("2026-11-05T00:00:00.000Z"), &query.cursor_fields).unwrap();
        assert!(query.start_after(&inside, &windowed).is_ok());
        assert_eq!(query.start_after(&outside, &windowed), Err(ListError::BadCursor));
        let of_bob = listing_query(&"bob".parse().unwrap(), &JobFilter::default());
        assert_eq!(of_bob.start_after(&inside, &JobFilter::default()), Err(ListError::BadCursor));
        let parent = filter(&[("parent_job_id", JobId::generate().as_str())]);
        assert_eq!(listing_query(&alice(), &parent).start_after(&inside, &parent), Err(ListError::BadCursor));
    }
}
