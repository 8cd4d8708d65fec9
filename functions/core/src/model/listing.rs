//! The filters of `GET /videos/jobs`: parsed once at the edge, so that a
//! listing adapter only ever sees a filter it can run.

use crate::model::ids::JobId;
use crate::model::job::Job;
use crate::model::lifecycle::JobStatus;
use crate::model::request::{InvalidRequest, WorkflowType};
use crate::model::tag::Tag;
use crate::model::timestamp;
use time::OffsetDateTime;

/// What `GET /videos/jobs` narrows the caller's jobs to; every part is
/// optional and they all apply together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Jobs in any of these statuses (`status=failed,expired`); all when empty.
    pub statuses: Vec<JobStatus>,
    /// Jobs of this kind only.
    pub workflow_type: Option<WorkflowType>,
    /// Jobs carrying this tag.
    pub tag: Option<Tag>,
    /// Jobs made from this one by a retry or a remix.
    pub parent_job_id: Option<JobId>,
    /// Jobs created at or after this time (whole milliseconds).
    pub created_after: Option<OffsetDateTime>,
    /// Jobs created before this time (whole milliseconds).
    pub created_before: Option<OffsetDateTime>,
}

/// The query parameters a filter is read from, in the order they are checked.
pub const FILTER_PARAMETERS: [&str; 6] = ["status", "workflow_type", "tag", "parent_job_id", "created_after", "created_before"];

impl JobFilter {
    /// Reads the filter from the query parameters `param` gives; an empty
    /// parameter is absent; anything else that does not parse is refused,
    /// naming the parameter.
    pub fn parse(param: impl Fn(&str) -> Option<String>) -> Result<Self, InvalidRequest> {
        let given = |name: &str| param(name).filter(|value| !value.is_empty());
        let mut filter = JobFilter::default();
        if let Some(text) = given("status") {
            for part in text.split(',') {
                let status = JobStatus::parse(part.trim()).ok_or_else(|| {
                    let known: Vec<&str> = JobStatus::ALL.iter().map(|s| s.as_str()).collect();
                    InvalidRequest::new("status", format!("'{part}' is not a status; one or more of {}, comma-separated", known.join(", ")))
                })?;
                if !filter.statuses.contains(&status) {
                    filter.statuses.push(status);
                }
            }
        }
        filter.workflow_type = given("workflow_type")
            .map(|text| match text.as_str() {
                "text_to_video" => Ok(WorkflowType::TextToVideo),
                "image_to_video" => Ok(WorkflowType::ImageToVideo),
                _ => Err(InvalidRequest::new("workflow_type", "is text_to_video or image_to_video")),
            })
            .transpose()?;
        filter.tag = given("tag").map(|text| Tag::try_from(text).map_err(|m| InvalidRequest::new("tag", m))).transpose()?;
        filter.parent_job_id = given("parent_job_id")
            .map(|text| text.parse::<JobId>().map_err(|_| InvalidRequest::new("parent_job_id", "is not a job id")))
            .transpose()?;
        let time = |name: &'static str| {
            given(name)
                .map(|text| {
                    let at = timestamp::parse(&text)
                        .ok_or_else(|| InvalidRequest::new(name, "is an RFC 3339 time, such as 2026-12-01T00:00:00Z"))?;
                    // Stored times are whole milliseconds; so are the bounds.
                    Ok(at.replace_millisecond(at.millisecond()).unwrap_or(at))
                })
                .transpose()
        };
        filter.created_after = time("created_after")?;
        filter.created_before = time("created_before")?;
        if let (Some(after), Some(before)) = (filter.created_after, filter.created_before) {
            if after >= before {
                return Err(InvalidRequest::new("created_before", "must be later than created_after"));
            }
        }
        Ok(filter)
    }

    /// Whether the filter lets every job through.
    pub fn is_empty(&self) -> bool {
        self == &JobFilter::default()
    }

    /// Whether `job` passes the filter (the owner is the listing's concern).
    pub fn matches(&self, job: &Job) -> bool {
        (self.statuses.is_empty() || self.statuses.contains(&job.status))
            && self.workflow_type.is_none_or(|w| job.workflow_type() == w)
            && self.tag.as_ref().is_none_or(|tag| job.tags.contains(tag))
            && self.parent_job_id.as_ref().is_none_or(|parent| job.parent_job_id.as_ref() == Some(parent))
            && self.created_after.is_none_or(|after| job.created_at >= after)
            && self.created_before.is_none_or(|before| job.created_at < before)
    }

    /// Whether a listing position created at `created` lies within the time bounds.
    pub fn admits_creation_time(&self, created: OffsetDateTime) -> bool {
        self.created_after.is_none_or(|after| created >= after) && self.created_before.is_none_or(|before| created < before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ids::UserId;
    use crate::model::job::JobParams;
    use crate::model::request::{AspectRatio, ProviderName, Resolution};
    use std::collections::HashMap;
    use time::macros::datetime;

    fn parse(pairs: &[(&str, &str)]) -> Result<JobFilter, InvalidRequest> {
        let params: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        JobFilter::parse(|name| params.get(name).cloned())
    }

    fn job(status: JobStatus, tags: &[&str], created_at: OffsetDateTime) -> Job {
        let params = JobParams::TextToVideo { duration_seconds: 4, aspect_ratio: AspectRatio::Landscape, resolution: Resolution::Hd };
        let mut job = Job::accepted(
            JobId::generate(),
            "alice".parse::<UserId>().unwrap(),
            params,
            "local".parse::<ProviderName>().unwrap(),
            8,
            created_at,
        );
        job.status = status;
        job.tags = tags.iter().map(|t| t.parse().unwrap()).collect();
        job
    }

    #[test]
    fn no_parameters_make_an_empty_filter_and_empty_parameters_count_as_absent() {
        assert!(parse(&[]).unwrap().is_empty());
        assert!(parse(&[("status", ""), ("tag", ""), ("created_after", "")]).unwrap().is_empty());
    }

    #[test]
    fn every_parameter_is_read_into_its_part() {
        let parent = JobId::generate();
        let filter = parse(&[
            ("status", "failed,expired,failed"),
            ("workflow_type", "image_to_video"),
            ("tag", "promo"),
            ("parent_job_id", parent.as_str()),
            ("created_after", "2026-12-01T00:00:00.123456Z"),
            ("created_before", "2026-12-02T01:00:00+01:00"),
        ])
        .unwrap();
        assert_eq!(filter.statuses, vec![JobStatus::Failed, JobStatus::Expired], "each status once");
        assert_eq!(filter.workflow_type, Some(WorkflowType::ImageToVideo));
        assert_eq!(filter.tag, Some("promo".parse().unwrap()));
        assert_eq!(filter.parent_job_id, Some(parent));
        assert_eq!(filter.created_after, Some(datetime!(2026-12-01 00:00:00.123 UTC)), "cut to whole milliseconds");
        assert_eq!(filter.created_before, Some(datetime!(2026-12-02 00:00:00 UTC)));
    }

    #[test]
    fn a_parameter_that_does_not_parse_is_refused_by_name() {
        let cases = [
            ("status", "done"),
            ("status", "failed,"),
            ("workflow_type", "video"),
            ("tag", "Promo"),
            ("parent_job_id", "job_nope"),
            ("created_after", "yesterday"),
            ("created_before", "2026-12-01"),
        ];
        for (name, value) in cases {
            assert_eq!(parse(&[(name, value)]).unwrap_err().field, name, "{name}={value}");
        }
    }

    #[test]
    fn a_time_window_that_ends_before_it_starts_is_refused() {
        let same = parse(&[("created_after", "2026-12-01T00:00:00Z"), ("created_before", "2026-12-01T00:00:00Z")]);
        assert_eq!(same.unwrap_err().field, "created_before");
    }

    #[test]
    fn a_job_matches_when_it_passes_every_part_given() {
        let at = datetime!(2026-12-01 12:00:00 UTC);
        let tagged = job(JobStatus::Failed, &["promo", "q4"], at);
        assert!(JobFilter::default().matches(&tagged));
        assert!(parse(&[("status", "completed,failed"), ("tag", "q4"), ("workflow_type", "text_to_video")]).unwrap().matches(&tagged));
        assert!(!parse(&[("status", "completed")]).unwrap().matches(&tagged));
        assert!(!parse(&[("tag", "other")]).unwrap().matches(&tagged));
        assert!(!parse(&[("workflow_type", "image_to_video")]).unwrap().matches(&tagged));
        assert!(!parse(&[("parent_job_id", JobId::generate().as_str())]).unwrap().matches(&tagged));
    }

    #[test]
    fn the_time_window_includes_its_start_and_excludes_its_end() {
        let at = datetime!(2026-12-01 12:00:00 UTC);
        let made = job(JobStatus::Queued, &[], at);
        assert!(parse(&[("created_after", "2026-12-01T12:00:00Z")]).unwrap().matches(&made));
        assert!(!parse(&[("created_before", "2026-12-01T12:00:00Z")]).unwrap().matches(&made));
        assert!(parse(&[("created_before", "2026-12-01T12:00:00.001Z")]).unwrap().matches(&made));
        assert!(!parse(&[("created_after", "2026-12-01T12:00:00.001Z")]).unwrap().admits_creation_time(at));
    }
}
