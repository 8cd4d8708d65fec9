"""AWS's limits (gate/limits.py): each accepted at its edge, refused just over,
with AWS's status, code and message. Calls are built by hand."""

import json

import pytest

from gate import limits
from gate.calls import Call

JOBS = "videojobs-local-JobsTable"
PROMPTS = "videojobs-local-PromptsTable"
WORK_QUEUE = "http://127.0.0.1:5000/123456789012/videojobs-local-WorkQueue"


def ddb(operation, principal="CreateFunction", **params):
    return Call(service="dynamodb", operation=operation, principal=principal, params=params, method="POST")


def sqs(operation, **params):
    return Call(service="sqs", operation=operation, principal="WorkerFunction", params=params, method="POST")


def sfn(operation, **params):
    return Call(service="states", operation=operation, principal="CreateFunction", params=params, method="POST")


def refused(answer, status, code, message_part=""):
    assert answer is not None, "expected a refusal"
    status_line, headers, body = answer
    assert status_line.startswith(f"{status} ")
    document = json.loads(body)
    assert document["__type"].rsplit("#", 1)[-1] == code, document
    message = document.get("message") or document.get("Message") or ""
    assert message_part in message, message
    return dict(headers), document


def s(text):
    return {"S": text}


def job_item(**extra):
    return {"pk": s("JOB#1"), "sk": s("JOB"), **extra}


# --- sizes -----------------------------------------------------------------


def test_sizes_follow_dynamodbs_rules():
    assert limits.number_size("12345") == 4  # 5 digits -> 3 bytes + 1
    assert limits.number_size("-0.0012300") == 3  # leading and trailing zeros trimmed: "123"
    assert limits.number_size("1.5e10") == 2
    assert limits.value_size({"S": "héllo"}) == 6
    assert limits.value_size({"B": "AAEC"}) == 3  # base64 of 3 raw bytes
    assert limits.value_size({"BOOL": True}) == 1 and limits.value_size({"NULL": True}) == 1
    assert limits.value_size({"SS": ["a", "bb"]}) == 3
    assert limits.value_size({"L": []}) == 3
    # A list: 3 bytes, and 1 byte plus each element.
    assert limits.value_size({"L": [s("ab"), {"N": "1"}]}) == 3 + (1 + 2) + (1 + 2)
    # A map: 3 bytes, and per element 1 byte, its name and its value.
    assert limits.value_size({"M": {"k": s("v")}}) == 3 + 1 + 1 + 1
    assert limits.item_size({"pk": s("JOB#1"), "n": {"N": "42"}}) == (2 + 5) + (1 + 2)


def sized_item(total):
    """A job item of exactly `total` bytes."""
    base = limits.item_size(job_item(blob=s("")))
    return job_item(blob=s("x" * (total - base)))


def test_put_item_at_400_kb_is_taken_and_one_byte_more_refused():
    assert limits.item_size(sized_item(409600)) == 409600
    assert limits.check(ddb("PutItem", TableName=JOBS, Item=sized_item(409600))) is None
    refused(limits.check(ddb("PutItem", TableName=JOBS, Item=sized_item(409601))),
            400, "ValidationException", "Item size has exceeded the maximum allowed size")


def test_item_size_counts_utf8_bytes_not_characters():
    base = limits.item_size(job_item(blob=s("")))
    fits = job_item(blob=s("é" * ((409600 - base) // 2)))
    assert limits.check(ddb("PutItem", TableName=JOBS, Item=fits)) is None
    over = job_item(blob=s("é" * ((409600 - base) // 2 + 1)))
    refused(limits.check(ddb("PutItem", TableName=JOBS, Item=over)), 400, "ValidationException", "Item size")


def test_limits_hold_for_every_principal():
    call = ddb("PutItem", principal="testing", TableName=JOBS, Item=sized_item(409601))
    refused(limits.check(call), 400, "ValidationException")


def test_batch_write_puts_are_sized():
    writes = [{"PutRequest": {"Item": sized_item(409601)}}]
    refused(limits.check(ddb("BatchWriteItem", RequestItems={JOBS: writes})), 400, "ValidationException", "Item size")


def test_update_item_is_not_sized_only_its_key_checked():
    call = ddb("UpdateItem", TableName=JOBS, Key={"pk": s("JOB#1"), "sk": s("JOB")},
               UpdateExpression="SET blob = :b", ExpressionAttributeValues={":b": s("x" * 500_000)})
    assert limits.check(call) is None


# --- keys ----------------------------------------------------------------


@pytest.mark.parametrize("operation", ["GetItem", "DeleteItem", "UpdateItem"])
def test_partition_key_of_2048_bytes_is_taken_and_2049_refused(operation):
    assert limits.check(ddb(operation, TableName=PROMPTS, Key={"job_id": s("é" * 1024)})) is None
    refused(limits.check(ddb(operation, TableName=PROMPTS, Key={"job_id": s("x" * 2049)})),
            400, "ValidationException", "Size of hashkey has exceeded the maximum size limit of 2048 bytes")


def test_sort_key_of_1024_bytes_is_taken_and_1025_refused():
    assert limits.check(ddb("GetItem", TableName=JOBS, Key={"pk": s("JOB#1"), "sk": s("x" * 1024)})) is None
    refused(limits.check(ddb("GetItem", TableName=JOBS, Key={"pk": s("JOB#1"), "sk": s("x" * 1025)})),
            400, "ValidationException", "Aggregated size of all range keys has exceeded the size limit of 1024 bytes")


def test_empty_key_values_are_refused():
    refused(limits.check(ddb("GetItem", TableName=JOBS, Key={"pk": s(""), "sk": s("JOB")})),
            400, "ValidationException", "cannot contain an empty string value. Key: pk")
    refused(limits.check(ddb("PutItem", TableName=JOBS, Item=job_item(sk=s("")))),
            400, "ValidationException", "Key: sk")
    # A table the gate does not know: empty key values all the same.
    refused(limits.check(ddb("GetItem", TableName="other", Key={"id": s("")})), 400, "ValidationException")


def test_index_keys_in_an_item_are_held_to_the_same_rules():
    refused(limits.check(ddb("PutItem", TableName=JOBS, Item=job_item(user_id=s(""), created_key=s("k")))),
            400, "ValidationException", "IndexName: by_user, IndexKey: user_id")
    refused(limits.check(ddb("PutItem", TableName=JOBS, Item=job_item(watch_since=s("x" * 1025)))),
            400, "ValidationException", "1024 bytes")
    refused(limits.check(ddb("PutItem", TableName=JOBS, Item=job_item(user_id={"N": "1"}))),
            400, "ValidationException", "Type mismatch for Index Key user_id")
    # Sparse indexes: an item without the attribute is fine.
    assert limits.check(ddb("PutItem", TableName=JOBS, Item=job_item(status=s("queued")))) is None


def test_keys_must_match_the_schema():
    refused(limits.check(ddb("GetItem", TableName=JOBS, Key={"pk": s("JOB#1")})),
            400, "ValidationException", "The provided key element does not match the schema")
    refused(limits.check(ddb("GetItem", TableName=JOBS, Key={"pk": {"N": "1"}, "sk": s("JOB")})),
            400, "ValidationException", "Type mismatch for key pk")
    refused(limits.check(ddb("PutItem", TableName=JOBS, Item={"pk": s("JOB#1")})),
            400, "ValidationException", "Missing the key sk")


def test_a_table_arn_is_matched_too():
    arn = "arn:aws:dynamodb:us-east-1:123456789012:table/videojobs-local-JobsTable"
    refused(limits.check(ddb("GetItem", TableName=arn, Key={"pk": s("JOB#1")})), 400, "ValidationException")


# --- queries and their starting keys -------------------------------------


def query(**params):
    params.setdefault("TableName", JOBS)
    return ddb("Query", **params)


def test_a_table_querys_starting_key_is_the_table_key():
    good = {"pk": s("JOB#1"), "sk": s("EVENT#1")}
    base = dict(KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": s("JOB#1")})
    assert limits.check(query(ExclusiveStartKey=good, **base)) is None
    for bad in ({"pk": s("JOB#1")}, {**good, "user_id": s("u")}, {"pk": s("JOB#1"), "sk": {"N": "1"}}):
        refused(limits.check(query(ExclusiveStartKey=bad, **base)),
                400, "ValidationException", "The provided starting key is invalid: The provided key element does not match the schema")
    refused(limits.check(query(ExclusiveStartKey={"pk": s("JOB#1"), "sk": s("")}, **base)),
            400, "ValidationException", "The provided starting key is invalid")
    refused(limits.check(query(ExclusiveStartKey={"pk": s("JOB#2"), "sk": s("EVENT#1")}, **base)),
            400, "ValidationException", "outside query boundaries")


def test_an_index_querys_starting_key_is_the_index_key_and_the_table_key():
    base = dict(IndexName="by_user", KeyConditionExpression="#u = :u",
                ExpressionAttributeNames={"#u": "user_id"}, ExpressionAttributeValues={":u": s("user-1")})
    full = {"user_id": s("user-1"), "created_key": s("2025#a"), "pk": s("JOB#1"), "sk": s("JOB")}
    assert limits.check(query(ExclusiveStartKey=full, **base)) is None
    index_only = {"user_id": s("user-1"), "created_key": s("2025#a")}
    refused(limits.check(query(ExclusiveStartKey=index_only, **base)), 400, "ValidationException", "starting key is invalid")
    # An index without a sort key.
    base = dict(IndexName="by_provider_request", KeyConditionExpression="provider_request = :r",
                ExpressionAttributeValues={":r": s("local#abc")})
    ok = {"provider_request": s("local#abc"), "pk": s("JOB#1"), "sk": s("JOB")}
    assert limits.check(query(ExclusiveStartKey=ok, **base)) is None
    refused(limits.check(query(ExclusiveStartKey={**ok, "created_key": s("x")}, **base)), 400, "ValidationException")


def test_a_scans_starting_key_is_checked_too():
    assert limits.check(ddb("Scan", TableName=JOBS, ExclusiveStartKey={"pk": s("a"), "sk": s("b")})) is None
    refused(limits.check(ddb("Scan", TableName=JOBS, ExclusiveStartKey={"pk": s("a")})), 400, "ValidationException")


def test_empty_key_condition_values_are_refused():
    refused(limits.check(query(KeyConditionExpression="pk = :pk AND begins_with(sk, :p)",
                               ExpressionAttributeValues={":pk": s(""), ":p": s("EVENT#")})),
            400, "ValidationException", "Key: pk")
    refused(limits.check(query(KeyConditionExpression="pk = :pk AND begins_with(sk, :p)",
                               ExpressionAttributeValues={":pk": s("JOB#1"), ":p": s("")})),
            400, "ValidationException", "Key: sk")
    assert limits.check(query(KeyConditionExpression="pk = :pk AND sk BETWEEN :a AND :b",
                              ExpressionAttributeValues={":pk": s("JOB#1"), ":a": s("A"), ":b": s("B")})) is None


# --- transactions and batches ----------------------------------------------


def puts(n, table=PROMPTS):
    return [{"Put": {"TableName": table, "Item": {"job_id": s(f"job-{i}")}}} for i in range(n)]


def test_transactions_of_100_actions_are_taken_and_101_refused():
    assert limits.check(ddb("TransactWriteItems", TransactItems=puts(100))) is None
    refused(limits.check(ddb("TransactWriteItems", TransactItems=puts(101))),
            400, "ValidationException", "Member must have length less than or equal to 100")
    gets = [{"Get": {"TableName": PROMPTS, "Key": {"job_id": s(f"job-{i}")}}} for i in range(101)]
    assert limits.check(ddb("TransactGetItems", TransactItems=gets[:100])) is None
    refused(limits.check(ddb("TransactGetItems", TransactItems=gets)), 400, "ValidationException", "100")


def test_two_actions_on_one_item_are_refused():
    key = {"pk": s("JOB#1"), "sk": s("JOB")}
    actions = [
        {"Put": {"TableName": JOBS, "Item": {**key, "status": s("queued")}}},
        {"Update": {"TableName": JOBS, "Key": key, "UpdateExpression": "SET a = :a"}},
    ]
    refused(limits.check(ddb("TransactWriteItems", TransactItems=actions)),
            400, "ValidationException", "Transaction request cannot include multiple operations on one item")
    # The same key in two tables is two items.
    other = [{"ConditionCheck": {"TableName": PROMPTS, "Key": {"job_id": s("JOB#1")}, "ConditionExpression": "x"}},
             {"Delete": {"TableName": JOBS, "Key": key}}]
    assert limits.check(ddb("TransactWriteItems", TransactItems=other)) is None


def test_an_oversized_put_in_a_transaction_cancels_it():
    actions = puts(2) + [{"Put": {"TableName": JOBS, "Item": sized_item(409601)}}]
    _, document = refused(limits.check(ddb("TransactWriteItems", TransactItems=actions)), 400, "TransactionCanceledException")
    assert [r["Code"] for r in document["CancellationReasons"]] == ["None", "None", "ValidationError"]


def test_a_transaction_over_4_mb_is_refused():
    actions = [{"Put": {"TableName": JOBS, "Item": {"pk": s(f"JOB#{i}"), "sk": s("JOB"), "b": s("x" * 400_000)}}}
               for i in range(11)]
    refused(limits.check(ddb("TransactWriteItems", TransactItems=actions)), 400, "ValidationException", "4 MB")
    assert limits.check(ddb("TransactWriteItems", TransactItems=actions[:10])) is None


def test_batch_get_of_100_keys_is_taken_and_101_refused():
    keys = [{"job_id": s(f"job-{i}")} for i in range(101)]
    assert limits.check(ddb("BatchGetItem", RequestItems={PROMPTS: {"Keys": keys[:100]}})) is None
    refused(limits.check(ddb("BatchGetItem", RequestItems={PROMPTS: {"Keys": keys}})),
            400, "ValidationException", "Too many items requested for the BatchGetItem call")
    refused(limits.check(ddb("BatchGetItem", RequestItems={PROMPTS: {"Keys": [keys[0], keys[0]]}})),
            400, "ValidationException", "duplicates")


def test_batch_write_of_25_is_taken_and_26_refused():
    writes = [{"PutRequest": {"Item": {"job_id": s(f"job-{i}")}}} for i in range(26)]
    assert limits.check(ddb("BatchWriteItem", RequestItems={PROMPTS: writes[:25]})) is None
    refused(limits.check(ddb("BatchWriteItem", RequestItems={PROMPTS: writes})),
            400, "ValidationException", "less than or equal to 25")
    deletes = [{"DeleteRequest": {"Key": {"job_id": s("a")}}}] * 2
    refused(limits.check(ddb("BatchWriteItem", RequestItems={PROMPTS: deletes})), 400, "ValidationException", "duplicates")


def test_a_limit_answer_carries_no_sqs_header_outside_sqs():
    headers, _ = refused(limits.check(ddb("GetItem", TableName=JOBS, Key={"pk": s("")  , "sk": s("J")})), 400, "ValidationException")
    assert "x-amzn-query-error" not in headers


def test_a_malformed_request_is_left_to_moto():
    assert limits.check(ddb("PutItem", TableName=JOBS, Item="not a map")) is None
    assert limits.check(ddb("TransactWriteItems")) is None


# --- SQS -------------------------------------------------------------------


def test_a_message_of_1_mib_is_taken_and_one_byte_more_refused():
    assert limits.queue_max(WORK_QUEUE) == 1024 * 1024
    assert limits.check(sqs("SendMessage", QueueUrl=WORK_QUEUE, MessageBody="x" * 1048576)) is None
    headers, document = refused(limits.check(sqs("SendMessage", QueueUrl=WORK_QUEUE, MessageBody="x" * 1048577)),
                                400, "InvalidParameterValue", "Message must be shorter than 1048576 bytes")
    assert headers["x-amzn-query-error"] == "InvalidParameterValue;Sender"


def test_message_size_counts_utf8_bytes_and_attributes():
    # 524,288 two-byte characters are 1 MiB: moto counts characters and would take one more.
    assert limits.check(sqs("SendMessage", QueueUrl=WORK_QUEUE, MessageBody="é" * 524288)) is None
    refused(limits.check(sqs("SendMessage", QueueUrl=WORK_QUEUE, MessageBody="é" * 524288 + "x")), 400, "InvalidParameterValue")
    attribute = {"reason": {"DataType": "String", "StringValue": "abc"}}  # 6 + 6 + 3 = 15 bytes
    assert limits.check(sqs("SendMessage", QueueUrl=WORK_QUEUE, MessageBody="x" * (1048576 - 15),
                            MessageAttributes=attribute)) is None
    refused(limits.check(sqs("SendMessage", QueueUrl=WORK_QUEUE, MessageBody="x" * (1048576 - 14),
                             MessageAttributes=attribute)), 400, "InvalidParameterValue")


def test_delay_of_900_seconds_is_taken_and_901_refused():
    assert limits.check(sqs("SendMessage", QueueUrl=WORK_QUEUE, MessageBody="{}", DelaySeconds=900)) is None
    refused(limits.check(sqs("SendMessage", QueueUrl=WORK_QUEUE, MessageBody="{}", DelaySeconds=901)),
            400, "InvalidParameterValue", "DelaySeconds must be >= 0 and <= 900")


def entries(n, size=2):
    return [{"Id": str(i), "MessageBody": "x" * size} for i in range(n)]


def test_a_batch_of_10_is_taken_and_11_refused():
    assert limits.check(sqs("SendMessageBatch", QueueUrl=WORK_QUEUE, Entries=entries(10))) is None
    headers, _ = refused(limits.check(sqs("SendMessageBatch", QueueUrl=WORK_QUEUE, Entries=entries(11))),
                         400, "TooManyEntriesInBatchRequest", "You have sent 11")
    assert headers["x-amzn-query-error"] == "AWS.SimpleQueueService.TooManyEntriesInBatchRequest;Sender"


def test_a_batch_of_1_mib_in_all_is_taken_and_one_byte_more_refused():
    batch = entries(4, 262144)
    assert limits.check(sqs("SendMessageBatch", QueueUrl=WORK_QUEUE, Entries=batch)) is None
    batch[0]["MessageBody"] += "x"
    headers, _ = refused(limits.check(sqs("SendMessageBatch", QueueUrl=WORK_QUEUE, Entries=batch)),
                         400, "BatchRequestTooLong", "You have sent 1048577 bytes")
    assert headers["x-amzn-query-error"] == "AWS.SimpleQueueService.BatchRequestTooLong;Sender"


def test_sqs_query_protocol_is_held_too():
    call = Call(service="sqs", operation="SendMessage", principal="WorkerFunction", protocol="query",
                params={"Action": "SendMessage", "QueueUrl": WORK_QUEUE, "MessageBody": "x" * 1048577})
    status_line, _, body = limits.check(call)
    assert status_line.startswith("400 ") and b"<Code>InvalidParameterValue</Code>" in body


# --- Step Functions -------------------------------------------------------


def test_execution_input_of_256_kib_is_taken_and_one_byte_more_refused():
    arn = "arn:aws:states:us-east-1:123456789012:stateMachine:videojobs-local-jobs"
    payload = json.dumps({"p": "x" * (262144 - 9)})
    assert len(payload.encode()) == 262144
    assert limits.check(sfn("StartExecution", stateMachineArn=arn, name="job-1", input=payload)) is None
    payload = json.dumps({"p": "x" * (262144 - 8)})
    refused(limits.check(sfn("StartExecution", stateMachineArn=arn, name="job-1", input=payload)),
            400, "ValidationException", "Value at 'input' failed to satisfy constraint: Member must have length less than or equal to 262144")


def test_execution_names_of_80_characters_are_taken_and_81_refused():
    assert limits.check(sfn("StartExecution", name="a" * 80, input="{}")) is None
    refused(limits.check(sfn("StartExecution", name="a" * 81, input="{}")),
            400, "ValidationException", "at 'name' failed to satisfy constraint: Member must have length less than or equal to 80")


@pytest.mark.parametrize("character", list(" \t<>{}[]?*\"#%\\^|~`$&,;:/") + ["\u0000", "\u001f", "\u007f", "\u009f"])
def test_execution_names_refuse_what_aws_refuses(character):
    refused(limits.check(sfn("StartExecution", name=f"job{character}1", input="{}")), 400, "InvalidName", "Invalid Name")


def test_execution_names_take_what_aws_takes():
    assert limits.check(sfn("StartExecution", name="01J9Z-job_1.2!@(x)+=é", input="{}")) is None


def test_task_tokens_of_2048_are_taken_and_2049_refused():
    assert limits.check(sfn("SendTaskSuccess", taskToken="t" * 2048, output="{}")) is None
    refused(limits.check(sfn("SendTaskSuccess", taskToken="t" * 2049, output="{}")),
            400, "ValidationException", "'taskToken'")
    refused(limits.check(sfn("SendTaskHeartbeat", taskToken="t" * 2049)), 400, "ValidationException", "2048")
    refused(limits.check(sfn("SendTaskFailure", taskToken="t" * 2049, error="e")), 400, "ValidationException", "2048")


def test_task_output_of_256_kib_is_taken_and_one_byte_more_refused():
    assert limits.check(sfn("SendTaskSuccess", taskToken="t", output="\"" + "x" * 262142 + "\"")) is None
    refused(limits.check(sfn("SendTaskSuccess", taskToken="t", output="\"" + "x" * 262143 + "\"")),
            400, "ValidationException", "'output'")


def test_task_failure_error_and_cause_lengths():
    assert limits.check(sfn("SendTaskFailure", taskToken="t", error="e" * 256, cause="c" * 32768)) is None
    refused(limits.check(sfn("SendTaskFailure", taskToken="t", error="e" * 257)), 400, "ValidationException", "'error'")
    refused(limits.check(sfn("SendTaskFailure", taskToken="t", cause="c" * 32769)), 400, "ValidationException", "'cause'")


def test_other_calls_pass():
    assert limits.check(Call(service="s3", operation="PutObject", principal="WorkerFunction", protocol="rest-xml")) is None
    assert limits.check(Call(service="sts", operation="GetCallerIdentity", principal="testing")) is None


def test_the_retention_window_always_ends_before_the_stray_output_rule():
    """The bucket's safety net deletes unreviewed outputs after StrayOutputDays:
    no allowed RetentionSeconds may outlast it (a rule cannot compare numbers,
    so the parameters' bounds must)."""
    from gate import iam
    params = iam.Template().raw["Parameters"]
    longest_retention = params["RetentionSeconds"]["MaxValue"]
    shortest_net = params["StrayOutputDays"]["MinValue"] * 86400
    assert longest_retention < shortest_net
    assert params["RetentionSeconds"]["Default"] <= longest_retention
    assert params["StrayOutputDays"]["Default"] * 86400 >= shortest_net
