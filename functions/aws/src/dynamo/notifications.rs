//! Client notification items in the jobs table (see the model in `dynamo.rs`):
//! each user's webhook signing secret and, per job and status, the record
//! that its notification was delivered.

use super::*;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use videojobs_core::model::notification::endpoints::{EndpointChange, EndpointState};
use videojobs_core::model::notification::log::FailedDeliveriesFilter;
use videojobs_core::model::notification::{AttemptClaim, UserWebhookSecrets};
use videojobs_core::ports::NotificationLog;
use videojobs_core::ports::WebhookSecrets;

fn secret_key(user: &UserId) -> Item {
    key(format!("USER#{user}"), "WEBHOOK_SECRET")
}

fn delivery_key(job: &JobId, status: JobStatus) -> Item {
    key(job_pk(job), &format!("NOTIFIED#{status}"))
}

fn claim_key(job: &JobId, status: JobStatus) -> Item {
    key(job_pk(job), &format!("NOTIFYING#{status}"))
}

fn secrets_from(item: &Item) -> Result<UserWebhookSecrets, StoreError> {
    let optional = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
    Ok(UserWebhookSecrets {
        current: text(item, "secret")?,
        previous: optional("previous_secret"),
        previous_valid_until: optional("previous_valid_until").as_deref().and_then(timestamp::parse),
    })
}

#[async_trait]
impl WebhookSecrets for DynamoStore {
    async fn webhook_secrets(&self, user: &UserId) -> Result<Option<UserWebhookSecrets>, StoreError> {
        self.get(secret_key(user)).await?.as_ref().map(secrets_from).transpose()
    }

    async fn create_webhook_secret(&self, user: &UserId, secret: &str) -> Result<UserWebhookSecrets, StoreError> {
        let mut item = secret_key(user);
        item.insert("kind".into(), s("webhook_secret"));
        item.insert("secret".into(), s(secret));
        item.insert("created_at".into(), s(timestamp::format(timestamp::now())));
        if self.put_if_absent(item).await? {
            return Ok(UserWebhookSecrets { current: secret.to_owned(), previous: None, previous_valid_until: None });
        }
        // A concurrent first request made it: everyone gets that one.
        self.webhook_secrets(user).await?.ok_or_else(|| StoreError::Unavailable("webhook secret vanished".into()))
    }

    async fn rotate_webhook_secret(
        &self,
        user: &UserId,
        expected: &str,
        new: &str,
        grace_until: time::OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.jobs_table)
            .set_key(Some(secret_key(user)))
            .update_expression("SET secret = :new, previous_secret = :old, previous_valid_until = :until, rotated_at = :now")
            .condition_expression("secret = :old")
            .expression_attribute_values(":new", s(new))
            .expression_attribute_values(":old", s(expected))
            .expression_attribute_values(":until", s(timestamp::format(grace_until)))
            .expression_attribute_values(":now", s(timestamp::format(timestamp::now())))
            .send()
            .await;
        conditional_write("UpdateItem", result)
    }
}

#[async_trait]
impl NotificationLog for DynamoStore {
    async fn was_delivered(&self, job: &JobId, status: JobStatus) -> Result<bool, StoreError> {
        Ok(self.get(delivery_key(job, status)).await?.is_some())
    }

    async fn record_delivery(&self, job: &JobId, status: JobStatus, attempt: u32, http_status: u16) -> Result<bool, StoreError> {
        let mut item = delivery_key(job, status);
        item.insert("kind".into(), s("notification"));
        item.insert("attempt".into(), n(attempt));
        item.insert("http_status".into(), n(http_status));
        item.insert("delivered_at".into(), s(timestamp::format(timestamp::now())));
        self.put_if_absent(item).await
    }

    async fn claim_attempt(
        &self,
        job: &JobId,
        status: JobStatus,
        attempt: u32,
        holder: &str,
        lease: std::time::Duration,
    ) -> Result<AttemptClaim, StoreError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        // An update, not a put: `made_through` (the attempts made) outlives each claim.
        let result = self
            .client
            .update_item()
            .table_name(&self.jobs_table)
            .set_key(Some(claim_key(job, status)))
            .update_expression("SET kind = :kind, holder = :holder, lease_until = :until, ttl_epoch = :ttl")
            .condition_expression(
                "(attribute_not_exists(lease_until) OR lease_until < :now) AND (attribute_not_exists(made_through) OR made_through < :attempt)",
            )
            .expression_attribute_values(":kind", s("notification_claim"))
            .expression_attribute_values(":holder", s(holder))
            .expression_attribute_values(":until", n(now + lease.as_secs() as i64))
            .expression_attribute_values(":ttl", epoch_after(CLAIM_TTL_SECONDS))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":attempt", n(attempt))
            .return_values_on_condition_check_failure(aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(AttemptClaim::Taken),
            Err(err) => err,
        };
        let Some(UpdateItemError::ConditionalCheckFailedException(failed)) = err.as_service_error() else {
            return Err(store_error("UpdateItem", err));
        };
        let existing = failed.item();
        let made_through =
            existing.and_then(|item| item.get("made_through")).and_then(|v| v.as_n().ok()).and_then(|v| v.parse::<u32>().ok());
        Ok(if existing.and_then(|item| item.get("holder")) == Some(&s(holder)) {
            // This very write, applied, whose answer was lost and which the SDK sent again.
            AttemptClaim::Taken
        } else if made_through.is_some_and(|made| made >= attempt) {
            AttemptClaim::AlreadyMade
        } else {
            AttemptClaim::Held
        })
    }

    async fn release_attempt(&self, job: &JobId, status: JobStatus, holder: &str) -> Result<(), StoreError> {
        self.end_claim(job, status, holder, "REMOVE holder, lease_until", None).await
    }

    async fn finish_attempt(&self, job: &JobId, status: JobStatus, attempt: u32, holder: &str) -> Result<(), StoreError> {
        self.end_claim(job, status, holder, "SET made_through = :attempt REMOVE holder, lease_until", Some(attempt)).await
    }

    async fn claim_user_slot(
        &self,
        user: &UserId,
        slots: u32,
        holder: &str,
        lease: std::time::Duration,
    ) -> Result<Option<u32>, StoreError> {
        // Slots are tried from a point that differs per holder, so that
        // concurrent claims do not all race for slot 0.
        let start = holder.bytes().fold(0u32, |acc, b| acc.wrapping_mul(31).wrapping_add(u32::from(b)));
        for i in 0..slots {
            let slot = (start.wrapping_add(i)) % slots.max(1);
            if self.claim_lease(slot_key(user, slot), "notification_slot", holder, lease).await? {
                return Ok(Some(slot));
            }
        }
        Ok(None)
    }

    async fn release_user_slot(&self, user: &UserId, slot: u32, holder: &str) -> Result<(), StoreError> {
        self.release_lease(slot_key(user, slot), holder).await
    }

    async fn request_redelivery(
        &self,
        job: &JobId,
        status: JobStatus,
        at: time::OffsetDateTime,
        window: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let mut item = key(job_pk(job), &format!("REDELIVER#{status}"));
        item.insert("kind".into(), s("redelivery_request"));
        item.insert("requested_at".into(), n(at.unix_timestamp()));
        item.insert("ttl_epoch".into(), epoch_after(CLAIM_TTL_SECONDS));
        let result = self
            .client
            .put_item()
            .table_name(&self.jobs_table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR requested_at <= :cutoff")
            .expression_attribute_values(":cutoff", n(at.unix_timestamp() - window.as_secs() as i64))
            .send()
            .await;
        conditional_write("PutItem", result)
    }
}

fn endpoint_key(user: &UserId, endpoint: &str) -> Item {
    key(format!("USER#{user}"), &format!("ENDPOINT#{endpoint}"))
}

fn endpoint_from(item: &Item) -> Result<EndpointState, StoreError> {
    Ok(EndpointState {
        endpoint: text(item, "endpoint")?,
        consecutive_failures: u32::try_from(number(item, "failures").unwrap_or(0).max(0)).unwrap_or(u32::MAX),
        paused_at: item.get("paused_at").and_then(|v| v.as_s().ok()).and_then(|at| timestamp::parse(at)),
    })
}

#[async_trait]
impl EndpointHealth for DynamoStore {
    async fn endpoint(&self, user: &UserId, endpoint: &str) -> Result<Option<EndpointState>, StoreError> {
        self.get(endpoint_key(user, endpoint)).await?.as_ref().map(endpoint_from).transpose()
    }

    async fn record_failure(
        &self,
        user: &UserId,
        endpoint: &str,
        pause_after: u32,
        at: time::OffsetDateTime,
    ) -> Result<EndpointChange, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.jobs_table)
            .set_key(Some(endpoint_key(user, endpoint)))
            .update_expression("ADD failures :one SET kind = :kind, endpoint = :endpoint, last_failure_at = :at")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":kind", s("endpoint"))
            .expression_attribute_values(":endpoint", s(endpoint))
            .expression_attribute_values(":at", s(timestamp::format(at)))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| store_error("UpdateItem", e))?;
        let state = out.attributes.as_ref().map(endpoint_from).transpose()?;
        if state.is_none_or(|state| state.paused_at.is_some() || state.consecutive_failures < pause_after) {
            return Ok(EndpointChange::Unchanged);
        }
        // Of the failures that reach the bound, the one that writes the time pauses it.
        let result = self
            .client
            .update_item()
            .table_name(&self.jobs_table)
            .set_key(Some(endpoint_key(user, endpoint)))
            .update_expression("SET paused_at = :at")
            .condition_expression("attribute_not_exists(paused_at) AND failures >= :bound")
            .expression_attribute_values(":at", s(timestamp::format(at)))
            .expression_attribute_values(":bound", n(pause_after))
            .send()
            .await;
        Ok(if conditional_write("UpdateItem", result)? { EndpointChange::Paused } else { EndpointChange::Unchanged })
    }

    async fn record_success(&self, user: &UserId, endpoint: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.jobs_table)
            .set_key(Some(endpoint_key(user, endpoint)))
            .update_expression("SET failures = :zero")
            // A paused endpoint is resumed by its user, never by a delivery that raced the pause.
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(paused_at)")
            .expression_attribute_values(":zero", n(0))
            .send()
            .await;
        conditional_write("UpdateItem", result).map(|_| ())
    }

    async fn resume(&self, user: &UserId, endpoint: &str) -> Result<Option<time::OffsetDateTime>, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.jobs_table)
            .set_key(Some(endpoint_key(user, endpoint)))
            .update_expression("REMOVE paused_at SET failures = :zero")
            .condition_expression("attribute_exists(paused_at)")
            .expression_attribute_values(":zero", n(0))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => Ok(out
                .attributes
                .as_ref()
                .and_then(|old| old.get("paused_at"))
                .and_then(|v| v.as_s().ok())
                .and_then(|at| timestamp::parse(at))),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(None),
            Err(err) => Err(store_error("UpdateItem", err)),
        }
    }

    async fn paused_endpoints(&self, user: &UserId) -> Result<Vec<EndpointState>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.jobs_table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .filter_expression("attribute_exists(paused_at)")
            .expression_attribute_values(":pk", s(format!("USER#{user}")))
            .expression_attribute_values(":prefix", s("ENDPOINT#"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("Query", e))?;
        out.items.unwrap_or_default().iter().map(endpoint_from).collect()
    }
}

/// The sparse index of failed notification attempts: an event item carries
/// `failed_delivery_user` only when it records a failed attempt.
pub const INDEX_FAILED_DELIVERIES: &str = "failed_deliveries";
/// The attributes of a position in that index, in a cursor.
const FAILED_DELIVERY_CURSOR: [&str; 3] = ["pk", "sk", "failed_delivery_user"];

fn event_sort_key(at: time::OffsetDateTime) -> String {
    format!("EVENT#{}", timestamp::format(at))
}

#[async_trait]
impl DeliveryLog for DynamoStore {
    async fn failed_deliveries_of(
        &self,
        user: &UserId,
        filter: &FailedDeliveriesFilter,
        page: &PageRequest,
    ) -> Result<Page<JobEvent>, ListError> {
        let start = page
            .cursor
            .as_deref()
            .map(|cursor| {
                crate::cursor::decode(cursor, &FAILED_DELIVERY_CURSOR, |fields| {
                    let at = fields.get("sk").and_then(|sk| sk.strip_prefix("EVENT#")).and_then(|rest| rest.split_once('#'));
                    fields.get("failed_delivery_user").map(String::as_str) == Some(user.as_str())
                        && fields.get("pk").is_some_and(|pk| pk.starts_with("JOB#"))
                        // DynamoDB refuses a start key outside the key condition (a 500): a 400 here.
                        && at.and_then(|(at, _)| timestamp::parse(at)).is_some_and(|at| filter.matches(at, filter.error_class.as_deref()))
                })
            })
            .transpose()?;
        let mut key_condition = "failed_delivery_user = :user".to_owned();
        let mut request = self
            .client
            .query()
            .table_name(&self.jobs_table)
            .index_name(INDEX_FAILED_DELIVERIES)
            .expression_attribute_values(":user", s(user.as_str()));
        match (filter.since, filter.until) {
            (Some(since), Some(until)) => {
                key_condition.push_str(" AND sk BETWEEN :since AND :until");
                request = request
                    .expression_attribute_values(":since", s(event_sort_key(since)))
                    .expression_attribute_values(":until", s(event_sort_key(until)));
            }
            (Some(since), None) => {
                key_condition.push_str(" AND sk >= :since");
                request = request.expression_attribute_values(":since", s(event_sort_key(since)));
            }
            (None, Some(until)) => {
                key_condition.push_str(" AND sk < :until");
                request = request.expression_attribute_values(":until", s(event_sort_key(until)));
            }
            (None, None) => {}
        }
        if let Some(class) = &filter.error_class {
            request = request.filter_expression("error_code = :class").expression_attribute_values(":class", s(class));
        }
        let out = request
            .key_condition_expression(key_condition)
            .scan_index_forward(false)
            .limit(page.limit as i32)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| store_error("Query", e))?;
        let items = out.items.unwrap_or_default().into_iter().map(from_item).collect::<Result<Vec<JobEvent>, _>>()?;
        let next_cursor = out.last_evaluated_key.map(|last| crate::cursor::encode(&last, &FAILED_DELIVERY_CURSOR)).transpose()?;
        Ok(Page { items, next_cursor })
    }
}

fn slot_key(user: &UserId, slot: u32) -> Item {
    key(format!("USER#{user}"), &format!("NOTIFY_SLOT#{slot}"))
}

/// How long a notification claim (and the attempts it records made) is
/// kept: a week, longer than any wait between two attempts (at most a day).
const CLAIM_TTL_SECONDS: i64 = 7 * 24 * 3600;

impl DynamoStore {
    /// Ends `holder`'s claim on a notification with `update`; a claim that
    /// passed to another handling (the lease ran out) is left alone.
    async fn end_claim(&self, job: &JobId, status: JobStatus, holder: &str, update: &str, attempt: Option<u32>) -> Result<(), StoreError> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.jobs_table)
            .set_key(Some(claim_key(job, status)))
            .update_expression(update)
            .condition_expression("holder = :holder")
            .expression_attribute_values(":holder", s(holder));
        if let Some(attempt) = attempt {
            request = request.expression_attribute_values(":attempt", n(attempt));
        }
        let result = request.send().await;
        conditional_write("UpdateItem", result).map(|_| ())
    }

    /// Puts a leased claim unless another holder's lease is still running.
    /// A claim already held by `holder` (unique to one handling) is this very
    /// write, whose answer was lost after it was applied and which the SDK
    /// sent again: claimed, not taken, or the notification would wait a
    /// whole lease on a claim nobody holds.
    async fn claim_lease(&self, mut item: Item, kind: &str, holder: &str, lease: std::time::Duration) -> Result<bool, StoreError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        item.insert("kind".into(), s(kind));
        item.insert("holder".into(), s(holder));
        item.insert("lease_until".into(), n(now + lease.as_secs() as i64));
        // A claim nobody gave back (the holder died) goes away on its own.
        item.insert("ttl_epoch".into(), epoch_after(24 * 3600));
        let result = self
            .client
            .put_item()
            .table_name(&self.jobs_table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR lease_until < :now")
            .expression_attribute_values(":now", n(now))
            .return_values_on_condition_check_failure(aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        if let Some(ours) = Self::condition_failed_on_own_write(&result, "holder", &s(holder)) {
            return Ok(ours);
        }
        conditional_write("PutItem", result)
    }

    /// Deletes a claim only if `holder` still holds it: after a lease ran
    /// out and another attempt took it, the late holder leaves it alone.
    async fn release_lease(&self, key: Item, holder: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.jobs_table)
            .set_key(Some(key))
            .condition_expression("holder = :holder")
            .expression_attribute_values(":holder", s(holder))
            .send()
            .await;
        conditional_write("DeleteItem", result).map(|_| ())
    }
}
