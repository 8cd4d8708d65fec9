"""Fixtures: the real template's roles, and moto behind the gate on a free port
with one stack bootstrapped into it (bootstrap.py, as scripts/up runs it)."""

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

LOCAL = Path(__file__).resolve().parents[2]  # infra/local
sys.path.insert(0, str(LOCAL))

from gate import Gate, iam  # noqa: E402

STACK = "gatetest"


@pytest.fixture(scope="session")
def template():
    return iam.Template()


# The template before issue 19's fix: the notifier without Query on the jobs
# table, and no role with s3:ListBucket. The role check must catch both gaps.
# (The notifier's UpdateItem came later, with numbered attempts: kept.)
NOTIFIER_FIXED = "Action: [dynamodb:GetItem, dynamodb:PutItem, dynamodb:UpdateItem, dynamodb:DeleteItem, dynamodb:Query]\n"
NOTIFIER_BEFORE = "Action: [dynamodb:GetItem, dynamodb:PutItem, dynamodb:UpdateItem, dynamodb:DeleteItem]\n"
LIST_BUCKET = re.compile(r"            - Effect: Allow\n(?:              #.*\n)*              Action: \[s3:ListBucket\]\n"
                         r"              Resource: !GetAtt MediaBucket.Arn\n")


@pytest.fixture(scope="session")
def template_before_fix(tmp_path_factory):
    text = iam.TEMPLATE.read_text()
    assert text.count(NOTIFIER_FIXED) == 1, "the notifier's jobs-table statement changed: update NOTIFIER_FIXED"
    text, removed = LIST_BUCKET.subn("", text.replace(NOTIFIER_FIXED, NOTIFIER_BEFORE))
    assert removed == 3, "expected the ListBucket statements of create, status and worker"
    path = tmp_path_factory.mktemp("before-fix") / "template.yaml"
    path.write_text(text)
    return iam.Template(path)


@pytest.fixture
def gate_before_fix(moto_gate, template_before_fix):
    """moto_gate, judging by the template before the fix for the test's duration."""
    gate = moto_gate[1]
    fixed = gate.checker
    before = iam.Checker(template_before_fix)
    before.stacks = fixed.stacks
    gate.checker = before
    yield moto_gate
    gate.checker = fixed


@pytest.fixture(scope="session")
def moto_gate(template, tmp_path_factory):
    """(endpoint, Gate, stack exports): moto behind the gate, in this process."""
    from moto.moto_server.threaded_moto_server import MotoRequestHandler
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    # No injected faults here: these tests check the role check alone.
    os.environ.pop("GATE_FAULTS", None)
    from gate import faults
    if faults is not None and hasattr(faults, "reset"):
        faults.reset()
    report_dir = tmp_path_factory.mktemp("gate-report")
    gate = Gate(DomainDispatcherApplication(create_backend_app), port="test", report_dir=report_dir, template=template,
                iam_enabled=True)
    server = make_server("127.0.0.1", 0, gate, threaded=True, request_handler=MotoRequestHandler)
    port = server.server_address[1]
    # The Step Functions interpreter calls back into moto on MOTO_PORT.
    os.environ["MOTO_PORT"] = str(port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}
    out = subprocess.run([sys.executable, str(LOCAL / "bootstrap.py"), "--stack-name", STACK], env=env,
                         capture_output=True, text=True, check=True).stdout
    exports = {}
    for line in out.splitlines():
        name, _, value = line[len("export "):].partition("=")
        exports[name] = value.strip("'")
    yield endpoint, gate, exports
    server.shutdown()


@pytest.fixture(scope="session")
def client(moto_gate):
    """client(service, access key id): boto3 against moto behind the gate."""
    import boto3
    from botocore.config import Config

    endpoint = moto_gate[0]

    def make(service, key):
        return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=key,
                            aws_secret_access_key="secret",
                            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))

    return make
