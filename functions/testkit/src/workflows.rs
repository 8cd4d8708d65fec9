//! Step Functions in memory: one execution per job, named by its id, and
//! the task tokens it waits on. A token is answered once: a second answer,
//! or an answer after the execution ended, is what SFN calls
//! `TaskTimedOut`/`InvalidToken`, which the adapter takes as `Ok`; it is
//! kept (see [`Memory::task_answers`]) so a test can see it was ignored.

use crate::Memory;
use async_trait::async_trait;
use std::collections::BTreeMap;
use videojobs_core::model::ids::JobId;
use videojobs_core::ports::{TaskTokens, WorkflowInput, Workflows};
use videojobs_core::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecutionStatus {
    Running,
    Succeeded,
    Failed,
    Aborted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    pub input: WorkflowInput,
    pub status: ExecutionStatus,
    pub stop_cause: Option<String>,
    /// How many times `start` was called for it (the first started it).
    pub starts: u32,
}

/// An answer given to a task token.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskAnswer {
    Success(serde_json::Value),
    Failure { error: String, cause: String },
}

#[derive(Debug, Clone)]
struct Token {
    job: JobId,
    answer: Option<TaskAnswer>,
    /// Answers that came after the first, or after the execution ended.
    ignored: Vec<TaskAnswer>,
}

#[derive(Default)]
pub(crate) struct Executions {
    executions: BTreeMap<JobId, Execution>,
    tokens: BTreeMap<String, Token>,
    /// Answers to tokens nobody issued (`InvalidToken`).
    unknown: Vec<(String, TaskAnswer)>,
    issued: u64,
}

impl Memory {
    /// The job's execution, if one was started.
    pub fn execution(&self, job: &JobId) -> Option<Execution> {
        self.lock().executions.executions.get(job).cloned()
    }

    /// A task token the job's execution now waits on (what the state
    /// machine puts in a `submit` or `poll` message), for a simulator that
    /// plays the state machine.
    pub fn issue_task_token(&self, job: &JobId) -> String {
        let mut state = self.lock();
        let executions = &mut state.executions;
        executions.issued += 1;
        let token = format!("task-token-{}-{}", job, executions.issued);
        executions.tokens.insert(token.clone(), Token { job: job.clone(), answer: None, ignored: Vec::new() });
        token
    }

    /// Ends a running execution as the state machine would (a simulator
    /// playing it decides how): answers to its tokens are ignored from now on.
    pub fn finish_execution(&self, job: &JobId, status: ExecutionStatus) {
        if let Some(execution) = self.lock().executions.executions.get_mut(job).filter(|e| e.status == ExecutionStatus::Running) {
            execution.status = status;
        }
    }

    /// The answer a token took, and the answers that came after and were ignored.
    pub fn task_answers(&self, token: &str) -> (Option<TaskAnswer>, Vec<TaskAnswer>) {
        let state = self.lock();
        match state.executions.tokens.get(token) {
            Some(t) => (t.answer.clone(), t.ignored.clone()),
            None => (None, state.executions.unknown.iter().filter(|(t, _)| t == token).map(|(_, a)| a.clone()).collect()),
        }
    }

    async fn answer(&self, op: &'static str, token: &str, answer: TaskAnswer) -> Result<(), StoreError> {
        self.call(op, |state, _| {
            let executions = &mut state.executions;
            let Some(entry) = executions.tokens.get_mut(token) else {
                executions.unknown.push((token.to_owned(), answer));
                return Ok(());
            };
            let running = executions.executions.get(&entry.job).is_none_or(|e| e.status == ExecutionStatus::Running);
            if entry.answer.is_some() || !running {
                entry.ignored.push(answer);
            } else {
                entry.answer = Some(answer);
            }
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl Workflows for Memory {
    async fn start(&self, input: &WorkflowInput) -> Result<(), StoreError> {
        self.call("Workflows::start", |state, _| {
            // ExecutionAlreadyExists is not an error: the name is the job's.
            state
                .executions
                .executions
                .entry(input.job_id.clone())
                .or_insert_with(|| Execution { input: input.clone(), status: ExecutionStatus::Running, stop_cause: None, starts: 0 })
                .starts += 1;
            Ok(())
        })
        .await
    }

    async fn stop(&self, job: &JobId, cause: &str) -> Result<(), StoreError> {
        self.call("Workflows::stop", |state, _| {
            if let Some(execution) = state.executions.executions.get_mut(job).filter(|e| e.status == ExecutionStatus::Running) {
                execution.status = ExecutionStatus::Aborted;
                execution.stop_cause = Some(cause.to_owned());
            }
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl TaskTokens for Memory {
    async fn succeed(&self, token: &str, output: &serde_json::Value) -> Result<(), StoreError> {
        self.answer("TaskTokens::succeed", token, TaskAnswer::Success(output.clone())).await
    }

    async fn fail(&self, token: &str, error: &str, cause: &str) -> Result<(), StoreError> {
        self.answer("TaskTokens::fail", token, TaskAnswer::Failure { error: error.to_owned(), cause: cause.to_owned() }).await
    }
}
