"""AWS's own faults, at a configurable rate, for the functions' calls only.

The gate calls, per request: `before(call)` (after the limits, before moto)
and `after(call, status, headers, body)` (after moto answered). Only a call
signed by a function's identity (its access key id is a logical id of
template.yaml's functions, state machine or roles, optionally "~profile";
moto's Step Functions interpreter signs as "ak", taken for the state machine
as gate/iam.py takes it) is touched; the tests' own setup never is, and neither is a presigned URL (its
holder is a browser or curl, not an AWS SDK that retries) unless the profile
says `presigned`.

Three kinds, each a share of the eligible calls:

- error: answered at once with one of the errors AWS documents for the
  service, as AWS sends it (status, __type / Code, x-amzn-query-error), so
  the AWS SDK for Rust's standard retry classifies it as it would AWS's:
  throttles and 5xx are retried by the SDK; DynamoDB's TransactionCanceled
  with a TransactionConflict reason is not (the code retries it itself);
- slow: the call sleeps before moto sees it (never inside moto_server.py's
  DynamoDB lock: the gate calls us outside it);
- lost: moto applied the call, and its answer is lost: the connection is
  closed ("drop") or a 500 is answered instead. The SDK retries, and the
  retry meets the applied call (a duplicate message, a condition that now
  fails, ...), as on AWS after a timeout.

ReceiveMessage and DeleteMessage get faults too: AWS throttles them and
loses their answers like any other, and the local event source retries its
polls. A lost ReceiveMessage answer hides its messages for the queue's
visibility timeout, as on AWS.

AWS's idempotency that moto lacks, so that a lost answer's retry meets AWS's
behaviour rather than moto's: TransactWriteItems with a ClientRequestToken
(the SDK always sends one, the same on every retry) is answered from the
first success for 10 minutes (API_TransactWriteItems), refused with
IdempotentParameterMismatchException when the request differs, and with
TransactionInProgressException while the first is still being applied.

Configuration (docs/RELIABILITY.md, "AWS's faults in the local stack"):
GATE_FAULTS picks the profile of a function signing without "~name": a
profile name ("default", "storm", "none"), or a spec
"error=0.01,slow=0.01:0.05-0.2,lost=0.005" (that becomes the "default"
profile), or JSON ({"profile": ..., "profiles": {...}, "roles": {role:
profile}}). Unset: "none".
GATE_FAULTS_SEED seeds the one random.Random of the process (default 0).
At run time: GET/POST /_gate/faults, GET/DELETE /_gate/faults/counts.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import random
import sys
import threading
import time
from collections import Counter
from typing import Optional

from .calls import Call
from .limits import answer

# --- profiles -------------------------------------------------------------

# error/slow/lost: shares of eligible calls; slow_seconds: the sleep's range;
# drop: the share of lost answers that close the connection (the rest: 500);
# ops: overrides per "service" or "service.Operation" (any of error, slow,
# lost, drop, slow_seconds, and errors: the codes to choose from).
PROFILE_FIELDS = {"error", "slow", "slow_seconds", "lost", "drop", "presigned", "ops", "errors"}

BUILTIN_PROFILES = {
    "none": {"error": 0.0, "slow": 0.0, "lost": 0.0},
    # A busy day on AWS, in ten seconds: 1 % errors, 1 % slow, 0.5 % lost.
    "default": {"error": 0.01, "slow": 0.01, "slow_seconds": [0.05, 0.25], "lost": 0.005, "drop": 0.5},
    # Everything at once: 10 % errors, 5 % slow (below the SDK's 3 s attempt
    # timeouts), 3 % lost.
    "storm": {"error": 0.10, "slow": 0.05, "slow_seconds": [0.2, 1.5], "lost": 0.03, "drop": 0.5},
}

# Principals that are the stack's own code: template.yaml's functions, the
# state machine and the schedule's role (read from the template when it can
# be; this list when not).
FALLBACK_ROLES = {
    "CreateFunction", "StatusFunction", "WebhookFunction", "WorkerFunction", "NotifyFunction",
    "JobStateMachine", "CheckStuckScheduleRole",
}
# moto's Step Functions interpreter signs its service integrations with this
# hard-coded key (gate/iam.py takes it for the template's state machine).
INTERPRETER_KEY = "ak"
INTERPRETER_ROLE = "JobStateMachine"
ROLE_TYPES = {"AWS::Serverless::Function", "AWS::Lambda::Function", "AWS::Serverless::StateMachine",
              "AWS::StepFunctions::StateMachine", "AWS::IAM::Role"}


@functools.lru_cache(maxsize=1)
def _function_roles() -> frozenset:
    try:
        from . import limits

        resources = limits._template().get("Resources") or {}
        roles = {name for name, r in resources.items() if r.get("Type") in ROLE_TYPES}
        return frozenset(roles or FALLBACK_ROLES)
    except Exception:  # no template, no yaml: the known list
        return frozenset(FALLBACK_ROLES)


# --- AWS's errors, per service ----------------------------------------------

# (code, status, message, weight). Throttles are AWS's commonest fault, so
# they weigh more than 5xx.
ERRORS = {
    # API_Operations_Amazon_DynamoDB: common errors and each operation's.
    "dynamodb": [
        ("ThrottlingException", 400, "Throughput exceeds the current capacity of your table or index. DynamoDB is "
         "automatically scaling your table or index so please try again shortly.", 2),
        ("ProvisionedThroughputExceededException", 400, "The level of configured provisioned throughput for the "
         "table was exceeded. Consider increasing your provisioning level with the UpdateTable API.", 1),
        ("InternalServerError", 500, "Internal server error", 1),
    ],
    # https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html
    "s3": [
        ("SlowDown", 503, "Please reduce your request rate.", 2),
        ("InternalError", 500, "We encountered an internal error. Please try again.", 1),
    ],
    # SQS's JSON protocol; the query protocol's codes in x-amzn-query-error.
    "sqs": [
        ("RequestThrottled", 400, "Rate exceeded", 1),
        ("ThrottlingException", 400, "Rate exceeded", 1),
        ("InternalError", 500, "We encountered an internal error. Please try again.", 1),
        ("ServiceUnavailable", 503, "The request has failed due to a temporary failure of the server.", 1),
    ],
    # Step Functions' common errors.
    "states": [
        ("ThrottlingException", 400, "Rate exceeded", 2),
        ("ServiceUnavailable", 503, "The request has failed due to a temporary failure of the server.", 1),
        ("InternalFailure", 500, "The request processing has failed because of an unknown error.", 1),
    ],
}
# A transaction another writer's transaction cancelled. Not retried by the
# SDK (it is not a throttle); the code retries it.
CONFLICT = ("TransactionConflict", 400, "Transaction is ongoing for the item", 2)
OPERATION_ERRORS = {("dynamodb", "TransactWriteItems"): ERRORS["dynamodb"] + [CONFLICT]}
# What a lost answer is replaced by when it is not dropped.
LOST_500 = {
    "dynamodb": ("InternalServerError", "Internal server error"),
    "s3": ("InternalError", "We encountered an internal error. Please try again."),
    "sqs": ("InternalError", "We encountered an internal error. Please try again."),
    "states": ("InternalFailure", "The request processing has failed because of an unknown error."),
}

IDEMPOTENCY_WINDOW = 600  # API_TransactWriteItems: "A client token is valid for 10 minutes"
IN_PROGRESS_FOR = 60  # an unanswered first attempt stops blocking its retries after this


class ConfigError(ValueError):
    pass


class _State:
    def __init__(self):
        self.lock = threading.Lock()
        self.profiles = copy.deepcopy(BUILTIN_PROFILES)
        # On by default wherever the local stack runs: every suite meets AWS's faults.
        self.fallback = "default"
        # role -> profile name, for a principal without "~name". moto's Step
        # Functions interpreter tries a task's SendMessage once and our token
        # tasks have no Retry (docs/RELIABILITY.md), so the state machine's
        # own calls get none.
        self.by_role = {"JobStateMachine": "none"}
        self.seed = 0
        self.random = random.Random(0)
        self.faults = Counter()  # (role, service, operation, kind) -> n
        self.by_profile = Counter()  # (profile named by the principal or "", kind or "calls") -> n
        self.calls = Counter()  # (role, service, operation) -> eligible calls seen
        self.replays = Counter()  # (role, service, operation, outcome) -> n
        self.tokens = {}  # ClientRequestToken -> (digest, expires, answer or None while in progress)
        self.warned = set()


_state = _State()


# --- configuration ----------------------------------------------------------


def _share(value, name) -> float:
    share = float(value)
    if not 0.0 <= share <= 1.0:
        raise ConfigError(f"{name} must be a share between 0 and 1, not {value}")
    return share


def _seconds(value) -> list:
    if isinstance(value, (int, float)):
        low = high = float(value)
    elif isinstance(value, str):
        low, _, high = value.partition("-")
        low, high = float(low), float(high or low)
    else:
        low, high = (float(v) for v in value)
    if low < 0 or high < low:
        raise ConfigError(f"slow_seconds must be 0 <= low <= high, not {value}")
    return [low, high]


def _normalise(profile: dict, scope: str = "") -> dict:
    """Checks a profile (or an override) and gives its values their types."""
    if not isinstance(profile, dict):
        raise ConfigError(f"a profile is an object, not {profile!r}")
    unknown = set(profile) - PROFILE_FIELDS
    if unknown:
        raise ConfigError(f"unknown profile field(s) {sorted(unknown)}")
    out = {}
    for name, value in profile.items():
        if name in ("error", "slow", "lost", "drop"):
            out[name] = _share(value, name)
        elif name == "slow_seconds":
            out[name] = _seconds(value)
        elif name == "presigned":
            out[name] = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
        elif name == "errors":
            out[name] = value.split("|") if isinstance(value, str) else list(value)
        elif name == "ops":
            if scope:
                raise ConfigError("ops cannot be nested")
            out[name] = {key: _normalise(override, key) for key, override in value.items()}
    return out


def parse_spec(spec: str) -> dict:
    """"error=0.01,slow=0.01:0.05-0.2,lost=0.005,sqs.ReceiveMessage.lost=0" -> a profile.

    `rate` is `error`; `slow=SHARE:SECONDS` or `SHARE:LOW-HIGH` sets both the
    share and the sleep; `scope.field=value` (scope "dynamodb" or
    "dynamodb.TransactWriteItems") sets an override; `errors=A|B` limits the codes.
    """
    profile, ops = {}, {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise ConfigError(f"{part!r} is not name=value")
        name = name.strip()
        scope, _, field_name = name.rpartition(".")
        field_name = "error" if field_name == "rate" else field_name
        target = ops.setdefault(scope, {}) if scope else profile
        if field_name == "slow" and ":" in value:
            share, _, seconds = value.partition(":")
            target["slow"], target["slow_seconds"] = share, seconds
        else:
            target[field_name] = value
    if ops:
        profile["ops"] = ops
    return _normalise(profile)


def _profile_from(value) -> dict:
    if isinstance(value, dict):
        return _normalise(value)
    if isinstance(value, str):
        return parse_spec(value)
    raise ConfigError(f"a profile is an object or a spec string, not {value!r}")


def configure(setting=None, seed=None, profiles: Optional[dict] = None, roles: Optional[dict] = None):
    """Sets what GATE_FAULTS sets (a profile name, a spec, a profile, or
    {"profile": ..., "profiles": {...}, "roles": {...}}); `profiles` adds or
    replaces named ones; `roles` gives a role its own profile when it signs
    without "~name" (the state machine cannot add one: moto signs for it)."""
    with _state.lock:
        new_profiles = copy.deepcopy(_state.profiles)
        fallback = _state.fallback
        by_role = dict(_state.by_role)
        if isinstance(setting, str) and setting.strip().startswith("{"):
            try:
                setting = json.loads(setting)
            except ValueError as err:
                raise ConfigError(f"GATE_FAULTS is not valid JSON: {err}") from err
        if isinstance(setting, dict) and ({"profile", "profiles", "roles"} & set(setting)):
            unknown = set(setting) - {"profile", "profiles", "roles"}
            if unknown:
                raise ConfigError(f"unknown field(s) {sorted(unknown)}")
            for name, value in (setting.get("profiles") or {}).items():
                new_profiles[name] = _profile_from(value)
            by_role.update(setting.get("roles") or {})
            setting = setting.get("profile")
        by_role.update(roles or {})
        for name, value in (profiles or {}).items():
            new_profiles[name] = _profile_from(value)
        if setting is not None and setting != "":
            if isinstance(setting, str) and setting.strip() in new_profiles:
                fallback = setting.strip()
            else:
                new_profiles["default"] = _profile_from(setting)
                fallback = "default"
        for name in [fallback, *by_role.values()]:
            if name is not None and name not in new_profiles:
                raise ConfigError(f"no profile named {name!r}")
        by_role = {role: name for role, name in by_role.items() if name is not None}  # null: back to the default
        _state.profiles, _state.fallback, _state.by_role = new_profiles, fallback, by_role
        if seed is not None:
            _state.seed = int(seed)
            _state.random = random.Random(_state.seed)


def reset():
    """Back to the environment's configuration, counters and caches emptied (tests)."""
    global _state
    _state = _State()
    configure(os.environ.get("GATE_FAULTS") or None, seed=os.environ.get("GATE_FAULTS_SEED") or 0)


def snapshot() -> dict:
    with _state.lock:
        return {"profile": _state.fallback, "roles": dict(_state.by_role), "profiles": copy.deepcopy(_state.profiles),
                "seed": _state.seed}


# --- who gets faults --------------------------------------------------------


def _roles() -> frozenset:
    return _function_roles()


def _role_and_profile(call: Call):
    """(role, profile) for a function's call, else (None, None)."""
    principal = call.principal or ""
    role, _, name = principal.partition("~")
    if role == INTERPRETER_KEY:
        role = INTERPRETER_ROLE
    if role not in _roles():
        return None, None
    profile = _state.profiles.get(name or _state.by_role.get(role) or _state.fallback)
    if profile is None:
        if name not in _state.warned:
            _state.warned.add(name)
            print(f"gate: no fault profile {name!r}; {role} gets its default", file=sys.stderr)
        profile = _state.profiles[_state.by_role.get(role) or _state.fallback]
    return role, profile


def _setting(profile: dict, call: Call, name: str, default):
    ops = profile.get("ops") or {}
    for scope in (f"{call.service}.{call.operation}", call.service):
        if name in ops.get(scope, {}):
            return ops[scope][name]
    return profile.get(name, default)


def _eligible(call: Call, profile: dict) -> bool:
    if call.service not in ERRORS:
        return False
    presigned = getattr(call, "presigned", False) or "X-Amz-Signature" in (call.query or {})
    return not presigned or bool(profile.get("presigned"))


# --- answers ----------------------------------------------------------------


def _error_answer(call: Call, choice, pick: float):
    code, status, message, _ = choice
    if choice is CONFLICT:
        actions = len(call.params.get("TransactItems") or []) or 1
        reasons = [{"Code": "None"} for _ in range(actions)]
        reasons[min(int(pick * actions), actions - 1)] = {"Code": "TransactionConflict", "Message": message}
        codes = ", ".join(r["Code"] for r in reasons)
        return answer(call, 400, "TransactionCanceledException",
                      f"Transaction cancelled, please refer cancellation reasons for specific reasons [{codes}]",
                      {"CancellationReasons": reasons})
    if call.service == "sqs" and call.protocol == "json":
        return answer(call, status, code, message, {"__type": f"com.amazonaws.sqs#{code}"})
    return answer(call, status, code, message)


def _choices(call: Call, profile: dict):
    choices = OPERATION_ERRORS.get((call.service, call.operation), ERRORS[call.service])
    allowed = _setting(profile, call, "errors", None)
    if allowed:
        choices = [c for c in choices if c[0] in allowed]
    return choices


def _pick(choices, u: float):
    total = sum(c[3] for c in choices)
    point = u * total
    for choice in choices:
        point -= choice[3]
        if point < 0:
            return choice
    return choices[-1]


# --- the hooks --------------------------------------------------------------

_PLAN = "_gate_fault_plan"  # the call's draws, kept on the call from before() to after()


def _plan(call: Call) -> list:
    plan = getattr(call, _PLAN, None)
    if plan is None:
        # Seven draws per call, always, so that a run is reproducible per call order.
        with _state.lock:
            plan = [_state.random.random() for _ in range(7)]
        setattr(call, _PLAN, plan)
    return plan


def _profile_of(call: Call) -> str:
    """The profile a principal names ("storm" of "WorkerFunction~storm"), or "" for its default."""
    return (call.principal or "").partition("~")[2]


def _count(role, call, kind):
    with _state.lock:
        _state.faults[(role, call.service, call.operation, kind)] += 1
        _state.by_profile[(_profile_of(call), kind)] += 1


def before(call: Call):
    """None to go on to moto (perhaps after a sleep), or AWS's answer instead."""
    replayed = _idempotent_replay(call)
    if replayed is not None:
        return replayed
    role, profile = _role_and_profile(call)
    if role is None or not _eligible(call, profile):
        return None
    u_error, u_pick, u_slow, u_sleep, _, _, u_where = _plan(call)
    with _state.lock:
        _state.calls[(role, call.service, call.operation)] += 1
        _state.by_profile[(_profile_of(call), "calls")] += 1
    choices = _choices(call, profile)
    if choices and u_error < _setting(profile, call, "error", 0.0):
        choice = _pick(choices, u_pick)
        _count(role, call, f"error:{choice[0]}")
        _forget_in_progress(call)
        return _error_answer(call, choice, u_where)
    if u_slow < _setting(profile, call, "slow", 0.0):
        low, high = _setting(profile, call, "slow_seconds", [0.05, 0.25])
        _count(role, call, "slow")
        time.sleep(low + (high - low) * u_sleep)
    return None


def after(call: Call, status, headers, body):
    """None to pass moto's answer on, "drop" to close the connection, or an answer instead."""
    code = _status_code(status)
    _remember_answer(call, code, status, headers, body)
    role, profile = _role_and_profile(call)
    if role is None or not _eligible(call, profile) or not 200 <= code < 300:
        return None
    _, _, _, _, u_lost, u_drop, _ = _plan(call)
    if u_lost >= _setting(profile, call, "lost", 0.0):
        return None
    if u_drop < _setting(profile, call, "drop", 0.5):
        _count(role, call, "lost:drop")
        return "drop"
    _count(role, call, "lost:500")
    error_code, message = LOST_500[call.service]
    return answer(call, 500, error_code, message)


def _status_code(status) -> int:
    if isinstance(status, int):
        return status
    try:
        return int(str(status).split(" ", 1)[0])
    except ValueError:
        return 0


# --- TransactWriteItems' idempotency ----------------------------------------


def _token(call: Call) -> Optional[str]:
    if call.service == "dynamodb" and call.operation == "TransactWriteItems":
        return call.params.get("ClientRequestToken") or None
    return None


def _digest(call: Call) -> str:
    params = {k: v for k, v in call.params.items() if k != "ClientRequestToken"}
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()


def _idempotent_replay(call: Call):
    token = _token(call)
    if token is None:
        return None
    role = (call.principal or "").partition("~")[0] or "-"
    digest, now = _digest(call), time.monotonic()
    with _state.lock:
        for stale in [t for t, (_, expires, _) in _state.tokens.items() if expires < now]:
            del _state.tokens[stale]
        known = _state.tokens.get(token)
        if known is None:
            _state.tokens[token] = (digest, now + IN_PROGRESS_FOR, None)  # in progress
            return None
        known_digest, _, saved = known
        if known_digest != digest:
            outcome = "mismatch"
        elif saved is None:
            outcome = "in_progress"
        else:
            outcome = "replayed"
        _state.replays[(role, call.service, call.operation, outcome)] += 1
    if outcome == "mismatch":
        return answer(call, 400, "IdempotentParameterMismatchException",
                      "One or more parameter values were invalid: The request with the same client token was "
                      "already used with different parameters")
    if outcome == "in_progress":
        return answer(call, 400, "TransactionInProgressException",
                      "The transaction with the given request token is already in progress.")
    return saved


def _remember_answer(call: Call, code: int, status, headers, body):
    token = _token(call)
    if token is None:
        return
    with _state.lock:
        known = _state.tokens.get(token)
        if known is None or known[2] is not None:
            return
        if 200 <= code < 300:
            saved = (status if isinstance(status, str) else f"{code} OK", list(headers), bytes(body or b""))
            _state.tokens[token] = (known[0], time.monotonic() + IDEMPOTENCY_WINDOW, saved)
        else:
            del _state.tokens[token]  # a refused transaction was not applied: a retry is a new request


def _forget_in_progress(call: Call):
    token = _token(call)
    if token is not None:
        with _state.lock:
            known = _state.tokens.get(token)
            if known is not None and known[2] is None:
                del _state.tokens[token]


# --- the runtime endpoint ---------------------------------------------------


def counts() -> dict:
    with _state.lock:
        faults = [
            {"role": r, "service": s, "operation": o, "kind": k, "count": n}
            for (r, s, o, k), n in sorted(_state.faults.items())
        ]
        calls = [{"role": r, "service": s, "operation": o, "count": n} for (r, s, o), n in sorted(_state.calls.items())]
        replays = [
            {"role": r, "service": s, "operation": o, "outcome": k, "count": n}
            for (r, s, o, k), n in sorted(_state.replays.items())
        ]
        # What a suite or bench that signs with "~its-profile" saw, apart from the rest.
        by_profile = {}
        for (name, kind), n in sorted(_state.by_profile.items()):
            by_profile.setdefault(name or "(default)", {})[kind] = n
    by_kind = Counter()
    for row in faults:
        by_kind[row["kind"]] += row["count"]
    return {
        "faults": faults,
        "by_kind": dict(sorted(by_kind.items())),
        "total": sum(by_kind.values()),
        "calls": calls,
        "idempotent_replays": replays,
        "by_profile": by_profile,
    }


def reset_counts():
    with _state.lock:
        _state.faults.clear()
        _state.calls.clear()
        _state.replays.clear()
        _state.by_profile.clear()


def _json_answer(status: str, document) -> tuple:
    body = json.dumps(document, indent=1).encode()
    return status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))], body


def handle_admin(environ: dict, body: bytes):
    """GET /_gate/faults: the profiles; POST: change them ({"profile": name |
    spec | object, "profiles": {name: spec | object}, "roles": {role: name |
    null}, "seed": n, "reset_counts": true}).
    GET /_gate/faults/counts: the injected faults; DELETE: the same, then zeroed."""
    path = environ.get("PATH_INFO", "").rstrip("/")
    method = environ.get("REQUEST_METHOD", "GET").upper()
    try:
        if path == "/_gate/faults":
            if method == "GET":
                return _json_answer("200 OK", snapshot())
            if method in ("POST", "PUT"):
                try:
                    request = json.loads(body or b"{}")
                except ValueError as err:
                    raise ConfigError(f"not JSON: {err}") from err
                if not isinstance(request, dict):
                    raise ConfigError("the body is a JSON object")
                unknown = set(request) - {"profile", "profiles", "roles", "seed", "reset_counts"}
                if unknown:
                    raise ConfigError(f"unknown field(s) {sorted(unknown)}")
                configure(request.get("profile"), seed=request.get("seed"), profiles=request.get("profiles"),
                          roles=request.get("roles"))
                if request.get("reset_counts"):
                    reset_counts()
                return _json_answer("200 OK", snapshot())
        elif path == "/_gate/faults/counts":
            if method == "GET":
                return _json_answer("200 OK", counts())
            if method == "DELETE":
                current = counts()
                reset_counts()
                return _json_answer("200 OK", current)
        else:
            return _json_answer("404 Not Found", {"error": f"no such gate resource {path}"})
        return _json_answer("405 Method Not Allowed", {"error": f"{method} is not allowed on {path}"})
    except (ConfigError, TypeError, ValueError) as err:
        return _json_answer("400 Bad Request", {"error": str(err)})


reset()
