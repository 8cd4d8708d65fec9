//! CloudWatch embedded metric format: one JSON object per line on stdout,
//! which CloudWatch Logs turns into metrics in namespace `videojobs` (no
//! PutMetricData call, no SDK). Each metric is published under every
//! dimension set given, including the empty one, so that alarms can watch the
//! total while dashboards split it by provider or workflow type.

use serde_json::{json, Map, Value};

/// The CloudWatch namespace every metric line is published in.
pub const NAMESPACE: &str = "videojobs";

/// The unit CloudWatch shows a metric's values in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A number of things or events.
    Count,
    /// A duration.
    Seconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Seconds => "Seconds",
        }
    }
}

/// One metric line: dimensions, the sets of them to publish under, metrics,
/// and properties kept in the log line only (a job id).
#[derive(Debug, Clone, Default)]
pub struct MetricLine {
    dimensions: Vec<(&'static str, String)>,
    dimension_sets: Vec<Vec<&'static str>>,
    metrics: Vec<(&'static str, f64, Unit)>,
    properties: Vec<(&'static str, String)>,
}

impl MetricLine {
    /// Published without dimensions (the total) and under each dimension on its own.
    pub fn new() -> Self {
        Self { dimension_sets: vec![Vec::new()], ..Self::default() }
    }

    /// Adds a dimension, and a dimension set of it alone to publish under.
    pub fn dimension(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.dimensions.push((name, value.into()));
        self.dimension_sets.push(vec![name]);
        self
    }

    /// Adds a metric value in `unit`.
    pub fn metric(mut self, name: &'static str, value: f64, unit: Unit) -> Self {
        self.metrics.push((name, value, unit));
        self
    }

    /// Adds a property: kept in the log line, not a dimension nor a metric.
    pub fn property(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.properties.push((name, value.into()));
        self
    }

    /// The EMF document, timestamped `timestamp_ms` (milliseconds since the epoch).
    pub fn render(&self, timestamp_ms: i64) -> String {
        let definitions: Vec<Value> = self.metrics.iter().map(|(name, _, unit)| json!({"Name": name, "Unit": unit.as_str()})).collect();
        let mut root = Map::new();
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": self.dimension_sets,
                    "Metrics": definitions,
                }],
            }),
        );
        for (name, value) in &self.properties {
            root.insert((*name).into(), Value::String(value.clone()));
        }
        for (name, value) in &self.dimensions {
            root.insert((*name).into(), Value::String(value.clone()));
        }
        for (name, value, _) in &self.metrics {
            root.insert((*name).into(), json!(value));
        }
        Value::Object(root).to_string()
    }

    /// Writes the line to stdout, where Lambda sends it to CloudWatch Logs.
    /// A simulated thread writes nothing: a simulator's million runs would
    /// bury its findings under their metric lines.
    pub fn emit(&self) {
        if crate::model::determinism::simulated() {
            return;
        }
        let line = self.render(crate::model::determinism::now_millis() as i64);
        // println! rather than a raw stdout handle: test harnesses capture it.
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_follows_the_embedded_metric_format() {
        let line = MetricLine::new()
            .dimension("Provider", "local")
            .dimension("WorkflowType", "text_to_video")
            .metric("JobCompleted", 1.0, Unit::Count)
            .metric("TimeToComplete", 12.5, Unit::Seconds)
            .property("job_id", "job_x")
            .render(1_800_000_000_000);

        assert!(!line.contains('\n'), "one line");
        let doc: Value = serde_json::from_str(&line).unwrap();
        // The metadata: a millisecond timestamp and one metric directive.
        assert_eq!(doc["_aws"]["Timestamp"], 1_800_000_000_000i64);
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(doc["_aws"]["CloudWatchMetrics"].as_array().unwrap().len(), 1);
        assert_eq!(directive["Namespace"], "videojobs");
        assert_eq!(directive["Dimensions"], json!([[], ["Provider"], ["WorkflowType"]]));
        assert_eq!(directive["Metrics"], json!([{"Name": "JobCompleted", "Unit": "Count"}, {"Name": "TimeToComplete", "Unit": "Seconds"}]));
        // Every dimension and metric the directive names is a member of the root.
        for set in directive["Dimensions"].as_array().unwrap() {
            for name in set.as_array().unwrap() {
                assert!(doc[name.as_str().unwrap()].is_string(), "{name}");
            }
        }
        assert_eq!(doc["Provider"], "local");
        assert_eq!(doc["JobCompleted"], 1.0);
        assert_eq!(doc["TimeToComplete"], 12.5);
        assert_eq!(doc["job_id"], "job_x");
        // The spec's limits: at most 30 dimensions in a set, 100 metrics in a directive.
        assert!(directive["Dimensions"].as_array().unwrap().iter().all(|s| s.as_array().unwrap().len() <= 30));
        assert!(directive["Metrics"].as_array().unwrap().len() <= 100);
    }

    #[test]
    fn a_line_without_dimensions_publishes_the_total_only() {
        let doc: Value = serde_json::from_str(&MetricLine::new().metric("StuckJobs", 3.0, Unit::Count).render(5)).unwrap();
        assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([[]]));
        assert_eq!(doc["StuckJobs"], 3.0);
    }
}
