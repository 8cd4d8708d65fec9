//! Step Functions: one Standard execution per job, named by the job id.

use crate::errors::store_error;
use async_trait::async_trait;
use aws_sdk_sfn::Client;
use videojobs_core::model::ids::JobId;
use videojobs_core::ports::{TaskTokens, WorkflowInput, Workflows};
use videojobs_core::StoreError;

#[derive(Clone)]
pub struct StepFunctions {
    client: Client,
    state_machine_arn: String,
}

impl StepFunctions {
    pub fn new(client: Client, state_machine_arn: impl Into<String>) -> Self {
        Self { client, state_machine_arn: state_machine_arn.into() }
    }

    /// `arn:…:stateMachine:NAME` → `arn:…:execution:NAME:JOB_ID`.
    pub fn execution_arn(&self, job: &JobId) -> String {
        format!("{}:{job}", self.state_machine_arn.replacen(":stateMachine:", ":execution:", 1))
    }
}

#[async_trait]
impl Workflows for StepFunctions {
    async fn start(&self, input: &WorkflowInput) -> Result<(), StoreError> {
        let body = serde_json::to_string(input).map_err(|e| StoreError::Internal(e.to_string()))?;
        let result =
            self.client.start_execution().state_machine_arn(&self.state_machine_arn).name(input.job_id.as_str()).input(body).send().await;
        match result {
            Ok(_) => Ok(()),
            // The name is the job id: an execution by that name is this job's.
            Err(err) if err.as_service_error().is_some_and(|e| e.is_execution_already_exists()) => Ok(()),
            Err(err) => Err(store_error("StartExecution", err)),
        }
    }

    async fn stop(&self, job: &JobId, cause: &str) -> Result<(), StoreError> {
        let result = self.client.stop_execution().execution_arn(self.execution_arn(job)).cause(cause).send().await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_execution_does_not_exist()) => Ok(()),
            Err(err) => Err(store_error("StopExecution", err)),
        }
    }
}

#[async_trait]
impl TaskTokens for StepFunctions {
    async fn succeed(&self, token: &str, output: &serde_json::Value) -> Result<(), StoreError> {
        let result = self.client.send_task_success().task_token(token).output(output.to_string()).send().await;
        match result {
            Ok(_) => Ok(()),
            // Answered before (a redelivered message) or the execution ended: nothing waits.
            Err(err)
                if err.as_service_error().is_some_and(|e| e.is_task_timed_out() || e.is_task_does_not_exist() || e.is_invalid_token()) =>
            {
                tracing::info!("task already answered or gone");
                Ok(())
            }
            Err(err) => Err(store_error("SendTaskSuccess", err)),
        }
    }

    async fn fail(&self, token: &str, error: &str, cause: &str) -> Result<(), StoreError> {
        let result = self.client.send_task_failure().task_token(token).error(error).cause(cause).send().await;
        match result {
            Ok(_) => Ok(()),
            Err(err)
                if err.as_service_error().is_some_and(|e| e.is_task_timed_out() || e.is_task_does_not_exist() || e.is_invalid_token()) =>
            {
                tracing::info!("task already answered or gone");
                Ok(())
            }
            Err(err) => Err(store_error("SendTaskFailure", err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_execution_arn_is_the_state_machine_arn_with_the_job_id() {
        let conf = aws_sdk_sfn::Config::builder().behavior_version(aws_sdk_sfn::config::BehaviorVersion::latest()).build();
        let sfn = StepFunctions::new(Client::from_conf(conf), "arn:aws:states:us-east-1:123456789012:stateMachine:jobs");
        let job: JobId = JobId::generate();
        assert_eq!(sfn.execution_arn(&job), format!("arn:aws:states:us-east-1:123456789012:execution:jobs:{job}"));
    }
}
