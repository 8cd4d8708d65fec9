//! SDK errors turned into the domain's [`StoreError`]: retryable or not,
//! decided from the error's type and kind (and, for throttles, the SDK's
//! own list of their codes), never from its text.

use aws_runtime::retries::classifiers::{THROTTLING_ERRORS, TRANSIENT_ERRORS};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_smithy_runtime_api::http::Response;
use aws_smithy_types::retry::{ErrorKind, ProvideErrorKind};
use videojobs_core::StoreError;

/// Classifies a failed call. `operation` names the call in the log detail.
pub fn store_error<E>(operation: &str, err: SdkError<E, Response>) -> StoreError
where
    E: ProvideErrorKind + ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let detail = format!("{operation}: {}", aws_smithy_types::error::display::DisplayErrorContext(&err));
    match &err {
        SdkError::ConstructionFailure(_) => StoreError::Internal(detail),
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => StoreError::Unavailable(detail),
        SdkError::ServiceError(service) => {
            let kind = service.err().retryable_error_kind();
            let status = service.raw().status().as_u16();
            // A throttle is a 400 whose modeled error is often not marked
            // retryable (DynamoDB's ThrottlingException): the SDK's retry
            // classifier knows it by its code, and so do we, from its list.
            let code = ProvideErrorMetadata::code(service.err());
            let throttled = code.is_some_and(|code| THROTTLING_ERRORS.contains(&code) || TRANSIENT_ERRORS.contains(&code));
            if matches!(kind, Some(ErrorKind::ThrottlingError | ErrorKind::TransientError | ErrorKind::ServerError))
                || throttled
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

/// An operation's error that can say the write's condition did not hold.
pub trait ConditionFailed {
    fn is_condition_failed(&self) -> bool;
}

impl ConditionFailed for aws_sdk_dynamodb::operation::put_item::PutItemError {
    fn is_condition_failed(&self) -> bool {
        self.is_conditional_check_failed_exception()
    }
}

impl ConditionFailed for aws_sdk_dynamodb::operation::delete_item::DeleteItemError {
    fn is_condition_failed(&self) -> bool {
        self.is_conditional_check_failed_exception()
    }
}

impl ConditionFailed for aws_sdk_dynamodb::operation::update_item::UpdateItemError {
    fn is_condition_failed(&self) -> bool {
        self.is_conditional_check_failed_exception()
    }
}

/// A conditional write's outcome: `true` when it was written, `false` when
/// its condition did not hold, an error otherwise.
pub fn conditional_write<T, E>(operation: &str, result: Result<T, SdkError<E, Response>>) -> Result<bool, StoreError>
where
    E: ConditionFailed + ProvideErrorKind + ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(err) if err.as_service_error().is_some_and(ConditionFailed::is_condition_failed) => Ok(false),
        Err(err) => Err(store_error(operation, err)),
    }
}

/// The per-item reason codes of a cancelled transaction, in item order; `None`
/// when the failure was something else.
pub fn transaction_cancellation(err: &SdkError<TransactWriteItemsError, Response>) -> Option<Vec<Option<String>>> {
    match err.as_service_error()? {
        TransactWriteItemsError::TransactionCanceledException(cancelled) => Some(
            cancelled.cancellation_reasons().iter().map(|reason| reason.code().filter(|code| *code != "None").map(str::to_owned)).collect(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::operation::put_item::PutItemError;
    use aws_sdk_dynamodb::types::error::{ConditionalCheckFailedException, InternalServerError};
    use aws_smithy_types::body::SdkBody;

    type PutResult = Result<(), SdkError<PutItemError, Response>>;

    fn failed(err: PutItemError, status: u16) -> SdkError<PutItemError, Response> {
        let raw = Response::new(status.try_into().expect("a status"), SdkBody::empty());
        SdkError::service_error(err, raw)
    }

    #[test]
    fn a_write_whose_condition_did_not_hold_is_false_and_any_other_failure_an_error() {
        let condition = PutItemError::ConditionalCheckFailedException(ConditionalCheckFailedException::builder().message("exists").build());
        let server = PutItemError::InternalServerError(InternalServerError::builder().message("down").build());

        assert!(matches!(conditional_write("PutItem", PutResult::Ok(())), Ok(true)));
        assert!(matches!(conditional_write("PutItem", PutResult::Err(failed(condition, 400))), Ok(false)));
        assert!(matches!(conditional_write("PutItem", PutResult::Err(failed(server, 500))), Err(StoreError::Unavailable(_))));
    }

    #[test]
    fn a_throttle_answered_with_400_is_retryable_and_a_validation_error_is_not() {
        use aws_sdk_dynamodb::types::error::ThrottlingException;
        let throttled = PutItemError::ThrottlingException(
            ThrottlingException::builder()
                .message("slow down")
                .meta(aws_sdk_dynamodb::error::ErrorMetadata::builder().code("ThrottlingException").build())
                .build(),
        );
        let invalid =
            PutItemError::generic(aws_sdk_dynamodb::error::ErrorMetadata::builder().code("ValidationException").message("bad").build());

        assert!(matches!(store_error("PutItem", failed(throttled, 400)), StoreError::Unavailable(_)));
        assert!(matches!(store_error("PutItem", failed(invalid, 400)), StoreError::Internal(_)));
    }
}
