"""The gate: a WSGI layer in front of moto that makes the local stack refuse
and fail what AWS would. Every request signed by a function's credentials
(access key id = the function's logical id in template.yaml) is

  1. checked against that function's role as template.yaml grants it
     (iam.py): a call the role would deny answers AccessDenied and is
     recorded, and the test command fails on any recorded denial;
  2. held to AWS's limits where moto is laxer (limits.py);
  3. given AWS's own faults at a configurable rate (faults.py).

Requests signed by anything else (the tests' own setup, bootstrap.py) pass
through unchecked.

Endpoints of its own: POST /_gate/stacks (bootstrap.py registers a stack's
physical names), GET /_gate/report (what this process recorded); and
/_gate/faults..., /_gate/limits... go to that layer's handle_admin.
Records go to $GATE_REPORT_DIR (default .local/gate), one pair of files per
port: denials-PORT.jsonl (appended at once) and usage-PORT.json (the grants
allowed calls matched); report.py reads them. GATE_IAM=off turns the role
check off.
"""

from __future__ import annotations

import http
import importlib
import importlib.util
import io
import json
import os
import socket
import sys
import threading
import time
import traceback
from pathlib import Path

from . import calls, iam

ROOT = Path(__file__).resolve().parents[3]
DEFAULT_REPORT_DIR = ROOT / ".local" / "gate"


def _optional(name):
    """limits.py and faults.py are written apart and may not exist yet."""
    if importlib.util.find_spec(f"{__name__}.{name}") is None:
        return None
    return importlib.import_module(f"{__name__}.{name}")


limits = _optional("limits")
faults = _optional("faults")


def _limits_check(call):
    check = getattr(limits, "check", None)
    return check(call) if check else None


def _faults_before(call):
    before = getattr(faults, "before", None)
    return before(call) if before else None


def _faults_after(call, status, headers, body):
    after = getattr(faults, "after", None)
    return after(call, status, headers, body) if after else None


class Recorder:
    """Denials (appended at once) and grant usage (rewritten when it grows), per port."""

    def __init__(self, directory, port):
        self.directory = Path(directory)
        self.denials_path = self.directory / f"denials-{port}.jsonl"
        self.usage_path = self.directory / f"usage-{port}.json"
        self.lock = threading.Lock()
        self.denials = []
        self.usage = set()
        # A moto restarted on the same port keeps what the earlier one recorded.
        try:
            self.usage = {tuple(u) for u in json.loads(self.usage_path.read_text())}
        except (OSError, ValueError):
            pass

    def deny(self, record: dict):
        with self.lock:
            self.denials.append(record)
            self.directory.mkdir(parents=True, exist_ok=True)
            with open(self.denials_path, "a") as f:
                f.write(json.dumps(record, sort_keys=True) + "\n")

    def use(self, units):
        units = {tuple(u) for u in units}
        with self.lock:
            if units <= self.usage:
                return
            self.usage |= units
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = self.usage_path.with_suffix(f".tmp{threading.get_ident()}")
            tmp.write_text(json.dumps(sorted(self.usage, key=lambda u: tuple(map(str, u)))))
            os.replace(tmp, self.usage_path)


def _status_line(status) -> str:
    if isinstance(status, int):
        try:
            return f"{status} {http.HTTPStatus(status).phrase}"
        except ValueError:
            return f"{status} Error"
    return status


class Gate:
    """WSGI middleware: parse → role check → limits → faults.before → moto → faults.after."""

    def __init__(self, app, port=None, report_dir=None, template=None, iam_enabled=None):
        self.app = app
        self.port = port or os.environ.get("MOTO_PORT", "5000")
        # moto's DynamoDB is not safe under concurrent requests (moto_server.py).
        self.dynamodb_lock = threading.Lock()
        if iam_enabled is None:
            iam_enabled = os.environ.get("GATE_IAM", "on").lower() != "off"
        self.iam_enabled = iam_enabled
        self.checker = iam.Checker(template) if iam_enabled else None
        self.recorder = Recorder(report_dir or os.environ.get("GATE_REPORT_DIR") or DEFAULT_REPORT_DIR, self.port)

    # -- WSGI ------------------------------------------------------------------

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO", "").startswith("/_gate/"):
            return self._own(environ, start_response)
        body = self._read_body(environ)
        try:
            call = calls.parse(environ, body)
        except Exception:  # a gate bug must not take moto down: record it, pass the call on
            self._gate_error(environ, "parse")
            return self._moto_answer(environ, start_response, None)

        verdict = None
        if self.checker is not None:
            try:
                verdict = self.checker.check(call)
            except Exception:
                self._gate_error(environ, "iam", call)
            if verdict is not None:
                if not verdict.allowed:
                    return self._deny(call, verdict, start_response)
                self.recorder.use(verdict.used)

        answer = self._layer("limits", environ, call, _limits_check, call) \
            or self._layer("faults.before", environ, call, _faults_before, call)
        if answer is not None:
            return self._answer(environ, start_response, answer)
        return self._moto_answer(environ, start_response, call, verdict)

    def _layer(self, where, environ, call, function, *args):
        """A layer's answer; its bug is recorded (failing the run) and the call goes on to moto."""
        try:
            return function(*args)
        except Exception:
            self._gate_error(environ, where, call)
            return None

    def _read_body(self, environ) -> bytes:
        """Read once; moto gets the same bytes again."""
        stream = environ.get("wsgi.input")
        length = environ.get("CONTENT_LENGTH")
        if stream is None:
            body = b""
        elif length:
            body = stream.read(int(length))
        elif environ.get("wsgi.input_terminated"):  # chunked transfer encoding
            body = stream.read()
        else:
            body = b""
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return body

    def _moto(self, environ, call):
        """moto's answer as (status, headers, body), materialised (under the DynamoDB lock for DynamoDB)."""
        captured = {"written": []}

        def start_response(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, list(headers)
            return captured["written"].append

        def run():
            result = self.app(environ, start_response)
            try:
                return b"".join(captured["written"]) + b"".join(result)
            finally:
                if hasattr(result, "close"):
                    result.close()

        if call is not None and call.service == "dynamodb" or \
                environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            with self.dynamodb_lock:
                body = run()
        else:
            body = run()
        return captured["status"], captured["headers"], body

    def _moto_answer(self, environ, start_response, call, verdict=None):
        status, headers, body = self._moto(environ, call)
        if call is None:
            return self._answer(environ, start_response, (status, headers, body))
        if verdict is not None and call.service == "s3" and call.operation in ("GetObject", "HeadObject") \
                and status.startswith("404"):
            replaced = self._missing_key(call, verdict, body)
            if replaced is not None:
                status, headers, body = replaced
        after = self._layer("faults.after", environ, call, _faults_after, call, status, headers, body)
        if after is not None:
            return self._answer(environ, start_response, after)
        return self._answer(environ, start_response, (status, headers, body))

    def _missing_key(self, call, verdict, body):
        """AWS answers a missing key with 404 only to a role that may list the bucket; else 403."""
        if call.method == "GET" and b"NoSuchKey" not in body:
            return None  # e.g. NoSuchBucket, NoSuchUpload: AWS's 404 stands
        allowed, need, matched = self.checker.list_bucket(call, verdict)
        if allowed:
            self.recorder.use(matched)
            return None
        self._record(call, verdict, need, "the object does not exist and the role may not list the bucket (AWS answers 403)")
        return calls.access_denied(call, "Access Denied")

    def _answer(self, environ, start_response, answer):
        if answer == "drop":
            # Close the connection without answering (the call may have acted).
            sock = environ.get("werkzeug.socket")
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            raise ConnectionAbortedError("gate: connection dropped on purpose")
        status, headers, body = answer
        if isinstance(body, str):
            body = body.encode()
        start_response(_status_line(status), list(headers))
        return [body]

    # -- denials -----------------------------------------------------------------

    def _record(self, call, verdict, need, reason):
        principal = self.checker.template.principal_name(call.principal)
        record = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "function": principal,
            "role": verdict.role,
            "stack": verdict.stack,
            "call": f"{call.service}:{call.operation}",
            "action": need.action,
            "resource": need.resource,
            "note": need.note,
            "reason": reason,
            "port": str(self.port),
        }
        if need.context.get("dynamodb:LeadingKeys") is not None:
            record["leading_keys"] = need.context["dynamodb:LeadingKeys"]
        self.recorder.deny(record)
        print(f"gate: DENIED {principal} {need.action} on {need.resource} ({reason})", file=sys.stderr, flush=True)

    def _deny(self, call, verdict, start_response):
        for need, reason in verdict.denials:
            self._record(call, verdict, need, reason)
        need = verdict.denials[0][0]
        principal = self.checker.template.principal_name(call.principal)
        message = (f"User: arn:aws:sts::{iam.ACCOUNT}:assumed-role/{verdict.role}/{principal} is not authorized "
                   f"to perform: {need.action} on resource: {need.resource} because no identity-based policy "
                   f"allows the {need.action} action")
        status, headers, body = calls.access_denied(call, message)
        start_response(status, headers)
        return [body]

    def _gate_error(self, environ, where, call=None):
        detail = traceback.format_exc()
        print(f"gate: error in {where}:\n{detail}", file=sys.stderr, flush=True)
        self.recorder.deny({
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "function": call.principal if call else "?", "role": "?", "stack": "?",
            "call": f"{environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO')}",
            "action": "gate error", "resource": where, "note": detail.strip().splitlines()[-1],
            "reason": "the gate failed to check this call (a bug in infra/local/gate)", "port": str(self.port),
        })

    # -- /_gate/ -------------------------------------------------------------------

    def _own(self, environ, start_response):
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        if path == "/_gate/stacks" and method == "POST":
            document = json.loads(self._read_body(environ) or b"{}")
            if self.checker is not None:
                self.checker.register(document)
            return self._json(start_response, 200, {"registered": document.get("name"), "iam": self.iam_enabled})
        if path == "/_gate/report" and method == "GET":
            with self.recorder.lock:
                report = {"iam": self.iam_enabled, "denials": list(self.recorder.denials),
                          "usage": sorted(self.recorder.usage, key=lambda u: tuple(map(str, u))),
                          "stacks": list(self.checker.stacks) if self.checker else []}
            return self._json(start_response, 200, report)
        # /_gate/faults..., /_gate/limits...: the layer's own endpoints.
        for name, module in (("faults", faults), ("limits", limits)):
            handle = getattr(module, "handle_admin", None)
            if handle and (path == f"/_gate/{name}" or path.startswith(f"/_gate/{name}/")):
                return self._answer(environ, start_response, handle(environ, self._read_body(environ)))
        return self._json(start_response, 404, {"error": f"no {method} {path}"})

    @staticmethod
    def _json(start_response, status, document):
        body = json.dumps(document).encode()
        start_response(_status_line(status), [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
