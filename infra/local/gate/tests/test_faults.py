"""AWS's faults (gate/faults.py): their shapes as the SDK reads them, who gets
them, the profiles, reproducibility, the runtime endpoint, and the
TransactWriteItems idempotency that makes a lost answer's retry AWS-like.

botocore stands in for the AWS SDK for Rust when parsing an answer and
classifying it for a retry: both follow the same error-code lists (throttles:
ThrottlingException, ProvisionedThroughputExceededException, RequestThrottled,
SlowDown, ...; transient: 500, 502, 503, 504)."""

import json

import botocore.parsers
import botocore.session
import pytest
from botocore.retries import standard

from gate import faults
from gate.calls import Call

JOBS = "videojobs-local-JobsTable"
QUEUE = "http://127.0.0.1:5000/123456789012/videojobs-local-WorkQueue"


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    monkeypatch.delenv("GATE_FAULTS", raising=False)
    monkeypatch.delenv("GATE_FAULTS_SEED", raising=False)
    monkeypatch.setattr(faults.time, "sleep", lambda seconds: None)
    faults.reset()
    yield
    faults.reset()


def ddb(operation="GetItem", principal="WorkerFunction", **params):
    params.setdefault("TableName", JOBS)
    return Call(service="dynamodb", operation=operation, principal=principal, params=params, method="POST")


def sqs(operation="SendMessage", principal="WorkerFunction", **params):
    params.setdefault("QueueUrl", QUEUE)
    return Call(service="sqs", operation=operation, principal=principal, params=params, method="POST")


def s3(operation="GetObject", principal="WorkerFunction", method="GET", **fields):
    return Call(service="s3", operation=operation, principal=principal, method=method, protocol="rest-xml",
                bucket="videojobs-local-mediabucket", key="outputs/a.mp4", **fields)


def sfn(operation="StartExecution", principal="CreateFunction", **params):
    return Call(service="states", operation=operation, principal=principal, params=params, method="POST")


SERVICES = {"dynamodb": ("dynamodb", "GetItem"), "sqs": ("sqs", "SendMessage"), "s3": ("s3", "GetObject"),
            "states": ("stepfunctions", "StartExecution")}
_session = botocore.session.get_session()


def sdk_view(call, answer, operation=None):
    """(error code, retryable) of an answer as botocore's parser and standard retry see it."""
    service, default_operation = SERVICES[call.service]
    model = _session.get_service_model(service)
    operation_model = model.operation_model(operation or call.operation or default_operation)
    status_line, headers, body = answer
    response = {"status_code": int(status_line.split()[0]), "headers": {k: v for k, v in headers}, "body": body}
    parser = botocore.parsers.create_parser(model.metadata["protocol"])
    parsed = parser.parse(response, operation_model.output_shape)
    context = standard.RetryContext(attempt_number=1, operation_model=operation_model, parsed_response=parsed,
                                    http_response=type("R", (), {"status_code": response["status_code"], "headers": {}})())
    return parsed["Error"]["Code"], standard.StandardRetryConditions().is_retryable(context)


def only(code, **profile):
    faults.configure({"error": 1.0, "errors": [code], **profile})


# --- the errors' shapes -----------------------------------------------------


@pytest.mark.parametrize("code,status,retried", [
    ("ThrottlingException", 400, True),
    ("ProvisionedThroughputExceededException", 400, True),
    ("InternalServerError", 500, True),
])
def test_dynamodb_errors_are_shaped_as_aws_sends_them(code, status, retried):
    only(code)
    answer = faults.before(ddb())
    status_line, headers, body = answer
    assert status_line.startswith(f"{status} ")
    document = json.loads(body)
    assert document["__type"] == f"com.amazonaws.dynamodb.v20120810#{code}"
    assert dict(headers)["Content-Type"] == "application/x-amz-json-1.0"
    assert "x-amzn-query-error" not in dict(headers)  # only SQS sends it
    assert sdk_view(ddb(), answer) == (code, retried)


def test_a_transaction_conflict_cancels_with_one_reason_per_action_and_is_not_retried_by_the_sdk():
    only("TransactionConflict")
    actions = [{"Put": {"TableName": JOBS, "Item": {"pk": {"S": f"a{i}"}, "sk": {"S": "b"}}}} for i in range(4)]
    call = ddb("TransactWriteItems", TransactItems=actions)
    answer = faults.before(call)
    status_line, _, body = answer
    document = json.loads(body)
    assert status_line.startswith("400 ")
    assert document["__type"].endswith("#TransactionCanceledException")
    codes = [r["Code"] for r in document["CancellationReasons"]]
    assert len(codes) == 4 and codes.count("TransactionConflict") == 1 and codes.count("None") == 3
    assert sdk_view(call, answer) == ("TransactionCanceledException", False)


def test_conflicts_come_only_to_transactions():
    faults.configure({"error": 1.0})
    seen = {json.loads(faults.before(ddb("PutItem", Item={}))[2])["__type"].split("#")[1] for _ in range(200)}
    assert "TransactionCanceledException" not in seen
    assert seen == {"ThrottlingException", "ProvisionedThroughputExceededException", "InternalServerError"}


@pytest.mark.parametrize("code,status", [("SlowDown", 503), ("InternalError", 500)])
def test_s3_errors_are_xml_and_retried(code, status):
    only(code)
    answer = faults.before(s3())
    status_line, headers, body = answer
    assert status_line.startswith(f"{status} ")
    assert dict(headers)["Content-Type"] == "application/xml"
    assert f"<Code>{code}</Code>".encode() in body
    assert sdk_view(s3(), answer) == (code, True)


def test_an_s3_head_error_has_no_body():
    only("SlowDown")
    status_line, headers, body = faults.before(s3("HeadObject", method="HEAD"))
    assert status_line.startswith("503 ") and body == b"" and dict(headers)["Content-Length"] == "0"


@pytest.mark.parametrize("code,status,fault", [
    ("RequestThrottled", 400, "Sender"),
    ("ThrottlingException", 400, "Sender"),
    ("InternalError", 500, "Receiver"),
    ("ServiceUnavailable", 503, "Receiver"),
])
def test_sqs_errors_carry_the_query_code_and_are_retried(code, status, fault):
    only(code)
    answer = faults.before(sqs())
    status_line, headers, body = answer
    assert status_line.startswith(f"{status} ")
    assert json.loads(body)["__type"] == f"com.amazonaws.sqs#{code}"
    assert dict(headers)["x-amzn-query-error"] == f"{code};{fault}"
    assert sdk_view(sqs(), answer) == (code, True)


@pytest.mark.parametrize("code,status", [("ThrottlingException", 400), ("ServiceUnavailable", 503), ("InternalFailure", 500)])
@pytest.mark.parametrize("operation", ["StartExecution", "SendTaskSuccess", "SendTaskFailure", "SendTaskHeartbeat"])
def test_step_functions_errors_are_retried(code, status, operation):
    only(code)
    answer = faults.before(sfn(operation))
    assert answer[0].startswith(f"{status} ")
    assert sdk_view(sfn(operation), answer) == (code, True)


# --- slow and lost ------------------------------------------------------------


def test_a_slow_call_sleeps_before_moto_and_goes_on(monkeypatch):
    slept = []
    monkeypatch.setattr(faults.time, "sleep", slept.append)
    faults.configure("slow=1:0.2-0.4")
    assert faults.before(ddb()) is None
    assert len(slept) == 1 and 0.2 <= slept[0] <= 0.4
    assert faults.counts()["by_kind"] == {"slow": 1}


def test_a_lost_answer_is_dropped_or_a_500_after_moto_applied_it():
    faults.configure("lost=1,drop=1")
    call = sqs()
    assert faults.before(call) is None
    assert faults.after(call, "200 OK", [], b"{}") == "drop"
    faults.configure("lost=1,drop=0")
    call = sqs()
    faults.before(call)
    answer = faults.after(call, 200, [], b"{}")
    assert answer[0].startswith("500 ") and sdk_view(call, answer) == ("InternalError", True)
    assert faults.counts()["by_kind"] == {"lost:500": 1, "lost:drop": 1}


def test_only_successful_answers_are_lost():
    faults.configure("lost=1,drop=1")
    call = ddb("PutItem")
    faults.before(call)
    assert faults.after(call, "400 Bad Request", [], b"{}") is None


# --- who gets faults, and how many --------------------------------------------


@pytest.mark.parametrize("principal", [None, "testing", "AKIAEXAMPLE", "Worker~storm", "bootstrap~storm"])
def test_principals_without_a_function_role_never_get_faults(principal):
    faults.configure("error=1,slow=1,lost=1")
    for call in (ddb(principal=principal), sqs(principal=principal), s3(principal=principal), sfn(principal=principal)):
        assert faults.before(call) is None
        assert faults.after(call, "200 OK", [], b"") is None
    assert faults.counts()["total"] == 0


def test_every_function_role_of_the_template_gets_faults():
    faults.configure({"profile": "error=1", "roles": {"JobStateMachine": None}})
    for role in ("CreateFunction", "StatusFunction", "WebhookFunction", "WorkerFunction", "NotifyFunction",
                 "JobStateMachine", "CheckStuckScheduleRole"):
        assert faults.before(sqs(principal=role)) is not None


def test_the_none_profile_injects_nothing():
    faults.configure({"profiles": {"default": {"error": 1, "slow": 1, "lost": 1}}, "profile": "none"})
    for i in range(500):
        call = [ddb, sqs, s3, sfn][i % 4]()
        assert faults.before(call) is None
        assert faults.after(call, "200 OK", [], b"") is None
    assert faults.counts()["total"] == 0
    # ... also when a function asks for it by name.
    faults.configure("storm")
    assert all(faults.before(ddb(principal="WorkerFunction~none")) is None for _ in range(200))


def test_unset_means_the_default_profile_for_functions_and_none_for_the_state_machine():
    assert faults.snapshot()["profile"] == "default"
    assert faults.snapshot()["roles"] == {"JobStateMachine": "none"}
    assert any(faults.before(ddb()) is not None for _ in range(2000))
    assert all(faults.before(sqs(principal="ak")) is None for _ in range(2000))


def test_the_principal_suffix_picks_the_profile():
    faults.configure({"profiles": {"always": {"error": 1}}})
    assert faults.before(ddb(principal="WorkerFunction")) is None
    assert faults.before(ddb(principal="WorkerFunction~always")) is not None
    # An unknown profile: the default one, not a crash.
    faults.configure("always")
    assert faults.before(ddb(principal="WorkerFunction~nope")) is not None


def test_the_storm_and_default_profiles_have_their_rates():
    faults.configure("storm")
    storm = sum(faults.before(ddb()) is not None for _ in range(4000)) / 4000
    assert 0.08 < storm < 0.12
    faults.configure("default")
    default = sum(faults.before(ddb()) is not None for _ in range(4000)) / 4000
    assert 0.002 < default < 0.02


def test_overrides_per_service_and_operation():
    faults.configure("error=1,sqs.ReceiveMessage.error=0,states.error=0")
    assert faults.before(sqs("ReceiveMessage")) is None
    assert faults.before(sqs("DeleteMessage")) is not None
    assert faults.before(sfn()) is None
    assert faults.before(ddb()) is not None


def test_receive_and_delete_get_faults_too():
    faults.configure("error=1")
    assert faults.before(sqs("ReceiveMessage")) is not None
    assert faults.before(sqs("DeleteMessage")) is not None


def test_presigned_urls_get_no_faults_unless_asked():
    faults.configure("error=1")
    assert faults.before(s3(presigned=True)) is None
    assert faults.before(s3(query={"X-Amz-Signature": "abc"})) is None
    faults.configure("error=1,presigned=true")
    assert faults.before(s3(presigned=True)) is not None


def test_other_services_get_no_faults():
    faults.configure("error=1,slow=1,lost=1")
    call = Call(service="sts", operation="GetCallerIdentity", principal="WorkerFunction", protocol="query")
    assert faults.before(call) is None and faults.after(call, "200 OK", [], b"") is None


def outcomes(n=400):
    seen = []
    for i in range(n):
        call = [ddb, sqs, s3, sfn][i % 4]()
        answer = faults.before(call)
        lost = faults.after(call, "200 OK", [], b"") if answer is None else None
        seen.append((answer[0] if answer else None, lost if isinstance(lost, str) else bool(lost)))
    return seen


def test_a_seeded_run_is_reproducible_per_call_order():
    faults.configure("storm", seed=42)
    first = outcomes()
    faults.reset()
    faults.configure("storm", seed=42)
    assert outcomes() == first
    faults.configure("storm", seed=43)
    assert outcomes() != first
    assert any(a for a, _ in first) and any(lost for _, lost in first)


def test_the_seed_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("GATE_FAULTS", "storm")
    monkeypatch.setenv("GATE_FAULTS_SEED", "7")
    faults.reset()
    first = outcomes()
    faults.reset()
    assert outcomes() == first and faults.snapshot()["seed"] == 7


def test_counts_are_kept_by_role_service_operation_and_kind():
    only("ThrottlingException")
    faults.configure(profiles={"throttled": {"error": 1, "errors": ["ThrottlingException"]}})
    faults.before(ddb(principal="WorkerFunction~throttled"))
    faults.before(ddb(principal="WorkerFunction"))
    faults.before(ddb("PutItem", principal="CreateFunction"))
    counted = faults.counts()
    assert {(r["role"], r["operation"], r["kind"], r["count"]) for r in counted["faults"]} == {
        ("WorkerFunction", "GetItem", "error:ThrottlingException", 2),
        ("CreateFunction", "PutItem", "error:ThrottlingException", 1),
    }
    assert counted["by_kind"] == {"error:ThrottlingException": 3} and counted["total"] == 3
    assert sum(r["count"] for r in counted["calls"]) == 3


# --- configuration --------------------------------------------------------------


def test_spec_strings():
    profile = faults.parse_spec("rate=0.02, slow=0.01:0.5, lost=0.005, drop=0, dynamodb.TransactWriteItems.errors=TransactionConflict")
    assert profile == {"error": 0.02, "slow": 0.01, "slow_seconds": [0.5, 0.5], "lost": 0.005, "drop": 0.0,
                       "ops": {"dynamodb.TransactWriteItems": {"errors": ["TransactionConflict"]}}}
    assert faults.parse_spec("slow=0.1:0.1-0.3")["slow_seconds"] == [0.1, 0.3]


@pytest.mark.parametrize("bad", ["error=2", "error", "slow=0.1:0.5-0.1", "colour=1", "error=x"])
def test_bad_specs_are_refused(bad):
    with pytest.raises(ValueError):
        faults.configure(bad)


def test_gate_faults_takes_a_name_a_spec_or_json(monkeypatch):
    for value, profile in (("storm", "storm"), ("error=0.5", "default"), ('{"error": 0.5}', "default"),
                           ('{"profile": "calm", "profiles": {"calm": "error=0.001"}}', "calm")):
        monkeypatch.setenv("GATE_FAULTS", value)
        faults.reset()
        assert faults.snapshot()["profile"] == profile


# --- the runtime endpoint ---------------------------------------------------------


def admin(method, path, body=None):
    status, headers, raw = faults.handle_admin({"REQUEST_METHOD": method, "PATH_INFO": path},
                                               json.dumps(body).encode() if body is not None else b"")
    return status, json.loads(raw)


def test_the_endpoint_reads_and_sets_profiles_and_counts():
    status, document = admin("GET", "/_gate/faults")
    assert status == "200 OK" and document["profile"] == "default" and {"none", "default", "storm"} <= set(document["profiles"])
    status, document = admin("POST", "/_gate/faults", {"profile": "boom", "profiles": {"boom": {"error": 1}}, "seed": 3})
    assert status == "200 OK" and document["profile"] == "boom" and document["seed"] == 3
    faults.before(ddb())
    status, document = admin("GET", "/_gate/faults/counts")
    assert status == "200 OK" and document["total"] == 1
    status, document = admin("DELETE", "/_gate/faults/counts")
    assert document["total"] == 1 and admin("GET", "/_gate/faults/counts")[1]["total"] == 0
    assert admin("POST", "/_gate/faults", {"profile": "error=3"})[0] == "400 Bad Request"
    assert admin("POST", "/_gate/faults", {"colour": 1})[0] == "400 Bad Request"
    assert admin("GET", "/_gate/elsewhere")[0] == "404 Not Found"
    assert admin("PUT", "/_gate/faults/counts")[0] == "405 Method Not Allowed"
    assert faults.snapshot()["profile"] == "boom"  # a refused change changes nothing


# --- TransactWriteItems' idempotency ---------------------------------------------


def transaction(token="token-1", value="a", principal="CreateFunction"):
    actions = [{"Put": {"TableName": JOBS, "Item": {"pk": {"S": value}, "sk": {"S": "JOB"}}}}]
    return ddb("TransactWriteItems", principal=principal, TransactItems=actions, ClientRequestToken=token)


def test_a_retried_transaction_is_answered_from_its_first_success():
    call = transaction()
    assert faults.before(call) is None
    assert faults.after(call, "200 OK", [("Content-Type", "application/x-amz-json-1.0")], b"{}") is None
    assert faults.before(transaction()) == ("200 OK", [("Content-Type", "application/x-amz-json-1.0")], b"{}")
    mismatch = faults.before(transaction(value="b"))
    assert mismatch[0].startswith("400 ") and b"IdempotentParameterMismatchException" in mismatch[2]
    assert faults.before(transaction(token="token-2")) is None  # another token: a new transaction


def test_a_lost_transaction_answer_is_replayed_to_the_retry():
    faults.configure("lost=1,drop=1")
    call = transaction()
    faults.before(call)
    assert faults.after(call, "200 OK", [], b"{}") == "drop"
    assert faults.before(transaction()) == ("200 OK", [], b"{}")
    assert faults.counts()["idempotent_replays"][0]["outcome"] == "replayed"


def test_a_retry_while_the_first_is_applied_is_told_it_is_in_progress():
    faults.before(transaction())
    answer = faults.before(transaction())
    assert answer[0].startswith("400 ")
    assert sdk_view(transaction(), answer) == ("TransactionInProgressException", True)


def test_a_refused_transaction_is_not_replayed():
    call = transaction()
    faults.before(call)
    faults.after(call, "400 Bad Request", [], b"{}")
    assert faults.before(transaction()) is None


def test_an_injected_error_does_not_block_the_retry():
    only("ThrottlingException")
    assert faults.before(transaction(principal="WorkerFunction")) is not None
    faults.configure("none")
    assert faults.before(transaction(principal="WorkerFunction")) is None


# --- the state machine, and a profile per role ------------------------------------


def test_the_interpreters_key_is_the_state_machine():
    faults.configure({"profile": "error=1", "roles": {"JobStateMachine": None}})
    call = sqs(principal="ak")
    assert faults.before(call) is not None
    assert faults.counts()["faults"][0]["role"] == "JobStateMachine"


def test_a_role_can_have_its_own_profile():
    faults.configure({"profile": "storm", "roles": {"JobStateMachine": "none"},
                      "profiles": {"always": {"error": 1}}})
    assert all(faults.before(sqs(principal="ak")) is None for _ in range(300))
    faults.configure(roles={"WorkerFunction": "always"})
    assert faults.before(ddb(principal="WorkerFunction")) is not None
    assert faults.before(ddb(principal="WorkerFunction~none")) is None  # the suffix still wins
    faults.configure(roles={"WorkerFunction": None})
    assert faults.snapshot()["roles"] == {"JobStateMachine": "none"}
    with pytest.raises(ValueError):
        faults.configure(roles={"WorkerFunction": "nope"})


def test_counts_are_kept_apart_by_the_profile_a_principal_names():
    faults.configure({"profiles": {"always": {"error": 1}}, "profile": "none"})
    faults.before(ddb(principal="WorkerFunction~always"))
    faults.before(ddb(principal="WorkerFunction~always"))
    faults.before(ddb(principal="WorkerFunction"))
    by_profile = faults.counts()["by_profile"]
    assert by_profile["always"]["calls"] == 2
    assert sum(n for kind, n in by_profile["always"].items() if kind.startswith("error:")) == 2
    assert "(default)" not in by_profile or not any(k.startswith("error:") for k in by_profile["(default)"])
