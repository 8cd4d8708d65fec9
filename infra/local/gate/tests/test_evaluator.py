"""The policy evaluator and what calls need, against hand-made statements and the real template."""

import pytest

from gate import iam
from gate.calls import Call

TABLE = "arn:aws:dynamodb:us-east-1:123456789012:table/s1-JobsTable"


def stmt(effect="Allow", action=None, resource=None, not_action=None, not_resource=None, condition=None):
    as_list = lambda v: None if v is None else (v if isinstance(v, list) else [v])  # noqa: E731
    resources = as_list(resource)
    not_resources = as_list(not_resource)
    return iam.Statement(
        role="R", policy="P", index=0, effect=effect, actions=as_list(action), not_actions=as_list(not_action),
        resources=[(r, r) for r in resources] if resources is not None else None,
        not_resources=[(r, r) for r in not_resources] if not_resources is not None else None,
        condition=condition or {},
    )


def allowed(statements, action, resource, context=None):
    return iam.evaluate(statements, action, resource, context or {}).allowed


# --- actions, resources, effects -------------------------------------------------


def test_action_wildcards_and_case():
    s = [stmt(action="dynamodb:Get*", resource="*")]
    assert allowed(s, "dynamodb:GetItem", TABLE)
    assert allowed(s, "DynamoDB:getitem", TABLE)  # actions are case-insensitive
    assert not allowed(s, "dynamodb:PutItem", TABLE)
    assert allowed([stmt(action="s3:?etObject", resource="*")], "s3:GetObject", "arn:aws:s3:::b/k")
    assert not allowed([stmt(action="s3:?etObject", resource="*")], "s3:GetObjectTagging", "arn:aws:s3:::b/k")


def test_resource_wildcards_are_case_sensitive_and_cross_slashes():
    s = [stmt(action="s3:GetObject", resource="arn:aws:s3:::b/uploads/*")]
    assert allowed(s, "s3:GetObject", "arn:aws:s3:::b/uploads/a/b.png")
    assert not allowed(s, "s3:GetObject", "arn:aws:s3:::b/Uploads/a.png")
    assert not allowed(s, "s3:GetObject", "arn:aws:s3:::b/outputs/a.png")
    assert allowed([stmt(action="s3:GetObject", resource="arn:aws:s3:::b/k?")], "s3:GetObject", "arn:aws:s3:::b/k1")


def test_not_action_and_not_resource():
    s = [stmt(not_action="s3:*", resource="*")]
    assert allowed(s, "sqs:SendMessage", "arn:aws:sqs:us-east-1:1:q")
    assert not allowed(s, "s3:GetObject", "arn:aws:s3:::b/k")
    s = [stmt(action="s3:GetObject", not_resource="arn:aws:s3:::b/secret/*")]
    assert allowed(s, "s3:GetObject", "arn:aws:s3:::b/public/k")
    assert not allowed(s, "s3:GetObject", "arn:aws:s3:::b/secret/k")


def test_explicit_deny_wins_and_allow_is_needed():
    s = [stmt(action="s3:*", resource="*"), stmt(effect="Deny", action="s3:DeleteObject", resource="*")]
    assert allowed(s, "s3:GetObject", "arn:aws:s3:::b/k")
    decision = iam.evaluate(s, "s3:DeleteObject", "arn:aws:s3:::b/k", {})
    assert not decision.allowed and decision.denied_by is s[1]
    assert not allowed([], "s3:GetObject", "arn:aws:s3:::b/k")


# --- conditions ----------------------------------------------------------------------


@pytest.mark.parametrize("condition, context, expected", [
    ({"StringEquals": {"s3:prefix": ["a/", "b/"]}}, {"s3:prefix": "b/"}, True),
    ({"StringEquals": {"s3:prefix": "a/"}}, {"s3:prefix": "A/"}, False),
    ({"StringEquals": {"s3:prefix": "a/"}}, {}, False),  # a missing key fails a plain operator
    ({"StringEqualsIfExists": {"s3:prefix": "a/"}}, {}, True),
    ({"StringNotEquals": {"s3:prefix": "a/"}}, {}, True),  # ... but not a negated one
    ({"StringLike": {"S3:Prefix": "uploads/*"}}, {"s3:prefix": "uploads/x"}, True),  # keys are case-insensitive
    ({"StringNotLike": {"s3:prefix": "uploads/*"}}, {"s3:prefix": "uploads/x"}, False),
    ({"Bool": {"aws:SecureTransport": "false"}}, {"aws:SecureTransport": "true"}, False),
    ({"Bool": {"aws:SecureTransport": False}}, {"aws:SecureTransport": "false"}, True),
    ({"Null": {"s3:prefix": "true"}}, {}, True),
    ({"Null": {"s3:prefix": "true"}}, {"s3:prefix": ""}, False),
    ({"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["JOB#*"]}}, {"dynamodb:LeadingKeys": ["JOB#1", "JOB#2"]}, True),
    ({"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["JOB#*"]}}, {"dynamodb:LeadingKeys": ["JOB#1", "KEY#2"]}, False),
    ({"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["JOB#*"]}}, {}, True),  # IAM's rule for a missing key
    ({"ForAnyValue:StringLike": {"dynamodb:LeadingKeys": ["JOB#*"]}}, {"dynamodb:LeadingKeys": ["KEY#1", "JOB#2"]}, True),
    ({"ForAnyValue:StringLike": {"dynamodb:LeadingKeys": ["JOB#*"]}}, {}, False),
    ({"StringEquals": {"a": "1"}, "StringLike": {"b": "x*"}}, {"a": "1", "b": "y"}, False),  # operators are ANDed
])
def test_conditions(condition, context, expected):
    assert iam.condition_holds(condition, context) is expected


# --- the real template: LeadingKeys on the webhook's role ---------------------------------


@pytest.fixture(scope="module")
def stack():
    return iam.Stack(name="s1", physical={
        "JobsTable": {"ref": "s1-JobsTable", "Arn": TABLE},
        "PromptsTable": {"ref": "s1-PromptsTable", "Arn": TABLE.replace("JobsTable", "PromptsTable")},
        "WorkQueue": {"ref": "http://h/123456789012/s1-WorkQueue", "Arn": "arn:aws:sqs:us-east-1:123456789012:s1-WorkQueue"},
        "NotifyQueue": {"ref": "http://h/123456789012/s1-NotifyQueue", "Arn": "arn:aws:sqs:us-east-1:123456789012:s1-NotifyQueue"},
        "WorkDeadLetterQueue": {"ref": "u", "Arn": "arn:aws:sqs:us-east-1:123456789012:s1-WorkDeadLetterQueue"},
        "NotifyDeadLetterQueue": {"ref": "u", "Arn": "arn:aws:sqs:us-east-1:123456789012:s1-NotifyDeadLetterQueue"},
        "MediaBucket": {"ref": "s1-mediabucket", "Arn": "arn:aws:s3:::s1-mediabucket"},
        "JobStateMachine": {"ref": "arn:aws:states:us-east-1:123456789012:stateMachine:s1-jobs",
                            "Arn": "arn:aws:states:us-east-1:123456789012:stateMachine:s1-jobs", "Name": "s1-jobs"},
    })


@pytest.fixture(scope="module")
def checker(template, stack):
    checker = iam.Checker(template)
    checker.register({"name": stack.name, "physical": stack.physical})
    return checker


def ddb(principal, operation, params):
    return Call(service="dynamodb", operation=operation, principal=principal, params=params, region="us-east-1")


def key(pk, sk="X"):
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def test_webhook_leading_keys(checker):
    assert checker.check(ddb("WebhookFunction", "GetItem", {"TableName": "s1-JobsTable", "Key": key("JOB#1")})).allowed
    assert checker.check(ddb("WebhookFunction", "PutItem", {"TableName": "s1-JobsTable", "Item": key("RECEIPT#1")})).allowed
    verdict = checker.check(ddb("WebhookFunction", "GetItem", {"TableName": "s1-JobsTable", "Key": key("KEY#abc")}))
    assert not verdict.allowed
    need, _reason = verdict.denials[0]
    assert (need.action, need.resource, need.context["dynamodb:LeadingKeys"]) == ("dynamodb:GetItem", TABLE, ["KEY#abc"])


def test_webhook_transaction_touching_a_key_outside_its_prefixes(checker):
    items = [{"Put": {"TableName": "s1-JobsTable", "Item": key("JOB#1")}},
             {"Update": {"TableName": "s1-JobsTable", "Key": key("STATS#1")}}]
    assert checker.check(ddb("WebhookFunction", "TransactWriteItems", {"TransactItems": items})).allowed
    items.append({"ConditionCheck": {"TableName": "s1-JobsTable", "Key": key("USER#1")}})
    verdict = checker.check(ddb("WebhookFunction", "TransactWriteItems", {"TransactItems": items}))
    assert [(n.action, n.context.get("dynamodb:LeadingKeys")) for n, _ in verdict.denials] == \
        [("dynamodb:ConditionCheckItem", ["USER#1"])]


def test_leading_keys_of_batches_and_queries(template, stack):
    condition = {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["JOB#*", "STATS#*"]}}
    statements = [stmt(action=["dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:Query", "dynamodb:Scan"],
                       resource=TABLE, condition=condition)]
    lookup = iam.Lookup(template, [stack])

    def ok(operation, params):
        return all(iam.evaluate(statements, n.action, n.resource, n.context).allowed
                   for n in iam.needs(ddb("X", operation, params), lookup))

    assert ok("BatchGetItem", {"RequestItems": {"s1-JobsTable": {"Keys": [key("JOB#1"), key("STATS#2")]}}})
    assert not ok("BatchGetItem", {"RequestItems": {"s1-JobsTable": {"Keys": [key("JOB#1"), key("KEY#2")]}}})
    assert not ok("BatchWriteItem", {"RequestItems": {"s1-JobsTable": [
        {"PutRequest": {"Item": key("JOB#1")}}, {"DeleteRequest": {"Key": key("USER#1")}}]}})
    query = {"TableName": "s1-JobsTable", "KeyConditionExpression": "pk = :pk AND begins_with(sk, :p)",
             "ExpressionAttributeValues": {":pk": {"S": "JOB#1"}, ":p": {"S": "EVENT#"}}}
    assert ok("Query", query)
    query["ExpressionAttributeValues"][":pk"] = {"S": "KEY#1"}
    assert not ok("Query", query)
    # A Scan names no partition: ForAllValues holds on the missing key, as on AWS.
    assert ok("Scan", {"TableName": "s1-JobsTable"})


def test_query_partition_value_uses_the_index_key(template, stack):
    lookup = iam.Lookup(template, [stack])
    params = {"TableName": "s1-JobsTable", "IndexName": "stuck_watch",
              "KeyConditionExpression": "#since < :before AND #watch = :status",
              "ExpressionAttributeNames": {"#watch": "watch_status", "#since": "watch_since"},
              "ExpressionAttributeValues": {":status": {"S": "queued"}, ":before": {"S": "2024"}}}
    (need,) = iam.needs(ddb("X", "Query", params), lookup)
    assert need.resource == TABLE + "/index/stuck_watch"
    assert need.context["dynamodb:LeadingKeys"] == ["queued"]


# --- the real template: the known bugs and the allowed calls beside them -------------------


@pytest.fixture(scope="module")
def checker_before_fix(template_before_fix, stack):
    checker = iam.Checker(template_before_fix)
    checker.register({"name": stack.name, "physical": stack.physical})
    return checker


def test_notifier_query_on_the_jobs_table_was_denied_and_is_allowed_since_the_fix(checker, checker_before_fix):
    params = {"TableName": "s1-JobsTable", "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
              "ExpressionAttributeValues": {":pk": {"S": "JOB#1"}, ":prefix": {"S": "EVENT#"}}}
    verdict = checker_before_fix.check(ddb("NotifyFunction", "Query", params))
    assert not verdict.allowed
    assert [(n.action, n.resource) for n, _ in verdict.denials] == [("dynamodb:Query", TABLE)]
    assert checker_before_fix.check(ddb("WorkerFunction", "Query", params)).allowed
    assert checker.check(ddb("NotifyFunction", "Query", params)).allowed


@pytest.mark.parametrize("principal", ["StatusFunction", "WorkerFunction", "WorkerFunction~storm"])
def test_index_queries_are_allowed(checker, principal):
    params = {"TableName": "s1-JobsTable", "IndexName": "by_user", "KeyConditionExpression": "#owner = :user",
              "ExpressionAttributeNames": {"#owner": "user_id"}, "ExpressionAttributeValues": {":user": {"S": "u1"}}}
    verdict = checker.check(ddb(principal, "Query", params))
    assert verdict.allowed and verdict.role == principal.split("~")[0] + "Role"
    assert any(u[3] == "dynamodb:Query" and u[4] == "!Sub ${JobsTable.Arn}/index/*" for u in verdict.used)


def test_create_could_not_list_the_bucket_before_the_fix_and_can_since(checker, checker_before_fix):
    call = Call(service="s3", operation="HeadObject", principal="CreateFunction", method="HEAD",
                bucket="s1-mediabucket", key="uploads/missing.png", protocol="rest-xml")
    verdict = checker_before_fix.check(call)
    assert verdict.allowed  # s3:GetObject on uploads/*
    allowed_, need, _ = checker_before_fix.list_bucket(call, verdict)
    assert not allowed_ and (need.action, need.resource) == ("s3:ListBucket", "arn:aws:s3:::s1-mediabucket")
    assert checker.list_bucket(call, checker.check(call))[0]


def test_other_principals_are_not_checked(checker):
    assert checker.check(ddb("testing", "Query", {"TableName": "s1-JobsTable"})) is None
    assert checker.check(ddb(None, "Query", {"TableName": "s1-JobsTable"})) is None


def test_sqs_poller_and_schedule_and_state_machine(checker):
    def sqs(principal, operation, queue):
        return Call(service="sqs", operation=operation, principal=principal, region="us-east-1",
                    params={"QueueUrl": f"http://127.0.0.1:5000/123456789012/s1-{queue}"})

    # What SAM adds for an SQS event (AWSLambdaSQSQueueExecutionRole).
    assert checker.check(sqs("WorkerFunction", "ReceiveMessage", "WorkQueue")).allowed
    assert checker.check(sqs("NotifyFunction", "DeleteMessageBatch", "NotifyQueue")).allowed
    assert not checker.check(sqs("NotifyFunction", "ChangeMessageVisibility", "NotifyQueue")).allowed
    assert not checker.check(sqs("StatusFunction", "ReceiveMessage", "WorkQueue")).allowed
    assert checker.check(sqs("CheckStuckScheduleRole", "SendMessage", "WorkQueue")).allowed
    assert not checker.check(sqs("CheckStuckScheduleRole", "SendMessage", "NotifyQueue")).allowed
    assert checker.check(sqs("JobStateMachine", "SendMessage", "WorkQueue")).allowed
    assert checker.check(sqs(iam.INTERPRETER_KEY, "SendMessage", "WorkQueue")).role == "JobStateMachineRole"
    assert not checker.check(sqs("WebhookFunction", "SendMessage", "NotifyQueue")).allowed


def test_step_functions_resources(checker):
    machine = "arn:aws:states:us-east-1:123456789012:stateMachine:s1-jobs"
    execution = "arn:aws:states:us-east-1:123456789012:execution:s1-jobs:job_1"

    def sfn(principal, operation, params):
        return Call(service="states", operation=operation, principal=principal, params=params, region="us-east-1")

    assert checker.check(sfn("CreateFunction", "StartExecution", {"stateMachineArn": machine})).allowed
    assert not checker.check(sfn("CreateFunction", "StopExecution", {"executionArn": execution})).allowed
    assert checker.check(sfn("StatusFunction", "StopExecution", {"executionArn": execution})).allowed
    assert checker.check(sfn("StatusFunction", "SendTaskSuccess", {"taskToken": "t"})).allowed
    assert not checker.check(sfn("StatusFunction", "SendTaskFailure", {"taskToken": "t"})).allowed
    assert checker.check(sfn("WorkerFunction", "SendTaskFailure", {"taskToken": "t"})).allowed
    # No code sends heartbeats: the grant was dropped.
    assert not checker.check(sfn("WorkerFunction", "SendTaskHeartbeat", {"taskToken": "t"})).allowed


def test_s3_needs():
    lookup = iam.Lookup(None, [])

    def needs(operation, key="outputs/a.mp4", headers=None, query=None, body=b""):
        call = Call(service="s3", operation=operation, principal="X", bucket="b", key=key, headers=headers or {},
                    query=query or {}, body=body, protocol="rest-xml")
        return [(n.action, n.resource) for n in iam.needs(call, lookup)]

    obj = "arn:aws:s3:::b/outputs/a.mp4"
    assert needs("HeadObject") == [("s3:GetObject", obj)]
    assert needs("UploadPart") == [("s3:PutObject", obj)]
    assert needs("CompleteMultipartUpload") == [("s3:PutObject", obj)]
    assert needs("CreateMultipartUpload", headers={"x-amz-tagging": "a=b"}) == [("s3:PutObject", obj), ("s3:PutObjectTagging", obj)]
    assert needs("ListParts") == [("s3:ListMultipartUploadParts", obj)]
    assert needs("CopyObject", headers={"x-amz-copy-source": "/b/uploads/src%20x.png"}) == \
        [("s3:PutObject", obj), ("s3:GetObject", "arn:aws:s3:::b/uploads/src x.png")]
    assert needs("ListObjectsV2", key=None) == [("s3:ListBucket", "arn:aws:s3:::b")]
    assert needs("DeleteObjects", key=None, body=b"<Delete><Object><Key>a&amp;b</Key></Object></Delete>") == \
        [("s3:DeleteObject", "arn:aws:s3:::b/a&b")]
