"""Creates, in the local AWS emulation, every stateful resource template.yaml
declares: DynamoDB tables (keys, indexes, TTL), SQS queues (with their
redrive policies), S3 buckets, and the state machine from the same ASL file.

Resources are read from the template, not listed here, so the local stack
cannot drift from what `sam deploy` creates. Running it again reuses what
exists (and updates the state machine's definition).

    python infra/local/bootstrap.py [--stack-name NAME] [--env-out FILE]

Needs AWS_ENDPOINT_URL pointing at moto. Prints `export NAME=value` lines for
the functions' environment, and writes them to --env-out when given.
"""

import argparse
import json
import os
import pathlib
import sys
import urllib.request

import boto3
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/videojobs-local"


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
    with open(ROOT / "template.yaml") as f:
        return yaml.load(f, Loader=CfnLoader)


class Stack:
    def __init__(self, name, template):
        self.name = name
        self.template = template
        self.resources = template["Resources"]
        self.physical = {}  # logical id -> physical name / URL / ARN
        endpoint = os.environ["AWS_ENDPOINT_URL"]
        region = os.environ.get("AWS_REGION", "us-east-1")
        kwargs = dict(endpoint_url=endpoint, region_name=region)
        self.region = region
        self.ddb = boto3.client("dynamodb", **kwargs)
        self.sqs = boto3.client("sqs", **kwargs)
        self.s3 = boto3.client("s3", **kwargs)
        self.sfn = boto3.client("stepfunctions", **kwargs)

    def of_type(self, kind):
        return [(lid, r.get("Properties", {})) for lid, r in self.resources.items() if r["Type"] == kind]

    def parameter(self, name):
        env_name = "".join("_" + c if c.isupper() else c for c in name).lstrip("_").upper()
        return os.environ.get(env_name, str(self.template["Parameters"][name]["Default"]))

    def resolve(self, value):
        """Resolves the intrinsics the stateful resources use."""
        if isinstance(value, dict) and len(value) == 1:
            (fn, arg), = value.items()
            if fn == "Ref":
                if arg in self.physical:
                    return self.physical[arg]["ref"]
                if arg in self.template.get("Parameters", {}):
                    return self.parameter(arg)
                if arg == "AWS::StackName":
                    return self.name
                raise KeyError(f"cannot resolve Ref {arg}")
            if fn == "Fn::GetAtt":
                logical, attribute = arg
                return self.physical[logical][attribute]
        if isinstance(value, dict):
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        return value

    def tables(self):
        existing = set(self.ddb.list_tables()["TableNames"])
        for lid, props in self.of_type("AWS::DynamoDB::Table"):
            name = f"{self.name}-{lid}"
            if name not in existing:
                args = dict(
                    TableName=name,
                    AttributeDefinitions=props["AttributeDefinitions"],
                    KeySchema=props["KeySchema"],
                    BillingMode=props.get("BillingMode", "PAY_PER_REQUEST"),
                )
                if props.get("GlobalSecondaryIndexes"):
                    args["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
                self.ddb.create_table(**args)
                ttl = props.get("TimeToLiveSpecification")
                if ttl and ttl.get("Enabled"):
                    self.ddb.update_time_to_live(
                        TableName=name,
                        TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
                    )
            arn = f"arn:aws:dynamodb:{self.region}:{ACCOUNT}:table/{name}"
            self.physical[lid] = {"ref": name, "Arn": arn}

    def queues(self):
        # Dead-letter queues first: a redrive policy names its target's ARN.
        pending = self.of_type("AWS::SQS::Queue")
        pending.sort(key=lambda item: "RedrivePolicy" in item[1])
        for lid, props in pending:
            name = f"{self.name}-{lid}"
            attributes = {}
            for key in ("VisibilityTimeout", "MessageRetentionPeriod"):
                if key in props:
                    attributes[key] = str(props[key])
            if "RedrivePolicy" in props:
                attributes["RedrivePolicy"] = json.dumps(self.resolve(props["RedrivePolicy"]))
            url = self.sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
            arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            self.physical[lid] = {"ref": url, "Arn": arn, "QueueName": name}

    def buckets(self):
        existing = {b["Name"] for b in self.s3.list_buckets().get("Buckets", [])}
        for lid, _props in self.of_type("AWS::S3::Bucket"):
            name = f"{self.name}-{lid}".lower()
            if name not in existing:
                self.s3.create_bucket(Bucket=name)
            self.physical[lid] = {"ref": name, "Arn": f"arn:aws:s3:::{name}"}

    def state_machines(self):
        existing = {m["name"]: m["stateMachineArn"] for m in self.sfn.list_state_machines()["stateMachines"]}
        for lid, props in self.of_type("AWS::Serverless::StateMachine"):
            name = f"{self.name}-jobs" if "Name" in props else f"{self.name}-{lid}"
            definition = (ROOT / props["DefinitionUri"]).read_text()
            for key, value in self.resolve(props.get("DefinitionSubstitutions", {})).items():
                definition = definition.replace("${" + key + "}", str(value))
            json.loads(definition)  # a substitution must leave valid JSON
            if name in existing:
                arn = existing[name]
                self.sfn.update_state_machine(stateMachineArn=arn, definition=definition)
            else:
                arn = self.sfn.create_state_machine(
                    name=name, definition=definition, roleArn=ROLE_ARN, type=props.get("Type", "STANDARD")
                )["stateMachineArn"]
            self.physical[lid] = {"ref": arn, "Arn": arn, "Name": name}

    def environment(self):
        """The functions' environment: the template's Globals, resolved."""
        variables = self.template["Globals"]["Function"]["Environment"]["Variables"]
        env = {}
        for name, value in variables.items():
            env[name] = os.environ.get(name, str(self.resolve(value)))
        for lid, props in self.of_type("AWS::SQS::Queue"):
            if "RedrivePolicy" not in props:
                env["WORK_DLQ_URL"] = self.physical[lid]["ref"]
        return env


def enable_step_functions_interpreter():
    # Must happen before any state machine exists, or executions never run.
    endpoint = os.environ["AWS_ENDPOINT_URL"].rstrip("/")
    body = json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode()
    request = urllib.request.Request(f"{endpoint}/moto-api/config", data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    urllib.request.urlopen(request, timeout=10).read()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack-name", default=os.environ.get("STACK_NAME", "videojobs-local"))
    parser.add_argument("--env-out")
    args = parser.parse_args()
    if "AWS_ENDPOINT_URL" not in os.environ:
        sys.exit("AWS_ENDPOINT_URL must point at the local AWS emulation (moto)")

    enable_step_functions_interpreter()
    stack = Stack(args.stack_name, load_template())
    stack.tables()
    stack.queues()
    stack.buckets()
    stack.state_machines()
    lines = [f"export {name}='{value}'" for name, value in sorted(stack.environment().items())]
    text = "\n".join(lines) + "\n"
    if args.env_out:
        pathlib.Path(args.env_out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.env_out).write_text(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
