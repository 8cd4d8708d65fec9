//! SDK errors turned into the domain's [`StoreError`]: retryable or not,
//! decided from the error's type and kind, never from its text.

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_smithy_runtime_api::http::Response;
use aws_smithy_types::retry::{ErrorKind, ProvideErrorKind};
use videojobs_core::StoreError;

/// Classifies a failed call. `operation` names the call in the log detail.
pub fn store_error<E>(operation: &str, err: SdkError<E, Response>) -> StoreError
where
    E: ProvideErrorKind + std::error::Error + Send + Sync + 'static,
{
    let detail = format!("{operation}: {}", aws_smithy_types::error::display::DisplayErrorContext(&err));
    match &err {
        SdkError::ConstructionFailure(_) => StoreError::Internal(detail),
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            StoreError::Unavailable(detail)
        }
        SdkError::ServiceError(service) => {
            let kind = service.err().retryable_error_kind();
            let status = service.raw().status().as_u16();
            if matches!(kind, Some(ErrorKind::ThrottlingError | ErrorKind::TransientError | ErrorKind::ServerError))
                || status >= 500
                || status == 429
            {
                StoreError::Unavailable(detail)
            } else {
                StoreError::Internal(detail)
            }
        }
        _ => StoreError::Unavailable(detail),
    }
}

/// The per-item reason codes of a cancelled transaction, in item order; `None`
/// when the failure was something else.
pub fn transaction_cancellation(err: &SdkError<TransactWriteItemsError, Response>) -> Option<Vec<Option<String>>> {
    match err.as_service_error()? {
        TransactWriteItemsError::TransactionCanceledException(cancelled) => Some(
            cancelled
                .cancellation_reasons()
                .iter()
                .map(|reason| reason.code().filter(|code| *code != "None").map(str::to_owned))
                .collect(),
        ),
        _ => None,
    }
}
