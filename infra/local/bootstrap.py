"""Creates, in the local AWS emulation, every stateful resource template.yaml
declares: DynamoDB tables (keys, indexes, TTL), SQS queues (with their
redrive policies), S3 buckets (with their CORS rules), and the state machine
from the same ASL file SAM deploys.

Resources are read from the template, not listed here, so the local stack
cannot drift from what `sam deploy` creates. Running it again reuses what
exists: queue attributes and the state machine's definition are brought up to
date, and a global secondary index added to the template is added to its table.

    python infra/local/bootstrap.py [--stack-name NAME] [--env-out FILE]

Needs AWS_ENDPOINT_URL pointing at moto. Physical names are NAME-LogicalId
(buckets in lower case); NAME defaults to $STACK_NAME, else videojobs-local.
Template parameters take their defaults, or the environment variable of the
same name in upper snake case (GenerationTimeoutSeconds: GENERATION_TIMEOUT_SECONDS).

Prints `export NAME='value'` lines for the functions' environment (the
template's Globals, resolved against this stack, plus WORK_DLQ_URL), and writes
them to --env-out when given. Names of resources always come from this stack;
the other settings keep a value already set in the environment.
"""

import argparse
import json
import os
import pathlib
import re
import sys
import urllib.error
import urllib.request

import boto3
import yaml
from botocore.exceptions import ClientError

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
# moto does not check roles; the state machine needs one all the same.
ROLE_NAME = "videojobs-local"

# CloudFormation's SQS properties that are queue attributes of the same name.
QUEUE_ATTRIBUTES = (
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "SqsManagedSseEnabled",
)


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags (!Ref, !Sub, !GetAtt, …)."""


def _construct_tag(loader, tag_suffix, node):
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template():
    with open(TEMPLATE) as f:
        return yaml.load(f, Loader=CfnLoader)


def env_name(parameter):
    """RetentionSeconds -> RETENTION_SECONDS."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", parameter).upper()


def error_code(err):
    return err.response.get("Error", {}).get("Code", "")


class Stack:
    def __init__(self, name, template):
        self.name = name
        self.template = template
        self.resources = template["Resources"]
        self.physical = {}  # logical id -> {"ref": ..., attribute: ...}
        self.region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        kwargs = dict(endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=self.region)
        self.ddb = boto3.client("dynamodb", **kwargs)
        self.sqs = boto3.client("sqs", **kwargs)
        self.s3 = boto3.client("s3", **kwargs)
        self.sfn = boto3.client("stepfunctions", **kwargs)
        self.account = boto3.client("sts", **kwargs).get_caller_identity()["Account"]
        self.pseudo = {
            "AWS::StackName": name,
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }

    def of_type(self, kind):
        return [(lid, r.get("Properties", {})) for lid, r in self.resources.items() if r["Type"] == kind]

    def physical_name(self, logical_id):
        return f"{self.name}-{logical_id}"

    def parameter(self, name):
        spec = self.template.get("Parameters", {})[name]
        value = os.environ.get(env_name(name), spec.get("Default"))
        if value is None:
            raise SystemExit(f"parameter {name} has no default: set {env_name(name)}")
        return str(value)

    def resolve(self, value):
        """Resolves the intrinsics the locally created resources use."""
        if isinstance(value, dict) and len(value) == 1:
            (fn, arg), = value.items()
            if fn == "Ref":
                return self.ref(arg)
            if fn == "Fn::GetAtt":
                logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.physical[logical][attribute]
            if fn == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else arg
                variables = {k: str(self.resolve(v)) for k, v in variables.items()}

                def substitute(match):
                    key = match.group(1)
                    if key in variables:
                        return variables[key]
                    if "." in key and not key.startswith("AWS::"):
                        return str(self.resolve({"Fn::GetAtt": key.split(".", 1)}))
                    return str(self.ref(key))

                # ${!Literal} stands for a literal ${Literal}.
                return re.sub(r"\$\{([^!}][^}]*)\}", substitute, text).replace("${!", "${")
            if fn == "Fn::Join":
                separator, parts = arg
                return separator.join(str(self.resolve(p)) for p in parts)
        if isinstance(value, dict):
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        return value

    def ref(self, name):
        if name in self.physical:
            return self.physical[name]["ref"]
        if name in self.template.get("Parameters", {}):
            return self.parameter(name)
        if name in self.pseudo:
            return self.pseudo[name]
        raise KeyError(f"cannot resolve Ref {name} locally")

    def names_a_resource(self, value):
        """Whether a value refers to a resource (as opposed to a parameter or literal)."""
        if isinstance(value, dict):
            if "Ref" in value:
                return value["Ref"] in self.resources
            if "Fn::GetAtt" in value:
                return True
            return any(self.names_a_resource(v) for v in value.values())
        if isinstance(value, list):
            return any(self.names_a_resource(v) for v in value)
        if isinstance(value, str):
            # ${Resource} or ${Resource.Attribute} inside a Fn::Sub string
            return any(key.split(".")[0] in self.resources for key in re.findall(r"\$\{([^!}][^}]*)\}", value))
        return False

    def tables(self):
        for lid, props in self.of_type("AWS::DynamoDB::Table"):
            name = self.physical_name(lid)
            try:
                table = self.ddb.describe_table(TableName=name)["Table"]
                self.add_missing_indexes(name, table, props)
            except ClientError as err:
                if error_code(err) != "ResourceNotFoundException":
                    raise
                args = dict(
                    TableName=name,
                    AttributeDefinitions=props["AttributeDefinitions"],
                    KeySchema=props["KeySchema"],
                    BillingMode=props.get("BillingMode", "PROVISIONED"),
                )
                for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes", "ProvisionedThroughput"):
                    if props.get(key):
                        args[key] = props[key]
                table = self.ddb.create_table(**args)["TableDescription"]
            ttl = props.get("TimeToLiveSpecification")
            if ttl and ttl.get("Enabled"):
                status = self.ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
                if status.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
                    self.ddb.update_time_to_live(
                        TableName=name,
                        TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
                    )
            self.physical[lid] = {"ref": name, "Arn": table["TableArn"]}

    def add_missing_indexes(self, name, table, props):
        have = {index["IndexName"] for index in table.get("GlobalSecondaryIndexes", [])}
        for index in props.get("GlobalSecondaryIndexes", []):
            if index["IndexName"] in have:
                continue
            # DynamoDB takes one new index per UpdateTable.
            print(f"adding index {index['IndexName']} to {name}", file=sys.stderr)
            self.ddb.update_table(
                TableName=name,
                AttributeDefinitions=props["AttributeDefinitions"],
                GlobalSecondaryIndexUpdates=[{"Create": index}],
            )

    def queues(self):
        pending = dict(self.of_type("AWS::SQS::Queue"))
        while pending:
            # A queue is created once every queue its redrive policy names exists.
            ready = [lid for lid, props in pending.items() if self.resolvable(props.get("RedrivePolicy"))]
            if not ready:
                raise SystemExit(f"queues refer to each other in a cycle: {sorted(pending)}")
            for lid in ready:
                self.queue(lid, pending.pop(lid))

    def resolvable(self, value):
        try:
            self.resolve(value)
            return True
        except KeyError:
            return False

    def queue(self, lid, props):
        name = self.physical_name(lid)
        attributes = {key: str(props[key]).lower() if isinstance(props[key], bool) else str(props[key])
                      for key in QUEUE_ATTRIBUTES if key in props}
        if "RedrivePolicy" in props:
            attributes["RedrivePolicy"] = json.dumps(self.resolve(props["RedrivePolicy"]))
        try:
            url = self.sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        except ClientError as err:
            # It exists with other attributes: the template changed since.
            if error_code(err) not in ("QueueAlreadyExists", "QueueNameExists"):
                raise
            url = self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
            self.sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.physical[lid] = {"ref": url, "Arn": arn, "QueueName": name, "QueueUrl": url}

    def buckets(self):
        for lid, props in self.of_type("AWS::S3::Bucket"):
            name = self.physical_name(lid).lower()
            try:
                self.s3.head_bucket(Bucket=name)
            except ClientError as err:
                if error_code(err) not in ("404", "NoSuchBucket", "NotFound"):
                    raise
                self.s3.create_bucket(Bucket=name)
            rules = props.get("CorsConfiguration", {}).get("CorsRules")
            if rules:
                # moto answers browsers' preflight requests from these rules.
                self.s3.put_bucket_cors(Bucket=name, CORSConfiguration={"CORSRules": [cors_rule(r) for r in rules]})
            self.physical[lid] = {"ref": name, "Arn": f"arn:aws:s3:::{name}"}

    def state_machines(self):
        role_arn = f"arn:aws:iam::{self.account}:role/{ROLE_NAME}"
        for lid, props in self.of_type("AWS::Serverless::StateMachine"):
            name = self.resolve(props["Name"]) if "Name" in props else self.physical_name(lid)
            if "DefinitionUri" in props:
                definition = (ROOT / props["DefinitionUri"]).read_text()
            else:
                definition = json.dumps(props["Definition"])
            for key, value in self.resolve(props.get("DefinitionSubstitutions", {})).items():
                definition = definition.replace("${" + key + "}", str(value))
            try:
                json.loads(definition)
            except json.JSONDecodeError as err:
                raise SystemExit(f"{lid}: the definition is not JSON once substituted: {err}")
            arn = f"arn:aws:states:{self.region}:{self.account}:stateMachine:{name}"
            try:
                current = self.sfn.describe_state_machine(stateMachineArn=arn)
                # moto's CreateStateMachine would keep the old definition silently.
                if current["definition"] != definition:
                    self.sfn.update_state_machine(stateMachineArn=arn, definition=definition)
            except ClientError as err:
                if error_code(err) != "StateMachineDoesNotExist":
                    raise
                arn = self.sfn.create_state_machine(
                    name=name, definition=definition, roleArn=role_arn, type=props.get("Type", "STANDARD")
                )["stateMachineArn"]
            self.physical[lid] = {"ref": arn, "Arn": arn, "Name": name}

    def environment(self):
        """The functions' environment: the template's Globals, resolved."""
        variables = self.template["Globals"]["Function"]["Environment"]["Variables"]
        env = {}
        for name, value in variables.items():
            if self.names_a_resource(value):
                try:
                    env[name] = str(self.resolve(value))
                except KeyError as err:
                    # e.g. a function's URL: nothing local stands for it.
                    print(f"not exported: {name} ({err})", file=sys.stderr)
            else:
                # A parameter's default or a literal: a value set here wins.
                env[name] = os.environ.get(name, str(self.resolve(value)))
        # Each queue the functions know gets its dead-letter queue beside it
        # (WORK_QUEUE_URL -> WORK_DLQ_URL), for tests and operators.
        for name, value in variables.items():
            if name.endswith("_QUEUE_URL") and isinstance(value, dict) and value.get("Ref") in self.physical:
                policy = self.resources[value["Ref"]].get("Properties", {}).get("RedrivePolicy")
                if policy:
                    target = self.resolve(policy)["deadLetterTargetArn"]
                    for queue in self.physical.values():
                        if queue.get("Arn") == target and "QueueUrl" in queue:
                            env[name[: -len("_QUEUE_URL")] + "_DLQ_URL"] = queue["QueueUrl"]
        return env


def cors_rule(rule):
    """A CloudFormation CorsRule as the S3 API spells it."""
    renames = {"Id": "ID", "MaxAge": "MaxAgeSeconds", "ExposedHeaders": "ExposeHeaders"}
    return {renames.get(key, key): value for key, value in rule.items()}


def enable_step_functions_interpreter():
    # Must happen before any state machine exists, or executions never run.
    endpoint = os.environ["AWS_ENDPOINT_URL"].rstrip("/")
    body = json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode()
    request = urllib.request.Request(f"{endpoint}/moto-api/config", data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    try:
        urllib.request.urlopen(request, timeout=10).read()
    except (urllib.error.URLError, OSError) as err:
        raise SystemExit(f"moto does not answer at {endpoint}: {err}")


def register_with_gate(stack):
    """Tells the gate in front of moto (gate/__init__.py) this stack's physical
    names, so that it can resolve each function's role against them."""
    endpoint = os.environ["AWS_ENDPOINT_URL"].rstrip("/")
    document = {"name": stack.name, "region": stack.region, "account": stack.account, "physical": stack.physical,
                "parameters": {name: stack.parameter(name) for name in stack.template.get("Parameters", {})}}
    request = urllib.request.Request(f"{endpoint}/_gate/stacks", data=json.dumps(document).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    try:
        urllib.request.urlopen(request, timeout=10).read()
    except urllib.error.HTTPError as err:
        # A moto started without the gate: nothing checks roles there.
        print(f"the gate did not take the stack ({err}): roles are not checked", file=sys.stderr)


def shell_quote(value):
    return "'" + value.replace("'", "'\"'\"'") + "'"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack-name", default=os.environ.get("STACK_NAME") or "videojobs-local")
    parser.add_argument("--env-out", help="also write the export lines to this file")
    args = parser.parse_args()
    if not os.environ.get("AWS_ENDPOINT_URL"):
        sys.exit("AWS_ENDPOINT_URL must point at the local AWS emulation (moto)")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]{0,49}", args.stack_name):
        # It prefixes bucket names (at most 63 characters, no underscores).
        sys.exit("the stack name must be letters, digits and dashes, at most 50")

    enable_step_functions_interpreter()
    stack = Stack(args.stack_name, load_template())
    stack.tables()
    stack.queues()
    stack.buckets()
    stack.state_machines()
    register_with_gate(stack)
    lines = [f"export {name}={shell_quote(value)}" for name, value in sorted(stack.environment().items())]
    text = "\n".join(lines) + "\n"
    if args.env_out:
        out = pathlib.Path(args.env_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
