"""The gate in front of moto, with the real template and a bootstrapped stack:
the two known bugs, the calls beside them that must pass, presigned URLs, the
state machine's own calls, the records and the report. Then the middleware's
order and plumbing against a stand-in app."""

import json
import time
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError
from werkzeug.test import Client

import gate as gate_module
from gate import Gate, report


def denials(gate):
    return list(gate.recorder.denials)


def new_denials(gate, before):
    return denials(gate)[len(before):]


def error_of(send):
    with pytest.raises(ClientError) as err:
        send()
    return err.value.response


# --- the two known bugs ---------------------------------------------------------------


def test_notifier_query_of_job_events_is_denied_and_recorded(gate_before_fix, client):
    _, gate, env = gate_before_fix
    before = denials(gate)
    response = error_of(lambda: client("dynamodb", "NotifyFunction").query(
        TableName=env["JOBS_TABLE"], KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
        ExpressionAttributeValues={":pk": {"S": "JOB#job_1"}, ":prefix": {"S": "EVENT#"}}))
    assert response["Error"]["Code"] == "AccessDeniedException"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    (record,) = new_denials(gate, before)
    assert (record["function"], record["action"]) == ("NotifyFunction", "dynamodb:Query")
    assert record["resource"].endswith(":table/" + env["JOBS_TABLE"])
    # Written at once, for report.py.
    lines = gate.recorder.denials_path.read_text().splitlines()
    assert json.loads(lines[-1])["action"] == "dynamodb:Query"


def test_create_head_of_a_missing_upload_answers_403_and_is_recorded(gate_before_fix, client):
    _, gate, env = gate_before_fix
    s3 = client("s3", "CreateFunction")
    before = denials(gate)
    response = error_of(lambda: s3.head_object(Bucket=env["MEDIA_BUCKET"], Key="uploads/missing.png"))
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 403
    response = error_of(lambda: s3.get_object(Bucket=env["MEDIA_BUCKET"], Key="uploads/missing.png"))
    assert (response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]) == ("AccessDenied", 403)
    records = new_denials(gate, before)
    assert [(r["function"], r["action"], r["resource"], r["call"]) for r in records] == [
        ("CreateFunction", "s3:ListBucket", f"arn:aws:s3:::{env['MEDIA_BUCKET']}", "s3:HeadObject"),
        ("CreateFunction", "s3:ListBucket", f"arn:aws:s3:::{env['MEDIA_BUCKET']}", "s3:GetObject"),
    ]
    assert all(r["note"] == "needed for a 404 on a missing key" for r in records)
    # The same key once it exists: allowed, no denial.
    client("s3", "testing").put_object(Bucket=env["MEDIA_BUCKET"], Key="uploads/present.png", Body=b"png")
    before = denials(gate)
    assert s3.head_object(Bucket=env["MEDIA_BUCKET"], Key="uploads/present.png")["ContentLength"] == 3
    assert new_denials(gate, before) == []
    # Unchecked credentials keep moto's 404.
    response = error_of(lambda: client("s3", "testing").head_object(Bucket=env["MEDIA_BUCKET"], Key="uploads/missing.png"))
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_since_the_fix_both_calls_pass(moto_gate, client):
    _, gate, env = moto_gate
    before = denials(gate)
    answer = client("dynamodb", "NotifyFunction").query(
        TableName=env["JOBS_TABLE"], KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": "JOB#1"}})
    assert answer["Items"] == []
    response = error_of(lambda: client("s3", "CreateFunction").head_object(Bucket=env["MEDIA_BUCKET"], Key="uploads/gone.png"))
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert new_denials(gate, before) == []


# --- what must pass -----------------------------------------------------------------------


@pytest.mark.parametrize("principal, index", [("StatusFunction", "by_user"), ("WorkerFunction", "stuck_watch"),
                                              ("WorkerFunction~storm", "review_queue")])
def test_index_queries_pass(moto_gate, client, principal, index):
    _, gate, env = moto_gate
    keys = {"by_user": "user_id", "stuck_watch": "watch_status", "review_queue": "review_state"}
    before = denials(gate)
    client("dynamodb", principal).query(
        TableName=env["JOBS_TABLE"], IndexName=index, KeyConditionExpression="#k = :v",
        ExpressionAttributeNames={"#k": keys[index]}, ExpressionAttributeValues={":v": {"S": "x"}})
    assert new_denials(gate, before) == []


def test_webhook_reads_only_its_prefixes(moto_gate, client):
    _, gate, env = moto_gate
    ddb = client("dynamodb", "WebhookFunction")
    ddb.get_item(TableName=env["JOBS_TABLE"], Key={"pk": {"S": "JOB#1"}, "sk": {"S": "JOB"}})
    before = denials(gate)
    response = error_of(lambda: ddb.get_item(TableName=env["JOBS_TABLE"], Key={"pk": {"S": "KEY#abc"}, "sk": {"S": "KEY"}}))
    assert response["Error"]["Code"] == "AccessDeniedException"
    (record,) = new_denials(gate, before)
    assert (record["function"], record["action"], record["leading_keys"]) == ("WebhookFunction", "dynamodb:GetItem", ["KEY#abc"])


def test_presigned_urls_are_checked_as_their_signer(moto_gate, client):
    _, gate, env = moto_gate
    s3 = client("s3", "CreateFunction")
    url = s3.generate_presigned_url("put_object", Params={"Bucket": env["MEDIA_BUCKET"], "Key": "uploads/u.png"})
    assert urllib.request.urlopen(urllib.request.Request(url, data=b"png", method="PUT")).status == 200
    before = denials(gate)
    url = s3.generate_presigned_url("put_object", Params={"Bucket": env["MEDIA_BUCKET"], "Key": "outputs/u.png"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(urllib.request.Request(url, data=b"png", method="PUT"))
    assert err.value.code == 403 and b"<Code>AccessDenied</Code>" in err.value.read()
    (record,) = new_denials(gate, before)
    assert (record["function"], record["action"]) == ("CreateFunction", "s3:PutObject")


def test_sqs_poller_schedule_and_state_machine(moto_gate, client):
    _, gate, env = moto_gate
    client("sqs", "CheckStuckScheduleRole").send_message(QueueUrl=env["WORK_QUEUE_URL"], MessageBody='{"kind":"check_stuck"}')
    worker = client("sqs", "WorkerFunction")
    for message in worker.receive_message(QueueUrl=env["WORK_QUEUE_URL"], MaxNumberOfMessages=10).get("Messages", []):
        worker.delete_message(QueueUrl=env["WORK_QUEUE_URL"], ReceiptHandle=message["ReceiptHandle"])
    before = denials(gate)
    error_of(lambda: client("sqs", "CheckStuckScheduleRole").send_message(QueueUrl=env["NOTIFY_QUEUE_URL"], MessageBody="{}"))
    assert [r["action"] for r in new_denials(gate, before)] == ["sqs:SendMessage"]

    # The state machine's own sqs:sendMessage.waitForTaskToken, signed by moto's interpreter.
    client("stepfunctions", "CreateFunction").start_execution(
        stateMachineArn=env["STATE_MACHINE_ARN"], name="job_gate_1",
        input=json.dumps({"job_id": "job_gate_1", "deadline_seconds": 60, "retention_seconds": 60}))
    unit = ("JobStateMachineRole", "JobStateMachineRolePolicy0", 0, "sqs:SendMessage", "!GetAtt WorkQueue.Arn")
    deadline = time.time() + 10
    while unit not in gate.recorder.usage and time.time() < deadline:
        time.sleep(0.1)
    assert unit in gate.recorder.usage


def test_unchecked_principals_pass(moto_gate, client):
    _, gate, env = moto_gate
    before = denials(gate)
    client("dynamodb", "testing").query(TableName=env["JOBS_TABLE"], KeyConditionExpression="pk = :pk",
                                        ExpressionAttributeValues={":pk": {"S": "KEY#1"}})
    assert new_denials(gate, before) == []


def test_usage_and_the_report(gate_before_fix, client, capsys):
    _, gate, env = gate_before_fix
    # The two bugs, again: this test must not depend on the others having run.
    error_of(lambda: client("dynamodb", "NotifyFunction").query(
        TableName=env["JOBS_TABLE"], KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": "JOB#1"}}))
    error_of(lambda: client("s3", "CreateFunction").head_object(Bucket=env["MEDIA_BUCKET"], Key="uploads/gone.png"))
    client("dynamodb", "StatusFunction").get_item(TableName=env["JOBS_TABLE"], Key={"pk": {"S": "JOB#1"}, "sk": {"S": "JOB"}})
    used = json.loads(gate.recorder.usage_path.read_text())
    assert ["StatusFunctionRole", "StatusFunctionRolePolicy0", 0, "dynamodb:GetItem", "!GetAtt JobsTable.Arn"] in used
    status = report.main([str(gate.recorder.directory)])
    out = capsys.readouterr().out
    assert status == 1
    assert "DENIED NotifyFunction: dynamodb:Query on arn:aws:dynamodb:us-east-1:123456789012:table/" in out
    assert "DENIED CreateFunction: s3:ListBucket on arn:aws:s3:::" in out
    # Unused grants are listed, not fatal.
    assert "NOT JUSTIFIED" in out and "AWSLambdaBasicExecutionRole" in out


def test_report_without_denials_passes(tmp_path, capsys):
    (tmp_path / "usage-1.json").write_text("[]")
    assert report.main([str(tmp_path)]) == 0
    assert report.main([str(tmp_path / "none")]) == 0


def test_unused_permissions_metadata_justifies():
    from gate import iam

    template = iam.Template()
    units = template.all_units()["WorkerFunctionRole"]
    by = {(u[3], u[4]): report.justification(template, u) for u in units}
    # By action (every resource of it) and by action and resource.
    assert by[("s3:AbortMultipartUpload", "!Sub ${MediaBucket.Arn}/outputs/*")].startswith("Only an output larger")
    assert by[("s3:GetObject", "!Sub ${MediaBucket.Arn}/outputs/*")].startswith("The HeadObject")
    assert by[("s3:GetObject", "!Sub ${MediaBucket.Arn}/uploads/*")] is None
    assert by[("sqs:SendMessage", "!GetAtt WorkQueue.Arn")] is None


# --- the middleware, against a stand-in app ----------------------------------------------------


class Echo:
    """Answers with what it was given; records the order of events."""

    def __init__(self, events, status="200 OK"):
        self.events, self.status = events, status

    def __call__(self, environ, start_response):
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        self.events.append(("moto", body))
        start_response(self.status, [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))])
        return [body]


class Layer:
    def __init__(self, events, name, answer=None):
        self.events, self.name, self.answer = events, name, answer

    def __call__(self, call, *rest):
        self.events.append((self.name, call.operation))
        return self.answer


@pytest.fixture
def stand_in(template, tmp_path, monkeypatch):
    events = []

    def make(limits_answer=None, before_answer=None, after_answer=None, status="200 OK", iam_enabled=True):
        monkeypatch.setattr(gate_module, "limits", type("L", (), {"check": staticmethod(Layer(events, "limits", limits_answer))}))
        monkeypatch.setattr(gate_module, "faults", type("F", (), {
            "before": staticmethod(Layer(events, "before", before_answer)),
            "after": staticmethod(Layer(events, "after", after_answer))}))
        gate = Gate(Echo(events, status), port="t", report_dir=tmp_path, template=template, iam_enabled=iam_enabled)
        gate.checker and gate.checker.register({"name": "s1", "physical": {
            "JobsTable": {"ref": "s1-JobsTable", "Arn": "arn:aws:dynamodb:us-east-1:123456789012:table/s1-JobsTable"}}})
        return gate, Client(gate)

    return events, make


def signed(target, key, body):
    return {"X-Amz-Target": target, "Authorization": f"AWS4-HMAC-SHA256 Credential={key}/20240101/us-east-1/dynamodb/aws4_request, "
                                                     "SignedHeaders=host, Signature=x"}, json.dumps(body).encode()


def test_order_and_body_given_again(stand_in):
    events, make = stand_in
    _, http = make()
    headers, body = signed("DynamoDB_20120810.GetItem", "StatusFunction",
                           {"TableName": "s1-JobsTable", "Key": {"pk": {"S": "JOB#1"}, "sk": {"S": "JOB"}}})
    response = http.post("/", headers=headers, data=body)
    assert response.status_code == 200 and response.data == body
    assert [e[0] for e in events] == ["limits", "before", "moto", "after"]


def test_a_denial_stops_before_limits_and_moto(stand_in):
    events, make = stand_in
    gate, http = make()
    headers, body = signed("DynamoDB_20120810.DeleteItem", "StatusFunction",
                           {"TableName": "s1-JobsTable", "Key": {"pk": {"S": "JOB#1"}, "sk": {"S": "JOB"}}})
    response = http.post("/", headers=headers, data=body)
    assert response.status_code == 400 and b"AccessDeniedException" in response.data
    assert events == [] and gate.recorder.denials[-1]["action"] == "dynamodb:DeleteItem"


def test_layers_answer_instead_of_moto(stand_in):
    events, make = stand_in
    answer = ("503 Service Unavailable", [("Content-Length", "4")], b"busy")
    _, http = make(before_answer=answer)
    headers, body = signed("DynamoDB_20120810.GetItem", "testing", {"TableName": "t"})
    response = http.post("/", headers=headers, data=body)
    assert (response.status_code, response.data) == (503, b"busy")
    assert [e[0] for e in events] == ["limits", "before"]


def test_iam_off(stand_in):
    events, make = stand_in
    gate, http = make(iam_enabled=False)
    headers, body = signed("DynamoDB_20120810.Query", "NotifyFunction", {"TableName": "s1-JobsTable"})
    assert http.post("/", headers=headers, data=body).status_code == 200
    assert gate.recorder.denials == []


def test_stack_registration_and_report_endpoint(stand_in):
    _, make = stand_in
    gate, http = make()
    response = http.post("/_gate/stacks", data=json.dumps({"name": "s2", "physical": {}}))
    assert response.status_code == 200 and "s2" in gate.checker.stacks
    assert http.get("/_gate/report").json["stacks"] == ["s1", "s2"]
