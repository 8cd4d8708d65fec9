//! A model of the job's state machine (`infra/statemachine/job.asl.json`):
//! the simulator runs this table, and a test checks it against the file, so
//! a change to either side that the other does not follow fails the test
//! with the difference named.

/// What a state does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Sends a work message with a task token and waits for the token's
    /// answer, or the timeout.
    /// `retries_sending`: Step Functions retries a failed send of the
    /// message (`States.TaskFailed` only); nobody fails such a token.
    WaitForToken { message: &'static str, timeout: Timeout, retries_sending: bool },
    /// Sends a work message and goes on (Step Functions retries the send).
    Send { message: &'static str },
    /// Waits a number of seconds read from the execution's input.
    Wait { seconds_path: &'static str },
    /// Ends the execution as failed.
    Fail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// Read from the execution's input (`TimeoutSecondsPath`).
    Path(&'static str),
    /// Fixed (`TimeoutSeconds`).
    Seconds(u64),
}

/// One state: what it does, where it goes next (`None`: the execution ends)
/// and where each error goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    pub name: &'static str,
    pub kind: Kind,
    pub next: Option<&'static str>,
    /// `(ErrorEquals, Next)`, in order: the first that matches wins.
    pub catches: &'static [(&'static [&'static str], &'static str)],
}

pub const START: &str = "Submit";

pub const STATES: &[State] = &[
    State {
        name: "Submit",
        kind: Kind::WaitForToken { message: "submit", timeout: Timeout::Path("$.deadline_seconds"), retries_sending: false },
        next: Some("KeepForReview"),
        catches: &[(&["States.Timeout"], "AskProvider"), (&["States.ALL"], "GiveUp")],
    },
    State {
        name: "AskProvider",
        kind: Kind::WaitForToken { message: "poll", timeout: Timeout::Seconds(300), retries_sending: false },
        next: Some("KeepForReview"),
        catches: &[(&["States.ALL"], "GiveUp")],
    },
    // The retention window, as a task an approval answers (which ends the
    // execution); only its timeout reaches Expire.
    State {
        name: "KeepForReview",
        kind: Kind::WaitForToken { message: "await_review", timeout: Timeout::Path("$.retention_seconds"), retries_sending: true },
        next: None,
        catches: &[(&["States.Timeout"], "Expire")],
    },
    State { name: "Expire", kind: Kind::Send { message: "expire" }, next: None, catches: &[] },
    State { name: "GiveUp", kind: Kind::Send { message: "give_up" }, next: Some("GaveUp"), catches: &[] },
    State { name: "GaveUp", kind: Kind::Fail, next: None, catches: &[] },
];

pub fn state(name: &str) -> &'static State {
    STATES.iter().find(|s| s.name == name).unwrap_or(&STATES[0])
}

/// Where an error (`States.Timeout`, or the name a task was failed with)
/// takes an execution from `from`; `None`: the execution fails.
pub fn catch(from: &State, error: &str) -> Option<&'static str> {
    from.catches.iter().find(|(errors, _)| errors.contains(&error) || errors.contains(&"States.ALL")).map(|(_, next)| *next)
}

/// The differences between the model and a state machine definition (ASL
/// JSON); empty when they agree.
pub fn differences(asl: &serde_json::Value) -> Vec<String> {
    let mut found = Vec::new();
    if asl["StartAt"].as_str() != Some(START) {
        found.push(format!("StartAt is {} in the file, {START} in the model", asl["StartAt"]));
    }
    let Some(states) = asl["States"].as_object() else {
        return vec!["the file has no States".into()];
    };
    for name in states.keys() {
        if !STATES.iter().any(|s| s.name == name) {
            found.push(format!("state {name} is in the file, not in the model"));
        }
    }
    for model in STATES {
        let Some(file) = states.get(model.name) else {
            found.push(format!("state {} is in the model, not in the file", model.name));
            continue;
        };
        let mut differ = |what: &str, file: String, model_says: String| {
            if file != model_says {
                found.push(format!("{}: {what} is {file} in the file, {model_says} in the model", model.name));
            }
        };
        let resource = file["Resource"].as_str().unwrap_or("").to_owned();
        let kind = file["Parameters"]["MessageBody"]["kind"].to_string();
        match model.kind {
            Kind::WaitForToken { message, timeout, .. } => {
                differ("Type", file["Type"].to_string(), "\"Task\"".into());
                differ("Resource", resource, "arn:aws:states:::sqs:sendMessage.waitForTaskToken".into());
                differ("message kind", kind, format!("\"{message}\""));
                differ(
                    "the token in the message",
                    file["Parameters"]["MessageBody"]["task_token.$"].to_string(),
                    "\"$$.Task.Token\"".into(),
                );
                let (path, seconds) = match timeout {
                    Timeout::Path(p) => (format!("\"{p}\""), "null".to_owned()),
                    Timeout::Seconds(s) => ("null".to_owned(), s.to_string()),
                };
                differ("TimeoutSecondsPath", file["TimeoutSecondsPath"].to_string(), path);
                differ("TimeoutSeconds", file["TimeoutSeconds"].to_string(), seconds);
            }
            Kind::Send { message } => {
                differ("Type", file["Type"].to_string(), "\"Task\"".into());
                differ("Resource", resource, "arn:aws:states:::sqs:sendMessage".into());
                differ("message kind", kind, format!("\"{message}\""));
            }
            Kind::Wait { seconds_path } => {
                differ("Type", file["Type"].to_string(), "\"Wait\"".into());
                differ("SecondsPath", file["SecondsPath"].to_string(), format!("\"{seconds_path}\""));
            }
            Kind::Fail => differ("Type", file["Type"].to_string(), "\"Fail\"".into()),
        }
        let next = match (file["Next"].as_str(), file["End"].as_bool()) {
            (Some(next), _) => format!("Next {next}"),
            (None, Some(true)) => "End".into(),
            _ => "neither Next nor End".into(),
        };
        let model_next = match (model.kind, model.next) {
            (Kind::Fail, _) => "neither Next nor End".into(),
            (_, Some(next)) => format!("Next {next}"),
            (_, None) => "End".into(),
        };
        differ("the way on", next, model_next);
        let catches: Vec<String> = file["Catch"]
            .as_array()
            .map(|all| all.iter().map(|c| format!("{} -> {}", c["ErrorEquals"], c["Next"].as_str().unwrap_or(""))).collect())
            .unwrap_or_default();
        let model_catches: Vec<String> =
            model.catches.iter().map(|(errors, next)| format!("{} -> {next}", serde_json::json!(errors))).collect();
        differ("Catch", format!("{catches:?}"), format!("{model_catches:?}"));
        // A task whose token the worker answers has no Retry (the worker
        // retries itself); one whose token only a review answers retries the
        // sending of its message, nothing else.
        if let Kind::WaitForToken { retries_sending, .. } = model.kind {
            let retried: Vec<String> =
                file["Retry"].as_array().map(|all| all.iter().map(|r| r["ErrorEquals"].to_string()).collect()).unwrap_or_default();
            let model_retried = if retries_sending { vec![r#"["States.TaskFailed"]"#.to_owned()] } else { Vec::new() };
            differ("Retry", format!("{retried:?}"), format!("{model_retried:?}"));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = include_str!("../../infra/statemachine/job.asl.json");

    #[test]
    fn the_model_of_the_state_machine_agrees_with_its_definition_file() {
        let asl: serde_json::Value = serde_json::from_str(FILE).expect("the ASL file is JSON");
        let differences = differences(&asl);
        assert!(differences.is_empty(), "the simulator's model and job.asl.json differ:\n{}", differences.join("\n"));
    }

    #[test]
    fn the_check_notices_a_state_the_model_does_not_have() {
        let mut asl: serde_json::Value = serde_json::from_str(FILE).expect("the ASL file is JSON");
        asl["States"]["WaitForReview"] = serde_json::json!({"Type": "Pass", "End": true});
        asl["States"]["Submit"]["Catch"][0]["Next"] = serde_json::json!("GiveUp");
        let differences = differences(&asl);
        assert!(differences.iter().any(|d| d.contains("WaitForReview")), "{differences:?}");
        assert!(differences.iter().any(|d| d.starts_with("Submit: Catch")), "{differences:?}");
    }

    #[test]
    fn a_timeout_of_the_submission_asks_the_provider_and_any_other_error_gives_up() {
        assert_eq!(catch(state("Submit"), "States.Timeout"), Some("AskProvider"));
        assert_eq!(catch(state("Submit"), "ProviderRefused"), Some("GiveUp"));
        assert_eq!(catch(state("AskProvider"), "States.Timeout"), Some("GiveUp"));
        assert_eq!(catch(state("AskProvider"), "StillRunning"), Some("GiveUp"));
    }

    #[test]
    fn only_the_review_waits_timeout_reaches_expire_and_its_answer_ends_the_execution() {
        assert_eq!(catch(state("KeepForReview"), "States.Timeout"), Some("Expire"));
        assert_eq!(catch(state("KeepForReview"), "States.TaskFailed"), None);
        assert_eq!(state("KeepForReview").next, None);
    }
}
