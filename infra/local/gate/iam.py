"""The role check: each function's role as template.yaml grants it, and the
IAM actions, resources and condition keys each AWS call needs.

The roles are read as CloudFormation would create them: template.yaml is
expanded by the pinned SAM translator (samtranslator, offline, with a stub
managed-policy loader), so the roles SAM generates for functions and the state
machine, and the managed policies it attaches, are exactly what `sam deploy`
makes. Their intrinsics are then resolved per stack, from the physical names
bootstrap.py registers (POST /_gate/stacks).

A call's principal is its access key id: a function's logical id (optionally
"~profile"), a state machine's, or an AWS::IAM::Role's.
"""

from __future__ import annotations

import copy
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional
from urllib.parse import unquote, urlparse

import yaml

from .calls import Call

ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = Path(os.environ.get("GATE_TEMPLATE", ROOT / "template.yaml"))  # as limits.py reads it
ACCOUNT = "123456789012"  # moto's default account
DEFAULT_REGION = "us-east-1"
# moto 5.2.5's Step Functions interpreter signs its service integrations
# (sqs:sendMessage.waitForTaskToken) with this hard-coded key
# (moto/stepfunctions/parser/asl/utils/boto_client.py), whatever the process
# environment says: it stands for the template's state machine.
INTERPRETER_KEY = "ak"

# The AWS managed policies SAM attaches (samtranslator 1.115: every function
# role gets AWSLambdaBasicExecutionRole; one with an SQS event also gets
# AWSLambdaSQSQueueExecutionRole, model/eventsources/pull.py). Their content
# as AWS publishes it, and why a grant no local call uses is kept.
MANAGED_POLICIES = {
    "AWSLambdaBasicExecutionRole": {
        "Statement": [{"Effect": "Allow", "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                       "Resource": "*"}],
        "why": {"logs:*": "Lambda's runtime writes the function's logs with it; no function code calls CloudWatch Logs"},
    },
    "AWSLambdaSQSQueueExecutionRole": {
        "Statement": [{"Effect": "Allow", "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
                                                     "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                       "Resource": "*"}],
        "why": {"logs:*": "Lambda's runtime writes the function's logs with it; no function code calls CloudWatch Logs",
                "sqs:*": "the SQS event source mapping (Lambda's poller) uses it; the local poller may not make every call"},
    },
}


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags (as bootstrap.py reads it)."""


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


def sam_transform(raw: dict, region: str = DEFAULT_REGION) -> dict:
    """template.yaml as CloudFormation gets it after the Serverless transform."""
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    template = copy.deepcopy(raw)
    # SAM wants S3 locations; `sam build` would upload the local code.
    for logical_id, resource in template.get("Resources", {}).items():
        props = resource.get("Properties") or {}
        for key in ("CodeUri", "DefinitionUri", "ContentUri"):
            if isinstance(props.get(key), str) and not props[key].startswith("s3://"):
                props[key] = f"s3://local-placeholder/{logical_id}"
    # A session with a region and no credentials: the translator reads only its region.
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=region))
    return translator.translate(template, {}, get_managed_policy_map=lambda: {})


# --- policies ---------------------------------------------------------------


class Unresolved(Exception):
    pass


@dataclass
class Statement:
    role: str
    policy: str  # inline policy name, or the managed policy's name
    index: int
    effect: str
    actions: Optional[list]  # patterns; None when NotAction
    not_actions: Optional[list]
    resources: Optional[list]  # [(display, resolved pattern)]; None when NotResource
    not_resources: Optional[list]
    condition: dict
    managed: bool = False

    def units(self):
        """The (action, resource) grants this statement makes, as the report names them."""
        actions = self.actions if self.actions is not None else ["NotAction:" + ",".join(self.not_actions)]
        resources = [d for d, _ in self.resources] if self.resources is not None else \
            ["NotResource:" + ",".join(d for d, _ in self.not_resources)]
        return [(self.role, self.policy, self.index, a, r) for a in actions for r in resources]


def display(value) -> str:
    """A resource as the template writes it: "!GetAtt JobsTable.Arn", "!Sub ${MediaBucket.Arn}/outputs/*"."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        (fn, arg), = value.items()
        if fn == "Ref":
            return f"!Ref {arg}"
        if fn == "Fn::GetAtt":
            return "!GetAtt " + (".".join(arg) if isinstance(arg, list) else arg)
        if fn == "Fn::Sub":
            return "!Sub " + (arg if isinstance(arg, str) else arg[0])
    return repr(value)


def _list(value):
    if value is None:
        return None
    return value if isinstance(value, list) else [value]


@dataclass
class Stack:
    name: str
    region: str = DEFAULT_REGION
    account: str = ACCOUNT
    # logical id -> {"ref": ..., "Arn": ..., other attributes}
    physical: dict = field(default_factory=dict)
    parameters: dict = field(default_factory=dict)

    def owns(self, arn: str) -> bool:
        for attributes in self.physical.values():
            own = attributes.get("Arn")
            if not own:
                continue
            if arn == own or arn.startswith(own + "/"):
                return True
            # A state machine's executions: ...:execution:NAME:id
            if ":stateMachine:" in own and arn.startswith(own.replace(":stateMachine:", ":execution:") + ":"):
                return True
        return False

    def logical_id_of(self, ref: str) -> Optional[str]:
        for logical_id, attributes in self.physical.items():
            if attributes.get("ref") == ref or attributes.get("Arn") == ref:
                return logical_id
        return None


class Template:
    """The roles and tables of template.yaml, independent of any stack."""

    def __init__(self, path: Path = TEMPLATE):
        with open(path) as f:
            self.raw = yaml.load(f, Loader=CfnLoader)
        self.cfn = sam_transform(self.raw)
        resources = self.cfn["Resources"]
        self.resources = resources
        # principal (logical id) -> role logical id
        self.principals = {}
        self.state_machines = []
        for logical_id, resource in resources.items():
            kind, props = resource.get("Type"), resource.get("Properties") or {}
            if kind == "AWS::Lambda::Function":
                role = _getatt_target(props.get("Role"))
            elif kind == "AWS::StepFunctions::StateMachine":
                role = _getatt_target(props.get("RoleArn"))
                self.state_machines.append(logical_id)
            elif kind == "AWS::IAM::Role":
                role = logical_id
            else:
                continue
            if role and resources.get(role, {}).get("Type") == "AWS::IAM::Role":
                self.principals[logical_id] = role
        # role -> the principal whose Metadata justifies its unused grants
        self.owner = {}
        for principal, role in self.principals.items():
            if principal != role or role not in self.owner:
                self.owner[role] = principal
        # table logical id -> {"": hash key, index name: hash key}
        self.hash_keys = {}
        for logical_id, resource in resources.items():
            if resource.get("Type") == "AWS::DynamoDB::Table":
                props = resource.get("Properties") or {}
                keys = {"": _hash_key(props.get("KeySchema"))}
                for index in (props.get("GlobalSecondaryIndexes") or []) + (props.get("LocalSecondaryIndexes") or []):
                    keys[index["IndexName"]] = _hash_key(index.get("KeySchema"))
                self.hash_keys[logical_id] = keys

    def role_of(self, principal: Optional[str]) -> Optional[str]:
        if not principal:
            return None
        name = principal.split("~", 1)[0]
        if name == INTERPRETER_KEY and len(self.state_machines) == 1:
            name = self.state_machines[0]
        return self.principals.get(name)

    def principal_name(self, principal: str) -> str:
        name = principal.split("~", 1)[0]
        if name == INTERPRETER_KEY and len(self.state_machines) == 1:
            return self.state_machines[0]
        return principal

    def justifications(self, role: str) -> dict:
        """The owner's `Metadata: UnusedPermissions: {"ACTION[ RESOURCE]": why}`."""
        owner = self.owner.get(role, role)
        metadata = self.raw["Resources"].get(owner, {}).get("Metadata") or {}
        return metadata.get("UnusedPermissions") or {}

    def policies(self, role: str):
        """[(policy name, statements (unresolved), managed)] of a role."""
        props = self.resources[role].get("Properties") or {}
        out = []
        for policy in props.get("Policies") or []:
            statements = _list((policy.get("PolicyDocument") or {}).get("Statement")) or []
            out.append((policy.get("PolicyName", "inline"), statements, False))
        for arn in props.get("ManagedPolicyArns") or []:
            name = display(arn).rsplit("/", 1)[-1]
            managed = MANAGED_POLICIES.get(name)
            if managed is None:
                raise SystemExit(f"gate: {role} has managed policy {name}, which iam.MANAGED_POLICIES does not know")
            out.append((name, managed["Statement"], True))
        return out

    # -- intrinsics ---------------------------------------------------------

    def condition(self, name: str, stack: Stack) -> bool:
        return bool(self.resolve(self.raw.get("Conditions", {})[name], stack))

    def parameter(self, name: str, stack: Stack):
        if name in stack.parameters:
            return stack.parameters[name]
        spec = self.raw.get("Parameters", {}).get(name)
        if spec is None or "Default" not in spec:
            raise Unresolved(f"Ref {name}")
        return spec["Default"]

    def ref(self, name: str, stack: Stack):
        pseudo = {"AWS::StackName": stack.name, "AWS::Region": stack.region, "AWS::AccountId": stack.account,
                  "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com", "AWS::NoValue": None}
        if name in pseudo:
            return pseudo[name]
        if name in stack.physical:
            return stack.physical[name]["ref"]
        if name in self.raw.get("Parameters", {}):
            return self.parameter(name, stack)
        raise Unresolved(f"Ref {name}")

    def getatt(self, logical_id: str, attribute: str, stack: Stack):
        try:
            return stack.physical[logical_id][attribute]
        except KeyError:
            raise Unresolved(f"GetAtt {logical_id}.{attribute}") from None

    def resolve(self, value, stack: Stack):
        if isinstance(value, list):
            return [v for v in (self.resolve(item, stack) for item in value) if v is not None]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (fn, arg), = value.items()
            if fn == "Ref":
                return self.ref(arg, stack)
            if fn == "Fn::GetAtt":
                logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.getatt(logical_id, attribute, stack)
            if fn == "Fn::Sub":
                return self._sub(arg, stack)
            if fn == "Fn::Join":
                separator, parts = arg
                return separator.join(str(p) for p in self.resolve(parts, stack))
            if fn == "Fn::If":
                name, yes, no = arg
                return self.resolve(yes if self.condition(name, stack) else no, stack)
            if fn == "Fn::Equals":
                a, b = self.resolve(arg, stack)
                return str(a) == str(b)
            if fn == "Fn::Not":
                return not self.resolve(arg[0], stack)
            if fn == "Fn::And":
                return all(self.resolve(arg, stack))
            if fn == "Fn::Or":
                return any(self.resolve(arg, stack))
            if fn == "Condition":
                return self.condition(arg, stack)
            if fn == "Fn::Select":
                index, items = arg
                return self.resolve(items, stack)[int(self.resolve(index, stack))]
            if fn == "Fn::Split":
                separator, text = arg
                return str(self.resolve(text, stack)).split(separator)
        return {k: v for k, v in ((k, self.resolve(v, stack)) for k, v in value.items()) if v is not None}

    def _sub(self, arg, stack: Stack) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else arg
        variables = {k: self.resolve(v, stack) for k, v in variables.items()}

        def substitute(match):
            key = match.group(1)
            if key in variables:
                return str(variables[key])
            if "." in key and not key.startswith("AWS::"):
                return str(self.getatt(*key.split(".", 1), stack))
            return str(self.ref(key, stack))

        return re.sub(r"\$\{([^!}][^}]*)\}", substitute, text).replace("${!", "${")

    def statements(self, role: str, stack: Stack) -> list:
        """A role's statements, resolved against one stack."""
        out = []
        for policy, statements, managed in self.policies(role):
            for index, raw in enumerate(statements):
                out.append(Statement(
                    role=role, policy=policy, index=index, effect=raw.get("Effect", "Allow"),
                    actions=_list(raw.get("Action")), not_actions=_list(raw.get("NotAction")),
                    resources=self._resources(raw.get("Resource"), stack),
                    not_resources=self._resources(raw.get("NotResource"), stack),
                    condition=self._resolve_or_mark(raw.get("Condition") or {}, stack), managed=managed,
                ))
        return out

    def _resources(self, value, stack: Stack):
        if value is None:
            return None
        out = []
        for item in _list(value):
            try:
                resolved = self.resolve(item, stack)
            except Unresolved as err:
                # Names something the stack does not have: matches nothing.
                resolved = f"<unresolved: {err}>"
            for one in _list(resolved) or []:
                out.append((display(item), str(one)))
        return out

    def _resolve_or_mark(self, value, stack: Stack):
        try:
            return self.resolve(value, stack)
        except Unresolved as err:
            return {"StringEquals": {"gate:unresolved": f"<unresolved: {err}>"}}

    def all_units(self) -> dict:
        """role -> every (role, policy, index, action, resource) its Allow statements grant."""
        empty = Stack(name="<any>")
        units = {}
        for role in sorted(set(self.principals.values())):
            units[role] = [u for s in self.statements(role, empty) if s.effect == "Allow" for u in s.units()]
        return units


def _getatt_target(value) -> Optional[str]:
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        arg = value["Fn::GetAtt"]
        return arg[0] if isinstance(arg, list) else arg.split(".", 1)[0]
    return None


def _hash_key(schema) -> Optional[str]:
    for key in schema or []:
        if key.get("KeyType") == "HASH":
            return key.get("AttributeName")
    return None


# --- the evaluator ------------------------------------------------------------


def _pattern(glob: str, ignore_case: bool) -> re.Pattern:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)
    return re.compile(regex + r"\Z", re.DOTALL | (re.IGNORECASE if ignore_case else 0))


_cache = {}


def glob_match(glob: str, value: str, ignore_case: bool = False) -> bool:
    key = (glob, ignore_case)
    if key not in _cache:
        _cache[key] = _pattern(glob, ignore_case)
    return bool(_cache[key].match(value))


def _strings(value) -> list:
    out = []
    for v in _list(value) or []:
        out.append(("true" if v else "false") if isinstance(v, bool) else str(v))
    return out


def _one(operator: str, policy_values: list, value: str) -> bool:
    """A single-valued operator on one context value (OR over the policy's values)."""
    base = operator
    negated = "Not" in base
    base = base.replace("Not", "")
    if base in ("StringEquals", "ArnEquals"):
        hit = any(value == p for p in policy_values)
    elif base == "StringEqualsIgnoreCase":
        hit = any(value.lower() == p.lower() for p in policy_values)
    elif base in ("StringLike", "ArnLike"):
        hit = any(glob_match(p, value) for p in policy_values)
    elif base == "Bool":
        hit = any(value.lower() == p.lower() for p in policy_values)
    elif base.startswith("Numeric"):
        try:
            number = float(value)
            numbers = [float(p) for p in policy_values]
        except ValueError:
            return False
        compare = {"NumericEquals": lambda a, b: a == b, "NumericLessThan": lambda a, b: a < b,
                   "NumericLessThanEquals": lambda a, b: a <= b, "NumericGreaterThan": lambda a, b: a > b,
                   "NumericGreaterThanEquals": lambda a, b: a >= b}.get(base)
        if compare is None:
            return False
        hit = any(compare(number, p) for p in numbers)
    else:
        raise ValueError(f"condition operator {operator} is not implemented by the gate")
    return not hit if negated else hit


def condition_holds(condition: dict, context: dict) -> bool:
    """IAM's rules: every operator and every key must hold (AND); a key's values are ORed."""
    lowered = {k.lower(): v for k, v in context.items()}
    for operator, block in condition.items():
        for key, policy_value in (block or {}).items():
            policy_values = _strings(policy_value)
            present = key.lower() in lowered and lowered[key.lower()] is not None
            value = lowered.get(key.lower())
            qualifier, _, op = operator.rpartition(":")
            if_exists = op.endswith("IfExists")
            op = op[: -len("IfExists")] if if_exists else op
            if op == "Null":
                # "true": the key must be absent; "false": present.
                if any(p.lower() == "true" for p in policy_values) == present:
                    return False
                continue
            values = _strings(value) if present else []
            if qualifier == "ForAllValues":
                # True for a missing or empty key (IAM's rule, and its pitfall).
                if not all(_one(op, policy_values, v) for v in values):
                    return False
            elif qualifier == "ForAnyValue":
                if not any(_one(op, policy_values, v) for v in values):
                    return False
            else:
                if not present:
                    # A missing key matches only ...IfExists and the negated operators.
                    if not (if_exists or "Not" in op):
                        return False
                    continue
                if not any(_one(op, policy_values, v) for v in values):
                    return False
    return True


@dataclass
class Decision:
    allowed: bool
    denied_by: Optional[Statement] = None  # an explicit Deny
    matched: list = field(default_factory=list)  # units of the Allow statements that matched


def _statement_applies(statement: Statement, action: str, resource: str, context: dict):
    """The (action pattern, resource display) pairs by which a statement covers the request, or []."""
    if statement.actions is not None:
        actions = [a for a in statement.actions if glob_match(a, action, ignore_case=True)]
    else:
        actions = [] if any(glob_match(a, action, ignore_case=True) for a in statement.not_actions) else \
            ["NotAction:" + ",".join(statement.not_actions)]
    if not actions:
        return []
    if statement.resources is not None:
        resources = [d for d, r in statement.resources if glob_match(r, resource)]
    else:
        resources = [] if any(glob_match(r, resource) for _, r in statement.not_resources) else \
            ["NotResource:" + ",".join(d for d, _ in statement.not_resources)]
    if not resources or not condition_holds(statement.condition, context):
        return []
    return [(a, r) for a in actions for r in resources]


def evaluate(statements: list, action: str, resource: str, context: dict) -> Decision:
    """An explicit Deny wins; otherwise an Allow is needed."""
    matched = []
    for statement in statements:
        pairs = _statement_applies(statement, action, resource, context)
        if not pairs:
            continue
        if statement.effect == "Deny":
            return Decision(False, denied_by=statement)
        matched.extend((statement.role, statement.policy, statement.index, a, r) for a, r in pairs)
    return Decision(bool(matched), matched=matched)


# --- what a call needs ----------------------------------------------------------


@dataclass
class Need:
    action: str
    resource: str
    context: dict = field(default_factory=dict)
    note: str = ""  # e.g. "copy source"


def _attribute_value(value) -> Optional[str]:
    if not isinstance(value, dict) or not value:
        return None
    (kind, inner), = list(value.items())[:1]
    return str(inner) if kind in ("S", "N", "B") else None


class Lookup:
    """Physical names -> logical ids, across the registered stacks (for key schemas)."""

    def __init__(self, template: Template, stacks: list):
        self.template, self.stacks = template, stacks

    def table_logical_id(self, table: str) -> Optional[str]:
        name = table.rsplit("/", 1)[-1] if table.startswith("arn:") else table
        for stack in self.stacks:
            logical_id = stack.logical_id_of(name)
            if logical_id:
                return logical_id
        # bootstrap.py's naming: STACK-LogicalId
        for logical_id in self.template.hash_keys:
            if name.endswith("-" + logical_id):
                return logical_id
        return None

    def hash_key(self, table: str, index: str = "") -> Optional[str]:
        logical_id = self.table_logical_id(table)
        return self.template.hash_keys.get(logical_id, {}).get(index or "") if logical_id else None


def needs(call: Call, lookup: Lookup) -> list:
    """The IAM (action, resource, condition context) list a call needs."""
    region = call.region or DEFAULT_REGION
    context = {"aws:RequestedRegion": region, "aws:PrincipalAccount": ACCOUNT,
               # The functions reach AWS over TLS; locally it is plain HTTP.
               "aws:SecureTransport": "true"}
    handler = {"dynamodb": _dynamodb, "sqs": _sqs, "s3": _s3, "states": _states, "sts": _sts}.get(call.service)
    if handler is None:
        return [Need(f"{call.service or 'unknown'}:{call.operation or 'Unknown'}", "*")]
    out = handler(call, region, lookup)
    for need in out:
        need.context = {**context, **need.context}
    return out


def _table_arn(table: str, region: str) -> str:
    return table if table.startswith("arn:") else f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/{table}"


def _item_need(action: str, table: str, key: dict, region: str, lookup: Lookup) -> Need:
    values = []
    hash_key = lookup.hash_key(table)
    if isinstance(key, dict):
        if hash_key in key:
            values = [_attribute_value(key[hash_key])]
        elif hash_key is None and len(key) == 1:
            values = [_attribute_value(next(iter(key.values())))]
    values = [v for v in values if v is not None]
    return Need(action, _table_arn(table, region), {"dynamodb:LeadingKeys": values} if values else {})


_EQUALITY = re.compile(r"(#?[A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(:[A-Za-z0-9_]+)|(:[A-Za-z0-9_]+)\s*=\s*(#?[A-Za-z_][A-Za-z0-9_.]*)")


def query_partition_value(params: dict, hash_key: Optional[str]) -> Optional[str]:
    """The partition key value a Query names in its KeyConditionExpression (or legacy KeyConditions)."""
    names = params.get("ExpressionAttributeNames") or {}
    values = params.get("ExpressionAttributeValues") or {}
    expression = params.get("KeyConditionExpression")
    if expression:
        candidates = []
        for m in _EQUALITY.finditer(expression):
            name, placeholder = (m.group(1), m.group(2)) if m.group(1) else (m.group(4), m.group(3))
            candidates.append((names.get(name, name), placeholder))
        chosen = [c for c in candidates if c[0] == hash_key] or candidates[:1]
        if chosen:
            return _attribute_value(values.get(chosen[0][1]))
        return None
    conditions = params.get("KeyConditions") or {}
    for name, spec in conditions.items():
        if (hash_key is None or name == hash_key) and spec.get("ComparisonOperator") == "EQ":
            return _attribute_value((spec.get("AttributeValueList") or [None])[0])
    return None


def _dynamodb(call: Call, region: str, lookup: Lookup) -> list:
    p, op = call.params, call.operation
    if op in ("GetItem", "DeleteItem", "UpdateItem"):
        return [_item_need(f"dynamodb:{op}", p.get("TableName", ""), p.get("Key") or {}, region, lookup)]
    if op == "PutItem":
        return [_item_need("dynamodb:PutItem", p.get("TableName", ""), p.get("Item") or {}, region, lookup)]
    if op in ("Query", "Scan"):
        table, index = p.get("TableName", ""), p.get("IndexName")
        resource = _table_arn(table, region) + (f"/index/{index}" if index else "")
        context = {}
        if op == "Query":
            value = query_partition_value(p, lookup.hash_key(table, index or ""))
            if value is not None:
                context["dynamodb:LeadingKeys"] = [value]
        # A Scan names no partition: the key is absent (ForAllValues then holds, as on AWS).
        return [Need(f"dynamodb:{op}", resource, context)]
    if op == "BatchGetItem":
        out = []
        for table, spec in (p.get("RequestItems") or {}).items():
            keys = [_item_need("", table, key, region, lookup) for key in (spec or {}).get("Keys") or []]
            values = [v for n in keys for v in n.context.get("dynamodb:LeadingKeys", [])]
            out.append(Need("dynamodb:BatchGetItem", _table_arn(table, region),
                            {"dynamodb:LeadingKeys": values} if values else {}))
        return out
    if op == "BatchWriteItem":
        out = []
        for table, requests in (p.get("RequestItems") or {}).items():
            values = []
            for request in requests or []:
                key = (request.get("PutRequest") or {}).get("Item") or (request.get("DeleteRequest") or {}).get("Key") or {}
                values += _item_need("", table, key, region, lookup).context.get("dynamodb:LeadingKeys", [])
            out.append(Need("dynamodb:BatchWriteItem", _table_arn(table, region),
                            {"dynamodb:LeadingKeys": values} if values else {}))
        return out
    if op == "TransactWriteItems":
        # No IAM action of its own: each item needs its own action on its table.
        out = []
        for item in p.get("TransactItems") or []:
            for kind, action, key_field in (("Put", "PutItem", "Item"), ("Update", "UpdateItem", "Key"),
                                            ("Delete", "DeleteItem", "Key"), ("ConditionCheck", "ConditionCheckItem", "Key")):
                if kind in item:
                    spec = item[kind]
                    out.append(_item_need(f"dynamodb:{action}", spec.get("TableName", ""), spec.get(key_field) or {}, region, lookup))
        return out
    if op == "TransactGetItems":
        return [_item_need("dynamodb:GetItem", (item.get("Get") or {}).get("TableName", ""),
                           (item.get("Get") or {}).get("Key") or {}, region, lookup)
                for item in p.get("TransactItems") or []]
    table = p.get("TableName") or p.get("TableArn") or p.get("ResourceArn")
    return [Need(f"dynamodb:{op}", _table_arn(table, region) if table else "*")]


def queue_arn(url: str, region: str) -> Optional[str]:
    parsed = urlparse(url)
    parts = [p for p in (parsed.path if parsed.scheme else url).split("/") if p]
    if len(parts) < 2:
        return None
    host_region = re.match(r"^(?:sqs\.)?([a-z]{2}-[a-z]+-\d)\.", parsed.hostname or "")
    return f"arn:aws:sqs:{host_region.group(1) if host_region else region}:{parts[-2]}:{parts[-1]}"


# Batch operations are authorised as their single form.
_SQS_ACTIONS = {"SendMessageBatch": "SendMessage", "DeleteMessageBatch": "DeleteMessage",
                "ChangeMessageVisibilityBatch": "ChangeMessageVisibility"}


def _sqs(call: Call, region: str, lookup: Lookup) -> list:
    p, op = call.params, call.operation
    action = "sqs:" + _SQS_ACTIONS.get(op, op)
    url = p.get("QueueUrl")
    if url:
        arn = queue_arn(url, region)
    elif p.get("QueueName"):
        arn = f"arn:aws:sqs:{region}:{p.get('QueueOwnerAWSAccountId') or ACCOUNT}:{p['QueueName']}"
    elif op not in ("ListQueues",) and call.path.strip("/").count("/") == 1:
        arn = queue_arn(call.path, region)  # the query protocol may post to the queue's URL
    else:
        arn = None
    return [Need(action, arn or "*")]


def _copy_source(header: str):
    source = unquote(header.split("?", 1)[0]).lstrip("/")
    bucket, _, key = source.partition("/")
    return bucket, key


def _s3(call: Call, region: str, lookup: Lookup) -> list:
    op, h, q = call.operation, call.headers, call.query
    if not call.bucket:
        return [Need("s3:ListAllMyBuckets", "*")] if op == "ListBuckets" else []
    bucket_arn = f"arn:aws:s3:::{call.bucket}"
    obj = f"{bucket_arn}/{call.key}" if call.key is not None else None
    tagged = "x-amz-tagging" in h
    if op in ("GetObject", "HeadObject"):
        return [Need("s3:GetObjectVersion" if "versionId" in q else "s3:GetObject", obj)]
    if op in ("PutObject", "CreateMultipartUpload"):
        # Tags given with the object need PutObjectTagging too.
        return [Need("s3:PutObject", obj)] + ([Need("s3:PutObjectTagging", obj)] if tagged else [])
    if op in ("UploadPart", "CompleteMultipartUpload"):
        return [Need("s3:PutObject", obj)]
    if op in ("CopyObject", "UploadPartCopy"):
        source_bucket, source_key = _copy_source(h.get("x-amz-copy-source", ""))
        out = [Need("s3:PutObject", obj), Need("s3:GetObject", f"arn:aws:s3:::{source_bucket}/{source_key}", note="copy source")]
        if op == "CopyObject" and tagged and h.get("x-amz-tagging-directive", "COPY").upper() == "REPLACE":
            out.append(Need("s3:PutObjectTagging", obj))
        return out
    if op == "DeleteObject":
        return [Need("s3:DeleteObjectVersion" if "versionId" in q else "s3:DeleteObject", obj)]
    if op == "ListParts":
        return [Need("s3:ListMultipartUploadParts", obj)]
    if op in ("AbortMultipartUpload", "PutObjectTagging", "GetObjectTagging", "DeleteObjectTagging",
              "GetObjectAcl", "PutObjectAcl", "GetObjectAttributes", "RestoreObject", "PutObjectRetention",
              "PutObjectLegalHold"):
        return [Need(f"s3:{op}", obj)]
    if op in ("ListObjects", "ListObjectsV2"):
        context = {"s3:prefix": q.get("prefix", "")}
        for name in ("delimiter", "max-keys"):
            if name in q:
                context[f"s3:{name}"] = q[name]
        return [Need("s3:ListBucket", bucket_arn, context)]
    if op == "HeadBucket":
        return [Need("s3:ListBucket", bucket_arn)]
    if op == "DeleteObjects":
        keys = re.findall(rb"<Key>(.*?)</Key>", call.body or b"", re.DOTALL)
        return [Need("s3:DeleteObject", f"{bucket_arn}/{_xml_text(k)}") for k in keys] or [Need("s3:DeleteObject", f"{bucket_arn}/*")]
    if op == "PreflightRequest" or not op:
        return [] if op == "PreflightRequest" else [Need("s3:Unknown", obj or bucket_arn)]
    renames = {"ListObjectVersions": "ListBucketVersions", "ListMultipartUploads": "ListBucketMultipartUploads",
               "GetBucketCors": "GetBucketCORS", "PutBucketCors": "PutBucketCORS", "DeleteBucketCors": "PutBucketCORS",
               "GetBucketLifecycleConfiguration": "GetLifecycleConfiguration",
               "PutBucketLifecycleConfiguration": "PutLifecycleConfiguration",
               "DeleteBucketLifecycleConfiguration": "PutLifecycleConfiguration",
               "DeleteBucketTagging": "PutBucketTagging", "DeleteBucketEncryption": "PutEncryptionConfiguration",
               "GetBucketEncryption": "GetEncryptionConfiguration", "PutBucketEncryption": "PutEncryptionConfiguration",
               "GetBucketNotificationConfiguration": "GetBucketNotification",
               "PutBucketNotificationConfiguration": "PutBucketNotification"}
    return [Need("s3:" + renames.get(op, op), obj or bucket_arn)]


def _xml_text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"') \
        .replace("&apos;", "'").replace("&amp;", "&")


def _states(call: Call, region: str, lookup: Lookup) -> list:
    p, op = call.params, call.operation
    if op in ("SendTaskSuccess", "SendTaskFailure", "SendTaskHeartbeat", "ListStateMachines", "ListActivities",
              "CreateStateMachine", "CreateActivity"):
        # No resource-level permissions: a task token is the capability.
        return [Need(f"states:{op}", "*")]
    arn = p.get("executionArn") or p.get("stateMachineArn") or p.get("mapRunArn") or p.get("resourceArn") \
        or p.get("activityArn") or "*"
    return [Need(f"states:{op}", arn)]


def _sts(call: Call, region: str, lookup: Lookup) -> list:
    if call.operation == "GetCallerIdentity":
        return []  # needs no permission
    return [Need(f"sts:{call.operation}", "*")]


# --- the checker -------------------------------------------------------------------


@dataclass
class Verdict:
    role: str
    stack: Optional[str]
    allowed: bool
    denials: list = field(default_factory=list)  # [(Need, reason)]
    used: list = field(default_factory=list)  # units


class Checker:
    """Roles per registered stack; checks calls against them."""

    def __init__(self, template: Optional[Template] = None):
        self.template = template or Template()
        self.stacks = {}  # name -> Stack, in registration order
        self.compiled = {}  # (role, stack name) -> [Statement]
        self.lock = threading.Lock()

    def register(self, document: dict) -> Stack:
        stack = Stack(name=document["name"], region=document.get("region") or DEFAULT_REGION,
                      account=document.get("account") or ACCOUNT, physical=document.get("physical") or {},
                      parameters=document.get("parameters") or {})
        with self.lock:
            self.stacks.pop(stack.name, None)
            self.stacks[stack.name] = stack
            self.compiled = {k: v for k, v in self.compiled.items() if k[1] != stack.name}
        return stack

    def checks(self, call: Call) -> bool:
        return self.template.role_of(call.principal) is not None

    def statements(self, role: str, stack: Stack) -> list:
        key = (role, stack.name)
        with self.lock:
            if key not in self.compiled:
                self.compiled[key] = self.template.statements(role, stack)
            return self.compiled[key]

    def stack_for(self, items: list) -> Stack:
        with self.lock:
            stacks = list(self.stacks.values())
        for need in items:
            for stack in reversed(stacks):
                if stack.owns(need.resource):
                    return stack
        # Nothing a stack owns (a task token's "*", another stack's resource):
        # the latest stack's role; any resource it does not name is denied.
        return stacks[-1] if stacks else Stack(name="<none registered>")

    def check(self, call: Call) -> Optional[Verdict]:
        role = self.template.role_of(call.principal)
        if role is None:
            return None
        with self.lock:
            stacks = list(self.stacks.values())
        items = needs(call, Lookup(self.template, stacks))
        stack = self.stack_for(items)
        statements = self.statements(role, stack)
        verdict = Verdict(role=role, stack=stack.name, allowed=True)
        for need in items:
            decision = evaluate(statements, need.action, need.resource, need.context)
            if decision.allowed:
                verdict.used.extend(decision.matched)
                continue
            verdict.allowed = False
            if decision.denied_by is not None:
                reason = f"explicit deny in {decision.denied_by.policy} statement {decision.denied_by.index}"
            else:
                reason = "no statement of the role allows it"
            verdict.denials.append((need, reason))
        return verdict

    def list_bucket(self, call: Call, verdict: Verdict) -> tuple:
        """(allowed, Need, units) for s3:ListBucket on the call's bucket: without it a missing key answers 403."""
        stack = self.stacks.get(verdict.stack) or Stack(name=verdict.stack or "<none registered>")
        # Assumption: the object's key stands for s3:prefix (AWS does not document it).
        need = Need("s3:ListBucket", f"arn:aws:s3:::{call.bucket}",
                    {"s3:prefix": call.key or "", "aws:RequestedRegion": call.region or DEFAULT_REGION,
                     "aws:PrincipalAccount": ACCOUNT, "aws:SecureTransport": "true"},
                    note="needed for a 404 on a missing key")
        decision = evaluate(self.statements(verdict.role, stack), need.action, need.resource, need.context)
        return decision.allowed, need, decision.matched
